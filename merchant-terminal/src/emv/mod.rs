//! Payment requests as EMVCo merchant-presented QR payloads (EMV QRCPS Merchant-Presented
//! Mode v1.1), signed by the merchant's ed25519 key, and the https pay link beside them.
//!
//! # Layout
//!
//! A payload is a run of data objects, each an ID (2 digits), a length (2 digits, 01-99) and
//! a value of that many characters. [`encode`] writes, in this order:
//!
//! | ID | content |
//! |----|---------|
//! | `00` | payload format indicator `01` (always first) |
//! | `01` | point of initiation: `11` static (a sticker), `12` dynamic (one request) |
//! | `26` | merchant account template: `00` GUID [`COLEDGER_GUID`], `01` the merchant's account id (hyphenated lower-case UUID, 36 characters), `02` the unit code (e.g. `PGI-EUR`) |
//! | `52` | merchant category code, 4 digits (ISO 18245) |
//! | `53` | currency, ISO 4217 numeric, 3 digits; `999` for units pegged to no currency ([`currency_numeric`]) |
//! | `54` | amount, dynamic only: digits, and `.` then exactly the unit's scale in decimals (`12.50`); at most 13 characters |
//! | `58` | country, ISO 3166-1 alpha-2 (`ES`) |
//! | `59` | merchant name, at most 25 characters |
//! | `60` | merchant city, at most 15 characters |
//! | `62` | additional data (only when there is some): `05` reference label = the payment request id as unpadded base64url of its 16 bytes (22 characters, because a label holds at most 25), `07` terminal label |
//! | `64` | merchant information in an alternate language (optional): `00` ISO 639-1 language, `01` name (≤ 25), `02` city (≤ 15, optional) |
//! | `80` | signature, first half: `00` GUID [`COLEDGER_GUID`], `01` characters 1-43 of the signature |
//! | `81` | signature, second half: `00` GUID [`COLEDGER_GUID`], `01` characters 44-86 of the signature |
//! | `63` | CRC, always last: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of the UTF-8 bytes of the whole payload up to and including `6304`, as 4 upper-case hex digits |
//!
//! # The signature
//!
//! The merchant signs, with pure Ed25519 (RFC 8032, no pre-hash), the bytes of
//! [`SIGNED_MESSAGE_PREFIX`] (`coledger/v1/payment-request` and one line feed, 0x0A) followed
//! by the UTF-8 bytes of the payload from its first character up to, not including, the `8`
//! of the `80` data object; that is every data object above except `80`, `81` and `63`,
//! exactly as they appear in the QR code. The 64-byte signature is written as unpadded
//! base64url (86 characters); a value holds at most 99 characters, so it is split across two
//! unreserved templates, 43 characters each. The signature templates must be the last data
//! objects before the CRC, so nothing unsigned can sit among the signed data.
//!
//! # Lengths and character sets
//!
//! EMV counts lengths in characters, not bytes. Here a character is a Unicode scalar value
//! (a Rust `char`): an Arabic letter with a vowel mark (fatha) counts as two, whatever a
//! screen shows as one glyph. Every value is printable ASCII (EMV "ans", 0x20-0x7E) except
//! the alternate-language name and city (`64`/`01`, `64`/`02`), which may hold any Unicode
//! except control characters; the QR code carries the payload as UTF-8 bytes and the CRC is
//! computed over those bytes. Merchant names with accents go in `64` and an ASCII spelling
//! in `59`.
//!
//! # Strictness
//!
//! [`decode`] refuses, each with its own [`DecodeError`], anything this module would not
//! write: data objects and sub-IDs it does not define (tip indicators, postal codes, other
//! payment networks' templates), templates under another GUID, duplicates, non-canonical
//! amounts and ids; and, when every field is valid, any other order of data objects or
//! sub-IDs, or our merchant account under another template ID than 26
//! ([`DecodeError::NotCanonical`]: it writes the payload again and compares), so one request
//! has one payload. A wallet must not pay a code it only half understands. It checks the CRC
//! but not the signature, which needs the merchant's key: look the key up by
//! [`PaymentRequestPayload::merchant_account`], then call [`Decoded::verify`] (or use
//! [`decode_verified`]). The server's copy of a request, fetched by its reference, stays
//! authoritative.

mod crc;
mod currency;
mod decode;
mod encode;
mod fields;
mod ids;
mod signature;
mod tlv;

#[cfg(test)]
mod tests;

use ledger::{AccountId, Amount, AmountError, CategoryCode, PaymentRequestId, UnitCode};

pub use crc::crc16_ccitt_false;
pub use currency::{
    NO_CURRENCY, UnknownCurrency, currencies, currency_alpha, currency_for_peg, currency_numeric,
};
pub use decode::{DecodeError, Decoded, decode, decode_verified, verify};
pub use encode::{EncodeError, encode};
pub use fields::FieldError;

/// Our globally unique identifier, sub-ID `00` of every template we write (`26`, `80`, `81`):
/// a reverse domain name, as EMV allows for GUIDs.
pub const COLEDGER_GUID: &str = "org.coledger";
/// What the merchant's signature covers before the payload itself; the version in it changes
/// whenever the signed message does.
pub const SIGNED_MESSAGE_PREFIX: &str = "coledger/v1/payment-request\n";
/// The longest payload, in characters, that EMV allows and [`decode`] reads.
pub const MAX_PAYLOAD_CHARS: usize = 512;
/// Most characters in the merchant name (`59`) and its alternate-language form (`64`/`01`).
pub const MAX_NAME_CHARS: usize = 25;
/// Most characters in the merchant city (`60`) and its alternate-language form (`64`/`02`).
pub const MAX_CITY_CHARS: usize = 15;
/// Most characters in the terminal label (`62`/`07`).
pub const MAX_LABEL_CHARS: usize = 25;
/// Most characters in the amount (`54`), decimal point included.
pub const MAX_AMOUNT_CHARS: usize = 13;

/// How the code is used: EMV's point of initiation method (`01`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Initiation {
    /// `11`: a sticker at a shop with no device; no amount, the payer types it.
    Static,
    /// `12`: one payment request for a stated amount.
    Dynamic {
        /// What the merchant asks.
        amount: RequestAmount,
    },
}

/// An amount as written in a QR code: minor units and the number of decimals written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestAmount {
    /// The amount in minor units of `scale` decimals; never zero in a valid payload.
    pub value: Amount,
    /// Decimals written after the `.` (the unit's scale); 0 writes no `.` at all.
    pub scale: u8,
}

impl RequestAmount {
    /// The amount as EMV text: `12.50` for 1250 at scale 2, `7` for 7 at scale 0.
    pub fn text(&self) -> String {
        self.value.format(self.scale)
    }

    /// The amount in minor units of a unit with `unit_scale` decimals; an amount written with
    /// more decimals than the unit has is an error, never a rounding.
    pub fn in_unit_scale(&self, unit_scale: u8) -> Result<Amount, AmountError> {
        Amount::parse(&self.text(), unit_scale)
    }
}

/// The merchant's name and city in a second language (EMV template `64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlternateLanguage {
    /// ISO 639-1 code, two ASCII letters, such as `ar` or `el`.
    pub language: String,
    /// The name in that language, any script, at most [`MAX_NAME_CHARS`] characters.
    pub name: String,
    /// The city in that language, at most [`MAX_CITY_CHARS`] characters.
    pub city: Option<String>,
}

/// Everything a payment-request QR code says, signature aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequestPayload {
    /// Static sticker or dynamic request, with its amount.
    pub initiation: Initiation,
    /// The account the payment goes to; the wallet looks up the merchant's key by it.
    pub merchant_account: AccountId,
    /// The unit asked for.
    pub unit: UnitCode,
    /// The merchant's category (ISO 18245).
    pub category: CategoryCode,
    /// ISO 4217 numeric currency, 1-999; [`NO_CURRENCY`] (999) for units pegged to none.
    pub currency_numeric: u16,
    /// ISO 3166-1 alpha-2 country, two upper-case letters.
    pub country: String,
    /// The merchant's name, printable ASCII, at most [`MAX_NAME_CHARS`] characters.
    pub merchant_name: String,
    /// The merchant's city, printable ASCII, at most [`MAX_CITY_CHARS`] characters.
    pub city: String,
    /// The payment request this code asks the payer to settle.
    pub reference: Option<PaymentRequestId>,
    /// The terminal's label, printable ASCII, at most [`MAX_LABEL_CHARS`] characters.
    pub terminal: Option<String>,
    /// Name and city in the merchant's own language and script.
    pub alternate: Option<AlternateLanguage>,
}

impl PaymentRequestPayload {
    /// The amount asked, for a dynamic request.
    pub fn amount(&self) -> Option<RequestAmount> {
        match &self.initiation {
            Initiation::Static => None,
            Initiation::Dynamic { amount } => Some(*amount),
        }
    }
}

/// The https link that opens a payment request in a wallet: `{base_url}/pay/{request}`, the
/// request id hyphenated; a trailing `/` on `base_url` is dropped so the link never holds `//`.
pub fn pay_link(base_url: &str, request: PaymentRequestId) -> String {
    format!("{}/pay/{request}", base_url.trim_end_matches('/'))
}
