//! What the Book remembers of recent entries, and the little it keeps of older ones.
//!
//! Replay protection needs every intent id ever applied, and refunds need every payment's
//! payer, payee and amount. Kept in full, both grow with the journal (about 150 bytes a
//! payment), so a service that runs for months would grow without bound. The journal in
//! storage has all of it, indexed; memory only has to make the common cases fast:
//!
//! - a retry arrives seconds after the original, so recent intent ids are kept whole (in two
//!   generations, see [`Generations`] and [`Recent`]);
//! - a refund follows its sale within minutes or days, rarely, so payments older than the
//!   window are looked up in storage by whoever submits the refund (see
//!   [`super::Book::restore_payment`]);
//! - an intent id older than the window goes into a Bloom filter (16 bits, two more in each
//!   later filter, instead of the 80 to 100 bytes of a recent one). A new intent whose id the filter may contain
//!   *may* have been applied long ago; [`super::Book::apply`] then refuses it with
//!   [`super::BookError::MaybeApplied`] so the submitter can ask storage, and applies it
//!   with [`super::Book::apply_checked_new`] once storage says it is new. The filter has false positives (about two new intents in
//!   a thousand however many filters it has, see [`Fingerprints`]) but never false
//!   negatives, so no intent is ever applied twice.

use std::hash::{BuildHasher as _, Hash};

use crate::TimestampMs;
use crate::ids::IntentId;

mod intent_log;

use intent_log::IntentLog;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A map in two generations: inserts go to the young one; when the Book forgets, the old one
/// is dropped whole and the young one takes its place. Nothing is ever removed one by one,
/// which matters for memory: a hash table that removes and inserts at the same rate fills
/// with tombstones, and hashbrown then doubles it (once the table is over half full) instead
/// of cleaning in place, so a steady window would still grow in a step minutes into a run.
/// Dropped generations are cleared, not freed, and refilled at the same rate, so after two
/// windows the memory stays where it is.
pub(crate) struct Generations<G> {
    young: G,
    old: G,
}

impl<G: Generation> Default for Generations<G> {
    fn default() -> Self {
        Self {
            young: G::default(),
            old: G::default(),
        }
    }
}

impl<G: Generation> Generations<G> {
    pub(crate) fn get(&self, key: &G::Key) -> Option<&G::Value> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    pub(crate) fn contains_key(&self, key: &G::Key) -> bool {
        self.get(key).is_some()
    }

    /// Inserts into the young generation; the caller never inserts a key already present.
    pub(crate) fn insert(&mut self, key: G::Key, value: G::Value) {
        self.young.insert(key, value);
    }

    pub(crate) fn len(&self) -> usize {
        self.young.len().saturating_add(self.old.len())
    }

    /// How many the young generation holds.
    pub(crate) fn young_len(&self) -> usize {
        self.young.len()
    }

    /// Empties the old generation (keeping its memory) and makes the young one old: for a
    /// bounded memo that turns over when its young generation is full.
    pub(crate) fn turn_over(&mut self) {
        self.old.clear();
        self.rotate();
    }

    fn rotate(&mut self) {
        std::mem::swap(&mut self.young, &mut self.old);
    }

    fn shrink_to_fit(&mut self) {
        self.young.shrink_to_fit();
        self.old.shrink_to_fit();
    }
}

/// One generation: a map that is filled, then cleared whole.
pub(crate) trait Generation: Default {
    type Key;
    type Value;
    fn get(&self, key: &Self::Key) -> Option<&Self::Value>;
    /// Inserts, replacing the value of a key already present (as `HashMap::insert`).
    fn insert(&mut self, key: Self::Key, value: Self::Value);
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Empties it, keeping its memory for the next fill.
    fn clear(&mut self);
    fn shrink_to_fit(&mut self);
}

impl<K: Eq + Hash, V> Generation for HashMap<K, V> {
    type Key = K;
    type Value = V;
    fn get(&self, key: &K) -> Option<&V> {
        HashMap::get(self, key)
    }
    fn insert(&mut self, key: K, value: V) {
        HashMap::insert(self, key, value);
    }
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn clear(&mut self) {
        HashMap::clear(self);
    }
    fn shrink_to_fit(&mut self) {
        HashMap::shrink_to_fit(self);
    }
}

/// A generation for keys that come in nearly increasing order, as the ids of entries do
/// (UUIDv7: the millisecond first, then a per-thread counter; the service makes them on its
/// submitters' threads just before the entries queue for the Book). Such keys go into a
/// sorted vector, at or near its end: a write next to the last one, where a hash table of
/// millions writes to a random bucket, a cache miss per entry. A lookup (a refund, which is
/// rare) is a binary search, O(log n). A key far out of order (a payment restored from
/// storage) goes to a hash map instead.
pub(super) struct Ordered<K, V> {
    /// Strictly increasing keys.
    sorted: Vec<(K, V)>,
    /// Keys that were below the last [`NEAR_END`] sorted ones when inserted; none is in
    /// `sorted`. Those sorted keys are the largest, so they only grow: a key that went here
    /// will go here again, and a lookup of it in `sorted` fails.
    others: HashMap<K, V>,
}

/// How far from the end of the sorted vector a key that comes out of order is still put in
/// it: ids made on different threads in one millisecond interleave by a few places, and
/// moving up to this many entries along costs less than a cache miss in a hash table.
const NEAR_END: usize = 64;

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            others: HashMap::default(),
        }
    }
}

impl<K: Ord + Hash, V> Ordered<K, V> {
    fn position(&self, key: &K) -> Result<usize, usize> {
        self.sorted.binary_search_by(|(k, _)| k.cmp(key))
    }
}

impl<K: Ord + Hash, V> Generation for Ordered<K, V> {
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<&V> {
        match self.position(key) {
            Ok(at) => self.sorted.get(at).map(|(_, v)| v),
            Err(_) => self.others.get(key),
        }
    }

    fn insert(&mut self, key: K, value: V) {
        // A key above the last sorted one is in neither part (see `others`): the common case.
        if self.sorted.last().is_none_or(|(last, _)| *last < key) {
            self.sorted.push((key, value));
            return;
        }
        let near = self.sorted.len().saturating_sub(NEAR_END);
        let in_tail = self
            .sorted
            .get(near..)
            .map(|tail| tail.binary_search_by(|(k, _)| k.cmp(&key)));
        let at = match in_tail {
            Some(Ok(at)) => Ok(near.saturating_add(at)),
            // Above the first key of the tail, or no keys before the tail: it goes here.
            Some(Err(at)) if at > 0 || near == 0 => Err(near.saturating_add(at)),
            // Below the tail: already sorted further back, or one for `others`.
            _ => self.position(&key).map_err(|_| usize::MAX),
        };
        match at {
            Ok(at) => {
                if let Some(slot) = self.sorted.get_mut(at) {
                    slot.1 = value;
                }
            }
            Err(usize::MAX) => {
                self.others.insert(key, value);
            }
            Err(at) => self.sorted.insert(at, (key, value)),
        }
    }

    fn len(&self) -> usize {
        self.sorted.len().saturating_add(self.others.len())
    }

    fn clear(&mut self) {
        self.sorted.clear();
        self.others.clear();
    }

    fn shrink_to_fit(&mut self) {
        self.sorted.shrink_to_fit();
        self.others.shrink_to_fit();
    }
}

/// An intent id and its hash under [`Recent`]'s one hasher: hashed once per apply, then
/// looked up in both generations and the fingerprints, and inserted, with no rehashing.
#[derive(Clone, Copy)]
pub(super) struct HashedIntent {
    id: IntentId,
    hash: u64,
    minted: Minted,
}

/// When an intent id says it was made: the millisecond of a UUIDv7, or nothing for any
/// other version. The fingerprints use it to pass over filters that hold no id made then.
type Minted = Option<u64>;

fn minted(id: &IntentId) -> Minted {
    (id.0.get_version_num() == 7).then(|| (id.0.as_u128() >> 80) as u64)
}

/// Recent intents whole, in two generations (each a log, see [`IntentLog`]), and the
/// fingerprints of forgotten ones, all under one hasher so that an id is hashed once
/// whatever it is looked up in.
///
/// An old generation is let go gradually (see [`Recent::forget_before`]): its ids go into
/// the fingerprints a budget at a time from the moment it is old, in the order they came,
/// while it still answers lookups whole; it is dropped once it is old enough and all are
/// in. Fingerprinting a whole generation at once, when it was dropped (millions of ids, a
/// cache miss each), held the committer for 113–176 ms with a 2-million-entry window
/// (BENCHMARKS.md).
pub(super) struct Recent<V> {
    young: IntentLog<V>,
    old: IntentLog<V>,
    /// How many of `old`'s intents, from its first, are in the fingerprints already.
    fingerprinted: usize,
    /// Entry time (ms) of the newest entry in the young and the old generation.
    young_newest: TimestampMs,
    old_newest: TimestampMs,
    /// The first and last millisecond in which the young and the old generation's ids were
    /// made (see [`MintedRange`]): a lookup passes over a generation that holds no id made
    /// when the new one was. Clients make ids just before they send them, so a new id is
    /// nearly always newer than every id of the old generation (a window ago), and that
    /// generation's index line, a cache miss per payment, is not read.
    young_minted: MintedRange,
    old_minted: MintedRange,
    fingerprints: Fingerprints,
    /// Seeded per process, so nobody can choose intent ids that collide, in a table or with
    /// old ones in the filters.
    hasher: foldhash::quality::RandomState,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            young: IntentLog::default(),
            old: IntentLog::default(),
            fingerprinted: 0,
            young_newest: TimestampMs::MIN,
            old_newest: TimestampMs::MIN,
            young_minted: MintedRange::EMPTY,
            old_minted: MintedRange::EMPTY,
            fingerprints: Fingerprints::default(),
            hasher: foldhash::quality::RandomState::default(),
        }
    }
}

impl<V> Recent<V> {
    pub(super) fn hash(&self, id: IntentId) -> HashedIntent {
        HashedIntent {
            id,
            hash: intent_hash(&self.hasher, &id),
            minted: minted(&id),
        }
    }

    /// Reads what a lookup of `intent` reads first (both generations' slots and a word of
    /// each filter's block), without its branches: for reading ahead. Returns the words read,
    /// folded, for the caller to keep.
    pub(super) fn touch(&self, intent: HashedIntent) -> u64 {
        let mut seen = self.fingerprints.touch(intent.hash, intent.minted);
        if self.young_minted.may_hold(intent.minted) {
            seen ^= self.young.touch(intent.hash);
        }
        if self.old_minted.may_hold(intent.minted) {
            seen ^= self.old.touch(intent.hash);
        }
        seen
    }

    /// The recent intent `intent`, if it is one.
    pub(super) fn get(&self, intent: HashedIntent) -> Option<&V> {
        let young = self
            .young_minted
            .may_hold(intent.minted)
            .then(|| self.young.get(intent.hash, &intent.id))
            .flatten();
        young.or_else(|| {
            self.old_minted
                .may_hold(intent.minted)
                .then(|| self.old.get(intent.hash, &intent.id))
                .flatten()
        })
    }

    /// Notes an intent of an entry of time `at`, not already recent, in the young generation.
    pub(super) fn remember(&mut self, intent: HashedIntent, value: V, at: TimestampMs) {
        if self.young.is_full() {
            self.turn_over_now();
        }
        let hasher = self.hasher;
        self.young
            .insert(intent.hash, intent.id, value, |id| intent_hash(&hasher, id));
        self.young_newest = self.young_newest.max(at);
        self.young_minted.add(intent.minted);
    }

    /// Makes room in a young generation that cannot take another intent (billions of them,
    /// with nobody forgetting): the old one goes into the fingerprints whole, now, and the
    /// young one becomes old. The recent payments are left for the next
    /// [`Recent::forget_before`], which lets them go by time (so they may be kept a
    /// generation longer than the intents, never shorter); the intents let go here are not
    /// in the count it returns.
    fn turn_over_now(&mut self) {
        self.fingerprint_old(usize::MAX);
        self.drop_old();
        self.young_becomes_old();
    }

    /// Drops the old generation, whose intents are all fingerprinted.
    fn drop_old(&mut self) {
        self.old.clear();
        self.fingerprinted = 0;
        self.old_newest = TimestampMs::MIN;
        self.old_minted = MintedRange::EMPTY;
    }

    /// Makes the young generation the old one (the old one is empty): from now on its newest
    /// entry decides when it goes.
    fn young_becomes_old(&mut self) {
        std::mem::swap(&mut self.young, &mut self.old);
        self.fingerprinted = 0;
        self.old_newest = self.young_newest;
        self.young_newest = TimestampMs::MIN;
        self.old_minted = self.young_minted;
        self.young_minted = MintedRange::EMPTY;
    }

    /// Puts up to `budget` more of the old generation's intents into the fingerprints, in
    /// the order they came; returns how many.
    fn fingerprint_old(&mut self, budget: usize) -> usize {
        let left = self.old.entries_from(self.fingerprinted);
        // A generation goes into one filter: this makes it before the first id goes in, and
        // then finds room for the rest.
        self.fingerprints.make_room_for(left.len());
        let now = left.get(..budget).unwrap_or(left);
        for (id, _) in now {
            self.fingerprints
                .insert(intent_hash(&self.hasher, id), minted(id));
        }
        self.fingerprinted = self.fingerprinted.saturating_add(now.len());
        now.len()
    }

    /// Whether `intent` may be one forgotten earlier (false: it certainly is not).
    pub(super) fn may_have_forgotten(&self, intent: HashedIntent) -> bool {
        self.fingerprints.may_contain(intent.hash, intent.minted)
    }

    /// Lets go of the old generation of intents and of `payments` once everything in it is
    /// older than `before` (entry time, ms) and all its intents are fingerprinted; then the
    /// young generation becomes the old one, and the same again while that is still true.
    /// Returns how many intents were let go (dropped) in this call.
    ///
    /// The old generation's intents go into the fingerprints from the moment it is old, at
    /// most `budget` of them in this call, while it still answers lookups whole. At a
    /// writer's pace (a few per entry applied) they are all in long before the generation
    /// is old enough to drop, so it is dropped on time and memory holds two generations at
    /// most, as before; a generation still waiting for budget is kept whole meanwhile.
    pub(super) fn forget_before(
        &mut self,
        before: TimestampMs,
        payments: &mut Generations<impl Generation>,
        budget: usize,
    ) -> usize {
        // Sized for generations like the old one, which the young one will be at a steady
        // pace.
        self.fingerprints
            .prepare(self.old.len(), budget / INTENTS_PER_BLOCK_ZEROED);
        let mut forgotten = 0usize;
        let mut budget = budget;
        loop {
            let old_empty = self.old.is_empty() && payments.old.is_empty();
            if old_empty {
                if self.young.is_empty() && payments.young.is_empty() {
                    break;
                }
                self.young_becomes_old();
                payments.rotate();
                continue;
            }
            let done = self.fingerprint_old(budget);
            budget = budget.saturating_sub(done);
            if self.old_newest >= before || self.fingerprinted < self.old.len() {
                break;
            }
            forgotten = forgotten.saturating_add(self.old.len());
            self.drop_old();
            payments.old.clear();
        }
        forgotten
    }

    /// A `Recent` whose generations hold at most `max_len` intents each.
    #[cfg(test)]
    fn with_generation_limit(max_len: usize) -> Self {
        Self {
            young: IntentLog::with_max_len(max_len),
            old: IntentLog::with_max_len(max_len),
            ..Self::default()
        }
    }

    /// How many of the old generation's intents are fingerprinted already.
    #[cfg(test)]
    pub(super) fn being_let_go(&self) -> usize {
        self.fingerprinted
    }

    /// How many intents are remembered whole.
    pub(super) fn len(&self) -> usize {
        self.young.len().saturating_add(self.old.len())
    }

    /// How many intents are remembered by fingerprint only (not those of the old
    /// generation, fingerprinted already but still whole).
    pub(super) fn fingerprint_count(&self) -> usize {
        self.fingerprints.len.saturating_sub(self.fingerprinted)
    }

    /// Gives back memory the logs no longer need (after a load forgot most of it), and the
    /// next filter if a load zeroed it whole (the writer zeroes it again a little at a time).
    pub(super) fn shrink(&mut self, payments: &mut Generations<impl Generation>) {
        let hasher = self.hasher;
        for log in [&mut self.young, &mut self.old] {
            log.shrink_to_fit(|id| intent_hash(&hasher, id));
        }
        self.fingerprints.next = Vec::new();
        payments.shrink_to_fit();
    }
}

/// The first and last millisecond in which a set of ids were made; all of time once it
/// holds an id that does not say (not a UUIDv7). Empty: `u64::MAX..=0`, which holds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MintedRange {
    first: u64,
    last: u64,
}

impl MintedRange {
    const EMPTY: Self = Self {
        first: u64::MAX,
        last: 0,
    };

    fn add(&mut self, minted: Minted) {
        match minted {
            Some(ms) => {
                self.first = self.first.min(ms);
                self.last = self.last.max(ms);
            }
            None => {
                *self = Self {
                    first: 0,
                    last: u64::MAX,
                }
            }
        }
    }

    /// Whether the set may hold an id made at `minted` (one that does not say: if the set
    /// holds anything).
    fn may_hold(&self, minted: Minted) -> bool {
        match minted {
            Some(ms) => self.first <= ms && ms <= self.last,
            None => self.first <= self.last,
        }
    }
}

/// An intent id's hash: its 128 bits in one `write_u128` (a single multiply in foldhash),
/// where the derived `Hash` writes a length and then 16 bytes. foldhash's `quality` variant
/// (one multiply more than `fast`): every bit of the hash is used, by the logs' linear
/// probing and by the filters, and with `fast` some seeds put the filters' false positives
/// well above their design (0.20 % to 0.26 % over twelve seeds, beyond 0.3 % now and then,
/// against 0.22 % to 0.25 % with `quality`).
fn intent_hash(hasher: &foldhash::quality::RandomState, id: &IntentId) -> u64 {
    hasher.hash_one(id.0.as_u128())
}

/// Forgotten intent ids, as a scalable split-block Bloom filter: a list of filters, each
/// holding at least twice as many ids as the one before, the newest taking insertions. Each id
/// sets one bit in each of the eight 64-bit words of one 512-bit block, so a lookup reads one
/// cache line per filter. A lookup asks every filter, so their false positives add up: the
/// first filter spends 16 bits per id (about 0.1 % false positives) and each next one two bits
/// more, which halves its rate, so however many filters there are the sum stays near 0.2 %
/// (with a fixed 16 bits it grew by 0.1 % with every doubling of the forgotten ids).
///
/// Every lookup is a cache miss per filter, on the path of every new intent, so there should
/// be few filters: ids arrive a generation at a time, and a new filter holds at least
/// [`GENERATIONS_PER_FILTER`] generations of the size being forgotten, so one more filter
/// comes with each doubling of the forgotten ids past the first few generations (the
/// steady `bench ledger` Book, 12 million forgotten in generations of 1.5 million, has two
/// filters, where filters starting at 65,536 ids and doubling made eight). A service that
/// forgets a few intents a minute stays in the first filter, 128 KiB, for months. Memory:
/// about 2 to 5 bytes per forgotten id.
///
/// A new filter is tens of megabytes of zeros once millions are forgotten, and zeroing it
/// (the kernel's first touch of every page included) held the writer for 41 ms with a
/// 2-million-entry window (BENCHMARKS.md). So the next filter is zeroed ahead, a little at
/// a time ([`Fingerprints::prepare`]), and only taken when it is needed: the memory of one
/// filter is spent before it holds anything, the price of no pause.
#[derive(Default)]
struct Fingerprints {
    filters: Vec<Filter>,
    len: usize,
    /// The next filter's blocks, zeroed so far (see [`Fingerprints::prepare`]).
    next: Vec<[u64; 8]>,
}

/// [`Recent::forget_before`] zeroes a block of the next filter (64 bytes) for every this
/// many intents it may fingerprint. Zeroing is cheap, but the first touch of fresh memory is
/// not on this machine's virtual machine: 256 KiB took 2.5 to 2.9 ms in a third of the calls
/// at a block per intent, against 0.2 ms to fingerprint the 4,096 intents of the same call.
/// At one in 16 the next filter is ready in about a third of the time before it is needed: a
/// writer's budget is four intents per entry applied, so while a filter fills (four
/// generations of entries) a generation's worth of blocks is zeroed, and the next filter,
/// twice as large, needs about one block per 25 of its ids (a third of a generation).
const INTENTS_PER_BLOCK_ZEROED: usize = 16;

/// Ids the first filter holds at least; each next one holds at least twice as many.
const FIRST_FILTER_IDS: usize = 1 << 16;

/// A new filter holds at least this many generations of the size being forgotten.
const GENERATIONS_PER_FILTER: usize = 4;

/// Bits of filter per id in the first filter.
const FIRST_BITS_PER_ID: usize = 16;
/// Bits per id added with each next filter: two bits halve the false-positive rate.
const MORE_BITS_PER_FILTER: usize = 2;

/// Odd constants that spread one hash into eight bit positions (as Parquet's split-block
/// Bloom filter does with its salts).
const SALTS: [u64; 8] = [
    0x47b6_137b_4497_4d91,
    0x8824_ad5b_a2b7_289d,
    0x7054_95c7_2df1_424b,
    0x9efc_4947_5c6b_fb31,
    0x2df1_424b_4497_4d91,
    0x5c6b_fb31_a2b7_289d,
    0x9efc_4947_7054_95c7,
    0x8824_ad5b_47b6_137b,
];

struct Filter {
    blocks: Vec<[u64; 8]>,
    capacity: usize,
    len: usize,
    /// The first and last millisecond in which the ids it holds were made (see [`Minted`]);
    /// all of time once it holds an id that does not say. Empty: `u64::MAX..=0`.
    minted: (u64, u64),
}

impl Filter {
    /// A filter over `zeros` (all zero), holding as many ids as they have room for at
    /// `bits_per_id`.
    fn from_zeros(zeros: Vec<[u64; 8]>, bits_per_id: usize) -> Self {
        let capacity = zeros
            .len()
            .saturating_mul(512)
            .checked_div(bits_per_id)
            .unwrap_or(0);
        Self {
            blocks: zeros,
            capacity,
            len: 0,
            minted: (u64::MAX, 0),
        }
    }

    /// Whether it may hold an id made at `minted`: if not, a lookup passes it over.
    fn may_hold(&self, minted: Minted) -> bool {
        let (first, last) = self.minted;
        minted.map_or(self.len > 0, |ms| first <= ms && ms <= last)
    }

    /// The block for `hash`, from its high half.
    fn block(&self, hash: u64) -> usize {
        // Multiply-shift maps the 32 high bits onto 0..blocks without a division; both
        // factors are below 2^32, so the product fits.
        ((hash >> 32).wrapping_mul(self.blocks.len() as u64) >> 32) as usize
    }

    fn insert(&mut self, hash: u64, minted: Minted) {
        let block = self.block(hash);
        for (word, bit) in self.blocks[block].iter_mut().zip(bits_of(hash)) {
            *word |= bit;
        }
        self.len = self.len.saturating_add(1);
        let (first, last) = self.minted;
        self.minted = match minted {
            Some(ms) => (first.min(ms), last.max(ms)),
            None => (0, u64::MAX),
        };
    }

    fn may_contain(&self, hash: u64, bits: &[u64; 8]) -> bool {
        self.blocks[self.block(hash)]
            .iter()
            .zip(bits)
            .all(|(word, bit)| word & bit != 0)
    }
}

/// Blocks of 512 bits for `capacity` ids at `bits_per_id`: at least one.
fn blocks_for(capacity: usize, bits_per_id: usize) -> usize {
    capacity.saturating_mul(bits_per_id).div_ceil(512).max(1)
}

/// The bit `hash` sets in each word of its block, from its low half: the same in every
/// filter, so a lookup works them out once.
fn bits_of(hash: u64) -> [u64; 8] {
    let low = hash & 0xffff_ffff;
    SALTS.map(|salt| 1u64 << (low.wrapping_mul(salt) >> 58))
}

impl Fingerprints {
    /// Starts a new filter unless the newest has room for `ids` more, sized for
    /// [`GENERATIONS_PER_FILTER`] times as many, so that a generation is never split over
    /// two filters and the next ones are not started by a few thousand ids at a time.
    fn make_room_for(&mut self, ids: usize) {
        let room = self
            .filters
            .last()
            .map_or(0, |f| f.capacity.saturating_sub(f.len));
        if ids > 0 && room < ids {
            self.add_filter(ids.saturating_mul(GENERATIONS_PER_FILTER));
        }
    }

    /// Adds a filter for at least `ids` ids and at least twice the newest one's: the one
    /// zeroed ahead, made larger first if it is too small (then this is a pause).
    fn add_filter(&mut self, ids: usize) {
        let bits_per_id = self.next_bits_per_id();
        let blocks = self.next_blocks(ids);
        let mut zeros = std::mem::take(&mut self.next);
        if zeros.len() < blocks {
            zeros.resize(blocks, [0; 8]);
        }
        self.filters.push(Filter::from_zeros(zeros, bits_per_id));
    }

    /// Zeroes up to `budget` more blocks of the next filter, sized for generations of
    /// `generation` ids: so that when the newest filter is full, or has no room for a whole
    /// generation, the next one is ready. Memory is reserved a quarter larger than asked, so
    /// generations that vary a little from one to the next go on where it is; one larger
    /// still starts over in memory of its size rather than copy what is done (tens of
    /// megabytes: a pause again). The caller passes a size that changes once a generation,
    /// not with every entry.
    fn prepare(&mut self, generation: usize, budget: usize) {
        let blocks = self.next_blocks(generation.saturating_mul(GENERATIONS_PER_FILTER));
        if self.next.capacity() < blocks {
            self.next = Vec::with_capacity(blocks.saturating_add(blocks / 4));
        }
        let missing = blocks.saturating_sub(self.next.len());
        let now = self.next.len().saturating_add(missing.min(budget));
        self.next.resize(now, [0; 8]);
    }

    /// Blocks of the next filter, for at least `ids` ids and at least twice the newest
    /// filter's.
    fn next_blocks(&self, ids: usize) -> usize {
        let capacity = self
            .filters
            .last()
            .map_or(FIRST_FILTER_IDS, |f| f.capacity.saturating_mul(2))
            .max(ids);
        blocks_for(capacity, self.next_bits_per_id())
    }

    fn next_bits_per_id(&self) -> usize {
        FIRST_BITS_PER_ID.saturating_add(MORE_BITS_PER_FILTER.saturating_mul(self.filters.len()))
    }

    fn insert(&mut self, hash: u64, minted: Minted) {
        if self.filters.last().is_none_or(|f| f.len >= f.capacity) {
            self.add_filter(0);
        }
        if let Some(filter) = self.filters.last_mut() {
            filter.insert(hash, minted);
            self.len = self.len.saturating_add(1);
        }
    }

    /// The first word of `hash`'s block in each filter that may hold it, folded.
    fn touch(&self, hash: u64, minted: Minted) -> u64 {
        self.filters
            .iter()
            .filter(|filter| filter.may_hold(minted))
            .fold(0, |seen, filter| {
                seen ^ filter
                    .blocks
                    .get(filter.block(hash))
                    .map_or(0, |block| block[0])
            })
    }

    /// Whether an id of this hash, made at `minted`, may be in a filter. Only the filters
    /// whose ids were made around then are read: ids are forgotten a minute or two after
    /// they are used, so a new one, made seconds ago, is newer than every id in them and no
    /// filter is read (a cache miss each, on every payment, before). A filter that holds an id made
    /// far ahead of its use (a device whose clock runs fast), or one that is not a UUIDv7,
    /// is read for every lookup from then on, as all were before.
    fn may_contain(&self, hash: u64, minted: Minted) -> bool {
        if self.filters.is_empty() {
            return false;
        }
        let bits = bits_of(hash);
        self.filters
            .iter()
            .any(|f| f.may_hold(minted) && f.may_contain(hash, &bits))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An id's hash as [`Recent`] makes it, under one hasher for the whole test run.
    fn hash_of(id: IntentId) -> u64 {
        static HASHER: std::sync::LazyLock<foldhash::quality::RandomState> =
            std::sync::LazyLock::new(foldhash::quality::RandomState::default);
        intent_hash(&HASHER, &id)
    }

    /// One millisecond for ids the filter tests make up: every filter holds ids made then.
    const MADE: Minted = Some(1_000);

    fn new_hash() -> u64 {
        hash_of(IntentId::new())
    }

    #[test]
    fn the_filter_never_forgets_and_rarely_imagines() {
        let mut prints = Fingerprints::default();
        let inserted: Vec<IntentId> = (0..300_000).map(|_| IntentId::new()).collect();
        for &id in &inserted {
            prints.insert(hash_of(id), MADE);
        }
        assert_eq!(prints.len, inserted.len());
        assert!(prints.filters.len() >= 3, "it grew by adding filters");
        assert!(
            inserted
                .iter()
                .all(|&id| prints.may_contain(hash_of(id), MADE)),
            "no false negative"
        );
        let strangers = 200_000;
        let imagined = (0..strangers)
            .filter(|_| prints.may_contain(new_hash(), MADE))
            .count();
        // About 0.1 % per full filter, three filters here (0.23 % measured): under 0.5 %.
        assert!(
            imagined * 200 < strangers,
            "{imagined} of {strangers} new ids looked forgotten"
        );
    }

    #[test]
    fn false_positives_do_not_add_up_as_filters_are_added() {
        let mut prints = Fingerprints::default();
        for _ in 0..(FIRST_FILTER_IDS * 31) {
            prints.insert(new_hash(), MADE);
        }
        assert_eq!(prints.filters.len(), 5);
        let strangers = 400_000;
        let imagined = (0..strangers)
            .filter(|_| prints.may_contain(new_hash(), MADE))
            .count();
        // Five filters at a fixed 16 bits would imagine about 0.5 %; tightened, about 0.2 %.
        assert!(
            imagined * 1_000 < strangers * 3,
            "{imagined} of {strangers} new ids looked forgotten"
        );
    }

    #[test]
    fn the_next_filter_is_zeroed_ahead_a_budget_at_a_time_and_taken_when_needed() {
        let mut prints = Fingerprints::default();
        prints.insert(new_hash(), MADE);
        let generation = 100_000;
        let blocks = prints.next_blocks(generation * GENERATIONS_PER_FILTER);
        let mut calls = 0;
        while prints.next.len() < blocks {
            let before = prints.next.len();
            prints.prepare(generation, 1_000);
            assert!(prints.next.len() - before <= 1_000, "at most the budget");
            calls += 1;
        }
        assert_eq!(calls, blocks.div_ceil(1_000));
        prints.prepare(generation, 1_000);
        assert_eq!(prints.next.len(), blocks, "ready: no more");
        assert!(prints.next.iter().all(|block| *block == [0; 8]));
        prints.prepare(generation / 2, 1_000);
        assert_eq!(
            prints.next.len(),
            blocks,
            "a smaller generation fits what is ready"
        );

        // The first filter (65,536 ids) has no room for the generation: the prepared one is
        // taken, not made anew.
        let prepared = prints.next.as_ptr();
        prints.make_room_for(generation);
        assert_eq!(prints.filters.len(), 2);
        assert_eq!(prints.filters[1].blocks.as_ptr(), prepared);
        assert!(prints.filters[1].capacity >= generation * GENERATIONS_PER_FILTER);
        assert!(prints.next.is_empty());
        let ids: Vec<u64> = (0..generation).map(|_| new_hash()).collect();
        for &hash in &ids {
            prints.insert(hash, MADE);
        }
        assert!(ids.iter().all(|&hash| prints.may_contain(hash, MADE)));

        // The filter after that is zeroed ahead in turn. Generations a little larger than
        // it is being zeroed for: it goes on where it is, in the memory it has.
        // (Generations of this size make it exactly twice the newest filter.)
        let generation = prints.filters[1].capacity * 2 / GENERATIONS_PER_FILTER;
        let third = prints.next_blocks(generation * GENERATIONS_PER_FILTER);
        while prints.next.len() < third {
            prints.prepare(generation, 10_000);
        }
        let memory = prints.next.as_ptr();
        let a_little = generation + generation / 10;
        assert!(prints.next_blocks(a_little * GENERATIONS_PER_FILTER) > third);
        prints.prepare(a_little, 1_000);
        assert_eq!(prints.next.len(), third + 1_000);
        assert_eq!(prints.next.as_ptr(), memory);
        // Generations much larger: it starts over at the new size, a budget at a time.
        prints.prepare(generation * 8, 1_000);
        assert_eq!(prints.next.len(), 1_000);
        assert!(
            prints.next.capacity() >= prints.next_blocks(generation * 8 * GENERATIONS_PER_FILTER)
        );

        // Unprepared, a filter is still made when needed, at once.
        let mut unprepared = Fingerprints::default();
        unprepared.make_room_for(generation);
        assert_eq!(unprepared.filters.len(), 1);
        assert!(unprepared.filters[0].capacity >= generation * GENERATIONS_PER_FILTER);
    }

    #[test]
    fn forgetting_by_generations_keeps_the_filters_few() {
        let mut prints = Fingerprints::default();
        let generation = 50_000;
        let mut inserted = Vec::new();
        for _ in 0..12 {
            prints.make_room_for(generation);
            for _ in 0..generation {
                let id = IntentId::new();
                prints.insert(hash_of(id), minted(&id));
                inserted.push(id);
            }
        }
        // Four generations in the first filter, eight in the second; one at a time from
        // 65,536 ids they would take four filters.
        assert_eq!(prints.filters.len(), 2);
        assert_eq!(prints.len, inserted.len());
        assert!(
            inserted
                .iter()
                .all(|&id| prints.may_contain(hash_of(id), minted(&id)))
        );
        prints.make_room_for(0);
        assert_eq!(prints.filters.len(), 2, "nothing to make room for");
    }

    #[test]
    fn a_generation_let_go_in_steps_answers_whole_until_dropped_and_fills_one_filter() {
        let mut recent = Recent::<u32>::default();
        let mut payments = Generations::<Ordered<u64, u32>>::default();
        let generation = 20_000;
        for round in 1..=4 {
            let ids: Vec<IntentId> = (0..generation).map(|_| IntentId::new()).collect();
            for (n, &id) in ids.iter().enumerate() {
                recent.remember(recent.hash(id), n as u32, i64::from(round));
            }
            let done_before = recent.fingerprint_count();
            let mut calls = 0;
            while recent.len() > 0 {
                let forgotten = recent.forget_before(i64::from(round) + 1, &mut payments, 5_000);
                calls += 1;
                if recent.len() > 0 {
                    assert_eq!(forgotten, 0);
                    let sample = ids.iter().enumerate().step_by(997);
                    for (n, &id) in sample {
                        assert_eq!(recent.get(recent.hash(id)), Some(&(n as u32)));
                    }
                } else {
                    assert_eq!(forgotten, generation);
                }
            }
            assert_eq!(calls, 4, "20,000 ids at 5,000 a call");
            assert_eq!(recent.fingerprint_count(), done_before + generation);
            assert!(
                ids.iter()
                    .all(|&id| recent.may_have_forgotten(recent.hash(id)))
            );
        }
        // The first filter holds four generations of this size; steps that each asked room
        // for a whole generation would have started a second one part-way through the last.
        assert_eq!(recent.fingerprints.filters.len(), 1);
    }

    #[test]
    fn a_full_young_generation_turns_over_and_forgets_nothing() {
        let mut recent = Recent::<u32>::with_generation_limit(1_000);
        let ids: Vec<IntentId> = (0..3_500).map(|_| IntentId::new()).collect();
        for (n, &id) in ids.iter().enumerate() {
            recent.remember(recent.hash(id), n as u32, 7);
        }
        // Nobody forgot, yet three generations filled: the first went into the fingerprints
        // when the third began, the second when the fourth did.
        assert_eq!(recent.len(), 1_500);
        assert_eq!(recent.fingerprint_count(), 2_000);
        for (n, &id) in ids.iter().enumerate() {
            let intent = recent.hash(id);
            if n < 2_000 {
                assert!(recent.may_have_forgotten(intent), "intent {n}");
            } else {
                assert_eq!(recent.get(intent), Some(&(n as u32)), "intent {n}");
            }
        }
        // Forgetting goes on from there: what a turn-over let go is not counted again.
        let mut payments = Generations::<Ordered<u64, u32>>::default();
        assert_eq!(recent.forget_before(8, &mut payments, usize::MAX), 1_500);
        assert_eq!(recent.len(), 0);
        assert_eq!(recent.fingerprint_count(), 3_500);
        assert!(
            ids.iter()
                .all(|&id| recent.may_have_forgotten(recent.hash(id)))
        );
    }

    #[test]
    fn an_ordered_generation_is_a_map_whatever_the_order_of_its_keys() {
        let mut ordered = Ordered::<u64, u32>::default();
        let mut map = HashMap::<u64, u32>::default();
        // Mostly increasing, some a few places back, some far back, some repeated: a
        // xorshift stream chooses, seeded, so a failure reproduces.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = 1_000u64;
        for value in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = match state % 16 {
                0..=9 => {
                    next += 1 + state % 3;
                    next
                }
                10..=13 => next.saturating_sub(state % (2 * NEAR_END as u64)),
                14 => state % next,
                _ => next + 2,
            };
            Generation::insert(&mut ordered, key, value);
            map.insert(key, value);
            assert_eq!(Generation::len(&ordered), map.len());
        }
        assert!(ordered.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            !ordered.others.is_empty(),
            "some keys came far out of order"
        );
        for key in 0..next + 10 {
            assert_eq!(Generation::get(&ordered, &key), map.get(&key), "key {key}");
        }
        Generation::clear(&mut ordered);
        assert!(Generation::is_empty(&ordered));
        assert_eq!(Generation::get(&ordered, &next), None);
    }

    #[test]
    fn a_lookup_reads_only_filters_holding_ids_made_around_then() {
        let mut prints = Fingerprints::default();
        // Ids made in the first second go into the first filter, a second later the next.
        let ids = FIRST_FILTER_IDS as u64;
        for n in 0..ids {
            prints.insert(new_hash(), Some(1_000 + n * 1_000 / ids));
        }
        let early = new_hash();
        prints.insert(early, Some(500));
        let late = new_hash();
        prints.insert(late, Some(3_000));
        assert_eq!(prints.filters.len(), 2);
        assert_eq!(prints.filters[0].minted, (1_000, 1_999));
        assert_eq!(prints.filters[1].minted, (500, 3_000));

        // Every id is found whenever it was made...
        assert!(prints.may_contain(early, Some(500)));
        assert!(prints.may_contain(late, Some(3_000)));
        // ...but not asked of filters that hold nothing made then: the same hash said to
        // be made later, or earlier, than anything in them is not there.
        assert!(!prints.may_contain(late, Some(3_001)));
        assert!(!prints.may_contain(early, Some(499)));
        assert_eq!(prints.touch(late, Some(3_001)), 0, "no filter read");
        // An id that does not say when it was made is asked of every filter.
        assert!(prints.may_contain(late, None));
        assert!(prints.may_contain(early, None));

        // Once a filter holds such an id, it may hold an id made at any time.
        let timeless = new_hash();
        prints.insert(timeless, None);
        assert_eq!(prints.filters[1].minted, (0, u64::MAX));
        assert!(prints.may_contain(timeless, Some(123_456_789)));
        assert!(
            prints.may_contain(late, Some(3_001)),
            "the second filter is read again"
        );
    }

    /// A v7 id made at `ms`, the rest random.
    fn made_at(ms: u64) -> IntentId {
        let random = IntentId::new().0.as_u128() & ((1u128 << 80) - 1);
        let id = (u128::from(ms) << 80) | random;
        // Version 7 and the RFC variant in their places.
        let id = (id & !(0xf << 76)) | (0x7 << 76);
        IntentId(uuid::Uuid::from_u128((id & !(0x3 << 62)) | (0x2 << 62)))
    }

    #[test]
    fn a_generation_is_read_only_for_ids_made_while_it_filled() {
        let mut recent = Recent::<u32>::default();
        let early: Vec<IntentId> = (0..100).map(|n| made_at(1_000 + n)).collect();
        for (n, &id) in early.iter().enumerate() {
            recent.remember(recent.hash(id), n as u32, 1);
        }
        assert_eq!(
            recent.young_minted,
            MintedRange {
                first: 1_000,
                last: 1_099
            }
        );
        // The young generation becomes old; newer ids fill the young one.
        let mut payments = Generations::<Ordered<u64, u32>>::default();
        recent.forget_before(0, &mut payments, 0);
        let late: Vec<IntentId> = (0..100).map(|n| made_at(5_000 + n)).collect();
        for (n, &id) in late.iter().enumerate() {
            recent.remember(recent.hash(id), 100 + n as u32, 2);
        }
        assert_eq!(
            recent.old_minted,
            MintedRange {
                first: 1_000,
                last: 1_099
            }
        );
        // Every id is found, in whichever generation holds it, retries included.
        for (n, &id) in early.iter().chain(&late).enumerate() {
            assert_eq!(recent.get(recent.hash(id)), Some(&(n as u32)), "id {n}");
        }
        // An id made between the two, or after both, is in neither and neither is read: a
        // stranger with the hash of a remembered id is passed over by its time alone.
        let between = recent.hash(made_at(3_000));
        assert!(!recent.old_minted.may_hold(between.minted));
        assert!(!recent.young_minted.may_hold(between.minted));
        assert_eq!(recent.get(between), None);
        let disguised = HashedIntent {
            minted: Some(9_000),
            ..recent.hash(late[0])
        };
        assert_eq!(recent.get(disguised), None, "not read, so not found");
        // An id that does not say when it was made is looked up everywhere, and once one is
        // remembered, its generation is read for every id.
        let v4 = IntentId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_4def_8123_4567_89ab_cdef,
        ));
        assert_eq!(recent.get(recent.hash(v4)), None);
        recent.remember(recent.hash(v4), 999, 3);
        assert_eq!(recent.get(recent.hash(v4)), Some(&999));
        assert!(recent.young_minted.may_hold(Some(123)));
        // Forgetting both generations empties their ranges.
        recent.forget_before(10, &mut payments, usize::MAX);
        assert_eq!(recent.len(), 0);
        assert_eq!(
            (recent.young_minted, recent.old_minted),
            (MintedRange::EMPTY, MintedRange::EMPTY)
        );
    }

    #[test]
    fn an_id_says_when_it_was_made_only_if_it_is_a_v7() {
        let id = IntentId::new();
        let made = minted(&id).expect("ids made here are v7");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(made <= now && now - made < 60_000, "{made} against {now}");
        let v4 = IntentId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_4def_8123_4567_89ab_cdef,
        ));
        assert_eq!(minted(&v4), None);
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let prints = Fingerprints::default();
        assert!(!prints.may_contain(new_hash(), MADE));
    }
}
