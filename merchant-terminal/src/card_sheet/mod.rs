//! Printable A4 sheets of beneficiary cards, as SVG pages or one PDF.
//!
//! A municipality prints each household's card (ID-1, 85.60 × 53.98 mm) with the scheme name,
//! the holder's name, the grouped card number, a QR code and a few labels in the household's
//! language. Ten cards fit on an A4 page, two columns by five rows, each with a thin outline
//! to cut along.
//!
//! Both formats are drawn from one layout (module `layout`), so a card looks the same in each:
//! - SVG keeps text as `<text>` with `xml:lang`, and for Arabic `direction="rtl"`; the viewer
//!   shapes and orders it, preferring DejaVu Sans.
//! - PDF embeds a subset of DejaVu Sans (shipped in `fonts/`, covering Latin, Greek and Arabic)
//!   and places glyphs that were ordered with the Unicode bidi algorithm and shaped with
//!   `rustybuzz`, so Arabic letters join and read right to left; a ToUnicode map keeps the
//!   text searchable and copyable.
//!
//! Invariants: every card is validated before anything is drawn, and an unknown language is
//! an error rather than a silent fallback to English, because a household that cannot read
//! its card's PIN warning is worse off than a batch that is corrected and printed again.
//!
//! Limits, by choice:
//! - Each text is one line, shrunk to its column when too wide (measured with DejaVu Sans);
//!   nothing wraps. SVG viewers without DejaVu Sans may draw a wider fallback font.
//! - Card numbers use digits 0-9 and read left to right on every card, Arabic included.
//! - Names may use only characters DejaVu Sans draws (Latin, Greek, Cyrillic, Arabic, …);
//!   others are refused rather than printed as empty boxes.
//! - The PDF is not tagged: text is extractable through its ToUnicode map, in visual order.

mod labels;
mod layout;
mod pdf;
mod svg;
mod text;

pub use labels::Language;

use crate::qr_matrix::QrMatrix;
use text::Shaper;

/// Cards on one A4 page: two columns by five rows.
pub const CARDS_PER_PAGE: usize = 10;
/// Most cards one call renders (a thousand pages); larger runs are split by the caller.
pub const MAX_CARDS: usize = 10_000;
/// Most bytes in a QR payload; 200 bytes fit QR version 10 at error correction level M, whose
/// modules stay about 0.37 mm wide in the card's QR box, still easy for a phone camera.
pub const MAX_QR_PAYLOAD_BYTES: usize = 200;
/// Most characters in a scheme name; longer names are shrunk to fit, this bounds the shrinking.
pub const MAX_SCHEME_NAME_CHARS: usize = 48;
/// Most characters in a holder's name; longer names are shrunk to fit, this bounds the shrinking.
pub const MAX_HOLDER_NAME_CHARS: usize = 48;
/// Digits in a card number.
pub const CARD_NUMBER_DIGITS: usize = 16;
/// Width in modules of QR version 10, the largest a card prints (see `MAX_QR_PAYLOAD_BYTES`).
const MAX_QR_WIDTH_MODULES: usize = 57;

/// What is printed on one beneficiary card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFace {
    /// The scheme's name, printed as the card's logo text, e.g. "Moneda Social Sevilla".
    pub scheme_name: String,
    /// The holder's name as the household wrote it, in any script DejaVu Sans covers.
    pub holder_name: String,
    /// Sixteen ASCII digits, ungrouped; printed as `1234 5678 9012 3456`.
    pub card_number: String,
    /// The string the card's QR code encodes (at most [`MAX_QR_PAYLOAD_BYTES`] bytes).
    pub qr_payload: String,
    /// The household's language as a BCP 47 tag (`ar`, `es-ES`, …); only the primary subtag
    /// counts, and it must be one of [`Language`].
    pub language: String,
}

/// Why a sheet of cards could not be rendered. `index` is the card's position in the input.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SheetError {
    /// No cards were given, so there is no page to print.
    #[error("no cards to print")]
    Empty,
    /// More cards than [`MAX_CARDS`] were given in one call.
    #[error("{count} cards given, at most {max} per sheet run")]
    TooManyCards {
        /// Cards given.
        count: usize,
        /// The limit, [`MAX_CARDS`].
        max: usize,
    },
    /// The card number is not exactly sixteen ASCII digits.
    #[error("card {index}: card number must be {CARD_NUMBER_DIGITS} digits")]
    InvalidCardNumber {
        /// Position of the card in the input.
        index: usize,
    },
    /// The language's primary subtag is not one the cards are translated into.
    #[error("card {index}: no card labels for language {language:?} (en, es, el, ar, pt, fr)")]
    UnknownLanguage {
        /// Position of the card in the input.
        index: usize,
        /// The tag as given.
        language: String,
    },
    /// The QR payload is empty.
    #[error("card {index}: QR payload is empty")]
    EmptyQrPayload {
        /// Position of the card in the input.
        index: usize,
    },
    /// The QR payload is longer than [`MAX_QR_PAYLOAD_BYTES`].
    #[error("card {index}: QR payload is {bytes} bytes, at most {max} fit the card")]
    QrPayloadTooLong {
        /// Position of the card in the input.
        index: usize,
        /// Length of the payload in bytes.
        bytes: usize,
        /// The limit, [`MAX_QR_PAYLOAD_BYTES`].
        max: usize,
    },
    /// A name is empty, too long, or holds control characters.
    #[error("card {index}: {field} must be 1 to {max} printable characters")]
    InvalidName {
        /// Position of the card in the input.
        index: usize,
        /// `scheme_name` or `holder_name`.
        field: &'static str,
        /// The field's character limit.
        max: usize,
    },
    /// A name holds a character the embedded font cannot draw (it would print as a box).
    #[error("card {index}: {field} has {character:?}, which the card font cannot print")]
    UnsupportedCharacter {
        /// Position of the card in the input.
        index: usize,
        /// `scheme_name` or `holder_name`.
        field: &'static str,
        /// The first such character.
        character: char,
    },
    /// The embedded font could not be read; a build defect, not an input error.
    #[error("embedded font is unreadable: {0}")]
    Font(&'static str),
}

/// A card that passed validation, with its QR matrix built and its language resolved.
struct ValidCard<'a> {
    face: &'a CardFace,
    language: Language,
    qr: QrMatrix,
}

/// Renders one A4 SVG document per page, [`CARDS_PER_PAGE`] cards per page, in input order.
pub fn render_svg_pages(cards: &[CardFace]) -> Result<Vec<String>, SheetError> {
    let shaper = Shaper::new()?;
    let valid = validate_all(cards, &shaper)?;
    let pages = valid
        .chunks(CARDS_PER_PAGE)
        .map(|page| svg::render_page(&layout::page(page, &shaper)))
        .collect();
    Ok(pages)
}

/// Renders one PDF document of A4 pages, [`CARDS_PER_PAGE`] cards per page, in input order,
/// with a subset of DejaVu Sans embedded.
pub fn render_pdf(cards: &[CardFace]) -> Result<Vec<u8>, SheetError> {
    let shaper = Shaper::new()?;
    let valid = validate_all(cards, &shaper)?;
    let pages: Vec<_> = valid
        .chunks(CARDS_PER_PAGE)
        .map(|page| layout::page(page, &shaper))
        .collect();
    pdf::render(&pages, &shaper)
}

fn validate_all<'a>(
    cards: &'a [CardFace],
    shaper: &Shaper,
) -> Result<Vec<ValidCard<'a>>, SheetError> {
    if cards.is_empty() {
        return Err(SheetError::Empty);
    }
    if cards.len() > MAX_CARDS {
        return Err(SheetError::TooManyCards {
            count: cards.len(),
            max: MAX_CARDS,
        });
    }
    cards
        .iter()
        .enumerate()
        .map(|(index, face)| validate(index, face, shaper))
        .collect()
}

fn validate<'a>(
    index: usize,
    face: &'a CardFace,
    shaper: &Shaper,
) -> Result<ValidCard<'a>, SheetError> {
    check_name(
        index,
        "scheme_name",
        &face.scheme_name,
        MAX_SCHEME_NAME_CHARS,
        shaper,
    )?;
    check_name(
        index,
        "holder_name",
        &face.holder_name,
        MAX_HOLDER_NAME_CHARS,
        shaper,
    )?;
    let number = &face.card_number;
    if number.len() != CARD_NUMBER_DIGITS || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SheetError::InvalidCardNumber { index });
    }
    let language =
        Language::from_tag(&face.language).ok_or_else(|| SheetError::UnknownLanguage {
            index,
            language: face.language.clone(),
        })?;
    let bytes = face.qr_payload.len();
    if bytes == 0 {
        return Err(SheetError::EmptyQrPayload { index });
    }
    if bytes > MAX_QR_PAYLOAD_BYTES {
        return Err(SheetError::QrPayloadTooLong {
            index,
            bytes,
            max: MAX_QR_PAYLOAD_BYTES,
        });
    }
    // Within the byte limit every payload fits version 10-M, so this cannot fail; it is still
    // reported as the same error rather than trusted.
    let qr = QrMatrix::encode(&face.qr_payload)
        .filter(|matrix| matrix.width() <= MAX_QR_WIDTH_MODULES)
        .ok_or(SheetError::QrPayloadTooLong {
            index,
            bytes,
            max: MAX_QR_PAYLOAD_BYTES,
        })?;
    Ok(ValidCard { face, language, qr })
}

fn check_name(
    index: usize,
    field: &'static str,
    name: &str,
    max: usize,
    shaper: &Shaper,
) -> Result<(), SheetError> {
    let chars = name.chars().count();
    let printable = !name.chars().any(char::is_control);
    if chars == 0 || chars > max || !printable || name.trim().is_empty() {
        return Err(SheetError::InvalidName { index, field, max });
    }
    if let Some(character) = shaper.first_missing(name) {
        return Err(SheetError::UnsupportedCharacter {
            index,
            field,
            character,
        });
    }
    Ok(())
}

/// Groups a validated sixteen-digit number in fours: `1234 5678 9012 3456`.
fn group_card_number(digits: &str) -> String {
    let mut grouped = String::with_capacity(CARD_NUMBER_DIGITS + 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests;
