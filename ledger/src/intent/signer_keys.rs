//! Signers' keys already decoded, shared by the threads that verify.
//!
//! Decoding a key (decompressing the curve point its 32 bytes name) costs a square root in
//! the field, a few microseconds on every intent: about what a signature's share of the batch
//! equation costs. Holders sign again and again with the same key, so a key is decoded once and
//! kept. A key is kept once a signature by it has verified; what is kept is a pure function of
//! the key's bytes, so nothing here can go stale or change a result.
//!
//! Anyone can make keys and sign their own (refused) intents, so the memo is bounded, and it
//! must not be possible to fill it for good: it holds two generations (the Book's
//! [`Generations`]). New keys go into the young one; when that is full, the old one is
//! emptied and the young one takes its place. A flood of new keys therefore only pushes real signers out
//! for a while: their next intent decodes the key again and keeps it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use ed25519_dalek::VerifyingKey;

use crate::book::recent::Generations;

type KeyMap = HashMap<[u8; 32], VerifyingKey, foldhash::fast::RandomState>;

/// Decoded keys of signers whose signatures verified, in two generations (see the module).
pub struct SignerKeys {
    generations: RwLock<Generations<KeyMap>>,
    /// Keys a generation holds before it is turned over.
    per_generation: usize,
    /// Lookups that found the key, for operators and tests.
    hits: AtomicU64,
}

impl SignerKeys {
    /// A memo of at most `capacity` keys, about 256 bytes each once its tables are full
    /// (a key and its decoded point are 224 bytes; hash tables are sized in powers of two and
    /// filled to 7/8, so a generation of 7 × 2^k keys fills its table).
    pub fn new(capacity: usize) -> Self {
        Self {
            generations: RwLock::default(),
            per_generation: capacity / 2,
            hits: AtomicU64::new(0),
        }
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found the key decoded already.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The kept keys, read-locked: look up a whole batch's signers under one lock.
    pub(super) fn known(&self) -> Known<'_> {
        Known {
            generations: self.read(),
            hits: &self.hits,
            found: 0,
        }
    }

    /// Keeps keys decoded for signatures that have just verified.
    pub(super) fn keep(&self, fresh: Vec<VerifyingKey>) {
        if fresh.is_empty() || self.per_generation == 0 {
            return;
        }
        let mut generations = self
            .generations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for key in fresh {
            let bytes = key.to_bytes();
            if generations.contains_key(&bytes) {
                continue;
            }
            if generations.young_len() >= self.per_generation {
                generations.turn_over();
            }
            generations.insert(bytes, key);
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Generations<KeyMap>> {
        // Nothing panics while the write lock is held; a poisoned memo is still only a memo.
        self.generations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The kept keys under a read lock (see [`SignerKeys::known`]).
pub(super) struct Known<'a> {
    generations: RwLockReadGuard<'a, Generations<KeyMap>>,
    hits: &'a AtomicU64,
    found: u64,
}

impl Known<'_> {
    /// `signer`'s decoded key, if kept.
    pub(super) fn get(&mut self, signer: &[u8; 32]) -> Option<VerifyingKey> {
        let key = self.generations.get(signer).copied();
        self.found = self.found.saturating_add(u64::from(key.is_some()));
        key
    }
}

impl Drop for Known<'_> {
    fn drop(&mut self) {
        self.hits.fetch_add(self.found, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    #[test]
    fn a_full_generation_turns_over_and_keeps_the_newest_keys() {
        let keys = SignerKeys::new(4);
        keys.keep((1..=5).map(key).collect());
        // Young {1, 2} turned over at 3, and {3, 4} at 5: 1 and 2 are gone.
        assert_eq!(keys.len(), 3);
        let mut known = keys.known();
        for (seed, kept) in [(1, false), (2, false), (3, true), (4, true), (5, true)] {
            assert_eq!(
                known.get(&key(seed).to_bytes()).is_some(),
                kept,
                "key {seed}"
            );
        }
        drop(known);
        assert_eq!(keys.hits(), 3);
        // A key kept already is not kept twice, and nothing is kept with no room at all.
        keys.keep(vec![key(5)]);
        assert_eq!(keys.len(), 3);
        let none = SignerKeys::new(0);
        none.keep(vec![key(1)]);
        assert!(none.is_empty());
    }
}
