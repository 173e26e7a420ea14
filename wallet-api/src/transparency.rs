//! The public transparency report (DESIGN §5): where each unit's money is, in aggregate, and
//! what each programme paid, for citizens and auditors.
//!
//! **What is public, and what k = 5 protects.** A unit's totals (per entry kind the entries
//! and their amount, and what accounts in credit hold) are the scheme's accounts, public
//! like a budget line: the service signs them in its journal checkpoints, which anyone may
//! read, and this report repeats them. What lies *below* a unit is held to k =
//! [`MIN_HOUSEHOLDS`]: how many households took part in each kind, who holds the money
//! (households, merchants, collection points, the system), each programme's households and
//! runs. A cell there that describes one to four households is suppressed: its figures and
//! its household count are null and it says `"suppressed": true`. Where the cells of a
//! breakdown add up to a public total, one suppressed cell would be found by subtraction, so
//! a second is suppressed with it (the whole `held` breakdown; the next smallest run). A unit
//! or programme of one to four households publishes no breakdown at all.
//!
//! A household is the programme's household of an account (every card it has had counts as
//! the same household), else the account's owner (a time-bank member), else the account.
//!
//! The report is rebuilt at most every [`REBUILD_EVERY_MS`]: a report rebuilt after every
//! entry would let anyone watching it see single entries (one household's reward).
//!
//! What this does not stop: reasoning across reports over time, or with outside knowledge.
//! A report that must withstand that needs noise, which this is not.

use std::collections::{BTreeMap, HashMap, HashSet};

use ledger::{AccountId, AccountKind, EntryKind, HouseholdId, ParticipantId, UnitCode};
use serde_json::{Value, json};

use crate::db::DbError;
use crate::programme::Programme;
use crate::view::{ViewState, kind_bit};

/// k: the fewest households a published cell may describe (DESIGN §5).
pub const MIN_HOUSEHOLDS: usize = 5;

/// How often the report may be rebuilt, at most (as often as the service signs checkpoints by
/// default).
pub const REBUILD_EVERY_MS: i64 = 600_000;

/// Who an account stands for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Household {
    Enrolled(HouseholdId),
    Owner(ParticipantId),
    Account(AccountId),
}

/// Whether a figure over `households` households may not be published.
fn too_few(households: usize) -> bool {
    households > 0 && households < MIN_HOUSEHOLDS
}

/// A breakdown cell: `fields` with `households` beside them, or all null (and
/// `"suppressed": true`) if `suppressed`.
fn cell(households: usize, suppressed: bool, fields: Value) -> Value {
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

/// A household count, or null for one to four.
fn count(households: usize) -> Value {
    if too_few(households) {
        Value::Null
    } else {
        json!(households)
    }
}

/// What one unit's accounts of one kind hold.
#[derive(Default)]
struct Held {
    accounts: usize,
    minor: i128,
    households: HashSet<Household>,
}

/// Each unit's part of the report, in code order. `households` maps programme accounts
/// (current ones and every card's) to their household.
pub fn units(view: &ViewState, households: &HashMap<AccountId, HouseholdId>) -> Vec<Value> {
    let mut by_kind: BTreeMap<UnitCode, [HashSet<Household>; EntryKind::ALL.len()]> =
        BTreeMap::new();
    let mut any: BTreeMap<UnitCode, HashSet<Household>> = BTreeMap::new();
    let mut held: BTreeMap<(UnitCode, &'static str), Held> = BTreeMap::new();
    for account in view.accounts() {
        let unit = account.account.unit;
        let kind = account.account.kind;
        let id = account.account.id;
        let household = (kind == AccountKind::Holder).then(|| {
            households.get(&id).map_or_else(
                || {
                    account
                        .owner
                        .map_or(Household::Account(id), Household::Owner)
                },
                |&h| Household::Enrolled(h),
            )
        });
        if let Some(household) = household
            && account.kinds != 0
        {
            let sets = by_kind.entry(unit).or_default();
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
            let sets = by_kind.remove(&code).unwrap_or_default();
            let unit_households = any.get(&code).map_or(0, HashSet::len);
            let small = too_few(unit_households);
            // The unit's totals, as its checkpoints sign them; below them, household counts.
            let kinds: Vec<Value> = totals
                .kinds()
                .map(|(kind, entries, amount)| {
                    let took_part = sets.get(kind.index()).map_or(0, HashSet::len);
                    json!({
                        "kind": kind.as_str(),
                        "entries": entries,
                        "amount_minor": amount.to_string(),
                        "households": if small { Value::Null } else { count(took_part) },
                    })
                })
                .collect();
            // Who holds it: the cells add up to the public positive balances, so one hidden
            // cell hides them all.
            let cells: Vec<(&str, Held)> = ["holder", "merchant", "collector", "system"]
                .into_iter()
                .filter_map(|by| held.remove(&(code, by)).map(|h| (by, h)))
                .collect();
            let hide_held = small || cells.iter().any(|(_, h)| too_few(h.households.len()));
            let held_by: Vec<Value> = cells
                .into_iter()
                .map(|(by, h)| {
                    let mut value = cell(
                        h.households.len(),
                        hide_held,
                        json!({ "accounts": h.accounts, "amount_minor": h.minor.to_string() }),
                    );
                    value["by"] = json!(by);
                    value
                })
                .collect();
            json!({
                "unit": code,
                "name": unit.name(),
                "kind": unit.kind().as_str(),
                "scale": unit.scale(),
                "seq": head.seq,
                "hash": head.hash.to_hex(),
                "households": count(unit_households),
                "breakdowns_suppressed": small,
                "kinds": kinds,
                "positive_balances_minor": totals.positive_balances().to_string(),
                "held": held_by,
            })
        })
        .collect()
}

/// What a programme is and paid, for the report.
pub struct ProgrammeFacts {
    /// The programme.
    pub programme: Programme,
    /// Households enrolled.
    pub households: u64,
    /// Its runs, in any order.
    pub runs: Vec<crate::db::programmes::StoredRun>,
}

/// Each programme's part of the report: households enrolled, its budget left, what waits
/// for settlement and the fees (programme accounts: derived from public unit totals), and
/// per run, oldest first, the households paid and the total, suppressed below k with the
/// next smallest run beside a lone suppressed one. A programme of one to four enrolled
/// households shows none of it.
pub fn programmes(view: &ViewState, facts: &[ProgrammeFacts]) -> Vec<Value> {
    facts
        .iter()
        .map(|f| {
            let p = &f.programme;
            let enrolled = usize::try_from(f.households).unwrap_or(usize::MAX);
            let small = too_few(enrolled);
            let balance = |id: AccountId| view.account(id).map_or(0, |a| a.balance.0);
            let budget_left = view.account(p.accounts.budget).and_then(|a| {
                let lower = a.account.limits.lower()?;
                Some(i128::from(a.balance.0).saturating_sub(i128::from(lower.0)))
            });
            let mut runs: Vec<&crate::db::programmes::StoredRun> = f.runs.iter().collect();
            runs.sort_by(|a, b| (a.created_at, &a.period).cmp(&(b.created_at, &b.period)));
            let mut hidden: Vec<bool> = runs
                .iter()
                .map(|run| small || too_few(run.households as usize))
                .collect();
            // A lone hidden run is the programme's issued total less the others: hide the
            // smallest other run with it.
            if hidden.iter().filter(|&&h| h).count() == 1
                && let Some((next, _)) = runs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !hidden[*i])
                    .min_by_key(|(_, run)| run.households)
            {
                hidden[next] = true;
            }
            let runs: Vec<Value> = runs
                .iter()
                .zip(hidden)
                .map(|(run, hide)| {
                    let mut value = cell(
                        run.households as usize,
                        hide,
                        json!({
                            "total_minor": run.total_minor.to_string(),
                            // Which area an emergency paid says where those few live.
                            "area": run.area,
                        }),
                    );
                    value["period"] = json!(run.period);
                    value["kind"] = json!(run.kind);
                    value["completed"] = json!(run.completed_at.is_some());
                    value
                })
                .collect();
            let mut value = cell(
                enrolled,
                small,
                json!({
                    "budget_left_minor": budget_left.map(|b| b.to_string()),
                    "awaiting_settlement_minor": balance(p.accounts.clearing).to_string(),
                    "fees_minor": balance(p.accounts.fees).to_string(),
                }),
            );
            value["id"] = json!(p.id);
            value["name"] = json!(p.name);
            value["unit"] = json!(p.unit);
            value["runs"] = json!(runs);
            value
        })
        .collect()
}

/// What the report reads from storage: every programme with its households and runs, and
/// which household each programme account is.
pub struct StoredFacts {
    /// Per programme.
    pub programmes: Vec<ProgrammeFacts>,
    /// Programme accounts (current and every card's) to their household.
    pub households: HashMap<AccountId, HouseholdId>,
}

/// Reads [`StoredFacts`].
pub async fn stored_facts(db: &crate::Database) -> Result<StoredFacts, DbError> {
    let mut programmes = Vec::new();
    for programme in db.programmes().await? {
        let households = db.household_count(programme.id).await?;
        let runs = db.runs(programme.id).await?;
        programmes.push(ProgrammeFacts {
            programme,
            households,
            runs,
        });
    }
    let households = db.household_accounts().await?.into_iter().collect();
    Ok(StoredFacts {
        programmes,
        households,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ledger::journal::ChainHead;
    use ledger::{Account, Digest, Limits, ProgrammeId, PublicKey, RunId, Unit, UnitKind};

    use super::*;
    use crate::db::programmes::StoredRun;
    use crate::programme::{ProgrammeAccounts, Schedule};
    use crate::view::tests::entry;

    struct Town {
        view: ViewState,
        unit: UnitCode,
        issuer: AccountId,
        shop: AccountId,
        position: i64,
        households: HashMap<AccountId, HouseholdId>,
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
                households: HashMap::new(),
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

        /// A programme household's card account (a new one per card).
        fn card_of(&mut self, household: HouseholdId) -> AccountId {
            let card = self.open(AccountKind::Holder, None);
            self.households.insert(card, household);
            card
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
            units(&self.view, &self.households).pop().unwrap()
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
    fn totals_are_public_and_household_counts_below_five_are_not() {
        let mut town = Town::new();
        let homes: Vec<AccountId> = (0..5).map(|_| town.card_of(HouseholdId::new())).collect();
        for &home in &homes {
            town.record(EntryKind::Issue, &[(town.issuer, home, 10_000)]);
        }
        // Four households pay the shop.
        for &home in &homes[..4] {
            town.record(EntryKind::Payment, &[(home, town.shop, 1_000)]);
        }
        let report = town.report();
        assert_eq!(report["unit"], "T-EUR");
        assert_eq!(report["seq"], 9);
        assert_eq!(report["households"], 5);
        assert_eq!(report["breakdowns_suppressed"], false);
        assert_eq!(report["positive_balances_minor"], "50000");
        let issue = kind_cell(&report, "issue");
        assert_eq!(
            (
                issue["entries"].clone(),
                issue["amount_minor"].clone(),
                issue["households"].clone()
            ),
            (json!(5), json!("50000"), json!(5))
        );
        // The payments' total is the unit's, public (its checkpoints sign it); how many
        // households paid is not, being four.
        let paid = kind_cell(&report, "payment");
        assert_eq!(paid["amount_minor"], "4000", "{paid}");
        assert!(paid["households"].is_null(), "{paid}");
        // Who holds it: five households, one shop; nothing to hide.
        let homes_hold = held_cell(&report, "holder");
        assert_eq!(
            (
                homes_hold["amount_minor"].clone(),
                homes_hold["households"].clone()
            ),
            (json!("46000"), json!(5))
        );
        let shop = held_cell(&report, "merchant");
        assert_eq!(
            (
                shop["amount_minor"].clone(),
                shop["accounts"].clone(),
                shop["suppressed"].clone()
            ),
            (json!("4000"), json!(1), json!(false))
        );

        // The fifth household pays: five, counted.
        town.record(EntryKind::Payment, &[(homes[4], town.shop, 500)]);
        assert_eq!(kind_cell(&town.report(), "payment")["households"], 5);
    }

    #[test]
    fn a_small_cell_of_holdings_hides_the_whole_breakdown() {
        let mut town = Town::new();
        let homes: Vec<AccountId> = (0..6).map(|_| town.card_of(HouseholdId::new())).collect();
        for &home in &homes {
            town.record(EntryKind::Issue, &[(town.issuer, home, 1_000)]);
        }
        // All but two spend everything: only two households hold money. The shop's figure
        // would give theirs away (positive balances less the shop), so it goes too.
        for &home in &homes[2..] {
            town.record(EntryKind::Payment, &[(home, town.shop, 1_000)]);
        }
        let report = town.report();
        for by in ["holder", "merchant"] {
            let cell = held_cell(&report, by);
            assert_eq!(cell["suppressed"], true, "{cell}");
            assert!(
                cell["amount_minor"].is_null()
                    && cell["accounts"].is_null()
                    && cell["households"].is_null()
            );
        }
        assert_eq!(report["breakdowns_suppressed"], false);
    }

    #[test]
    fn a_household_is_one_across_its_cards_and_a_member_across_accounts() {
        let mut town = Town::new();
        let mut homes: Vec<AccountId> = (0..4).map(|_| town.card_of(HouseholdId::new())).collect();
        // One household loses its card twice, once at zero balance (no replacement entry
        // then): three card accounts, one household.
        let household = HouseholdId::new();
        let first = town.card_of(household);
        town.record(EntryKind::Issue, &[(town.issuer, first, 1_000)]);
        town.record(EntryKind::Payment, &[(first, town.shop, 1_000)]);
        let second = town.card_of(household);
        town.record(EntryKind::Issue, &[(town.issuer, second, 1_000)]);
        let third = town.card_of(household);
        town.record(EntryKind::CardReplacement, &[(second, third, 1_000)]);
        homes.push(third);
        for &home in &homes[..4] {
            town.record(EntryKind::Issue, &[(town.issuer, home, 1_000)]);
        }
        // A time-bank member with two accounts of the unit is one household.
        let member = ParticipantId::new();
        let one = town.open(AccountKind::Holder, Some(member));
        let other = town.open(AccountKind::Holder, Some(member));
        town.record(EntryKind::Issue, &[(town.issuer, one, 1)]);
        town.record(EntryKind::Issue, &[(town.issuer, other, 1)]);
        let report = town.report();
        assert_eq!(report["households"], 6, "{report}");
        assert_eq!(kind_cell(&report, "issue")["households"], 6);
        assert_eq!(kind_cell(&report, "issue")["entries"], 8);
        assert!(kind_cell(&report, "card_replacement")["households"].is_null());
    }

    #[test]
    fn a_unit_of_fewer_than_five_households_shows_totals_but_no_breakdown() {
        let mut town = Town::new();
        for _ in 0..3 {
            let home = town.card_of(HouseholdId::new());
            town.record(EntryKind::Issue, &[(town.issuer, home, 1_000)]);
            town.record(EntryKind::Payment, &[(home, town.shop, 100)]);
        }
        let report = town.report();
        assert_eq!(report["breakdowns_suppressed"], true);
        assert!(report["households"].is_null());
        assert_eq!(kind_cell(&report, "issue")["amount_minor"], "3000");
        assert!(kind_cell(&report, "issue")["households"].is_null());
        let shop = held_cell(&report, "merchant");
        assert_eq!(shop["suppressed"], true, "{shop}");
        assert_eq!(report["seq"], 6);
    }

    #[test]
    fn a_unit_with_no_entries_reports_zeros() {
        let town = Town::new();
        let report = town.report();
        assert_eq!(report["seq"], 0);
        assert_eq!(report["households"], 0);
        assert_eq!(report["breakdowns_suppressed"], false);
        assert_eq!(report["kinds"], json!([]));
        assert_eq!(report["held"], json!([]));
    }

    fn programme(town: &mut Town) -> Programme {
        let limits = Limits::new(Some(-1_000_000), None).unwrap();
        let budget = Account::new(town.unit, AccountKind::Issuer, None).with_limits(limits);
        let budget_id = budget.id;
        town.view.add_account(budget, None);
        let clearing = town.open(AccountKind::System, None);
        let fees = town.open(AccountKind::System, None);
        Programme {
            id: ProgrammeId::new(),
            name: "Ingreso mínimo".into(),
            unit: town.unit,
            accounts: ProgrammeAccounts {
                budget: budget_id,
                clearing,
                fees,
            },
            administrator: PublicKey([0; 32]),
            schedule: Schedule::OneOff,
            areas: Vec::new(),
            languages: Vec::new(),
            debtor: None,
            created_at: 0,
        }
    }

    fn run(
        programme: ProgrammeId,
        period: &str,
        area: Option<&str>,
        households: u32,
        at: i64,
    ) -> StoredRun {
        StoredRun {
            id: RunId::new(),
            programme,
            period: period.into(),
            kind: if area.is_some() {
                "emergency"
            } else {
                "monthly"
            }
            .into(),
            area: area.map(str::to_owned),
            households,
            total_minor: i64::from(households) * 30_000,
            chunks: 1,
            created_at: at,
            completed_at: Some(at),
        }
    }

    #[test]
    fn a_small_run_is_hidden_with_the_next_smallest_and_its_area() {
        let mut town = Town::new();
        let programme = programme(&mut town);
        let runs = vec![
            run(programme.id, "2026-12", None, 300, 3),
            run(programme.id, "storm", Some("Barrio Norte"), 3, 2),
            run(programme.id, "2026-11", None, 200, 1),
        ];
        let facts = [ProgrammeFacts {
            programme: programme.clone(),
            households: 300,
            runs,
        }];
        let report = programmes(&town.view, &facts).pop().unwrap();
        assert_eq!(report["households"], 300);
        assert_eq!(report["budget_left_minor"], "1000000");
        let shown: Vec<(Value, Value, Value)> = report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["period"].clone(),
                    r["total_minor"].clone(),
                    r["area"].clone(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (json!("2026-11"), Value::Null, Value::Null),
                (json!("storm"), Value::Null, Value::Null),
                (json!("2026-12"), json!("9000000"), Value::Null),
            ],
            "oldest first; the storm run and the next smallest hidden"
        );
        // A programme of three households shows nothing.
        let small = [ProgrammeFacts {
            programme,
            households: 3,
            runs: vec![run(ProgrammeId::new(), "2026-12", None, 3, 1)],
        }];
        let report = programmes(&town.view, &small).pop().unwrap();
        assert_eq!(report["suppressed"], true);
        assert!(report["budget_left_minor"].is_null() && report["households"].is_null());
        assert!(report["runs"][0]["total_minor"].is_null());
    }
}
