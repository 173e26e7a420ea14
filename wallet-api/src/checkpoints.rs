//! The service's signed checkpoints (DESIGN §5; the format is
//! [`ledger::journal::checkpoint`]): now and then, and on demand, each unit whose chain has
//! moved since its latest checkpoint gets a new one, signed and stored.
//!
//! The checkpoint key is derived from the server secret (as programme keys are), so no
//! private key is stored and every process of one deployment signs with the same key; its
//! public half is published with every checkpoint, and auditors pin it
//! (`coledger verify --checkpoint-key`). A checkpoint states only what the read model has
//! published, which is committed (durable) and whose head and totals moved together.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ledger::PublicKey;
use ledger::journal::checkpoint::{Checkpoint, SignedCheckpoint};

use crate::cards::ServerSecret;
use crate::clock::Clock;
use crate::committer::Committer;
use crate::db::{Database, DbError};

/// The derivation context of the checkpoint key: changing it changes the key.
const CHECKPOINT_KEY_CONTEXT: &[u8] = b"coledger/v1/journal-checkpoints";

fn signing_key(secret: &ServerSecret) -> SigningKey {
    secret.derive_signing_key(CHECKPOINT_KEY_CONTEXT, b"")
}

/// The public key a deployment with `secret` signs its checkpoints with: what its start-up
/// load holds stored checkpoints to (`CommitterConfig::checkpoint_key`).
pub fn checkpoint_key(secret: &ServerSecret) -> PublicKey {
    PublicKey::of(&signing_key(secret))
}

/// Signs and stores checkpoints; cheap to clone.
#[derive(Clone)]
pub struct Checkpointer(Arc<Parts>);

struct Parts {
    key: SigningKey,
    public: PublicKey,
    db: Database,
    committer: Committer,
    clock: Arc<dyn Clock>,
    stats: CheckpointStats,
}

/// What the checkpointer has done, for `/metrics`.
#[derive(Default)]
pub struct CheckpointStats {
    /// Checkpoints signed and stored.
    pub signed: AtomicU64,
    /// Signings that failed (storage unavailable, say).
    pub failures: AtomicU64,
    /// When the service's own signing (at start and on its interval, not on request) last
    /// succeeded, whether or not any unit had moved; the checkpointer's creation until the
    /// first. An alert on its age catches a signer that stopped.
    pub last_success_ms: AtomicI64,
}

impl Checkpointer {
    /// A checkpointer signing with the key `secret` derives for checkpoints.
    pub fn new(
        secret: &ServerSecret,
        db: Database,
        committer: Committer,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let key = signing_key(secret);
        let public = PublicKey::of(&key);
        Self(Arc::new(Parts {
            key,
            public,
            db,
            committer,
            stats: CheckpointStats {
                last_success_ms: AtomicI64::new(clock.now_ms()),
                ..CheckpointStats::default()
            },
            clock,
        }))
    }

    /// What it has done.
    pub fn stats(&self) -> &CheckpointStats {
        &self.0.stats
    }

    /// The key checkpoints are signed with.
    pub fn key(&self) -> PublicKey {
        self.0.public
    }

    /// Signs and stores a checkpoint of every unit whose chain moved since its latest stored
    /// checkpoint (or that has none); returns those stored, in unit code order. Two calls
    /// at once may sign the same link twice; the first stored stands, and only the call that
    /// stored it returns it.
    pub async fn sign_moved(&self) -> Result<Vec<SignedCheckpoint>, DbError> {
        let signed = self.sign_moved_inner().await;
        let stats = &self.0.stats;
        match &signed {
            Ok(signed) => {
                stats
                    .signed
                    .fetch_add(signed.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        signed
    }

    async fn sign_moved_inner(&self) -> Result<Vec<SignedCheckpoint>, DbError> {
        let parts = &self.0;
        let done = parts.db.checkpointed_seqs().await?;
        let at_ms = parts.clock.now_ms();
        let moved: Vec<Checkpoint> = parts
            .committer
            .view()
            .read()
            .checkpoint_states()
            .filter(|(unit, head, _)| head.seq > done.get(unit).copied().unwrap_or(0))
            .map(|(unit, head, totals)| Checkpoint {
                unit,
                head,
                at_ms,
                totals,
            })
            .collect();
        let signed: Vec<SignedCheckpoint> = moved.into_iter().map(|c| c.sign(&parts.key)).collect();
        let stored = parts.db.insert_checkpoints(&signed).await?;
        for (checkpoint, _) in signed.iter().zip(&stored).filter(|(_, stored)| !**stored) {
            let checkpoint = &checkpoint.checkpoint;
            tracing::warn!(
                unit = %checkpoint.unit,
                seq = checkpoint.head.seq,
                "checkpoint not stored: one of the same link was stored first, or the \
                 database does not hold the link (entries lost in a failover?)"
            );
        }
        Ok(signed
            .into_iter()
            .zip(stored)
            .filter_map(|(checkpoint, stored)| stored.then_some(checkpoint))
            .collect())
    }

    /// [`Checkpointer::sign_moved`], with the outcome logged rather than returned: for the
    /// service's own signing, which must not stop it.
    pub async fn sign_and_log(&self) {
        let signed = self.sign_moved().await;
        if signed.is_ok() {
            self.0
                .stats
                .last_success_ms
                .store(self.0.clock.now_ms(), Ordering::Relaxed);
        }
        match signed {
            Ok(signed) if signed.is_empty() => {}
            Ok(signed) => tracing::info!(units = signed.len(), "journal checkpoints signed"),
            Err(e) => tracing::warn!(error = %e, "signing journal checkpoints failed"),
        }
    }

    /// Signs what moved every `every`, starting `every` from now, for ever (the caller
    /// aborts the task to stop it).
    pub async fn sign_forever(self, every: Duration) {
        let first = tokio::time::Instant::now() + every;
        let mut ticks = tokio::time::interval_at(first, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sign_and_log().await;
        }
    }
}
