//! Exact money: amounts and balances as whole numbers of a unit's minor units.

use serde::{Deserialize, Serialize};

/// The most decimal places a unit may have. Eight covers every currency and points scheme we
/// know of while keeping `i64` minor units far from overflow for realistic totals.
pub const MAX_SCALE: u8 = 8;

/// The largest amount, 2^53 - 1 minor units: every entry is hashed and signed as canonical
/// JSON, and larger integers do not survive a JavaScript or Python client exactly. At two
/// decimal places that is 90 trillion, far beyond any scheme's total.
pub const MAX_MINOR: i64 = crate::canonical::MAX_SAFE_INTEGER;

/// The longest decimal text [`Amount::parse`] accepts; anything longer is hostile or a typo.
pub const MAX_AMOUNT_TEXT_LEN: usize = 32;

/// Why an amount could not be made or combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// An amount moved is never negative; direction is expressed by debit and credit.
    #[error("amount must not be negative (got {0})")]
    Negative(i64),
    /// The text is not a plain decimal number such as `12` or `12.50`.
    #[error("{text:?} is not a decimal amount (digits, optionally one '.' and more digits)")]
    Malformed {
        /// The rejected text, cut to [`MAX_AMOUNT_TEXT_LEN`] characters.
        text: String,
    },
    /// More decimal places than the unit has; we never round silently.
    #[error("{text:?} has more than {scale} decimal places, the most this unit allows")]
    TooPrecise {
        /// The rejected text.
        text: String,
        /// The unit's decimal places.
        scale: u8,
    },
    /// The value exceeds [`MAX_MINOR`] minor units.
    #[error("amount is too large (the maximum is 2^53 - 1 minor units)")]
    Overflow,
    /// A unit scale outside `0..=MAX_SCALE`.
    #[error("scale {0} is outside 0..={MAX_SCALE}")]
    BadScale(u8),
}

/// An amount in a unit's minor units. Never negative; never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    /// Zero minor units.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `minor` minor units; negative values are refused.
    pub fn from_minor(minor: i64) -> Result<Self, AmountError> {
        if minor < 0 {
            return Err(AmountError::Negative(minor));
        }
        if minor > MAX_MINOR {
            return Err(AmountError::Overflow);
        }
        Ok(Amount(minor))
    }

    /// The amount in minor units.
    pub fn minor(self) -> i64 {
        self.0
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or [`AmountError::Overflow`].
    pub fn checked_add(self, other: Self) -> Result<Self, AmountError> {
        let sum = self.0.checked_add(other.0).ok_or(AmountError::Overflow)?;
        Amount::from_minor(sum)
    }

    /// `self - other`; going below zero is an error, not a wrap.
    pub fn checked_sub(self, other: Self) -> Result<Self, AmountError> {
        match self.0.checked_sub(other.0) {
            Some(v) if v >= 0 => Ok(Amount(v)),
            Some(v) => Err(AmountError::Negative(v)),
            None => Err(AmountError::Overflow),
        }
    }

    /// Parses `"12.50"` with scale 2 into 1250 minor units. More decimals than the unit
    /// allows is an error, not a rounding; signs, exponents, spaces and separators are refused.
    pub fn parse(text: &str, scale: u8) -> Result<Self, AmountError> {
        if scale > MAX_SCALE {
            return Err(AmountError::BadScale(scale));
        }
        let malformed = || AmountError::Malformed {
            text: text.chars().take(MAX_AMOUNT_TEXT_LEN).collect(),
        };
        if text.len() > MAX_AMOUNT_TEXT_LEN {
            return Err(malformed());
        }
        if let Some(rest) = text.strip_prefix('-') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(AmountError::Negative(-1));
            }
            return Err(malformed());
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
            return Err(malformed());
        }
        let fraction = fraction.unwrap_or("");
        if fraction.len() > usize::from(scale) {
            return Err(AmountError::TooPrecise {
                text: text.to_owned(),
                scale,
            });
        }
        let mut minor: i64 = 0;
        let padding = usize::from(scale).saturating_sub(fraction.len());
        let digits = whole
            .bytes()
            .chain(fraction.bytes())
            .chain(std::iter::repeat_n(b'0', padding));
        for digit in digits {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit.wrapping_sub(b'0'))))
                .ok_or(AmountError::Overflow)?;
        }
        Amount::from_minor(minor)
    }

    /// Formats with exactly `scale` decimal places: 1250 at scale 2 is `"12.50"`.
    pub fn format(self, scale: u8) -> String {
        format_minor(i128::from(self.0), scale)
    }
}

impl TryFrom<i64> for Amount {
    type Error = AmountError;
    fn try_from(minor: i64) -> Result<Self, Self::Error> {
        Amount::from_minor(minor)
    }
}

impl From<Amount> for i64 {
    fn from(amount: Amount) -> i64 {
        amount.0
    }
}

/// A signed account balance in minor units: issuer accounts run negative as they issue,
/// mutual-credit accounts go negative within their credit limit.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Balance(pub i64);

impl Balance {
    /// Zero.
    pub const ZERO: Balance = Balance(0);

    /// The balance in minor units.
    pub fn minor(self) -> i64 {
        self.0
    }

    /// Formats with the unit's decimal places, with a leading `-` when negative.
    pub fn format(self, scale: u8) -> String {
        format_minor(i128::from(self.0), scale)
    }
}

fn format_minor(minor: i128, scale: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let digits = minor.unsigned_abs().to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale.saturating_add(1));
    let (whole, fraction) = padded.split_at(padded.len().saturating_sub(scale));
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_whole_and_fractional_amounts() {
        assert_eq!(Amount::parse("12.50", 2).unwrap().minor(), 1250);
        assert_eq!(Amount::parse("12.5", 2).unwrap().minor(), 1250);
        assert_eq!(Amount::parse("12", 2).unwrap().minor(), 1200);
        assert_eq!(Amount::parse("0.01", 2).unwrap().minor(), 1);
        assert_eq!(Amount::parse("7", 0).unwrap().minor(), 7);
    }

    #[test]
    fn over_precise_amount_is_an_error_not_a_rounding() {
        assert_eq!(
            Amount::parse("12.345", 2),
            Err(AmountError::TooPrecise {
                text: "12.345".into(),
                scale: 2
            })
        );
        assert!(matches!(
            Amount::parse("1.5", 0),
            Err(AmountError::TooPrecise { .. })
        ));
    }

    #[test]
    fn negative_amount_is_refused() {
        assert!(matches!(
            Amount::parse("-1.00", 2),
            Err(AmountError::Negative(_))
        ));
        assert_eq!(Amount::from_minor(-5), Err(AmountError::Negative(-5)));
        assert!(serde_json::from_str::<Amount>("-5").is_err());
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for text in [
            "", ".", "1.", ".5", "1,00", "1e3", " 1", "+1", "1.2.3", "abc", "١٢",
        ] {
            assert!(
                matches!(Amount::parse(text, 2), Err(AmountError::Malformed { .. })),
                "{text:?} should be malformed"
            );
        }
    }

    #[test]
    fn huge_amount_overflows_cleanly() {
        assert_eq!(
            Amount::parse("90071992547409.92", 2),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            Amount::parse("92233720368547758.08", 2),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            Amount::from_minor(MAX_MINOR + 1),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            Amount::from_minor(MAX_MINOR)
                .unwrap()
                .checked_add(Amount::from_minor(1).unwrap()),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn subtraction_below_zero_is_an_error() {
        let one = Amount::from_minor(1).unwrap();
        assert!(Amount::ZERO.checked_sub(one).is_err());
    }

    #[test]
    fn formats_with_the_units_places() {
        assert_eq!(Amount::from_minor(1250).unwrap().format(2), "12.50");
        assert_eq!(Amount::from_minor(5).unwrap().format(3), "0.005");
        assert_eq!(Amount::from_minor(5).unwrap().format(0), "5");
        assert_eq!(Balance(-1250).format(2), "-12.50");
        assert_eq!(Balance(i64::MIN).format(2), "-92233720368547758.08");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(minor in 0..=MAX_MINOR, scale in 0..=MAX_SCALE) {
            let amount = Amount::from_minor(minor).unwrap();
            prop_assert_eq!(Amount::parse(&amount.format(scale), scale), Ok(amount));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}", scale in 0..=MAX_SCALE) {
            let _ = Amount::parse(&text, scale);
        }
    }
}
