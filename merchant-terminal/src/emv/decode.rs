//! Reads a payload back into a [`PaymentRequestPayload`], refusing anything [`super::encode`]
//! would not have written, and checks its signature.

use ledger::amount::MAX_SCALE;
use ledger::{AccountId, Amount, CategoryCode, PublicKey, Signature, UnitCode};

use super::crc::crc16_ccitt_false;
use super::fields::{self, FieldError, is_ans};
use super::tlv::{self, DataObject, Scope};
use super::{
    AlternateLanguage, COLEDGER_GUID, Initiation, MAX_AMOUNT_CHARS, MAX_PAYLOAD_CHARS,
    PaymentRequestPayload, RequestAmount, ids, signature,
};

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than EMV allows; refused before anything is parsed.
    #[error("the payload has {chars} characters; EMV allows at most {MAX_PAYLOAD_CHARS}")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// The text ends inside a data object's ID or length.
    #[error("{scope} ends at character {at} in the middle of a data object's ID or length")]
    Truncated {
        /// "the payload" or "template NN".
        scope: String,
        /// Character position of the cut data object, from the start of the scope.
        at: usize,
    },
    /// An ID that is not two digits.
    #[error("{scope}: the ID at character {at} must be two digits, not {found:?}")]
    BadId {
        /// "the payload" or "template NN".
        scope: String,
        /// Character position of the ID.
        at: usize,
        /// What was there.
        found: String,
    },
    /// A length that is not two digits, or is `00`.
    #[error(
        "{scope}: the length of the data object at character {at} must be two digits 01-99, not {found:?}"
    )]
    BadLength {
        /// "the payload" or "template NN".
        scope: String,
        /// Character position of the data object.
        at: usize,
        /// What was there.
        found: String,
    },
    /// A length that runs past the end of the payload or template.
    #[error("data object {path} says {length} characters but only {remaining} follow")]
    LengthPastEnd {
        /// The data object, e.g. `59` or `62/05`.
        path: String,
        /// The length it states.
        length: usize,
        /// Characters left.
        remaining: usize,
    },
    /// The CRC (`63`) is missing or is not the last data object.
    #[error("the CRC (63) must be the last data object")]
    CrcNotLast,
    /// The CRC's value is not 4 upper-case hex digits.
    #[error("the CRC (63) must be 4 upper-case hex digits, not {found:?}")]
    BadCrcFormat {
        /// The value found.
        found: String,
    },
    /// The CRC does not match: the code was misread or altered.
    #[error(
        "CRC mismatch: the payload says {found} but its content gives {computed}; it was misread or altered"
    )]
    CrcMismatch {
        /// The CRC computed over the payload.
        computed: String,
        /// The CRC written in it.
        found: String,
    },
    /// The payload format indicator (`00`) is missing or not first.
    #[error("the payload format indicator (00) must be the first data object")]
    FormatIndicatorNotFirst,
    /// A payload format other than `01`.
    #[error("payload format {found:?} is not supported (only \"01\")")]
    BadFormatIndicator {
        /// The value found.
        found: String,
    },
    /// The same ID twice in the payload or in one template.
    #[error("data object {path} appears more than once")]
    Duplicate {
        /// The data object, e.g. `59` or `62/05`.
        path: String,
    },
    /// An ID or sub-ID this module gives no meaning (RFU, tips, postal code, …).
    #[error("data object {path} is not one coledger payment requests use")]
    UnsupportedId {
        /// The data object.
        path: String,
    },
    /// A mandatory data object is absent.
    #[error("mandatory data object {path} ({name}) is missing")]
    Missing {
        /// The data object, e.g. `52` or `26/01`.
        path: String,
        /// What it holds.
        name: &'static str,
    },
    /// A character outside printable ASCII where EMV requires "ans".
    #[error("data object {path} may hold only printable ASCII (EMV \"ans\"), not {found:?}")]
    NotAns {
        /// The data object.
        path: String,
        /// The first character refused.
        found: char,
    },
    /// A point of initiation other than `11` or `12`.
    #[error("point of initiation (01) must be \"11\" (static) or \"12\" (dynamic), not {found:?}")]
    BadInitiation {
        /// The value found.
        found: String,
    },
    /// A dynamic code without an amount.
    #[error("a dynamic payment request (01 = 12) must state its amount (54)")]
    DynamicWithoutAmount,
    /// A static code with an amount; the payer types the amount at a sticker.
    #[error("a static code (01 = 11) must not state an amount (54)")]
    StaticWithAmount,
    /// An amount that is not canonical decimal text of a positive amount.
    #[error("amount {found:?} is not valid: {reason}")]
    BadAmount {
        /// The value found.
        found: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A template in 26-51 or 80-99 under a GUID other than ours.
    #[error("template {id} belongs to {found:?}, not to coledger ({COLEDGER_GUID})")]
    UnknownGuid {
        /// The template's ID.
        id: String,
        /// The GUID found.
        found: String,
    },
    /// A template in 26-51 or 80-99 whose first sub-ID is not the GUID (`00`).
    #[error("template {id} must start with its GUID (sub-ID 00)")]
    GuidNotFirst {
        /// The template's ID.
        id: String,
    },
    /// Our merchant account template twice, under two IDs.
    #[error("templates {first} and {second} both hold a coledger merchant account")]
    MerchantAccountTwice {
        /// The first template's ID.
        first: String,
        /// The second template's ID.
        second: String,
    },
    /// A merchant account id that is not a hyphenated lower-case UUID.
    #[error("merchant account id {found:?} (26/01) is not a hyphenated lower-case UUID")]
    BadMerchantAccount {
        /// The value found.
        found: String,
    },
    /// A unit code the ledger would not accept.
    #[error("unit code {found:?} (26/02) is not valid")]
    BadUnit {
        /// The value found.
        found: String,
    },
    /// A merchant category code that is not 4 digits.
    #[error("merchant category code {found:?} (52) must be 4 digits")]
    BadCategory {
        /// The value found.
        found: String,
    },
    /// A currency that is not 3 digits.
    #[error("currency {found:?} (53) must be 3 digits (ISO 4217 numeric)")]
    BadCurrency {
        /// The value found.
        found: String,
    },
    /// A reference label that is not a payment request id as we write it.
    #[error(
        "reference label {found:?} (62/05) is not a payment request id (22 characters of base64url)"
    )]
    BadReference {
        /// The value found.
        found: String,
    },
    /// A field that breaks a rule shared with encoding (lengths, country, language, …).
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The signature templates (80, 81) are absent.
    #[error("the payload carries no coledger signature (templates 80 and 81)")]
    SignatureMissing,
    /// The signature templates are not 80 then 81, directly before the CRC.
    #[error("the signature templates must be 80 then 81, directly before the CRC (63)")]
    SignatureMisplaced,
    /// The signature halves are not 43 + 43 characters of base64url making 64 bytes.
    #[error("the signature (80/01 and 81/01) is not 2 × 43 characters of base64url")]
    BadSignatureText,
    /// The merchant key given is not a valid ed25519 key.
    #[error("the merchant's public key is not a valid ed25519 key")]
    BadPublicKey,
    /// The signature does not match: another merchant's key, or an altered payload.
    #[error("the merchant's signature does not match this payment request")]
    BadSignature,
    /// Every field is valid, but the payload is not written as [`super::encode`] writes it:
    /// data objects or sub-IDs in another order, or the merchant account under a template ID
    /// other than 26. One payment request has exactly one payload, and one signed message.
    #[error(
        "the payload is not in the form coledger writes it (data objects in another order, or the merchant account template under another ID than 26)"
    )]
    NotCanonical,
}

/// A payload that parsed and passed its CRC; its signature is not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    payload: PaymentRequestPayload,
    signature: Signature,
    signed_message: Vec<u8>,
}

impl Decoded {
    /// What the code says. Before [`Decoded::verify`] it may come from anyone: use it only to
    /// find the merchant's key (by [`PaymentRequestPayload::merchant_account`]).
    pub fn payload(&self) -> &PaymentRequestPayload {
        &self.payload
    }

    /// The merchant's signature, as read.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The exact bytes the signature covers (see the module docs).
    pub fn signed_message(&self) -> &[u8] {
        &self.signed_message
    }

    /// Checks the signature with the merchant's key.
    pub fn verify(&self, merchant_key: &PublicKey) -> Result<(), DecodeError> {
        signature::verify(merchant_key, &self.signed_message, &self.signature)
    }

    /// The payload, once its signature is checked with the merchant's key.
    pub fn into_verified(
        self,
        merchant_key: &PublicKey,
    ) -> Result<PaymentRequestPayload, DecodeError> {
        self.verify(merchant_key)?;
        Ok(self.payload)
    }
}

/// Checks `decoded`'s signature with the merchant's key; the same as [`Decoded::verify`].
pub fn verify(decoded: &Decoded, merchant_key: &PublicKey) -> Result<(), DecodeError> {
    decoded.verify(merchant_key)
}

/// Decodes `text` and checks its signature with `merchant_key`, for callers that know the key
/// already (a terminal reading back its own code, a test).
pub fn decode_verified(
    text: &str,
    merchant_key: &PublicKey,
) -> Result<PaymentRequestPayload, DecodeError> {
    decode(text)?.into_verified(merchant_key)
}

/// Top-level data objects by ID.
type Index<'a> = [Option<DataObject<'a>>; 100];

/// Reads an EMV merchant-presented payload written by [`super::encode`]: structure, CRC,
/// every field, and where the signature sits. The signature itself is checked by
/// [`Decoded::verify`], which needs the merchant's key.
pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
    let chars = text.chars().count();
    if chars > MAX_PAYLOAD_CHARS {
        return Err(DecodeError::TooLong { chars });
    }
    let objects = tlv::parse(text, Scope::Payload)?;
    check_crc(text, &objects)?;
    if objects.first().map(|o| o.id) != Some(ids::FORMAT_INDICATOR) {
        return Err(DecodeError::FormatIndicatorNotFirst);
    }
    let top = index(&objects, Scope::Payload)?;
    let format = required(&top, ids::FORMAT_INDICATOR, "payload format indicator")?;
    if format != ids::FORMAT_VERSION {
        return Err(DecodeError::BadFormatIndicator {
            found: format.to_owned(),
        });
    }
    if let Some(unknown) = objects.iter().find(|o| !ids::is_known(o.id)) {
        return Err(DecodeError::UnsupportedId {
            path: Scope::Payload.path(unknown.id),
        });
    }
    let payload = read_payload(&objects, &top)?;
    let (signature, signed_part) = read_signature(text, &objects, &top)?;
    fields::check(&payload)?;
    // The decoder reads objects by ID, so it checks their order (and our template's ID) by
    // writing the payload again: anything else is refused, as the encoder would not write it.
    if super::encode::unsigned_part(&payload).ok().as_deref() != Some(signed_part) {
        return Err(DecodeError::NotCanonical);
    }
    Ok(Decoded {
        payload,
        signature,
        signed_message: signature::message(signed_part),
    })
}

/// Checks that `63` is last, well formed and matches the payload.
fn check_crc(text: &str, objects: &[DataObject<'_>]) -> Result<(), DecodeError> {
    let last = match objects.last() {
        Some(last) if last.id == ids::CRC => last,
        _ => return Err(DecodeError::CrcNotLast),
    };
    let well_formed = last.value.len() == 4
        && last
            .value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    if !well_formed {
        return Err(DecodeError::BadCrcFormat {
            found: last.value.chars().take(8).collect(),
        });
    }
    let computed = format!(
        "{:04X}",
        crc16_ccitt_false(&text.as_bytes()[..last.value_start])
    );
    if computed != last.value {
        return Err(DecodeError::CrcMismatch {
            computed,
            found: last.value.to_owned(),
        });
    }
    Ok(())
}

/// Indexes data objects by ID, refusing duplicates.
fn index<'a>(objects: &[DataObject<'a>], scope: Scope) -> Result<Index<'a>, DecodeError> {
    let mut index: Index<'a> = [None; 100];
    for object in objects {
        let slot = &mut index[usize::from(object.id)];
        if slot.is_some() {
            return Err(DecodeError::Duplicate {
                path: scope.path(object.id),
            });
        }
        *slot = Some(*object);
    }
    Ok(index)
}

/// The value of a mandatory data object.
fn required<'a>(index: &Index<'a>, id: u8, name: &'static str) -> Result<&'a str, DecodeError> {
    index[usize::from(id)]
        .map(|o| o.value)
        .ok_or_else(|| DecodeError::Missing {
            path: format!("{id:02}"),
            name,
        })
}

/// The value of a data object, checked to be printable ASCII.
fn ans(path: impl Fn() -> String, value: &str) -> Result<&str, DecodeError> {
    match value.chars().find(|&c| !is_ans(c)) {
        Some(found) => Err(DecodeError::NotAns {
            path: path(),
            found,
        }),
        None => Ok(value),
    }
}

/// Reads every field but the signature.
fn read_payload(
    objects: &[DataObject<'_>],
    top: &Index<'_>,
) -> Result<PaymentRequestPayload, DecodeError> {
    let text = |id: u8, name| required(top, id, name).and_then(|v| ans(|| format!("{id:02}"), v));
    let optional = |id: u8| {
        top[usize::from(id)]
            .map(|o| ans(|| format!("{id:02}"), o.value))
            .transpose()
    };
    let initiation = text(ids::INITIATION, "point of initiation method")?;
    let amount = optional(ids::AMOUNT)?;
    let initiation = match (initiation, amount) {
        (ids::STATIC, None) => Initiation::Static,
        (ids::STATIC, Some(_)) => return Err(DecodeError::StaticWithAmount),
        (ids::DYNAMIC, None) => return Err(DecodeError::DynamicWithoutAmount),
        (ids::DYNAMIC, Some(amount)) => Initiation::Dynamic {
            amount: read_amount(amount)?,
        },
        (found, _) => {
            return Err(DecodeError::BadInitiation {
                found: found.to_owned(),
            });
        }
    };
    let (merchant_account, unit) = read_merchant_account(objects)?;
    let category = text(ids::CATEGORY, "merchant category code")?;
    let category = CategoryCode::parse(category).map_err(|_| DecodeError::BadCategory {
        found: category.to_owned(),
    })?;
    let currency = text(ids::CURRENCY, "transaction currency")?;
    let currency_numeric = match currency.parse::<u16>() {
        Ok(n) if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(DecodeError::BadCurrency {
                found: currency.to_owned(),
            });
        }
    };
    let (reference, terminal) = match top[usize::from(ids::ADDITIONAL_DATA)] {
        Some(object) => read_additional_data(object.value)?,
        None => (None, None),
    };
    let alternate = top[usize::from(ids::LANGUAGE_TEMPLATE)]
        .map(|o| read_alternate(o.value))
        .transpose()?;
    Ok(PaymentRequestPayload {
        initiation,
        merchant_account,
        unit,
        category,
        currency_numeric,
        country: text(ids::COUNTRY, "country code")?.to_owned(),
        merchant_name: text(ids::NAME, "merchant name")?.to_owned(),
        city: text(ids::CITY, "merchant city")?.to_owned(),
        reference,
        terminal,
        alternate,
    })
}

/// Reads `54`: digits, optionally `.` and 1-8 more, exactly as [`RequestAmount::text`]
/// writes it (no leading zeros, no `+`), more than zero and at most 13 characters.
fn read_amount(text: &str) -> Result<RequestAmount, DecodeError> {
    let bad = |reason: &str| DecodeError::BadAmount {
        found: text.chars().take(MAX_AMOUNT_CHARS + 1).collect(),
        reason: reason.to_owned(),
    };
    if text.len() > MAX_AMOUNT_CHARS {
        return Err(bad("EMV allows at most 13 characters"));
    }
    let scale = match text.split_once('.') {
        Some((_, fraction)) => u8::try_from(fraction.len()).unwrap_or(u8::MAX),
        None => 0,
    };
    if scale > MAX_SCALE {
        return Err(bad("more decimals than any unit has"));
    }
    let value = Amount::parse(text, scale).map_err(|e| bad(&e.to_string()))?;
    let amount = RequestAmount { value, scale };
    if amount.text() != text {
        return Err(bad("not in canonical form (no leading zeros)"));
    }
    fields::check_amount(&amount).map_err(|e| bad(&e.to_string()))?;
    Ok(amount)
}

/// Parses a template's value into sub-IDs, refusing duplicates and sub-IDs not in `allowed`.
fn template<'a>(id: u8, value: &'a str, allowed: &[u8]) -> Result<Index<'a>, DecodeError> {
    let scope = Scope::Template(id);
    let objects = tlv::parse(value, scope)?;
    let index = index(&objects, scope)?;
    if let Some(other) = objects.iter().find(|o| !allowed.contains(&o.id)) {
        return Err(DecodeError::UnsupportedId {
            path: scope.path(other.id),
        });
    }
    Ok(index)
}

/// Checks that a template in 26-51 or 80-99 starts with our GUID.
fn check_guid(object: &DataObject<'_>) -> Result<(), DecodeError> {
    let id = format!("{:02}", object.id);
    let objects = tlv::parse(object.value, Scope::Template(object.id))?;
    match objects.first() {
        Some(first) if first.id == ids::GUID && first.value == COLEDGER_GUID => Ok(()),
        Some(first) if first.id == ids::GUID => Err(DecodeError::UnknownGuid {
            id,
            found: first.value.chars().take(40).collect(),
        }),
        _ => Err(DecodeError::GuidNotFirst { id }),
    }
}

/// A sub-ID's value, which must be present and printable ASCII.
fn sub_field<'a>(
    index: &Index<'a>,
    template: u8,
    id: u8,
    name: &'static str,
) -> Result<&'a str, DecodeError> {
    let path = || Scope::Template(template).path(id);
    let value = index[usize::from(id)]
        .map(|o| o.value)
        .ok_or_else(|| DecodeError::Missing { path: path(), name })?;
    ans(path, value)
}

/// Finds our merchant account template in 26-51 and reads the account id and unit.
fn read_merchant_account(objects: &[DataObject<'_>]) -> Result<(AccountId, UnitCode), DecodeError> {
    let mut found: Option<DataObject<'_>> = None;
    for object in objects.iter().filter(|o| {
        ids::MERCHANT_ACCOUNT_TEMPLATES.contains(&o.id) || ids::UNRESERVED_TEMPLATES.contains(&o.id)
    }) {
        check_guid(object)?;
        if !ids::MERCHANT_ACCOUNT_TEMPLATES.contains(&object.id) {
            continue;
        }
        if let Some(first) = found {
            return Err(DecodeError::MerchantAccountTwice {
                first: format!("{:02}", first.id),
                second: format!("{:02}", object.id),
            });
        }
        found = Some(*object);
    }
    let object = found.ok_or_else(|| DecodeError::Missing {
        path: "26-51".to_owned(),
        name: "coledger merchant account template",
    })?;
    let sub = template(
        object.id,
        object.value,
        &[ids::GUID, ids::ACCOUNT_ID, ids::ACCOUNT_UNIT],
    )?;
    let account = sub_field(&sub, object.id, ids::ACCOUNT_ID, "merchant account id")?;
    let merchant_account = account
        .parse::<AccountId>()
        .ok()
        .filter(|parsed| parsed.to_string() == account)
        .ok_or_else(|| DecodeError::BadMerchantAccount {
            found: account.chars().take(40).collect(),
        })?;
    let unit = sub_field(&sub, object.id, ids::ACCOUNT_UNIT, "unit code")?;
    let unit = UnitCode::new(unit).map_err(|_| DecodeError::BadUnit {
        found: unit.chars().take(40).collect(),
    })?;
    Ok((merchant_account, unit))
}

/// Reads template 62: the reference label and terminal label, both optional.
fn read_additional_data(
    value: &str,
) -> Result<(Option<ledger::PaymentRequestId>, Option<String>), DecodeError> {
    let sub = template(
        ids::ADDITIONAL_DATA,
        value,
        &[ids::REFERENCE, ids::TERMINAL],
    )?;
    let path = |id| move || Scope::Template(ids::ADDITIONAL_DATA).path(id);
    let reference = match sub[usize::from(ids::REFERENCE)] {
        Some(object) => {
            let label = ans(path(ids::REFERENCE), object.value)?;
            Some(
                ids::parse_reference_label(label).ok_or_else(|| DecodeError::BadReference {
                    found: label.to_owned(),
                })?,
            )
        }
        None => None,
    };
    let terminal = sub[usize::from(ids::TERMINAL)]
        .map(|o| ans(path(ids::TERMINAL), o.value).map(str::to_owned))
        .transpose()?;
    Ok((reference, terminal))
}

/// Reads template 64: language (ans), and name and city in any script.
fn read_alternate(value: &str) -> Result<AlternateLanguage, DecodeError> {
    let template_id = ids::LANGUAGE_TEMPLATE;
    let sub = template(
        template_id,
        value,
        &[ids::LANGUAGE, ids::ALTERNATE_NAME, ids::ALTERNATE_CITY],
    )?;
    let language = sub_field(&sub, template_id, ids::LANGUAGE, "language preference")?;
    let name = sub[usize::from(ids::ALTERNATE_NAME)].ok_or_else(|| DecodeError::Missing {
        path: Scope::Template(template_id).path(ids::ALTERNATE_NAME),
        name: "merchant name, alternate language",
    })?;
    Ok(AlternateLanguage {
        language: language.to_owned(),
        name: name.value.to_owned(),
        city: sub[usize::from(ids::ALTERNATE_CITY)].map(|o| o.value.to_owned()),
    })
}

/// Finds the signature templates, directly before the CRC, and returns the signature with
/// the part of `text` it covers.
fn read_signature<'a>(
    text: &'a str,
    objects: &[DataObject<'_>],
    top: &Index<'_>,
) -> Result<(Signature, &'a str), DecodeError> {
    let first = top[usize::from(ids::SIGNATURE_FIRST)];
    let second = top[usize::from(ids::SIGNATURE_SECOND)];
    if let Some(other) = objects.iter().find(|o| {
        ids::UNRESERVED_TEMPLATES.contains(&o.id)
            && o.id != ids::SIGNATURE_FIRST
            && o.id != ids::SIGNATURE_SECOND
    }) {
        return Err(DecodeError::UnsupportedId {
            path: format!("{:02}", other.id),
        });
    }
    let (Some(first), Some(second)) = (first, second) else {
        return Err(DecodeError::SignatureMissing);
    };
    let tail: Vec<u8> = objects.iter().rev().take(3).map(|o| o.id).collect();
    if tail != [ids::CRC, ids::SIGNATURE_SECOND, ids::SIGNATURE_FIRST] {
        return Err(DecodeError::SignatureMisplaced);
    }
    let half = |object: DataObject<'_>| -> Result<String, DecodeError> {
        let sub = template(object.id, object.value, &[ids::GUID, ids::SIGNATURE_HALF])?;
        sub_field(&sub, object.id, ids::SIGNATURE_HALF, "signature half").map(str::to_owned)
    };
    let signature = signature::join(&half(first)?, &half(second)?)?;
    Ok((signature, &text[..first.start]))
}
