//! Writes a [`PaymentRequestPayload`] as a signed EMV merchant-presented payload.

use ed25519_dalek::SigningKey;

use super::crc::crc16_ccitt_false;
use super::fields::{self, FieldError};
use super::tlv::push;
use super::{COLEDGER_GUID, Initiation, MAX_PAYLOAD_CHARS, PaymentRequestPayload, ids, signature};

/// Why a payload could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field breaks a rule of EMV or of this module.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A data object whose value would not fit two length digits (cannot happen for a payload
    /// that passed the field checks; reported rather than trusted).
    #[error("data object {id:02} would hold {chars} characters; a value holds 1-99")]
    ValueTooLong {
        /// The data object's ID.
        id: u8,
        /// The value's length in characters.
        chars: usize,
    },
    /// The whole payload is longer than EMV allows.
    #[error("the payload would be {chars} characters; EMV allows at most {MAX_PAYLOAD_CHARS}")]
    TooLong {
        /// The payload's length in characters.
        chars: usize,
    },
}

/// Writes `payload` as an EMV merchant-presented QR payload signed with the merchant's
/// `signing_key`, with its CRC; the layout and the signed message are in the module docs.
/// Every field is checked first, so what this returns always [`super::decode`]s back to
/// `payload`.
pub fn encode(
    payload: &PaymentRequestPayload,
    signing_key: &SigningKey,
) -> Result<String, EncodeError> {
    let mut out = unsigned_part(payload)?;
    let (first, second) = signature::sign(signing_key, &out);
    for (id, half) in [
        (ids::SIGNATURE_FIRST, first),
        (ids::SIGNATURE_SECOND, second),
    ] {
        let mut template = String::new();
        push(&mut template, ids::GUID, COLEDGER_GUID)?;
        push(&mut template, ids::SIGNATURE_HALF, &half)?;
        push(&mut out, id, &template)?;
    }
    out.push_str(ids::CRC_HEADER);
    let crc = crc16_ccitt_false(out.as_bytes());
    out.push_str(&format!("{crc:04X}"));
    let chars = out.chars().count();
    if chars > MAX_PAYLOAD_CHARS {
        return Err(EncodeError::TooLong { chars });
    }
    Ok(out)
}

/// Every data object before the signature, exactly as [`encode`] writes them: the text the
/// merchant signs. [`super::decode`] refuses a payload whose signed part is not this text.
pub(super) fn unsigned_part(payload: &PaymentRequestPayload) -> Result<String, EncodeError> {
    fields::check(payload)?;
    let mut out = String::with_capacity(MAX_PAYLOAD_CHARS);
    push(&mut out, ids::FORMAT_INDICATOR, ids::FORMAT_VERSION)?;
    let (initiation, amount) = match &payload.initiation {
        Initiation::Static => (ids::STATIC, None),
        Initiation::Dynamic { amount } => (ids::DYNAMIC, Some(amount.text())),
    };
    push(&mut out, ids::INITIATION, initiation)?;
    let mut account = String::new();
    push(&mut account, ids::GUID, COLEDGER_GUID)?;
    push(
        &mut account,
        ids::ACCOUNT_ID,
        &payload.merchant_account.to_string(),
    )?;
    push(&mut account, ids::ACCOUNT_UNIT, payload.unit.as_str())?;
    push(&mut out, ids::MERCHANT_ACCOUNT, &account)?;
    push(&mut out, ids::CATEGORY, &payload.category.to_string())?;
    push(
        &mut out,
        ids::CURRENCY,
        &format!("{:03}", payload.currency_numeric),
    )?;
    if let Some(amount) = amount {
        push(&mut out, ids::AMOUNT, &amount)?;
    }
    push(&mut out, ids::COUNTRY, &payload.country)?;
    push(&mut out, ids::NAME, &payload.merchant_name)?;
    push(&mut out, ids::CITY, &payload.city)?;
    additional_data(&mut out, payload)?;
    if let Some(alternate) = &payload.alternate {
        let mut template = String::new();
        push(&mut template, ids::LANGUAGE, &alternate.language)?;
        push(&mut template, ids::ALTERNATE_NAME, &alternate.name)?;
        if let Some(city) = &alternate.city {
            push(&mut template, ids::ALTERNATE_CITY, city)?;
        }
        push(&mut out, ids::LANGUAGE_TEMPLATE, &template)?;
    }
    Ok(out)
}

/// Template `62`, written only when it has something to hold.
fn additional_data(out: &mut String, payload: &PaymentRequestPayload) -> Result<(), EncodeError> {
    let mut template = String::new();
    if let Some(reference) = payload.reference {
        push(
            &mut template,
            ids::REFERENCE,
            &ids::reference_label(reference),
        )?;
    }
    if let Some(terminal) = &payload.terminal {
        push(&mut template, ids::TERMINAL, terminal)?;
    }
    if template.is_empty() {
        return Ok(());
    }
    push(out, ids::ADDITIONAL_DATA, &template)
}
