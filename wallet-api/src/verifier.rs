//! Signature verification off the async threads, in batches.
//!
//! Parsing a signed intent and checking its ed25519 signature is the most CPU a request costs.
//! A [`Verifier`] hands that work to a few dedicated OS threads over a bounded queue. A thread
//! takes everything queued (up to [`MAX_VERIFY_BATCH`]) and checks the signatures with one
//! batch equation, which costs about half as much per signature as checking them one by one;
//! under load batches fill by themselves, and a lone request is verified at once, alone.
//!
//! A batch equation has a fixed cost (about 40 µs here, mostly the 253 doublings every batch
//! shares) on top of ~22 µs per signature, so small batches are dear. While one thread is
//! verifying, another that finds only a few requests queued waits a little (at most
//! [`FILL_WAIT`]) for more before it starts: the cores are busy anyway, and the bigger batch
//! saves more than the wait costs. A thread with nobody else verifying never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ledger::intent::{MAX_VERIFY_BATCH, SignerKeys, verify_batch_with};
use ledger::{IntentError, SignedIntent, TimestampMs, VerifiedIntent};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for a verifier thread, at most. Beyond this, submitters wait for room
/// (backpressure) rather than queueing without bound.
pub const MAX_QUEUED: usize = 8 * MAX_VERIFY_BATCH;

/// Verifier threads, at most; each holds at most one batch.
pub const MAX_THREADS: usize = 16;

/// Signers whose decoded keys the threads share (see [`SignerKeys`]): every holder of a large
/// pilot. Two generations of 114,688 keys, each filling a table of 2^17 (7/8 full), so about
/// 60 MiB when both are full.
pub const KEPT_SIGNERS: usize = 229_376;

/// A batch this large is verified at once, even while another thread is verifying: beyond
/// it the fixed cost is a few percent of the batch.
pub const FULL_ENOUGH: usize = 64;

/// The longest a thread waits for its batch to fill while another thread is verifying.
pub const FILL_WAIT: Duration = Duration::from_millis(1);

/// How often a waiting thread looks at the queue again (new requests do not wake it; the
/// other thread finishing does).
const FILL_POLL: Duration = Duration::from_micros(100);

/// Why an intent was not verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The intent is malformed, expired or its signature does not verify.
    #[error(transparent)]
    Refused(#[from] IntentError),
    /// Every verifier thread has stopped (a bug: they stop only when all handles are gone).
    #[error("the signature verifier has stopped")]
    Stopped,
}

/// Counters for benchmarks and operators: batches run and intents checked.
#[derive(Debug, Default)]
pub struct VerifierStats {
    /// Batches verified.
    pub batches: AtomicU64,
    /// Intents received (parsed or not).
    pub intents: AtomicU64,
}

struct Job {
    body: Bytes,
    now_ms: TimestampMs,
    reply: oneshot::Sender<Result<VerifiedIntent, IntentError>>,
}

/// The requests waiting, and how many threads are verifying a batch right now.
struct Queue {
    receiver: Mutex<mpsc::Receiver<Job>>,
    verifying: Mutex<usize>,
    /// Signalled when a thread finishes a batch, so one waiting for its batch to fill
    /// starts at once instead of after its next poll.
    finished: Condvar,
    /// [`FILL_WAIT`], or longer in tests.
    fill_wait: Duration,
}

impl Queue {
    fn new(receiver: mpsc::Receiver<Job>, fill_wait: Duration) -> Self {
        Self {
            receiver: Mutex::new(receiver),
            verifying: Mutex::new(0),
            finished: Condvar::new(),
            fill_wait,
        }
    }

    /// A thread that panicked while holding the count left it intact; carry on.
    fn verifying(&self) -> MutexGuard<'_, usize> {
        self.verifying
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle to the verifier threads; cheap to clone. The threads stop when the last handle
/// is dropped and the queue is empty.
#[derive(Clone)]
pub struct Verifier {
    jobs: mpsc::Sender<Job>,
    stats: Arc<VerifierStats>,
    keys: Arc<SignerKeys>,
}

impl Verifier {
    /// Starts `threads` verifier threads (at least one, at most [`MAX_THREADS`]).
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(MAX_QUEUED);
        let queue = Arc::new(Queue::new(queue, FILL_WAIT));
        let stats = Arc::new(VerifierStats::default());
        let keys = Arc::new(SignerKeys::new(KEPT_SIGNERS));
        for index in 0..threads.clamp(1, MAX_THREADS) {
            let (queue, stats, keys) = (queue.clone(), stats.clone(), keys.clone());
            std::thread::Builder::new()
                .name(format!("coledger-verify-{index}"))
                .spawn(move || run(&queue, &stats, &keys))?;
        }
        Ok(Self { jobs, stats, keys })
    }

    /// Parses `body` as a signed intent and verifies it as of `now_ms`, like
    /// [`SignedIntent::from_json`] then [`SignedIntent::verify`].
    pub async fn verify(
        &self,
        body: Bytes,
        now_ms: TimestampMs,
    ) -> Result<VerifiedIntent, VerifyError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            body,
            now_ms,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| VerifyError::Stopped)?;
        // A dropped reply means the thread died mid-batch.
        Ok(answer.await.map_err(|_| VerifyError::Stopped)??)
    }

    /// The counters.
    pub fn stats(&self) -> &VerifierStats {
        &self.stats
    }

    /// The signers' keys the threads have decoded and kept.
    pub fn signer_keys(&self) -> &SignerKeys {
        &self.keys
    }
}

/// One verifier thread: take a batch, verify it, reply, until the queue closes.
fn run(queue: &Queue, stats: &VerifierStats, keys: &SignerKeys) {
    let mut batch = Vec::with_capacity(MAX_VERIFY_BATCH);
    while let Some(_verifying) = take_batch(queue, &mut batch) {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .intents
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        verify_and_reply(&mut batch, keys);
    }
}

/// Counts a thread as verifying for as long as it lives (a panic included); its end wakes
/// a thread waiting for its batch to fill.
struct Verifying<'a>(&'a Queue);

impl<'a> Verifying<'a> {
    fn start(queue: &'a Queue) -> Self {
        *queue.verifying() += 1;
        Self(queue)
    }
}

impl Drop for Verifying<'_> {
    fn drop(&mut self) {
        let mut verifying = self.0.verifying();
        *verifying = verifying.saturating_sub(1);
        self.0.finished.notify_all();
    }
}

/// Waits for a job, then takes whatever else is already queued up to the batch limit; while
/// another thread is verifying, waits up to the queue's fill wait for [`FULL_ENOUGH`], and
/// no longer than that thread takes. The receiver's lock is held while taking, so the other
/// thread forms the next batch once this one has gone. The caller counts as verifying while
/// it holds the guard returned; `None` when the queue is closed and empty.
fn take_batch<'q>(queue: &'q Queue, batch: &mut Vec<Job>) -> Option<Verifying<'q>> {
    // A thread that panicked while holding the lock left the receiver intact; carry on.
    let mut receiver = queue
        .receiver
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    batch.push(receiver.blocking_recv()?);
    let mut open = take_queued(&mut receiver, batch);
    let deadline = Instant::now() + queue.fill_wait;
    let mut verifying = queue.verifying();
    while open && batch.len() < FULL_ENOUGH && *verifying > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        verifying = queue
            .finished
            .wait_timeout(verifying, left.min(FILL_POLL))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        open = take_queued(&mut receiver, batch);
    }
    drop(verifying);
    // Counted before the receiver's lock is let go, so the next thread sees this one busy.
    Some(Verifying::start(queue))
}

/// Moves what is queued into `batch`, up to the batch limit, without waiting; false once
/// every sender is gone (nothing more can come).
fn take_queued(receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) -> bool {
    while batch.len() < MAX_VERIFY_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

fn verify_and_reply(batch: &mut Vec<Job>, keys: &SignerKeys) {
    let mut parsed = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        match SignedIntent::from_json(&job.body) {
            Ok(intent) => {
                parsed.push((intent, job.now_ms));
                replies.push(job.reply);
            }
            // The requester may have gone away; nobody is left to tell.
            Err(refused) => drop(job.reply.send(Err(refused))),
        }
    }
    for (reply, result) in replies.into_iter().zip(verify_batch_with(parsed, keys)) {
        drop(reply.send(result));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ed25519_dalek::SigningKey;
    use ledger::{AccountId, Action, Amount, Intent, IntentId, PublicKey, UnitCode};

    const NOW_MS: TimestampMs = 1_900_000_000_000;

    fn signed(minor: i64) -> Bytes {
        let key = SigningKey::from_bytes(&[4; 32]);
        let intent = Intent {
            intent_id: IntentId::new(),
            not_after: 2_000_000_000,
            signer: PublicKey::of(&key),
            action: Action::Payment {
                from: AccountId::new(),
                to: AccountId::new(),
                unit: UnitCode::new("PGI-EUR").unwrap(),
                amount_minor: Amount::from_minor(minor).unwrap(),
                memo: String::new(),
                request: None,
            },
        };
        Bytes::from(SignedIntent::sign(intent, &key).unwrap().to_json())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_verified_and_only_bad_ones_refused() {
        let verifier = Verifier::start(2).unwrap();
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let verifier = verifier.clone();
                let mut body = signed(100 + i);
                if i % 50 == 7 {
                    body = Bytes::from(
                        String::from_utf8(body.to_vec())
                            .unwrap()
                            .replace(&format!(":{},", 100 + i), ":1,"),
                    );
                }
                tokio::spawn(async move { (i, verifier.verify(body, NOW_MS).await) })
            })
            .collect();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            if i % 50 == 7 {
                assert!(
                    matches!(
                        result,
                        Err(VerifyError::Refused(IntentError::BadSignature { .. }))
                    ),
                    "{i}: {result:?}"
                );
            } else {
                assert!(result.is_ok(), "{i}: {result:?}");
            }
        }
        assert_eq!(verifier.stats().intents.load(Ordering::Relaxed), 300);
    }

    fn job() -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            body: Bytes::from_static(b"{}"),
            now_ms: NOW_MS,
            reply,
        }
    }

    /// A queue holding `jobs` requests, waiting up to `fill_wait`, and its sender (dropped,
    /// the queue is closed once drained).
    fn queue_of(jobs: usize, fill_wait: Duration) -> (Queue, mpsc::Sender<Job>) {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        for _ in 0..jobs {
            sender.try_send(job()).unwrap();
        }
        (Queue::new(receiver, fill_wait), sender)
    }

    /// Long enough that a test seeing a thread return early knows why, however loaded the
    /// machine: only a wake-up or a full batch can end the wait before it.
    const LONG_WAIT: Duration = Duration::from_secs(30);

    #[test]
    fn a_thread_alone_never_waits_and_counts_itself_busy() {
        let (queue, sender) = queue_of(3, LONG_WAIT);
        let mut batch = Vec::new();
        let started = Instant::now();
        let guard = take_batch(&queue, &mut batch).unwrap();
        assert!(started.elapsed() < LONG_WAIT / 2, "{:?}", started.elapsed());
        assert_eq!(batch.len(), 3);
        assert_eq!(*queue.verifying(), 1);
        drop(guard);
        assert_eq!(*queue.verifying(), 0);
        drop(sender);
    }

    #[test]
    fn while_another_thread_verifies_a_small_batch_waits_its_time_then_goes() {
        let (queue, _sender) = queue_of(3, FILL_WAIT);
        let _other = Verifying::start(&queue);
        let mut batch = Vec::new();
        let started = Instant::now();
        let guard = take_batch(&queue, &mut batch).unwrap();
        // Nothing more came and the other thread went on: it waited the whole time.
        assert!(started.elapsed() >= FILL_WAIT, "{:?}", started.elapsed());
        assert_eq!(batch.len(), 3);
        assert_eq!(*queue.verifying(), 2);
        drop(guard);
    }

    /// Takes a batch while `meanwhile` runs on another thread 5 ms in; returns the batch and
    /// whether it came before the long wait could have run out.
    fn take_batch_while(queue: &Queue, meanwhile: impl FnOnce() + Send) -> (Vec<Job>, bool) {
        let mut batch = Vec::new();
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                meanwhile();
            });
            let _guard = take_batch(queue, &mut batch).unwrap();
        });
        (batch, started.elapsed() < LONG_WAIT / 2)
    }

    #[test]
    fn requests_that_arrive_while_it_waits_join_the_batch() {
        let (queue, sender) = queue_of(1, LONG_WAIT);
        let _other = Verifying::start(&queue);
        let (batch, early) = take_batch_while(&queue, || {
            for _ in 1..FULL_ENOUGH {
                sender.try_send(job()).unwrap();
            }
        });
        // Full enough, it went without waiting out its time.
        assert!(early);
        assert_eq!(batch.len(), FULL_ENOUGH);
    }

    #[test]
    fn the_other_thread_finishing_ends_the_wait() {
        let (queue, _sender) = queue_of(2, LONG_WAIT);
        let other = Verifying::start(&queue);
        let (batch, early) = take_batch_while(&queue, move || drop(other));
        assert!(early);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn a_closed_queue_ends_the_wait_and_then_the_thread() {
        let (queue, sender) = queue_of(2, LONG_WAIT);
        drop(sender);
        let _other = Verifying::start(&queue);
        let mut batch = Vec::new();
        let started = Instant::now();
        // Nothing more can come, so there is nothing to wait for.
        let guard = take_batch(&queue, &mut batch).unwrap();
        assert!(started.elapsed() < LONG_WAIT / 2, "{:?}", started.elapsed());
        assert_eq!(batch.len(), 2);
        drop(guard);
        batch.clear();
        // Empty and closed: the receiver reports the end instead of blocking.
        assert!(take_batch(&queue, &mut batch).is_none());
        assert_eq!(*queue.verifying(), 1, "only the other thread");
    }

    #[test]
    fn a_batch_takes_everything_queued_not_just_full_enough() {
        let (queue, _sender) = queue_of(FULL_ENOUGH + 5, LONG_WAIT);
        let _other = Verifying::start(&queue);
        let mut batch = Vec::new();
        let _guard = take_batch(&queue, &mut batch).unwrap();
        assert_eq!(batch.len(), FULL_ENOUGH + 5);
    }

    #[tokio::test]
    async fn malformed_and_expired_bodies_get_their_own_errors() {
        let verifier = Verifier::start(1).unwrap();
        let malformed = verifier.verify(Bytes::from_static(b"{"), NOW_MS).await;
        assert!(matches!(
            malformed,
            Err(VerifyError::Refused(IntentError::Malformed(_)))
        ));
        let expired = verifier.verify(signed(5), 2_000_000_001_000).await;
        assert!(matches!(
            expired,
            Err(VerifyError::Refused(IntentError::Expired { .. }))
        ));
    }
}
