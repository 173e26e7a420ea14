//! Command-line and environment configuration: the only place settings are read. Every
//! setting of a running service (database, listening, limits, secret, cards, terminal) has a
//! `COLEDGER_…` environment variable; one-off command options mostly do not. `--help` shows
//! which.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Verifier threads unless told: a third of the cores, rounded up (one on the two-core
/// benchmark machine, where one thread made batches of ~50 instead of ~20 and the service
/// ~10 % faster than two: BENCHMARKS.md, "One verifier thread on two cores").
pub fn default_verifier_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().div_ceil(3))
}

/// `--verifier-threads`: 1 to [`wallet_api::verifier::MAX_THREADS`].
fn verifier_threads_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=wallet_api::verifier::MAX_THREADS as u64)
}

/// coledger: a ledger service for complementary currencies, benefit vouchers, incentive
/// points and time banks.
#[derive(Debug, Parser)]
#[command(name = "coledger", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Create a demo scheme (issuer, 1,000 households, 20 merchants) and run a month of
    /// synthetic payments through the committer, then print a summary.
    Demo(DemoArgs),
    /// Operator bearer tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Copy the ledger to a file while the service runs (SQLite: VACUUM INTO; PostgreSQL:
    /// pg_dump), then verify the copy.
    Backup(BackupArgs),
    /// Restore a backup into a new SQLite path or an empty PostgreSQL database, then verify it.
    Restore(RestoreArgs),
    /// Reliability runs: the bank workload, with or without the service being killed.
    #[command(subcommand)]
    Torture(TortureCommand),
    /// Measure performance; prints figures for BENCHMARKS.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Pay a programme's households for a period (one signed run; re-running pays nobody
    /// twice and resumes a run cut short). Needs the writer: stop the service, or use the
    /// API (POST /v1/programmes/{id}/runs) while it runs.
    Disburse(DisburseArgs),
    /// Enrol households into a programme from a CSV file (validated row by row).
    Enrol(EnrolArgs),
    /// Return expired units to a programme's budget now, service stopped (the running service
    /// sweeps hourly by itself; or POST /v1/programmes/{id}/expiry-sweeps).
    Expire(ExpireArgs),
    /// Digital cards.
    #[command(subcommand)]
    Cards(CardsCommand),
    /// Data out.
    #[command(subcommand)]
    Export(ExportCommand),
    /// The auditor's check of a journal export (`coledger export journal`): recomputes every
    /// unit's hash chain from zero, verifies every signature strictly and that each entry is
    /// what its signed intent asks for, and prints per-unit totals. Exits non-zero naming the
    /// first bad line. Needs nothing but the file.
    Verify(VerifyArgs),
    /// The research kit: run a scenario, sweep a policy parameter, or measure an event file
    /// (LM3, velocity, holding time, leakage). See simulations/README.md.
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// A merchant's terminal in the shell: charge an amount with a signed EMV QR code and
    /// wait until it is paid; list today's sales.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// Test helper: commit payments forever, printing each acknowledged intent id. Used by
    /// the crash tests, which kill it mid-batch.
    #[command(hide = true)]
    CrashWriter(CrashWriterArgs),
}

/// Where the ledger lives.
#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// `sqlite://path/file.db` (created if missing) or `postgres://user:pass@host/db`; with a
    /// standby, `postgres://user:pass@h1:5432,h2:5432/db` (the first server that accepts
    /// writes is used, looked for again on every reconnect).
    #[arg(long, env = "COLEDGER_DATABASE_URL", default_value = wallet_api::db::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// Where the ledger lives, for a command that only reads it (so never creates it).
#[derive(Debug, Args, Clone)]
pub struct ReadOnlyDatabaseArgs {
    /// `sqlite://path/file.db` (an existing file, opened read only: never created or
    /// migrated) or `postgres://user:pass@host/db` (one server).
    #[arg(long, env = "COLEDGER_DATABASE_URL", default_value = wallet_api::db::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// `coledger serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "COLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Load the demo scheme first if the database has no units yet, and print an admin
    /// token for trying the API.
    #[arg(long, env = "COLEDGER_DEMO")]
    pub demo: bool,
    /// Largest request body, in bytes.
    #[arg(long, env = "COLEDGER_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Items per page when a client does not say.
    #[arg(long, env = "COLEDGER_DEFAULT_PAGE", default_value_t = 50)]
    pub default_page: u32,
    /// Most items per page a client may ask for.
    #[arg(long, env = "COLEDGER_MAX_PAGE", default_value_t = 500)]
    pub max_page: u32,
    /// Requests taking longer are answered 503 (event streams excepted), in milliseconds.
    #[arg(long, env = "COLEDGER_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Sustained writes per second allowed per caller (token, session or signing key).
    #[arg(long, env = "COLEDGER_WRITES_PER_SECOND", default_value_t = 50.0)]
    pub writes_per_second: f64,
    /// Writes a caller may burst above the sustained rate.
    #[arg(long, env = "COLEDGER_WRITE_BURST", default_value_t = 200.0)]
    pub write_burst: f64,
    /// Server-sent event streams open at once, all callers together (terminals waiting for
    /// a payment, wallets watching a balance); beyond it a new stream is refused with 503.
    /// Each holds a connection, so keep the process's open-file limit above it (1 to
    /// 1,000,000).
    #[arg(long, env = "COLEDGER_MAX_EVENT_STREAMS", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_event_streams: usize,
    /// OS threads that parse and batch-verify signed intents, off the async threads (1 to
    /// 16). The default is a third of the cores, rounded up: verifying is about a third of a
    /// payment's CPU, and threads beyond the work form smaller batches, each with the batch
    /// equation's fixed cost.
    #[arg(long, env = "COLEDGER_VERIFIER_THREADS", default_value_t = default_verifier_threads(),
          value_parser = verifier_threads_parser())]
    pub verifier_threads: usize,
    /// How long the writer waits for more requests once one has arrived before it writes a
    /// batch, in milliseconds (0 to 1000). 0, the default, writes whatever is queued at once:
    /// the lowest latency. A few milliseconds make batches larger at moderate load, which
    /// costs less CPU per payment (see docs/operations.md, Tuning the writer).
    #[arg(long, env = "COLEDGER_COMMIT_LINGER_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub commit_linger_ms: u64,
    /// Programmes and cards.
    #[command(flatten)]
    pub programmes: ProgrammeArgs,
    /// How often the writer returns expired units to each programme's budget, in seconds
    /// (0: never; then run `coledger expire` or POST …/expiry-sweeps from a scheduler).
    #[arg(long, env = "COLEDGER_EXPIRY_SWEEP_INTERVAL_S", default_value_t = 3600)]
    pub expiry_sweep_interval_s: u64,
    /// How often the service signs a journal checkpoint of each unit whose chain moved, in
    /// seconds (0: only at start and on request, POST /v1/journal/checkpoints). Needs the
    /// server secret, from which the checkpoint key is derived.
    #[arg(long, env = "COLEDGER_CHECKPOINT_INTERVAL_S", default_value_t = 600)]
    pub checkpoint_interval_s: u64,
    /// What a start checks besides the hash chain, the balances and the signed checkpoints:
    /// `signatures` (the default) checks every entry after the latest checkpoints against
    /// its signed intent, as `coledger verify` does; `chain` does not, for a deployment
    /// without a server secret whose journal is too long to check at every start (a
    /// standby's takeover waits for it).
    #[arg(long, env = "COLEDGER_START_CHECK", value_enum, default_value_t = StartCheck::Signatures)]
    pub start_check: StartCheck,
}

/// What a start checks (`serve --start-check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartCheck {
    /// The chain, the balances, the checkpoints, and signatures after the checkpoints.
    Signatures,
    /// The chain, the balances and the checkpoints only.
    Chain,
}

/// The server secret and card settings, shared by the service and the programme commands.
#[derive(Debug, Args, Clone)]
pub struct ProgrammeArgs {
    /// File holding the 64-hex-character server secret. Default for SQLite: beside the
    /// database (`<file>.secret`, created on first use); PostgreSQL needs it named, or
    /// programmes and cards are off.
    #[arg(long, env = "COLEDGER_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// First six digits of every card number this scheme issues.
    #[arg(long, env = "COLEDGER_CARD_PREFIX", default_value = "990001")]
    pub card_prefix: String,
    /// Wrong PINs in a row that lock a card.
    #[arg(long, env = "COLEDGER_PIN_ATTEMPTS", default_value_t = 3)]
    pub pin_attempts: u32,
    /// Seal card keys with a cheap PIN hash (tests and benchmarks only: a stolen database
    /// plus secret would let PINs be guessed quickly).
    #[arg(long, env = "COLEDGER_INSECURE_FAST_PIN_HASHING", hide = true)]
    pub insecure_fast_pin_hashing: bool,
}

impl ServeArgs {
    /// The HTTP limits these arguments set.
    pub fn api_config(&self) -> wallet_api::http::limits::ApiConfig {
        wallet_api::http::limits::ApiConfig {
            max_body_bytes: self.max_body_bytes,
            default_page: self.default_page,
            max_page: self.max_page,
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            writes_per_second: self.writes_per_second,
            write_burst: self.write_burst,
            max_event_streams: self.max_event_streams,
        }
    }
}

/// `coledger backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database to back up.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The backup file to write (must not exist).
    #[arg(long)]
    pub to: PathBuf,
}

/// `coledger restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where to restore: a new SQLite path, or an empty PostgreSQL database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
}

/// `coledger torture …`.
#[derive(Debug, Subcommand)]
pub enum TortureCommand {
    /// Random signed payments among funded accounts from concurrent clients, with retries;
    /// then checks nothing was lost, duplicated or created.
    Bank(TortureArgs),
    /// The bank workload while the service is SIGKILLed and restarted at random moments
    /// (and sometimes again during start-up recovery).
    Crash(TortureArgs),
    /// Two service processes on one database: the writer is SIGKILLed again and again and
    /// the standby takes the lease over.
    Failover(TortureArgs),
    /// PostgreSQL itself fails over: a primary with a synchronous streaming standby (started
    /// from the machine's PostgreSQL binaries on loopback ports) under one service given both
    /// hosts; the primary is SIGKILLed mid-load and the standby promoted, --kills times (the
    /// dead primary rebuilt as the new standby between). Takes no --database-url.
    Promote(TortureArgs),
    /// A steady load (half the measured capacity unless --rate) for --duration seconds,
    /// printing memory and latency per window.
    Soak(TortureArgs),
}

/// Options of `coledger torture`.
#[derive(Debug, Args)]
pub struct TortureArgs {
    /// The database (default: a fresh SQLite file in a temporary directory). Use an empty one.
    #[arg(long, env = "COLEDGER_TORTURE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Funded accounts the payments move between (few accounts, more conflicts).
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// How long clients send new payments, in seconds.
    #[arg(long = "duration", default_value_t = 60)]
    pub duration_s: u64,
    /// SIGKILLs spread over the run (crash, failover; promote: primaries killed and standbys
    /// promoted).
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Seed of the payments and the kill schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Soak only: payments per second (default: half the capacity measured first).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// `coledger token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create(TokenCreateArgs),
    /// List tokens (ids, roles, labels; never secrets).
    List(TokenListArgs),
    /// Revoke a token by its id; it stops working at once.
    Revoke(TokenRevokeArgs),
}

/// `coledger token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// admin, programme_manager, merchant, collector, coordinator, auditor or researcher.
    #[arg(long)]
    pub role: String,
    /// The participant a merchant or collector token acts for (required for those roles).
    #[arg(long)]
    pub participant: Option<String>,
    /// What the token is for, e.g. "Bakery terminal 1".
    #[arg(long, default_value = "")]
    pub label: String,
}

/// `coledger token list`.
#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `coledger token revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The token's id (the part after `colt_`, or the whole token).
    pub id: String,
}

/// `coledger demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Seed of the synthetic month; the same seed makes the same payments.
    #[arg(long, env = "COLEDGER_DEMO_SEED", default_value_t = 2026)]
    pub seed: u64,
}

/// `coledger bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Book apply rate, and committed payments per second through the committer versus one
    /// transaction per payment, on SQLite and (with --postgres-url) PostgreSQL.
    Ledger(BenchLedgerArgs),
    /// Signed payments per second through the HTTP API on loopback, from many keep-alive
    /// connections, on SQLite and (with --postgres-url) PostgreSQL.
    Api(BenchApiArgs),
    /// Enrolment of a CSV of households and a disbursement run paying all of them, on a
    /// durable SQLite file.
    Disburse(BenchDisburseArgs),
    /// The research kit: measuring an event stream, an agent-based year, a parameter sweep.
    Simulate(BenchSimulateArgs),
    /// How soon a shop's terminal sees a sale paid: from the wallet's payment to the
    /// `settled` event on the payment request's stream, idle and under background load.
    Settle(BenchSettleArgs),
}

/// `coledger bench settle`.
#[derive(Debug, Args)]
pub struct BenchSettleArgs {
    /// Sales measured per run, one after another.
    #[arg(long, default_value_t = 200)]
    pub sales: usize,
    /// Connections paying each other in the background during the loaded run.
    #[arg(long, default_value_t = 64)]
    pub background_connections: usize,
    /// Pre-signed background payments (the loaded run stops its background when they are
    /// used up).
    #[arg(long, default_value_t = 200_000)]
    pub background_payments: usize,
    /// A PostgreSQL server to measure too (a fresh scratch database on it).
    #[arg(long, env = "COLEDGER_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
}

/// `coledger bench simulate`.
#[derive(Debug, Args)]
pub struct BenchSimulateArgs {
    /// Events in the stream that is measured.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Households in the agent-based run.
    #[arg(long, default_value_t = 100_000)]
    pub households: u32,
    /// Merchants in the agent-based run.
    #[arg(long, default_value_t = 2_000)]
    pub merchants: u32,
    /// Days in the agent-based run.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Points of the sweep of that run (the target is for 100; fewer extrapolate).
    #[arg(long, default_value_t = 4)]
    pub sweep_points: usize,
    /// Directory for scratch files (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `coledger bench disburse`.
#[derive(Debug, Args)]
pub struct BenchDisburseArgs {
    /// Households enrolled and paid.
    #[arg(long, default_value_t = 100_000)]
    pub households: usize,
    /// Repetitions (fresh database each); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Directory for the scratch SQLite files (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `coledger disburse`.
#[derive(Debug, Args)]
pub struct DisburseArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Server secret and card settings.
    #[command(flatten)]
    pub programmes: ProgrammeArgs,
    /// The programme id.
    #[arg(long)]
    pub programme: String,
    /// `YYYY-MM` for a monthly run; a label (letters, digits, - _ .) for an emergency run.
    #[arg(long)]
    pub period: String,
    /// An emergency one-off run rather than the monthly one.
    #[arg(long)]
    pub emergency: bool,
    /// Pay only households of this area (emergency runs).
    #[arg(long, requires = "emergency")]
    pub area: Option<String>,
    /// Show totals, count and exceptions without paying.
    #[arg(long)]
    pub dry_run: bool,
    /// Test hook: stop after this many entries, as a crash would.
    #[arg(long, hide = true)]
    pub stop_after_entries: Option<usize>,
}

/// `coledger enrol`.
#[derive(Debug, Args)]
pub struct EnrolArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Server secret and card settings.
    #[command(flatten)]
    pub programmes: ProgrammeArgs,
    /// The programme id.
    #[arg(long)]
    pub programme: String,
    /// Enrol nothing if any row is rejected.
    #[arg(long)]
    pub all_or_nothing: bool,
    /// The CSV file (household_ref, name, dependents, area, [phone], [language]).
    pub file: PathBuf,
}

/// `coledger expire`.
#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Server secret and card settings.
    #[command(flatten)]
    pub programmes: ProgrammeArgs,
    /// The programme id.
    #[arg(long)]
    pub programme: String,
}

/// `coledger export …`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// The journal as pseudonymised research events (`coledger-events` v1 CSV; see
    /// simulations/EVENTS.md): keyed pseudonyms, coarsened times, households and participants
    /// that withheld consent left out. Measure it with `coledger simulate measure`.
    Research(ExportResearchArgs),
    /// The journal for auditors (`coledger-journal` v1 JSON lines; see docs/wire-format.md):
    /// every entry exactly as hashed, with its signed intent and stored chain links, from one
    /// consistent read-only snapshot (the service may keep running). Check it with
    /// `coledger verify`.
    Journal(ExportJournalArgs),
}

/// `coledger export journal`.
#[derive(Debug, Args)]
pub struct ExportJournalArgs {
    /// The database (opened read only; the service may keep running).
    #[command(flatten)]
    pub database: ReadOnlyDatabaseArgs,
    /// The file to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every signed journal checkpoint the service stored, from the same
    /// snapshot, to this file (as `{"checkpoints": [...]}`), for `coledger verify OUT
    /// --checkpoints FILE`.
    #[arg(long, value_name = "FILE")]
    pub checkpoints_out: Option<PathBuf>,
}

/// `coledger verify`.
#[derive(Debug, Args)]
#[command(
    override_usage = "coledger verify <FILE> [OPTIONS]\n       coledger verify --database-url <URL> [OPTIONS]"
)]
#[command(group(
    clap::ArgGroup::new("checkpoint_source")
        .args(["checkpoints", "database_url"])
        .multiple(true)
))]
pub struct VerifyArgs {
    /// The journal export (`coledger export journal --out FILE`).
    #[arg(required_unless_present = "database_url")]
    pub file: Option<PathBuf>,
    /// Verify a database instead of an export file: its journal is exported from one
    /// read-only snapshot and checked as it streams (nothing is written to disk), and it is
    /// held to every checkpoint stored in the database as well as to any `--checkpoints`
    /// files. The database is only read (a standby will do). Not read from the environment:
    /// name it.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    pub database_url: Option<String>,
    /// Threads checking signatures (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Heads kept from earlier: an earlier export, or a saved answer of `GET
    /// /v1/journal/heads` (a first line of JSON with `heads`). Each must still be a link of
    /// the chain, so a chain rewritten or cut short since is caught. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub expect_heads: Vec<PathBuf>,
    /// Signed checkpoints kept from the service: a saved answer of `GET
    /// /v1/journal/checkpoints` or `GET /v1/journal/checkpoints/{unit}`. Every signature
    /// must verify, and each checkpoint must be a link of the chain with the totals
    /// recomputed there, so a rewritten chain or a published total the journal does not add
    /// up to is caught. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
    /// The service's checkpoint key (base64url, the `key` of `GET /v1/journal/checkpoints`
    /// as you obtained it when you trusted it): every checkpoint must be signed with it, or
    /// with another key named so (repeatable: a service whose server secret was replaced
    /// signs with a new key). Without it, all checkpoints must share one key, which is
    /// printed for you to compare.
    #[arg(long, value_name = "KEY", requires = "checkpoint_source", value_parser = parse_public_key)]
    pub checkpoint_key: Vec<ledger::PublicKey>,
}

/// `--checkpoint-key`: 43 characters of unpadded base64url.
fn parse_public_key(text: &str) -> Result<ledger::PublicKey, String> {
    ledger::PublicKey::from_base64url(text)
        .map_err(|_| format!("{text:?} is not an ed25519 public key (43 characters of base64url)"))
}

/// `--grain-s`: a divisor of a day, a minute or more.
fn parse_grain_s(text: &str) -> Result<i64, String> {
    const DAY_S: i64 = 86_400;
    let grain: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of seconds"))?;
    if (60..=DAY_S).contains(&grain) && DAY_S % grain == 0 {
        Ok(grain)
    } else {
        Err(format!(
            "{grain} s: the grain is 60 to 86400 seconds and divides a day (60, 300, 900, 3600, \
             86400…)"
        ))
    }
}

/// `coledger export research`.
#[derive(Debug, Args)]
pub struct ExportResearchArgs {
    /// The database (read only; the service may keep running).
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The server secret (pseudonyms are keyed with it).
    #[command(flatten)]
    pub programmes: ProgrammeArgs,
    /// Times are rounded down to a multiple of this many seconds: at least a minute, at most
    /// a day, and a whole number of them in a day (60, 300, 900, 3600, 86400…), so a day's
    /// events never straddle two grains and `simulate measure` sees each day whole. Coarse
    /// times make a payment harder to match to a person by its moment.
    #[arg(long, default_value_t = 3600, value_parser = parse_grain_s)]
    pub grain_s: i64,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// `coledger simulate …`.
#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Runs a scenario file; writes summary.json, CSV time series and SVG charts to --out.
    Run(SimulateRunArgs),
    /// Runs a scenario for every value of one parameter, on every core.
    Sweep(SimulateSweepArgs),
    /// Measures an event file (the research export or a simulator's events).
    Measure(SimulateMeasureArgs),
}

/// `coledger simulate run`.
#[derive(Debug, Args)]
pub struct SimulateRunArgs {
    /// The scenario (TOML; see simulations/scenarios/).
    pub scenario: PathBuf,
    /// Directory for the outputs (created).
    #[arg(long, default_value = "simulation-out")]
    pub out: PathBuf,
}

/// `coledger simulate sweep`.
#[derive(Debug, Args)]
pub struct SimulateSweepArgs {
    /// The scenario (TOML).
    pub scenario: PathBuf,
    /// `name=from..to:step`, e.g. `redemption_fee=0..0.1:0.01` (a dotted key for others).
    #[arg(long)]
    pub param: String,
    /// Directory for the outputs (created).
    #[arg(long, default_value = "sweep-out")]
    pub out: PathBuf,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `coledger simulate measure`.
#[derive(Debug, Args)]
pub struct SimulateMeasureArgs {
    /// The event file (`# coledger-events v1` CSV or JSON lines).
    pub events: PathBuf,
    /// Directory for the outputs (created).
    #[arg(long, default_value = "measure-out")]
    pub out: PathBuf,
    /// Also measure each programme on its own (one more pass per programme).
    #[arg(long)]
    pub by_programme: bool,
    /// Length of one period of the time series and of LM-n per period, in days, counted from
    /// the first event's day.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660),
          conflicts_with = "calendar_months")]
    pub period_days: u32,
    /// Periods are calendar months (UTC) instead: a programme paying monthly on a fixed day
    /// then has one payday in each period.
    #[arg(long)]
    pub calendar_months: bool,
}

/// `coledger terminal …`.
#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    /// Creates the terminal's signing key (if the file is missing) and registers it for the
    /// merchant's account, with a proof of possession.
    Init(TerminalArgs),
    /// Asks for AMOUNT: prints the signed EMV QR code and its pay link, then waits until the
    /// request is paid (exit 0) or expires (exit 1).
    Charge(TerminalChargeArgs),
    /// Lists today's (UTC) payments received, with the total.
    Sales(TerminalArgs),
}

/// Where the terminal's service, token, account and key are.
#[derive(Debug, Args, Clone)]
pub struct TerminalArgs {
    /// The service, `http://host:port`.
    #[arg(long, env = "COLEDGER_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The merchant's operator token.
    #[arg(long, env = "COLEDGER_TOKEN")]
    pub token: String,
    /// The merchant's account to be paid into.
    #[arg(long, env = "COLEDGER_TERMINAL_ACCOUNT")]
    pub account: String,
    /// The terminal's signing key: 64 hex characters (created by `terminal init`).
    #[arg(
        long,
        env = "COLEDGER_TERMINAL_KEY_FILE",
        default_value = "terminal.key"
    )]
    pub key_file: PathBuf,
}

/// `coledger terminal charge`.
#[derive(Debug, Args)]
pub struct TerminalChargeArgs {
    /// The amount, in the unit's decimals (e.g. 12.50).
    pub amount: String,
    /// The terminal.
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// What it is for (on the statement).
    #[arg(long, default_value = "")]
    pub memo: String,
    /// Seconds the request stays payable.
    #[arg(long, default_value_t = 900)]
    pub expires_in_s: i64,
    /// The shop's name in the QR code (printable ASCII, 25 characters); default: its
    /// registered name when that is ASCII.
    #[arg(long)]
    pub name: Option<String>,
    /// The shop's city in the QR code (printable ASCII, 15 characters); default: its area.
    #[arg(long)]
    pub city: Option<String>,
    /// ISO 3166 country of the shop.
    #[arg(long, env = "COLEDGER_TERMINAL_COUNTRY", default_value = "ES")]
    pub country: String,
    /// Language of the shop's name when it is not in Latin letters (ISO 639-1).
    #[arg(long, default_value = "es")]
    pub language: String,
    /// This terminal's label in the QR code.
    #[arg(long, default_value = "cli")]
    pub label: String,
}

/// `coledger cards …`.
#[derive(Debug, Subcommand)]
pub enum CardsCommand {
    /// A printable sheet of a programme's active cards: A4, ten per page, each in its
    /// household's language (Arabic right to left).
    Print(CardsPrintArgs),
}

/// `coledger cards print`.
#[derive(Debug, Args)]
pub struct CardsPrintArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The programme id.
    #[arg(long)]
    pub programme: String,
    /// `pdf` (one file) or `svg` (one file per page: OUT-1.svg, OUT-2.svg, …).
    #[arg(long, default_value = "pdf")]
    pub format: String,
    /// Where to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// `coledger bench ledger`.
#[derive(Debug, Args)]
pub struct BenchLedgerArgs {
    /// Accounts payments are drawn between.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: usize,
    /// Payments per committer run.
    #[arg(long, default_value_t = 200_000)]
    pub payments: usize,
    /// Payments per naive-baseline run (it is slow, so fewer).
    #[arg(long, default_value_t = 2_000)]
    pub naive_payments: usize,
    /// Book apply operations timed per repetition.
    #[arg(long, default_value_t = 5_000_000)]
    pub book_ops: usize,
    /// Entries the steady-state Book run treats as its 60-second memory window (the default
    /// is 60 s at 100,000 entries/s); it warms up on two and a half windows first.
    #[arg(long, default_value_t = 6_000_000)]
    pub book_window: usize,
    /// Concurrent submitters, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    pub submitters: Vec<usize>,
    /// Payments committed, untimed, before each committer run's clock starts, so the Book
    /// holds as many recent intents as a long-running service (it keeps a minute's worth:
    /// 3,000,000 at 50,000/s). 0 measures a Book that starts empty.
    #[arg(long, default_value_t = 0)]
    pub warm_payments: usize,
    /// A PostgreSQL server to benchmark too; each run uses a fresh scratch database on it.
    #[arg(long, env = "COLEDGER_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Directory for scratch SQLite files (default: a temporary directory).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

/// `coledger bench api`.
#[derive(Debug, Args)]
pub struct BenchApiArgs {
    /// Funded accounts payments are drawn between.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: usize,
    /// Pre-signed payment intents per run; a run ends when they are sent or time is up.
    #[arg(long, default_value_t = 300_000)]
    pub payments: usize,
    /// Concurrent HTTP/1.1 keep-alive connections, comma-separated; one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub connections: Vec<usize>,
    /// Longest a run may take, in seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Offer this many requests per second in total, on a fixed schedule (open loop), to
    /// measure latency at that load. Without it each connection sends as soon as it is
    /// answered (closed loop), which measures the most the service can do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Signature verifier threads of the service under test (as `serve --verifier-threads`).
    #[arg(long, default_value_t = default_verifier_threads(),
          value_parser = verifier_threads_parser())]
    pub verifier_threads: usize,
    /// The committer's linger of the service under test, in milliseconds (as `serve
    /// --commit-linger-ms`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub commit_linger_ms: u64,
    /// A PostgreSQL server to benchmark too; each run uses a fresh scratch database on it.
    #[arg(long, env = "COLEDGER_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Directory for scratch SQLite files (default: a temporary directory).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

/// `coledger crash-writer`.
#[derive(Debug, Args)]
pub struct CrashWriterArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 32)]
    pub submitters: usize,
}
