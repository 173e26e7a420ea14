//! Account statements: each entry as seen from one account (its net change and who was on the
//! other side), built from the postings storage returns.
//!
//! Statements are read from the database (each account's chain of posting rows, migration
//! 0006), not kept in memory: an in-memory copy grew by two items with every payment, for
//! ever. An item depends only on the postings that touch its account, so storage returns
//! just those, and an item is the same whichever of an entry's other postings exist.

use std::sync::Arc;

use ledger::{AccountId, EntryId, EntryKind, Posting};

/// Who was on the other side of an account's movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counterparty {
    /// A single account (every payment).
    One(AccountId),
    /// Several (a multi-leg entry such as a fee split or a disbursement).
    Several(Arc<[AccountId]>),
}

impl Counterparty {
    /// Whether `account` is among them.
    pub fn includes(&self, account: AccountId) -> bool {
        match self {
            Counterparty::One(one) => *one == account,
            Counterparty::Several(all) => all.contains(&account),
        }
    }

    /// Every counterparty account.
    pub fn accounts(&self) -> &[AccountId] {
        match self {
            Counterparty::One(one) => std::slice::from_ref(one),
            Counterparty::Several(all) => all,
        }
    }
}

/// One entry as seen from one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The entry's commit position (the pagination cursor).
    pub position: i64,
    /// The entry.
    pub entry_id: EntryId,
    /// When it was committed (ms since the epoch).
    pub created_at: i64,
    /// What it was.
    pub kind: EntryKind,
    /// The account's net change, in minor units (negative when it paid).
    pub delta: i64,
    /// The other side.
    pub counterparty: Counterparty,
}

/// What a statement page keeps; every filter left `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only entries committed at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only entries committed before this time (ms).
    pub until_ms: Option<i64>,
    /// Only entries of this kind.
    pub kind: Option<EntryKind>,
    /// Only entries with this account among the counterparties.
    pub counterparty: Option<AccountId>,
}

impl HistoryFilter {
    /// Whether `item` passes.
    pub fn keeps(&self, item: &HistoryItem) -> bool {
        self.since_ms.is_none_or(|s| item.created_at >= s)
            && self.until_ms.is_none_or(|u| item.created_at < u)
            && self.kind.is_none_or(|k| item.kind == k)
            && self
                .counterparty
                .is_none_or(|c| item.counterparty.includes(c))
    }
}

/// The entry at `position` as seen from `account`, from the entry's postings that touch it
/// (others may be included; they change nothing). `None` if none touches it.
pub fn item(
    account: AccountId,
    position: i64,
    entry_id: EntryId,
    created_at: i64,
    kind: EntryKind,
    postings: &[Posting],
) -> Option<HistoryItem> {
    let (_, delta, others) = net_by_account(postings)
        .into_iter()
        .find(|(a, _, _)| *a == account)?;
    let counterparty = match others.as_slice() {
        [one] => Counterparty::One(*one),
        _ => Counterparty::Several(others.into()),
    };
    Some(HistoryItem {
        position,
        entry_id,
        created_at,
        kind,
        delta,
        counterparty,
    })
}

/// Net change per account of an entry's postings, with the accounts on the other side of
/// its postings, in first-seen order.
pub fn net_by_account(postings: &[Posting]) -> Vec<(AccountId, i64, Vec<AccountId>)> {
    let mut sides: Vec<(AccountId, i64, Vec<AccountId>)> = Vec::new();
    for posting in postings {
        let amount = posting.amount.minor();
        for (account, delta, other) in [
            (posting.debit, amount.saturating_neg(), posting.credit),
            (posting.credit, amount, posting.debit),
        ] {
            match sides.iter_mut().find(|(a, _, _)| *a == account) {
                Some((_, net, others)) => {
                    *net = net.saturating_add(delta);
                    if !others.contains(&other) {
                        others.push(other);
                    }
                }
                None => sides.push((account, delta, vec![other])),
            }
        }
    }
    sides
}

#[cfg(test)]
mod tests {
    use ledger::{Amount, UnitCode};
    use uuid::Uuid;

    use super::*;

    fn account(n: u128) -> AccountId {
        AccountId(Uuid::from_u128(n))
    }

    fn posting(debit: u128, credit: u128, minor: i64) -> Posting {
        Posting {
            unit: UnitCode::new("T-EUR").unwrap_or_else(|e| panic!("{e}")),
            debit: account(debit),
            credit: account(credit),
            amount: Amount::from_minor(minor).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn seen_by(who: u128, postings: &[Posting]) -> Option<(i64, Vec<AccountId>)> {
        let entry = EntryId(Uuid::from_u128(99));
        item(account(who), 7, entry, 1_000, EntryKind::Payment, postings)
            .map(|i| (i.delta, i.counterparty.accounts().to_vec()))
    }

    #[test]
    fn a_payment_is_seen_from_each_side_with_the_other_as_counterparty() {
        let pay = [posting(1, 2, 150)];
        assert_eq!(seen_by(1, &pay), Some((-150, vec![account(2)])));
        assert_eq!(seen_by(2, &pay), Some((150, vec![account(1)])));
        assert_eq!(seen_by(3, &pay), None);
    }

    #[test]
    fn a_multi_leg_entry_nets_and_lists_every_counterparty_in_order() {
        // 1 pays 2 and 3, and 3 passes part on to 1: 1 nets -250, with 2 and 3 opposite.
        let split = [posting(1, 2, 200), posting(1, 3, 100), posting(3, 1, 50)];
        assert_eq!(
            seen_by(1, &split),
            Some((-250, vec![account(2), account(3)]))
        );
        // An account's item needs only the postings that touch it.
        assert_eq!(seen_by(2, &split[..1]), seen_by(2, &split));
        assert_eq!(seen_by(3, &split[1..]), Some((50, vec![account(1)])));
    }

    #[test]
    fn filters_keep_only_what_they_name() {
        let Some(item) = item(
            account(1),
            5,
            EntryId(Uuid::from_u128(9)),
            1_000,
            EntryKind::Payment,
            &[posting(1, 2, 10), posting(1, 3, 10)],
        ) else {
            panic!("account 1 is in the entry");
        };
        assert!(HistoryFilter::default().keeps(&item));
        let with = |f: HistoryFilter| f.keeps(&item);
        assert!(with(HistoryFilter {
            counterparty: Some(account(3)),
            ..HistoryFilter::default()
        }));
        assert!(!with(HistoryFilter {
            counterparty: Some(account(4)),
            ..HistoryFilter::default()
        }));
        assert!(with(HistoryFilter {
            since_ms: Some(1_000),
            until_ms: Some(1_001),
            kind: Some(EntryKind::Payment),
            ..HistoryFilter::default()
        }));
        assert!(!with(HistoryFilter {
            until_ms: Some(1_000),
            ..HistoryFilter::default()
        }));
        assert!(!with(HistoryFilter {
            kind: Some(EntryKind::Issue),
            ..HistoryFilter::default()
        }));
    }
}
