//! Signature verification off the async threads, in batches.
//!
//! Parsing a signed intent and checking its ed25519 signature is the most CPU a request costs.
//! A [`Verifier`] hands that work to a few dedicated OS threads over a bounded queue. A thread
//! takes everything queued (up to [`MAX_VERIFY_BATCH`]) and checks the signatures with one
//! batch equation, which costs about half as much per signature as checking them one by one;
//! under load batches fill by themselves, and a lone request is verified at once, alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

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
        let queue: Queue = Arc::new(Mutex::new(queue));
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
    while take_batch(queue, &mut batch) {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .intents
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        verify_and_reply(&mut batch, keys);
    }
}

/// Waits for a job, then takes whatever else is already queued up to the batch limit. The
/// lock is held only while taking, so another thread can form the next batch meanwhile.
/// Returns false when the queue is closed and empty.
fn take_batch(queue: &Queue, batch: &mut Vec<Job>) -> bool {
    // A thread that panicked while holding the lock left the receiver intact; carry on.
    let mut receiver = queue.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(first) = receiver.blocking_recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < MAX_VERIFY_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
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
