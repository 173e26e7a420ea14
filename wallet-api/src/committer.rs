//! The committer: the single writer that turns verified intents into durable journal entries.
//!
//! Requests arrive on a bounded channel. The writer task takes one, drains whatever else is
//! queued (up to `max_batch`, optionally lingering a little for more), validates each against
//! the in-memory [`Book`], links the accepted ones into the journal, writes the whole batch in
//! one database transaction, commits (one fsync), and only then replies to everyone: a reply
//! means durable. An entry that fails validation is refused alone; the others commit.
//!
//! If a write fails, the outcome of the transaction is unknown (the COMMIT may have landed
//! before the connection broke), so the writer trusts storage, not memory: it reconnects,
//! retakes the lease and reloads the Book, verifying it, before it accepts anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ledger::journal::canonical_entry_bytes;
use ledger::{
    Account, AccountId, AccountStatus, Book, BookError, EntryId, IntentError, JournalEntry, Unit,
    UnitCode, VerifiedIntent,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::db::{BatchWrite, CommittedEntry, Database, LoadError, Loaded, Writer};

/// Tuning of the committer; the defaults suit both SQLite and PostgreSQL.
#[derive(Debug, Clone)]
pub struct CommitterConfig {
    /// Most requests written in one transaction.
    pub max_batch: usize,
    /// How long to wait for more requests once one arrived; zero commits what is queued at
    /// once. Natural batching (requests pile up while the previous fsync runs) usually beats
    /// waiting, so the default is zero.
    pub linger: Duration,
    /// Requests that may wait in the queue; submitters beyond it wait (back-pressure).
    pub queue_capacity: usize,
    /// Re-prove every invariant over all balances after this many batches (and after every
    /// batch in debug builds). `apply` keeps them by construction; this catches a bug in it.
    pub invariant_check_every: u64,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::ZERO,
            queue_capacity: 65_536,
            invariant_check_every: 1024,
        }
    }
}

/// The result of a committed (or already committed) intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The entry the intent produced.
    pub entry_id: EntryId,
    /// True when the intent had been committed before and this is its original result.
    pub duplicate: bool,
}

/// Why a request did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The intent does not describe a valid entry.
    #[error(transparent)]
    Invalid(#[from] IntentError),
    /// The Book refused it (funds, limits, status, authorisation, conflict, …).
    #[error(transparent)]
    Rejected(#[from] BookError),
    /// Storage failed; the request may be retried with the same intent id.
    #[error("storage unavailable, retry with the same intent id: {0}")]
    Unavailable(String),
    /// The committer has stopped.
    #[error("the committer has stopped")]
    Stopped,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitterStats {
    /// Transactions written.
    pub batches: AtomicU64,
    /// Entries committed.
    pub entries: AtomicU64,
    /// Requests refused by the Book.
    pub rejected: AtomicU64,
    /// Largest batch so far.
    pub max_batch: AtomicU64,
}

type Inspection = Box<dyn FnOnce(&Book) + Send>;

struct Submission {
    entry: JournalEntry,
    units: Vec<UnitCode>,
    canonical: Vec<u8>,
    intent_body: String,
    tags_json: String,
    reply: oneshot::Sender<Result<Committed, CommitError>>,
}

enum Command {
    Submit(Box<Submission>),
    AddUnit(Unit, oneshot::Sender<Result<(), CommitError>>),
    OpenAccount(Box<Account>, oneshot::Sender<Result<(), CommitError>>),
    SetStatus(
        AccountId,
        AccountStatus,
        oneshot::Sender<Result<(), CommitError>>,
    ),
    Inspect(Inspection),
}

/// A handle for submitting to the writer. Cheap to clone; the writer stops once every handle
/// is dropped and the queue is drained.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
    stats: Arc<CommitterStats>,
}

/// The writer task; await [`CommitterTask::join`] after dropping every [`Committer`] to
/// wait until everything queued has been committed.
pub struct CommitterTask(JoinHandle<()>);

impl CommitterTask {
    /// Waits for the writer to drain and stop. Returns an error if it stopped by panicking
    /// (a broken invariant), in which case the process should exit.
    pub async fn join(&mut self) -> Result<(), String> {
        (&mut self.0).await.map_err(|e| {
            tracing::error!(error = %e, "committer task ended abnormally");
            e.to_string()
        })
    }
}

impl Committer {
    /// Takes the writer lease, loads and verifies the ledger, and starts the writer task.
    /// Fails, without starting, if the lease is held elsewhere or the stored ledger is broken.
    pub async fn start(
        db: Database,
        config: CommitterConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Committer, CommitterTask), LoadError> {
        let mut writer = db.writer().await?;
        let loaded = writer.load().await?;
        tracing::info!(
            accounts = loaded.book.account_count(),
            entries = loaded.last_position,
            "ledger loaded and verified"
        );
        let (queue, inbox) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(CommitterStats::default());
        let task = WriterTask {
            inbox,
            db,
            writer: Some(writer),
            loaded,
            healthy: true,
            config,
            clock: clock.clone(),
            stats: stats.clone(),
        };
        let handle = tokio::spawn(task.run());
        Ok((
            Committer {
                queue,
                clock,
                stats,
            },
            CommitterTask(handle),
        ))
    }

    /// Commits the entry a verified intent asks for. Returns once it is durable, or with the
    /// original result if the intent was committed before.
    pub async fn submit(&self, intent: &VerifiedIntent) -> Result<Committed, CommitError> {
        let entry = intent.to_entry(EntryId::new(), self.clock.now_ms())?;
        // Serialise here, on the caller's task, so the single writer only hashes.
        let canonical = canonical_entry_bytes(&entry);
        let intent_body = intent.signed().canonical().to_owned();
        let tags_json = crate::db::tags_json(entry.tags());
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            units: entry.units(),
            entry,
            canonical,
            intent_body,
            tags_json,
            reply,
        };
        self.send(Command::Submit(Box::new(submission))).await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Registers a unit.
    pub async fn add_unit(&self, unit: Unit) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::AddUnit(unit, reply)).await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Opens an account.
    pub async fn open_account(&self, account: Account) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::OpenAccount(Box::new(account), reply))
            .await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Freezes, unfreezes or closes an account.
    pub async fn set_status(
        &self,
        id: AccountId,
        status: AccountStatus,
    ) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetStatus(id, status, reply)).await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Runs `look` on the committed Book between batches. For summaries and tests; request
    /// paths read storage instead, so reads never queue behind writes.
    pub async fn inspect<R: Send + 'static>(
        &self,
        look: impl FnOnce(&Book) -> R + Send + 'static,
    ) -> Result<R, CommitError> {
        let (reply, answer) = oneshot::channel();
        let inspection: Inspection = Box::new(move |book| {
            let _ = reply.send(look(book));
        });
        self.send(Command::Inspect(inspection)).await?;
        answer.await.map_err(|_| CommitError::Stopped)
    }

    /// Counters.
    pub fn stats(&self) -> &CommitterStats {
        &self.stats
    }

    async fn send(&self, command: Command) -> Result<(), CommitError> {
        self.queue
            .send(command)
            .await
            .map_err(|_| CommitError::Stopped)
    }
}

/// A reply held back until the batch's fate is known.
enum Pending {
    Entry(
        oneshot::Sender<Result<Committed, CommitError>>,
        Result<Committed, CommitError>,
    ),
    Admin(
        oneshot::Sender<Result<(), CommitError>>,
        Result<(), CommitError>,
    ),
    Inspect(Inspection),
}

struct WriterTask {
    inbox: mpsc::Receiver<Command>,
    db: Database,
    writer: Option<Writer>,
    loaded: Loaded,
    healthy: bool,
    config: CommitterConfig,
    clock: Arc<dyn Clock>,
    stats: Arc<CommitterStats>,
}

impl WriterTask {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.config.max_batch);
        while let Some(first) = self.inbox.recv().await {
            batch.push(first);
            self.fill(&mut batch).await;
            self.process(&mut batch).await;
        }
        tracing::info!("committer drained and stopped");
    }

    async fn fill(&mut self, batch: &mut Vec<Command>) {
        while batch.len() < self.config.max_batch {
            match self.inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        if self.config.linger.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.config.linger;
        while batch.len() < self.config.max_batch {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(command)) => batch.push(command),
                _ => break,
            }
        }
    }

    async fn process(&mut self, batch: &mut Vec<Command>) {
        if !self.healthy
            && let Err(e) = self.recover().await
        {
            let reason = format!("ledger storage is unavailable: {e}");
            for command in batch.drain(..) {
                refuse(command, &reason);
            }
            return;
        }
        let mut write = BatchWrite {
            now_ms: self.clock.now_ms(),
            ..BatchWrite::default()
        };
        let mut pending = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            pending.push(self.stage(command, &mut write));
        }
        let outcome = match (&mut self.writer, write.is_empty()) {
            (_, true) => Ok(()),
            (Some(writer), false) => writer.write(&write).await.map_err(|e| e.to_string()),
            (None, false) => Err("no writer connection".to_owned()),
        };
        match outcome {
            Ok(()) => self.after_commit(&write),
            Err(reason) => {
                tracing::error!(error = %reason, entries = write.entries.len(), "batch write failed; reloading from storage");
                self.healthy = false;
                for reply in &mut pending {
                    reply.fail_success(&reason);
                }
                if let Err(e) = self.recover().await {
                    tracing::error!(error = %e, "reload after failed write failed; will retry");
                }
            }
        }
        // Until storage has been reloaded the Book may hold entries that never committed, so
        // nobody may look at it (their inspection is dropped and reports Stopped).
        let book = self.healthy.then_some(&self.loaded.book);
        for reply in pending {
            reply.send(book);
        }
    }

    /// Validates one request against the Book and stages what it writes.
    fn stage(&mut self, command: Command, write: &mut BatchWrite) -> Pending {
        let book = &mut self.loaded.book;
        match command {
            Command::Submit(submission) => {
                let Submission {
                    entry,
                    units,
                    canonical,
                    intent_body,
                    tags_json,
                    reply,
                } = *submission;
                let result = match book.apply(&entry) {
                    Ok(()) => {
                        self.loaded.last_position = self.loaded.last_position.saturating_add(1);
                        let links = self.loaded.journal.append_canonical(&units, &canonical);
                        let committed = Committed {
                            entry_id: entry.id(),
                            duplicate: false,
                        };
                        write.entries.push(CommittedEntry {
                            position: self.loaded.last_position,
                            entry,
                            links,
                            intent_body,
                            tags_json,
                        });
                        Ok(committed)
                    }
                    Err(BookError::Duplicate { entry_id, .. }) => Ok(Committed {
                        entry_id,
                        duplicate: true,
                    }),
                    Err(e) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        Err(CommitError::Rejected(e))
                    }
                };
                Pending::Entry(reply, result)
            }
            Command::AddUnit(unit, reply) => {
                let result = book.add_unit(unit.clone()).map(|()| write.units.push(unit));
                Pending::Admin(reply, result.map_err(CommitError::from))
            }
            Command::OpenAccount(account, reply) => {
                let result = book
                    .open_account((*account).clone())
                    .map(|()| write.accounts.push(*account));
                Pending::Admin(reply, result.map_err(CommitError::from))
            }
            Command::SetStatus(id, status, reply) => {
                let result = book
                    .set_status(id, status)
                    .map(|()| write.statuses.push((id, status)));
                Pending::Admin(reply, result.map_err(CommitError::from))
            }
            Command::Inspect(look) => Pending::Inspect(look),
        }
    }

    fn after_commit(&mut self, write: &BatchWrite) {
        let entries = u64::try_from(write.entries.len()).unwrap_or(u64::MAX);
        let batches = self
            .stats
            .batches
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        self.stats.entries.fetch_add(entries, Ordering::Relaxed);
        self.stats.max_batch.fetch_max(entries, Ordering::Relaxed);
        let every = self.config.invariant_check_every.max(1);
        if (cfg!(debug_assertions) || batches.is_multiple_of(every))
            && let Err(violation) = self.loaded.book.check_invariants()
        {
            // A broken ledger must stop, not limp on.
            panic!("ledger invariant broken after commit: {violation}");
        }
    }

    /// Makes memory agree with storage again after a failed write: reuse the connection if it
    /// still works, else drop it (releasing the lease) and take the lease anew.
    async fn recover(&mut self) -> Result<(), LoadError> {
        if let Some(writer) = self.writer.as_mut()
            && let Ok(loaded) = writer.load().await
        {
            self.loaded = loaded;
            self.healthy = true;
            return Ok(());
        }
        self.writer = None;
        let mut writer = self.db.writer().await?;
        self.loaded = writer.load().await?;
        self.writer = Some(writer);
        self.healthy = true;
        tracing::info!("writer reconnected and ledger reloaded");
        Ok(())
    }
}

impl Pending {
    /// The batch did not commit: successes become "unavailable"; refusals stand.
    fn fail_success(&mut self, reason: &str) {
        let unavailable = || CommitError::Unavailable(reason.to_owned());
        match self {
            Pending::Entry(_, result @ Ok(_)) => *result = Err(unavailable()),
            Pending::Admin(_, result @ Ok(())) => *result = Err(unavailable()),
            _ => {}
        }
    }

    fn send(self, book: Option<&Book>) {
        // A submitter that gave up waiting has dropped its receiver; nothing to do then.
        match self {
            Pending::Entry(reply, result) => {
                let _ = reply.send(result);
            }
            Pending::Admin(reply, result) => {
                let _ = reply.send(result);
            }
            Pending::Inspect(look) => {
                if let Some(book) = book {
                    look(book);
                }
            }
        }
    }
}

fn refuse(command: Command, reason: &str) {
    let unavailable = || CommitError::Unavailable(reason.to_owned());
    match command {
        Command::Submit(s) => {
            let _ = s.reply.send(Err(unavailable()));
        }
        Command::AddUnit(_, reply)
        | Command::OpenAccount(_, reply)
        | Command::SetStatus(_, _, reply) => {
            let _ = reply.send(Err(unavailable()));
        }
        // Dropping the inspection drops its reply sender; the caller sees Stopped.
        Command::Inspect(_) => {}
    }
}
