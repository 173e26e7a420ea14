//! Command-line and environment configuration: the only place settings are read. Every
//! setting has a `COLEDGER_…` environment variable, and `--help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Measure performance; prints figures for BENCHMARKS.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Test helper: commit payments forever, printing each acknowledged intent id. Used by
    /// the crash tests, which kill it mid-batch.
    #[command(hide = true)]
    CrashWriter(CrashWriterArgs),
}

/// Where the ledger lives.
#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// `sqlite://path/file.db` (created if missing) or `postgres://user:pass@host/db`.
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
    /// Load the demo scheme first if the database has no units yet.
    #[arg(long, env = "COLEDGER_DEMO")]
    pub demo: bool,
    /// OS threads that parse and batch-verify signed intents, off the async threads.
    #[arg(long, env = "COLEDGER_VERIFIER_THREADS", default_value_t = 2)]
    pub verifier_threads: usize,
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
    /// Concurrent submitters, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    pub submitters: Vec<usize>,
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
    /// Signature verifier threads of the service under test.
    #[arg(long, default_value_t = 2)]
    pub verifier_threads: usize,
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
