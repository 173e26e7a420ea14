//! Per-account chains through the posting rows (migration 0006): each row links to the
//! previous entry of its debit account and of its credit account, so one account's statement
//! is a walk backwards through the primary key, and the commit path appends two integers per
//! row instead of updating an index by account.
//!
//! The writer keeps each account's last position ([`ChainHeads`]), rebuilt by every load (which
//! replays every entry in order anyway, and checks the stored links against it), so linking an
//! entry is a hash lookup per account.

use foldhash::HashMap;
use ledger::{AccountId, Posting};

/// The links of one posting row: the previous entry of its debit account and of its credit
/// account (`None` when the account had none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostingLinks {
    /// The latest earlier entry that touched the debit account.
    pub prev_debit: Option<i64>,
    /// The latest earlier entry that touched the credit account.
    pub prev_credit: Option<i64>,
}

/// The position of each account's latest entry; its size follows the number of accounts, not
/// of entries.
#[derive(Debug, Default)]
pub struct ChainHeads(HashMap<AccountId, i64>);

impl ChainHeads {
    /// Links the entry at `position` (which must follow every position seen so far) and makes
    /// it the head of every account it touches. Every posting of the entry that touches an
    /// account links to the same previous entry: all lookups happen before any head moves, so
    /// an entry touching an account twice never links to itself.
    pub fn append(&mut self, position: i64, postings: &[Posting]) -> Vec<PostingLinks> {
        // The links are all looked up before any head moves, so none can be `position`.
        let links: Vec<PostingLinks> = postings
            .iter()
            .map(|p| PostingLinks {
                prev_debit: self.0.get(&p.debit).copied(),
                prev_credit: self.0.get(&p.credit).copied(),
            })
            .collect();
        for posting in postings {
            for account in [posting.debit, posting.credit] {
                let previous = self.0.insert(account, position);
                // Positions only grow (the head is `position` already when an earlier posting
                // of this entry touched the account); a link that pointed forwards would never
                // end a walk.
                assert!(
                    previous.is_none_or(|p| p <= position),
                    "chain head of {account} moved back from {previous:?} to {position}"
                );
            }
        }
        links
    }

    /// Reads the heads of the accounts `postings` touch, changing nothing, so that appending
    /// them soon after finds them in cache (see `ledger::Book::warm`, which this follows).
    pub fn warm(&self, postings: &[Posting]) {
        let mut seen = 0i64;
        for posting in postings {
            for account in [posting.debit, posting.credit] {
                seen ^= self.head(account).unwrap_or(0);
            }
        }
        std::hint::black_box(seen);
    }

    /// The position of `account`'s latest entry.
    pub fn head(&self, account: AccountId) -> Option<i64> {
        self.0.get(&account).copied()
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Amount, UnitCode};
    use uuid::Uuid;

    use super::*;

    fn account(n: u128) -> AccountId {
        AccountId(Uuid::from_u128(n))
    }

    fn posting(debit: u128, credit: u128) -> Posting {
        Posting {
            unit: UnitCode::new("T-EUR").unwrap_or_else(|e| panic!("{e}")),
            debit: account(debit),
            credit: account(credit),
            amount: Amount::from_minor(1).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn each_side_links_to_its_accounts_previous_entry() {
        let mut heads = ChainHeads::default();
        let none = PostingLinks::default();
        assert_eq!(heads.append(1, &[posting(1, 2)]), vec![none]);
        assert_eq!(heads.append(2, &[posting(3, 4)]), vec![none]);
        // Account 2 last moved at 1 (as credit), account 3 at 2 (as debit).
        assert_eq!(
            heads.append(5, &[posting(2, 3)]),
            vec![PostingLinks {
                prev_debit: Some(1),
                prev_credit: Some(2),
            }]
        );
        assert_eq!(heads.head(account(1)), Some(1));
        assert_eq!(heads.head(account(2)), Some(5));
        assert_eq!(heads.head(account(9)), None);
    }

    #[test]
    fn postings_of_one_entry_touching_an_account_twice_link_to_the_same_earlier_entry() {
        let mut heads = ChainHeads::default();
        heads.append(1, &[posting(1, 2)]);
        // 1 pays 2 and 3, and 3 passes part back to 1: account 1 appears three times.
        let links = heads.append(2, &[posting(1, 2), posting(1, 3), posting(3, 1)]);
        assert_eq!(
            links,
            vec![
                PostingLinks {
                    prev_debit: Some(1),
                    prev_credit: Some(1),
                },
                PostingLinks {
                    prev_debit: Some(1),
                    prev_credit: None,
                },
                PostingLinks {
                    prev_debit: None,
                    prev_credit: Some(1),
                },
            ]
        );
        assert_eq!(heads.head(account(1)), Some(2));
        assert_eq!(heads.head(account(3)), Some(2));
    }
}
