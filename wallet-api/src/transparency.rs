//! The public transparency report (DESIGN §5): where each unit's money is, in aggregate, and
//! what each programme paid, for citizens and auditors. Aggregates only, and any cell that
//! describes between one and four households ([`MIN_HOUSEHOLDS`] = k = 5) is suppressed:
//! its amount and its household count are null and it says `"suppressed": true`.
//!
//! A household is a holder account, or its owner when it has one (a time-bank member with
//! accounts in several units is one per unit); a card that replaced another carries the old
//! card's history ([`crate::view::AccountView::kinds`]), and the old card is not counted,
//! so a household that lost two cards is still one household. Merchants, collectors and the
//! system's accounts are organisations, not households: their cells are never suppressed.
//!
//! Amounts are in minor units, as decimal strings (a unit's totals may pass 2^53); each
//! unit states its `scale`. Every figure comes from one consistent read of the committed
//! state (the read model), the same the signed checkpoints state, at `as_of_position`.
//!
//! A unit (or programme) of one to four households publishes none of its money, only its
//! chain head: otherwise a merchant's takings or the budget left would say what those few
//! were paid. What suppression does not stop: subtracting a small cell's neighbours from a
//! unit's totals (the totals include it). A report that must withstand differencing needs
//! noise, which this is not.

use std::collections::{BTreeMap, HashSet};

use ledger::{AccountId, AccountKind, EntryKind, ParticipantId, UnitCode};
use serde_json::{Value, json};

use crate::db::DbError;
use crate::programme::Programme;
use crate::view::{ViewState, kind_bit};

/// k: the fewest households a published cell may describe (DESIGN §5).
pub const MIN_HOUSEHOLDS: usize = 5;

/// Who a holder account stands for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Household {
    Owner(ParticipantId),
    Account(AccountId),
}

/// Whether a figure over `households` households may not be published.
fn too_few(households: usize) -> bool {
    households > 0 && households < MIN_HOUSEHOLDS
}

/// A cell: `fields` with `households` beside them, or all null if it describes one to four
/// households or `within` (the unit's or programme's whole) does.
fn cell(households: usize, within: usize, fields: Value) -> Value {
    let suppressed = too_few(households) || too_few(within);
    let mut value = if suppressed {
        match fields {
            Value::Object(members) => {
                Value::Object(members.into_iter().map(|(k, _)| (k, Value::Null)).collect())
            }
            other => other,
        }
    } else {
        fields
    };
    if let Value::Object(members) = &mut value {
        members.insert(
            "households".into(),
            if suppressed {
                Value::Null
            } else {
                json!(households)
            },
        );
        members.insert("suppressed".into(), json!(suppressed));
    }
    value
}

/// What one unit's accounts of one kind hold.
#[derive(Default)]
struct Held {
    accounts: usize,
    minor: i128,
    households: HashSet<Household>,
}

/// Each unit's part of the report, in code order.
pub fn units(view: &ViewState) -> Vec<Value> {
    let mut households: BTreeMap<UnitCode, [HashSet<Household>; EntryKind::ALL.len()]> =
        BTreeMap::new();
    let mut any: BTreeMap<UnitCode, HashSet<Household>> = BTreeMap::new();
    let mut held: BTreeMap<(UnitCode, &'static str), Held> = BTreeMap::new();
    for account in view.accounts() {
        let unit = account.account.unit;
        let kind = account.account.kind;
        let household = (kind == AccountKind::Holder && !account.replaced).then(|| {
            account
                .owner
                .map_or(Household::Account(account.account.id), Household::Owner)
        });
        if let Some(household) = household
            && account.kinds != 0
        {
            let sets = households.entry(unit).or_default();
            for (set, entry_kind) in sets.iter_mut().zip(EntryKind::ALL) {
                if account.kinds & kind_bit(entry_kind) != 0 {
                    set.insert(household);
                }
            }
            any.entry(unit).or_default().insert(household);
        }
        if account.balance.0 != 0 && kind != AccountKind::Issuer {
            let cell = held.entry((unit, kind.as_str())).or_default();
            cell.accounts = cell.accounts.saturating_add(1);
            cell.minor = cell.minor.saturating_add(i128::from(account.balance.0));
            if let Some(household) = household {
                cell.households.insert(household);
            }
        }
    }
    let mut totals: BTreeMap<UnitCode, _> = view
        .checkpoint_states()
        .map(|(unit, head, totals)| (unit, (head, totals)))
        .collect();
    view.units()
        .map(|unit| {
            let code = unit.code();
            let (head, totals) = totals.remove(&code).unwrap_or_default();
            let sets = households.remove(&code).unwrap_or_default();
            // A unit of one to four households publishes no money at all: a merchant's
            // takings or redemptions would be theirs.
            let unit_households = any.get(&code).map_or(0, HashSet::len);
            let kinds: Vec<Value> = totals
                .kinds()
                .map(|(kind, entries, amount)| {
                    let set = EntryKind::ALL
                        .iter()
                        .position(|&k| k == kind)
                        .and_then(|i| sets.get(i));
                    let mut value = cell(
                        set.map_or(0, HashSet::len),
                        unit_households,
                        json!({ "entries": entries, "amount_minor": amount.to_string() }),
                    );
                    value["kind"] = json!(kind.as_str());
                    value
                })
                .collect();
            let held_by: Vec<Value> = ["holder", "merchant", "collector", "system"]
                .into_iter()
                .filter_map(|by| held.remove(&(code, by)).map(|h| (by, h)))
                .map(|(by, h)| {
                    let mut value = cell(
                        h.households.len(),
                        unit_households,
                        json!({ "accounts": h.accounts, "amount_minor": h.minor.to_string() }),
                    );
                    value["by"] = json!(by);
                    value
                })
                .collect();
            let mut value = cell(
                unit_households,
                unit_households,
                json!({
                    "positive_balances_minor": totals.positive_balances().to_string(),
                }),
            );
            let members = [
                ("unit", json!(code)),
                ("name", json!(unit.name())),
                ("kind", json!(unit.kind().as_str())),
                ("scale", json!(unit.scale())),
                ("seq", json!(head.seq)),
                ("hash", json!(head.hash.to_hex())),
                ("kinds", json!(kinds)),
                ("held", json!(held_by)),
            ];
            for (name, member) in members {
                value[name] = member;
            }
            value
        })
        .collect()
}

/// What a programme is and paid, for the report.
pub struct ProgrammeFacts {
    /// The programme.
    pub programme: Programme,
    /// Households enrolled.
    pub households: u64,
    /// Its runs, oldest first.
    pub runs: Vec<crate::db::programmes::StoredRun>,
}

/// Each programme's part of the report: its budget left and what waits for settlement
/// (programme accounts, not households), households enrolled, and per run the households
/// paid and the total.
pub fn programmes(view: &ViewState, facts: &[ProgrammeFacts]) -> Vec<Value> {
    facts
        .iter()
        .map(|f| {
            let p = &f.programme;
            let balance = |id: AccountId| view.account(id).map_or(0, |a| a.balance.0);
            let budget_left = view.account(p.accounts.budget).and_then(|a| {
                let lower = a.account.limits.lower()?;
                Some(i128::from(a.balance.0).saturating_sub(i128::from(lower.0)))
            });
            let enrolled = usize::try_from(f.households).unwrap_or(usize::MAX);
            let runs: Vec<Value> = f
                .runs
                .iter()
                .map(|run| {
                    let mut value = cell(
                        run.households as usize,
                        enrolled,
                        json!({ "total_minor": run.total_minor.to_string() }),
                    );
                    value["period"] = json!(run.period);
                    value["kind"] = json!(run.kind);
                    value["area"] = json!(run.area);
                    value["completed"] = json!(run.completed_at.is_some());
                    value
                })
                .collect();
            // With one to four households, what the budget has left says what they were paid.
            let mut value = cell(
                enrolled,
                enrolled,
                json!({
                    "budget_left_minor": budget_left.map(|b| b.to_string()),
                    "awaiting_settlement_minor": balance(p.accounts.clearing).to_string(),
                    "fees_minor": balance(p.accounts.fees).to_string(),
                }),
            );
            let members = [
                ("id", json!(p.id)),
                ("name", json!(p.name)),
                ("unit", json!(p.unit)),
                ("runs", json!(runs)),
            ];
            for (name, member) in members {
                value[name] = member;
            }
            value
        })
        .collect()
}

/// Reads what [`programmes`] needs of every programme.
pub async fn programme_facts(db: &crate::Database) -> Result<Vec<ProgrammeFacts>, DbError> {
    let mut facts = Vec::new();
    for programme in db.programmes().await? {
        let households = db.household_count(programme.id).await?;
        let runs = db.runs(programme.id).await?;
        facts.push(ProgrammeFacts {
            programme,
            households,
            runs,
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ledger::journal::ChainHead;
    use ledger::{
        Account, Amount, Authorisation, Digest, EntryId, IntentId, JournalEntry, Posting,
        PublicKey, Signature, Tags, Unit, UnitKind,
    };

    use super::*;

    fn entry(
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

    struct Town {
        view: ViewState,
        unit: UnitCode,
        issuer: AccountId,
        shop: AccountId,
        position: i64,
    }

    impl Town {
        fn new() -> Self {
            let unit = UnitCode::new("T-EUR").unwrap();
            let mut view = ViewState::default();
            view.add_unit(Unit::new(unit, "Test", 2, UnitKind::Voucher, None).unwrap());
            let mut town = Self {
                view,
                unit,
                issuer: AccountId::new(),
                shop: AccountId::new(),
                position: 0,
            };
            town.issuer = town.open(AccountKind::Issuer, None);
            town.shop = town.open(AccountKind::Merchant, Some(ParticipantId::new()));
            town
        }

        fn open(&mut self, kind: AccountKind, owner: Option<ParticipantId>) -> AccountId {
            let account = Account::new(self.unit, kind, None);
            let id = account.id;
            self.view.add_account(account, owner);
            id
        }

        fn record(&mut self, kind: EntryKind, postings: &[(AccountId, AccountId, i64)]) {
            self.position += 1;
            let entry = entry(kind, postings, self.unit);
            self.view.record(self.position, &entry, None);
            let head = ChainHead {
                seq: u64::try_from(self.position).unwrap(),
                hash: Digest([1; 32]),
            };
            self.view.set_chain_heads([(self.unit, head)]);
        }

        fn report(&self) -> Value {
            units(&self.view).pop().unwrap()
        }
    }

    fn kind_cell<'a>(report: &'a Value, kind: &str) -> &'a Value {
        report["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .unwrap()
    }

    fn held_cell<'a>(report: &'a Value, by: &str) -> &'a Value {
        report["held"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["by"] == by)
            .unwrap()
    }

    #[test]
    fn cells_of_one_to_four_households_are_suppressed_and_organisations_never() {
        let mut town = Town::new();
        let homes: Vec<AccountId> = (0..5)
            .map(|_| town.open(AccountKind::Holder, None))
            .collect();
        for &home in &homes {
            town.record(EntryKind::Issue, &[(town.issuer, home, 10_000)]);
        }
        // Four households pay the shop: a cell of four.
        for &home in &homes[..4] {
            town.record(EntryKind::Payment, &[(home, town.shop, 1_000)]);
        }
        let report = town.report();
        assert_eq!(report["unit"], "T-EUR");
        assert_eq!(report["seq"], 9);
        assert_eq!(report["households"], 5);
        assert_eq!(report["suppressed"], false);
        let issue = kind_cell(&report, "issue");
        assert_eq!(
            (
                issue["entries"].clone(),
                issue["amount_minor"].clone(),
                issue["households"].clone()
            ),
            (json!(5), json!("50000"), json!(5))
        );
        let paid = kind_cell(&report, "payment");
        assert_eq!(paid["suppressed"], true, "{paid}");
        assert!(
            paid["amount_minor"].is_null()
                && paid["entries"].is_null()
                && paid["households"].is_null()
        );
        let homes_hold = held_cell(&report, "holder");
        assert_eq!(homes_hold["amount_minor"], "46000");
        assert_eq!(homes_hold["households"], 5);
        // The shop is an organisation: shown, however few.
        let shop = held_cell(&report, "merchant");
        assert_eq!(
            (
                shop["amount_minor"].clone(),
                shop["accounts"].clone(),
                shop["suppressed"].clone()
            ),
            (json!("4000"), json!(1), json!(false))
        );
        assert_eq!(report["positive_balances_minor"], "50000");

        // The fifth household pays: now five, shown.
        town.record(EntryKind::Payment, &[(homes[4], town.shop, 500)]);
        let paid = kind_cell(&town.report(), "payment").clone();
        assert_eq!(
            (
                paid["amount_minor"].clone(),
                paid["households"].clone(),
                paid["suppressed"].clone()
            ),
            (json!("4500"), json!(5), json!(false))
        );
    }

    #[test]
    fn a_household_is_counted_once_across_replaced_cards_and_owned_accounts() {
        let mut town = Town::new();
        let homes: Vec<AccountId> = (0..4)
            .map(|_| town.open(AccountKind::Holder, None))
            .collect();
        for &home in &homes {
            town.record(EntryKind::Issue, &[(town.issuer, home, 1_000)]);
        }
        // One household loses its card twice: three accounts, still one household.
        let second = town.open(AccountKind::Holder, None);
        town.record(EntryKind::CardReplacement, &[(homes[0], second, 1_000)]);
        let third = town.open(AccountKind::Holder, None);
        town.record(EntryKind::CardReplacement, &[(second, third, 1_000)]);
        // A member with two accounts of the unit is one household.
        let member = ParticipantId::new();
        let first_of_member = town.open(AccountKind::Holder, Some(member));
        let second_of_member = town.open(AccountKind::Holder, Some(member));
        town.record(EntryKind::Issue, &[(town.issuer, first_of_member, 1)]);
        town.record(EntryKind::Issue, &[(town.issuer, second_of_member, 1)]);
        let report = town.report();
        assert_eq!(report["households"], 5, "{report}");
        let issue = kind_cell(&report, "issue");
        assert_eq!(
            issue["households"], 5,
            "the third card carries the first's issue"
        );
        assert_eq!(issue["entries"], 6);
        // Only the household that lost its cards took part in replacements: suppressed.
        assert_eq!(kind_cell(&report, "card_replacement")["suppressed"], true);
    }

    #[test]
    fn a_unit_of_fewer_than_five_households_publishes_no_money() {
        let mut town = Town::new();
        for _ in 0..3 {
            let home = town.open(AccountKind::Holder, None);
            town.record(EntryKind::Issue, &[(town.issuer, home, 1_000)]);
            town.record(EntryKind::Payment, &[(home, town.shop, 100)]);
        }
        let report = town.report();
        assert_eq!(report["suppressed"], true);
        assert!(report["households"].is_null() && report["positive_balances_minor"].is_null());
        // Even the shop's takings: they are what those three spent.
        let shop = held_cell(&report, "merchant");
        assert_eq!(shop["suppressed"], true, "{shop}");
        assert!(shop["amount_minor"].is_null());
        assert_eq!(report["seq"], 6, "the chain head is public all the same");
    }

    #[test]
    fn a_unit_with_no_entries_reports_zeros_unsuppressed() {
        let town = Town::new();
        let report = town.report();
        assert_eq!(report["seq"], 0);
        assert_eq!(report["households"], 0);
        assert_eq!(report["suppressed"], false);
        assert_eq!(report["kinds"], json!([]));
        assert_eq!(report["held"], json!([]));
    }
}
