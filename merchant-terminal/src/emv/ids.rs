//! The data object IDs and sub-IDs this module writes and reads, in one place.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::PaymentRequestId;

/// `00`: payload format indicator, always first.
pub(crate) const FORMAT_INDICATOR: u8 = 0;
/// The only payload format EMV defines so far.
pub(crate) const FORMAT_VERSION: &str = "01";
/// `01`: point of initiation method.
pub(crate) const INITIATION: u8 = 1;
/// Point of initiation: a code shown again and again (a sticker).
pub(crate) const STATIC: &str = "11";
/// Point of initiation: a code for one payment.
pub(crate) const DYNAMIC: &str = "12";
/// The template our merchant account is written into, and the only one it is read from.
pub(crate) const MERCHANT_ACCOUNT: u8 = 26;
/// IDs EMV gives to merchant account templates carrying a GUID.
pub(crate) const MERCHANT_ACCOUNT_TEMPLATES: std::ops::RangeInclusive<u8> = 26..=51;
/// `52`: merchant category code.
pub(crate) const CATEGORY: u8 = 52;
/// `53`: transaction currency.
pub(crate) const CURRENCY: u8 = 53;
/// `54`: transaction amount.
pub(crate) const AMOUNT: u8 = 54;
/// `58`: country code.
pub(crate) const COUNTRY: u8 = 58;
/// `59`: merchant name.
pub(crate) const NAME: u8 = 59;
/// `60`: merchant city.
pub(crate) const CITY: u8 = 60;
/// `62`: additional data field template.
pub(crate) const ADDITIONAL_DATA: u8 = 62;
/// `63`: CRC, always last.
pub(crate) const CRC: u8 = 63;
/// What the CRC covers after the rest of the payload: its own ID and length.
pub(crate) const CRC_HEADER: &str = "6304";
/// `64`: merchant information, alternate language template.
pub(crate) const LANGUAGE_TEMPLATE: u8 = 64;
/// `80`: unreserved template with the signature's first half.
pub(crate) const SIGNATURE_FIRST: u8 = 80;
/// `81`: unreserved template with the signature's second half.
pub(crate) const SIGNATURE_SECOND: u8 = 81;
/// IDs EMV leaves unreserved for templates carrying a GUID.
pub(crate) const UNRESERVED_TEMPLATES: std::ops::RangeInclusive<u8> = 80..=99;

/// Sub-ID `00` of templates 26-51 and 80-99: the globally unique identifier.
pub(crate) const GUID: u8 = 0;
/// Sub-ID `01` of our merchant account template: the account id.
pub(crate) const ACCOUNT_ID: u8 = 1;
/// Sub-ID `02` of our merchant account template: the unit code.
pub(crate) const ACCOUNT_UNIT: u8 = 2;
/// Sub-ID `05` of template 62: reference label.
pub(crate) const REFERENCE: u8 = 5;
/// Sub-ID `07` of template 62: terminal label.
pub(crate) const TERMINAL: u8 = 7;
/// Sub-ID `00` of template 64: language preference.
pub(crate) const LANGUAGE: u8 = 0;
/// Sub-ID `01` of template 64: merchant name in that language.
pub(crate) const ALTERNATE_NAME: u8 = 1;
/// Sub-ID `02` of template 64: merchant city in that language.
pub(crate) const ALTERNATE_CITY: u8 = 2;
/// Sub-ID `01` of templates 80 and 81: half of the signature.
pub(crate) const SIGNATURE_HALF: u8 = 1;

/// Characters of a reference label holding a payment request id.
pub(crate) const REFERENCE_LABEL_CHARS: usize = 22;

/// A payment request id as a reference label: unpadded base64url of its 16 bytes, because a
/// label holds at most 25 characters and a hyphenated UUID has 36.
pub(crate) fn reference_label(request: PaymentRequestId) -> String {
    URL_SAFE_NO_PAD.encode(request.as_bytes())
}

/// Reads a reference label back; `None` unless it is exactly what [`reference_label`] writes.
pub(crate) fn parse_reference_label(label: &str) -> Option<PaymentRequestId> {
    if label.len() != REFERENCE_LABEL_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(label).ok()?;
    Some(PaymentRequestId::from_bytes(bytes.try_into().ok()?))
}

/// Whether this module gives top-level ID `id` a meaning.
pub(crate) fn is_known(id: u8) -> bool {
    matches!(
        id,
        FORMAT_INDICATOR
            | INITIATION
            | CATEGORY
            | CURRENCY
            | AMOUNT
            | COUNTRY
            | NAME
            | CITY
            | ADDITIONAL_DATA
            | CRC
            | LANGUAGE_TEMPLATE
    ) || MERCHANT_ACCOUNT_TEMPLATES.contains(&id)
        || UNRESERVED_TEMPLATES.contains(&id)
}
