//! The Book: every account's balance in memory, and the rules an entry must pass.
//!
//! [`Book::apply`] either applies all of an entry's postings or none. It is the only place
//! balances change, so the invariants hold by construction: postings move equal amounts
//! within one unit (per-unit sums stay zero) and no final balance leaves its limits.
//! [`Book::check_invariants`] re-proves both from scratch, for data loaded from storage.

use std::collections::HashMap as StdHashMap;
use std::hash::{Hash, Hasher};

use crate::account::{Account, AccountKind, AccountStatus};
use crate::amount::Balance;
use crate::entry::{EntryKind, JournalEntry};
use crate::ids::{AccountId, EntryId, IntentId};
use crate::journal::Digest;
use crate::keys::PublicKey;
use crate::policy::{CategoryCode, SpendWindow, SpendingRule, UnitPolicy, day_of};
use crate::unit::{Unit, UnitCode, UnitKind};

pub(crate) mod recent;

/// Why the Book refused an entry or a registration. Every variant is a distinct cause a
/// client can act on; the service maps each to its own problem type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// No such unit.
    #[error("unknown unit {0}")]
    UnknownUnit(UnitCode),
    /// A unit with this code exists already.
    #[error("unit {0} exists already")]
    DuplicateUnit(UnitCode),
    /// No such account.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    /// An account with this id exists already.
    #[error("account {0} exists already")]
    DuplicateAccount(AccountId),
    /// The posting's unit is not the account's unit.
    #[error("account {account} holds {account_unit}, not {posting_unit}")]
    UnitMismatch {
        /// The account.
        account: AccountId,
        /// Its unit.
        account_unit: UnitCode,
        /// The unit of the posting.
        posting_unit: UnitCode,
    },
    /// The account is frozen.
    #[error("account {0} is frozen")]
    AccountFrozen(AccountId),
    /// The account is closed.
    #[error("account {0} is closed")]
    AccountClosed(AccountId),
    /// The signer does not control the debited account.
    #[error("the signer is not authorised to debit account {0}")]
    NotAuthorised(AccountId),
    /// The debit would take the account below its lower limit.
    #[error("account {account} has {available} minor units available; {requested} requested")]
    InsufficientFunds {
        /// The account.
        account: AccountId,
        /// How much could be debited.
        available: i64,
        /// How much the entry debits in total.
        requested: i64,
    },
    /// The credit would take the account above its upper limit.
    #[error("account {account} would reach {resulting}, above its limit of {limit} minor units")]
    LimitExceeded {
        /// The account.
        account: AccountId,
        /// Its upper limit.
        limit: i64,
        /// The balance the entry would leave.
        resulting: i64,
    },
    /// The same intent (same id, same signed bytes) was applied already: a replay or retry.
    #[error("intent {intent_id} was applied already as entry {entry_id}")]
    Duplicate {
        /// The intent.
        intent_id: IntentId,
        /// The entry it produced.
        entry_id: EntryId,
    },
    /// An intent id already used by a different intent.
    #[error("intent id {0} was already used by a different intent")]
    IntentConflict(IntentId),
    /// A scheme rule forbids the entry.
    #[error("rule violated: {0}")]
    RuleViolation(&'static str),
    /// A programme's spending rule refused the entry; `rule` names which.
    #[error("refused by the programme's {rule} rule: {reason}")]
    SpendingRefused {
        /// The rule.
        rule: SpendingRule,
        /// What exactly, for the person at the till.
        reason: String,
    },
    /// A balance would leave the 64-bit range.
    #[error("balance of account {0} would overflow")]
    Overflow(AccountId),
    /// A refund names an entry that is not a committed payment (of one posting, as every
    /// `payment` intent makes).
    #[error("there is no payment {0} to refund")]
    UnknownPayment(EntryId),
    /// A refund that does not mirror its payment; `field` names the first difference.
    #[error("refund of payment {payment} does not match it: `{field}` must be {expected}")]
    RefundMismatch {
        /// The payment.
        payment: EntryId,
        /// The refund's field that differs: `from`, `unit` or `to`.
        field: &'static str,
        /// What it must be, in words (never the original's value: the signer may not be
        /// the payee).
        expected: &'static str,
    },
    /// Refunds of one payment would add up to more than the payment.
    #[error("payment {payment} has {refundable} minor units left to refund; {requested} requested")]
    RefundExceedsPayment {
        /// The payment.
        payment: EntryId,
        /// What may still be refunded (the payment less its earlier refunds).
        refundable: i64,
        /// What this refund asks for.
        requested: i64,
    },
    /// The intent id is not among the recent ones, but matches the fingerprint of one
    /// applied long ago: storage must say whether it was (see [`Book::apply_checked_new`]).
    #[error("intent {0} may have been applied long ago; look it up in storage")]
    MaybeApplied(IntentId),
}

/// A broken invariant found by [`Book::check_invariants`]: the data is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// Per unit, balances must sum to zero.
    #[error("balances of unit {unit} sum to {sum}, not 0")]
    UnitNotBalanced {
        /// The unit.
        unit: UnitCode,
        /// The sum found.
        sum: i128,
    },
    /// A balance outside its account's limits.
    #[error("account {account} has balance {balance}, outside its limits")]
    OutsideLimits {
        /// The account.
        account: AccountId,
        /// Its balance.
        balance: i64,
    },
}

/// The Book's maps use foldhash: several times faster than SipHash on 16-byte ids, and
/// seeded per process, so keys chosen by clients (intent ids) cannot be aimed at one bucket
/// without knowing the seed.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// The most card replacements followed from a card that paid to the household's current
/// card. Far more cards than a household loses; a bound all the same, against a cycle in
/// stored data. It must be at least the longest chain the card service keeps (1,000): a load
/// links every card before the replay, so a payment made by a card long since replaced is
/// counted by following the whole chain, where the live service counted it on the card then
/// current and carried it along at each replacement.
const MAX_REPLACEMENTS_FOLLOWED: usize = 1_024;

/// What [`Book::apply`] reads and writes of an account, in one cache line of its own: a
/// payment touches two random accounts of many, and each costs a cache miss, so a miss should
/// bring in all the common case needs and nothing else. The rest of the account (its id, the
/// limits as the caller gave them) lives in `Book::accounts`, read only for errors and
/// accessors. The copies here of status, kind, limits and authority are written wherever
/// those fields are.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Hot {
    /// The key allowed to debit the account, if `has_authority`.
    authority: [u8; 32],
    balance: Balance,
    /// Lowest balance allowed; `i64::MIN` when unbounded, which no balance is below, so the
    /// check needs no branch on the `Option`.
    lower: i64,
    /// Highest balance allowed; `i64::MAX` when unbounded.
    upper: i64,
    /// Index of the account's unit in `Book::units`.
    unit: u32,
    status: AccountStatus,
    kind: AccountKind,
    unit_kind: UnitKind,
    has_authority: bool,
}

// One cache line, or the point of `Hot` is lost.
const _: () = assert!(std::mem::size_of::<Hot>() == 64);

impl Hot {
    fn new(account: &Account, unit: u32, unit_kind: UnitKind) -> Self {
        let mut hot = Self {
            authority: [0; 32],
            balance: Balance::ZERO,
            lower: account.limits.lower().map_or(i64::MIN, |l| l.0),
            upper: account.limits.upper().map_or(i64::MAX, |u| u.0),
            unit,
            status: account.status,
            kind: account.kind,
            unit_kind,
            has_authority: false,
        };
        hot.set_authority(account.authority);
        hot
    }

    fn set_authority(&mut self, key: Option<PublicKey>) {
        self.authority = key.map_or([0; 32], |k| k.0);
        self.has_authority = key.is_some();
    }

    /// Whether `signer` controls the account: `account.authority == Some(signer)`.
    fn is_authority(&self, signer: PublicKey) -> bool {
        self.has_authority && self.authority == signer.0
    }
}

/// An account id as the index hashes it: all 128 bits in one `write_u128`, a single multiply
/// in foldhash. The derived `Hash` of the id's 16-byte array writes its length and then its
/// bytes, a multiply each, on every lookup of the hot path. Still every bit and still the
/// per-process seed, so ids chosen by clients cannot be aimed at one bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey(AccountId);

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.0.0.as_u128());
    }
}

#[derive(Clone, Copy)]
struct AppliedIntent {
    entry_id: EntryId,
    digest: Digest,
}

/// What the Book keeps of a recent payment so that it can be refunded: 24 bytes (plus the
/// 16-byte entry id as key). Accounts are slots, not 16-byte ids, and the unit is the payer
/// account's. Older payments are restored from storage when a refund names one.
#[derive(Clone, Copy, Debug)]
struct Refundable {
    /// The payment's amount, in minor units.
    amount: i64,
    /// Slot of the account that paid, where refunds go.
    payer: u32,
    /// Slot of the account that was paid, the only one that refunds.
    payee: u32,
    /// UTC day of the payment (days since 1970 fit in 32 bits for any `created_at`), to give
    /// a refund back to the spending caps of the day and month that counted the payment.
    day: u32,
}

/// Balances and rules, in memory.
#[derive(Default)]
pub struct Book {
    /// Every unit, in the order added: accounts name theirs by index.
    units: Vec<Unit>,
    /// Index in `units` by code.
    unit_index: HashMap<UnitCode, u32>,
    /// What apply needs of each account, by slot (see [`Hot`]).
    hot: Vec<Hot>,
    /// The accounts as opened (with later status and authority), by slot: for errors and
    /// accessors.
    accounts: Vec<Account>,
    /// Slot by account id.
    index: HashMap<IdKey, u32>,
    /// Recent intents whole, older ones as fingerprints (see [`recent`]).
    intents: recent::Recent<AppliedIntent>,
    /// Entries applied or replayed since the Book was made.
    applied: u64,
    /// `applied` when the Book last forgot, for [`Book::forget_gradually`]'s budget.
    applied_at_forget: u64,
    /// Programme rules per unit; most units have none.
    policies: HashMap<UnitCode, UnitPolicy>,
    /// Registered merchants' accounts with their category: whom programme holders may pay.
    payees: HashMap<AccountId, CategoryCode>,
    /// What each holder of a programme unit has paid this day and month, for the caps. A
    /// household's window lives on its current card (see `replaced_by`).
    spent: HashMap<AccountId, SpendWindow>,
    /// Which card replaced which: a programme holder account, to the account its balance
    /// first moved to in a `card_replacement` entry, or that [`Book::link_replacement`] named
    /// (a card replaced while empty moves nothing). Learned from applied and replayed entries
    /// and from the card records a load passes on; kept for good (a household loses few
    /// cards).
    replaced_by: HashMap<AccountId, AccountId>,
    /// Recent single-posting payments, by entry id, for refunds: ordered, since entry ids
    /// nearly always arrive in increasing order (see [`recent::Ordered`]).
    payments: recent::Generations<recent::Ordered<EntryId, Refundable>>,
    /// What has been refunded of each payment that had a refund (few do), kept for good:
    /// the payment itself may have been forgotten and restored since.
    refunded: HashMap<EntryId, i64>,
    /// Reused per apply: (slot, net change) of each account an entry touches.
    scratch: Vec<(u32, i128)>,
}

impl Book {
    /// How many entries to [`Book::warm`] at a time: enough for a few dozen cache misses in
    /// flight, few enough that the lines read are still in cache when the entries are applied
    /// (about ten lines per payment, so 40 KiB). 16 and 64 measured alike (BENCHMARKS.md,
    /// "Reading ahead").
    pub const WARM_AHEAD: usize = 64;

    /// Intents [`Book::forget_gradually`] fingerprints per entry applied since its last call.
    pub const FORGET_PER_APPLY: usize = 4;

    /// Intents [`Book::forget_gradually`] may fingerprint in any call: a fraction of a
    /// millisecond, so a quiet service lets go of a generation in a few batches.
    pub const FORGET_AT_LEAST: usize = 4_096;

    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a unit.
    pub fn add_unit(&mut self, unit: Unit) -> Result<(), BookError> {
        if self.unit_index.contains_key(&unit.code()) {
            return Err(BookError::DuplicateUnit(unit.code()));
        }
        let index = u32::try_from(self.units.len())
            .map_err(|_| BookError::RuleViolation("too many units"))?;
        self.unit_index.insert(unit.code(), index);
        self.units.push(unit);
        Ok(())
    }

    /// A unit by code, with its index in `units`.
    fn find_unit(&self, code: UnitCode) -> Option<(u32, &Unit)> {
        let &index = self.unit_index.get(&code)?;
        Some((index, &self.units[index as usize]))
    }

    /// The code of an account's unit.
    fn unit_code(&self, hot: &Hot) -> UnitCode {
        self.units[hot.unit as usize].code()
    }

    /// Opens an account at balance zero.
    pub fn open_account(&mut self, account: Account) -> Result<(), BookError> {
        let (unit_index, unit) = self
            .find_unit(account.unit)
            .ok_or(BookError::UnknownUnit(account.unit))?;
        if self.index.contains_key(&IdKey(account.id)) {
            return Err(BookError::DuplicateAccount(account.id));
        }
        if account.kind == AccountKind::Issuer && !unit.kind().is_issued() {
            return Err(BookError::RuleViolation(
                "mutual-credit units have no issuer accounts",
            ));
        }
        let slot = u32::try_from(self.hot.len())
            .map_err(|_| BookError::RuleViolation("too many accounts"))?;
        self.hot.push(Hot::new(&account, unit_index, unit.kind()));
        self.index.insert(IdKey(account.id), slot);
        self.accounts.push(account);
        Ok(())
    }

    /// Changes an account's status (freeze, unfreeze, close).
    pub fn set_status(&mut self, id: AccountId, status: AccountStatus) -> Result<(), BookError> {
        let slot = self.slot(id)?;
        self.accounts[slot].status = status;
        self.hot[slot].status = status;
        Ok(())
    }

    /// Sets (or replaces, after a lost phone) the key allowed to debit an account.
    pub fn set_authority(&mut self, id: AccountId, key: PublicKey) -> Result<(), BookError> {
        let slot = self.slot(id)?;
        self.accounts[slot].authority = Some(key);
        self.hot[slot].set_authority(Some(key));
        Ok(())
    }

    /// Puts a unit under a programme's rules (replacing earlier ones: pass every version).
    pub fn set_policy(&mut self, unit: UnitCode, policy: UnitPolicy) -> Result<(), BookError> {
        if !self.unit_index.contains_key(&unit) {
            return Err(BookError::UnknownUnit(unit));
        }
        self.policies.insert(unit, policy);
        Ok(())
    }

    /// A unit's programme rules, if it has any.
    pub fn policy(&self, unit: UnitCode) -> Option<&UnitPolicy> {
        self.policies.get(&unit)
    }

    /// Registers (with its category) or deregisters an account as a merchant that programme
    /// holders may pay.
    pub fn set_payee(
        &mut self,
        id: AccountId,
        category: Option<CategoryCode>,
    ) -> Result<(), BookError> {
        self.slot(id)?;
        match category {
            Some(code) => self.payees.insert(id, code),
            None => self.payees.remove(&id),
        };
        Ok(())
    }

    /// The category of a registered merchant's account.
    pub fn payee(&self, id: AccountId) -> Option<CategoryCode> {
        self.payees.get(&id).copied()
    }

    /// Applies every posting of `entry`, or none and says why. An intent id that matches
    /// the fingerprint of one forgotten long ago is refused with [`BookError::MaybeApplied`]:
    /// look it up in storage, then use [`Book::apply_checked_new`] if it is not there.
    pub fn apply(&mut self, entry: &JournalEntry) -> Result<(), BookError> {
        self.apply_inner(entry, true)
    }

    /// [`Book::apply`] for an intent that storage has just been shown not to hold, so a
    /// fingerprint match is a false positive. Recent intents are still checked here (a copy
    /// may have been applied since storage was asked).
    pub fn apply_checked_new(&mut self, entry: &JournalEntry) -> Result<(), BookError> {
        self.apply_inner(entry, false)
    }

    /// Reads, without changing anything, what applying `entries` will read: their accounts'
    /// index buckets and hot records, and where their intent ids would be in both
    /// generations and in the filters that may hold them (see `Recent::touch`). Call it on
    /// the next [`Book::WARM_AHEAD`] entries just before applying them; entries it does not
    /// know (accounts, intents) are passed over.
    ///
    /// Why: an apply is a chain of dependent cache misses (the index bucket gives the slot,
    /// the slot gives the hot record; one apply's checks come before the next one's lookups),
    /// about ten per payment among millions of accounts and intents, so the processor waits
    /// for memory one miss at a time. Here the lookups of different entries do not depend on
    /// each other, so the processor has many misses in flight at once, and the applies that
    /// follow find their lines in cache. Stable Rust has no safe prefetch instruction; plain
    /// loads whose results are kept (`black_box`) do the same job.
    pub fn warm<'a>(&self, entries: impl IntoIterator<Item = &'a JournalEntry>) {
        /// Slots read per pass over the hot records: a pass at a time keeps the index
        /// lookups (which give the slots) apart from the reads that depend on them.
        const SLOTS: usize = 128;
        let read_hot = |slots: &[u32]| {
            slots
                .iter()
                .filter_map(|&slot| self.hot.get(slot as usize))
                .fold(0u64, |seen, hot| seen ^ hot.balance.0 as u64)
        };
        let mut slots = [0u32; SLOTS];
        let mut found = 0usize;
        let mut seen = 0u64;
        for entry in entries {
            let intent = self.intents.hash(entry.authorisation().intent_id);
            seen ^= self.intents.touch(intent);
            for posting in entry.postings() {
                for id in [posting.debit, posting.credit] {
                    let Some(&slot) = self.index.get(&IdKey(id)) else {
                        continue;
                    };
                    if found == SLOTS {
                        seen ^= read_hot(&slots);
                        found = 0;
                    }
                    if let Some(place) = slots.get_mut(found) {
                        *place = slot;
                        found = found.saturating_add(1);
                    }
                }
            }
        }
        seen ^= read_hot(&slots[..found]);
        std::hint::black_box(seen);
    }

    fn apply_inner(&mut self, entry: &JournalEntry, fingerprints: bool) -> Result<(), BookError> {
        let auth = entry.authorisation();
        let intent = self.intents.hash(auth.intent_id);
        if let Some(applied) = self.intents.get(intent) {
            return Err(if applied.digest == auth.digest {
                BookError::Duplicate {
                    intent_id: auth.intent_id,
                    entry_id: applied.entry_id,
                }
            } else {
                BookError::IntentConflict(auth.intent_id)
            });
        }
        if fingerprints && self.intents.may_have_forgotten(intent) {
            return Err(BookError::MaybeApplied(auth.intent_id));
        }
        let mut deltas = std::mem::take(&mut self.scratch);
        deltas.clear();
        let result = self
            .check_refund(entry, Some(auth.signer))
            .and_then(|()| self.collect_deltas(entry, &mut deltas))
            .and_then(|()| self.check_policies(entry))
            .and_then(|()| self.check_limits(&deltas));
        if result.is_ok() {
            self.record_spending(entry);
            // A one-posting entry's deltas are its payer's and its payee's, in that order
            // (they differ: `JournalEntry::new` refuses a posting to its own account).
            let slots = match deltas.as_slice() {
                &[(payer, _), (payee, _)] => Some((payer, payee)),
                _ => None,
            };
            self.record_refundable(entry, slots);
            for &(slot, delta) in &deltas {
                let balance = &mut self.hot[slot as usize].balance;
                // check_limits proved the sum fits in i64.
                balance.0 =
                    i64::try_from(i128::from(balance.0).saturating_add(delta)).unwrap_or(balance.0);
            }
            self.remember(intent, entry);
        }
        self.scratch = deltas;
        result
    }

    /// Applies an entry loaded from storage, where it was committed under the rules of its
    /// day. Statuses, signers and limits may have changed since (a card frozen later, a key
    /// rotated), so only what can never change is checked here: accounts exist, units match,
    /// the intent is new, a refund mirrors its payment and stays within it, balances fit in
    /// 64 bits. The caller then proves the invariants over the whole Book with
    /// [`Book::check_invariants`].
    pub fn replay(&mut self, entry: &JournalEntry) -> Result<(), BookError> {
        let auth = entry.authorisation();
        let intent = self.intents.hash(auth.intent_id);
        if let Some(applied) = self.intents.get(intent) {
            return Err(BookError::Duplicate {
                intent_id: auth.intent_id,
                entry_id: applied.entry_id,
            });
        }
        for posting in entry.postings() {
            for id in [posting.debit, posting.credit] {
                let account_unit = self.unit_code(&self.hot[self.slot(id)?]);
                if account_unit != posting.unit {
                    return Err(BookError::UnitMismatch {
                        account: id,
                        account_unit,
                        posting_unit: posting.unit,
                    });
                }
            }
        }
        self.check_refund(entry, None)?;
        for posting in entry.postings() {
            let amount = posting.amount.minor();
            for (id, change) in [
                (posting.debit, amount.saturating_neg()),
                (posting.credit, amount),
            ] {
                let slot = self.slot(id)?;
                let balance = &mut self.hot[slot].balance;
                balance.0 = balance
                    .0
                    .checked_add(change)
                    .ok_or(BookError::Overflow(id))?;
            }
        }
        self.record_spending(entry);
        self.record_refundable(entry, None);
        self.remember(intent, entry);
        Ok(())
    }

    /// Notes an applied entry's intent as recent.
    fn remember(&mut self, intent: recent::HashedIntent, entry: &JournalEntry) {
        let applied = AppliedIntent {
            entry_id: entry.id(),
            digest: entry.authorisation().digest,
        };
        self.intents.remember(intent, applied, entry.created_at());
        self.applied = self.applied.saturating_add(1);
    }

    /// Forgets what came before `before` (entry time, ms): those intent ids become
    /// fingerprints and those payments must be restored from storage to be refunded (see
    /// [`recent`]). All at once, however much that is: for a load. Returns how many entries
    /// were let go.
    pub fn forget_before(&mut self, before: crate::TimestampMs) -> usize {
        self.applied_at_forget = self.applied;
        self.intents
            .forget_before(before, &mut self.payments, usize::MAX)
    }

    /// [`Book::forget_before`] a step at a time, for a writer that calls it between batches:
    /// it fingerprints at most [`Book::FORGET_PER_APPLY`] intents for every entry applied
    /// since the last call, and at least [`Book::FORGET_AT_LEAST`], so letting go of a
    /// generation of millions costs each batch a little instead of one batch a pause (what
    /// is not yet forgotten is remembered whole meanwhile). At that pace a generation is let
    /// go in a quarter of the time it took to fill. Returns how many entries were let go.
    pub fn forget_gradually(&mut self, before: crate::TimestampMs) -> usize {
        let since = self.applied.saturating_sub(self.applied_at_forget);
        self.applied_at_forget = self.applied;
        let budget = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .saturating_mul(Self::FORGET_PER_APPLY)
            .max(Self::FORGET_AT_LEAST);
        self.intents
            .forget_before(before, &mut self.payments, budget)
    }

    /// Gives memory back after forgetting much at once (a load).
    pub fn shrink_to_fit(&mut self) {
        self.intents.shrink(&mut self.payments);
    }

    /// Whether the payment's facts are in memory, so a refund of it can be checked.
    pub fn knows_payment(&self, payment: EntryId) -> bool {
        self.payments.contains_key(&payment)
    }

    /// Brings a payment the Book forgot back into memory, from its committed entry as
    /// storage holds it (id, kind, time, postings), so that a refund of it can be checked.
    /// Does nothing if the Book knows it, or if it is not a refundable payment (the refund
    /// is then refused as of an unknown payment).
    pub fn restore_payment(
        &mut self,
        id: EntryId,
        kind: EntryKind,
        created_at: crate::TimestampMs,
        postings: &[crate::entry::Posting],
    ) {
        if self.payments.contains_key(&id) {
            return;
        }
        if let (EntryKind::Payment, [posting]) = (kind, postings) {
            self.record_payment(id, created_at, posting, None);
        }
    }

    /// Whether `intent_id` is not among the recent intents but may be one forgotten earlier:
    /// [`Book::apply`] would refuse it with [`BookError::MaybeApplied`].
    pub fn may_have_forgotten(&self, intent_id: IntentId) -> bool {
        let intent = self.intents.hash(intent_id);
        self.intents.get(intent).is_none() && self.intents.may_have_forgotten(intent)
    }

    /// How many intents are remembered whole, and how many by fingerprint only.
    pub fn remembered_intents(&self) -> (usize, usize) {
        (self.intents.len(), self.intents.fingerprint_count())
    }

    /// What may still be refunded of a committed payment; `None` if `payment` is not one.
    pub fn refundable(&self, payment: EntryId) -> Option<crate::Amount> {
        self.payments
            .get(&payment)
            .and_then(|p| crate::Amount::from_minor(self.remaining(payment, p)).ok())
    }

    /// A refund (an entry linked by `tags.reverses`) must give back part or all of a committed
    /// payment: from the account that was paid, to the account that paid, in its unit, and
    /// never more than is left of it. `JournalEntry::new` already proved the entry is a
    /// reversal of one posting. With `signer` (a live apply), the signer must control `from`
    /// before anything about the payment is looked at, so nobody else learns of it; a replay
    /// passes `None`, since keys may have been rotated since.
    fn check_refund(
        &self,
        entry: &JournalEntry,
        signer: Option<PublicKey>,
    ) -> Result<(), BookError> {
        let Some(payment) = entry.tags().reverses else {
            return Ok(());
        };
        let [posting] = entry.postings() else {
            return Err(BookError::RuleViolation(
                "a refund moves one amount from the payee back to the payer",
            ));
        };
        let from = self.slot(posting.debit)?;
        let to = self.slot(posting.credit)?;
        if let Some(signer) = signer
            && !self.hot[from].is_authority(signer)
        {
            return Err(BookError::NotAuthorised(posting.debit));
        }
        let original = self
            .payments
            .get(&payment)
            .ok_or(BookError::UnknownPayment(payment))?;
        let mismatch = |field, expected| BookError::RefundMismatch {
            payment,
            field,
            expected,
        };
        if from != original.payee as usize {
            return Err(mismatch("from", "the account the payment was made to"));
        }
        if posting.unit != self.unit_code(&self.hot[from]) {
            return Err(mismatch("unit", "the unit the payment was made in"));
        }
        if to != original.payer as usize {
            return Err(mismatch("to", "the account that made the payment"));
        }
        let requested = posting.amount.minor();
        let remaining = self.remaining(payment, original);
        if requested > remaining {
            return Err(BookError::RefundExceedsPayment {
                payment,
                refundable: remaining,
                requested,
            });
        }
        Ok(())
    }

    /// Remembers a payment's facts for refunds; false if an account is unknown. `slots`,
    /// the payer's and the payee's, if the caller has them already.
    fn record_payment(
        &mut self,
        id: EntryId,
        created_at: crate::TimestampMs,
        posting: &crate::entry::Posting,
        slots: Option<(u32, u32)>,
    ) -> bool {
        let slots = slots.or_else(|| {
            let payer = self.index.get(&IdKey(posting.debit))?;
            let payee = self.index.get(&IdKey(posting.credit))?;
            Some((*payer, *payee))
        });
        let Some((payer, payee)) = slots else {
            return false;
        };
        let day = u32::try_from(day_of(created_at)).unwrap_or(0);
        let refundable = Refundable {
            amount: posting.amount.minor(),
            payer,
            payee,
            day,
        };
        self.payments.insert(id, refundable);
        true
    }

    /// What is left to refund of a payment.
    fn remaining(&self, payment: EntryId, facts: &Refundable) -> i64 {
        let refunded = self.refunded.get(&payment).copied().unwrap_or(0);
        facts.amount.saturating_sub(refunded).max(0)
    }

    /// Remembers a committed payment so that it can be refunded (returns true), or counts a
    /// committed refund against its payment (and gives it back to the payer's spending caps).
    /// Called once an entry is applied or replayed; [`Book::check_refund`] proved a refund
    /// fits. `slots`: the payer's and the payee's, if the caller has them.
    fn record_refundable(&mut self, entry: &JournalEntry, slots: Option<(u32, u32)>) -> bool {
        let [posting] = entry.postings() else {
            return false;
        };
        match (entry.kind(), entry.tags().reverses) {
            (EntryKind::Payment, None) => {
                self.record_payment(entry.id(), entry.created_at(), posting, slots)
            }
            (EntryKind::Reversal, Some(payment)) => {
                let Some(&original) = self.payments.get(&payment) else {
                    return false;
                };
                let amount = posting.amount.minor();
                let refunded = self.refunded.entry(payment).or_default();
                *refunded = refunded.saturating_add(amount);
                self.give_back_spending(original, posting.unit, entry.created_at(), amount);
                false
            }
            _ => false,
        }
    }

    /// A refund of a holder's programme payment no longer counts toward the caps of the day
    /// and month it was paid in, if it happens within them.
    fn give_back_spending(
        &mut self,
        original: Refundable,
        unit: UnitCode,
        at: crate::TimestampMs,
        amount: i64,
    ) {
        if !self.policies.contains_key(&unit) {
            return;
        }
        let payer = original.payer as usize;
        if self.hot[payer].kind != AccountKind::Holder {
            return;
        }
        // The payment counted on the card that paid; its window has moved on with the
        // household if that card was replaced since.
        let card = self.current_card(self.accounts[payer].id);
        if let Some(window) = self.spent.get_mut(&card) {
            window.give_back(i64::from(original.day), at, amount);
        }
    }

    /// The card that holds `card`'s household's spending now: `card`, or the last of the
    /// cards that replaced it one after another. Follows at most
    /// [`MAX_REPLACEMENTS_FOLLOWED`] replacements, so a cycle in stored entries (the rules
    /// never make one: a frozen card takes no replacement's money) ends the walk, not the
    /// service.
    fn current_card(&self, card: AccountId) -> AccountId {
        let mut current = card;
        for _ in 0..MAX_REPLACEMENTS_FOLLOWED {
            match self.replaced_by.get(&current) {
                Some(&next) => current = next,
                None => break,
            }
        }
        current
    }

    fn slot(&self, id: AccountId) -> Result<usize, BookError> {
        self.index
            .get(&IdKey(id))
            .map(|&s| s as usize)
            .ok_or(BookError::UnknownAccount(id))
    }

    fn collect_deltas(
        &self,
        entry: &JournalEntry,
        deltas: &mut Vec<(u32, i128)>,
    ) -> Result<(), BookError> {
        let signer = entry.authorisation().signer;
        for posting in entry.postings() {
            let debit = self.slot(posting.debit)?;
            let credit = self.slot(posting.credit)?;
            // Only hot records are read unless the entry is refused; the ids in errors are
            // the posting's, which are the accounts' (they were looked up by them).
            for (slot, id, pays) in [
                (debit, posting.debit, true),
                (credit, posting.credit, false),
            ] {
                let hot = &self.hot[slot];
                let account_unit = self.unit_code(hot);
                if account_unit != posting.unit {
                    if !self.unit_index.contains_key(&posting.unit) {
                        return Err(BookError::UnknownUnit(posting.unit));
                    }
                    return Err(BookError::UnitMismatch {
                        account: id,
                        account_unit,
                        posting_unit: posting.unit,
                    });
                }
                match hot.status {
                    AccountStatus::Active => {}
                    AccountStatus::Frozen if self.thaws(entry, posting.unit, pays) => {}
                    AccountStatus::Frozen => return Err(BookError::AccountFrozen(id)),
                    AccountStatus::Closed => return Err(BookError::AccountClosed(id)),
                }
            }
            let payer = &self.hot[debit];
            if !payer.is_authority(signer)
                && !self.administers(entry.kind(), payer, &self.hot[credit], posting, signer)?
            {
                return Err(BookError::NotAuthorised(posting.debit));
            }
            check_kind_rules(entry.kind(), payer)?;
            let amount = i128::from(posting.amount.minor());
            add_delta(deltas, debit, amount.saturating_neg());
            add_delta(deltas, credit, amount);
        }
        Ok(())
    }

    /// Whether a frozen account of `unit` may take part in `entry` all the same. A frozen account
    /// (a card reported lost, then replaced) moves no money, with two exceptions that keep
    /// what is the household's reaching it: a refund may credit it, since it gives back what
    /// the account paid ([`Book::check_refund`] proved the mirror), and the programme key may
    /// move its balance to the replacement card (the rest of that check is
    /// [`Book::administers`]).
    fn thaws(&self, entry: &JournalEntry, unit: UnitCode, pays: bool) -> bool {
        if pays {
            entry.kind() == EntryKind::CardReplacement
                && self
                    .policies
                    .get(&unit)
                    .is_some_and(|p| p.administrator() == entry.authorisation().signer)
        } else {
            entry.tags().reverses.is_some()
        }
    }

    /// Whether `signer` may debit `payer` as its unit's programme administrator: only to
    /// return expired units to an issuer (budget) account, or to move a holder's balance to
    /// a replacement card. An administrator signing anything else is refused by name.
    fn administers(
        &self,
        kind: EntryKind,
        payer: &Hot,
        payee: &Hot,
        posting: &crate::entry::Posting,
        signer: PublicKey,
    ) -> Result<bool, BookError> {
        let Some(policy) = self.policies.get(&self.unit_code(payer)) else {
            return Ok(false);
        };
        if policy.administrator() != signer || payer.kind != AccountKind::Holder {
            return Ok(false);
        }
        let allowed = match kind {
            EntryKind::Expire => payee.kind == AccountKind::Issuer,
            EntryKind::CardReplacement => payee.kind == AccountKind::Holder,
            _ => false,
        };
        if allowed {
            Ok(true)
        } else {
            Err(refused(
                SpendingRule::AdministratorScope,
                format!(
                    "the programme key moves a household's units only back to the budget \
                     (expire) or to its replacement card (card_replacement), not by a {} entry \
                     to account {}",
                    kind.as_str(),
                    posting.credit
                ),
            ))
        }
    }

    /// The programme rules of every unit the entry moves: where holders may pay, their caps,
    /// and how merchants redeem.
    fn check_policies(&self, entry: &JournalEntry) -> Result<(), BookError> {
        if self.policies.is_empty() {
            return Ok(());
        }
        let at = entry.created_at();
        // (household's current card, unit, total paid by this entry) for the caps.
        let mut paying: Vec<(AccountId, UnitCode, i64)> = Vec::new();
        for posting in entry.postings() {
            let Some(policy) = self.policies.get(&posting.unit) else {
                continue;
            };
            let payer = posting.debit;
            if self.hot[self.slot(payer)?].kind != AccountKind::Holder {
                continue;
            }
            match entry.kind() {
                EntryKind::Payment => {}
                // The administrator's scope was checked with the authority.
                EntryKind::Expire | EntryKind::CardReplacement
                    if entry.authorisation().signer == policy.administrator() =>
                {
                    continue;
                }
                other => {
                    return Err(refused(
                        SpendingRule::HolderPaysByPaymentOnly,
                        format!(
                            "household accounts in {} pay by payment entries only, not {}",
                            posting.unit,
                            other.as_str()
                        ),
                    ));
                }
            }
            let Some(rules) = policy.rules_at(at) else {
                continue;
            };
            let Some(category) = self.payees.get(&posting.credit) else {
                return Err(refused(
                    SpendingRule::RegisteredMerchantsOnly,
                    format!(
                        "{} is accepted only by registered merchants; account {} is not one",
                        posting.unit, posting.credit
                    ),
                ));
            };
            if let Some(allowed) = &rules.allowed_categories
                && !allowed.contains(category)
            {
                return Err(refused(
                    SpendingRule::MerchantCategory,
                    format!(
                        "merchants of category {category} do not accept {}; allowed: {}",
                        posting.unit,
                        join(allowed)
                    ),
                ));
            }
            // Caps count the household: an entry paying from an old card and its
            // replacement is checked for its total.
            let household = self.current_card(payer);
            match paying
                .iter_mut()
                .find(|(a, unit, _)| *a == household && *unit == posting.unit)
            {
                Some((_, _, total)) => *total = total.saturating_add(posting.amount.minor()),
                None => paying.push((household, posting.unit, posting.amount.minor())),
            }
        }
        for (household, unit, amount) in paying {
            self.check_caps(household, unit, amount, at)?;
        }
        if entry.kind() == EntryKind::Redeem {
            self.check_redemption(entry)?;
        }
        Ok(())
    }

    /// `household` is the paying card's current card ([`Book::current_card`]), which holds
    /// the household's window however many cards it has had.
    fn check_caps(
        &self,
        household: AccountId,
        unit: UnitCode,
        amount: i64,
        at: crate::TimestampMs,
    ) -> Result<(), BookError> {
        let Some(rules) = self.policies.get(&unit).and_then(|p| p.rules_at(at)) else {
            return Ok(());
        };
        let scale = self.unit(unit).map_or(0, Unit::scale);
        let (day, month) = self
            .spent
            .get(&household)
            .copied()
            .unwrap_or_default()
            .after(at, amount);
        for (cap, total, rule, period) in [
            (rules.daily_cap, day, SpendingRule::DailyCap, "today"),
            (
                rules.monthly_cap,
                month,
                SpendingRule::MonthlyCap,
                "this month",
            ),
        ] {
            if let Some(cap) = cap
                && total > cap.minor()
            {
                let already = total.saturating_sub(amount);
                return Err(refused(
                    rule,
                    format!(
                        "this payment would bring {period}'s spending to {} {unit}; the cap is {} \
                         ({} spent so far)",
                        Balance(total).format(scale),
                        cap.format(scale),
                        Balance(already).format(scale)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A redemption in a programme unit: one registered merchant gives units to the clearing
    /// account and pays exactly the programme's fee to the fee account.
    fn check_redemption(&self, entry: &JournalEntry) -> Result<(), BookError> {
        // The programme unit the entry redeems, whichever posting names it: the signer
        // chooses the order of postings, so looking only at the first would let a leg in
        // another unit go first and skip every check below.
        let Some(first) = entry
            .postings()
            .iter()
            .find(|p| self.policies.contains_key(&p.unit))
        else {
            return Ok(());
        };
        let Some(policy) = self.policies.get(&first.unit) else {
            return Ok(());
        };
        let not_open = || {
            refused(
                SpendingRule::Redemption,
                format!("redemption of {} is not open", first.unit),
            )
        };
        let rule = policy
            .rules_at(entry.created_at())
            .and_then(|r| r.redemption.as_ref())
            .ok_or_else(not_open)?;
        let merchant = first.debit;
        if !self.payees.contains_key(&merchant) {
            return Err(refused(
                SpendingRule::Redemption,
                format!("only registered merchants redeem; account {merchant} is not one"),
            ));
        }
        let (mut gross, mut fee) = (0i64, 0i64);
        for posting in entry.postings() {
            let amount = posting.amount.minor();
            if posting.debit != merchant || posting.unit != first.unit {
                return Err(refused(
                    SpendingRule::Redemption,
                    "a redemption debits one merchant account in one unit".to_owned(),
                ));
            }
            if posting.credit == rule.fee_account {
                fee = fee.saturating_add(amount);
            } else if posting.credit != rule.clearing_account {
                return Err(refused(
                    SpendingRule::Redemption,
                    format!(
                        "a redemption credits the clearing account {} and the fee account {} only",
                        rule.clearing_account, rule.fee_account
                    ),
                ));
            }
            gross = gross.saturating_add(amount);
        }
        let expected = crate::Amount::from_minor(gross)
            .map(|g| rule.fee_for(g).minor())
            .unwrap_or(fee);
        if fee != expected {
            let scale = self.unit(first.unit).map_or(0, Unit::scale);
            return Err(refused(
                SpendingRule::RedemptionFee,
                format!(
                    "the fee on {} is {} ({} basis points, rounded up to the minor unit), not {}",
                    Balance(gross).format(scale),
                    Balance(expected).format(scale),
                    rule.fee_basis_points,
                    Balance(fee).format(scale)
                ),
            ));
        }
        Ok(())
    }

    /// Counts holders' payments toward their caps; called once an entry is applied.
    fn record_spending(&mut self, entry: &JournalEntry) {
        if self.policies.is_empty() {
            return;
        }
        if entry.kind() == EntryKind::CardReplacement {
            self.record_replacement(entry);
            return;
        }
        if entry.kind() != EntryKind::Payment {
            return;
        }
        for posting in entry.postings() {
            if !self.policies.contains_key(&posting.unit) {
                continue;
            }
            let is_holder = self
                .index
                .get(&IdKey(posting.debit))
                .is_some_and(|&s| self.hot[s as usize].kind == AccountKind::Holder);
            if is_holder {
                let card = self.current_card(posting.debit);
                self.spent
                    .entry(card)
                    .or_default()
                    .record(entry.created_at(), posting.amount.minor());
            }
        }
    }

    /// The household keeps its day's and month's spending on its new card: a card's first
    /// move to its replacement merges the card's window into the new card's and notes which
    /// card replaced it. Later moves from the same card (a refund of a sale it paid, passed
    /// on) carry money only: the refund already gave its share back to the household's
    /// current card ([`Book::current_card`]), and the old card's window is gone.
    fn record_replacement(&mut self, entry: &JournalEntry) {
        for posting in entry.postings() {
            if self.policies.contains_key(&posting.unit) {
                self.follow_replacement(posting.debit, posting.credit);
            }
        }
    }

    /// Notes that the card `new` replaced the card `old` when no `card_replacement` entry
    /// says so: a card replaced while empty has no balance to move, so no entry. Without this
    /// its household's spending would start afresh on `new`, with the day's and month's caps
    /// unspent. Storage keeps the link (the card records), and a load gives it back before
    /// the replay. Repeating it, or an entry that moves `old`'s balance later, changes
    /// nothing.
    pub fn link_replacement(&mut self, old: AccountId, new: AccountId) -> Result<(), BookError> {
        let (old_slot, new_slot) = (self.slot(old)?, self.slot(new)?);
        if old == new {
            return Err(BookError::RuleViolation("a card cannot replace itself"));
        }
        let (old_unit, new_unit) = (self.hot[old_slot].unit, self.hot[new_slot].unit);
        if old_unit != new_unit {
            return Err(BookError::UnitMismatch {
                account: new,
                account_unit: self.unit_code(&self.hot[new_slot]),
                posting_unit: self.unit_code(&self.hot[old_slot]),
            });
        }
        self.follow_replacement(old, new);
        Ok(())
    }

    /// The first time `old` is seen replaced: its window joins the household's current card's
    /// (`new`'s, or where `new`'s went since) and `old` leads there from now on.
    fn follow_replacement(&mut self, old: AccountId, new: AccountId) {
        if self.replaced_by.contains_key(&old) {
            return;
        }
        // A move back to a card this one replaced would close a loop, leaving each card its
        // own window: the card moved to is the household's current one again.
        let mut household = self.current_card(new);
        if household == old {
            self.replaced_by.remove(&new);
            household = new;
        }
        self.replaced_by.insert(old, new);
        if let Some(window) = self.spent.remove(&old) {
            self.spent.entry(household).or_default().merge(window);
        }
    }

    fn check_limits(&self, deltas: &[(u32, i128)]) -> Result<(), BookError> {
        for &(slot, delta) in deltas {
            let hot = &self.hot[slot as usize];
            let id = || self.accounts[slot as usize].id;
            let current = i128::from(hot.balance.0);
            let resulting = current.saturating_add(delta);
            let Ok(resulting64) = i64::try_from(resulting) else {
                return Err(BookError::Overflow(id()));
            };
            // An unbounded side is i64::MIN or i64::MAX, which no i64 passes.
            if resulting64 < hot.lower {
                return Err(BookError::InsufficientFunds {
                    account: id(),
                    available: i64::try_from(current.saturating_sub(i128::from(hot.lower)).max(0))
                        .unwrap_or(i64::MAX),
                    requested: i64::try_from(delta.saturating_neg()).unwrap_or(i64::MAX),
                });
            }
            if resulting64 > hot.upper {
                return Err(BookError::LimitExceeded {
                    account: id(),
                    limit: hot.upper,
                    resulting: resulting64,
                });
            }
        }
        Ok(())
    }

    /// Proves the invariants from scratch: per unit the balances sum to zero, and every
    /// balance is within its limits.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut sums = vec![0i128; self.units.len()];
        for (account, hot) in self.accounts.iter().zip(&self.hot) {
            let sum = &mut sums[hot.unit as usize];
            *sum = sum.saturating_add(i128::from(hot.balance.0));
            if !account.limits.admits(hot.balance) {
                return Err(InvariantViolation::OutsideLimits {
                    account: account.id,
                    balance: hot.balance.0,
                });
            }
        }
        match sums.into_iter().enumerate().find(|&(_, sum)| sum != 0) {
            Some((unit, sum)) => Err(InvariantViolation::UnitNotBalanced {
                unit: self.units[unit].code(),
                sum,
            }),
            None => Ok(()),
        }
    }

    /// A unit.
    pub fn unit(&self, code: UnitCode) -> Option<&Unit> {
        self.find_unit(code).map(|(_, unit)| unit)
    }
    /// Every unit.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter()
    }
    /// An account.
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.index
            .get(&IdKey(id))
            .map(|&s| &self.accounts[s as usize])
    }
    /// An account's balance.
    pub fn balance(&self, id: AccountId) -> Option<Balance> {
        self.index
            .get(&IdKey(id))
            .map(|&s| self.hot[s as usize].balance)
    }
    /// Every account with its balance, in the order opened.
    pub fn accounts(&self) -> impl Iterator<Item = (&Account, Balance)> {
        self.accounts.iter().zip(self.hot.iter().map(|h| h.balance))
    }
    /// The entry an intent produced, if it was applied.
    pub fn entry_for_intent(&self, intent_id: IntentId) -> Option<EntryId> {
        self.intents
            .get(self.intents.hash(intent_id))
            .map(|a| a.entry_id)
    }
    /// How many accounts.
    pub fn account_count(&self) -> usize {
        self.hot.len()
    }
    /// How many entries have been applied (or replayed) since the Book was made.
    pub fn applied_count(&self) -> usize {
        usize::try_from(self.applied).unwrap_or(usize::MAX)
    }
}

fn add_delta(deltas: &mut Vec<(u32, i128)>, slot: usize, change: i128) {
    // Slot indexes come from u32 when accounts are opened.
    let slot = slot as u32;
    match deltas.iter_mut().find(|(s, _)| *s == slot) {
        Some((_, delta)) => *delta = delta.saturating_add(change),
        None => deltas.push((slot, change)),
    }
}

fn refused(rule: SpendingRule, reason: String) -> BookError {
    BookError::SpendingRefused { rule, reason }
}

fn join(codes: &[CategoryCode]) -> String {
    let names: Vec<String> = codes.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// Scheme rules that depend on what the entry is and who pays.
fn check_kind_rules(kind: EntryKind, payer: &Hot) -> Result<(), BookError> {
    let issuer_pays = payer.kind == AccountKind::Issuer;
    match kind {
        EntryKind::Issue if !payer.unit_kind.is_issued() => Err(BookError::RuleViolation(
            "mutual-credit units are not issued; they arise from trade",
        )),
        EntryKind::Issue if !issuer_pays => Err(BookError::RuleViolation(
            "issue entries must debit an issuer account",
        )),
        EntryKind::Payment | EntryKind::TimeExchange if issuer_pays => Err(
            BookError::RuleViolation("an issuer account pays out only through issue entries"),
        ),
        EntryKind::TimeExchange if payer.unit_kind != UnitKind::MutualCredit => Err(
            BookError::RuleViolation("time exchanges are recorded in mutual-credit units only"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Limits;
    use crate::amount::Amount;
    use crate::entry::{Authorisation, Posting, Tags};
    use crate::keys::Signature;

    const ALICE: PublicKey = PublicKey([1; 32]);
    const OPERATOR: PublicKey = PublicKey([9; 32]);

    struct Fixture {
        book: Book,
        unit: UnitCode,
        issuer: AccountId,
        alice: AccountId,
        shop: AccountId,
    }

    fn fixture() -> Fixture {
        let unit = UnitCode::new("PGI-EUR").unwrap();
        let mut book = Book::new();
        book.add_unit(Unit::new(unit, "Euro voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap())
            .unwrap();
        let issuer = Account::new(unit, AccountKind::Issuer, Some(OPERATOR));
        let alice = Account::new(unit, AccountKind::Holder, Some(ALICE));
        let shop = Account::new(unit, AccountKind::Merchant, Some(PublicKey([2; 32])))
            .with_limits(Limits::new(Some(0), Some(10_000)).unwrap());
        let ids = (issuer.id, alice.id, shop.id);
        for account in [issuer, alice, shop] {
            book.open_account(account).unwrap();
        }
        Fixture {
            book,
            unit,
            issuer: ids.0,
            alice: ids.1,
            shop: ids.2,
        }
    }

    fn entry(
        kind: EntryKind,
        signer: PublicKey,
        postings: &[(UnitCode, AccountId, AccountId, i64)],
    ) -> JournalEntry {
        entry_at(kind, signer, postings, 0)
    }

    fn entry_at(
        kind: EntryKind,
        signer: PublicKey,
        postings: &[(UnitCode, AccountId, AccountId, i64)],
        at: crate::TimestampMs,
    ) -> JournalEntry {
        let postings = postings
            .iter()
            .map(|&(unit, debit, credit, minor)| Posting {
                unit,
                debit,
                credit,
                amount: Amount::from_minor(minor).unwrap(),
            })
            .collect();
        let auth = Authorisation {
            intent_id: IntentId::new(),
            signer,
            digest: Digest([0; 32]),
            signature: Signature([0; 64]),
        };
        JournalEntry::new(
            EntryId::new(),
            kind,
            postings,
            String::new(),
            Tags::default(),
            auth,
            at,
        )
        .unwrap()
    }

    fn funded() -> Fixture {
        funded_with(5_000)
    }

    /// The fixture with `minor` issued to Alice (one issue entry).
    fn funded_with(minor: i64) -> Fixture {
        let mut f = fixture();
        let issue = entry(
            EntryKind::Issue,
            OPERATOR,
            &[(f.unit, f.issuer, f.alice, minor)],
        );
        f.book.apply(&issue).unwrap();
        f
    }

    #[test]
    fn issue_then_pay_moves_balances_and_keeps_sums_zero() {
        let mut f = funded();
        let pay = entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, f.shop, 1_250)],
        );
        f.book.apply(&pay).unwrap();
        assert_eq!(f.book.balance(f.issuer), Some(Balance(-5_000)));
        assert_eq!(f.book.balance(f.alice), Some(Balance(3_750)));
        assert_eq!(f.book.balance(f.shop), Some(Balance(1_250)));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn insufficient_funds_are_refused_and_nothing_moves() {
        let mut f = funded();
        let pay = entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, f.shop, 5_001)],
        );
        assert_eq!(
            f.book.apply(&pay),
            Err(BookError::InsufficientFunds {
                account: f.alice,
                available: 5_000,
                requested: 5_001
            })
        );
        assert_eq!(f.book.balance(f.alice), Some(Balance(5_000)));
    }

    #[test]
    fn a_multi_posting_entry_is_all_or_nothing() {
        let mut f = funded();
        // The first posting alone would pass; together they overdraw Alice.
        let pay = entry(
            EntryKind::Payment,
            ALICE,
            &[
                (f.unit, f.alice, f.shop, 3_000),
                (f.unit, f.alice, f.shop, 3_000),
            ],
        );
        assert!(matches!(
            f.book.apply(&pay),
            Err(BookError::InsufficientFunds {
                requested: 6_000,
                ..
            })
        ));
        assert_eq!(f.book.balance(f.shop), Some(Balance(0)));
    }

    #[test]
    fn upper_limit_is_enforced() {
        let mut f = funded();
        let other = Account::new(f.unit, AccountKind::Holder, Some(ALICE));
        let other_id = other.id;
        f.book.open_account(other).unwrap();
        f.book
            .apply(&entry(
                EntryKind::Issue,
                OPERATOR,
                &[(f.unit, f.issuer, other_id, 9_000)],
            ))
            .unwrap();
        f.book
            .apply(&entry(
                EntryKind::Payment,
                ALICE,
                &[(f.unit, other_id, f.shop, 9_000)],
            ))
            .unwrap();
        let pay = entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, f.shop, 1_001)],
        );
        assert_eq!(
            f.book.apply(&pay),
            Err(BookError::LimitExceeded {
                account: f.shop,
                limit: 10_000,
                resulting: 10_001
            })
        );
    }

    #[test]
    fn frozen_and_closed_accounts_cannot_move_money() {
        let mut f = funded();
        f.book.set_status(f.shop, AccountStatus::Frozen).unwrap();
        let pay = entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, f.shop, 1)]);
        assert_eq!(f.book.apply(&pay), Err(BookError::AccountFrozen(f.shop)));
        f.book.set_status(f.alice, AccountStatus::Closed).unwrap();
        assert_eq!(f.book.apply(&pay), Err(BookError::AccountClosed(f.alice)));
    }

    #[test]
    fn only_the_accounts_authority_may_debit_it() {
        let mut f = funded();
        let theft = entry(
            EntryKind::Payment,
            OPERATOR,
            &[(f.unit, f.alice, f.shop, 1)],
        );
        assert_eq!(f.book.apply(&theft), Err(BookError::NotAuthorised(f.alice)));
    }

    #[test]
    fn unknown_units_and_accounts_are_named() {
        let mut f = funded();
        let points = UnitCode::new("PTS").unwrap();
        let wrong_unit = entry(EntryKind::Payment, ALICE, &[(points, f.alice, f.shop, 1)]);
        assert_eq!(
            f.book.apply(&wrong_unit),
            Err(BookError::UnknownUnit(points))
        );
        let ghost = AccountId::new();
        let to_ghost = entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, ghost, 1)]);
        assert_eq!(
            f.book.apply(&to_ghost),
            Err(BookError::UnknownAccount(ghost))
        );
    }

    /// Everything the Book shows of itself: balances, counts and remembered intents.
    fn observable(book: &Book) -> (Vec<(AccountId, Balance)>, usize, (usize, usize)) {
        let mut balances: Vec<_> = book.accounts().map(|(a, b)| (a.id, b)).collect();
        balances.sort_by_key(|&(id, _)| id);
        (balances, book.applied_count(), book.remembered_intents())
    }

    #[test]
    fn warming_reads_ahead_and_changes_nothing() {
        let mut f = funded();
        let points = UnitCode::new("PTS").unwrap();
        let applied = entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, f.shop, 1)]);
        f.book.apply(&applied).unwrap();
        // More account lookups (200) than one pass over the hot records takes (128), a
        // duplicate, an unknown account and an unknown unit: warm passes over what it does
        // not know, and warms through the end of the last pass.
        let mut entries: Vec<JournalEntry> = (0..100)
            .map(|_| entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, f.shop, 1)]))
            .collect();
        entries.push(applied.clone());
        entries.push(entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, AccountId::new(), 1)],
        ));
        entries.push(entry(
            EntryKind::Payment,
            ALICE,
            &[(points, f.alice, f.shop, 1)],
        ));
        let before = observable(&f.book);
        f.book.warm(&entries);
        assert_eq!(before, observable(&f.book), "warm changed the Book");
        // The entries then apply as they would have: 100 payments, then three refusals.
        for pay in &entries[..100] {
            f.book.apply(pay).unwrap();
        }
        for refused in &entries[100..] {
            assert!(f.book.apply(refused).is_err());
        }
        assert_eq!(f.book.balance(f.shop), Some(Balance(101)));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn replayed_intent_is_a_duplicate_and_reused_id_a_conflict() {
        let mut f = funded();
        let pay = entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, f.shop, 10)]);
        f.book.apply(&pay).unwrap();
        assert_eq!(
            f.book.apply(&pay),
            Err(BookError::Duplicate {
                intent_id: pay.authorisation().intent_id,
                entry_id: pay.id()
            })
        );
        let mut other_auth = *pay.authorisation();
        other_auth.digest = Digest([5; 32]);
        let reused = JournalEntry::new(
            EntryId::new(),
            EntryKind::Payment,
            pay.postings().to_vec(),
            String::new(),
            Tags::default(),
            other_auth,
            0,
        )
        .unwrap();
        assert_eq!(
            f.book.apply(&reused),
            Err(BookError::IntentConflict(other_auth.intent_id))
        );
        assert_eq!(f.book.balance(f.shop), Some(Balance(10)));
    }

    #[test]
    fn scheme_rules_are_enforced() {
        let mut f = funded();
        let fake_issue = entry(EntryKind::Issue, ALICE, &[(f.unit, f.alice, f.shop, 1)]);
        assert!(matches!(
            f.book.apply(&fake_issue),
            Err(BookError::RuleViolation(_))
        ));
        let issuer_payment = entry(
            EntryKind::Payment,
            OPERATOR,
            &[(f.unit, f.issuer, f.shop, 1)],
        );
        assert!(matches!(
            f.book.apply(&issuer_payment),
            Err(BookError::RuleViolation(_))
        ));
        let hours = UnitCode::new("HOUR").unwrap();
        f.book
            .add_unit(Unit::new(hours, "Hours", 2, UnitKind::MutualCredit, None).unwrap())
            .unwrap();
        assert!(matches!(
            f.book
                .open_account(Account::new(hours, AccountKind::Issuer, None)),
            Err(BookError::RuleViolation(_))
        ));
    }

    #[test]
    fn replay_ignores_todays_status_but_not_structure() {
        let mut f = funded();
        let pay = entry(EntryKind::Payment, ALICE, &[(f.unit, f.alice, f.shop, 100)]);
        f.book.set_status(f.alice, AccountStatus::Frozen).unwrap();
        f.book.replay(&pay).unwrap();
        assert_eq!(f.book.balance(f.shop), Some(Balance(100)));
        assert!(matches!(
            f.book.replay(&pay),
            Err(BookError::Duplicate { .. })
        ));
        let ghost = entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, AccountId::new(), 1)],
        );
        assert!(matches!(
            f.book.replay(&ghost),
            Err(BookError::UnknownAccount(_))
        ));
        assert_eq!(f.book.balance(f.alice), Some(Balance(4_900)));
    }

    const SHOP: PublicKey = PublicKey([2; 32]);

    /// A refund entry as the `refund` action makes it.
    fn refund_at(
        payment: EntryId,
        signer: PublicKey,
        posting: (UnitCode, AccountId, AccountId, i64),
        at: crate::TimestampMs,
    ) -> JournalEntry {
        let plain = entry_at(EntryKind::Reversal, signer, &[posting], at);
        JournalEntry::new(
            EntryId::new(),
            EntryKind::Reversal,
            plain.postings().to_vec(),
            String::new(),
            Tags {
                reverses: Some(payment),
                ..Tags::default()
            },
            *plain.authorisation(),
            at,
        )
        .unwrap()
    }

    fn refund(
        payment: EntryId,
        signer: PublicKey,
        posting: (UnitCode, AccountId, AccountId, i64),
    ) -> JournalEntry {
        refund_at(payment, signer, posting, 0)
    }

    /// Alice (5000) pays the shop `minor`; returns the payment.
    fn paid(f: &mut Fixture, minor: i64) -> JournalEntry {
        let pay = entry(
            EntryKind::Payment,
            ALICE,
            &[(f.unit, f.alice, f.shop, minor)],
        );
        f.book.apply(&pay).unwrap();
        pay
    }

    #[test]
    fn a_payment_is_refunded_in_parts_that_never_exceed_it() {
        let mut f = funded();
        let pay = paid(&mut f, 1_000);
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(1_000));
        f.book
            .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 300)))
            .unwrap();
        f.book
            .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 600)))
            .unwrap();
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(100));
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 101))),
            Err(BookError::RefundExceedsPayment {
                payment: pay.id(),
                refundable: 100,
                requested: 101
            })
        );
        f.book
            .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 100)))
            .unwrap();
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 1))),
            Err(BookError::RefundExceedsPayment {
                payment: pay.id(),
                refundable: 0,
                requested: 1
            })
        );
        assert_eq!(f.book.balance(alice), Some(Balance(5_000)));
        assert_eq!(f.book.balance(shop), Some(Balance(0)));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn a_refund_must_mirror_a_committed_payment() {
        let mut f = funded();
        let pay = paid(&mut f, 1_000);
        let (unit, alice, shop, issuer) = (f.unit, f.alice, f.shop, f.issuer);
        let other_shop = Account::new(unit, AccountKind::Merchant, Some(SHOP));
        let other = other_shop.id;
        f.book.open_account(other_shop).unwrap();
        // Nothing to refund: an unknown id, an issuance, a refund itself.
        let ghost = EntryId::new();
        assert_eq!(
            f.book.apply(&refund(ghost, SHOP, (unit, shop, alice, 1))),
            Err(BookError::UnknownPayment(ghost))
        );
        let issue = entry(EntryKind::Issue, OPERATOR, &[(unit, issuer, alice, 10)]);
        f.book.apply(&issue).unwrap();
        assert_eq!(
            f.book
                .apply(&refund(issue.id(), SHOP, (unit, shop, alice, 1))),
            Err(BookError::UnknownPayment(issue.id()))
        );
        let first = refund(pay.id(), SHOP, (unit, shop, alice, 1));
        f.book.apply(&first).unwrap();
        assert_eq!(
            f.book
                .apply(&refund(first.id(), ALICE, (unit, alice, shop, 1))),
            Err(BookError::UnknownPayment(first.id()))
        );
        // Another till under the same key cannot refund this till's sale.
        assert!(matches!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, other, alice, 1))),
            Err(BookError::RefundMismatch { field: "from", .. })
        ));
        // Nor can the shop send the refund to someone other than the payer.
        let bob = Account::new(unit, AccountKind::Holder, None);
        let bob_id = bob.id;
        f.book.open_account(bob).unwrap();
        assert!(matches!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, bob_id, 1))),
            Err(BookError::RefundMismatch { field: "to", .. })
        ));
        // Nor in another unit, even where it holds an account of it.
        let points = UnitCode::new("BZ-PTS").unwrap();
        f.book
            .add_unit(Unit::new(points, "Points", 0, UnitKind::Points, None).unwrap())
            .unwrap();
        assert!(matches!(
            f.book
                .apply(&refund(pay.id(), SHOP, (points, shop, alice, 1))),
            Err(BookError::RefundMismatch { field: "unit", .. })
        ));
        // Only the payee's key refunds; anyone else learns nothing about the payment.
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), ALICE, (unit, shop, alice, 1))),
            Err(BookError::NotAuthorised(shop))
        );
        assert_eq!(
            f.book.apply(&refund(ghost, ALICE, (unit, shop, alice, 1))),
            Err(BookError::NotAuthorised(shop))
        );
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(999));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn a_refund_needs_the_funds_and_a_payer_account_not_closed() {
        let mut f = funded();
        let pay = paid(&mut f, 1_000);
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        // A frozen payer gets its own money back (a card reported lost, and replaced, is
        // frozen): only a refund may credit it; nothing else moves money in or out.
        f.book.set_status(alice, AccountStatus::Frozen).unwrap();
        f.book
            .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 10)))
            .unwrap();
        assert_eq!(f.book.balance(alice), Some(Balance(4_010)));
        let gift = entry(EntryKind::Payment, SHOP, &[(unit, shop, alice, 10)]);
        assert_eq!(f.book.apply(&gift), Err(BookError::AccountFrozen(alice)));
        let spend = entry(EntryKind::Payment, ALICE, &[(unit, alice, shop, 10)]);
        assert_eq!(f.book.apply(&spend), Err(BookError::AccountFrozen(alice)));
        // The frozen shop cannot refund: that would move money out of it.
        f.book.set_status(alice, AccountStatus::Active).unwrap();
        f.book.set_status(shop, AccountStatus::Frozen).unwrap();
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 10))),
            Err(BookError::AccountFrozen(shop))
        );
        f.book.set_status(shop, AccountStatus::Active).unwrap();
        f.book.set_status(alice, AccountStatus::Closed).unwrap();
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 10))),
            Err(BookError::AccountClosed(alice))
        );
        f.book.set_status(alice, AccountStatus::Active).unwrap();
        // The shop spent the takings meanwhile.
        let spent = entry(EntryKind::Payment, SHOP, &[(unit, shop, alice, 950)]);
        f.book.apply(&spent).unwrap();
        assert_eq!(
            f.book
                .apply(&refund(pay.id(), SHOP, (unit, shop, alice, 60))),
            Err(BookError::InsufficientFunds {
                account: shop,
                available: 40,
                requested: 60
            })
        );
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(990));
    }

    #[test]
    fn replay_rebuilds_what_is_left_to_refund_and_refuses_a_stored_over_refund() {
        let mut f = funded();
        let pay = paid(&mut f, 1_000);
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        let parts = [
            refund(pay.id(), SHOP, (unit, shop, alice, 400)),
            refund(pay.id(), SHOP, (unit, shop, alice, 500)),
        ];
        for part in &parts {
            f.book.apply(part).unwrap();
        }
        // A fresh Book with the same accounts, as the service builds on start.
        let empty = |from: &Book| {
            let mut fresh = Book::new();
            fresh.add_unit(from.unit(unit).unwrap().clone()).unwrap();
            for (account, _) in from.accounts() {
                fresh.open_account(account.clone()).unwrap();
            }
            fresh
        };
        let mut replayed = empty(&f.book);
        let issue = entry(
            EntryKind::Issue,
            OPERATOR,
            &[(unit, f.issuer, alice, 5_000)],
        );
        for e in [&issue, &pay, &parts[0], &parts[1]] {
            replayed.replay(e).unwrap();
        }
        assert_eq!(replayed.refundable(pay.id()).map(Amount::minor), Some(100));
        assert_eq!(replayed.balance(shop), Some(Balance(100)));
        // After a restart, the next refunds are judged as they would have been before it.
        let over = refund(pay.id(), SHOP, (unit, shop, alice, 101));
        assert_eq!(replayed.apply(&over), f.book.apply(&over));
        let rest = refund(pay.id(), SHOP, (unit, shop, alice, 100));
        assert_eq!(replayed.apply(&rest), Ok(()));
        // A stored refund beyond its payment (a tampered database) refuses the load.
        assert!(matches!(
            replayed.replay(&over),
            Err(BookError::RefundExceedsPayment { .. })
        ));
        // So does a stored refund of a payment that is not (yet) in the journal.
        assert_eq!(
            empty(&f.book).replay(&parts[0]),
            Err(BookError::UnknownPayment(pay.id()))
        );
    }

    #[test]
    fn registration_errors_are_distinct() {
        let mut f = fixture();
        let unit = f.book.unit(f.unit).unwrap().clone();
        assert_eq!(f.book.add_unit(unit), Err(BookError::DuplicateUnit(f.unit)));
        let account = f.book.account(f.alice).unwrap().clone();
        assert_eq!(
            f.book.open_account(account),
            Err(BookError::DuplicateAccount(f.alice))
        );
        let stray = Account::new(UnitCode::new("NOPE").unwrap(), AccountKind::Holder, None);
        assert!(matches!(
            f.book.open_account(stray),
            Err(BookError::UnknownUnit(_))
        ));
    }

    mod programme_rules {
        use super::*;
        use crate::policy::{RedemptionRule, SpendingRules};

        const PROGRAMME: PublicKey = PublicKey([7; 32]);
        const DAY: i64 = 86_400_000;

        struct Programme {
            f: Fixture,
            pharmacy: AccountId,
            casino: AccountId,
            clearing: AccountId,
            fees: AccountId,
            bob: AccountId,
        }

        fn rules(at: i64) -> SpendingRules {
            SpendingRules {
                effective_from: at,
                allowed_categories: Some(vec![
                    CategoryCode::parse("5411").unwrap(),
                    CategoryCode::parse("5912").unwrap(),
                ]),
                daily_cap: Some(Amount::from_minor(3_000).unwrap()),
                monthly_cap: Some(Amount::from_minor(4_000).unwrap()),
                redemption: None,
            }
        }

        fn programme(versions: Vec<SpendingRules>) -> Programme {
            let mut f = funded();
            let mut open = |kind, key| {
                let account = Account::new(f.unit, kind, key);
                let id = account.id;
                f.book.open_account(account).unwrap();
                id
            };
            let pharmacy = open(AccountKind::Merchant, Some(PublicKey([3; 32])));
            let casino = open(AccountKind::Merchant, Some(PublicKey([4; 32])));
            let clearing = open(AccountKind::System, None);
            let fees = open(AccountKind::System, None);
            let bob = open(AccountKind::Holder, Some(PublicKey([5; 32])));
            let versions = versions
                .into_iter()
                .map(|mut v| {
                    if v.redemption.is_some() {
                        v.redemption = Some(RedemptionRule {
                            clearing_account: clearing,
                            fee_account: fees,
                            fee_basis_points: 150,
                        });
                    }
                    v
                })
                .collect();
            f.book
                .set_policy(f.unit, UnitPolicy::new(PROGRAMME, versions).unwrap())
                .unwrap();
            let grocer = f.shop;
            f.book
                .set_payee(grocer, Some(CategoryCode::parse("5411").unwrap()))
                .unwrap();
            f.book
                .set_payee(pharmacy, Some(CategoryCode::parse("5912").unwrap()))
                .unwrap();
            f.book
                .set_payee(casino, Some(CategoryCode::parse("7995").unwrap()))
                .unwrap();
            Programme {
                f,
                pharmacy,
                casino,
                clearing,
                fees,
                bob,
            }
        }

        fn rule_of(result: Result<(), BookError>) -> SpendingRule {
            match result {
                Err(BookError::SpendingRefused { rule, .. }) => rule,
                other => panic!("expected a spending rule refusal, got {other:?}"),
            }
        }

        #[test]
        fn holders_pay_registered_merchants_of_allowed_categories_only() {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice) = (p.f.unit, p.f.alice);
            let pay = |to| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, to, 100)], DAY);
            p.f.book.apply(&pay(p.f.shop)).unwrap();
            p.f.book.apply(&pay(p.pharmacy)).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&pay(p.casino))),
                SpendingRule::MerchantCategory
            );
            assert_eq!(
                rule_of(p.f.book.apply(&pay(p.bob))),
                SpendingRule::RegisteredMerchantsOnly
            );
            // A holder cannot dress a transfer up as another kind to dodge the rules.
            let gift = entry_at(EntryKind::Fee, ALICE, &[(unit, alice, p.bob, 100)], DAY);
            assert_eq!(
                rule_of(p.f.book.apply(&gift)),
                SpendingRule::HolderPaysByPaymentOnly
            );
            let swap = entry_at(
                EntryKind::CardReplacement,
                ALICE,
                &[(unit, alice, p.bob, 100)],
                DAY,
            );
            assert_eq!(
                rule_of(p.f.book.apply(&swap)),
                SpendingRule::HolderPaysByPaymentOnly
            );
            // A deregistered merchant is no longer payable.
            p.f.book.set_payee(p.pharmacy, None).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&pay(p.pharmacy))),
                SpendingRule::RegisteredMerchantsOnly
            );
            assert_eq!(p.f.book.balance(alice), Some(Balance(4_800)));
            p.f.book.check_invariants().unwrap();
        }

        #[test]
        fn daily_and_monthly_caps_count_payments_and_reset() {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop) = (p.f.unit, p.f.alice, p.f.shop);
            let top_up = entry(
                EntryKind::Issue,
                OPERATOR,
                &[(unit, p.f.issuer, alice, 10_000)],
            );
            p.f.book.apply(&top_up).unwrap();
            let pay =
                |minor, at| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, minor)], at);
            // Day 31 of January 1970, then 1 February: a new day and a new month.
            let jan = 30 * DAY;
            p.f.book.apply(&pay(2_000, jan)).unwrap();
            p.f.book.apply(&pay(1_000, jan + 1)).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&pay(1, jan + 2))),
                SpendingRule::DailyCap
            );
            let feb = 31 * DAY;
            p.f.book.apply(&pay(1_000, feb)).unwrap();
            p.f.book.apply(&pay(1_000, feb + DAY)).unwrap();
            p.f.book.apply(&pay(1_000, feb + 2 * DAY)).unwrap();
            match p.f.book.apply(&pay(1_001, feb + 3 * DAY)) {
                Err(BookError::SpendingRefused { rule, reason }) => {
                    assert_eq!(rule, SpendingRule::MonthlyCap);
                    assert!(
                        reason.contains("40.01") && reason.contains("30.00 spent"),
                        "{reason}"
                    );
                }
                other => panic!("{other:?}"),
            }
            // Replaying the same stream rebuilds the counters: the cap still binds.
            let mut replayed = programme(vec![rules(0)]);
            let (alice, shop) = (replayed.f.alice, replayed.f.shop);
            let pay =
                |minor, at| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, minor)], at);
            for e in [
                pay(1_000, feb),
                pay(1_000, feb + DAY),
                pay(1_000, feb + 2 * DAY),
            ] {
                replayed.f.book.replay(&e).unwrap();
            }
            assert_eq!(
                rule_of(replayed.f.book.apply(&pay(1_001, feb + 3 * DAY))),
                SpendingRule::MonthlyCap
            );
        }

        /// Caps of 30.00 a day; Alice's card pays 25.00, then the programme moves `moved` of
        /// her balance to Bob's account (her new card), all on day 1.
        fn paid_then_replaced(moved: i64) -> Programme {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop, bob) = (p.f.unit, p.f.alice, p.f.shop, p.bob);
            for e in [
                entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 2_500)],
                    DAY,
                ),
                entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, alice, bob, moved)],
                    DAY,
                ),
            ] {
                p.f.book.apply(&e).unwrap();
            }
            p
        }

        #[test]
        fn a_replacement_card_keeps_the_days_spending() {
            let mut p = paid_then_replaced(2_500);
            let (unit, shop, bob) = (p.f.unit, p.f.shop, p.bob);
            let bob_key = PublicKey([5; 32]);
            let over = entry_at(
                EntryKind::Payment,
                bob_key,
                &[(unit, bob, shop, 501)],
                DAY + 1,
            );
            assert_eq!(rule_of(p.f.book.apply(&over)), SpendingRule::DailyCap);
        }

        #[test]
        fn a_card_replaced_while_empty_keeps_the_days_spending_when_linked() {
            // Caps: 30.00 a day. Alice's card pays 25.00 and is replaced with no money to
            // move, so no entry: only the link says Bob's account is her new card. The
            // programme then pays the new card; 5.00 is all the household has left today,
            // live and after a replay that is told the link first (as a load does).
            for replaying in [false, true] {
                let mut p = programme(vec![rules(0)]);
                let (unit, alice, shop, bob, issuer) =
                    (p.f.unit, p.f.alice, p.f.shop, p.bob, p.f.issuer);
                let paid = entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 2_500)],
                    DAY,
                );
                let topped_up = entry_at(
                    EntryKind::Issue,
                    OPERATOR,
                    &[(unit, issuer, bob, 10_000)],
                    DAY,
                );
                if replaying {
                    p.f.book.link_replacement(alice, bob).unwrap();
                    p.f.book.replay(&paid).unwrap();
                    p.f.book.replay(&topped_up).unwrap();
                } else {
                    p.f.book.apply(&paid).unwrap();
                    p.f.book.link_replacement(alice, bob).unwrap();
                    // Said twice (a retried replacement): nothing more happens.
                    p.f.book.link_replacement(alice, bob).unwrap();
                    p.f.book.apply(&topped_up).unwrap();
                }
                let pay = |minor| {
                    entry_at(
                        EntryKind::Payment,
                        BOB,
                        &[(unit, bob, shop, minor)],
                        DAY + 1,
                    )
                };
                assert_eq!(
                    rule_of(p.f.book.apply(&pay(501))),
                    SpendingRule::DailyCap,
                    "replayed: {replaying}"
                );
                p.f.book.apply(&pay(500)).unwrap();
            }
        }

        #[test]
        fn a_long_chain_of_replacements_linked_before_a_replay_counts_on_the_last_card() {
            // Caps: 30.00 a day. Alice's card pays 25.00, then is replaced empty 100 times
            // over (a chain longer than any household's, as long as the card service allows
            // many more). Replayed with every link known first, as a load does, the payment
            // still counts on the last card: 5.00 left today.
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop, issuer) = (p.f.unit, p.f.alice, p.f.shop, p.f.issuer);
            let last_key = PublicKey([6; 32]);
            let mut cards = vec![alice];
            for _ in 0..100 {
                let card = Account::new(unit, AccountKind::Holder, Some(last_key));
                cards.push(card.id);
                p.f.book.open_account(card).unwrap();
            }
            for pair in cards.windows(2) {
                p.f.book.link_replacement(pair[0], pair[1]).unwrap();
            }
            let last = *cards.last().unwrap();
            for e in [
                entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 2_500)],
                    DAY,
                ),
                entry_at(
                    EntryKind::Issue,
                    OPERATOR,
                    &[(unit, issuer, last, 10_000)],
                    DAY,
                ),
            ] {
                p.f.book.replay(&e).unwrap();
            }
            let pay = |minor| {
                entry_at(
                    EntryKind::Payment,
                    last_key,
                    &[(unit, last, shop, minor)],
                    DAY + 1,
                )
            };
            assert_eq!(rule_of(p.f.book.apply(&pay(501))), SpendingRule::DailyCap);
            p.f.book.apply(&pay(500)).unwrap();
        }

        #[test]
        fn a_replacement_link_names_two_known_cards_of_one_unit() {
            let mut p = programme(vec![rules(0)]);
            let alice = p.f.alice;
            let stranger = AccountId::new();
            assert_eq!(
                p.f.book.link_replacement(alice, stranger),
                Err(BookError::UnknownAccount(stranger))
            );
            assert_eq!(
                p.f.book.link_replacement(alice, alice),
                Err(BookError::RuleViolation("a card cannot replace itself"))
            );
            let other = UnitCode::new("OTHER").unwrap();
            p.f.book
                .add_unit(Unit::new(other, "Other", 2, UnitKind::Voucher, None).unwrap())
                .unwrap();
            let elsewhere = Account::new(other, AccountKind::Holder, None);
            let elsewhere_id = elsewhere.id;
            p.f.book.open_account(elsewhere).unwrap();
            assert!(matches!(
                p.f.book.link_replacement(alice, elsewhere_id),
                Err(BookError::UnitMismatch { account, .. }) if account == elsewhere_id
            ));
        }

        #[test]
        fn a_replaced_card_that_pays_again_spends_from_the_households_window() {
            // Caps: 30.00 a day. The old card pays 25.00 and is replaced, keeping 5.00 (say it
            // was found and unfrozen); the new card pays 4.00. The household has 1.00 left
            // today, whichever card pays it, not 30.00 more on the old card.
            let stream = |unit, alice, bob, shop| {
                let pay = |key, from, minor| {
                    entry_at(
                        EntryKind::Payment,
                        key,
                        &[(unit, from, shop, minor)],
                        DAY + 1,
                    )
                };
                let moved = entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, alice, bob, 2_000)],
                    DAY,
                );
                [
                    entry_at(
                        EntryKind::Payment,
                        ALICE,
                        &[(unit, alice, shop, 2_500)],
                        DAY,
                    ),
                    moved,
                    pay(BOB, bob, 400),
                    pay(ALICE, alice, 100),
                ]
            };
            // Applied live, then replayed into a fresh Book: the same window either way.
            for replaying in [false, true] {
                let mut p = programme(vec![rules(0)]);
                let (unit, alice, shop, bob) = (p.f.unit, p.f.alice, p.f.shop, p.bob);
                for e in stream(unit, alice, bob, shop) {
                    if replaying {
                        p.f.book.replay(&e).unwrap();
                    } else {
                        p.f.book.apply(&e).unwrap();
                    }
                }
                let one = |key, from| {
                    entry_at(EntryKind::Payment, key, &[(unit, from, shop, 1)], DAY + 2)
                };
                assert_eq!(
                    rule_of(p.f.book.apply(&one(ALICE, alice))),
                    SpendingRule::DailyCap,
                    "the old card spends from the household's day (replayed: {replaying})"
                );
                assert_eq!(
                    rule_of(p.f.book.apply(&one(BOB, bob))),
                    SpendingRule::DailyCap,
                    "the old card's payment counts on the new card's day (replayed: {replaying})"
                );
            }
        }

        #[test]
        fn a_card_moved_back_to_the_card_it_replaced_shares_one_window() {
            // Caps: 30.00 a day. The old card pays 10.00, is replaced by the new one, which
            // pays 10.00, and then money moves back to the old card: 20.00 spent either way.
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop, bob) = (p.f.unit, p.f.alice, p.f.shop, p.bob);
            let pay = |key, from, minor| {
                entry_at(EntryKind::Payment, key, &[(unit, from, shop, minor)], DAY)
            };
            let moved = |from, to, minor| {
                entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, from, to, minor)],
                    DAY,
                )
            };
            for e in [
                pay(ALICE, alice, 1_000),
                moved(alice, bob, 2_000),
                pay(BOB, bob, 1_000),
                moved(bob, alice, 500),
                pay(ALICE, alice, 1_000),
            ] {
                p.f.book.apply(&e).unwrap();
            }
            assert_eq!(
                rule_of(p.f.book.apply(&pay(BOB, bob, 1))),
                SpendingRule::DailyCap,
                "both cards spend from one window, not one each"
            );
            assert_eq!(
                rule_of(p.f.book.apply(&pay(ALICE, alice, 1))),
                SpendingRule::DailyCap
            );
        }

        #[test]
        fn one_entry_paying_from_both_cards_is_capped_for_its_total() {
            // After 25.00 paid and the replacement, one entry signed by a key on both cards
            // pays 4.00 from each: 33.00 in the day.
            let mut p = paid_then_replaced(1_000);
            let (unit, alice, shop, bob) = (p.f.unit, p.f.alice, p.f.shop, p.bob);
            p.f.book.set_authority(bob, ALICE).unwrap();
            let both = entry_at(
                EntryKind::Payment,
                ALICE,
                &[(unit, alice, shop, 400), (unit, bob, shop, 400)],
                DAY,
            );
            assert_eq!(rule_of(p.f.book.apply(&both)), SpendingRule::DailyCap);
        }

        #[test]
        fn the_programme_key_moves_a_frozen_cards_balance_to_its_replacement_only() {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, bob) = (p.f.unit, p.f.alice, p.bob);
            p.f.book.set_status(alice, AccountStatus::Frozen).unwrap();
            let moved = |signer| {
                entry(
                    EntryKind::CardReplacement,
                    signer,
                    &[(unit, alice, bob, 500)],
                )
            };
            // Not by the card's own key: a frozen account pays nothing.
            assert_eq!(
                p.f.book.apply(&moved(ALICE)),
                Err(BookError::AccountFrozen(alice))
            );
            // Nor anything but a move to a card: the programme key cannot expire it either.
            let expired = entry(
                EntryKind::Expire,
                PROGRAMME,
                &[(unit, alice, p.f.issuer, 500)],
            );
            assert_eq!(
                p.f.book.apply(&expired),
                Err(BookError::AccountFrozen(alice))
            );
            p.f.book.apply(&moved(PROGRAMME)).unwrap();
            assert_eq!(p.f.book.balance(alice), Some(Balance(4_500)));
            // A closed account is past moving.
            p.f.book.set_status(alice, AccountStatus::Closed).unwrap();
            assert_eq!(
                p.f.book.apply(&moved(PROGRAMME)),
                Err(BookError::AccountClosed(alice))
            );
        }

        #[test]
        fn a_merchants_refund_passes_the_rules_and_frees_the_cap_it_took() {
            // Caps: 30.00 a day, 40.00 a month. Day 1 and day 2 are in January 1970.
            let stream = |unit, alice, shop| {
                let pay = |minor, at| {
                    entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, minor)], at)
                };
                let first = pay(3_000, DAY);
                let back = |minor, at| refund_at(first.id(), SHOP, (unit, shop, alice, minor), at);
                let rest = vec![
                    back(1_000, DAY + 1),
                    pay(1_000, DAY + 2),
                    // The next day: only the month gets it back.
                    back(1_000, 2 * DAY),
                    pay(2_000, 2 * DAY + 1),
                ];
                [vec![first], rest].concat()
            };
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop) = (p.f.unit, p.f.alice, p.f.shop);
            let entries = stream(unit, alice, shop);
            p.f.book.apply(&entries[0]).unwrap();
            let one = |at| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], at);
            assert_eq!(rule_of(p.f.book.apply(&one(DAY))), SpendingRule::DailyCap);
            // A registered merchant refunding a household is not a holder paying.
            p.f.book.apply(&entries[1]).unwrap();
            p.f.book.apply(&entries[2]).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&one(DAY + 3))),
                SpendingRule::DailyCap
            );
            p.f.book.apply(&entries[3]).unwrap();
            // Without the month's give-back this would be 50.00 in January.
            p.f.book.apply(&entries[4]).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&one(2 * DAY + 2))),
                SpendingRule::MonthlyCap
            );
            assert_eq!(p.f.book.balance(alice), Some(Balance(1_000)));

            // Replaying the stream rebuilds the same windows.
            let mut replayed = programme(vec![rules(0)]);
            let (alice, shop) = (replayed.f.alice, replayed.f.shop);
            for e in stream(unit, alice, shop) {
                replayed.f.book.replay(&e).unwrap();
            }
            let one = |at| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], at);
            assert_eq!(
                rule_of(replayed.f.book.apply(&one(2 * DAY + 2))),
                SpendingRule::MonthlyCap
            );
        }

        /// Caps of 50.00 a day and 100.00 a month, and Alice topped up to 150.00.
        fn two_card_programme() -> Programme {
            let mut caps = rules(0);
            caps.daily_cap = Some(Amount::from_minor(5_000).unwrap());
            caps.monthly_cap = Some(Amount::from_minor(10_000).unwrap());
            let mut p = programme(vec![caps]);
            let top_up = entry(
                EntryKind::Issue,
                OPERATOR,
                &[(p.f.unit, p.f.issuer, p.f.alice, 10_000)],
            );
            p.f.book.apply(&top_up).unwrap();
            p
        }

        const BOB: PublicKey = PublicKey([5; 32]);

        /// Alice's card (her account) pays 30.00, is replaced by Bob's account (her new
        /// card), which pays 20.00; the shop refunds 10.00 of the first sale to the old card,
        /// and the service passes that on to the new card. All on one day.
        fn replaced_then_refunded(
            unit: UnitCode,
            alice: AccountId,
            bob: AccountId,
            shop: AccountId,
        ) -> Vec<JournalEntry> {
            let sale = entry_at(
                EntryKind::Payment,
                ALICE,
                &[(unit, alice, shop, 3_000)],
                DAY,
            );
            let refund = refund_at(sale.id(), SHOP, (unit, shop, alice, 1_000), DAY + 3);
            let moved = |minor, at| {
                entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, alice, bob, minor)],
                    at,
                )
            };
            vec![
                sale,
                moved(12_000, DAY + 1),
                entry_at(
                    EntryKind::Payment,
                    BOB,
                    &[(unit, bob, shop, 2_000)],
                    DAY + 2,
                ),
                refund,
                moved(1_000, DAY + 4),
            ]
        }

        #[test]
        fn a_refund_to_a_replaced_card_frees_the_cap_on_the_new_card_once() {
            let mut p = two_card_programme();
            let (unit, alice, bob, shop) = (p.f.unit, p.f.alice, p.bob, p.f.shop);
            let entries = replaced_then_refunded(unit, alice, bob, shop);
            for (i, e) in entries.iter().enumerate() {
                p.f.book.apply(e).unwrap();
                if i == 1 {
                    p.f.book.set_status(alice, AccountStatus::Frozen).unwrap();
                }
            }
            assert_eq!(p.f.book.balance(alice), Some(Balance(0)));
            assert_eq!(p.f.book.balance(bob), Some(Balance(11_000)));
            // 30.00 + 20.00 - 10.00 spent today: 10.00 is left of the 50.00 cap, on the
            // new card, and not 30.00 as if only what the old card kept counted.
            let pay = |minor| {
                entry_at(
                    EntryKind::Payment,
                    BOB,
                    &[(unit, bob, shop, minor)],
                    DAY + 5,
                )
            };
            match p.f.book.apply(&pay(1_001)) {
                Err(BookError::SpendingRefused { rule, reason }) => {
                    assert_eq!(rule, SpendingRule::DailyCap);
                    assert!(reason.contains("40.00 spent"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            p.f.book.apply(&pay(1_000)).unwrap();

            // Replaying the stream (a load) learns the replacement again: same windows.
            let mut replayed = two_card_programme();
            let (alice, bob, shop) = (replayed.f.alice, replayed.bob, replayed.f.shop);
            for e in replaced_then_refunded(unit, alice, bob, shop) {
                replayed.f.book.replay(&e).unwrap();
            }
            let pay = |minor| {
                entry_at(
                    EntryKind::Payment,
                    BOB,
                    &[(unit, bob, shop, minor)],
                    DAY + 5,
                )
            };
            assert_eq!(
                rule_of(replayed.f.book.apply(&pay(1_001))),
                SpendingRule::DailyCap
            );
            replayed.f.book.apply(&pay(1_000)).unwrap();
        }

        #[test]
        fn a_refund_follows_a_chain_of_replacements_to_the_current_card() {
            let mut p = two_card_programme();
            let (unit, alice, bob, shop) = (p.f.unit, p.f.alice, p.bob, p.f.shop);
            let carol_key = PublicKey([6; 32]);
            let carol = Account::new(unit, AccountKind::Holder, Some(carol_key));
            let carol_id = carol.id;
            p.f.book.open_account(carol).unwrap();
            let moved = |from, to, minor, at| {
                entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, from, to, minor)],
                    at,
                )
            };
            let sale = entry_at(
                EntryKind::Payment,
                ALICE,
                &[(unit, alice, shop, 3_000)],
                DAY,
            );
            let stream = [
                moved(alice, bob, 12_000, DAY + 1),
                entry_at(
                    EntryKind::Payment,
                    BOB,
                    &[(unit, bob, shop, 1_000)],
                    DAY + 2,
                ),
                moved(bob, carol_id, 11_000, DAY + 3),
                entry_at(
                    EntryKind::Payment,
                    carol_key,
                    &[(unit, carol_id, shop, 500)],
                    DAY + 4,
                ),
                refund_at(sale.id(), SHOP, (unit, shop, alice, 1_000), DAY + 5),
                // Passed on to the card the household holds now, past Bob's.
                moved(alice, carol_id, 1_000, DAY + 6),
            ];
            p.f.book.apply(&sale).unwrap();
            for (i, e) in stream.iter().enumerate() {
                p.f.book.apply(e).unwrap();
                match i {
                    0 => p.f.book.set_status(alice, AccountStatus::Frozen).unwrap(),
                    2 => p.f.book.set_status(bob, AccountStatus::Frozen).unwrap(),
                    _ => {}
                }
            }
            assert_eq!(p.f.book.balance(carol_id), Some(Balance(11_500)));
            // 30.00 + 10.00 + 5.00 - 10.00 spent today, all on Carol's card now.
            let pay = |minor| {
                entry_at(
                    EntryKind::Payment,
                    carol_key,
                    &[(unit, carol_id, shop, minor)],
                    DAY + 7,
                )
            };
            assert_eq!(rule_of(p.f.book.apply(&pay(1_501))), SpendingRule::DailyCap);
            p.f.book.apply(&pay(1_500)).unwrap();
            p.f.book.check_invariants().unwrap();
        }

        #[test]
        fn a_cycle_of_replacements_in_stored_entries_ends_the_walk() {
            let mut p = two_card_programme();
            let (unit, alice, bob, shop) = (p.f.unit, p.f.alice, p.bob, p.f.shop);
            let moved = |from, to| {
                entry_at(
                    EntryKind::CardReplacement,
                    PROGRAMME,
                    &[(unit, from, to, 1_000)],
                    DAY,
                )
            };
            let sale = entry_at(
                EntryKind::Payment,
                ALICE,
                &[(unit, alice, shop, 3_000)],
                DAY,
            );
            let refund = refund_at(sale.id(), SHOP, (unit, shop, alice, 1_000), DAY);
            // The rules never make such a cycle; a replay of stored entries does not check them.
            for e in [&sale, &moved(alice, bob), &moved(bob, alice), &refund] {
                p.f.book.replay(e).unwrap();
            }
            // Whichever card of the cycle the walk stopped at, 20.00 or 30.00 counts today.
            let pay = entry_at(
                EntryKind::Payment,
                ALICE,
                &[(unit, alice, shop, 3_001)],
                DAY,
            );
            assert_eq!(rule_of(p.f.book.apply(&pay)), SpendingRule::DailyCap);
            p.f.book.check_invariants().unwrap();
        }

        #[test]
        fn a_rule_change_applies_from_its_effective_time_only() {
            let mut loose = rules(0);
            loose.allowed_categories = None;
            loose.daily_cap = None;
            loose.monthly_cap = None;
            let mut p = programme(vec![loose, rules(10 * DAY)]);
            let (unit, alice, casino) = (p.f.unit, p.f.alice, p.casino);
            let pay = |at| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, casino, 100)], at);
            p.f.book.apply(&pay(DAY)).unwrap();
            assert_eq!(
                rule_of(p.f.book.apply(&pay(10 * DAY))),
                SpendingRule::MerchantCategory
            );
        }

        #[test]
        fn the_programme_key_only_expires_to_the_budget_or_replaces_a_card() {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, issuer, bob) = (p.f.unit, p.f.alice, p.f.issuer, p.bob);
            let expire = entry_at(
                EntryKind::Expire,
                PROGRAMME,
                &[(unit, alice, issuer, 500)],
                DAY,
            );
            p.f.book.apply(&expire).unwrap();
            let replace = entry_at(
                EntryKind::CardReplacement,
                PROGRAMME,
                &[(unit, alice, bob, 4_500)],
                DAY,
            );
            p.f.book.apply(&replace).unwrap();
            assert_eq!(p.f.book.balance(bob), Some(Balance(4_500)));
            let steal = entry_at(
                EntryKind::Payment,
                PROGRAMME,
                &[(unit, bob, p.f.shop, 1)],
                DAY,
            );
            assert_eq!(
                rule_of(p.f.book.apply(&steal)),
                SpendingRule::AdministratorScope
            );
            let expire_to_shop = entry_at(
                EntryKind::Expire,
                PROGRAMME,
                &[(unit, bob, p.f.shop, 1)],
                DAY,
            );
            assert_eq!(
                rule_of(p.f.book.apply(&expire_to_shop)),
                SpendingRule::AdministratorScope
            );
            // Someone else's key gets the plain refusal.
            let other = entry_at(EntryKind::Expire, ALICE, &[(unit, bob, issuer, 1)], DAY);
            assert_eq!(p.f.book.apply(&other), Err(BookError::NotAuthorised(bob)));
        }

        #[test]
        fn merchants_redeem_with_exactly_the_programme_fee() {
            let mut with_redemption = rules(0);
            with_redemption.redemption = Some(RedemptionRule {
                clearing_account: AccountId::new(),
                fee_account: AccountId::new(),
                fee_basis_points: 0,
            });
            let mut p = programme(vec![with_redemption]);
            let (unit, alice, shop) = (p.f.unit, p.f.alice, p.f.shop);
            let shop_key = PublicKey([2; 32]);
            p.f.book
                .apply(&entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 2_000)],
                    DAY,
                ))
                .unwrap();
            let redeem = |net, fee| {
                entry_at(
                    EntryKind::Redeem,
                    shop_key,
                    &[(unit, shop, p.clearing, net), (unit, shop, p.fees, fee)],
                    DAY,
                )
            };
            // 1.5 % of 20.00 is 0.30.
            assert_eq!(
                rule_of(p.f.book.apply(&redeem(1_980, 20))),
                SpendingRule::RedemptionFee
            );
            p.f.book.apply(&redeem(1_970, 30)).unwrap();
            assert_eq!(p.f.book.balance(p.clearing), Some(Balance(1_970)));
            assert_eq!(p.f.book.balance(p.fees), Some(Balance(30)));
            // A holder cannot redeem, and nobody redeems into another account.
            let holder_redeems = entry_at(
                EntryKind::Redeem,
                ALICE,
                &[(unit, alice, p.clearing, 100)],
                DAY,
            );
            assert_eq!(
                rule_of(p.f.book.apply(&holder_redeems)),
                SpendingRule::HolderPaysByPaymentOnly
            );
            p.f.book.check_invariants().unwrap();
        }

        #[test]
        fn a_redemption_cannot_hide_its_programme_leg_behind_another_unit() {
            let mut with_redemption = rules(0);
            with_redemption.redemption = Some(RedemptionRule {
                clearing_account: AccountId::new(),
                fee_account: AccountId::new(),
                fee_basis_points: 0,
            });
            let mut p = programme(vec![with_redemption]);
            let (unit, alice, shop) = (p.f.unit, p.f.alice, p.f.shop);
            let shop_key = PublicKey([2; 32]);
            p.f.book
                .apply(&entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 2_000)],
                    DAY,
                ))
                .unwrap();
            // A second, rule-free unit where the shop also holds an account.
            let points = UnitCode::new("BZ-PTS").unwrap();
            p.f.book
                .add_unit(Unit::new(points, "Points", 0, UnitKind::Points, None).unwrap())
                .unwrap();
            let shop_points = Account::new(points, AccountKind::Merchant, Some(shop_key));
            let anyone = Account::new(points, AccountKind::Holder, None);
            let (sp, an) = (shop_points.id, anyone.id);
            let issuer = Account::new(points, AccountKind::Issuer, Some(OPERATOR));
            let ip = issuer.id;
            for a in [shop_points, anyone, issuer] {
                p.f.book.open_account(a).unwrap();
            }
            p.f.book
                .apply(&entry_at(
                    EntryKind::Issue,
                    OPERATOR,
                    &[(points, ip, sp, 5)],
                    DAY,
                ))
                .unwrap();
            let sneaky = entry_at(
                EntryKind::Redeem,
                shop_key,
                &[(points, sp, an, 1), (unit, shop, p.clearing, 2_000)],
                DAY,
            );
            assert_eq!(rule_of(p.f.book.apply(&sneaky)), SpendingRule::Redemption);
        }

        #[test]
        fn redemption_is_refused_where_the_programme_has_not_opened_it() {
            let mut p = programme(vec![rules(0)]);
            let (unit, alice, shop) = (p.f.unit, p.f.alice, p.f.shop);
            p.f.book
                .apply(&entry_at(
                    EntryKind::Payment,
                    ALICE,
                    &[(unit, alice, shop, 1_000)],
                    DAY,
                ))
                .unwrap();
            let redeem = entry_at(
                EntryKind::Redeem,
                PublicKey([2; 32]),
                &[(unit, shop, p.clearing, 1_000)],
                DAY,
            );
            assert_eq!(rule_of(p.f.book.apply(&redeem)), SpendingRule::Redemption);
        }
    }

    /// `entry` again under the same intent (id, signer, digest), another entry id and time:
    /// what a retry of the same intent long after looks like to the Book.
    fn same_intent(entry: &JournalEntry, at: crate::TimestampMs) -> JournalEntry {
        JournalEntry::new(
            EntryId::new(),
            entry.kind(),
            entry.postings().to_vec(),
            String::new(),
            entry.tags().clone(),
            *entry.authorisation(),
            at,
        )
        .unwrap()
    }

    #[test]
    fn forgotten_intents_are_sent_to_storage_never_applied_twice() {
        let mut f = funded();
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        let old = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 10)], 1_000);
        f.book.apply(&old).unwrap();
        // A forget that lets nothing go still closes a generation: `old` is in the older one.
        assert_eq!(f.book.forget_before(0), 0);
        let new = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 20)], 5_000);
        f.book.apply(&new).unwrap();
        let applied = f.book.applied_count();
        assert!(f.book.forget_before(2_000) >= 1);
        let (whole, prints) = f.book.remembered_intents();
        assert!(prints >= 1, "the old intent left a fingerprint");
        assert!(whole >= 1, "the new intent is still remembered whole");
        assert_eq!(
            f.book.applied_count(),
            applied,
            "forgetting is not un-applying"
        );
        // The recent one is still answered from memory.
        assert!(matches!(
            f.book.apply(&same_intent(&new, 6_000)),
            Err(BookError::Duplicate { .. })
        ));
        // The forgotten one may have been applied: storage must say.
        assert_eq!(
            f.book.apply(&same_intent(&old, 6_000)),
            Err(BookError::MaybeApplied(old.authorisation().intent_id))
        );
        assert_eq!(f.book.balance(shop), Some(Balance(30)));
        // A fresh intent is applied as usual.
        let fresh = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 5)], 6_000);
        f.book.apply(&fresh).unwrap();
        // Once storage has said an intent is new, it applies, and from then on it is recent.
        let checked = same_intent(&old, 7_000);
        f.book.apply_checked_new(&checked).unwrap();
        assert!(matches!(
            f.book.apply_checked_new(&same_intent(&old, 8_000)),
            Err(BookError::Duplicate { .. })
        ));
        assert_eq!(f.book.balance(shop), Some(Balance(45)));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn a_forgotten_payment_is_refunded_once_restored_and_keeps_its_refunds() {
        let mut f = funded();
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        let pay = entry_at(
            EntryKind::Payment,
            ALICE,
            &[(unit, alice, shop, 1_000)],
            1_000,
        );
        f.book.apply(&pay).unwrap();
        f.book
            .apply(&refund_at(pay.id(), SHOP, (unit, shop, alice, 400), 1_500))
            .unwrap();
        f.book.forget_before(2_000);
        assert!(!f.book.knows_payment(pay.id()));
        assert_eq!(f.book.refundable(pay.id()), None);
        let late = refund_at(pay.id(), SHOP, (unit, shop, alice, 600), 3_000);
        assert_eq!(
            f.book.apply(&late),
            Err(BookError::UnknownPayment(pay.id()))
        );
        f.book
            .restore_payment(pay.id(), pay.kind(), pay.created_at(), pay.postings());
        assert!(f.book.knows_payment(pay.id()));
        // The refund made before it was forgotten still counts.
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(600));
        let too_much = refund_at(pay.id(), SHOP, (unit, shop, alice, 601), 3_000);
        assert_eq!(
            f.book.apply(&too_much),
            Err(BookError::RefundExceedsPayment {
                payment: pay.id(),
                refundable: 600,
                requested: 601
            })
        );
        f.book.apply(&late).unwrap();
        assert_eq!(f.book.refundable(pay.id()).map(Amount::minor), Some(0));
        // A restored payment is forgotten again with time; restoring a refund (not a
        // payment) restores nothing.
        f.book.forget_before(10_000);
        f.book
            .restore_payment(late.id(), late.kind(), late.created_at(), late.postings());
        assert!(!f.book.knows_payment(late.id()));
        f.book.check_invariants().unwrap();
    }

    #[test]
    fn a_steady_stream_keeps_between_one_and_two_windows_in_memory() {
        steady_stream_within_two_windows(false);
        steady_stream_within_two_windows(true);
    }

    /// A stream of a payment a millisecond, forgetting after each all at once or as a
    /// writer does (gradually).
    fn steady_stream_within_two_windows(gradually: bool) {
        let mut f = funded();
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        let window: i64 = 100;
        let mut applied = Vec::new();
        for at in 1_000..2_000i64 {
            let pay = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], at);
            f.book.apply(&pay).unwrap();
            applied.push(pay);
            let before = at.saturating_sub(window);
            if gradually {
                f.book.forget_gradually(before);
            } else {
                f.book.forget_before(before);
            }
            let (whole, _) = f.book.remembered_intents();
            assert!(
                whole <= usize::try_from(window.saturating_mul(2).saturating_add(1)).unwrap(),
                "{whole} intents kept at {at}"
            );
            // Everything of the last window is still answered from memory.
            for recent in applied.iter().rev().take(usize::try_from(window).unwrap()) {
                assert!(!f.book.may_have_forgotten(recent.authorisation().intent_id));
                assert!(f.book.knows_payment(recent.id()));
            }
        }
        let (_, fingerprints) = f.book.remembered_intents();
        assert!(fingerprints >= 700, "{fingerprints} intents forgotten");
        assert!(
            f.book
                .may_have_forgotten(applied[0].authorisation().intent_id)
        );
        assert_eq!(f.book.applied_count(), 1_000 + 1);
    }

    /// Applies `count` one-unit payments from Alice to the shop at `at`, forgetting before
    /// `before` after each, as a writer whose batches hold one entry.
    fn pay_forgetting(
        f: &mut Fixture,
        count: usize,
        at: crate::TimestampMs,
        before: crate::TimestampMs,
    ) -> Vec<JournalEntry> {
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        let paid: Vec<JournalEntry> = (0..count)
            .map(|_| entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], at))
            .collect();
        for entry in &paid {
            f.book.apply(entry).unwrap();
            assert_eq!(f.book.forget_gradually(before), 0, "nothing old enough");
        }
        paid
    }

    #[test]
    fn a_writer_lets_a_generation_go_a_budget_at_a_time_and_it_answers_whole_meanwhile() {
        let mut f = funded();
        // The first call makes the issue and the first payment the old generation (and
        // fingerprints them at once: two ids); the rest fill the young one.
        let paid = pay_forgetting(&mut f, 4_500, 1_000, 0);
        assert_eq!(f.book.remembered_intents(), (4_500 + 1, 0));

        // Everything may go now, but no entry was applied since the last call, so the
        // budget is the floor: the old generation, all in already, is dropped; the young
        // one becomes old and gets 4,096 of its 4,499 ids in, so it is kept whole.
        assert_eq!(f.book.forget_gradually(10_000), 2);
        assert_eq!(f.book.intents.being_let_go(), Book::FORGET_AT_LEAST);
        assert_eq!(f.book.remembered_intents(), (4_499, 2));
        for entry in &paid[1..] {
            let id = entry.authorisation().intent_id;
            assert!(!f.book.may_have_forgotten(id));
            assert_eq!(f.book.entry_for_intent(id), Some(entry.id()));
        }
        assert!(matches!(
            f.book.apply(&same_intent(&paid[1], 1_000)),
            Err(BookError::Duplicate { .. })
        ));

        // The rest fits the next call's budget: the generation is dropped.
        assert_eq!(f.book.forget_gradually(10_000), 4_499);
        assert_eq!(f.book.remembered_intents(), (0, 4_501));
        let id = paid[1].authorisation().intent_id;
        assert!(f.book.may_have_forgotten(id));
        assert_eq!(f.book.entry_for_intent(id), None);
    }

    #[test]
    fn a_writer_fingerprints_four_intents_for_every_entry_applied_since_it_last_forgot() {
        let mut f = funded_with(15_000);
        pay_forgetting(&mut f, 4_500, 1_000, 0);
        // 1,200 more, with no forgetting in between (one large batch).
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        for _ in 0..1_200 {
            let pay = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], 2_000);
            f.book.apply(&pay).unwrap();
        }
        // The old generation (the issue, a payment) goes; the young one, 5,699 ids,
        // becomes old and gets 4 x 1,200 of them in, more than the floor of 4,096.
        assert_eq!(f.book.forget_gradually(10_000), 2);
        assert_eq!(f.book.intents.being_let_go(), 4 * 1_200);
        assert_eq!(f.book.remembered_intents(), (4_499 + 1_200, 2));
    }

    #[test]
    fn forgetting_all_at_once_ignores_the_budget() {
        let mut f = funded();
        let (unit, alice, shop) = (f.unit, f.alice, f.shop);
        for _ in 0..4_500 {
            let pay = entry_at(EntryKind::Payment, ALICE, &[(unit, alice, shop, 1)], 1_000);
            f.book.apply(&pay).unwrap();
        }
        assert_eq!(f.book.forget_before(2_000), 4_500 + 1);
        assert_eq!(f.book.remembered_intents(), (0, 4_500 + 1));
    }
}
