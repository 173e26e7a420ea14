//! Where everything goes on a page, in millimetres from the page's top-left corner, y down.
//! The SVG and PDF writers draw these elements and decide nothing themselves.

use super::ValidCard;
use super::text::{Direction, ShapedLine, Shaper};
use crate::qr_matrix::{QUIET_ZONE_MODULES, QrMatrix};

/// A4 portrait.
pub(crate) const PAGE_WIDTH_MM: f64 = 210.0;
/// A4 portrait.
pub(crate) const PAGE_HEIGHT_MM: f64 = 297.0;
/// ID-1 (ISO/IEC 7810).
const CARD_WIDTH_MM: f64 = 85.60;
/// ID-1 (ISO/IEC 7810).
const CARD_HEIGHT_MM: f64 = 53.98;
/// ID-1 corner radius.
const CARD_RADIUS_MM: f64 = 3.18;
const COLUMNS: usize = 2;
const COLUMN_GAP_MM: f64 = 6.0;
const ROW_GAP_MM: f64 = 2.0;
/// Text keeps this far from the card's edges.
const PADDING_MM: f64 = 4.0;
const BAND_HEIGHT_MM: f64 = 12.0;
/// The QR box, quiet zone included, and its distance from the card's side and top.
const QR_BOX_MM: f64 = 24.0;
const QR_SIDE_MM: f64 = 1.5;
const QR_TOP_MM: f64 = 13.5;
/// Gap between the text column and the QR box.
const QR_GAP_MM: f64 = 1.0;

const BAND: Rgb = Rgb(0x0F, 0x5E, 0x6E);
const WHITE: Rgb = Rgb(0xFF, 0xFF, 0xFF);
const INK: Rgb = Rgb(0x11, 0x11, 0x11);
const GREY: Rgb = Rgb(0x55, 0x55, 0x55);
const WARNING: Rgb = Rgb(0x9B, 0x1C, 0x1C);
const OUTLINE: Rgb = Rgb(0x99, 0x99, 0x99);
const OUTLINE_WIDTH_MM: f64 = 0.2;

/// A colour, 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

/// One step of an outline, in millimetres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PathOp {
    Move(f64, f64),
    Line(f64, f64),
    /// Two control points, then the end point.
    Cubic(f64, f64, f64, f64, f64, f64),
    Close,
}

/// How an outline is painted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Paint {
    Fill(Rgb),
    /// Colour and line width in millimetres.
    Stroke(Rgb, f64),
}

/// Which physical edge of the text sits at `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    Left,
    Right,
}

/// One line of text, already shaped with the embedded font and sized to fit.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TextItem {
    /// The text in logical order, as the SVG writes it.
    pub text: String,
    pub lang: &'static str,
    pub direction: Direction,
    pub anchor: Anchor,
    pub x: f64,
    pub baseline: f64,
    /// Font size in millimetres (the em).
    pub size: f64,
    pub color: Rgb,
    /// The glyphs the PDF places.
    pub line: ShapedLine,
    /// Width at `size`, in millimetres.
    pub width: f64,
}

impl TextItem {
    /// The x of the text's left edge.
    pub fn left(&self) -> f64 {
        match self.anchor {
            Anchor::Left => self.x,
            Anchor::Right => self.x - self.width,
        }
    }
}

/// Something drawn on a page.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Element {
    Path {
        ops: Vec<PathOp>,
        paint: Paint,
    },
    Text(TextItem),
    /// A QR code; (`x`, `y`) is the top-left of its first module, quiet zone excluded.
    Qr {
        x: f64,
        y: f64,
        module: f64,
        matrix: QrMatrix,
    },
}

/// One page's elements, in painting order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Page {
    pub elements: Vec<Element>,
}

/// Lays out up to ten cards on a page, filling rows left to right, top to bottom.
pub(crate) fn page(cards: &[ValidCard<'_>], shaper: &Shaper) -> Page {
    let grid_width = COLUMNS as f64 * CARD_WIDTH_MM + COLUMN_GAP_MM;
    let rows = super::CARDS_PER_PAGE / COLUMNS;
    let grid_height = rows as f64 * CARD_HEIGHT_MM + (rows - 1) as f64 * ROW_GAP_MM;
    let left = (PAGE_WIDTH_MM - grid_width) / 2.0;
    let top = (PAGE_HEIGHT_MM - grid_height) / 2.0;
    let mut elements = Vec::new();
    for (i, card) in cards.iter().enumerate() {
        let x = left + (i % COLUMNS) as f64 * (CARD_WIDTH_MM + COLUMN_GAP_MM);
        let y = top + (i / COLUMNS) as f64 * (CARD_HEIGHT_MM + ROW_GAP_MM);
        card_elements(x, y, card, shaper, &mut elements);
    }
    Page { elements }
}

/// One card at (`x`, `y`): band with the scheme name, name, number and label beside the QR
/// code, wording across the foot. Right-to-left cards mirror the layout.
fn card_elements(x: f64, y: f64, card: &ValidCard<'_>, shaper: &Shaper, out: &mut Vec<Element>) {
    let rtl = card.language.is_rtl();
    let direction = if rtl { Direction::Rtl } else { Direction::Ltr };
    let lang = card.language.tag();
    let labels = card.language.labels();
    let band = rounded_rect(x, y, CARD_WIDTH_MM, BAND_HEIGHT_MM, CARD_RADIUS_MM, false);
    out.push(Element::Path {
        ops: band,
        paint: Paint::Fill(BAND),
    });
    let outline = rounded_rect(x, y, CARD_WIDTH_MM, CARD_HEIGHT_MM, CARD_RADIUS_MM, true);
    out.push(Element::Path {
        ops: outline,
        paint: Paint::Stroke(OUTLINE, OUTLINE_WIDTH_MM),
    });

    let qr_x = if rtl {
        x + QR_SIDE_MM
    } else {
        x + CARD_WIDTH_MM - QR_SIDE_MM - QR_BOX_MM
    };
    let qr_width = card.qr.width();
    let module = QR_BOX_MM / (qr_width + 2 * QUIET_ZONE_MODULES) as f64;
    let quiet = QUIET_ZONE_MODULES as f64 * module;
    out.push(Element::Qr {
        x: qr_x + quiet,
        y: y + QR_TOP_MM + quiet,
        module,
        matrix: card.qr.clone(),
    });

    // The text column beside the QR box, and the full width for the foot.
    let (column_left, column_right) = if rtl {
        (qr_x + QR_BOX_MM + QR_GAP_MM, x + CARD_WIDTH_MM - PADDING_MM)
    } else {
        (x + PADDING_MM, qr_x - QR_GAP_MM)
    };
    let full = (x + PADDING_MM, x + CARD_WIDTH_MM - PADDING_MM);
    let line = |text: &str, columns: (f64, f64), baseline: f64, size: f64, color: Rgb| Line {
        text: text.to_owned(),
        lang,
        direction,
        columns,
        baseline: y + baseline,
        size,
        color,
    };
    let number = super::group_card_number(&card.face.card_number);
    let column = (column_left, column_right);
    let lines = [
        line(&card.face.scheme_name, full, 8.2, 4.6, WHITE),
        line(&card.face.holder_name, column, 20.0, 4.0, INK),
        line(labels.card_number, column, 26.5, 2.3, GREY),
        // Digits stay left to right in every language; on a right-to-left card they only move
        // to the right edge. Shaped as an RTL paragraph the groups would come out reversed.
        Line {
            direction: Direction::Ltr,
            ..line(&number, column, 32.0, 3.9, INK)
        },
        line(labels.pay_local, full, 43.0, 2.5, INK),
        line(labels.pin_warning, full, 49.0, 2.5, WARNING),
    ];
    for l in lines {
        out.push(Element::Text(l.fit(shaper, rtl)));
    }
}

/// A line before shaping: its column (left, right edges) and nominal size.
struct Line {
    text: String,
    lang: &'static str,
    direction: Direction,
    columns: (f64, f64),
    baseline: f64,
    size: f64,
    color: Rgb,
}

impl Line {
    /// Shapes the line and shrinks it to its column if it is wider, anchoring it at the
    /// column's left edge, or right edge on a right-to-left card.
    fn fit(self, shaper: &Shaper, rtl: bool) -> TextItem {
        let shaped = shaper.shape(&self.text, self.direction, self.lang);
        let (left, right) = self.columns;
        let available = right - left;
        let natural = shaper.width(&shaped, self.size);
        let size = if natural > available {
            self.size * available / natural
        } else {
            self.size
        };
        let (anchor, x) = if rtl {
            (Anchor::Right, right)
        } else {
            (Anchor::Left, left)
        };
        TextItem {
            width: shaper.width(&shaped, size),
            text: self.text,
            lang: self.lang,
            direction: self.direction,
            anchor,
            x,
            baseline: self.baseline,
            size,
            color: self.color,
            line: shaped,
        }
    }
}

/// A rectangle with rounded corners, clockwise from the top-left; `bottom_round` false keeps
/// the bottom corners square (the band under the card's rounded top).
fn rounded_rect(x: f64, y: f64, w: f64, h: f64, r: f64, bottom_round: bool) -> Vec<PathOp> {
    // Control-point distance that makes a cubic Bézier a close quarter circle.
    let k = 0.552_284_75 * r;
    let (right, bottom) = (x + w, y + h);
    let mut ops = vec![
        PathOp::Move(x, y + r),
        PathOp::Cubic(x, y + r - k, x + r - k, y, x + r, y),
        PathOp::Line(right - r, y),
        PathOp::Cubic(right - r + k, y, right, y + r - k, right, y + r),
    ];
    if bottom_round {
        ops.extend([
            PathOp::Line(right, bottom - r),
            PathOp::Cubic(
                right,
                bottom - r + k,
                right - r + k,
                bottom,
                right - r,
                bottom,
            ),
            PathOp::Line(x + r, bottom),
            PathOp::Cubic(x + r - k, bottom, x, bottom - r + k, x, bottom - r),
        ]);
    } else {
        ops.extend([PathOp::Line(right, bottom), PathOp::Line(x, bottom)]);
    }
    ops.push(PathOp::Close);
    ops
}

/// A coordinate or size for the SVG and PDF writers: at most three decimals (a micrometre in
/// millimetres), no trailing zeros, no `-0`.
pub(crate) fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CardFace, validate_all};
    use super::*;

    fn page_of(cards: &[CardFace]) -> Page {
        let shaper = Shaper::new().expect("font");
        let valid = validate_all(cards, &shaper).expect("valid cards");
        page(&valid, &shaper)
    }

    fn face(language: &str, holder_name: &str) -> CardFace {
        CardFace {
            scheme_name: "Moneda Social Sevilla".to_owned(),
            holder_name: holder_name.to_owned(),
            card_number: "1234567890123456".to_owned(),
            qr_payload: "coledger:card:1234567890123456".to_owned(),
            language: language.to_owned(),
        }
    }

    /// Every text and the QR code of a one-card page lie inside that card's padding, and
    /// text level with the QR code stays clear of it.
    fn assert_inside_first_card(page: &Page) {
        let left = (PAGE_WIDTH_MM - 2.0 * CARD_WIDTH_MM - COLUMN_GAP_MM) / 2.0;
        let right = left + CARD_WIDTH_MM;
        let (qr_left, qr_right, qr_top, qr_bottom) = page
            .elements
            .iter()
            .find_map(|e| match e {
                Element::Qr {
                    x,
                    y,
                    module,
                    matrix,
                } => {
                    let side = *module * matrix.width() as f64;
                    Some((*x, x + side, *y, y + side))
                }
                _ => None,
            })
            .expect("a QR code");
        assert!(qr_left > left && qr_right < right);
        for element in &page.elements {
            let Element::Text(item) = element else {
                continue;
            };
            let (text_left, text_right) = (item.left(), item.left() + item.width);
            let name = &item.text;
            assert!(
                text_left >= left + PADDING_MM - 1e-9,
                "{name:?} starts at {text_left}"
            );
            assert!(
                text_right <= right - PADDING_MM + 1e-9,
                "{name:?} ends at {text_right}"
            );
            if item.baseline > qr_top && item.baseline - item.size < qr_bottom {
                let clear = text_right <= qr_left || text_left >= qr_right;
                assert!(clear, "{name:?} runs into the QR code");
            }
        }
    }

    #[test]
    fn long_names_are_shrunk_into_their_column_in_both_directions() {
        let long = "W".repeat(super::super::MAX_HOLDER_NAME_CHARS);
        for language in ["en", "ar", "el"] {
            assert_inside_first_card(&page_of(&[face(language, &long)]));
        }
        let arabic = "عبد الرحمن بن محمد بن عبد العزيز القحطاني";
        assert_inside_first_card(&page_of(&[face("ar", arabic)]));
    }

    #[test]
    fn ten_cards_fill_the_page_without_overlap_and_inside_printer_margins() {
        let cards: Vec<CardFace> = (0..10).map(|_| face("es", "Ana")).collect();
        let page = page_of(&cards);
        let outlines: Vec<(f64, f64)> = page
            .elements
            .iter()
            .filter_map(|e| match e {
                Element::Path {
                    ops,
                    paint: Paint::Stroke(..),
                } => match ops.first() {
                    Some(PathOp::Move(x, y)) => Some((*x, *y - CARD_RADIUS_MM)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(outlines.len(), 10);
        for (i, &(x, y)) in outlines.iter().enumerate() {
            assert!(x >= 5.0 && x + CARD_WIDTH_MM <= PAGE_WIDTH_MM - 5.0);
            assert!(y >= 5.0 && y + CARD_HEIGHT_MM <= PAGE_HEIGHT_MM - 5.0);
            for &(other_x, other_y) in &outlines[i + 1..] {
                let apart_x = (x - other_x).abs() >= CARD_WIDTH_MM;
                let apart_y = (y - other_y).abs() >= CARD_HEIGHT_MM;
                assert!(
                    apart_x || apart_y,
                    "cards at ({x}, {y}) and ({other_x}, {other_y}) overlap"
                );
            }
        }
    }

    #[test]
    fn numbers_are_written_briefly() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(2.83464567), "2.835");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(-1.5), "-1.5");
    }
}
