//! One generation of recent intents: a log in the order they came, and an index into it.
//!
//! A general hash table keeps each key and value in a bucket where its hash falls, so every
//! insert writes a line of memory nobody has read lately: with generations of millions of
//! intents (64 bytes each), a cache miss per apply that the Book's read-ahead cannot take,
//! since the bucket is only known once the insert probes for it. Here the intents are
//! appended to a log instead, a write next to the last one, and the index holds an 8-byte
//! slot per intent (16 to 32 bytes of index per intent, at most half full, in powers of
//! two): where its hash falls, a short tag of the hash and the intent's place in the log. A
//! lookup reads the one index line its hash names (which the read-ahead can load) and goes to
//! the log only when a tag matches, that is, nearly only for a real duplicate.
//!
//! Nothing is ever removed one by one: a generation is filled, then cleared whole (see
//! [`super::Recent`]). Clearing does not pass over the index either: each slot carries the
//! stamp of the fill that wrote it, and a slot with another stamp is empty.

use crate::ids::IntentId;

/// Bits of a slot, from the top: the stamp of the fill that wrote it (16 bits), a tag (16
/// bits of the hash that the position does not use: a stranger's tag matches one slot in
/// 65,536, and only then is the log read) and the intent's place in the log (32 bits).
const STAMP_SHIFT: u32 = 48;
const TAG_SHIFT: u32 = 32;
const TAG_MASK: u64 = 0xffff;
const PLACE_MASK: u64 = 0xffff_ffff;

/// The stamp and tag bits of a slot.
const KEY_MASK: u64 = !PLACE_MASK;

/// The most stamps before the index must really be zeroed: one pass over it (tens of
/// milliseconds for a large generation) every 65,535 fills, a few months of a service that
/// turns its generations over every minute.
const LAST_STAMP: u64 = 0xffff;

/// Slots an index starts with; it doubles from there.
const MIN_SLOTS: usize = 64;

/// The most intents one log can place (its places are 32 bits): 256 GiB of log, far beyond
/// what a generation holds, but [`super::Recent`] turns a full one over all the same.
pub(super) const MAX_LEN: usize = 1 << 32;

pub(super) struct IntentLog<V> {
    /// Every intent of this fill and its value, in the order they came.
    entries: Vec<(IntentId, V)>,
    /// Open addressing with linear probing, a power of two long and at most half full, so a
    /// lookup of a new id (the common case) nearly always stops in the line its hash names.
    slots: Vec<u64>,
    /// This fill's stamp, 1 to [`LAST_STAMP`]; zeroed memory (stamp 0) is empty.
    stamp: u64,
    /// How many intents this log may hold ([`MAX_LEN`]; less in tests).
    max_len: usize,
}

impl<V> Default for IntentLog<V> {
    fn default() -> Self {
        Self::with_max_len(MAX_LEN)
    }
}

impl<V> IntentLog<V> {
    pub(super) fn with_max_len(max_len: usize) -> Self {
        Self {
            entries: Vec::new(),
            slots: Vec::new(),
            stamp: 1,
            max_len: max_len.min(MAX_LEN),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether another intent would not fit: the caller turns the generation over first.
    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_len
    }

    /// The intents from the `from`th on, in the order they came.
    pub(super) fn entries_from(&self, from: usize) -> &[(IntentId, V)] {
        self.entries.get(from..).unwrap_or_default()
    }

    /// Reads the slot where a lookup of `hash` starts, and nothing else: for reading ahead,
    /// without the branches of a lookup.
    pub(super) fn touch(&self, hash: u64) -> u64 {
        let mask = self.slots.len().wrapping_sub(1);
        self.slots.get(home_of(hash, mask)).copied().unwrap_or(0)
    }

    /// The value of `id`, whose hash is `hash`.
    pub(super) fn get(&self, hash: u64, id: &IntentId) -> Option<&V> {
        let mask = self.slots.len().wrapping_sub(1);
        let stamp = self.stamp << STAMP_SHIFT;
        let key = stamp | tag_of(hash);
        let mut at = home_of(hash, mask);
        // At most half full, so an empty slot ends every probe; the bound is for certainty.
        for _ in 0..self.slots.len() {
            let slot = *self.slots.get(at)?;
            if slot & (LAST_STAMP << STAMP_SHIFT) != stamp {
                return None;
            }
            if slot & KEY_MASK == key {
                // A place past the log cannot be (slots of this stamp were all written in this
                // fill); were it so, going on probing is what keeps a later slot findable.
                let found = self.entries.get(place_of(slot));
                debug_assert!(found.is_some(), "a slot points past the log");
                if let Some((found, value)) = found
                    && found == id
                {
                    return Some(value);
                }
            }
            at = at.wrapping_add(1) & mask;
        }
        None
    }

    /// Appends `id`, not already here, with `value`. `hash_of` gives any id's hash, for when
    /// the index grows. The caller checks [`IntentLog::is_full`] first; a full log drops the
    /// insert rather than misplace it.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        id: IntentId,
        value: V,
        hash_of: impl Fn(&IntentId) -> u64,
    ) {
        debug_assert!(!self.is_full(), "Recent turns a full generation over first");
        if self.is_full() {
            return;
        }
        let place = self.entries.len();
        if place.saturating_add(1).saturating_mul(2) > self.slots.len() {
            self.grow(&hash_of);
        }
        self.place(hash, place);
        self.entries.push((id, value));
    }

    /// Empties the log for the next fill, keeping its memory; the index is cleared by a new
    /// stamp, and zeroed only when the stamps run out.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        if self.stamp >= LAST_STAMP {
            self.slots.fill(0);
            self.stamp = 1;
        } else {
            self.stamp = self.stamp.saturating_add(1);
        }
    }

    /// Gives back memory the log no longer needs (after a load forgot most of it).
    pub(super) fn shrink_to_fit(&mut self, hash_of: impl Fn(&IntentId) -> u64) {
        self.entries.shrink_to_fit();
        let slots = slots_for(self.entries.len());
        if slots < self.slots.len() {
            self.rebuild(slots, &hash_of);
        }
    }

    /// Doubles the index (or makes the first one) and places every intent again.
    fn grow(&mut self, hash_of: &impl Fn(&IntentId) -> u64) {
        let slots = self.slots.len().saturating_mul(2).max(MIN_SLOTS);
        self.rebuild(slots, hash_of);
    }

    fn rebuild(&mut self, slots: usize, hash_of: &impl Fn(&IntentId) -> u64) {
        self.slots = vec![0; slots];
        self.stamp = 1;
        for place in 0..self.entries.len() {
            if let Some((id, _)) = self.entries.get(place) {
                self.place(hash_of(id), place);
            }
        }
    }

    /// Writes a slot for the intent at `place` in the log, in the first empty slot from its
    /// hash's home. The index has room (it is at most half full after this).
    fn place(&mut self, hash: u64, place: usize) {
        let mask = self.slots.len().wrapping_sub(1);
        let stamp = self.stamp << STAMP_SHIFT;
        let slot = stamp | tag_of(hash) | (place as u64 & PLACE_MASK);
        let mut at = home_of(hash, mask);
        for _ in 0..self.slots.len() {
            let Some(here) = self.slots.get_mut(at) else {
                return;
            };
            if *here & (LAST_STAMP << STAMP_SHIFT) != stamp {
                *here = slot;
                return;
            }
            at = at.wrapping_add(1) & mask;
        }
    }
}

/// The slot a hash's probe starts at: its low bits (the tag is from the high half).
fn home_of(hash: u64, mask: usize) -> usize {
    hash as usize & mask
}

/// A hash's tag, in place in a slot: 16 bits of its high half.
fn tag_of(hash: u64) -> u64 {
    ((hash >> TAG_SHIFT) & TAG_MASK) << TAG_SHIFT
}

fn place_of(slot: u64) -> usize {
    (slot & PLACE_MASK) as usize
}

/// Slots for `len` intents: a power of two, at least twice `len`.
fn slots_for(len: usize) -> usize {
    len.saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .max(MIN_SLOTS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hash_of(id: &IntentId) -> u64 {
        static HASHER: std::sync::LazyLock<foldhash::quality::RandomState> =
            std::sync::LazyLock::new(foldhash::quality::RandomState::default);
        super::super::intent_hash(&HASHER, id)
    }

    fn fill(log: &mut IntentLog<u32>, count: u32) -> Vec<IntentId> {
        (0..count)
            .map(|n| {
                let id = IntentId::new();
                log.insert(hash_of(&id), id, n, hash_of);
                id
            })
            .collect()
    }

    #[test]
    fn finds_every_intent_it_holds_and_none_it_does_not() {
        let mut log = IntentLog::default();
        let ids = fill(&mut log, 10_000);
        assert_eq!(log.len(), 10_000);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(log.get(hash_of(id), id), Some(&(n as u32)));
        }
        for _ in 0..10_000 {
            let stranger = IntentId::new();
            assert_eq!(log.get(hash_of(&stranger), &stranger), None);
        }
        assert!(log.slots.len() >= 2 * log.len(), "at most half full");
        let in_order: Vec<IntentId> = log.entries_from(0).iter().map(|(id, _)| *id).collect();
        assert_eq!(in_order, ids, "the log keeps the order they came in");
        assert_eq!(log.entries_from(9_998).len(), 2);
        assert!(log.entries_from(20_000).is_empty());
    }

    #[test]
    fn a_tag_that_matches_is_checked_against_the_id() {
        // Every id given the same hash: one long probe, every tag equal, only the log tells
        // them apart.
        let mut log = IntentLog::default();
        let ids: Vec<IntentId> = (0..100).map(|_| IntentId::new()).collect();
        for (n, &id) in ids.iter().enumerate() {
            log.insert(42, id, n as u32, |_| 42);
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(log.get(42, id), Some(&(n as u32)));
        }
        assert_eq!(log.get(42, &IntentId::new()), None);
    }

    #[test]
    fn clearing_empties_it_without_zeroing_until_the_stamps_run_out() {
        let mut log = IntentLog::default();
        let mut before = fill(&mut log, 20);
        let slots = log.slots.len();
        let mut zeroed = 0;
        // Past the last stamp: one real zeroing, and nothing of any fill ever comes back.
        for fill_number in 1..=(LAST_STAMP + 10) {
            log.clear();
            assert!(log.is_empty());
            if log.stamp == 1 {
                zeroed += 1;
                assert!(log.slots.iter().all(|&slot| slot == 0), "really zeroed");
            } else {
                assert!(
                    log.slots.iter().any(|&slot| slot != 0),
                    "cleared by the stamp alone"
                );
            }
            assert!(
                before.iter().all(|id| log.get(hash_of(id), id).is_none()),
                "fill {fill_number}: a cleared intent is gone"
            );
            let ids = fill(&mut log, 20);
            assert!(ids.iter().all(|id| log.get(hash_of(id), id).is_some()));
            before = ids;
        }
        assert_eq!(zeroed, 1);
        assert_eq!(log.slots.len(), slots, "the index is reused, not regrown");
    }

    #[test]
    fn shrinking_keeps_every_intent() {
        let mut log = IntentLog::default();
        fill(&mut log, 50_000);
        log.clear();
        let ids = fill(&mut log, 100);
        let large = log.slots.len();
        log.shrink_to_fit(hash_of);
        assert!(log.slots.len() < large);
        assert_eq!(log.slots.len(), slots_for(100));
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(log.get(hash_of(id), id), Some(&(n as u32)));
        }
    }

    #[test]
    fn a_log_says_when_it_is_full() {
        let mut log = IntentLog::with_max_len(3);
        let ids = fill(&mut log, 2);
        assert!(!log.is_full());
        let last = fill(&mut log, 1);
        assert!(log.is_full());
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(log.get(hash_of(id), id), Some(&(n as u32)));
        }
        assert_eq!(log.get(hash_of(&last[0]), &last[0]), Some(&0));
    }

    #[test]
    #[should_panic(expected = "turns a full generation over first")]
    fn inserting_into_a_full_log_is_a_bug_the_tests_catch() {
        let mut log = IntentLog::with_max_len(3);
        fill(&mut log, 4);
    }
}
