//! One A4 page as an SVG document. User units are millimetres; the viewer shapes the text,
//! so it is written in logical order with its language and direction.

use std::fmt::Write as _;

use super::layout::{
    Anchor, Element, PAGE_HEIGHT_MM, PAGE_WIDTH_MM, Page, Paint, PathOp, Rgb, TextItem, number,
};
use super::text::Direction;
use crate::qr_matrix::QrMatrix;

/// The embedded PDF font first, then fonts likely to cover Greek and Arabic elsewhere.
const FONT_FAMILY: &str = "'DejaVu Sans', 'Noto Sans', 'Noto Sans Arabic', Arial, sans-serif";
const QR_DARK: Rgb = Rgb(0, 0, 0);

/// Writes one page. `fmt::Write` into a `String` cannot fail, so its results are ignored.
pub(crate) fn render_page(page: &Page) -> String {
    let mut svg = String::with_capacity(64 * 1024);
    let (w, h) = (number(PAGE_WIDTH_MM), number(PAGE_HEIGHT_MM));
    svg.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" \
         width=\"{w}mm\" height=\"{h}mm\" viewBox=\"0 0 {w} {h}\">"
    );
    let _ = writeln!(svg, "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>");
    for element in &page.elements {
        match element {
            Element::Path { ops, paint } => path(&mut svg, ops, *paint),
            Element::Text(item) => text(&mut svg, item),
            Element::Qr {
                x,
                y,
                module,
                matrix,
            } => qr(&mut svg, *x, *y, *module, matrix),
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn path(svg: &mut String, ops: &[PathOp], paint: Paint) {
    svg.push_str("<path d=\"");
    for op in ops {
        let _ = match *op {
            PathOp::Move(x, y) => write!(svg, "M{} {}", number(x), number(y)),
            PathOp::Line(x, y) => write!(svg, "L{} {}", number(x), number(y)),
            PathOp::Cubic(x1, y1, x2, y2, x, y) => write!(
                svg,
                "C{} {} {} {} {} {}",
                number(x1),
                number(y1),
                number(x2),
                number(y2),
                number(x),
                number(y)
            ),
            PathOp::Close => write!(svg, "Z"),
        };
    }
    let _ = match paint {
        Paint::Fill(color) => writeln!(svg, "\" fill=\"{}\"/>", hex(color)),
        Paint::Stroke(color, width) => writeln!(
            svg,
            "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"/>",
            hex(color),
            number(width)
        ),
    };
}

/// Right-to-left text gets `direction="rtl"`; `text-anchor` is relative to the direction, so
/// `start` puts the right edge of right-to-left text at `x`.
fn text(svg: &mut String, item: &TextItem) {
    let anchor = match (item.direction, item.anchor) {
        (Direction::Ltr, Anchor::Left) | (Direction::Rtl, Anchor::Right) => "start",
        (Direction::Ltr, Anchor::Right) | (Direction::Rtl, Anchor::Left) => "end",
    };
    let direction = match item.direction {
        Direction::Ltr => "",
        Direction::Rtl => " direction=\"rtl\" unicode-bidi=\"embed\"",
    };
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"{}\" fill=\"{}\" font-family=\"{FONT_FAMILY}\" \
         xml:lang=\"{}\"{direction} text-anchor=\"{anchor}\">{}</text>",
        number(item.x),
        number(item.baseline),
        number(item.size),
        hex(item.color),
        item.lang,
        escape(&item.text),
    );
}

/// The QR code in module units, one `h`/`v` rectangle per run of dark modules, scaled into
/// place; `crispEdges` keeps neighbouring runs from showing hairline seams.
fn qr(svg: &mut String, x: f64, y: f64, module: f64, matrix: &QrMatrix) {
    let _ = write!(
        svg,
        "<g transform=\"translate({} {}) scale({})\"><path shape-rendering=\"crispEdges\" \
         fill=\"{}\" d=\"",
        number(x),
        number(y),
        number(module),
        hex(QR_DARK)
    );
    for run in matrix.dark_runs() {
        let _ = write!(
            svg,
            "M{} {}h{}v1h-{}z",
            run.column, run.row, run.length, run.length
        );
    }
    svg.push_str("\"/></g>\n");
}

fn hex(Rgb(r, g, b): Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Escapes text for element content and attribute values alike.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}
