//! Scenario files: every model parameter in one TOML file, each with a unit and a default.
//! A missing key takes its default; an unknown key is an error (a typo must not silently run
//! the default). `simulations/scenarios/*.toml` are the pilots' scenarios.

use serde::{Deserialize, Serialize};

/// Longest scenario file accepted, in bytes.
pub const MAX_SCENARIO_BYTES: usize = 256 * 1024;
/// Most households a scenario may have.
pub const MAX_HOUSEHOLDS: u32 = 10_000_000;
/// Most merchants (including outside firms) a scenario may have.
pub const MAX_MERCHANTS: u32 = 1_000_000;
/// Most simulated days.
pub const MAX_DAYS: u32 = 36_600;

/// Which model a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The agent-based local economy ([`crate::agents`]).
    Agents,
    /// Monte Carlo spending rounds ([`crate::montecarlo`]).
    MonteCarlo,
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Name shown in outputs. Default `"scenario"`.
    pub name: String,
    /// RNG seed; the same seed gives byte-identical outputs. Default 1.
    pub seed: u64,
    /// Model to run. Default `agents`.
    pub model: Model,
    /// Simulated days (agents). Default 365.
    pub days: u32,
    /// Unix seconds of day 0 (UTC midnight). Default 1767225600 (2026-01-01).
    pub start_s: i64,
    /// Length of a reporting period, days. Default 30.
    pub period_days: u32,
    /// Also write the event stream as `events.csv`. Default true.
    pub write_events: bool,
    /// Area labels; households and merchants are placed in them round-robin, and every event
    /// carries the area of its local end. Default none.
    pub areas: Vec<String>,
    /// Households (agents).
    pub households: Households,
    /// Local merchants and outside firms (agents).
    pub merchants: Merchants,
    /// The policy being tested (agents).
    pub policy: Policy,
    /// Monte Carlo spending rounds.
    pub monte_carlo: MonteCarlo,
}

/// Households and their spending behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Households {
    /// Number of households. Default 1000.
    pub count: u32,
    /// Share of households receiving the benefit, 0..=1. Default 1.0.
    pub beneficiary_share: f64,
    /// Benefit per payment, minor units (euro cents). Default 50000 (EUR 500).
    pub benefit_minor: i64,
    /// Days between benefit payments (first on day 0). Default 30.
    pub benefit_interval_days: u32,
    /// Days between a household's shopping trips (staggered by household). Default 3.
    pub trip_interval_days: u32,
    /// Share of each balance spent on a trip, 0..=1. Default 0.25.
    pub spend_share_per_trip: f64,
    /// Share of households that are slow spenders (savers), drawn per household from the
    /// seed, 0..=1. Default 0.2.
    pub saver_share: f64,
    /// Share of each balance a saver spends on a trip, 0..=1. Default 0.02.
    pub saver_spend_share_per_trip: f64,
    /// Share of national-money spending done at local merchants (the rest at outside firms),
    /// 0..=1. Local units can only be spent at accepting local merchants. Default 0.35.
    pub local_share_national: f64,
    /// With expiry, units within this many days of expiring are spent in full. Default 7.
    pub expiry_rush_days: u32,
}

/// Local merchants, social enterprises and outside firms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Merchants {
    /// Number of local merchants (including social enterprises). Default 50.
    pub count: u32,
    /// Share of local merchants that are social enterprises, 0..=1. Default 0.1.
    pub social_enterprise_share: f64,
    /// Share of local merchants accepting local units, 0..=1 (at least one always does).
    /// Default 0.6.
    pub accepting_share: f64,
    /// Merchant categories, assigned round-robin. Default food, retail, services.
    pub categories: Vec<String>,
    /// Number of outside firms. Default 5.
    pub outside_count: u32,
    /// Share of a merchant's balance paid out each day, 0..=1. Default 0.2.
    pub outflow_share_per_day: f64,
    /// Share of the outflow paid to local suppliers, 0..=1. Default 0.25.
    pub local_supplier_share: f64,
    /// Share of the outflow paid as wages to households, 0..=1. Default 0.3.
    pub wage_share: f64,
    /// Social enterprises' share of the outflow paid to local suppliers, 0..=1. Default 0.4.
    pub social_local_supplier_share: f64,
    /// Social enterprises' share of the outflow paid as wages, 0..=1. Default 0.45.
    pub social_wage_share: f64,
    /// Extra local supplier share per unit of redemption fee (merchants avoid a fee by
    /// spending units locally): 2.0 turns a 5% fee into +10 points. Default 2.0.
    pub fee_response: f64,
}

/// The policy levers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Share of each benefit paid in local units (the rest in national money), 0..=1.
    /// Default 1.0.
    pub local_unit_share: f64,
    /// Redemption fee, share of the redeemed amount, 0..=1. Default 0.0.
    pub redemption_fee: f64,
    /// Days after which households' unspent local units expire; 0 = never. Default 0.
    pub expiry_days: u32,
    /// Demurrage on local-unit balances, share per 30 days, 0..1. Default 0.0.
    pub demurrage_per_month: f64,
    /// Merchants pay wages in local units (else the wage share is redeemed first). Default true.
    pub wages_in_local_units: bool,
    /// Code of the local unit. Default `LOCAL`.
    pub local_unit: String,
    /// Code of national money. Default `EUR`.
    pub national_unit: String,
}

/// Monte Carlo spending rounds: deposits, then rounds in which every holder spends what it
/// received in the previous round, each payment locally with probability `local_share`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonteCarlo {
    /// Number of deposits (one per household, round-robin). Default 1000.
    pub deposits: u32,
    /// Households. Default 1000.
    pub households: u32,
    /// Local merchants. Default 100.
    pub merchants: u32,
    /// Amount of each deposit, minor units. Default 10000.
    pub deposit_minor: i64,
    /// Probability that a payment stays local (`p`), 0..=1. Default 0.5.
    pub local_share: f64,
    /// Payments a holder splits each round's money into. Default 4.
    pub payments_per_round: u32,
    /// Spending rounds after the deposit; what is left is redeemed. Default 8.
    pub rounds: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "scenario".into(),
            seed: 1,
            model: Model::Agents,
            days: 365,
            start_s: 1_767_225_600,
            period_days: 30,
            write_events: true,
            areas: Vec::new(),
            households: Households::default(),
            merchants: Merchants::default(),
            policy: Policy::default(),
            monte_carlo: MonteCarlo::default(),
        }
    }
}

impl Default for Households {
    fn default() -> Self {
        Self {
            count: 1000,
            beneficiary_share: 1.0,
            benefit_minor: 50_000,
            benefit_interval_days: 30,
            trip_interval_days: 3,
            spend_share_per_trip: 0.25,
            saver_share: 0.2,
            saver_spend_share_per_trip: 0.02,
            local_share_national: 0.35,
            expiry_rush_days: 7,
        }
    }
}

impl Default for Merchants {
    fn default() -> Self {
        Self {
            count: 50,
            social_enterprise_share: 0.1,
            accepting_share: 0.6,
            categories: vec!["food".into(), "retail".into(), "services".into()],
            outside_count: 5,
            outflow_share_per_day: 0.2,
            local_supplier_share: 0.25,
            wage_share: 0.3,
            social_local_supplier_share: 0.4,
            social_wage_share: 0.45,
            fee_response: 2.0,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            local_unit_share: 1.0,
            redemption_fee: 0.0,
            expiry_days: 0,
            demurrage_per_month: 0.0,
            wages_in_local_units: true,
            local_unit: "LOCAL".into(),
            national_unit: "EUR".into(),
        }
    }
}

impl Default for MonteCarlo {
    fn default() -> Self {
        Self {
            deposits: 1000,
            households: 1000,
            merchants: 100,
            deposit_minor: 10_000,
            local_share: 0.5,
            payments_per_round: 4,
            rounds: 8,
        }
    }
}

/// A scenario that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The TOML does not parse or has unknown keys.
    #[error("scenario: {0}")]
    Toml(String),
    /// A value is out of range.
    #[error("scenario: {field} must be {expected}")]
    Range {
        /// The key.
        field: &'static str,
        /// The allowed range.
        expected: &'static str,
    },
    /// The file is too large.
    #[error("scenario file larger than {MAX_SCENARIO_BYTES} bytes")]
    TooLarge,
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::TooLarge);
        }
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks every range; a scenario that passes cannot make a model panic.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.validate_counts()?;
        let share = |value: f64, field: &'static str| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(ScenarioError::Range {
                    field,
                    expected: "between 0 and 1",
                })
            }
        };
        let (h, m, p, mc) = (
            &self.households,
            &self.merchants,
            &self.policy,
            &self.monte_carlo,
        );
        share(h.beneficiary_share, "households.beneficiary_share")?;
        share(h.spend_share_per_trip, "households.spend_share_per_trip")?;
        share(h.saver_share, "households.saver_share")?;
        share(
            h.saver_spend_share_per_trip,
            "households.saver_spend_share_per_trip",
        )?;
        share(h.local_share_national, "households.local_share_national")?;
        share(
            m.social_enterprise_share,
            "merchants.social_enterprise_share",
        )?;
        share(m.accepting_share, "merchants.accepting_share")?;
        share(m.outflow_share_per_day, "merchants.outflow_share_per_day")?;
        share(m.local_supplier_share, "merchants.local_supplier_share")?;
        share(m.wage_share, "merchants.wage_share")?;
        share(
            m.local_supplier_share + m.wage_share,
            "merchants.local_supplier_share + wage_share",
        )?;
        share(
            m.social_local_supplier_share + m.social_wage_share,
            "merchants.social_local_supplier_share + social_wage_share",
        )?;
        share(
            m.social_local_supplier_share,
            "merchants.social_local_supplier_share",
        )?;
        share(m.social_wage_share, "merchants.social_wage_share")?;
        share(p.local_unit_share, "policy.local_unit_share")?;
        share(p.redemption_fee, "policy.redemption_fee")?;
        share(mc.local_share, "monte_carlo.local_share")?;
        if !(0.0..1.0).contains(&p.demurrage_per_month) {
            return Err(ScenarioError::Range {
                field: "policy.demurrage_per_month",
                expected: "in [0, 1)",
            });
        }
        if !(0.0..=100.0).contains(&m.fee_response) {
            return Err(ScenarioError::Range {
                field: "merchants.fee_response",
                expected: "between 0 and 100",
            });
        }
        if !(1..=crate::events::MAX_AMOUNT_MINOR / 1000).contains(&h.benefit_minor)
            || !(1..=crate::events::MAX_AMOUNT_MINOR / 1000).contains(&mc.deposit_minor)
        {
            return Err(ScenarioError::Range {
                field: "benefit_minor / deposit_minor",
                expected: "positive and below 2^53 / 1000",
            });
        }
        if self.start_s.rem_euclid(crate::measure::DAY_S) != 0 {
            return Err(ScenarioError::Range {
                field: "start_s",
                expected: "a UTC midnight",
            });
        }
        if p.local_unit == p.national_unit {
            return Err(ScenarioError::Range {
                field: "policy.local_unit",
                expected: "different from national_unit",
            });
        }
        Ok(())
    }

    fn validate_counts(&self) -> Result<(), ScenarioError> {
        let (h, m, mc) = (&self.households, &self.merchants, &self.monte_carlo);
        let count = |value: u32, max: u32, field: &'static str, expected: &'static str| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(ScenarioError::Range { field, expected })
            }
        };
        count(h.count, MAX_HOUSEHOLDS, "households.count", "1..=10000000")?;
        count(m.count, MAX_MERCHANTS, "merchants.count", "1..=1000000")?;
        count(
            m.outside_count,
            MAX_MERCHANTS,
            "merchants.outside_count",
            "1..=1000000",
        )?;
        count(self.days, MAX_DAYS, "days", "1..=36600")?;
        count(self.period_days, MAX_DAYS, "period_days", "1..=36600")?;
        count(
            h.benefit_interval_days,
            MAX_DAYS,
            "households.benefit_interval_days",
            "1..=36600",
        )?;
        count(
            h.trip_interval_days,
            MAX_DAYS,
            "households.trip_interval_days",
            "1..=36600",
        )?;
        count(
            mc.deposits,
            MAX_HOUSEHOLDS,
            "monte_carlo.deposits",
            "1..=10000000",
        )?;
        count(
            mc.households,
            MAX_HOUSEHOLDS,
            "monte_carlo.households",
            "1..=10000000",
        )?;
        count(
            mc.merchants,
            MAX_MERCHANTS,
            "monte_carlo.merchants",
            "1..=1000000",
        )?;
        count(
            mc.payments_per_round,
            1000,
            "monte_carlo.payments_per_round",
            "1..=1000",
        )?;
        count(mc.rounds, 1000, "monte_carlo.rounds", "1..=1000")?;
        Ok(())
    }

    /// The dotted key a sweep's parameter names: itself if it has a dot or is a top-level
    /// key (`seed`), else the policy's key of that name (`expiry_days` is
    /// `policy.expiry_days`).
    pub fn param_key(&self, param: &str) -> String {
        let top_level = toml::Value::try_from(self)
            .ok()
            .is_some_and(|tree| tree.get(param).is_some());
        if param.contains('.') || top_level {
            param.to_owned()
        } else {
            format!("policy.{param}")
        }
    }

    /// Sets one numeric parameter by its dotted key (`policy.redemption_fee`), for sweeps. A
    /// whole-number parameter takes only whole values (a sweep that rounded 30.25 to 30 would
    /// report a point it did not run). The result is validated.
    pub fn with_param(&self, key: &str, value: f64) -> Result<Self, ScenarioError> {
        let mut tree =
            toml::Value::try_from(self).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        let mut node = &mut tree;
        for part in key.split('.') {
            node = node
                .get_mut(part)
                .ok_or_else(|| ScenarioError::Toml(format!("unknown parameter {key}")))?;
        }
        *node = match node {
            toml::Value::Float(_) => toml::Value::Float(value),
            // A sweep's values are rounded to 12 decimals, which for large whole numbers is
            // off by a hair: within a millionth is whole.
            toml::Value::Integer(_)
                if (value - value.round()).abs() < 1e-6 && value.abs() < 9.0e15 =>
            {
                toml::Value::Integer(value.round() as i64)
            }
            toml::Value::Integer(_) => {
                return Err(ScenarioError::Toml(format!(
                    "parameter {key} is a whole number, and {value} is not: sweep it with a \
                     whole start and step"
                )));
            }
            _ => {
                return Err(ScenarioError::Toml(format!(
                    "parameter {key} is not a number"
                )));
            }
        };
        let scenario: Scenario = tree
            .try_into()
            .map_err(|e: toml::de::Error| ScenarioError::Toml(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_scenario() {
        assert_eq!(Scenario::from_toml("").unwrap(), Scenario::default());
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_refused() {
        assert!(
            Scenario::from_toml("[policy]\nredemption_fe = 0.05\n")
                .unwrap_err()
                .to_string()
                .contains("redemption_fe")
        );
        assert!(
            Scenario::from_toml("[policy]\nredemption_fee = 1.5\n")
                .unwrap_err()
                .to_string()
                .contains("policy.redemption_fee")
        );
        assert!(Scenario::from_toml("[households]\ncount = 0\n").is_err());
        assert!(Scenario::from_toml("start_s = 5\n").is_err());
    }

    #[test]
    fn a_parameter_can_be_set_by_its_dotted_key() {
        let s = Scenario::default()
            .with_param("policy.redemption_fee", 0.05)
            .unwrap();
        assert_eq!(s.policy.redemption_fee, 0.05);
        let s = s.with_param("policy.expiry_days", 90.0).unwrap();
        assert_eq!(s.policy.expiry_days, 90);
        // A whole-number parameter refuses a fraction rather than run a rounded point.
        let fraction = s.with_param("policy.expiry_days", 89.6).unwrap_err();
        assert!(fraction.to_string().contains("whole number"), "{fraction}");
        // A bare name is a top-level key if the scenario has one, else the policy's.
        assert_eq!(s.param_key("seed"), "seed");
        assert_eq!(s.param_key("expiry_days"), "policy.expiry_days");
        assert_eq!(s.param_key("households.count"), "households.count");
        assert_eq!(s.with_param("seed", 7.0).unwrap().seed, 7);
        // Large whole numbers come out of a range's rounding a hair off; still whole.
        let large = (100_000_002.0f64 * 1e12).round() / 1e12;
        assert_eq!(s.with_param("seed", large).unwrap().seed, 100_000_002);
        assert!(Scenario::default().with_param("policy.nope", 1.0).is_err());
        assert!(
            Scenario::default()
                .with_param("policy.local_unit", 1.0)
                .is_err()
        );
        assert!(
            Scenario::default()
                .with_param("policy.redemption_fee", 2.0)
                .is_err()
        );
    }

    #[test]
    fn the_pilot_scenarios_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
        assert!(count >= 5);
    }
}
