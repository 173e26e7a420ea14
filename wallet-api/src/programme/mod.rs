//! Municipal programmes: minimum income and emergency aid paid in a voucher unit.
//!
//! A programme owns one unit and three accounts in it: the **budget** (an issuer account whose
//! lower limit is minus the budget, so issuance can never exceed it, and to which expired units
//! return), the **clearing** account that redeemed units go to, and the **fee** account.
//! Its rules are versions, each in force from a stated time; the Book enforces the spending
//! part of the version in force when a payment is made ([`ledger::policy`]).
//!
//! Everything the programme signs (disbursement runs, expiry sweeps, card replacements) is
//! signed by its **administrator key**, derived from the server secret and the programme id,
//! so no private key is stored and the journal still shows which programme authorised what.

pub mod cards;
pub mod disburse;
pub mod expiry;
pub mod service;
pub mod settlement;

pub use cards::CardSettings;
pub use service::{
    HouseholdInput, NewProgramme, ProgrammeError, Programmes, check_applied_programmes,
};

use ed25519_dalek::SigningKey;
use ledger::policy::{CategoryCode, PolicyError, RedemptionRule, SpendingRules, UnitPolicy};
use ledger::{AccountId, Amount, ProgrammeId, PublicKey, UnitCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cards::ServerSecret;

/// Context of the administrator-key derivation; a new version means new keys.
const ADMINISTRATOR_KEY_CONTEXT: &[u8] = b"coledger/v1/programme-administrator\n";

/// The programme's signing key, derived from the server secret and the programme id.
pub fn administrator_key(secret: &ServerSecret, programme: ProgrammeId) -> SigningKey {
    secret.derive_signing_key(ADMINISTRATOR_KEY_CONTEXT, programme.as_bytes())
}

/// A deterministic intent id for something a programme does once: the same (context, parts)
/// always gives the same id, so a repeated or resumed run is answered as a duplicate.
pub fn derived_intent_id(context: &str, parts: &[&[u8]]) -> ledger::IntentId {
    let mut hash = Sha256::new();
    hash.update(b"coledger/v1/intent-id\n");
    hash.update(context.as_bytes());
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest: [u8; 32] = hash.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // An RFC 9562 version 8 (custom) UUID: the hash with the version and variant bits set.
    ledger::IntentId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// When a programme pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every month on a day (1 to 28, so every month has it); runs are named by period,
    /// `2026-12`.
    Monthly {
        /// The day of the month.
        day: u8,
    },
    /// Once (emergency aid), possibly for one area.
    OneOff,
}

impl Schedule {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Monthly { .. } => "monthly",
            Schedule::OneOff => "one_off",
        }
    }

    /// The day of the month, for monthly schedules.
    pub fn day(self) -> Option<u8> {
        match self {
            Schedule::Monthly { day } => Some(day),
            Schedule::OneOff => None,
        }
    }

    /// From the stored name and day; `None` if they do not make a schedule.
    pub fn parse(text: &str, day: Option<u8>) -> Option<Self> {
        match (text, day) {
            ("monthly", Some(day)) if (1..=28).contains(&day) => Some(Schedule::Monthly { day }),
            ("one_off", None) => Some(Schedule::OneOff),
            _ => None,
        }
    }

    /// The date a monthly run for `period` (`YYYY-MM`) is due, as `YYYY-MM-DD`.
    pub fn due_date(self, period: &str) -> Option<String> {
        let day = self.day()?;
        let valid = period.len() == 7 && period.as_bytes()[4] == b'-';
        valid.then(|| format!("{period}-{day:02}"))
    }
}

/// How much a household receives per run: a base plus an amount per dependent, capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountRule {
    /// Paid to every household, minor units.
    pub base_minor: i64,
    /// Added per dependent, minor units.
    pub per_dependent_minor: i64,
    /// The most one household receives per run, minor units.
    #[serde(default)]
    pub cap_minor: Option<i64>,
}

impl AmountRule {
    /// The amount for a household with `dependents`, or `None` if it overflows.
    pub fn amount_for(&self, dependents: u32) -> Option<i64> {
        let extra = self
            .per_dependent_minor
            .checked_mul(i64::from(dependents))?;
        let total = self.base_minor.checked_add(extra)?;
        Some(self.cap_minor.map_or(total, |cap| total.min(cap)))
    }
}

/// One version of a programme's rules, as stored (minor units throughout).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeRules {
    /// What each household receives per run.
    pub amount: AmountRule,
    /// Merchant categories where the unit may be spent; `None`: every registered merchant.
    #[serde(default)]
    pub allowed_categories: Option<Vec<CategoryCode>>,
    /// Most a household may pay per day, minor units.
    #[serde(default)]
    pub daily_cap_minor: Option<i64>,
    /// Most a household may pay per month, minor units.
    #[serde(default)]
    pub monthly_cap_minor: Option<i64>,
    /// Units unspent this many days after their disbursement return to the budget.
    #[serde(default)]
    pub expiry_days: Option<u32>,
    /// The redemption fee in basis points; `None`: merchants cannot redeem.
    #[serde(default)]
    pub redemption_fee_basis_points: Option<u32>,
}

/// Why a set of rules is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A field out of range.
    #[error("{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The versions do not make a policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl ProgrammeRules {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), RulesError> {
        let field = |field, reason| Err(RulesError::Field { field, reason });
        if self.amount.base_minor < 0 {
            return field("amount.base", "must not be negative");
        }
        if self.amount.per_dependent_minor < 0 {
            return field("amount.per_dependent", "must not be negative");
        }
        if self.amount.cap_minor.is_some_and(|c| c <= 0) {
            return field("amount.cap", "must be positive");
        }
        if self.amount.base_minor == 0 && self.amount.per_dependent_minor == 0 {
            return field("amount", "a programme must pay something");
        }
        if self.daily_cap_minor.is_some_and(|c| c <= 0) {
            return field("daily_cap", "must be positive");
        }
        if self.monthly_cap_minor.is_some_and(|c| c <= 0) {
            return field("monthly_cap", "must be positive");
        }
        if self.expiry_days.is_some_and(|d| d == 0 || d > 3_650) {
            return field("expiry_days", "must be between 1 and 3650");
        }
        if self.redemption_fee_basis_points.is_some_and(|b| b > 10_000) {
            return field(
                "redemption_fee_basis_points",
                "must be at most 10000 (100 %)",
            );
        }
        if self.allowed_categories.as_ref().is_some_and(Vec::is_empty) {
            return field(
                "allowed_categories",
                "an empty list would refuse every merchant; omit it to allow all",
            );
        }
        Ok(())
    }

    /// The spending part, as the Book enforces it.
    pub fn spending(&self, effective_from: i64, accounts: &ProgrammeAccounts) -> SpendingRules {
        let amount = |minor: Option<i64>| minor.and_then(|m| Amount::from_minor(m).ok());
        SpendingRules {
            effective_from,
            allowed_categories: self.allowed_categories.clone(),
            daily_cap: amount(self.daily_cap_minor),
            monthly_cap: amount(self.monthly_cap_minor),
            redemption: self
                .redemption_fee_basis_points
                .map(|fee_basis_points| RedemptionRule {
                    clearing_account: accounts.clearing,
                    fee_account: accounts.fees,
                    fee_basis_points,
                }),
        }
    }
}

/// The programme's own accounts in its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgrammeAccounts {
    /// The budget: an issuer account with lower limit minus the budget.
    pub budget: AccountId,
    /// Where redeemed units go.
    pub clearing: AccountId,
    /// Where redemption fees go.
    pub fees: AccountId,
}

/// A programme as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programme {
    /// Id.
    pub id: ProgrammeId,
    /// Name, e.g. `Ingreso mínimo Sevilla`.
    pub name: String,
    /// The unit it pays in.
    pub unit: UnitCode,
    /// Its accounts.
    pub accounts: ProgrammeAccounts,
    /// Its administrator's public key.
    pub administrator: PublicKey,
    /// When it pays.
    pub schedule: Schedule,
    /// Areas households may live in.
    pub areas: Vec<String>,
    /// Languages households may choose; the first is the default.
    pub languages: Vec<String>,
    /// The bank account that pays merchants' redemptions, for the SEPA file.
    pub debtor: Option<BankAccount>,
    /// When created (ms).
    pub created_at: i64,
}

/// A bank account: who holds it, its IBAN and the bank's BIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankAccount {
    /// The holder's name.
    pub name: String,
    /// IBAN, normalised.
    pub iban: String,
    /// BIC, if known.
    #[serde(default)]
    pub bic: Option<String>,
}

/// A version of the rules with when it takes effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleVersion {
    /// 1, 2, …
    pub version: u32,
    /// In force from (ms).
    pub effective_from: i64,
    /// The rules.
    pub rules: ProgrammeRules,
    /// When recorded (ms).
    pub created_at: i64,
}

/// The most dependents an enrolment row may declare.
pub const MAX_DEPENDENTS: u32 = 30;

impl Programme {
    /// How its enrolment files are checked: its areas and languages (the first is the
    /// default), at most [`MAX_DEPENDENTS`] dependents.
    pub fn enrolment_rules(&self) -> crate::enrolment::EnrolmentRules {
        crate::enrolment::EnrolmentRules {
            areas: self.areas.clone(),
            languages: self.languages.clone(),
            default_language: self.languages.first().cloned().unwrap_or_default(),
            max_dependents: MAX_DEPENDENTS,
        }
    }

    /// The Book's policy for the programme's unit, from every version of its rules.
    pub fn policy(&self, versions: &[RuleVersion]) -> Result<UnitPolicy, RulesError> {
        let spending = versions
            .iter()
            .map(|v| v.rules.spending(v.effective_from, &self.accounts))
            .collect();
        Ok(UnitPolicy::new(self.administrator, spending)?)
    }
}

/// The version in force at `at` (the latest that has taken effect).
pub fn rules_at(versions: &[RuleVersion], at: i64) -> Option<&RuleVersion> {
    versions
        .iter()
        .filter(|v| v.effective_from <= at)
        .max_by_key(|v| v.effective_from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules() -> ProgrammeRules {
        ProgrammeRules {
            amount: AmountRule {
                base_minor: 300_00,
                per_dependent_minor: 75_00,
                cap_minor: Some(600_00),
            },
            allowed_categories: None,
            daily_cap_minor: None,
            monthly_cap_minor: None,
            expiry_days: Some(90),
            redemption_fee_basis_points: Some(150),
        }
    }

    #[test]
    fn amounts_are_base_plus_dependents_capped() {
        let rule = rules().amount;
        assert_eq!(rule.amount_for(0), Some(300_00));
        assert_eq!(rule.amount_for(2), Some(450_00));
        assert_eq!(rule.amount_for(9), Some(600_00));
        let huge = AmountRule {
            base_minor: i64::MAX,
            per_dependent_minor: 1,
            cap_minor: None,
        };
        assert_eq!(huge.amount_for(1), None);
    }

    #[test]
    fn rules_are_validated_field_by_field() {
        rules().validate().unwrap();
        let mut bad = rules();
        bad.expiry_days = Some(0);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("expiry_days")
        );
        let mut bad = rules();
        bad.allowed_categories = Some(vec![]);
        assert!(bad.validate().is_err());
        let mut bad = rules();
        bad.redemption_fee_basis_points = Some(10_001);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_intent_id("run", &[b"x", b"1"]);
        assert_eq!(a, derived_intent_id("run", &[b"x", b"1"]));
        assert_ne!(a, derived_intent_id("run", &[b"x1", b""]));
        assert_ne!(a, derived_intent_id("sweep", &[b"x", b"1"]));
        assert_eq!(a.0.get_version_num(), 8);
    }

    #[test]
    fn the_administrator_key_depends_on_secret_and_programme() {
        let secret = |seed: u8| {
            let mut bytes = [seed; 32];
            bytes[0] = 0xA5;
            ServerSecret::from_bytes(bytes).unwrap()
        };
        let programme = ProgrammeId::new();
        let key = administrator_key(&secret(1), programme).to_bytes();
        assert_eq!(key, administrator_key(&secret(1), programme).to_bytes());
        assert_ne!(key, administrator_key(&secret(2), programme).to_bytes());
        assert_ne!(
            key,
            administrator_key(&secret(1), ProgrammeId::new()).to_bytes()
        );
    }

    #[test]
    fn the_version_in_force_is_the_latest_started() {
        let v = |version, effective_from| RuleVersion {
            version,
            effective_from,
            rules: rules(),
            created_at: 0,
        };
        let versions = [v(1, 0), v(2, 100), v(3, 50)];
        assert_eq!(rules_at(&versions, 10).unwrap().version, 1);
        assert_eq!(rules_at(&versions, 60).unwrap().version, 3);
        assert_eq!(rules_at(&versions, 100).unwrap().version, 2);
    }
}
