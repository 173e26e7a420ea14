//! Accounts: who holds a balance of which unit, within which limits, under whose key.

use serde::{Deserialize, Serialize};

use crate::amount::Balance;
use crate::ids::AccountId;
use crate::keys::PublicKey;
use crate::unit::UnitCode;

/// The role an account plays in its scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Issues units (a municipality's programme budget); its balance runs negative.
    Issuer,
    /// A household or time-bank member.
    Holder,
    /// A shop, social enterprise or cooperative accepting payments.
    Merchant,
    /// A waste collection point.
    Collector,
    /// Redemption clearing, fees, expired units, demurrage.
    System,
}

impl AccountKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Issuer => "issuer",
            AccountKind::Holder => "holder",
            AccountKind::Merchant => "merchant",
            AccountKind::Collector => "collector",
            AccountKind::System => "system",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "issuer" => AccountKind::Issuer,
            "holder" => AccountKind::Holder,
            "merchant" => AccountKind::Merchant,
            "collector" => AccountKind::Collector,
            "system" => AccountKind::System,
            _ => return None,
        })
    }
}

/// Whether an account may move money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// Temporarily blocked (lost card, investigation); neither debited nor credited.
    Frozen,
    /// Closed for good.
    Closed,
}

impl AccountStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "active" => AccountStatus::Active,
            "frozen" => AccountStatus::Frozen,
            "closed" => AccountStatus::Closed,
            _ => return None,
        })
    }
}

/// Inclusive balance limits; `None` is unbounded on that side. A new account starts at zero,
/// so `lower <= 0 <= upper` always holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    lower: Option<Balance>,
    upper: Option<Balance>,
}

/// Limits that exclude a zero balance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits must include zero: lower {lower:?} must be <= 0 and upper {upper:?} >= 0")]
pub struct LimitsError {
    /// The lower limit given.
    pub lower: Option<i64>,
    /// The upper limit given.
    pub upper: Option<i64>,
}

impl Limits {
    /// Limits between `lower` and `upper` minor units, inclusive.
    pub fn new(lower: Option<i64>, upper: Option<i64>) -> Result<Self, LimitsError> {
        if lower.is_some_and(|l| l > 0) || upper.is_some_and(|u| u < 0) {
            return Err(LimitsError { lower, upper });
        }
        Ok(Self {
            lower: lower.map(Balance),
            upper: upper.map(Balance),
        })
    }

    /// The usual limits for a kind: an issuer may go as negative as it issues but never
    /// positive; everyone else may not go below zero.
    pub fn default_for(kind: AccountKind) -> Self {
        match kind {
            AccountKind::Issuer => Self {
                lower: None,
                upper: Some(Balance::ZERO),
            },
            _ => Self {
                lower: Some(Balance::ZERO),
                upper: None,
            },
        }
    }

    /// The lower limit.
    pub fn lower(&self) -> Option<Balance> {
        self.lower
    }
    /// The upper limit.
    pub fn upper(&self) -> Option<Balance> {
        self.upper
    }
    /// Whether `balance` is within the limits.
    pub fn admits(&self, balance: Balance) -> bool {
        self.lower.is_none_or(|l| balance >= l) && self.upper.is_none_or(|u| balance <= u)
    }
}

/// An account of one unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The id.
    pub id: AccountId,
    /// The unit it holds.
    pub unit: UnitCode,
    /// Its role.
    pub kind: AccountKind,
    /// Whether it may move money.
    pub status: AccountStatus,
    /// Balance limits.
    pub limits: Limits,
    /// The key whose signed intents may debit this account; `None` means nobody can.
    pub authority: Option<PublicKey>,
}

impl Account {
    /// An active account with the kind's default limits.
    pub fn new(unit: UnitCode, kind: AccountKind, authority: Option<PublicKey>) -> Self {
        Self {
            id: AccountId::new(),
            unit,
            kind,
            status: AccountStatus::Active,
            limits: Limits::default_for(kind),
            authority,
        }
    }

    /// The same account with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_must_include_zero() {
        assert!(Limits::new(Some(1), None).is_err());
        assert!(Limits::new(None, Some(-1)).is_err());
        let limits = Limits::new(Some(-500), Some(500)).unwrap();
        assert!(limits.admits(Balance(-500)) && limits.admits(Balance(500)));
        assert!(!limits.admits(Balance(-501)) && !limits.admits(Balance(501)));
    }

    #[test]
    fn kinds_and_statuses_round_trip_their_names() {
        for kind in [
            AccountKind::Issuer,
            AccountKind::Holder,
            AccountKind::Merchant,
            AccountKind::Collector,
            AccountKind::System,
        ] {
            assert_eq!(AccountKind::parse(kind.as_str()), Some(kind));
        }
        for status in [
            AccountStatus::Active,
            AccountStatus::Frozen,
            AccountStatus::Closed,
        ] {
            assert_eq!(AccountStatus::parse(status.as_str()), Some(status));
        }
    }
}
