//! The agent-based local economy, in daily steps, emitting the research event format.
//!
//! Agents: households (some of them beneficiaries), local merchants (some social enterprises,
//! some accepting local units), outside firms, the issuer and system accounts. Two units: the
//! local unit and national money (both in minor units, 1:1). Each day, in this order:
//!
//! 1. **Benefits** (every `benefit_interval_days`, from day 0): each beneficiary receives the
//!    benefit, `local_unit_share` of it in local units, the rest in national money.
//! 2. **Demurrage**: every local-unit balance of a household or merchant pays its daily rate
//!    (`1 - (1 - monthly)^(1/30)`, rounded down).
//! 3. **Expiry**: households' local units older than `expiry_days` expire. Units are kept as
//!    dated lots and spent oldest first, as the ledger's expiry rule does.
//! 4. **Shopping**: every `trip_interval_days` (staggered), a household spends
//!    `spend_share_per_trip` (`saver_spend_share_per_trip` for the `saver_share` of households
//!    drawn as savers at the start) of each balance (at least 1.00 or all it has), plus all
//!    units due to expire within `expiry_rush_days`. Local units go to a random accepting merchant;
//!    national money to a random local merchant with probability `local_share_national`, else
//!    to a random outside firm.
//! 5. **Merchants** pay out `outflow_share_per_day` of each balance: `local_supplier_share`
//!    (`social_local_supplier_share` and `social_wage_share` for social enterprises)
//!    (plus `fee_response * redemption_fee` in local units) to a random other local merchant
//!    (accepting, for local units), `wage_share` as wages to a random household, the rest
//!    leaves: local units are redeemed (with the fee as a separate withdrawal), national money
//!    is paid to a random outside firm.
//! 6. **Outside firms** take their national money out of the local economy (an outflow).
//!
//! Redeemed units leave the model; the national money a merchant receives for them is not
//! followed (documented in the README as an assumption). Conservation per unit is checked by
//! [`Book::finish`] at the end of every run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::{Book, BookError, Sink, UnitTotals};
use crate::events::{Dictionary, FieldError, ParticipantKind, Reason};
use crate::lots::Lots;
use crate::measure::DAY_S;
use crate::scenario::Scenario;

/// Smallest payment a household makes while it has money (1.00), in minor units.
pub const MIN_PAYMENT_MINOR: i64 = 100;
const LOCAL: u16 = 0;
const NATIONAL: u16 = 1;
const ISSUER: u32 = 0;
const REDEMPTION: u32 = 1;
const FEES: u32 = 2;
const EXPIRED: u32 = 3;
const DEMURRAGE: u32 = 4;
const OUTFLOW: u32 = 5;
const FIRST_HOUSEHOLD: u32 = 6;

/// Where each kind of agent sits among the participant ids.
#[derive(Clone, Copy, Debug)]
struct Layout {
    households: u32,
    merchants: u32,
    outside: u32,
}

impl Layout {
    fn new(scenario: &Scenario) -> Self {
        Self {
            households: scenario.households.count,
            merchants: scenario.merchants.count,
            outside: scenario.merchants.outside_count,
        }
    }
    fn household(&self, i: u32) -> u32 {
        FIRST_HOUSEHOLD + i
    }
    fn merchant(&self, i: u32) -> u32 {
        FIRST_HOUSEHOLD + self.households + i
    }
    fn outside_firm(&self, i: u32) -> u32 {
        FIRST_HOUSEHOLD + self.households + self.merchants + i
    }
}

/// The participants and units of an agent run (ids are fixed by the scenario's counts).
pub fn dictionary(scenario: &Scenario) -> Result<Dictionary, FieldError> {
    let layout = Layout::new(scenario);
    let m = &scenario.merchants;
    let mut d = Dictionary::new();
    d.unit(&scenario.policy.local_unit)?;
    d.unit(&scenario.policy.national_unit)?;
    d.label("minimum_income")?;
    for area in &scenario.areas {
        d.label(area)?;
    }
    d.participant("issuer", ParticipantKind::Issuer, "")?;
    for name in ["redemption", "fees", "expired", "demurrage", "outflow"] {
        d.participant(name, ParticipantKind::System, "")?;
    }
    for i in 0..layout.households {
        d.participant(&format!("h{i}"), ParticipantKind::Household, "")?;
    }
    let social = (f64::from(m.count) * m.social_enterprise_share).round() as u32;
    for i in 0..layout.merchants {
        let category = m
            .categories
            .get(i as usize % m.categories.len().max(1))
            .map_or("", |c| c);
        let kind = if i < social {
            ParticipantKind::SocialEnterprise
        } else {
            ParticipantKind::Merchant
        };
        d.participant(&format!("m{i}"), kind, category)?;
    }
    for i in 0..layout.outside {
        d.participant(&format!("o{i}"), ParticipantKind::Outside, "outside")?;
    }
    Ok(d)
}

struct Economy<'a> {
    scenario: &'a Scenario,
    dictionary: &'a Dictionary,
    layout: Layout,
    book: Book,
    rng: ChaCha8Rng,
    /// Participant ids of merchants accepting local units (never empty).
    accepting: Vec<u32>,
    /// Per household, dated lots of local units, oldest first; only kept when expiry is on.
    lots: Vec<Lots>,
    demurrage_daily: f64,
    /// Per household, the share of a balance spent on a trip.
    spend_shares: Vec<f64>,
}

/// Runs the economy on `dictionary` (from [`dictionary`]) for the scenario's days.
pub fn run(
    scenario: &Scenario,
    dictionary: &Dictionary,
    sink: &mut Sink<'_>,
) -> Result<Vec<UnitTotals>, BookError> {
    let layout = Layout::new(scenario);
    let accepting_count =
        ((f64::from(layout.merchants) * scenario.merchants.accepting_share).round() as u32).max(1);
    // Accepting merchants are spread over the list, not the first n, so categories mix.
    let accepting = (0..accepting_count)
        .map(|k| {
            layout.merchant(
                (u64::from(k) * u64::from(layout.merchants) / u64::from(accepting_count)) as u32,
            )
        })
        .collect();
    let expiry = scenario.policy.expiry_days > 0;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let h = &scenario.households;
    let spend_shares = (0..layout.households)
        .map(|_| {
            if rng.gen_bool(h.saver_share) {
                h.saver_spend_share_per_trip
            } else {
                h.spend_share_per_trip
            }
        })
        .collect();
    let mut economy = Economy {
        scenario,
        dictionary,
        layout,
        book: Book::new(dictionary),
        rng,
        accepting,
        lots: if expiry {
            vec![Lots::default(); layout.households as usize]
        } else {
            Vec::new()
        },
        demurrage_daily: 1.0 - (1.0 - scenario.policy.demurrage_per_month).powf(1.0 / 30.0),
        spend_shares,
    };
    economy.book.set_programme(1);
    economy.place_in_areas();
    for day in 0..scenario.days {
        economy
            .book
            .set_time(scenario.start_s + i64::from(day) * DAY_S);
        economy.step(day, sink)?;
    }
    economy.book.finish()
}

fn share_of(amount: i64, share: f64) -> i64 {
    // Rounded down: truncation is the floor for every value the clamp keeps (x >= 0), and
    // unlike `floor` it needs no call into libm on the baseline x86-64 target.
    ((amount as f64 * share) as i64).clamp(0, amount)
}

impl Economy<'_> {
    fn step(&mut self, day: u32, sink: &mut Sink<'_>) -> Result<(), BookError> {
        let h = &self.scenario.households;
        if day.is_multiple_of(h.benefit_interval_days) {
            self.pay_benefits(day, sink)?;
        }
        if self.demurrage_daily > 0.0 {
            self.charge_demurrage(sink)?;
        }
        if !self.lots.is_empty() {
            self.expire(day, sink)?;
        }
        for i in 0..self.layout.households {
            if (i + day).is_multiple_of(h.trip_interval_days) {
                self.shop(i, day, sink)?;
            }
        }
        for i in 0..self.layout.merchants {
            self.merchant_pays(self.layout.merchant(i), sink)?;
        }
        for i in 0..self.layout.outside {
            let firm = self.layout.outside_firm(i);
            let amount = self.book.balance(firm, NATIONAL);
            self.post(sink, Reason::Outflow, (firm, OUTFLOW), NATIONAL, amount)?;
        }
        Ok(())
    }

    fn place_in_areas(&mut self) {
        let labels: Vec<u32> = self
            .scenario
            .areas
            .iter()
            .filter_map(|a| self.dictionary.label_id(a))
            .collect();
        if labels.is_empty() {
            return;
        }
        for i in 0..self.layout.households {
            let area = labels[i as usize % labels.len()];
            self.book.set_area(self.layout.household(i), area);
        }
        for i in 0..self.layout.merchants {
            let area = labels[i as usize % labels.len()];
            self.book.set_area(self.layout.merchant(i), area);
        }
    }

    fn post(
        &mut self,
        sink: &mut Sink<'_>,
        reason: Reason,
        ends: (u32, u32),
        unit: u16,
        amount: i64,
    ) -> Result<(), BookError> {
        self.book.post(sink, reason, ends, unit, amount)
    }

    /// A household gains local units (a benefit or wages), dated for expiry.
    fn add_lot(&mut self, household: u32, day: u32, amount: i64) {
        if !self.lots.is_empty() && amount > 0 {
            let expires = day.saturating_add(self.scenario.policy.expiry_days);
            self.lots[(household - FIRST_HOUSEHOLD) as usize].push(expires, amount);
        }
    }

    /// A household's local units leave, oldest lots first.
    fn consume_lots(&mut self, household: u32, amount: i64) {
        if self.lots.is_empty() || !(FIRST_HOUSEHOLD..self.layout.merchant(0)).contains(&household)
        {
            return;
        }
        self.lots[(household - FIRST_HOUSEHOLD) as usize].consume(amount);
    }

    fn pay_benefits(&mut self, day: u32, sink: &mut Sink<'_>) -> Result<(), BookError> {
        let h = &self.scenario.households;
        let beneficiaries = (f64::from(h.count) * h.beneficiary_share).round() as u32;
        let local = ((h.benefit_minor as f64 * self.scenario.policy.local_unit_share).round()
            as i64)
            .clamp(0, h.benefit_minor);
        for i in 0..beneficiaries {
            let household = self.layout.household(i);
            self.post(sink, Reason::Issuance, (ISSUER, household), LOCAL, local)?;
            self.add_lot(household, day, local);
            self.post(
                sink,
                Reason::Issuance,
                (ISSUER, household),
                NATIONAL,
                h.benefit_minor - local,
            )?;
        }
        Ok(())
    }

    fn charge_demurrage(&mut self, sink: &mut Sink<'_>) -> Result<(), BookError> {
        let holders = self.layout.households + self.layout.merchants;
        for participant in FIRST_HOUSEHOLD..FIRST_HOUSEHOLD + holders {
            let charge = share_of(self.book.balance(participant, LOCAL), self.demurrage_daily);
            self.post(
                sink,
                Reason::Demurrage,
                (participant, DEMURRAGE),
                LOCAL,
                charge,
            )?;
            self.consume_lots(participant, charge);
        }
        Ok(())
    }

    fn expire(&mut self, day: u32, sink: &mut Sink<'_>) -> Result<(), BookError> {
        for i in 0..self.layout.households {
            let expired = self.lots[i as usize].expire_by(day);
            self.post(
                sink,
                Reason::Expiry,
                (self.layout.household(i), EXPIRED),
                LOCAL,
                expired,
            )?;
        }
        Ok(())
    }

    fn shop(&mut self, i: u32, day: u32, sink: &mut Sink<'_>) -> Result<(), BookError> {
        let household = self.layout.household(i);
        let share = self.spend_shares[i as usize];
        let spend = |balance: i64| share_of(balance, share).max(balance.min(MIN_PAYMENT_MINOR));
        let balance = self.book.balance(household, LOCAL);
        let mut amount = spend(balance);
        if !self.lots.is_empty() {
            let rush = day.saturating_add(self.scenario.households.expiry_rush_days);
            let due = self.lots[i as usize].due_by(rush);
            amount = amount.max(due).min(balance);
        }
        if amount > 0 {
            let shop = self.accepting[self.rng.gen_range(0..self.accepting.len())];
            self.post(sink, Reason::Payment, (household, shop), LOCAL, amount)?;
            self.consume_lots(household, amount);
        }
        let amount = spend(self.book.balance(household, NATIONAL));
        if amount > 0 {
            let target = if self
                .rng
                .gen_bool(self.scenario.households.local_share_national)
            {
                self.layout
                    .merchant(self.rng.gen_range(0..self.layout.merchants))
            } else {
                self.layout
                    .outside_firm(self.rng.gen_range(0..self.layout.outside))
            };
            self.post(sink, Reason::Payment, (household, target), NATIONAL, amount)?;
        }
        Ok(())
    }

    fn merchant_pays(&mut self, merchant: u32, sink: &mut Sink<'_>) -> Result<(), BookError> {
        let m = &self.scenario.merchants;
        let policy = &self.scenario.policy;
        for unit in [LOCAL, NATIONAL] {
            let out = share_of(self.book.balance(merchant, unit), m.outflow_share_per_day);
            if out == 0 {
                continue;
            }
            let social = self.dictionary.participant_info(merchant).kind
                == ParticipantKind::SocialEnterprise;
            let (base_supplier_share, wage_share) = if social {
                (m.social_local_supplier_share, m.social_wage_share)
            } else {
                (m.local_supplier_share, m.wage_share)
            };
            let supplier_share = if unit == LOCAL {
                (base_supplier_share + m.fee_response * policy.redemption_fee).min(1.0 - wage_share)
            } else {
                base_supplier_share
            };
            let mut supplier_amount = share_of(out, supplier_share);
            let supplier = if unit == LOCAL {
                self.accepting[self.rng.gen_range(0..self.accepting.len())]
            } else {
                self.layout
                    .merchant(self.rng.gen_range(0..self.layout.merchants))
            };
            if supplier == merchant {
                supplier_amount = 0;
            }
            let mut wage = share_of(out, wage_share);
            if unit == LOCAL && !policy.wages_in_local_units {
                wage = 0;
            }
            let leak = out - supplier_amount - wage;
            self.post(
                sink,
                Reason::Supply,
                (merchant, supplier),
                unit,
                supplier_amount,
            )?;
            let worker = self
                .layout
                .household(self.rng.gen_range(0..self.layout.households));
            self.post(sink, Reason::Wage, (merchant, worker), unit, wage)?;
            if unit == LOCAL {
                self.add_lot(worker, self.day_of_book(), wage);
                let fee = ((leak as f64 * policy.redemption_fee).round() as i64).clamp(0, leak);
                self.post(
                    sink,
                    Reason::Redemption,
                    (merchant, REDEMPTION),
                    unit,
                    leak - fee,
                )?;
                self.post(sink, Reason::Fee, (merchant, FEES), unit, fee)?;
            } else {
                let firm = self
                    .layout
                    .outside_firm(self.rng.gen_range(0..self.layout.outside));
                self.post(sink, Reason::Supply, (merchant, firm), unit, leak)?;
            }
        }
        Ok(())
    }

    fn day_of_book(&self) -> u32 {
        u32::try_from((self.book.time_s() - self.scenario.start_s) / DAY_S).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::events::{Event, EventKind};
    use crate::measure::{MeasureConfig, Measurer};

    fn small() -> Scenario {
        let mut s = Scenario::default();
        s.households.count = 200;
        s.merchants.count = 20;
        s.days = 120;
        s
    }

    fn events_of(s: &Scenario) -> (Vec<Event>, Vec<UnitTotals>, Dictionary) {
        let d = dictionary(s).unwrap();
        let mut events = Vec::new();
        let totals = run(s, &d, &mut |e| events.push(*e)).unwrap();
        (events, totals, d)
    }

    fn measured(s: &Scenario) -> crate::measure::Measures {
        let d = dictionary(s).unwrap();
        let mut m = Measurer::new(MeasureConfig::default()).unwrap();
        run(s, &d, &mut |e| m.push(e, &d).unwrap()).unwrap();
        m.finish(&d)
    }

    #[test]
    fn money_is_conserved_to_the_minor_unit_under_every_rule() {
        let mut s = small();
        s.policy.local_unit_share = 0.25;
        s.policy.redemption_fee = 0.05;
        s.policy.expiry_days = 20;
        s.policy.demurrage_per_month = 0.02;
        s.households.spend_share_per_trip = 0.05;
        s.households.expiry_rush_days = 0;
        let (events, totals, _) = events_of(&s);
        for (unit, t) in totals.iter().enumerate() {
            let sum = |kind| {
                events
                    .iter()
                    .filter(|e| usize::from(e.unit) == unit && e.kind() == kind)
                    .map(|e| e.amount_minor)
                    .sum::<i64>()
            };
            assert_eq!(sum(EventKind::Deposit), t.deposits_minor);
            assert_eq!(
                sum(EventKind::Deposit) - sum(EventKind::Withdraw),
                t.held_minor
            );
        }
        for reason in [
            Reason::Expiry,
            Reason::Demurrage,
            Reason::Fee,
            Reason::Redemption,
            Reason::Outflow,
            Reason::Wage,
        ] {
            assert!(events.iter().any(|e| e.reason == reason), "{reason:?}");
        }
        assert!(events.windows(2).all(|w| w[0].time_s <= w[1].time_s));
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let s = small();
        assert_eq!(events_of(&s).0, events_of(&s).0);
        let mut other = small();
        other.seed = 2;
        assert_ne!(events_of(&s).0, events_of(&other).0);
    }

    #[test]
    fn local_units_raise_lm3_over_national_money() {
        let mut euros = small();
        euros.policy.local_unit_share = 0.0;
        let mut local = small();
        local.policy.local_unit_share = 1.0;
        let (e, l) = (measured(&euros), measured(&local));
        let (e3, l3) = (e.combined_lm3.unwrap(), l.combined_lm3.unwrap());
        assert!(l3 > e3 + 0.2, "local {l3} euros {e3}");
        // National money at outside firms leaves the same day.
        assert_eq!(e.units.len(), 1);
        assert_eq!(e.units[0].unit, "EUR");
        assert!(e.units[0].leakage.outside > 0.3);
    }

    #[test]
    fn a_redemption_fee_keeps_more_money_local() {
        let mut free = small();
        free.policy.redemption_fee = 0.0;
        let mut fee = small();
        fee.policy.redemption_fee = 0.05;
        let (a, b) = (measured(&free), measured(&fee));
        assert!(b.units[0].lm_all.unwrap() > a.units[0].lm_all.unwrap());
        assert!(b.units[0].leakage.fee > 0.0);
    }

    #[test]
    fn events_carry_the_area_of_their_local_end() {
        let mut s = small();
        s.areas = vec!["north".into(), "south".into()];
        let m = measured(&s);
        let areas = &m.units[0].by_area;
        assert_eq!(areas.keys().collect::<Vec<_>>(), ["north", "south"]);
        let deposits: i64 = areas.values().map(|a| a.deposits_minor).sum();
        assert_eq!(deposits, m.units[0].deposits_minor);
        assert!(areas["north"].received_minor > 0 && areas["south"].received_minor > 0);
    }

    #[test]
    fn social_enterprises_keep_more_money_local() {
        let mut shops = small();
        shops.merchants.social_enterprise_share = 0.0;
        let mut social = small();
        social.merchants.social_enterprise_share = 1.0;
        let (a, b) = (measured(&shops), measured(&social));
        assert!(b.units[0].lm_all.unwrap() > a.units[0].lm_all.unwrap() + 0.2);
    }

    #[test]
    fn expiry_returns_unspent_units() {
        let mut s = small();
        s.households.spend_share_per_trip = 0.01;
        s.households.saver_share = 0.0;
        s.households.expiry_rush_days = 0;
        s.policy.expiry_days = 10;
        let m = measured(&s);
        assert!(m.units[0].leakage.expiry > 0.1, "{:?}", m.units[0].leakage);
    }
}
