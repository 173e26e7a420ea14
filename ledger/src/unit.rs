//! Units: the currency schemes a ledger keeps (a voucher euro, waste points, time-bank hours).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::amount::MAX_SCALE;

/// The longest unit code, in ASCII characters.
pub const MAX_UNIT_CODE_LEN: usize = 16;
/// The longest unit name, in characters.
pub const MAX_UNIT_NAME_LEN: usize = 100;

/// Why a unit or unit code is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Codes are 1-16 characters of `A-Z`, `0-9` and `-`, starting with a letter.
    #[error(
        "unit code {0:?} is invalid: use 1-{MAX_UNIT_CODE_LEN} characters A-Z, 0-9 or '-', starting with a letter"
    )]
    BadCode(String),
    /// A name that is empty, too long or holds control characters.
    #[error("unit name must be 1-{MAX_UNIT_NAME_LEN} characters, with no control characters")]
    BadName,
    /// More decimal places than supported.
    #[error("unit scale {0} is more than the maximum {MAX_SCALE}")]
    BadScale(u8),
    /// A peg that is not an ISO 4217 alphabetic code.
    #[error("peg {0:?} is not an ISO 4217 code such as EUR")]
    BadPeg(String),
    /// Mutual credit has no issuer and nothing to redeem against, so it cannot be pegged.
    #[error("a mutual-credit unit cannot be pegged to a national currency")]
    PeggedMutualCredit,
}

/// A unit's code, such as `PGI-EUR`, `BZ-PTS` or `HOUR`. Fixed-size and `Copy`, because
/// every posting carries one and the Book compares them on the hot path.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitCode {
    bytes: [u8; MAX_UNIT_CODE_LEN],
    len: u8,
}

impl UnitCode {
    /// Validates and builds a code.
    pub fn new(text: &str) -> Result<Self, UnitError> {
        let bad = || UnitError::BadCode(text.chars().take(40).collect());
        let valid = !text.is_empty()
            && text.len() <= MAX_UNIT_CODE_LEN
            && text.as_bytes()[0].is_ascii_uppercase()
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(bad());
        }
        let mut bytes = [0u8; MAX_UNIT_CODE_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Self {
            bytes,
            len: u8::try_from(text.len()).map_err(|_| bad())?,
        })
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII was admitted by `new`, so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Display for UnitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for UnitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnitCode({})", self.as_str())
    }
}

impl std::str::FromStr for UnitCode {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnitCode::new(text)
    }
}

impl Serialize for UnitCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UnitCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UnitCode::new(&text).map_err(serde::de::Error::custom)
    }
}

/// What kind of money a unit is; it decides which entries make sense in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// Backed 1:1 by national money held by the issuer; merchants may redeem it.
    Voucher,
    /// Incentive points minted by an issuer (e.g. for separated waste).
    Points,
    /// Time bank or LETS: no issuer; balances sum to zero by trade between members.
    MutualCredit,
}

impl UnitKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Voucher => "voucher",
            UnitKind::Points => "points",
            UnitKind::MutualCredit => "mutual_credit",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "voucher" => Some(UnitKind::Voucher),
            "points" => Some(UnitKind::Points),
            "mutual_credit" => Some(UnitKind::MutualCredit),
            _ => None,
        }
    }

    /// Whether units of this kind come into being by issuance from an issuer account.
    pub fn is_issued(self) -> bool {
        !matches!(self, UnitKind::MutualCredit)
    }
}

/// A currency scheme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UnitFields")]
pub struct Unit {
    code: UnitCode,
    name: String,
    scale: u8,
    kind: UnitKind,
    peg: Option<String>,
}

/// The unvalidated fields of a [`Unit`], as they arrive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitFields {
    code: UnitCode,
    name: String,
    scale: u8,
    kind: UnitKind,
    #[serde(default)]
    peg: Option<String>,
}

impl TryFrom<UnitFields> for Unit {
    type Error = UnitError;
    fn try_from(f: UnitFields) -> Result<Self, Self::Error> {
        Unit::new(f.code, &f.name, f.scale, f.kind, f.peg.as_deref())
    }
}

impl Unit {
    /// Validates and builds a unit. `peg` is an ISO 4217 code for display and redemption.
    pub fn new(
        code: UnitCode,
        name: &str,
        scale: u8,
        kind: UnitKind,
        peg: Option<&str>,
    ) -> Result<Self, UnitError> {
        let name_len = name.chars().count();
        if name.trim().is_empty()
            || name_len > MAX_UNIT_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(UnitError::BadName);
        }
        if scale > MAX_SCALE {
            return Err(UnitError::BadScale(scale));
        }
        if let Some(peg) = peg {
            if peg.len() != 3 || !peg.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(UnitError::BadPeg(peg.chars().take(10).collect()));
            }
            if kind == UnitKind::MutualCredit {
                return Err(UnitError::PeggedMutualCredit);
            }
        }
        Ok(Self {
            code,
            name: name.to_owned(),
            scale,
            kind,
            peg: peg.map(str::to_owned),
        })
    }

    /// The code.
    pub fn code(&self) -> UnitCode {
        self.code
    }
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Decimal places of the minor unit.
    pub fn scale(&self) -> u8 {
        self.scale
    }
    /// The kind.
    pub fn kind(&self) -> UnitKind {
        self.kind
    }
    /// The ISO 4217 peg, if any.
    pub fn peg(&self) -> Option<&str> {
        self.peg.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_codes_are_validated() {
        assert_eq!(UnitCode::new("PGI-EUR").unwrap().as_str(), "PGI-EUR");
        for bad in ["", "eur", "1EUR", "EUR$", "A-VERY-LONG-UNIT-CODE", "ÉUR"] {
            assert!(UnitCode::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn units_are_validated() {
        let code = UnitCode::new("HOUR").unwrap();
        assert!(Unit::new(code, "Hours", 2, UnitKind::MutualCredit, None).is_ok());
        assert_eq!(
            Unit::new(code, "Hours", 2, UnitKind::MutualCredit, Some("EUR")),
            Err(UnitError::PeggedMutualCredit)
        );
        assert_eq!(
            Unit::new(code, " ", 2, UnitKind::Points, None),
            Err(UnitError::BadName)
        );
        assert_eq!(
            Unit::new(code, "Ekos\u{0}", 2, UnitKind::Points, None),
            Err(UnitError::BadName)
        );
        assert_eq!(
            Unit::new(code, "x", 9, UnitKind::Points, None),
            Err(UnitError::BadScale(9))
        );
        assert!(matches!(
            Unit::new(code, "x", 2, UnitKind::Voucher, Some("euro")),
            Err(UnitError::BadPeg(_))
        ));
    }
}
