//! Journal entries: atomic sets of postings, each balanced by construction.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;
use crate::amount::Amount;
use crate::ids::{AccountId, EntryId, IntentId};
use crate::journal::Digest;
use crate::keys::{PublicKey, Signature};
use crate::unit::UnitCode;

/// The most postings in one entry. A disbursement to many households is many entries in one
/// signed batch, not one giant entry, so this stays small and every entry stays cheap to check.
pub const MAX_POSTINGS: usize = 128;
/// The longest memo, in characters.
pub const MAX_MEMO_CHARS: usize = 280;
/// The longest tag value, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// Why an entry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// No postings at all.
    #[error("an entry needs at least one posting")]
    Empty,
    /// More than [`MAX_POSTINGS`].
    #[error("an entry may have at most {max} postings (got {count})")]
    TooManyPostings {
        /// Postings given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A posting of zero moves nothing and only clutters the journal.
    #[error("posting {index} has a zero amount")]
    ZeroAmount {
        /// Index of the posting or leg.
        index: usize,
    },
    /// Debit and credit are the same account.
    #[error("posting {index} debits and credits the same account")]
    SelfTransfer {
        /// Index of the posting.
        index: usize,
    },
    /// Legs of one unit whose signed amounts do not sum to zero.
    #[error("legs in unit {unit} do not balance: they sum to {sum} minor units instead of 0")]
    Unbalanced {
        /// The unit that does not balance.
        unit: UnitCode,
        /// The sum of its legs.
        sum: i128,
    },
    /// A leg amount of `i64::MIN`, which has no positive counterpart.
    #[error("leg {index} amount is out of range")]
    LegOutOfRange {
        /// Index of the leg.
        index: usize,
    },
    /// A creation time outside 0..=2^53-1 ms (it must survive every JSON client exactly).
    #[error("created_at {0} is outside the representable range")]
    BadTimestamp(TimestampMs),
    /// Memo longer than [`MAX_MEMO_CHARS`].
    #[error("memo is longer than {MAX_MEMO_CHARS} characters")]
    MemoTooLong,
    /// A memo holding U+0000, which PostgreSQL's text cannot store (other control characters,
    /// newlines included, are kept as written).
    #[error("memo must not contain the NUL character (U+0000)")]
    MemoHasNul,
    /// A tag longer than [`MAX_TAG_CHARS`], or one with control characters.
    #[error("tag {name} must be at most {MAX_TAG_CHARS} characters with no control characters")]
    BadTag {
        /// Which tag.
        name: &'static str,
    },
    /// A link to an original entry (`tags.reverses`) on an entry that is not a single-posting
    /// reversal: a refund gives back one amount, from the payee to the payer, and nothing else.
    #[error("only a reversal entry with exactly one posting may name the entry it reverses")]
    MisplacedReversal,
}

/// What an entry does, for reports and for the rules that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// New units from an issuer.
    Issue,
    /// A holder or merchant pays another account.
    Payment,
    /// A merchant gives units back for national money.
    Redeem,
    /// A fee.
    Fee,
    /// Unspent units returned to the budget after their validity.
    Expire,
    /// A holding charge on balances.
    Demurrage,
    /// Hours exchanged in a time bank.
    TimeExchange,
    /// Points minted for separated waste.
    WasteReward,
    /// The correction of an earlier entry.
    Reversal,
    /// A conversion between units (e.g. points to vouchers).
    Convert,
    /// A lost card's balance moved to its replacement.
    CardReplacement,
}

impl EntryKind {
    /// Every kind, for iteration in tests and reports.
    pub const ALL: [EntryKind; 11] = [
        EntryKind::Issue,
        EntryKind::Payment,
        EntryKind::Redeem,
        EntryKind::Fee,
        EntryKind::Expire,
        EntryKind::Demurrage,
        EntryKind::TimeExchange,
        EntryKind::WasteReward,
        EntryKind::Reversal,
        EntryKind::Convert,
        EntryKind::CardReplacement,
    ];

    /// Its place in [`EntryKind::ALL`], for tables indexed by kind.
    pub const fn index(self) -> usize {
        // ALL lists the kinds in declaration order (a test holds it to that).
        self as usize
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Issue => "issue",
            EntryKind::Payment => "payment",
            EntryKind::Redeem => "redeem",
            EntryKind::Fee => "fee",
            EntryKind::Expire => "expire",
            EntryKind::Demurrage => "demurrage",
            EntryKind::TimeExchange => "time_exchange",
            EntryKind::WasteReward => "waste_reward",
            EntryKind::Reversal => "reversal",
            EntryKind::Convert => "convert",
            EntryKind::CardReplacement => "card_replacement",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Labels for reporting: which programme and budget line paid, which merchant category sold;
/// and, on a refund, the payment it gives back. Tags are part of the hashed entry, so that link
/// is as tamper-evident as the amounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    /// The programme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programme: Option<String>,
    /// The budget line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_line: Option<String>,
    /// The merchant category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// On a refund (a [`EntryKind::Reversal`] with one posting): the payment entry it gives
    /// back, wholly or in part. The Book checks the link; absent everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<EntryId>,
}

impl Tags {
    fn validate(&self) -> Result<(), EntryError> {
        let fields = [
            ("programme", &self.programme),
            ("budget_line", &self.budget_line),
            ("category", &self.category),
        ];
        for (name, value) in fields {
            if let Some(value) = value
                && (value.chars().count() > MAX_TAG_CHARS || value.chars().any(char::is_control))
            {
                return Err(EntryError::BadTag { name });
            }
        }
        Ok(())
    }
}

/// One movement: `amount` of `unit` from `debit` to `credit`. Balanced by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    /// The unit moved; both accounts must hold it.
    pub unit: UnitCode,
    /// The account whose balance goes down.
    pub debit: AccountId,
    /// The account whose balance goes up.
    pub credit: AccountId,
    /// How much, in minor units; never zero.
    pub amount: Amount,
}

/// One side of a multi-leg entry: `delta` minor units added to (positive) or taken from
/// (negative) an account. Legs are how callers describe splits such as "95 to the merchant,
/// 5 to the fee account"; [`JournalEntry::from_legs`] turns them into postings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leg {
    /// The account.
    pub account: AccountId,
    /// Its unit.
    pub unit: UnitCode,
    /// Signed change in minor units.
    pub delta: i64,
}

/// Who authorised an entry: the signed intent it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorisation {
    /// The intent's id; an intent is applied at most once.
    pub intent_id: IntentId,
    /// The key that signed it.
    pub signer: PublicKey,
    /// SHA-256 of the signed bytes, to tell a replay from a different intent reusing an id.
    pub digest: Digest,
    /// The signature.
    pub signature: Signature,
}

/// An atomic set of postings with what it is, why, and who authorised it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EntryFields")]
pub struct JournalEntry {
    id: EntryId,
    kind: EntryKind,
    postings: Vec<Posting>,
    memo: String,
    tags: Tags,
    authorisation: Authorisation,
    created_at: TimestampMs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFields {
    id: EntryId,
    kind: EntryKind,
    postings: Vec<Posting>,
    memo: String,
    tags: Tags,
    authorisation: Authorisation,
    created_at: TimestampMs,
}

impl TryFrom<EntryFields> for JournalEntry {
    type Error = EntryError;
    fn try_from(f: EntryFields) -> Result<Self, Self::Error> {
        JournalEntry::new(
            f.id,
            f.kind,
            f.postings,
            f.memo,
            f.tags,
            f.authorisation,
            f.created_at,
        )
    }
}

impl JournalEntry {
    /// Validates and builds an entry. Errors: empty, too many postings, a zero amount, a
    /// self-transfer, an over-long memo or tag, a link to a reversed entry on anything but a
    /// single-posting reversal.
    pub fn new(
        id: EntryId,
        kind: EntryKind,
        postings: Vec<Posting>,
        memo: String,
        tags: Tags,
        authorisation: Authorisation,
        created_at: TimestampMs,
    ) -> Result<Self, EntryError> {
        if postings.is_empty() {
            return Err(EntryError::Empty);
        }
        if postings.len() > MAX_POSTINGS {
            return Err(EntryError::TooManyPostings {
                count: postings.len(),
                max: MAX_POSTINGS,
            });
        }
        for (index, posting) in postings.iter().enumerate() {
            if posting.amount.is_zero() {
                return Err(EntryError::ZeroAmount { index });
            }
            if posting.debit == posting.credit {
                return Err(EntryError::SelfTransfer { index });
            }
        }
        if memo.chars().count() > MAX_MEMO_CHARS {
            return Err(EntryError::MemoTooLong);
        }
        if memo.contains('\0') {
            return Err(EntryError::MemoHasNul);
        }
        if !(0..=crate::canonical::MAX_SAFE_INTEGER).contains(&created_at) {
            return Err(EntryError::BadTimestamp(created_at));
        }
        tags.validate()?;
        if tags.reverses.is_some() && (kind != EntryKind::Reversal || postings.len() != 1) {
            return Err(EntryError::MisplacedReversal);
        }
        Ok(Self {
            id,
            kind,
            postings,
            memo,
            tags,
            authorisation,
            created_at,
        })
    }

    /// Turns balanced legs into postings. Per unit the deltas must sum to zero, else
    /// [`EntryError::Unbalanced`]; debits are matched to credits in the order given.
    pub fn postings_from_legs(legs: &[Leg]) -> Result<Vec<Posting>, EntryError> {
        if legs.len() > MAX_POSTINGS {
            return Err(EntryError::TooManyPostings {
                count: legs.len(),
                max: MAX_POSTINGS,
            });
        }
        let mut units: Vec<UnitCode> = Vec::new();
        for (index, leg) in legs.iter().enumerate() {
            if leg.delta == 0 {
                return Err(EntryError::ZeroAmount { index });
            }
            if leg.delta == i64::MIN {
                return Err(EntryError::LegOutOfRange { index });
            }
            if !units.contains(&leg.unit) {
                units.push(leg.unit);
            }
        }
        let mut postings = Vec::new();
        for unit in units {
            let of_unit = legs.iter().filter(|l| l.unit == unit);
            let sum: i128 = of_unit.clone().map(|l| i128::from(l.delta)).sum();
            if sum != 0 {
                return Err(EntryError::Unbalanced { unit, sum });
            }
            // Remaining amounts to match; both sides are positive magnitudes.
            let mut debits: Vec<(AccountId, i64)> = of_unit
                .clone()
                .filter(|l| l.delta < 0)
                .map(|l| (l.account, l.delta.saturating_neg()))
                .collect();
            let mut credits: Vec<(AccountId, i64)> = of_unit
                .filter(|l| l.delta > 0)
                .map(|l| (l.account, l.delta))
                .collect();
            let (mut d, mut c) = (0, 0);
            while d < debits.len() && c < credits.len() {
                let moved = debits[d].1.min(credits[c].1);
                postings.push(Posting {
                    unit,
                    debit: debits[d].0,
                    credit: credits[c].0,
                    amount: Amount::from_minor(moved)
                        .map_err(|_| EntryError::Unbalanced { unit, sum: 0 })?,
                });
                debits[d].1 = debits[d].1.saturating_sub(moved);
                credits[c].1 = credits[c].1.saturating_sub(moved);
                if debits[d].1 == 0 {
                    d = d.saturating_add(1);
                }
                if credits[c].1 == 0 {
                    c = c.saturating_add(1);
                }
            }
        }
        Ok(postings)
    }

    /// The id.
    pub fn id(&self) -> EntryId {
        self.id
    }
    /// What it does.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }
    /// Its postings, in order.
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
    /// The memo.
    pub fn memo(&self) -> &str {
        &self.memo
    }
    /// The tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }
    /// Who authorised it.
    pub fn authorisation(&self) -> &Authorisation {
        &self.authorisation
    }
    /// When it was made, in ms since the epoch.
    pub fn created_at(&self) -> TimestampMs {
        self.created_at
    }
    /// The distinct units it touches, sorted, so chains are always extended in one order.
    pub fn units(&self) -> Vec<UnitCode> {
        let mut units: Vec<UnitCode> = self.postings.iter().map(|p| p.unit).collect();
        units.sort_unstable();
        units.dedup();
        units
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_kind_s_index_is_its_place_in_all() {
        for (place, kind) in EntryKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), place, "{kind:?}");
        }
    }

    pub(crate) fn test_authorisation() -> Authorisation {
        Authorisation {
            intent_id: IntentId::new(),
            signer: PublicKey([7; 32]),
            digest: Digest([1; 32]),
            signature: Signature([2; 64]),
        }
    }

    fn eur() -> UnitCode {
        UnitCode::new("EUR-V").unwrap()
    }

    fn posting(debit: AccountId, credit: AccountId, minor: i64) -> Posting {
        Posting {
            unit: eur(),
            debit,
            credit,
            amount: Amount::from_minor(minor).unwrap(),
        }
    }

    fn build(postings: Vec<Posting>) -> Result<JournalEntry, EntryError> {
        JournalEntry::new(
            EntryId::new(),
            EntryKind::Payment,
            postings,
            String::new(),
            Tags::default(),
            test_authorisation(),
            0,
        )
    }

    #[test]
    fn empty_entry_is_rejected() {
        assert_eq!(build(vec![]), Err(EntryError::Empty));
    }

    #[test]
    fn oversized_entry_is_rejected() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let postings = vec![posting(a, b, 1); MAX_POSTINGS + 1];
        assert_eq!(
            build(postings),
            Err(EntryError::TooManyPostings {
                count: MAX_POSTINGS + 1,
                max: MAX_POSTINGS
            })
        );
    }

    #[test]
    fn zero_and_self_postings_are_rejected() {
        let (a, b) = (AccountId::new(), AccountId::new());
        assert_eq!(
            build(vec![posting(a, b, 0)]),
            Err(EntryError::ZeroAmount { index: 0 })
        );
        assert_eq!(
            build(vec![posting(a, b, 1), posting(a, a, 1)]),
            Err(EntryError::SelfTransfer { index: 1 })
        );
    }

    #[test]
    fn long_memo_and_bad_tags_are_rejected() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let memo = "x".repeat(MAX_MEMO_CHARS + 1);
        let result = JournalEntry::new(
            EntryId::new(),
            EntryKind::Payment,
            vec![posting(a, b, 1)],
            memo,
            Tags::default(),
            test_authorisation(),
            0,
        );
        assert_eq!(result, Err(EntryError::MemoTooLong));
        let result = JournalEntry::new(
            EntryId::new(),
            EntryKind::Payment,
            vec![posting(a, b, 1)],
            "pan\u{0}leche".into(),
            Tags::default(),
            test_authorisation(),
            0,
        );
        assert_eq!(result, Err(EntryError::MemoHasNul));
        let tags = Tags {
            category: Some("a\u{0}".into()),
            ..Tags::default()
        };
        let result = JournalEntry::new(
            EntryId::new(),
            EntryKind::Payment,
            vec![posting(a, b, 1)],
            String::new(),
            tags,
            test_authorisation(),
            0,
        );
        assert_eq!(result, Err(EntryError::BadTag { name: "category" }));
    }

    #[test]
    fn only_a_single_posting_reversal_names_what_it_reverses() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let linked = Tags {
            reverses: Some(EntryId::new()),
            ..Tags::default()
        };
        let make = |kind, postings: Vec<Posting>, tags: &Tags| {
            JournalEntry::new(
                EntryId::new(),
                kind,
                postings,
                String::new(),
                tags.clone(),
                test_authorisation(),
                0,
            )
        };
        assert!(make(EntryKind::Reversal, vec![posting(a, b, 1)], &linked).is_ok());
        assert_eq!(
            make(EntryKind::Payment, vec![posting(a, b, 1)], &linked),
            Err(EntryError::MisplacedReversal)
        );
        assert_eq!(
            make(
                EntryKind::Reversal,
                vec![posting(a, b, 1), posting(a, b, 2)],
                &linked
            ),
            Err(EntryError::MisplacedReversal)
        );
        // An unlinked reversal (an operator's correction) stays possible.
        assert!(
            make(
                EntryKind::Reversal,
                vec![posting(a, b, 1)],
                &Tags::default()
            )
            .is_ok()
        );
        // Stored tags are checked again on read.
        let stored = make(EntryKind::Reversal, vec![posting(a, b, 1)], &linked).unwrap();
        let mut json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["tags"]["reverses"], serde_json::json!(linked.reverses));
        json["kind"] = serde_json::json!("payment");
        assert!(serde_json::from_value::<JournalEntry>(json).is_err());
    }

    #[test]
    fn unbalanced_legs_are_rejected() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let legs = [
            Leg {
                account: a,
                unit: eur(),
                delta: -100,
            },
            Leg {
                account: b,
                unit: eur(),
                delta: 99,
            },
        ];
        assert_eq!(
            JournalEntry::postings_from_legs(&legs),
            Err(EntryError::Unbalanced {
                unit: eur(),
                sum: -1
            })
        );
    }

    #[test]
    fn balanced_legs_split_into_postings() {
        let (payer, shop, fee) = (AccountId::new(), AccountId::new(), AccountId::new());
        let legs = [
            Leg {
                account: payer,
                unit: eur(),
                delta: -100,
            },
            Leg {
                account: shop,
                unit: eur(),
                delta: 95,
            },
            Leg {
                account: fee,
                unit: eur(),
                delta: 5,
            },
        ];
        let postings = JournalEntry::postings_from_legs(&legs).unwrap();
        assert_eq!(
            postings,
            vec![posting(payer, shop, 95), posting(payer, fee, 5)]
        );
    }

    #[test]
    fn entry_round_trips_through_json_and_is_revalidated() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let entry = build(vec![posting(a, b, 5)]).unwrap();
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            serde_json::from_value::<JournalEntry>(json.clone()).unwrap(),
            entry
        );
        let mut broken = json;
        broken["postings"] = serde_json::json!([]);
        assert!(serde_json::from_value::<JournalEntry>(broken).is_err());
    }
}
