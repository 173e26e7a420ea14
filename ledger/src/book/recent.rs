//! What the Book remembers of recent entries, and the little it keeps of older ones.
//!
//! Replay protection needs every intent id ever applied, and refunds need every payment's
//! payer, payee and amount. Kept in full, both grow with the journal (about 150 bytes a
//! payment), so a service that runs for months would grow without bound. The journal in
//! storage has all of it, indexed; memory only has to make the common cases fast:
//!
//! - a retry arrives seconds after the original, so recent intent ids are kept whole;
//! - a refund follows its sale within minutes or days, rarely, so payments older than the
//!   window are looked up in storage by whoever submits the refund (see
//!   [`super::Book::restore_payment`]);
//! - an intent id older than the window is replaced by a 32-bit fingerprint (4 bytes instead
//!   of about 110). A new intent whose id matches a fingerprint *may* have been applied long
//!   ago; [`super::Book::apply`] then refuses it with [`super::BookError::MaybeApplied`] so
//!   the submitter can ask storage, and applies it with [`super::Book::apply_checked_new`]
//!   once storage says it is new. Fingerprints have false positives (one in 2^32 per
//!   forgotten id, so about one new intent in 4,000 after ten million payments) but never
//!   false negatives, so no intent is ever applied twice.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher as _;

use crate::TimestampMs;
use crate::ids::{EntryId, IntentId};

/// One applied entry (or restored payment), in the order the Book saw it.
struct Remembered {
    at: TimestampMs,
    intent: Option<IntentId>,
    payment: Option<EntryId>,
}

/// What [`Recent::forget_before`] let go of; the Book drops these from its maps.
pub(super) struct Forgotten {
    pub(super) intent: Option<IntentId>,
    pub(super) payment: Option<EntryId>,
}

/// The Book's memory of recent entries in commit order, and fingerprints of older intents.
pub(super) struct Recent {
    order: VecDeque<Remembered>,
    fingerprints: HashSet<u32, foldhash::fast::RandomState>,
    /// Seeded per process, so nobody can choose intent ids that collide with old ones.
    hasher: foldhash::fast::RandomState,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            fingerprints: HashSet::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Recent {
    fn fingerprint(&self, id: IntentId) -> u32 {
        // The low half of a 64-bit hash: enough to make a false positive rare, no more.
        self.hasher.hash_one(id) as u32
    }

    /// Notes an applied intent and, when it is a refundable payment, its entry.
    pub(super) fn remember(
        &mut self,
        at: TimestampMs,
        intent: Option<IntentId>,
        payment: Option<EntryId>,
    ) {
        self.order.push_back(Remembered {
            at,
            intent,
            payment,
        });
    }

    /// Whether `id` may be an intent forgotten earlier (false: it certainly is not).
    pub(super) fn may_have_forgotten(&self, id: IntentId) -> bool {
        !self.fingerprints.is_empty() && self.fingerprints.contains(&self.fingerprint(id))
    }

    /// Lets go of everything noted before `before` (entry time, ms), oldest first, keeping
    /// a fingerprint of each intent. Entries are noted in commit order, whose times may
    /// interleave by a few milliseconds; stopping at the first newer one is close enough.
    pub(super) fn forget_before(&mut self, before: TimestampMs, mut drop: impl FnMut(Forgotten)) {
        while self.order.front().is_some_and(|r| r.at < before) {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(intent) = old.intent {
                let print = self.fingerprint(intent);
                self.fingerprints.insert(print);
            }
            drop(Forgotten {
                intent: old.intent,
                payment: old.payment,
            });
        }
    }

    /// How many entries are remembered whole.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// How many intents are remembered by fingerprint only.
    pub(super) fn fingerprint_count(&self) -> usize {
        self.fingerprints.len()
    }

    /// Gives back memory the queue no longer needs (after a load forgot most of it).
    pub(super) fn shrink(&mut self) {
        self.order.shrink_to_fit();
    }
}
