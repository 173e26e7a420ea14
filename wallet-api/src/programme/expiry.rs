//! Expiry: units a household has not spent N days after they were disbursed go back to the
//! programme's budget.
//!
//! A household's balance is a queue of **lots**, units received at one time, ordered by when
//! they expire (each keeps the validity in force when it was disbursed), so every debit (a
//! payment, an earlier expiry) consumes the lots that expire soonest: the oldest, unless the
//! programme's validity changed between them. A card replacement carries the old card's lots,
//! with their dates, to the new account, so replacing a card neither shortens nor extends
//! anyone's validity. A shop's refund gives back the lots its payment took, with their dates:
//! as if the sale had been smaller, so those that expire latest come back first when only part
//! is refunded. Buying and refunding therefore cannot make money that was about to expire new
//! again. A sweep is an ordinary journal entry (kind `expire`) signed by the programme's
//! administrator key.
//!
//! Lots are computed from account statements read from storage ([`statements_for_lots`]),
//! each bounded by the position the read model has published, so they agree with the
//! balances the read model shows at that moment.

use std::collections::VecDeque;

use foldhash::HashMap;
use ledger::{AccountId, EntryKind, Leg, ProgrammeId, Tags};
use serde::Serialize;

use super::disburse::HOUSEHOLDS_PER_ENTRY;
use super::rules_at;
use super::service::{ProgrammeEntry, ProgrammeError, Programmes};
use crate::committer::CommitError;
use crate::db::statement::StatementLine;
use crate::db::{Database, DbError};
use crate::history::Counterparty;
use crate::view::LedgerView;

const DAY_MS: i64 = 86_400_000;

/// How deep card replacements are followed when tracing lots (a household on its ninth
/// card is treated as if the ninth's earlier lots arrived with the replacement).
const MAX_REPLACEMENT_DEPTH: usize = 8;

/// Households whose statements a sweep reads at once, so the sweep's memory follows this,
/// not the programme's size.
const SWEEP_HOUSEHOLDS_PER_READ: usize = 256;

/// Committed statements by account, oldest first: what [`lots`] reads.
pub type Statements = HashMap<AccountId, Vec<StatementLine>>;

/// Units received at one time, and how much of them is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Lot {
    /// When they were disbursed (ms).
    pub received_at: i64,
    /// Minor units not yet spent.
    pub remaining_minor: i64,
}

/// Units that will expire, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UpcomingExpiry {
    /// Minor units.
    pub amount_minor: i64,
    /// When they expire (ms).
    pub expires_at: i64,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Households with expired units.
    pub households: usize,
    /// Total returned to the budget, minor units.
    pub total_minor: i64,
    /// Entries committed.
    pub entries: usize,
    /// Households left for the next sweep because their balance moved while this one ran.
    pub deferred: usize,
    /// Entries that failed, with why.
    pub failed: Vec<String>,
}

/// Reads, up to position `up_to`, the statements [`lots`] needs for `accounts`: theirs and
/// those of the cards they replaced, as deep as lots follow replacements. Each walk starts at
/// the account's latest entry in `view`, which has published at least `up_to`.
pub async fn statements_for_lots(
    db: &Database,
    view: &LedgerView,
    accounts: &[AccountId],
    up_to: i64,
) -> Result<Statements, DbError> {
    let mut statements = db.statements(&heads(view, accounts), up_to).await?;
    let mut replaced = replaced_cards(&statements, accounts);
    // Lots follow a replacement from depth 0 to MAX_REPLACEMENT_DEPTH - 1, so the cards
    // reached are at most MAX_REPLACEMENT_DEPTH replacements deep: one read per level.
    for _ in 0..MAX_REPLACEMENT_DEPTH {
        replaced.retain(|old| !statements.contains_key(old));
        if replaced.is_empty() {
            break;
        }
        let older = db.statements(&heads(view, &replaced), up_to).await?;
        let next = replaced_cards(&older, &replaced);
        statements.extend(older);
        replaced = next;
    }
    Ok(statements)
}

/// Where each account's statement starts: its latest published entry.
fn heads(view: &LedgerView, accounts: &[AccountId]) -> Vec<(AccountId, Option<i64>)> {
    let view = view.read();
    accounts
        .iter()
        .map(|&a| (a, view.account(a).and_then(|v| v.last_entry)))
        .collect()
}

/// The cards `accounts` received a replacement balance from, each once.
fn replaced_cards(statements: &Statements, accounts: &[AccountId]) -> Vec<AccountId> {
    let mut old_cards: Vec<AccountId> = accounts
        .iter()
        .filter_map(|a| statements.get(a))
        .flatten()
        .map(|line| &line.item)
        .filter_map(|item| match (&item.kind, &item.counterparty) {
            (EntryKind::CardReplacement, Counterparty::One(old)) if item.delta > 0 => Some(*old),
            _ => None,
        })
        .collect();
    old_cards.sort_unstable();
    old_cards.dedup();
    old_cards
}

/// The unspent lots of `account`, soonest to expire first, from its committed statement (read
/// with [`statements_for_lots`]). `days_for(received_at)` is the validity, in days, in force
/// when a lot was received (`None`: it never expires).
pub fn lots(
    statements: &Statements,
    account: AccountId,
    days_for: impl Fn(i64) -> Option<u32>,
) -> Vec<Lot> {
    let queue = Queue {
        days_for: &days_for,
    };
    queue.lots_until(statements, account, i64::MAX, 0).into()
}

/// How lots are ordered: by when they expire.
struct Queue<'a> {
    days_for: &'a dyn Fn(i64) -> Option<u32>,
}

impl Queue<'_> {
    /// When a lot received at `received_at` expires; `i64::MAX` for never.
    fn expires(&self, received_at: i64) -> i64 {
        (self.days_for)(received_at).map_or(i64::MAX, |days| {
            received_at.saturating_add(i64::from(days).saturating_mul(DAY_MS))
        })
    }

    fn lots_until(
        &self,
        statements: &Statements,
        account: AccountId,
        before: i64,
        depth: usize,
    ) -> VecDeque<Lot> {
        let mut lots = VecDeque::new();
        let Some(history) = statements.get(&account) else {
            return lots;
        };
        // What each payment took, in the order it took them, for a refund to give back.
        let mut taken: HashMap<ledger::EntryId, VecDeque<Lot>> = HashMap::default();
        for line in history
            .iter()
            .take_while(|line| line.item.position < before)
        {
            let item = &line.item;
            if item.delta <= 0 {
                let took = consume(&mut lots, item.delta.saturating_neg());
                if item.kind == EntryKind::Payment {
                    taken.insert(item.entry_id, took);
                }
                continue;
            }
            let carried = match (&item.kind, &item.counterparty) {
                (EntryKind::CardReplacement, Counterparty::One(old))
                    if depth < MAX_REPLACEMENT_DEPTH =>
                {
                    Some(self.lots_until(statements, *old, item.position, depth.saturating_add(1)))
                }
                _ => None,
            };
            let refunded = line.reverses.and_then(|payment| taken.get_mut(&payment));
            match (carried, refunded) {
                (Some(old), _)
                    if old.iter().map(|l| l.remaining_minor).sum::<i64>() == item.delta =>
                {
                    // In among the new card's own lots: a refund passed on from the old card
                    // gives back units older than some the new card received since.
                    for lot in old {
                        self.insert(&mut lots, lot);
                    }
                }
                (_, Some(took)) => {
                    let fresh = self.give_back(&mut lots, took, item.delta);
                    if fresh > 0 {
                        self.insert(&mut lots, lot_received(item.created_at, fresh));
                    }
                }
                // Anything else (a payment received, a partial move, a refund of a payment
                // this statement does not hold) is fresh.
                _ => self.insert(&mut lots, lot_received(item.created_at, item.delta)),
            }
        }
        lots
    }

    /// Puts back up to `amount` of what a payment `took`, latest-expiring first (what a
    /// smaller sale would not have taken), each part with its own date; returns what is left
    /// of `amount` once `took` is used up (refunded beyond the units it took).
    fn give_back(
        &self,
        lots: &mut VecDeque<Lot>,
        took: &mut VecDeque<Lot>,
        mut amount: i64,
    ) -> i64 {
        while amount > 0 {
            let Some(latest) = took.back_mut() else {
                break;
            };
            let back = latest.remaining_minor.min(amount);
            let received_at = latest.received_at;
            latest.remaining_minor = latest.remaining_minor.saturating_sub(back);
            amount = amount.saturating_sub(back);
            if latest.remaining_minor == 0 {
                took.pop_back();
            }
            self.insert(lots, lot_received(received_at, back));
        }
        amount
    }

    /// Puts `lot` after every lot that expires no later than it, adding it to the lot just
    /// before if that one was received at the same time (so a date's units usually stay one
    /// lot; lots that never expire may stay apart, which changes no sum and no sweep).
    fn insert(&self, lots: &mut VecDeque<Lot>, lot: Lot) {
        let expires = self.expires(lot.received_at);
        let at = lots.partition_point(|l| self.expires(l.received_at) <= expires);
        if let Some(before) = at.checked_sub(1).and_then(|i| lots.get_mut(i))
            && before.received_at == lot.received_at
        {
            before.remaining_minor = before.remaining_minor.saturating_add(lot.remaining_minor);
            return;
        }
        lots.insert(at, lot);
    }
}

fn lot_received(received_at: i64, remaining_minor: i64) -> Lot {
    Lot {
        received_at,
        remaining_minor,
    }
}

/// Spends `amount` from the lots that expire soonest; returns what it took of each, in order.
fn consume(lots: &mut VecDeque<Lot>, mut amount: i64) -> VecDeque<Lot> {
    let mut took = VecDeque::new();
    while amount > 0 {
        let Some(first) = lots.front_mut() else {
            break;
        };
        let used = first.remaining_minor.min(amount);
        took.push_back(lot_received(first.received_at, used));
        first.remaining_minor = first.remaining_minor.saturating_sub(used);
        amount = amount.saturating_sub(used);
        if first.remaining_minor == 0 {
            lots.pop_front();
        }
    }
    took
}

/// When each lot expires: `days_for(received_at)` is the validity in force when the lot was
/// received (a later rule change does not shorten or lengthen it); `None` never expires.
pub fn upcoming(lots: &[Lot], days_for: impl Fn(i64) -> Option<u32>) -> Vec<UpcomingExpiry> {
    lots.iter()
        .filter_map(|l| {
            let validity = i64::from(days_for(l.received_at)?).saturating_mul(DAY_MS);
            Some(UpcomingExpiry {
                amount_minor: l.remaining_minor,
                expires_at: l.received_at.saturating_add(validity),
            })
        })
        .collect()
}

/// Minor units of `lots` expired at `now`.
pub fn expired_at(lots: &[Lot], days_for: impl Fn(i64) -> Option<u32>, now: i64) -> i64 {
    upcoming(lots, days_for)
        .iter()
        .filter(|u| u.expires_at <= now)
        .map(|u| u.amount_minor)
        .sum()
}

/// The expiry in days of the rule version in force at `at`.
fn days_at(versions: &[super::RuleVersion], at: i64) -> Option<u32> {
    rules_at(versions, at).and_then(|v| v.rules.expiry_days)
}

impl Programmes {
    fn expiry_intent(
        &self,
        programme: &super::Programme,
        chunk: &[(AccountId, i64, i64)],
        now: i64,
        number: usize,
        attempt: u64,
    ) -> Result<ledger::VerifiedIntent, ProgrammeError> {
        let total: i64 = chunk.iter().map(|&(_, a, _)| a).sum();
        let mut legs: Vec<Leg> = chunk
            .iter()
            .map(|&(account, amount, _)| Leg {
                account,
                unit: programme.unit,
                delta: amount.saturating_neg(),
            })
            .collect();
        legs.push(Leg {
            account: programme.accounts.budget,
            unit: programme.unit,
            delta: total,
        });
        let intent_id = super::derived_intent_id(
            "expiry",
            &[
                programme.id.as_bytes(),
                &now.to_be_bytes(),
                &(number as u64).to_be_bytes(),
                &attempt.to_be_bytes(),
            ],
        );
        self.sign_entry(
            programme.id,
            ProgrammeEntry {
                intent_id,
                valid_from_ms: now,
                kind: EntryKind::Expire,
                legs,
                memo: format!("{}: units unspent past their validity", programme.name),
                tags: Tags {
                    programme: Some(programme.id.to_string()),
                    budget_line: Some("expiry".into()),
                    category: None,
                    reverses: None,
                },
            },
        )
    }

    /// A household account's upcoming expiries under the programme's rules in force now;
    /// empty when its units do not expire.
    pub async fn upcoming_expiries(
        &self,
        programme: ProgrammeId,
        account: AccountId,
    ) -> Result<Vec<UpcomingExpiry>, ProgrammeError> {
        let versions = self.db.rule_versions(programme).await?;
        let published = self.committer.view().read().last_position();
        let statements =
            statements_for_lots(&self.db, self.committer.view(), &[account], published).await?;
        let days_for = |at| days_at(&versions, at);
        Ok(upcoming(&lots(&statements, account, days_for), days_for))
    }

    /// Returns every household's expired units to the budget, in signed `expire` entries.
    pub async fn sweep_expired(
        &self,
        programme_id: ProgrammeId,
    ) -> Result<SweepReport, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let programme = self.get(programme_id).await?;
        let now = self.now_ms();
        let versions = self.db.rule_versions(programme_id).await?;
        if versions.iter().all(|v| v.rules.expiry_days.is_none()) {
            return Ok(SweepReport::default());
        }
        let households = self.db.households(programme_id).await?;
        // Active households with their balances, and the position those balances are at, from
        // one view snapshot; their statements are then read up to that same position, so each
        // household's lots add up to the balance recorded with them.
        let (active, published): (Vec<(AccountId, i64)>, i64) = {
            let view = self.committer.view().read();
            let active = households
                .iter()
                .filter_map(|h| {
                    let account = view.account(h.account)?;
                    // A frozen or closed account cannot be debited; it would sink its chunk.
                    (account.account.status == ledger::AccountStatus::Active)
                        .then_some((h.account, account.balance.0))
                })
                .collect();
            (active, view.last_position())
        };
        // (account, amount expiring, its balance when computed).
        let mut expiring: Vec<(AccountId, i64, i64)> = Vec::new();
        for batch in active.chunks(SWEEP_HOUSEHOLDS_PER_READ) {
            let accounts: Vec<AccountId> = batch.iter().map(|&(a, _)| a).collect();
            let statements =
                statements_for_lots(&self.db, self.committer.view(), &accounts, published).await?;
            expiring.extend(batch.iter().filter_map(|&(account, balance)| {
                let days_for = |at| days_at(&versions, at);
                let amount = expired_at(&lots(&statements, account, days_for), days_for, now);
                (amount > 0).then_some((account, amount, balance))
            }));
        }
        expiring.sort_unstable();
        let mut report = SweepReport::default();
        for (number, chunk) in expiring.chunks(HOUSEHOLDS_PER_ENTRY).enumerate() {
            let mut chunk = chunk.to_vec();
            // Each leg applies only if the household's balance is still the one its lots were
            // read at: a payment meanwhile may have spent the expired lot, and the sweep must
            // not take an unexpired one instead. Moved households wait for the next sweep.
            for attempt in 0u64..3 {
                if chunk.is_empty() {
                    break;
                }
                let intent = self.expiry_intent(&programme, &chunk, now, number, attempt)?;
                let expected = chunk.iter().map(|&(a, _, balance)| (a, balance)).collect();
                match self.committer.submit_expecting(&intent, expected).await {
                    Ok(_) => {
                        report.entries = report.entries.saturating_add(1);
                        report.households = report.households.saturating_add(chunk.len());
                        report.total_minor = report
                            .total_minor
                            .saturating_add(chunk.iter().map(|&(_, a, _)| a).sum());
                        break;
                    }
                    Err(CommitError::BalancesMoved(moved)) => {
                        report.deferred = report.deferred.saturating_add(moved.len());
                        chunk.retain(|(a, _, _)| !moved.contains(a));
                    }
                    Err(e) => {
                        report.failed.push(e.to_string());
                        break;
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(received_at: i64, remaining_minor: i64) -> Lot {
        Lot {
            received_at,
            remaining_minor,
        }
    }

    #[test]
    fn spending_consumes_the_oldest_lots_first() {
        let mut lots = VecDeque::from([lot(1, 100), lot(2, 100), lot(3, 100)]);
        let took = consume(&mut lots, 150);
        assert_eq!(Vec::from(took), vec![lot(1, 100), lot(2, 50)]);
        assert_eq!(Vec::from(lots.clone()), vec![lot(2, 50), lot(3, 100)]);
        consume(&mut lots, 1_000);
        assert!(lots.is_empty());
    }

    /// A line of `account`'s statement: `delta` at day `day`, position `position`.
    fn line(position: i64, day: i64, kind: EntryKind, delta: i64) -> StatementLine {
        StatementLine {
            item: crate::history::HistoryItem {
                position,
                entry_id: ledger::EntryId::new(),
                created_at: day * DAY_MS,
                kind,
                delta,
                counterparty: Counterparty::One(AccountId::new()),
            },
            memo: String::new(),
            reverses: None,
            refundable_minor: None,
        }
    }

    #[test]
    fn only_lots_past_their_validity_expire() {
        let lots = [lot(0, 100), lot(10 * DAY_MS, 50)];
        let thirty = |_| Some(30);
        assert_eq!(expired_at(&lots, thirty, 30 * DAY_MS - 1), 0);
        assert_eq!(expired_at(&lots, thirty, 30 * DAY_MS), 100);
        assert_eq!(expired_at(&lots, thirty, 40 * DAY_MS), 150);
        let soon = upcoming(&lots, thirty);
        assert_eq!(soon[1].expires_at, 40 * DAY_MS);
        // Each lot keeps the validity in force when it arrived: a later, shorter rule does
        // not expire it early, and lots from a time without expiry never expire.
        let changed = |at: i64| if at < 5 * DAY_MS { None } else { Some(10) };
        assert_eq!(expired_at(&lots, changed, 365 * DAY_MS), 50);
    }

    fn thirty_days(_: i64) -> Option<u32> {
        Some(30)
    }

    #[test]
    fn a_refund_gives_back_the_lots_its_payment_took_with_their_dates() {
        // 100.00 on day 0 and on day 10; 150.00 paid on day 20 (all of day 0's, half of day
        // 10's); refunded 120.00 on day 25 (as if the sale had been 30.00: day 10's half, then
        // 70.00 of day 0's), then 40.00 more on day 26 (the last 30.00 of day 0's, and 10.00
        // the payment never took: fresh); a refund of a payment not in the statement is fresh.
        let account = AccountId::new();
        let payment = line(3, 20, EntryKind::Payment, -150_00);
        let refund = |position, day, delta, of: &StatementLine| StatementLine {
            reverses: Some(of.item.entry_id),
            ..line(position, day, EntryKind::Reversal, delta)
        };
        let elsewhere = line(0, 0, EntryKind::Payment, -1);
        let history = vec![
            line(1, 0, EntryKind::Issue, 100_00),
            line(2, 10, EntryKind::Issue, 100_00),
            payment.clone(),
            refund(4, 25, 120_00, &payment),
            refund(5, 26, 40_00, &payment),
            refund(6, 27, 5_00, &elsewhere),
        ];
        let statements = Statements::from_iter([(account, history)]);
        let held = lots(&statements, account, thirty_days);
        assert_eq!(
            held,
            vec![
                lot(0, 100_00),
                lot(10 * DAY_MS, 100_00),
                lot(26 * DAY_MS, 10_00),
                lot(27 * DAY_MS, 5_00),
            ]
        );
        // So with 30 days' validity, day 0's 100.00 still expire on day 30, refund or not.
        assert_eq!(expired_at(&held, thirty_days, 30 * DAY_MS), 100_00);
    }

    #[test]
    fn a_refund_passed_on_from_a_lost_card_takes_its_place_among_the_new_cards_lots() {
        // Card A: 300.00 on day 0, 100.00 paid on day 1, replaced by card B on day 2 (200.00
        // moved). B: 300.00 more on day 5. The shop refunds the 100.00 to A on day 6, which
        // passes it on to B: day-0 money, due before B's day-5 lot.
        let (a, b) = (AccountId::new(), AccountId::new());
        let to = |position, day, delta, other| StatementLine {
            item: crate::history::HistoryItem {
                counterparty: Counterparty::One(other),
                ..line(position, day, EntryKind::CardReplacement, delta).item
            },
            ..line(position, day, EntryKind::CardReplacement, delta)
        };
        let payment = line(2, 1, EntryKind::Payment, -100_00);
        let refund = StatementLine {
            reverses: Some(payment.item.entry_id),
            ..line(6, 6, EntryKind::Reversal, 100_00)
        };
        let card_a = vec![
            line(1, 0, EntryKind::Issue, 300_00),
            payment,
            to(3, 2, -200_00, b),
            refund,
            to(7, 6, -100_00, b),
        ];
        let mut card_b = vec![
            to(3, 2, 200_00, a),
            line(5, 5, EntryKind::Issue, 300_00),
            to(7, 6, 100_00, a),
        ];
        let statements = Statements::from_iter([(a, card_a.clone()), (b, card_b.clone())]);
        let held = lots(&statements, b, thirty_days);
        assert_eq!(held, vec![lot(0, 300_00), lot(5 * DAY_MS, 300_00)]);
        assert_eq!(expired_at(&held, thirty_days, 30 * DAY_MS), 300_00);
        // Swept on day 30: the sweep's entry takes the day-0 lot, and nothing more is due
        // until day 35.
        card_b.push(line(8, 30, EntryKind::Expire, -300_00));
        let statements = Statements::from_iter([(a, card_a), (b, card_b)]);
        let held = lots(&statements, b, thirty_days);
        assert_eq!(held, vec![lot(5 * DAY_MS, 300_00)]);
        assert_eq!(expired_at(&held, thirty_days, 34 * DAY_MS), 0);
    }

    #[test]
    fn lots_are_spent_and_swept_in_the_order_they_expire() {
        // Day 0's 100.00 never expire (no validity then); day 25's 100.00 have ten days. The
        // day-25 lot goes first, so the sweep on day 36 takes it, not day 0's.
        let account = AccountId::new();
        let days_for = |at: i64| (at >= 20 * DAY_MS).then_some(10);
        let mut history = vec![
            line(1, 0, EntryKind::Issue, 100_00),
            line(2, 25, EntryKind::Issue, 100_00),
        ];
        let statements = Statements::from_iter([(account, history.clone())]);
        let held = lots(&statements, account, days_for);
        assert_eq!(held, vec![lot(25 * DAY_MS, 100_00), lot(0, 100_00)]);
        assert_eq!(expired_at(&held, days_for, 36 * DAY_MS), 100_00);
        history.push(line(3, 36, EntryKind::Expire, -100_00));
        let statements = Statements::from_iter([(account, history)]);
        let held = lots(&statements, account, days_for);
        assert_eq!(held, vec![lot(0, 100_00)]);
        assert_eq!(expired_at(&held, days_for, 3650 * DAY_MS), 0);
    }
}
