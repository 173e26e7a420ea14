//! ISO 4217 currency codes: the alphabetic code a unit is pegged to, as the numeric code EMV
//! data object `53` carries.

/// ISO 4217 `XXX`, "no currency": what `53` says for units pegged to no national money
/// (time banks, incentive points).
pub const NO_CURRENCY: u16 = 999;

/// The currencies of our pilots and their neighbours, alphabetic to numeric (ISO 4217).
/// A code missing here is an error rather than a guess; add it when a scheme needs it.
const CURRENCIES: [(&str, u16); 18] = [
    ("AED", 784),
    ("CHF", 756),
    ("DKK", 208),
    ("DZD", 12),
    ("EGP", 818),
    ("EUR", 978),
    ("GBP", 826),
    ("ILS", 376),
    ("JOD", 400),
    ("LBP", 422),
    ("MAD", 504),
    ("NOK", 578),
    ("PLN", 985),
    ("SEK", 752),
    ("TND", 788),
    ("TRY", 949),
    ("USD", 840),
    ("XXX", NO_CURRENCY),
];

/// An alphabetic currency code missing from our table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 4217 currency this terminal knows; add it to the currency table")]
pub struct UnknownCurrency(pub String);

/// The numeric code of an alphabetic ISO 4217 code (`EUR` is 978); upper case only.
pub fn currency_numeric(alpha: &str) -> Result<u16, UnknownCurrency> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == alpha)
        .map(|&(_, numeric)| numeric)
        .ok_or_else(|| UnknownCurrency(alpha.chars().take(8).collect()))
}

/// The alphabetic code of a numeric one, if it is in our table (978 is `EUR`).
pub fn currency_alpha(numeric: u16) -> Option<&'static str> {
    CURRENCIES
        .iter()
        .find(|&&(_, code)| code == numeric)
        .map(|&(alpha, _)| alpha)
}

/// Every (alphabetic, numeric) pair this terminal knows, for pages that write `53` themselves.
pub fn currencies() -> impl Iterator<Item = (&'static str, u16)> {
    CURRENCIES.iter().copied()
}

/// The numeric code for a unit's peg (`ledger::Unit::peg`): [`NO_CURRENCY`] when it has none.
pub fn currency_for_peg(peg: Option<&str>) -> Result<u16, UnknownCurrency> {
    peg.map_or(Ok(NO_CURRENCY), currency_numeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_currencies_have_their_iso_numbers() {
        assert_eq!(currency_numeric("EUR"), Ok(978));
        assert_eq!(currency_numeric("USD"), Ok(840));
        assert_eq!(currency_numeric("ILS"), Ok(376));
        assert_eq!(currency_numeric("JOD"), Ok(400));
        assert_eq!(currency_numeric("TND"), Ok(788));
        assert_eq!(currency_numeric("EGP"), Ok(818));
        assert_eq!(currency_numeric("GBP"), Ok(826));
    }

    #[test]
    fn unknown_or_lower_case_code_is_an_error() {
        assert_eq!(currency_numeric("ZZZ"), Err(UnknownCurrency("ZZZ".into())));
        assert!(currency_numeric("eur").is_err());
    }

    #[test]
    fn unit_without_peg_uses_no_currency() {
        assert_eq!(currency_for_peg(None), Ok(999));
        assert_eq!(currency_for_peg(Some("EUR")), Ok(978));
        assert_eq!(currency_alpha(999), Some("XXX"));
        assert_eq!(currency_alpha(978), Some("EUR"));
        assert_eq!(currency_alpha(1), None);
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, (alpha, numeric)) in CURRENCIES.iter().enumerate() {
            for (other_alpha, other_numeric) in &CURRENCIES[i + 1..] {
                assert_ne!(alpha, other_alpha);
                assert_ne!(numeric, other_numeric);
            }
        }
    }
}
