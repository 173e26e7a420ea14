//! The read model: what has been committed, in memory, for the API to read without asking the
//! writer or the database.
//!
//! The committer owns the [`Book`](ledger::Book), which holds *staged* state (committed plus
//! batches in flight), so reads cannot use it. Instead each lane, right after its batch
//! commits and before the next batch may commit, publishes the batch here. Lanes commit in
//! batch order, so the view moves through exactly the states storage went through, and a
//! reader never sees an entry that is not durable.
//!
//! The view holds balances, statuses and keys, and per account only a count of its entries
//! and the position of its latest published entry: its size follows the number of accounts,
//! not of payments. Statements are read from storage ([`crate::db::statement`]) by walking
//! the account's chain of posting rows (each links to the account's previous entry, migration
//! 0006) backwards from that position, so a statement never shows an entry that the balances
//! here do not yet include. Until migration 0006 the view kept every account's history as
//! well, which grew by about 150 bytes a payment (two items of ~72 bytes) for ever.
//!
//! Likewise it keeps which entry paid a payment request only while the request can still be
//! paid (until its deadline, [`RequestsByDeadline`]); [`ViewState::paid_by`] says when it
//! may have forgotten, and the caller then asks storage.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use foldhash::HashMap;
use ledger::journal::ChainHead;
use ledger::journal::checkpoint::UnitTotals;
use ledger::{
    Account, AccountId, Balance, EntryId, EntryKind, JournalEntry, ParticipantId, PaymentRequestId,
    Posting, Unit, UnitCode,
};
use tokio::sync::broadcast;

use crate::db::BatchWrite;
use crate::deadlines::RequestsByDeadline;
use crate::history::net_by_account;

/// Batches of settled entries kept for slow event subscribers before they are told they
/// lagged (and should re-read).
const EVENT_BACKLOG_BATCHES: usize = 1024;

/// Cancelled payment requests kept for slow event subscribers before they are told they
/// lagged (and should re-read the request).
const CANCELLATION_BACKLOG: usize = 1024;

/// An account with its committed balance.
#[derive(Debug, Clone)]
pub struct AccountView {
    /// The account as the ledger knows it (limits, status, key).
    pub account: Account,
    /// The participant it belongs to.
    pub owner: Option<ParticipantId>,
    /// Its committed balance.
    pub balance: Balance,
    /// How many committed entries moved money in or out of it (its statement is in storage).
    pub entries: u64,
    /// The position of its latest published entry, where a walk of its statement starts
    /// (entries the writer committed since are not published yet, so not shown).
    pub last_entry: Option<i64>,
    /// The kinds of entry it took part in, a bit each ([`kind_bit`]): for the transparency
    /// report's household counts.
    pub kinds: u16,
}

/// An entry kind's bit in [`AccountView::kinds`].
pub fn kind_bit(kind: EntryKind) -> u16 {
    1u16 << kind.index()
}

/// A committed entry, as announced to event subscribers.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Commit position.
    pub position: i64,
    /// The entry.
    pub entry_id: EntryId,
    /// What it was.
    pub kind: EntryKind,
    /// When.
    pub created_at: i64,
    /// Its postings.
    pub postings: Vec<Posting>,
    /// The payment request it settled.
    pub payment_request: Option<PaymentRequestId>,
}

impl Settled {
    /// Whether the entry moved money in or out of `account`.
    pub fn touches(&self, account: AccountId) -> bool {
        self.postings
            .iter()
            .any(|p| p.debit == account || p.credit == account)
    }
}

/// Who paid a payment request, as far as the view knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidBy {
    /// This committed entry paid it.
    Entry(EntryId),
    /// No committed entry paid it (yet).
    Nobody,
    /// The view may have forgotten: its deadline has passed. Ask storage.
    Forgotten,
}

/// The committed state, as the view holds it.
#[derive(Debug, Default)]
pub struct ViewState {
    units: BTreeMap<UnitCode, Unit>,
    accounts: HashMap<AccountId, AccountView>,
    /// Each participant's accounts, so a participant's page does not scan every account.
    by_owner: HashMap<ParticipantId, Vec<AccountId>>,
    /// Paid requests still payable, with the entry that paid each: past the deadline
    /// nothing else can pay them, and storage knows who did.
    paid_requests: RequestsByDeadline<EntryId>,
    last_position: i64,
    /// Each unit's chain head as of the last committed entry: what this process has told
    /// submitters is durable, which storage must still hold after a reconnection.
    chain_heads: BTreeMap<UnitCode, ChainHead>,
    /// Each unit's totals as of its chain head, for signed checkpoints
    /// ([`crate::checkpoints`]): counted entry by entry as `coledger verify` counts them.
    totals: BTreeMap<UnitCode, UnitTotals>,
}

impl ViewState {
    /// Adds a unit.
    pub fn add_unit(&mut self, unit: Unit) {
        self.units.insert(unit.code(), unit);
    }

    /// Adds an account at balance zero.
    pub fn add_account(&mut self, account: Account, owner: Option<ParticipantId>) {
        if let Some(owner) = owner {
            self.by_owner.entry(owner).or_default().push(account.id);
        }
        self.accounts.insert(
            account.id,
            AccountView {
                account,
                owner,
                balance: Balance::ZERO,
                entries: 0,
                last_entry: None,
                kinds: 0,
            },
        );
    }

    /// Records a committed entry: balances move, entry counts grow. A payment request it
    /// paid is kept until the deadline given with it (`None`: for ever).
    pub fn record(
        &mut self,
        position: i64,
        entry: &JournalEntry,
        payment_request: Option<(PaymentRequestId, Option<i64>)>,
    ) {
        self.last_position = self.last_position.max(position);
        if let Some((request, deadline)) = payment_request {
            // Not kept if already past (a clock stepping back): readers then ask storage.
            self.paid_requests.keep(request, deadline, entry.id());
        }
        let kind = entry.kind();
        if let [posting] = entry.postings() {
            // The common case, a payment: no allocation.
            let totals = self.totals.entry(posting.unit).or_default();
            totals.count_entry(kind);
            totals.count_posting(kind, posting.amount.minor());
            let amount = posting.amount.minor();
            self.record_side(position, posting.debit, amount.saturating_neg(), kind);
            self.record_side(position, posting.credit, amount, kind);
            return;
        }
        for unit in entry.units() {
            self.totals.entry(unit).or_default().count_entry(kind);
        }
        for posting in entry.postings() {
            let totals = self.totals.entry(posting.unit).or_default();
            totals.count_posting(kind, posting.amount.minor());
        }
        for (account, delta, _) in net_by_account(entry.postings()) {
            self.record_side(position, account, delta, kind);
        }
    }

    fn record_side(&mut self, position: i64, account: AccountId, delta: i64, kind: EntryKind) {
        // The Book accepted the entry, so the account exists and the sum fits; if either
        // ever failed, the view would be wrong but the ledger (storage) would not.
        let Some(view) = self.accounts.get_mut(&account) else {
            tracing::error!(%account, position, "read model: entry for an unknown account");
            return;
        };
        let before = view.balance;
        view.balance = Balance(view.balance.0.saturating_add(delta));
        view.entries = view.entries.saturating_add(1);
        view.last_entry = Some(position);
        view.kinds |= kind_bit(kind);
        let (unit, after) = (view.account.unit, view.balance);
        self.balance_moved(unit, before, after);
    }

    fn balance_moved(&mut self, unit: UnitCode, before: Balance, after: Balance) {
        if before != after {
            self.totals
                .entry(unit)
                .or_default()
                .balance_moved(i128::from(before.0), i128::from(after.0));
        }
    }

    /// Overwrites balances with the Book's (after a load, where the Book is authoritative).
    pub fn set_balance(&mut self, account: AccountId, balance: Balance) {
        if let Some(view) = self.accounts.get_mut(&account) {
            let before = std::mem::replace(&mut view.balance, balance);
            let unit = view.account.unit;
            self.balance_moved(unit, before, balance);
        }
    }

    /// Payment requests paid and still payable, with the entry that paid each, for the
    /// writer's double-payment check.
    pub(crate) fn paid_requests(&self) -> &RequestsByDeadline<EntryId> {
        &self.paid_requests
    }

    /// Forgets the paid requests whose deadline is before `now_ms`.
    pub fn forget_paid_past(&mut self, now_ms: i64) {
        self.paid_requests.forget_past(now_ms);
    }

    /// How many paid requests the view keeps (those still payable, and any without a
    /// known deadline).
    pub fn paid_requests_kept(&self) -> usize {
        self.paid_requests.len()
    }

    /// Applies a committed batch.
    fn publish(&mut self, write: &BatchWrite) {
        for unit in &write.units {
            self.add_unit(unit.clone());
        }
        for new in &write.accounts {
            self.add_account(new.account.clone(), new.owner);
        }
        for (id, status) in &write.statuses {
            if let Some(view) = self.accounts.get_mut(id) {
                view.account.status = *status;
            }
        }
        for (id, key) in &write.authorities {
            if let Some(view) = self.accounts.get_mut(id) {
                view.account.authority = Some(*key);
            }
        }
        for committed in &write.entries {
            for link in &committed.links {
                self.chain_heads.insert(
                    link.unit,
                    ChainHead {
                        seq: link.seq,
                        hash: link.hash,
                    },
                );
            }
            let paid = committed
                .payment_request
                .map(|request| (request, committed.request_expires_at));
            self.record(committed.position, &committed.entry, paid);
        }
        self.forget_paid_past(write.now_ms);
    }

    /// A unit.
    pub fn unit(&self, code: UnitCode) -> Option<&Unit> {
        self.units.get(&code)
    }

    /// Every unit, by code.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.values()
    }

    /// An account.
    pub fn account(&self, id: AccountId) -> Option<&AccountView> {
        self.accounts.get(&id)
    }

    /// A participant's accounts, in the order they were opened.
    pub fn accounts_of(&self, owner: ParticipantId) -> impl Iterator<Item = &AccountView> {
        self.by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|id| self.accounts.get(id))
    }

    /// Every account, in no particular order (a scan: for rare administrative checks).
    pub fn accounts(&self) -> impl Iterator<Item = &AccountView> {
        self.accounts.values()
    }

    /// How many accounts there are.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The entry that paid a request whose deadline is `expires_at` (ms, as stored now or
    /// read at any time before: only a cancellation changes it, bringing it earlier), if the
    /// view can tell. A paid request is kept at least until the latest deadline it ever had,
    /// so while `expires_at` is not before the view's latest forgetting, a paid request
    /// would still be here.
    pub fn paid_by(&self, request: PaymentRequestId, expires_at: i64) -> PaidBy {
        match self.paid_requests.get(request) {
            Some(&entry) => PaidBy::Entry(entry),
            None if self.paid_requests.may_have_forgotten(expires_at) => PaidBy::Forgotten,
            None => PaidBy::Nobody,
        }
    }

    /// The last committed position.
    pub fn last_position(&self) -> i64 {
        self.last_position
    }

    /// Each unit's chain head as of the last committed entry.
    pub fn chain_heads(&self) -> &BTreeMap<UnitCode, ChainHead> {
        &self.chain_heads
    }

    /// Each unit's chain head and its totals there, in code order: what a signed checkpoint
    /// states. Units with no entries have no head and are left out.
    pub fn checkpoint_states(
        &self,
    ) -> impl Iterator<Item = (UnitCode, ChainHead, UnitTotals)> + '_ {
        self.chain_heads.iter().map(|(&unit, &head)| {
            (
                unit,
                head,
                self.totals.get(&unit).copied().unwrap_or_default(),
            )
        })
    }

    /// Sets the chain heads (after a load, which verified them).
    pub fn set_chain_heads(&mut self, heads: impl IntoIterator<Item = (UnitCode, ChainHead)>) {
        self.chain_heads = heads.into_iter().collect();
    }
}

/// The shared read model.
pub struct LedgerView {
    state: RwLock<ViewState>,
    events: broadcast::Sender<Arc<[Settled]>>,
    cancellations: broadcast::Sender<PaymentRequestId>,
}

impl std::fmt::Debug for LedgerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerView").finish_non_exhaustive()
    }
}

impl LedgerView {
    /// A view starting from loaded state.
    pub fn new(state: ViewState) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG_BATCHES);
        let (cancellations, _) = broadcast::channel(CANCELLATION_BACKLOG);
        Self {
            state: RwLock::new(state),
            events,
            cancellations,
        }
    }

    /// Reads the committed state. Hold the guard briefly: publishing waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ViewState> {
        // A panic while publishing would leave the view half-updated; the writer stops on
        // any panic, so reading what is there is the best that remains.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the whole state (after the writer reloaded from storage).
    pub fn replace(&self, state: ViewState) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// Publishes a committed batch. Called by the lane that committed it, before the next
    /// batch may commit.
    pub fn publish(&self, write: &BatchWrite) {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .publish(write);
        if self.events.receiver_count() > 0 && !write.entries.is_empty() {
            let settled: Arc<[Settled]> = write
                .entries
                .iter()
                .map(|c| Settled {
                    position: c.position,
                    entry_id: c.entry.id(),
                    kind: c.entry.kind(),
                    created_at: c.entry.created_at(),
                    postings: c.entry.postings().to_vec(),
                    payment_request: c.payment_request,
                })
                .collect();
            // No receiver left between the check and here is fine: nobody was listening.
            let _ = self.events.send(settled);
        }
    }

    /// Committed entries from now on, a batch at a time.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Settled]>> {
        self.events.subscribe()
    }

    /// Announces a payment request the writer closed (its cancellation is stored, and no
    /// payment of it can commit any more).
    pub fn announce_cancelled(&self, request: PaymentRequestId) {
        // Nobody listening is fine.
        let _ = self.cancellations.send(request);
    }

    /// Payment requests cancelled from now on.
    pub fn subscribe_cancellations(&self) -> broadcast::Receiver<PaymentRequestId> {
        self.cancellations.subscribe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ledger::journal::checkpoint::UnitTotals;
    use ledger::{
        AccountKind, Amount, Authorisation, Digest, EntryId, IntentId, PublicKey, Signature, Tags,
        UnitKind,
    };

    use super::*;

    /// An entry of `kind` moving `(debit, credit, minor)` in `unit`, with a stand-in
    /// authorisation (the view checks none).
    pub(crate) fn entry(
        kind: EntryKind,
        postings: &[(AccountId, AccountId, i64)],
        unit: UnitCode,
    ) -> JournalEntry {
        let postings = postings
            .iter()
            .map(|&(debit, credit, minor)| Posting {
                unit,
                debit,
                credit,
                amount: Amount::from_minor(minor).unwrap(),
            })
            .collect();
        let authorisation = Authorisation {
            intent_id: IntentId::new(),
            signer: PublicKey([0; 32]),
            digest: Digest([0; 32]),
            signature: Signature([0; 64]),
        };
        JournalEntry::new(
            EntryId::new(),
            kind,
            postings,
            String::new(),
            Tags::default(),
            authorisation,
            1,
        )
        .unwrap()
    }

    /// The view's totals are the audit's: per posting as the auditor counts them, even where
    /// the view nets a multi-posting entry per account and a balance crosses zero.
    #[test]
    fn totals_count_as_the_audit_does() {
        let unit = UnitCode::new("T-EUR").unwrap();
        let mut view = ViewState::default();
        view.add_unit(Unit::new(unit, "Test", 2, UnitKind::Voucher, None).unwrap());
        let open = |view: &mut ViewState, kind| {
            let account = Account::new(unit, kind, None);
            let id = account.id;
            view.add_account(account, None);
            id
        };
        let issuer = open(&mut view, AccountKind::Issuer);
        let holder = open(&mut view, AccountKind::Holder);
        let shop = open(&mut view, AccountKind::Merchant);
        let clearing = open(&mut view, AccountKind::System);
        let fee = open(&mut view, AccountKind::System);
        let entries = [
            entry(EntryKind::Issue, &[(issuer, holder, 10_000)], unit),
            entry(EntryKind::Payment, &[(holder, shop, 2_500)], unit),
            // Through the holder and back: netted per account by the view.
            entry(
                EntryKind::Redeem,
                &[
                    (shop, clearing, 950),
                    (shop, fee, 50),
                    (holder, shop, 100),
                    (shop, holder, 100),
                ],
                unit,
            ),
            entry(EntryKind::Reversal, &[(shop, holder, 1_500)], unit),
        ];
        let mut expected = UnitTotals::default();
        let mut balances: HashMap<AccountId, i128> = HashMap::default();
        for (position, entry) in (1..).zip(&entries) {
            view.record(position, entry, None);
            expected.count_entry(entry.kind());
            for posting in entry.postings() {
                let amount = posting.amount.minor();
                expected.count_posting(entry.kind(), amount);
                for (account, delta) in [
                    (posting.debit, -i128::from(amount)),
                    (posting.credit, i128::from(amount)),
                ] {
                    let balance = balances.entry(account).or_default();
                    let before = *balance;
                    *balance += delta;
                    expected.balance_moved(before, *balance);
                }
            }
        }
        view.set_chain_heads([(
            unit,
            ChainHead {
                seq: 4,
                hash: Digest([1; 32]),
            },
        )]);
        let states: Vec<_> = view.checkpoint_states().collect();
        assert_eq!(states.len(), 1);
        let (state_unit, head, totals) = states[0];
        assert_eq!((state_unit, head.seq), (unit, 4));
        assert_eq!(totals, expected);
        assert_eq!(totals.of_kind(EntryKind::Redeem), (1, 1_200));
        // The holder, the clearing and the fee accounts; the shop is back at zero.
        assert_eq!(totals.positive_balances(), 9_000 + 950 + 50);
        // A load that finds the Book's balance equal changes nothing; one that differs
        // moves the totals with it.
        view.set_balance(shop, Balance(0));
        assert_eq!(view.checkpoint_states().next().unwrap().2, expected);
        view.set_balance(shop, Balance(7));
        assert_eq!(
            view.checkpoint_states()
                .next()
                .unwrap()
                .2
                .positive_balances(),
            10_007
        );
    }
}
