//! The committer: the single writer that turns verified intents into durable journal entries.
//!
//! Requests arrive on a bounded channel. The writer task takes one, drains whatever else is
//! queued (up to `max_batch`, optionally lingering a little for more), validates each against
//! the in-memory [`Book`], links the accepted ones into the journal, and hands the batch to a
//! *lane*: a task owning one writing connection, which writes the batch in one transaction,
//! commits (one fsync), and only then replies to everyone: a reply means durable. An entry that
//! fails validation is refused alone; the others commit.
//!
//! On PostgreSQL up to [`PIPELINE_DEPTH`] batches are in flight: while one commits, a second
//! connection inserts the next. The writer forms a batch only when a lane is free, so
//! everything that arrived meanwhile joins it (SQLite, with one lane, commits one at a time). Commits stay in batch order (a lane
//! commits only after the batch before it did, and rolls back if that one failed), so storage
//! always holds a gap-free prefix of what was staged. Batches that create units or accounts or
//! change statuses run alone, since a later batch on another connection could not see them yet.
//!
//! If a write fails, the outcome of the transaction is unknown (the COMMIT may have landed
//! before the connection broke), so the writer trusts storage, not memory: it waits for the
//! batches in flight, reconnects, retakes the lease and reloads the Book, verifying it, before
//! it accepts anything else. Reads through [`Committer::inspect`] see only committed state.
//!
//! Payment requests: because the writer sees every payment in order, it is where a request
//! is settled for good. It refuses a second payment of a request, a payment staged after the
//! request's deadline by the writer's clock (the HTTP check may have passed just before it),
//! and a payment of a request closed by [`Committer::close_request`] (a cancellation), which
//! is ordered with the payments: either the payment came first and the request is paid, or
//! the cancellation did and the payment is refused. It remembers a paid or cancelled request
//! only until the request's deadline: past it the deadline refuses every payment, so memory
//! follows the requests still payable, not every request ever paid (storage keeps the rest).
//!
//! A full disk takes the same path: the batch's submitters get [`CommitError::StorageFull`]
//! (nothing was written), the next batch reloads and tries again, and the latest outcome is
//! kept as a [`WriteState`] for `/readyz` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::HashSet;
use ledger::journal::{ChainHead, canonical_entry_bytes};
use ledger::{
    Account, AccountId, AccountStatus, Action, Book, BookError, EntryId, EntryKind, IntentError,
    JournalEntry, ParticipantId, PaymentRequestId, PublicKey, Unit, UnitCode, VerifiedIntent,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::db::service::EntryRecord;
use crate::db::{
    BatchOutcome, BatchWrite, CommittedEntry, Database, DbError, Lane, LoadError, LoadOptions,
    Loaded, NewAccount, Previous,
};
use crate::deadlines::RequestsByDeadline;
use crate::view::{LedgerView, ViewState};

/// The most batches in flight at once: one per lane (SQLite has one writing connection,
/// PostgreSQL two), so one batch's inserts run while the previous one commits.
pub const PIPELINE_DEPTH: u32 = 2;

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
    /// How long the Book keeps an applied intent (for fast retries) and a payment (for
    /// refunds) in memory. Older ones are looked up in storage when needed, so memory stays
    /// flat however long the service runs. Retries and refunds are rare after a minute.
    pub remember_for: Duration,
    /// The deployment's checkpoint key, when it signs checkpoints: the load then holds
    /// storage to each unit's newest checkpoint signed with it (see
    /// [`LoadOptions::checkpoint_key`]).
    pub checkpoint_key: Option<ledger::PublicKey>,
    /// Whether the start-up load checks every entry after the latest checkpoints against its
    /// signed intent (see [`LoadOptions::verify_signatures`]). A reload after a failed write
    /// does not: this process wrote or checked what is there, and the acknowledged heads
    /// hold storage to it.
    pub verify_signatures: bool,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::ZERO,
            queue_capacity: 65_536,
            invariant_check_every: 1024,
            remember_for: Duration::from_secs(60),
            checkpoint_key: None,
            verify_signatures: true,
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
    /// The payment request named by the intent was already paid by another intent.
    #[error("payment request {0} has already been paid")]
    RequestAlreadyPaid(PaymentRequestId),
    /// The writer reached the payment after the deadline of the request it names.
    #[error("payment request {request} expired at {expires_at} ms")]
    RequestExpired {
        /// The request.
        request: PaymentRequestId,
        /// Its deadline (ms).
        expires_at: i64,
    },
    /// The payment request named by the intent was cancelled by its merchant.
    #[error("payment request {0} was cancelled")]
    RequestCancelled(PaymentRequestId),
    /// A balance the submitter computed the entry from has moved since (see
    /// [`Committer::submit_expecting`]); nothing was applied.
    #[error("balances moved since the entry was computed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    BalancesMoved(Vec<AccountId>),
    /// Storage failed; the request may be retried with the same intent id.
    #[error("storage unavailable, retry with the same intent id: {0}")]
    Unavailable(String),
    /// Storage is out of disk space; nothing was written. The request may be retried with
    /// the same intent id once space has been freed.
    #[error("storage full, retry with the same intent id once space is freed: {0}")]
    StorageFull(String),
    /// The committer has stopped.
    #[error("the committer has stopped")]
    Stopped,
}

impl CommitError {
    /// True when the request certainly did not take effect: it was refused before anything
    /// was staged. False for [`CommitError::Unavailable`] and [`CommitError::Stopped`], whose
    /// write may have committed even though no answer came (the COMMIT may have landed
    /// before the connection broke, or the writer stopped after staging it).
    pub fn is_definite_refusal(&self) -> bool {
        match self {
            Self::Invalid(_)
            | Self::Rejected(_)
            | Self::RequestAlreadyPaid(_)
            | Self::RequestExpired { .. }
            | Self::RequestCancelled(_)
            | Self::BalancesMoved(_) => true,
            Self::Unavailable(_) | Self::StorageFull(_) | Self::Stopped => false,
        }
    }

    /// How a failed write is told to its submitters: retry later, and why.
    fn storage(error: &DbError) -> Self {
        if error.is_storage_full() {
            CommitError::StorageFull(error.to_string())
        } else {
            CommitError::Unavailable(error.to_string())
        }
    }

    /// How a failed recovery (reconnect and reload) is told to the batch that waited for it.
    fn recovery(error: &LoadError) -> Self {
        match error {
            LoadError::Db(e) => Self::storage(e),
            other => CommitError::Unavailable(other.to_string()),
        }
    }

    fn write_state(&self) -> WriteState {
        match self {
            CommitError::StorageFull(_) => WriteState::StorageFull,
            _ => WriteState::StorageUnavailable,
        }
    }
}

/// What closing a payment request found (see [`Committer::close_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClosure {
    /// Closed: no payment for it will be staged from now on.
    Closed,
    /// A payment was staged first and has committed: this entry paid it.
    AlreadyPaid(EntryId),
}

/// How the latest write to storage went: what `/readyz` and `/metrics` report, so an operator
/// learns that writes are failing (and why) while reads are still served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteState {
    /// The latest write committed (or none has been tried since start-up).
    Ok,
    /// The latest write failed for want of disk space.
    StorageFull,
    /// The latest write failed otherwise (database unreachable, connection lost, …).
    StorageUnavailable,
}

impl WriteState {
    /// The stable name: `ok`, `storage-full` or `storage-unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteState::Ok => "ok",
            WriteState::StorageFull => "storage-full",
            WriteState::StorageUnavailable => "storage-unavailable",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => WriteState::StorageFull,
            2 => WriteState::StorageUnavailable,
            _ => WriteState::Ok,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            WriteState::Ok => 0,
            WriteState::StorageFull => 1,
            WriteState::StorageUnavailable => 2,
        }
    }
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
    /// Committed batches by size: counts of batches with at most
    /// [`BATCH_SIZE_BUCKETS`]`[i]` entries (not cumulative; the last counts the rest).
    pub batch_sizes: [AtomicU64; BATCH_SIZE_BUCKETS.len() + 1],
    /// Payment requests the writer keeps (paid or cancelled, and still payable), after
    /// the latest batch.
    pub requests_kept: AtomicU64,
    /// Time the lanes spent writing committed batches to storage, in microseconds: from
    /// BEGIN to the commit returning. With one lane (SQLite), over `batches` it is the mean
    /// storage time per batch, and `entries` over it the rate storage alone would allow.
    /// With two (PostgreSQL) it includes each batch's wait for the one before to commit,
    /// and the lanes' times overlap: an upper bound on storage time, not a measure of it.
    pub write_micros: AtomicU64,
    /// The same writes by how long each took: counts of writes of at most
    /// [`WRITE_TIME_BUCKETS_MICROS`]`[i]` (not cumulative; the last counts the rest). The
    /// mean hides the stalls a tail latency comes from (a checkpoint, a slow disk); these
    /// show them.
    pub write_times: [AtomicU64; WRITE_TIME_BUCKETS_MICROS.len() + 1],
    /// The latest write's outcome, a [`WriteState`].
    write_state: AtomicU8,
}

impl CommitterStats {
    /// How the latest write to storage went.
    pub fn write_state(&self) -> WriteState {
        WriteState::from_u8(self.write_state.load(Ordering::Relaxed))
    }

    fn set_write_state(&self, state: WriteState) {
        let before = self.write_state.swap(state.to_u8(), Ordering::Relaxed);
        if before != state.to_u8() && state == WriteState::Ok {
            tracing::info!("ledger writes succeed again");
        }
    }
}

/// Upper bounds of the batch-size histogram.
pub const BATCH_SIZE_BUCKETS: [u64; 7] = [1, 4, 16, 64, 256, 1024, 4096];

/// Upper bounds of the write-time histogram, in microseconds (1 ms to 1 s).
pub const WRITE_TIME_BUCKETS_MICROS: [u64; 8] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Counts `value` in the first of `counts` whose upper bound in `bounds` holds it; `counts`
/// has one more slot than `bounds`, for the rest.
fn count_in(counts: &[AtomicU64], bounds: &[u64], value: u64) {
    let bucket = bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len());
    if let Some(count) = counts.get(bucket) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

type Inspection = Box<dyn FnOnce(&Book) + Send>;

/// A change to the Book's rules that storage already holds elsewhere (programme tables), so
/// it writes nothing: a reload rebuilds it from those tables.
type Configuration = Box<dyn FnOnce(&mut Book) -> Result<(), BookError> + Send>;

struct Submission {
    entry: JournalEntry,
    units: Vec<UnitCode>,
    canonical: Vec<u8>,
    intent_body: String,
    tags_json: String,
    payment_request: Option<PaymentRequestId>,
    /// The deadline (ms) of `payment_request` as the submitter's check read it; the writer
    /// refuses the payment if its clock is past it when it reaches the entry.
    request_expires_at: Option<i64>,
    /// Balances the entry was computed from; it applies only if they still hold.
    expected_balances: Vec<(AccountId, i64)>,
    /// For a refund: the payment it gives back, as storage holds it, in case the Book has
    /// forgotten it.
    refunded_payment: Option<Box<EntryRecord>>,
    /// Storage was asked and does not hold this intent: a fingerprint match is a false
    /// positive (see [`BookError::MaybeApplied`]).
    absent_from_storage: bool,
    reply: oneshot::Sender<Result<Committed, CommitError>>,
}

enum Command {
    Submit(Box<Submission>),
    AddUnit(Unit, oneshot::Sender<Result<(), CommitError>>),
    OpenAccount(Box<NewAccount>, oneshot::Sender<Result<(), CommitError>>),
    OpenAccounts(Vec<NewAccount>, oneshot::Sender<Result<(), CommitError>>),
    Configure(Configuration, oneshot::Sender<Result<(), CommitError>>),
    SetAuthority(
        AccountId,
        PublicKey,
        oneshot::Sender<Result<(), CommitError>>,
    ),
    SetStatus(
        AccountId,
        AccountStatus,
        oneshot::Sender<Result<(), CommitError>>,
    ),
    /// Closes a payment request whose deadline (ms) is the second field.
    CloseRequest(
        PaymentRequestId,
        i64,
        oneshot::Sender<Result<RequestClosure, CommitError>>,
    ),
    Inspect(Inspection),
}

/// A handle for submitting to the writer. Cheap to clone; the writer stops once every handle
/// is dropped and the queue is drained.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Command>,
    /// Read access to storage, for what the Book has forgotten.
    db: Database,
    clock: Arc<dyn Clock>,
    stats: Arc<CommitterStats>,
    view: Arc<LedgerView>,
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
        let now_ms = clock.now_ms();
        let options = LoadOptions {
            verify_signatures: config.verify_signatures,
            ..load_options(now_ms, &config, BTreeMap::new())
        };
        let mut loaded = writer.load_with(&options).await?;
        settle_after_load(&mut loaded, now_ms, config.remember_for);
        tracing::info!(
            accounts = loaded.book.account_count(),
            entries = loaded.last_position,
            signatures_checked = loaded.signatures_checked,
            "ledger loaded and verified"
        );
        let task_db = db.clone();
        let (queue, inbox) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(CommitterStats::default());
        let state = std::mem::take(&mut loaded.view);
        let paid_requests = state.paid_requests().clone();
        let view = Arc::new(LedgerView::new(state));
        let closed_requests = RequestsByDeadline::default();
        let task = WriterTask {
            inbox,
            db,
            pipeline: Some(Pipeline::start(
                writer.into_lanes(),
                stats.clone(),
                view.clone(),
            )),
            loaded,
            paid_requests,
            closed_requests,
            view: view.clone(),
            healthy: true,
            config,
            clock: clock.clone(),
            stats: stats.clone(),
            staged_batches: 0,
        };
        let handle = tokio::spawn(task.run());
        Ok((
            Committer {
                queue,
                db: task_db,
                clock,
                stats,
                view,
            },
            CommitterTask(handle),
        ))
    }

    /// Commits the entry a verified intent asks for. Returns once it is durable, or with the
    /// original result if the intent was committed before.
    pub async fn submit(&self, intent: &VerifiedIntent) -> Result<Committed, CommitError> {
        self.submit_inner(intent, Vec::new(), None).await
    }

    /// Submits a payment of a payment request whose deadline, as the caller's check read it,
    /// is `request_expires_at` (ms). The writer refuses it with
    /// [`CommitError::RequestExpired`] if its clock is past the deadline when it reaches the
    /// entry (a payment checked just in time may be staged just too late), unless it is a
    /// retry of the intent that paid the request.
    pub async fn submit_with_deadline(
        &self,
        intent: &VerifiedIntent,
        request_expires_at: Option<i64>,
    ) -> Result<Committed, CommitError> {
        self.submit_inner(intent, Vec::new(), request_expires_at)
            .await
    }

    /// Submits an entry computed from the balances in `expected` (account, minor units): it
    /// applies only if each still holds when the writer reaches it, so an entry worked out
    /// from a moment's state (an expiry sweep from a household's unspent lots) never applies
    /// to a later one. A duplicate is answered as such whatever the balances.
    pub async fn submit_expecting(
        &self,
        intent: &VerifiedIntent,
        expected: Vec<(AccountId, i64)>,
    ) -> Result<Committed, CommitError> {
        self.submit_inner(intent, expected, None).await
    }

    // The storage reads here are for rare cases (a request's deadline, a refund, an id the
    // Book forgot) and are boxed: inline, their futures made every submission's state
    // machine kilobytes larger, which each request's handler future then carries and moves.
    async fn submit_inner(
        &self,
        intent: &VerifiedIntent,
        expected: Vec<(AccountId, i64)>,
        request_expires_at: Option<i64>,
    ) -> Result<Committed, CommitError> {
        let request_expires_at = match (&intent.intent().action, request_expires_at) {
            (
                Action::Payment {
                    request: Some(request),
                    ..
                },
                None,
            ) => Box::pin(self.stored_deadline(*request)).await?,
            _ => request_expires_at,
        };
        // A refund carries its payment as storage holds it, in case the Book has forgotten
        // the payment (refunds are rare; the lookup is one indexed read).
        let refunded_payment = match &intent.intent().action {
            Action::Refund { payment, .. } => Box::pin(self.db.entry_by_id(*payment))
                .await
                .map_err(|e| CommitError::storage(&e))?
                .map(Box::new),
            Action::Payment { .. } | Action::Entry { .. } => None,
        };
        let first = self
            .submit_once(
                intent,
                expected.clone(),
                request_expires_at,
                refunded_payment.clone(),
                false,
            )
            .await;
        let Err(CommitError::Rejected(BookError::MaybeApplied(intent_id))) = first else {
            return first;
        };
        // The Book no longer remembers this id whole but may have applied it long ago:
        // storage decides between an old duplicate, a reuse of the id, and a new intent.
        let stored = Box::pin(self.db.intent_outcome(intent_id))
            .await
            .map_err(|e| CommitError::storage(&e))?;
        match stored {
            Some((entry_id, digest)) if digest == intent.digest() => Ok(Committed {
                entry_id,
                duplicate: true,
            }),
            Some(_) => Err(CommitError::Rejected(BookError::IntentConflict(intent_id))),
            None => {
                self.submit_once(intent, expected, request_expires_at, refunded_payment, true)
                    .await
            }
        }
    }

    /// The stored deadline of a request a payment names when its submitter gave none (a
    /// caller other than the API's checks): without one the writer could not refuse a second
    /// payment once it has forgotten the first. Any deadline read now is no later than the
    /// one the writer keeps a paid request until, so the late payment is refused as expired.
    /// `None` if storage holds no such request: the writer then keeps its payment for ever.
    async fn stored_deadline(&self, request: PaymentRequestId) -> Result<Option<i64>, CommitError> {
        let stored = self
            .db
            .payment_request(request)
            .await
            .map_err(|e| CommitError::storage(&e))?;
        Ok(stored.map(|r| r.expires_at))
    }

    async fn submit_once(
        &self,
        intent: &VerifiedIntent,
        expected: Vec<(AccountId, i64)>,
        request_expires_at: Option<i64>,
        refunded_payment: Option<Box<EntryRecord>>,
        absent_from_storage: bool,
    ) -> Result<Committed, CommitError> {
        let entry = intent.to_entry(EntryId::new(), self.clock.now_ms())?;
        // Serialise here, on the caller's task, so the single writer only hashes.
        let canonical = canonical_entry_bytes(&entry);
        let intent_body = intent.signed().canonical().to_owned();
        let tags_json = crate::db::tags_json(entry.tags());
        let payment_request = match &intent.intent().action {
            Action::Payment { request, .. } => *request,
            Action::Entry { .. } | Action::Refund { .. } => None,
        };
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            units: entry.units(),
            entry,
            canonical,
            intent_body,
            tags_json,
            payment_request,
            request_expires_at,
            expected_balances: expected,
            refunded_payment,
            absent_from_storage,
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

    /// Opens an account with no owner (system accounts, tests).
    pub async fn open_account(&self, account: Account) -> Result<(), CommitError> {
        self.open_owned_account(account, None).await
    }

    /// Opens an account belonging to a participant.
    pub async fn open_owned_account(
        &self,
        account: Account,
        owner: Option<ParticipantId>,
    ) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        let new = NewAccount { account, owner };
        self.send(Command::OpenAccount(Box::new(new), reply))
            .await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Opens many accounts in one transaction: all of them, or none if any is refused.
    pub async fn open_accounts(&self, accounts: Vec<NewAccount>) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::OpenAccounts(accounts, reply)).await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Changes the Book's rules (programme policies, registered merchants) between batches.
    /// The caller stores the change in its own tables first; the load rebuilds it from them.
    pub async fn configure(
        &self,
        change: impl FnOnce(&mut Book) -> Result<(), BookError> + Send + 'static,
    ) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Configure(Box::new(change), reply))
            .await?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Registers (or replaces) the key allowed to debit an account.
    pub async fn set_authority(&self, id: AccountId, key: PublicKey) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetAuthority(id, key, reply)).await?;
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

    /// Closes a payment request (its merchant cancelled it; the caller has stored the
    /// cancellation first). Ordered with the payments: if one was staged before, the answer
    /// is [`RequestClosure::AlreadyPaid`] with its entry, once that has committed; otherwise
    /// every later payment of the request is refused with [`CommitError::RequestCancelled`]
    /// (the writer remembers the request until `expires_at`, its deadline in ms, after which
    /// the deadline refuses them), and event subscribers are told, once the batch settled.
    /// Closing twice is harmless.
    pub async fn close_request(
        &self,
        id: PaymentRequestId,
        expires_at: i64,
    ) -> Result<RequestClosure, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::CloseRequest(id, expires_at, reply))
            .await?;
        let closure = match answer.await.map_err(|_| CommitError::Stopped)?? {
            // The writer forgets a paid request at its deadline, perhaps while the payment
            // was still committing; the answer comes once every batch staged before has
            // committed, so storage now holds any payment the writer staged first.
            RequestClosure::Closed => match self.db.request_paid_by(id).await {
                Ok(Some(entry_id)) => RequestClosure::AlreadyPaid(entry_id),
                Ok(None) => RequestClosure::Closed,
                Err(e) => return Err(CommitError::storage(&e)),
            },
            paid @ RequestClosure::AlreadyPaid(_) => paid,
        };
        if closure == RequestClosure::Closed {
            self.view.announce_cancelled(id);
        }
        Ok(closure)
    }

    /// Runs `look` on the committed Book between batches. For summaries and tests; request
    /// paths read the committed view instead, so reads never queue behind writes.
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

    /// Whether the writer task still takes requests.
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Requests waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.queue
            .max_capacity()
            .saturating_sub(self.queue.capacity())
    }

    /// The committed state, for reads that must not queue behind the writer.
    pub fn view(&self) -> &Arc<LedgerView> {
        &self.view
    }

    async fn send(&self, command: Command) -> Result<(), CommitError> {
        self.queue
            .send(command)
            .await
            .map_err(|_| CommitError::Stopped)
    }
}

/// A reply held back until the batch's fate is known.
enum Reply {
    Entry(
        oneshot::Sender<Result<Committed, CommitError>>,
        Result<Committed, CommitError>,
    ),
    Admin(
        oneshot::Sender<Result<(), CommitError>>,
        Result<(), CommitError>,
    ),
    Close(
        oneshot::Sender<Result<RequestClosure, CommitError>>,
        RequestClosure,
    ),
}

/// What staging one command produced.
enum Staged {
    Reply(Reply),
    Inspect(Inspection),
}

/// A staged batch on its way to a lane.
struct LaneJob {
    write: BatchWrite,
    replies: Vec<Reply>,
    previous: Previous,
    done: oneshot::Sender<BatchOutcome>,
    /// Released when the batch has settled, making room in the pipeline.
    _slots: OwnedSemaphorePermit,
}

/// The lanes and the bookkeeping that keeps their commits in order.
struct Pipeline {
    lanes: Vec<mpsc::Sender<LaneJob>>,
    lane_tasks: Vec<JoinHandle<()>>,
    /// One slot per lane: a batch holds one while in flight.
    slots: Arc<Semaphore>,
    depth: u32,
    next_lane: usize,
    /// Outcome of the batch dispatched last, for the next one to wait on.
    previous: Option<oneshot::Receiver<BatchOutcome>>,
    /// Failures reported by lanes, with their reason.
    failures: mpsc::UnboundedReceiver<String>,
    /// For reporting a lane that stopped (its thread could not start, or it panicked).
    failed: mpsc::UnboundedSender<String>,
}

impl Pipeline {
    fn start(lanes: Vec<Lane>, stats: Arc<CommitterStats>, view: Arc<LedgerView>) -> Self {
        let (failed, failures) = mpsc::unbounded_channel();
        let mut senders = Vec::new();
        let mut lane_tasks = Vec::new();
        // SQLite's one lane runs on a thread of its own. Its write is a score of round trips
        // to the thread that owns the connection; on the shared runtime, behind a thousand
        // submitters, each waited for a worker (measured: 28 -> 22 µs of write per payment,
        // +17 % committed/s at 1,024 submitters). PostgreSQL's lanes stay on the runtime
        // that drives their sockets.
        let own_thread = matches!(lanes.as_slice(), [Lane::Sqlite(_)]);
        for lane in lanes {
            let (jobs, inbox) = mpsc::channel(PIPELINE_DEPTH as usize);
            senders.push(jobs);
            let task = run_lane(lane, inbox, failed.clone(), stats.clone(), view.clone());
            lane_tasks.push(spawn_lane(task, own_thread));
        }
        let depth = u32::try_from(senders.len())
            .unwrap_or(1)
            .clamp(1, PIPELINE_DEPTH);
        Self {
            lanes: senders,
            lane_tasks,
            slots: Arc::new(Semaphore::new(depth as usize)),
            depth,
            next_lane: 0,
            previous: None,
            failures,
            failed,
        }
    }

    /// A free slot: wait for one before forming a batch, so the batch collects everything
    /// that arrives meanwhile.
    async fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Hands a staged batch, holding `slot`, to the next lane. A batch that changes units,
    /// accounts or statuses takes every slot, so it runs alone.
    async fn dispatch(
        &mut self,
        write: BatchWrite,
        replies: Vec<Reply>,
        slot: OwnedSemaphorePermit,
    ) {
        let alone = !(write.units.is_empty()
            && write.accounts.is_empty()
            && write.statuses.is_empty()
            && write.authorities.is_empty());
        let mut slots = slot;
        if alone && self.depth > 1 {
            match self.slots.clone().acquire_many_owned(self.depth - 1).await {
                Ok(rest) => slots.merge(rest),
                Err(_) => return, // The semaphore is never closed.
            }
        }
        let (done, outcome) = oneshot::channel();
        let job = LaneJob {
            write,
            replies,
            previous: Previous::new(self.previous.replace(outcome)),
            done,
            _slots: slots,
        };
        let lane = self.next_lane;
        self.next_lane = (lane + 1) % self.lanes.len();
        if let Err(mpsc::error::SendError(job)) = self.lanes[lane].send(job).await {
            // The lane died; fail the batch like a failed write so the writer recovers
            // (reloads and starts new lanes) before the next batch.
            let _ = job.done.send(BatchOutcome::Failed {
                storage_full: false,
            });
            let _ = self.failed.send("writer lane stopped".to_owned());
            let stopped = CommitError::Unavailable("writer lane stopped".to_owned());
            settle(job.replies, Err(stopped));
        }
    }

    /// Waits until every dispatched batch has settled.
    async fn drain(&self) {
        if let Ok(all) = self.slots.acquire_many(self.depth).await {
            drop(all);
        }
    }

    /// The first failure reported since the last call, if any.
    fn failure(&mut self) -> Option<String> {
        let mut first = None;
        while let Ok(reason) = self.failures.try_recv() {
            first.get_or_insert(reason);
        }
        first
    }

    /// Stops the lanes, closing their connections (and so releasing the lease).
    async fn stop(self) {
        drop(self.lanes);
        for task in self.lane_tasks {
            let _ = task.await;
        }
    }
}

/// Starts a lane on the runtime, or with `own_thread` on a thread of its own that runs a
/// one-thread runtime; the handle ends when the lane does.
fn spawn_lane(
    task: impl std::future::Future<Output = ()> + Send + 'static,
    own_thread: bool,
) -> JoinHandle<()> {
    if !own_thread {
        return tokio::spawn(task);
    }
    let (ended, end) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("coledger-lane".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(task),
                Err(e) => tracing::error!(error = %e, "no runtime for the writer lane"),
            }
            drop(ended);
        });
    if let Err(e) = spawned {
        // The lane's channel closes with it: the first batch sent to it fails, and the
        // writer recovers, starting a new lane, rather than hanging.
        tracing::error!(error = %e, "could not start the writer lane's thread");
    }
    // Ends when the thread does: `Pipeline::stop` waits for it as for a task.
    tokio::spawn(async move {
        let _ = end.await;
    })
}

/// A lane: writes each batch it is handed, in order, then answers its submitters.
async fn run_lane(
    mut lane: Lane,
    mut jobs: mpsc::Receiver<LaneJob>,
    failed: mpsc::UnboundedSender<String>,
    stats: Arc<CommitterStats>,
    view: Arc<LedgerView>,
) {
    while let Some(job) = jobs.recv().await {
        let writing = Instant::now();
        let result = lane.write_after(&job.write, job.previous).await;
        let write_micros = u64::try_from(writing.elapsed().as_micros()).unwrap_or(u64::MAX);
        let empty = job.write.is_empty();
        if result.is_ok() {
            // Before the next batch may commit, so the view follows storage's order.
            view.publish(&job.write);
        }
        let _ = job.done.send(match &result {
            Ok(()) => BatchOutcome::Committed,
            Err(e) => BatchOutcome::Failed {
                storage_full: e.is_storage_full(),
            },
        });
        match &result {
            Ok(()) => {
                let entries = u64::try_from(job.write.entries.len()).unwrap_or(u64::MAX);
                if !empty {
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats
                        .write_micros
                        .fetch_add(write_micros, Ordering::Relaxed);
                    count_in(&stats.write_times, &WRITE_TIME_BUCKETS_MICROS, write_micros);
                    stats.set_write_state(WriteState::Ok);
                }
                stats.entries.fetch_add(entries, Ordering::Relaxed);
                stats.max_batch.fetch_max(entries, Ordering::Relaxed);
                if entries > 0 {
                    count_in(&stats.batch_sizes, &BATCH_SIZE_BUCKETS, entries);
                }
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    storage_full = e.is_storage_full(),
                    entries = job.write.entries.len(),
                    "batch write failed"
                );
                let _ = failed.send(e.to_string());
            }
        }
        let result = result.map_err(|e| CommitError::storage(&e));
        if let Err(e) = &result
            && !empty
        {
            stats.set_write_state(e.write_state());
        }
        settle(job.replies, result);
    }
    // The pipeline is stopping (or being replaced): the lease must be free when it has.
    lane.close().await;
}

/// Answers a batch's submitters: as staged if it committed; if not, every success becomes
/// the storage error (retry with the same intent id), while refusals stand.
fn settle(replies: Vec<Reply>, outcome: Result<(), CommitError>) {
    for reply in replies {
        match (reply, &outcome) {
            (Reply::Entry(to, result), Ok(())) => {
                let _ = to.send(result);
            }
            (Reply::Entry(to, Ok(_)), Err(failure)) => {
                let _ = to.send(Err(failure.clone()));
            }
            (Reply::Entry(to, refused), Err(_)) => {
                let _ = to.send(refused);
            }
            (Reply::Admin(to, result), Ok(())) => {
                let _ = to.send(result);
            }
            (Reply::Admin(to, Ok(())), Err(failure)) => {
                let _ = to.send(Err(failure.clone()));
            }
            (Reply::Admin(to, refused), Err(_)) => {
                let _ = to.send(refused);
            }
            (Reply::Close(to, closure), Ok(())) => {
                let _ = to.send(Ok(closure));
            }
            // The payment that "already paid" it may be what failed: nothing is certain.
            (Reply::Close(to, _), Err(failure)) => {
                let _ = to.send(Err(failure.clone()));
            }
        }
    }
}

struct WriterTask {
    inbox: mpsc::Receiver<Command>,
    db: Database,
    /// None while the writer has no connection (storage down, recovery pending).
    pipeline: Option<Pipeline>,
    /// The Book and journal heads as staged: committed state plus the batches in flight.
    loaded: Loaded,
    /// Payment requests paid, as staged, with the entry that paid each, until the deadline
    /// their payment's check read (no check may have read a later one): past it the
    /// deadline refuses a second payment. One paid without a known deadline is kept for
    /// ever (see [`crate::deadlines`]).
    paid_requests: RequestsByDeadline<EntryId>,
    /// Payment requests closed (cancelled) while still payable, until their deadline. Not
    /// reloaded on recovery: the cancellations were stored before they were sent here, so
    /// storage cannot disagree.
    closed_requests: RequestsByDeadline<()>,
    /// The committed state, published by the lanes; replaced on recovery.
    view: Arc<LedgerView>,
    healthy: bool,
    config: CommitterConfig,
    clock: Arc<dyn Clock>,
    stats: Arc<CommitterStats>,
    staged_batches: u64,
}

impl WriterTask {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.config.max_batch);
        loop {
            let slot = match &self.pipeline {
                Some(pipeline) => pipeline.free_slot().await,
                None => None,
            };
            let Some(first) = self.inbox.recv().await else {
                break;
            };
            batch.push(first);
            self.fill(&mut batch).await;
            self.process(&mut batch, slot).await;
        }
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain().await;
            pipeline.stop().await;
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

    async fn process(&mut self, batch: &mut Vec<Command>, mut slot: Option<OwnedSemaphorePermit>) {
        self.notice_failures();
        if !self.healthy {
            // The slot belongs to the pipeline that recovery replaces (and drains first).
            slot = None;
            if let Err(e) = self.recover().await {
                tracing::error!(error = %e, "the ledger could not be reloaded; not writing");
                let failure = CommitError::recovery(&e);
                self.stats.set_write_state(failure.write_state());
                for command in batch.drain(..) {
                    refuse(command, &failure);
                }
                return;
            }
        }
        let mut write = BatchWrite {
            now_ms: self.clock.now_ms(),
            // Nearly every command of a busy batch is a payment: one allocation, no regrowth.
            entries: Vec::with_capacity(batch.len()),
            ..BatchWrite::default()
        };
        // Payments staged before, perhaps still committing, stay refused: whatever is
        // forgotten here has a deadline before now, which refuses any payment of it.
        self.paid_requests.forget_past(write.now_ms);
        self.closed_requests.forget_past(write.now_ms);
        // A step at a time: a whole generation at once held the writer for a tenth of a
        // second or more at high rates (see `Book::forget_gradually`).
        self.loaded
            .book
            .forget_gradually(forget_before_ms(write.now_ms, self.config.remember_for));
        let mut replies = Vec::with_capacity(batch.len());
        let mut inspections = Vec::new();
        let mut commands = batch.drain(..);
        while !commands.as_slice().is_empty() {
            let ahead = commands.len().min(Book::WARM_AHEAD);
            self.warm(&commands.as_slice()[..ahead]);
            for command in commands.by_ref().take(ahead) {
                match self.stage(command, &mut write) {
                    Staged::Reply(reply) => replies.push(reply),
                    Staged::Inspect(look) => inspections.push(look),
                }
            }
        }
        self.check_invariants_now_and_then();
        let kept = self
            .paid_requests
            .len()
            .saturating_add(self.closed_requests.len());
        self.stats
            .requests_kept
            .store(u64::try_from(kept).unwrap_or(u64::MAX), Ordering::Relaxed);
        if !replies.is_empty()
            && let Some(pipeline) = self.pipeline.as_mut()
        {
            let slot = match slot.take() {
                Some(slot) => Some(slot),
                None => pipeline.free_slot().await,
            };
            if let Some(slot) = slot {
                // Even a batch with nothing to write goes through the pipeline: a duplicate's
                // answer must wait until the original (perhaps in flight) has committed.
                pipeline.dispatch(write, replies, slot).await;
            }
        }
        // An unused slot goes back before anyone waits for the pipeline to drain.
        drop(slot);
        if !inspections.is_empty() {
            self.settle_inspections(inspections).await;
        }
    }

    /// Inspections see committed state only: wait for the batches in flight first.
    async fn settle_inspections(&mut self, inspections: Vec<Inspection>) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.drain().await;
        }
        self.notice_failures();
        if !self.healthy && self.recover().await.is_err() {
            // Dropping an inspection drops its reply sender; the caller sees Stopped.
            return;
        }
        for look in inspections {
            look(&self.loaded.book);
        }
    }

    fn notice_failures(&mut self) {
        if let Some(reason) = self.pipeline.as_mut().and_then(Pipeline::failure) {
            tracing::error!(error = %reason, "a batch failed; reloading the ledger from storage");
            self.healthy = false;
        }
    }

    /// Reads ahead what staging `commands` will read of the Book and the chain heads, so
    /// their cache misses overlap instead of coming one at a time (see [`Book::warm`]).
    fn warm(&self, commands: &[Command]) {
        let entries = commands.iter().filter_map(|command| match command {
            Command::Submit(submission) => Some(&submission.entry),
            _ => None,
        });
        self.loaded.book.warm(entries.inspect(|entry| {
            self.loaded.heads.warm(entry.postings());
        }));
    }

    /// Validates one request against the Book and stages what it writes.
    fn stage(&mut self, command: Command, write: &mut BatchWrite) -> Staged {
        let book = &mut self.loaded.book;
        match command {
            Command::Submit(submission) => {
                let Submission {
                    entry,
                    units,
                    canonical,
                    intent_body,
                    tags_json,
                    payment_request,
                    request_expires_at,
                    expected_balances,
                    refunded_payment,
                    absent_from_storage,
                    reply,
                } = *submission;
                let intent_id = entry.authorisation().intent_id;
                // An id the Book may have forgotten goes back to be looked up in storage
                // before anything else is judged: a retry of an old intent must be answered
                // as the duplicate it is, whatever the balances or the request say now.
                if !absent_from_storage && book.may_have_forgotten(intent_id) {
                    let ask = Err(CommitError::Rejected(BookError::MaybeApplied(intent_id)));
                    return Staged::Reply(Reply::Entry(reply, ask));
                }
                if let Some(payment) = refunded_payment {
                    restore(book, &payment);
                }
                let moved: Vec<AccountId> = expected_balances
                    .iter()
                    .filter(|&&(account, balance)| {
                        book.balance(account).map(|b| b.minor()) != Some(balance)
                    })
                    .map(|&(account, _)| account)
                    .collect();
                if !moved.is_empty() && book.entry_for_intent(intent_id).is_none() {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    let refused = Err(CommitError::BalancesMoved(moved));
                    return Staged::Reply(Reply::Entry(reply, refused));
                }
                // A second payment for a request, a late one or one for a cancelled request
                // is refused, but a retry of the one that paid it is a duplicate (answered by
                // apply below).
                if let Some(request) = payment_request
                    && book.entry_for_intent(intent_id).is_none()
                    && let Some(refusal) =
                        self.request_refusal(request, request_expires_at, write.now_ms)
                {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    return Staged::Reply(Reply::Entry(reply, Err(refusal)));
                }
                let book = &mut self.loaded.book;
                let applied = if absent_from_storage {
                    book.apply_checked_new(&entry)
                } else {
                    book.apply(&entry)
                };
                let result = match applied {
                    Ok(()) => {
                        self.loaded.last_position = self.loaded.last_position.saturating_add(1);
                        let links = self.loaded.journal.append_canonical(&units, &canonical);
                        let committed = Committed {
                            entry_id: entry.id(),
                            duplicate: false,
                        };
                        if let Some(request) = payment_request {
                            // Its deadline is not past (checked above), so it is kept.
                            let kept =
                                self.paid_requests
                                    .keep(request, request_expires_at, entry.id());
                            assert!(kept, "a payable request's payment is remembered");
                        }
                        let position = self.loaded.last_position;
                        let links_by_posting = self.loaded.heads.append(position, entry.postings());
                        write.entries.push(CommittedEntry {
                            position,
                            links_by_posting,
                            entry,
                            links,
                            intent_body,
                            tags_json,
                            payment_request,
                            request_expires_at,
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
                Staged::Reply(Reply::Entry(reply, result))
            }
            Command::AddUnit(unit, reply) => {
                let result = book.add_unit(unit.clone()).map(|()| write.units.push(unit));
                Staged::Reply(Reply::Admin(reply, result.map_err(CommitError::from)))
            }
            Command::OpenAccount(new, reply) => {
                let result = book
                    .open_account(new.account.clone())
                    .map(|()| write.accounts.push(*new));
                Staged::Reply(Reply::Admin(reply, result.map_err(CommitError::from)))
            }
            Command::OpenAccounts(accounts, reply) => {
                let result = open_all(book, &accounts).map(|()| write.accounts.extend(accounts));
                Staged::Reply(Reply::Admin(reply, result.map_err(CommitError::from)))
            }
            Command::Configure(change, reply) => {
                let result = change(book).map_err(CommitError::from);
                Staged::Reply(Reply::Admin(reply, result))
            }
            Command::SetAuthority(id, key, reply) => {
                let result = book
                    .set_authority(id, key)
                    .map(|()| write.authorities.push((id, key)));
                Staged::Reply(Reply::Admin(reply, result.map_err(CommitError::from)))
            }
            Command::SetStatus(id, status, reply) => {
                let result = book
                    .set_status(id, status)
                    .map(|()| write.statuses.push((id, status)));
                Staged::Reply(Reply::Admin(reply, result.map_err(CommitError::from)))
            }
            Command::CloseRequest(id, expires_at, reply) => {
                let closure = match self.paid_requests.get(id) {
                    Some(&entry_id) => RequestClosure::AlreadyPaid(entry_id),
                    None => {
                        // Not kept if already past: its deadline refuses payments instead.
                        self.closed_requests.keep(id, Some(expires_at), ());
                        RequestClosure::Closed
                    }
                };
                Staged::Reply(Reply::Close(reply, closure))
            }
            Command::Inspect(look) => Staged::Inspect(look),
        }
    }

    /// Why a payment of `request` may not be staged now, if it may not: paid already,
    /// cancelled, or past the deadline its submitter read (by the writer's clock).
    ///
    /// The paid and cancelled requests are kept only until their deadline, so the deadline
    /// check is what refuses a late second payment once the first is forgotten: it counts
    /// as past any deadline already forgotten past, even if the clock has stepped back
    /// since. A payment without a deadline names a request storage has no row for; such a
    /// request's payment is kept for ever, so a second is still refused as paid.
    fn request_refusal(
        &self,
        request: PaymentRequestId,
        expires_at: Option<i64>,
        now_ms: i64,
    ) -> Option<CommitError> {
        if self.paid_requests.contains(request) {
            return Some(CommitError::RequestAlreadyPaid(request));
        }
        if self.closed_requests.contains(request) {
            return Some(CommitError::RequestCancelled(request));
        }
        match expires_at {
            Some(expires_at)
                if now_ms > expires_at || self.paid_requests.may_have_forgotten(expires_at) =>
            {
                Some(CommitError::RequestExpired {
                    request,
                    expires_at,
                })
            }
            _ => None,
        }
    }

    fn check_invariants_now_and_then(&mut self) {
        self.staged_batches = self.staged_batches.saturating_add(1);
        let every = self.config.invariant_check_every.max(1);
        if (cfg!(debug_assertions) || self.staged_batches.is_multiple_of(every))
            && let Err(violation) = self.loaded.book.check_invariants()
        {
            // A broken ledger must stop, not limp on.
            panic!("ledger invariant broken: {violation}");
        }
    }

    /// Makes memory agree with storage again after a failed write: wait for the batches in
    /// flight, close the lanes (releasing the lease), take the lease anew and reload.
    async fn recover(&mut self) -> Result<(), LoadError> {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain().await;
            pipeline.stop().await;
        }
        let mut writer = self.db.writer().await?;
        let now_ms = self.clock.now_ms();
        // What this process told submitters is durable must still be there: after a failover
        // the server reached may lack it (see `LoadError::LostAcknowledged`).
        let acknowledged = self.view.read().chain_heads().clone();
        let options = load_options(now_ms, &self.config, acknowledged);
        self.loaded = writer.load_with(&options).await?;
        settle_after_load(&mut self.loaded, now_ms, self.config.remember_for);
        let state: ViewState = std::mem::take(&mut self.loaded.view);
        // Paid requests as storage holds them (still payable ones only); the forgetting
        // carries on from the load's time.
        self.paid_requests = state.paid_requests().clone();
        self.view.replace(state);
        self.pipeline = Some(Pipeline::start(
            writer.into_lanes(),
            self.stats.clone(),
            self.view.clone(),
        ));
        self.healthy = true;
        tracing::info!("writer reconnected and ledger reloaded");
        Ok(())
    }
}

/// Brings a payment back into a Book that may have forgotten it, so a refund can be checked.
fn restore(book: &mut Book, payment: &EntryRecord) {
    if let Some(kind) = EntryKind::parse(&payment.kind) {
        book.restore_payment(payment.id, kind, payment.created_at, &payment.postings);
    }
}

/// How the committer loads: forgetting as it goes what it would forget right after (see
/// [`forget_old`]), so a long journal does not make a memory peak at start.
/// Entries are not checked against their signatures here (see
/// [`CommitterConfig::verify_signatures`]); the start-up load turns that on.
fn load_options(
    now_ms: i64,
    config: &CommitterConfig,
    acknowledged: BTreeMap<UnitCode, ChainHead>,
) -> LoadOptions {
    LoadOptions {
        forget_before_ms: Some(forget_before_ms(now_ms, config.remember_for)),
        acknowledged,
        checkpoint_key: config.checkpoint_key,
        ..LoadOptions::at(now_ms)
    }
}

/// Lets the Book forget intents and payments older than `window` before `now_ms` (see
/// [`CommitterConfig::remember_for`]), all at once, as after a load; returns how many
/// intents it let go.
fn forget_old(book: &mut Book, now_ms: i64, window: Duration) -> usize {
    book.forget_before(forget_before_ms(now_ms, window))
}

/// The entry time (ms) before which the Book forgets: `window` before `now_ms`.
fn forget_before_ms(now_ms: i64, window: Duration) -> i64 {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(window_ms)
}

/// After a load: forgets what is older than the window, gives the memory back and says how
/// much the Book remembers, and how much it held at most while loading.
fn settle_after_load(loaded: &mut Loaded, now_ms: i64, window: Duration) {
    let forgotten = forget_old(&mut loaded.book, now_ms, window);
    loaded.book.shrink_to_fit();
    let (whole, fingerprints) = loaded.book.remembered_intents();
    tracing::info!(
        forgotten,
        recent_intents = whole,
        fingerprints,
        load_peak_intents = loaded.peak_remembered,
        "older intents and payments left to storage"
    );
}

/// Opens every account or none: all are checked before the first is opened.
fn open_all(book: &mut Book, accounts: &[NewAccount]) -> Result<(), BookError> {
    let mut seen = HashSet::default();
    for new in accounts {
        let account = &new.account;
        if book.unit(account.unit).is_none() {
            return Err(BookError::UnknownUnit(account.unit));
        }
        if book.account(account.id).is_some() || !seen.insert(account.id) {
            return Err(BookError::DuplicateAccount(account.id));
        }
    }
    for new in accounts {
        book.open_account(new.account.clone())?;
    }
    Ok(())
}

fn refuse(command: Command, failure: &CommitError) {
    let failed = || failure.clone();
    match command {
        Command::Submit(s) => {
            let _ = s.reply.send(Err(failed()));
        }
        Command::AddUnit(_, reply)
        | Command::OpenAccount(_, reply)
        | Command::OpenAccounts(_, reply)
        | Command::Configure(_, reply)
        | Command::SetStatus(_, _, reply)
        | Command::SetAuthority(_, _, reply) => {
            let _ = reply.send(Err(failed()));
        }
        Command::CloseRequest(_, _, reply) => {
            let _ = reply.send(Err(failed()));
        }
        // Dropping the inspection drops its reply sender; the caller sees Stopped.
        Command::Inspect(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_stopped_leave_the_outcome_open() {
        let request = PaymentRequestId::new();
        assert!(
            CommitError::Rejected(BookError::UnknownAccount(AccountId::new()))
                .is_definite_refusal()
        );
        assert!(CommitError::RequestCancelled(request).is_definite_refusal());
        assert!(
            CommitError::RequestExpired {
                request,
                expires_at: 0
            }
            .is_definite_refusal()
        );
        assert!(!CommitError::Unavailable("gone".into()).is_definite_refusal());
        assert!(!CommitError::Stopped.is_definite_refusal());
    }

    /// A lane whose task has ended (its thread could not start, its runtime could not be
    /// built, it panicked) has dropped its inbox. A batch handed to it must not vanish: its
    /// submitters are told to retry, the batch after it sees it failed, and the writer hears
    /// of it, so that it reloads and starts new lanes (as after a failed write).
    #[tokio::test]
    async fn a_batch_for_a_stopped_lane_fails_and_the_writer_hears_of_it() {
        let (jobs, inbox) = mpsc::channel(1);
        drop(inbox);
        let (failed, failures) = mpsc::unbounded_channel();
        let mut pipeline = Pipeline {
            lanes: vec![jobs],
            lane_tasks: Vec::new(),
            slots: Arc::new(Semaphore::new(1)),
            depth: 1,
            next_lane: 0,
            previous: None,
            failures,
            failed,
        };
        assert_eq!(pipeline.failure(), None);
        let slot = pipeline.free_slot().await.expect("a free slot");
        let (to, answer) = oneshot::channel();
        let staged = Committed {
            entry_id: EntryId::new(),
            duplicate: false,
        };
        pipeline
            .dispatch(
                BatchWrite::default(),
                vec![Reply::Entry(to, Ok(staged))],
                slot,
            )
            .await;
        match answer.await.expect("the submitter is answered") {
            Err(CommitError::Unavailable(reason)) => assert_eq!(reason, "writer lane stopped"),
            other => panic!("expected the lane's failure, got {other:?}"),
        }
        let next_waits_on = pipeline.previous.take().expect("the batch's outcome");
        assert!(matches!(
            next_waits_on.await,
            Ok(BatchOutcome::Failed {
                storage_full: false
            })
        ));
        assert_eq!(pipeline.failure().as_deref(), Some("writer lane stopped"));
        // The failed batch gave its slot back: the writer is not left waiting.
        let again = tokio::time::timeout(Duration::from_secs(5), pipeline.free_slot()).await;
        assert!(matches!(again, Ok(Some(_))), "the slot was not released");
    }
}
