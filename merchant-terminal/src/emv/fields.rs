//! The rules every field of a [`PaymentRequestPayload`] obeys, checked before encoding and
//! again after decoding, so the two sides can never disagree on what is valid.

use ledger::amount::MAX_SCALE;

use super::{
    Initiation, MAX_AMOUNT_CHARS, MAX_CITY_CHARS, MAX_LABEL_CHARS, MAX_NAME_CHARS,
    PaymentRequestPayload, RequestAmount,
};

/// A field that EMV (or this module) does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A text field with nothing in it; EMV has no empty values.
    #[error("{field} must not be empty")]
    Empty {
        /// Which field, e.g. "merchant name (59)".
        field: &'static str,
    },
    /// A text longer than EMV allows.
    #[error("{field} has {chars} characters; at most {max} fit")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in characters (Unicode scalar values).
        chars: usize,
        /// The most allowed.
        max: usize,
    },
    /// A character outside printable ASCII where EMV requires its "ans" character set.
    #[error(
        "{field} may hold only printable ASCII (EMV \"ans\"), not {found:?}; put names in other scripts in the alternate-language template (64)"
    )]
    NotAns {
        /// Which field.
        field: &'static str,
        /// The first character refused.
        found: char,
    },
    /// A control character (line feed, tab, …) in a Unicode field.
    #[error("{field} must not contain control characters")]
    Control {
        /// Which field.
        field: &'static str,
    },
    /// A country that is not two upper-case letters.
    #[error("country {0:?} is not an ISO 3166-1 alpha-2 code (two letters A-Z)")]
    Country(String),
    /// A language that is not two ASCII letters.
    #[error("language {0:?} is not an ISO 639-1 code (two letters)")]
    Language(String),
    /// A currency number outside 1-999.
    #[error("currency {0} is not an ISO 4217 numeric code (1-999)")]
    Currency(u16),
    /// A payment request for nothing.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// More decimals than any unit has.
    #[error("scale {0} is above the most a unit may have ({MAX_SCALE})")]
    Scale(u8),
    /// An amount whose text does not fit data object `54`.
    #[error("amount {text} has {} characters; at most {MAX_AMOUNT_CHARS} fit", text.len())]
    AmountTooLong {
        /// The amount as it would be written.
        text: String,
    },
}

/// Checks every field of `payload`; the first problem found is returned.
pub(crate) fn check(payload: &PaymentRequestPayload) -> Result<(), FieldError> {
    if let Initiation::Dynamic { amount } = &payload.initiation {
        check_amount(amount)?;
    }
    if !(1..=999).contains(&payload.currency_numeric) {
        return Err(FieldError::Currency(payload.currency_numeric));
    }
    let country = &payload.country;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::Country(country.chars().take(8).collect()));
    }
    ans("merchant name (59)", &payload.merchant_name, MAX_NAME_CHARS)?;
    ans("merchant city (60)", &payload.city, MAX_CITY_CHARS)?;
    if let Some(terminal) = &payload.terminal {
        ans("terminal label (62/07)", terminal, MAX_LABEL_CHARS)?;
    }
    if let Some(alternate) = &payload.alternate {
        let language = &alternate.language;
        if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(FieldError::Language(language.chars().take(8).collect()));
        }
        unicode("alternate name (64/01)", &alternate.name, MAX_NAME_CHARS)?;
        if let Some(city) = &alternate.city {
            unicode("alternate city (64/02)", city, MAX_CITY_CHARS)?;
        }
    }
    Ok(())
}

/// Checks an amount: not zero, a scale a unit may have, and short enough to write.
pub(crate) fn check_amount(amount: &RequestAmount) -> Result<(), FieldError> {
    if amount.scale > MAX_SCALE {
        return Err(FieldError::Scale(amount.scale));
    }
    if amount.value.is_zero() {
        return Err(FieldError::ZeroAmount);
    }
    let text = amount.text();
    if text.len() > MAX_AMOUNT_CHARS {
        return Err(FieldError::AmountTooLong { text });
    }
    Ok(())
}

/// Whether `character` is in EMV's "ans" set: printable ASCII, space included.
pub(crate) fn is_ans(character: char) -> bool {
    matches!(character, ' '..='~')
}

fn ans(field: &'static str, text: &str, max: usize) -> Result<(), FieldError> {
    if let Some(found) = text.chars().find(|&c| !is_ans(c)) {
        return Err(FieldError::NotAns { field, found });
    }
    length(field, text, max)
}

fn unicode(field: &'static str, text: &str, max: usize) -> Result<(), FieldError> {
    if text.chars().any(char::is_control) {
        return Err(FieldError::Control { field });
    }
    length(field, text, max)
}

fn length(field: &'static str, text: &str, max: usize) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if chars == 0 {
        return Err(FieldError::Empty { field });
    }
    if chars > max {
        return Err(FieldError::TooLong { field, chars, max });
    }
    Ok(())
}
