//! Storage: the only module that speaks SQL.
//!
//! A [`Database`] is a pool for reads plus what is needed to open the one [`Writer`]. The
//! writer holds the *writer lease* (an advisory lock on PostgreSQL, an exclusive file lock
//! beside an SQLite file) on the very connection it writes with, so if it loses the lease it
//! also loses the ability to write: two processes can never both extend a unit's journal.

/// Runs the same query text on whichever pool the database has.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Database::Sqlite { pool: $pool, .. } => $body,
            Database::Postgres { pool: $pool, .. } => $body,
        }
    };
}

pub mod activation;
pub mod chain;
pub mod checkpoints;
mod copy;
pub mod export;
mod hosts;
pub use hosts::libpq_url;
mod load;
pub mod naive;
mod postgres;
pub mod programmes;
pub use postgres::WRITER_APPLICATION_NAME;
pub mod refunds;
mod rows;
pub mod scratch;
pub mod service;
mod sqlite;
pub mod statement;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ledger::book::InvariantViolation;
use ledger::journal::{ChainError, ChainHead, JournalLink};
use ledger::{
    Account, AccountId, AccountStatus, BookError, EntryError, JournalEntry, ParticipantId,
    PaymentRequestId, PublicKey, Unit, UnitCode,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use chain::{ChainHeads, PostingLinks};
pub use load::Loaded;
pub use rows::tags_json;

/// The database used when none is given: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/coledger.db";

/// Connections in the read pool.
pub const READ_POOL_SIZE: u32 = 8;

/// How long a statement waits on a locked SQLite database before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL advisory-lock key of the writer lease ("coledger" in ASCII, truncated).
const WRITER_LEASE_KEY: i64 = 0x636f_6c65_6467_6572;

impl DbError {
    /// Whether the database could not be reached (down, restarting, network, pool exhausted)
    /// rather than refusing or returning something wrong: worth retrying shortly.
    pub fn is_unavailable(&self) -> bool {
        if self.is_storage_full() {
            return true;
        }
        match self {
            DbError::Sql(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Protocol(_)
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    // PostgreSQL: admin shutdown, crash shutdown, cannot connect now; SQLite: busy.
                    .is_some_and(|code| matches!(&*code, "57P01" | "57P02" | "57P03" | "5"))
            }
            DbError::Io { .. } => true,
            // Mid-failover: the standby is being promoted, or the primary restarting.
            DbError::NoPrimary(_) => true,
            _ => false,
        }
    }

    /// Whether the database refused for want of disk space (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`, or the OS's ENOSPC): worth retrying once space is freed,
    /// and worth telling the operator exactly that.
    pub fn is_storage_full(&self) -> bool {
        let io_full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::StorageFull;
        match self {
            DbError::Sql(sqlx::Error::Io(e)) | DbError::Io { source: e, .. } => io_full(e),
            DbError::Sql(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| matches!(&*code, SQLITE_FULL | POSTGRES_DISK_FULL)),
            // Rolled back behind a batch that hit the full disk: the same cause.
            DbError::PreviousBatchFailed { storage_full } => *storage_full,
            _ => false,
        }
    }
}

/// SQLite's result code for "database or disk is full" (it has no extended variants).
const SQLITE_FULL: &str = "13";

/// PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources).
const POSTGRES_DISK_FULL: &str = "53100";

/// How long a request waits for a pooled connection before it is told storage is
/// unavailable (rather than hanging while the database is down).
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`, or does not parse.
    #[error("bad database URL {url:?}: {reason}")]
    BadUrl {
        /// The URL with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process writes to this database.
    #[error(
        "another coledger process holds the writer lease for {0}; stop it first (only one writer per database)"
    )]
    LeaseHeld(String),
    /// None of the PostgreSQL servers named accepts writes: each is unreachable or a standby
    /// in recovery (say, while a standby is being promoted).
    #[error("no PostgreSQL server that accepts writes: {0}")]
    NoPrimary(String),
    /// Another writer took the lease over (its epoch is newer); this one must stop writing.
    #[error("the writer lease was taken over by another process; this writer stops writing")]
    LeaseLost,
    /// The batch before this one did not commit, so this one was rolled back to keep the
    /// journal free of gaps.
    #[error("an earlier batch failed, so this one was rolled back")]
    PreviousBatchFailed {
        /// Whether the earlier batch failed for want of disk space.
        storage_full: bool,
    },
    /// A file-system problem, such as a data directory that cannot be created.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A stored row that does not make a valid domain value.
    #[error("corrupt {table} row: {reason}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Applying the schema failed.
    #[error("migrating the schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database said no, or could not be reached.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Why the ledger stored in a database cannot be trusted; the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored entry is not a valid entry.
    #[error("entry at position {position} is invalid: {source}")]
    Entry {
        /// Its position.
        position: i64,
        /// Why.
        source: EntryError,
    },
    /// A card record says one account replaced another that the ledger cannot link.
    #[error("the card records say account {new} replaced account {old}, which cannot be: {source}")]
    CardReplacement {
        /// The replaced card's account.
        old: ledger::AccountId,
        /// The account of the card that replaced it.
        new: ledger::AccountId,
        /// Why.
        source: BookError,
    },
    /// A stored entry does not apply to the balances before it.
    #[error("entry at position {position} does not apply: {source}")]
    Book {
        /// Its position.
        position: i64,
        /// Why.
        source: BookError,
    },
    /// A posting row's links to its accounts' previous entries are not what the journal
    /// implies (altered, or written by a process that predates migration 0006): statements
    /// walking them would skip or repeat entries.
    #[error(
        "posting links of entry position {position} are {stored:?}, the journal implies {expected:?}"
    )]
    PostingLinks {
        /// The entry's position.
        position: i64,
        /// The links stored with its postings, in posting order.
        stored: Vec<PostingLinks>,
        /// The links the entries before it imply.
        expected: Vec<PostingLinks>,
    },
    /// The hash chain is broken: the journal was altered.
    #[error("journal hash chain broken at entry position {position}: {source}")]
    Chain {
        /// The entry's position.
        position: i64,
        /// Why.
        source: ChainError,
    },
    /// Journal links that belong to no entry, or entries with none.
    #[error("journal has {links} links for {expected} expected; rows were added or removed")]
    LinkCount {
        /// Links stored.
        links: usize,
        /// Links the entries need.
        expected: usize,
    },
    /// A posting or journal row names an entry position that holds no entry (PostgreSQL
    /// has no foreign key from these rows to their entry since migration 0007, so the load
    /// is what proves every row belongs to one).
    #[error("{table} row names entry position {position}, which holds no entry")]
    OrphanRow {
        /// `posting` or `journal`.
        table: &'static str,
        /// The position it names.
        position: i64,
    },
    /// Balances break an invariant.
    #[error("ledger invariant broken: {0}")]
    Invariant(#[from] InvariantViolation),
    /// A stored checkpoint read at start cannot be read or does not verify.
    #[error(
        "a signed checkpoint of unit {unit} stored in the database does not hold ({reason}): \
         it was altered or forged there. Not starting; compare the journal with checkpoints \
         saved outside the database (`coledger verify --checkpoints`)"
    )]
    CheckpointUntrusted {
        /// The unit, as stored.
        unit: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Storage holds another entry than the one a signed checkpoint states.
    #[error(
        "storage holds another entry {seq} of unit {unit}'s journal than the service's signed \
         checkpoint states: the journal was rewritten after it was signed. Not starting"
    )]
    CheckpointDiverged {
        /// The unit.
        unit: UnitCode,
        /// The checkpoint's sequence number.
        seq: u64,
    },
    /// Storage ends before a signed checkpoint's entry.
    #[error(
        "storage holds unit {unit}'s journal up to entry {stored}, but the service's signed \
         checkpoint states entries up to {checkpointed}: entries were removed. Not starting"
    )]
    CheckpointBeyondJournal {
        /// The unit.
        unit: UnitCode,
        /// The checkpoint's sequence number.
        checkpointed: u64,
        /// The last one storage holds.
        stored: u64,
    },
    /// An entry after the latest signed checkpoints is not what its stored intent signed.
    #[error(
        "entry at position {position} is not what was signed: {problem}. Not starting: the \
         stored journal was altered"
    )]
    Unsigned {
        /// The entry's position.
        position: i64,
        /// What the auditor's check found.
        problem: ledger::journal::audit::Problem,
    },
    /// Checking signatures stopped before it finished (a checking thread failed).
    #[error(
        "checking the signatures of the entries from position {position} on stopped \
         unexpectedly; not starting without that check"
    )]
    SignatureCheckStopped {
        /// The first entry of the part that was not checked.
        position: i64,
    },
    /// An entry position holds no entry with postings: positions run on without a gap, so
    /// an entry was removed, or its postings were.
    #[error(
        "entry position {position} holds no entry with postings: positions run on without a \
         gap, so an entry or its postings were removed. Not starting"
    )]
    MissingEntry {
        /// The first position missing.
        position: i64,
    },
    /// Storage ends before entries this process committed there and acknowledged.
    #[error(
        "storage holds unit {unit}'s journal up to entry {stored}, but this service committed \
         and acknowledged entries up to {acknowledged}: this is not the database it wrote to \
         (a standby promoted before it had them, a stale old primary, or a restored backup). \
         Not writing to it. Point the service at the server that holds them, or restart the \
         service to accept this database as it is (entries {stored_next}..={acknowledged} of \
         {unit} are then lost)",
        stored_next = stored.saturating_add(1)
    )]
    LostAcknowledged {
        /// The unit.
        unit: UnitCode,
        /// The last sequence number of the unit's chain this process acknowledged.
        acknowledged: u64,
        /// The last one storage holds.
        stored: u64,
    },
    /// Storage holds another entry where this process committed and acknowledged one.
    #[error(
        "storage holds another entry {seq} of unit {unit}'s journal than the one this service \
         committed and acknowledged: the database's history forked (a stale old primary that \
         took writes after a failover?). Not writing to it; point the service at the server \
         it wrote to"
    )]
    DivergedFromAcknowledged {
        /// The unit.
        unit: UnitCode,
        /// The sequence number in its chain.
        seq: u64,
    },
}

/// An entry with its place in the journal, ready to store.
#[derive(Debug, Clone)]
pub struct CommittedEntry {
    /// Global commit order, from 1.
    pub position: i64,
    /// The entry.
    pub entry: JournalEntry,
    /// Its links in each unit's chain.
    pub links: Vec<JournalLink>,
    /// The canonical JSON of the intent that was signed.
    pub intent_body: String,
    /// The entry's tags as stored (JSON), prepared off the writer.
    pub tags_json: String,
    /// The payment request the entry settles, if any.
    pub payment_request: Option<PaymentRequestId>,
    /// That request's deadline (ms) as its payment's check read it (`None`: unknown): the
    /// read model keeps the request until then, storage after.
    pub request_expires_at: Option<i64>,
    /// Each posting's links to its accounts' previous entries, in posting order.
    pub links_by_posting: Vec<PostingLinks>,
}

/// An account to open, with the participant it belongs to.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The ledger's account.
    pub account: Account,
    /// Its owner, if it has one (system accounts may not).
    pub owner: Option<ParticipantId>,
}

/// Everything one batch writes, in one transaction.
#[derive(Debug, Default)]
pub struct BatchWrite {
    /// New units.
    pub units: Vec<Unit>,
    /// New accounts.
    pub accounts: Vec<NewAccount>,
    /// Status changes.
    pub statuses: Vec<(AccountId, AccountStatus)>,
    /// Keys registered (or replaced) for accounts.
    pub authorities: Vec<(AccountId, PublicKey)>,
    /// Committed entries, in position order.
    pub entries: Vec<CommittedEntry>,
    /// The time of the batch, for `created_at` of new units and accounts.
    pub now_ms: i64,
}

impl BatchWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
            && self.accounts.is_empty()
            && self.statuses.is_empty()
            && self.authorities.is_empty()
            && self.entries.is_empty()
    }
}

/// A database: SQLite (embedded default) or PostgreSQL. Cloning is cheap (every request's
/// handler state holds one), so everything in it is shared rather than copied.
#[derive(Clone, Debug)]
pub enum Database {
    /// An SQLite file.
    Sqlite {
        /// Read pool.
        pool: SqlitePool,
        /// How to open the writer's own connection.
        options: Arc<SqliteConnectOptions>,
        /// The lock file that is the writer lease.
        lease_path: Arc<Path>,
    },
    /// A PostgreSQL server, or several of which one (the primary) accepts writes.
    Postgres {
        /// Read pool. It follows the primary: its connect options are pointed at whichever
        /// server the writer last found accepting writes.
        pool: PgPool,
        /// The servers, in the order given, to find the primary among.
        servers: Arc<[PgConnectOptions]>,
    },
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Refuses a SQLite URL whose file does not exist, for commands that must never make a new
/// ledger at a mistyped path.
pub(crate) fn require_sqlite_file(
    url: &str,
    options: &SqliteConnectOptions,
) -> Result<(), DbError> {
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.exists() {
        return Ok(());
    }
    Err(DbError::BadUrl {
        url: redact(url),
        reason: format!(
            "there is no database file at {}; check the path (only `coledger serve` creates a \
             new ledger)",
            file.display()
        ),
    })
}

impl Database {
    /// Connects to a database that must exist already: a SQLite URL naming no file is an
    /// error, not a new empty ledger (a mistyped path would otherwise make one, and a backup
    /// or a run would carry on against it). Only `serve`, `restore` and setting up create.
    pub async fn connect_existing(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| DbError::BadUrl {
                url: redact(url),
                reason: e.to_string(),
            })?;
            require_sqlite_file(url, &options)?;
        }
        Self::connect(url).await
    }

    /// Connects, creating the SQLite file and its directory if missing. Durability is set
    /// here: SQLite in WAL mode with `synchronous=FULL`, PostgreSQL with
    /// `synchronous_commit=on`, so a committed transaction survives power loss.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let bad = |reason: String| DbError::BadUrl {
            url: redact(url),
            reason,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let file = options.get_filename().to_owned();
            // sqlx rewrites `sqlite::memory:` to a shared in-memory name, so judge the URL.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if in_memory || file.as_os_str().is_empty() {
                return Err(bad(
                    "an in-memory SQLite database is not durable; give a file path".into(),
                ));
            }
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                    what: format!("creating data directory {}", dir.display()),
                    source,
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(READ_POOL_SIZE)
                .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await?;
            let mut lease_path = file.into_os_string();
            lease_path.push(".writer-lease");
            Ok(Database::Sqlite {
                pool,
                options: Arc::new(options),
                lease_path: Path::new(&lease_path).into(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let servers: Arc<[PgConnectOptions]> = hosts::parse(url)
                .map_err(bad)?
                .into_iter()
                .map(|options| options.options([("synchronous_commit", "on")]))
                .collect();
            let (conn, primary) = hosts::connect_primary(&servers, None).await?;
            // Only a check: the pool opens its own connections.
            let _ = sqlx::Connection::close(conn).await;
            let pool = PgPoolOptions::new()
                .max_connections(READ_POOL_SIZE)
                .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                // Never read from a standby: it may lag the primary (synchronous commit waits
                // for the standby to flush, not to apply), so a read could miss a write that
                // was already answered. The pool retries until it finds the primary again.
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
                            .fetch_one(conn)
                            .await?;
                        if in_recovery {
                            return Err(sqlx::Error::Protocol(
                                "the server is a standby in recovery; reads go to the primary"
                                    .into(),
                            ));
                        }
                        Ok(())
                    })
                })
                .connect_with(servers[primary].clone())
                .await?;
            Ok(Database::Postgres { pool, servers })
        } else {
            Err(bad(
                "expected sqlite://path/to/file.db or postgres://user@host/db".into(),
            ))
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Database::Sqlite { pool, .. } => migrations::sqlite().await?.run(pool).await?,
            Database::Postgres { pool, .. } => migrations::postgres().await?.run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Database::Sqlite { pool, .. } => sqlite::ping(pool).await,
            Database::Postgres { pool, servers } => match postgres::ping(pool).await {
                // The primary may have moved (a standby promoted): look for it, so that reads
                // and readiness follow even before the writer needs to.
                Err(e) if servers.len() > 1 && e.is_unavailable() => {
                    let (conn, primary) = hosts::connect_primary(servers, None).await?;
                    let _ = sqlx::Connection::close(conn).await;
                    Self::follow(pool, servers, primary);
                    postgres::ping(pool).await
                }
                outcome => outcome,
            },
        }
    }

    /// Points the read pool at `servers[primary]` if it is not already pointed there (its
    /// open connections stay; broken ones fail their check and are replaced).
    fn follow(pool: &PgPool, servers: &[PgConnectOptions], primary: usize) {
        let current = pool.connect_options();
        let target = &servers[primary];
        if current.get_host() != target.get_host()
            || current.get_port() != target.get_port()
            || current.get_socket() != target.get_socket()
        {
            tracing::warn!(server = %hosts::describe(target), "reads follow the primary to another server");
            pool.set_connect_options(target.clone());
        }
    }

    /// Takes the writer lease and opens the writer's connection. Fails with
    /// [`DbError::LeaseHeld`] if another process writes to this database.
    pub async fn writer(&self) -> Result<Writer, DbError> {
        match self {
            Database::Sqlite {
                pool,
                options,
                lease_path,
            } => Ok(Writer::Sqlite(
                sqlite::SqliteWriter::open(options, lease_path, pool).await?,
            )),
            Database::Postgres { pool, servers } => {
                // Looked for on every (re)open: after a promotion the writer's next attempt
                // finds the new primary, and the reads go with it.
                let (conn, primary) =
                    hosts::connect_primary(servers, Some(WRITER_APPLICATION_NAME)).await?;
                let writer =
                    postgres::PgWriter::open(conn, &servers[primary], WRITER_LEASE_KEY).await?;
                Self::follow(pool, servers, primary);
                Ok(Writer::Postgres(writer))
            }
        }
    }

    /// Closes the read pool.
    pub async fn close(&self) {
        match self {
            Database::Sqlite { pool, .. } => pool.close().await,
            Database::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// The single writer: holds the lease and the connections all ledger writes go through.
/// Load the ledger with it, then split it into [`Lane`]s to write.
#[derive(Debug)]
pub enum Writer {
    /// SQLite.
    Sqlite(sqlite::SqliteWriter),
    /// PostgreSQL.
    Postgres(postgres::PgWriter),
}

impl Writer {
    /// Loads and re-verifies the whole ledger: see [`load`]. Paid payment requests are read
    /// only if still payable at `now_ms`.
    pub async fn load(&mut self, now_ms: i64) -> Result<Loaded, LoadError> {
        self.load_with(&LoadOptions::at(now_ms)).await
    }

    /// [`Writer::load`] with the options the committer uses (see [`LoadOptions`]).
    pub async fn load_with(&mut self, options: &LoadOptions) -> Result<Loaded, LoadError> {
        match self {
            Writer::Sqlite(w) => load::load(w, options).await,
            Writer::Postgres(w) => load::load(w, options).await,
        }
    }

    /// The writer's connections as lanes: one for SQLite (it has one writing connection),
    /// two for PostgreSQL, so one batch's inserts can run while the previous commits.
    pub fn into_lanes(self) -> Vec<Lane> {
        match self {
            Writer::Sqlite(w) => vec![Lane::Sqlite(w)],
            Writer::Postgres(w) => w.into_lanes().into_iter().map(Lane::Postgres).collect(),
        }
    }
}

/// How to load, besides rebuilding and verifying the ledger.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The time of the load (ms): paid payment requests are read only if still payable then.
    pub now_ms: i64,
    /// Intents and payments with an entry time before this (ms) may be forgotten as soon as
    /// the replay has passed them, as the committer forgets them after the load anyway; so
    /// the load's memory peak follows the committer's window, not the journal. `None`:
    /// remember everything until the caller forgets.
    pub forget_before_ms: Option<i64>,
    /// With `forget_before_ms`, how many intents the replay gathers before forgetting the
    /// older ones: each forgetting becomes a generation of fingerprints, so not too few.
    pub forget_every: usize,
    /// Each unit's chain head as this process last committed and acknowledged it (empty at
    /// start-up): storage must hold those entries, or the load is refused with
    /// [`LoadError::LostAcknowledged`] or [`LoadError::DivergedFromAcknowledged`].
    pub acknowledged: BTreeMap<UnitCode, ChainHead>,
    /// The deployment's checkpoint key (see `crate::checkpoints`): storage must hold the entry
    /// that each unit's newest checkpoint signed with it states, with its hash, and reach the
    /// newest checkpoint whoever signed it; every checkpoint read must verify
    /// ([`LoadError::CheckpointUntrusted`], [`LoadError::CheckpointDiverged`],
    /// [`LoadError::CheckpointBeyondJournal`]). `None`: stored checkpoints are not read.
    pub checkpoint_key: Option<ledger::PublicKey>,
    /// Whether every entry after the latest trusted checkpoints (every entry, in a unit
    /// with none) must be what its stored intent signed, by the auditor's rules
    /// ([`LoadError::Unsigned`]). The checkpoints vouch for the entries before them: a
    /// change there changes the hash they signed.
    pub verify_signatures: bool,
}

impl LoadOptions {
    /// Intents gathered between two forgettings while loading: a million intents are about
    /// 100 MB of memory, and fingerprints in generations of a million need few filters.
    pub const FORGET_EVERY: usize = 1_000_000;

    /// A load at `now_ms` that remembers everything and expects nothing.
    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms,
            forget_before_ms: None,
            forget_every: Self::FORGET_EVERY,
            acknowledged: BTreeMap::new(),
            checkpoint_key: None,
            verify_signatures: false,
        }
    }
}

/// One writing connection. Batches are handed to lanes in order; each commits only after the
/// batch before it has committed (and rolls back if that one failed), so whatever the
/// interleaving, the journal on disk is always a prefix of what was staged: no gaps.
#[derive(Debug)]
pub enum Lane {
    /// SQLite.
    Sqlite(sqlite::SqliteWriter),
    /// PostgreSQL.
    Postgres(postgres::PgLane),
}

impl Lane {
    /// Writes `batch` in one transaction, then commits it once `previous` has committed.
    pub async fn write_after(
        &mut self,
        batch: &BatchWrite,
        previous: Previous,
    ) -> Result<(), DbError> {
        match self {
            Lane::Sqlite(w) => w.write_after(batch, previous).await,
            Lane::Postgres(w) => w.write_after(batch, previous).await,
        }
    }

    /// Ends the lane, giving the writer's lease back before it returns, so that a writer
    /// started just after (a restart, a recovery) finds it free. Dropping a PostgreSQL
    /// connection only closes its socket, and the server lets the advisory lock go when the
    /// backend notices, a moment later: a new writer could still find the lease held (seen
    /// in CI, where a test restarted its committer at once).
    pub async fn close(self) {
        match self {
            // The lease is a file lock, let go when the writer is dropped.
            Lane::Sqlite(_) => {}
            Lane::Postgres(lane) => lane.close().await,
        }
    }
}

/// How a batch ended, as the batch after it learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Committed.
    Committed,
    /// Not committed.
    Failed {
        /// For want of disk space (so the batch after it is refused for the same reason).
        storage_full: bool,
    },
}

/// The outcome of the batch before, which a lane waits for before committing its own.
#[derive(Debug, Default)]
pub struct Previous(Option<tokio::sync::oneshot::Receiver<BatchOutcome>>);

impl Previous {
    /// Waits for the batch before: `Some(receiver)` of its outcome, or `None` if there is none.
    pub fn new(receiver: Option<tokio::sync::oneshot::Receiver<BatchOutcome>>) -> Self {
        Self(receiver)
    }

    async fn outcome(self) -> Result<(), DbError> {
        match self.0 {
            None => Ok(()),
            Some(receiver) => match receiver.await {
                Ok(BatchOutcome::Committed) => Ok(()),
                Ok(BatchOutcome::Failed { storage_full }) => {
                    Err(DbError::PreviousBatchFailed { storage_full })
                }
                // Its lane went away without saying: not committed either.
                Err(_) => Err(DbError::PreviousBatchFailed {
                    storage_full: false,
                }),
            },
        }
    }
}

/// An account with the participant it belongs to, as stored.
pub(crate) type OwnedAccount = (Account, Option<ParticipantId>);

/// Entries read back, by position; an entry that no longer validates is kept as its error so
/// the loader can name the position.
type StoredEntries = Vec<(i64, Result<JournalEntry, EntryError>)>;

/// What a backend provides for [`load`]: plain reads, in order.
trait LoadSource {
    async fn units(&mut self) -> Result<Vec<Unit>, DbError>;
    /// Accounts as stored, in creation order.
    async fn accounts(&mut self) -> Result<Vec<OwnedAccount>, DbError>;
    /// Each programme unit's policy (every rule version).
    async fn policies(&mut self) -> Result<Vec<(ledger::UnitCode, ledger::UnitPolicy)>, DbError>;
    /// Approved merchants' accounts with their category.
    async fn payees(&mut self) -> Result<Vec<(ledger::AccountId, ledger::CategoryCode)>, DbError>;
    /// Each replaced card's account with its replacement's (the Book's
    /// [`ledger::Book::link_replacement`]), oldest replacement first.
    async fn card_replacements(
        &mut self,
    ) -> Result<Vec<(ledger::AccountId, ledger::AccountId)>, DbError>;
    /// Payment requests paid and still payable at `now_ms` (the rest cannot be paid again
    /// anyway), with the position of the entry that paid each and how long to keep it.
    async fn paid_requests(&mut self, now_ms: i64) -> Result<Vec<rows::PaidRequest>, DbError>;
    /// Every journal link with its entry position, ordered by position then unit.
    async fn links(&mut self) -> Result<Vec<(i64, JournalLink)>, DbError>;
    /// The highest entry position, 0 if none.
    async fn max_position(&mut self) -> Result<i64, DbError>;
    /// The lowest and highest entry positions posting rows name, `None` if there are none.
    async fn posting_positions(&mut self) -> Result<Option<(i64, i64)>, DbError>;
    /// Entries with `after < position <= up_to`, in order.
    async fn entries(&mut self, after: i64, up_to: i64) -> Result<StoredEntries, DbError>;
    /// The signed intents stored with entries `after < position <= up_to`, in order.
    async fn intent_bodies(
        &mut self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, String)>, DbError>;
    /// The units that have stored checkpoints.
    async fn checkpoint_units(&mut self) -> Result<Vec<String>, DbError>;
    /// One unit's stored checkpoints below sequence `below`, newest first, at most `limit`:
    /// sequence and body.
    async fn checkpoints_below(
        &mut self,
        unit: &str,
        below: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError>;
    /// The chain links of the postings of those entries, by position then index.
    async fn posting_links(
        &mut self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, PostingLinks)>, DbError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://coledger:hunter2@db.example:5432/ledger"),
            "postgres://coledger:***@db.example:5432/ledger"
        );
        assert_eq!(
            redact("sqlite://data/coledger.db"),
            "sqlite://data/coledger.db"
        );
    }

    #[test]
    fn a_full_disk_is_told_apart_from_an_unreachable_database() {
        let full = DbError::Sql(sqlx::Error::Io(std::io::Error::from_raw_os_error(28)));
        assert!(full.is_storage_full() && full.is_unavailable());
        let refused = DbError::Sql(sqlx::Error::Io(
            std::io::ErrorKind::ConnectionRefused.into(),
        ));
        assert!(!refused.is_storage_full() && refused.is_unavailable());
        let io = DbError::Io {
            what: "creating data directory".into(),
            source: std::io::ErrorKind::StorageFull.into(),
        };
        assert!(io.is_storage_full());
        assert!(!DbError::LeaseLost.is_storage_full());
    }
}
