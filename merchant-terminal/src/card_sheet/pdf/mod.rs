//! A small PDF 1.7 writer for the card pages: vector paths, QR runs, and text as glyph ids of
//! one embedded TrueType subset (a Type 0 font with Identity-H encoding, so each glyph the
//! shaper chose, joined Arabic forms included, is addressed directly). Streams are
//! Flate-compressed; see `font` for the font.

mod font;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::SheetError;
use super::layout::{
    Element, PAGE_HEIGHT_MM, PAGE_WIDTH_MM, Page, Paint, PathOp, Rgb, TextItem, number,
};
use super::text::Shaper;
use crate::qr_matrix::QrMatrix;

const POINTS_PER_MM: f64 = 72.0 / 25.4;
/// zlib's default level: nearly all of the gain of level 9 at a fraction of its time.
const FLATE_LEVEL: u8 = 6;
/// Objects before the pages: catalog, page tree, then the five font objects.
const CATALOG: usize = 1;
const PAGE_TREE: usize = 2;
const FIRST_PAGE_OBJECT: usize = 3 + font::FONT_OBJECTS;

/// Glyphs used anywhere in the document, with the text each stands for (ToUnicode).
pub(crate) type UsedGlyphs = BTreeMap<u16, String>;

/// Writes all pages into one document.
pub(crate) fn render(pages: &[Page], shaper: &Shaper) -> Result<Vec<u8>, SheetError> {
    let mut used = UsedGlyphs::new();
    let contents: Vec<String> = pages
        .iter()
        .map(|page| content(page, shaper, &mut used))
        .collect();
    let mut pdf = Writer::new();
    pdf.object(
        CATALOG,
        &format!("<< /Type /Catalog /Pages {PAGE_TREE} 0 R >>"),
    );
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", FIRST_PAGE_OBJECT + 2 * i))
        .collect();
    pdf.object(
        PAGE_TREE,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        ),
    );
    font::write_objects(&mut pdf, 3, shaper, &used)?;
    let media_box = format!(
        "[0 0 {} {}]",
        number(PAGE_WIDTH_MM * POINTS_PER_MM),
        number(PAGE_HEIGHT_MM * POINTS_PER_MM)
    );
    for (i, content) in contents.iter().enumerate() {
        let page_object = FIRST_PAGE_OBJECT + 2 * i;
        pdf.object(
            page_object,
            &format!(
                "<< /Type /Page /Parent {PAGE_TREE} 0 R /MediaBox {media_box} \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                page_object + 1
            ),
        );
        pdf.stream(page_object + 1, "", content.as_bytes());
    }
    // No creation date: the same cards give the same bytes.
    let info = FIRST_PAGE_OBJECT + 2 * pages.len();
    pdf.object(
        info,
        "<< /Title (Beneficiary cards) /Producer (coledger merchant-terminal) >>",
    );
    Ok(pdf.finish(CATALOG, info))
}

/// A page's content stream. The first operator makes user space millimetres with y down, as
/// the layout is written; text matrices flip y back so glyphs stand upright.
fn content(page: &Page, shaper: &Shaper, used: &mut UsedGlyphs) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Six decimals: the scale multiplies every coordinate on the page.
    let s = format!("{POINTS_PER_MM:.6}");
    let _ = writeln!(
        out,
        "{s} 0 0 -{s} 0 {:.6} cm",
        PAGE_HEIGHT_MM * POINTS_PER_MM
    );
    for element in &page.elements {
        match element {
            Element::Path { ops, paint } => path(&mut out, ops, *paint),
            Element::Text(item) => text(&mut out, item, shaper, used),
            Element::Qr {
                x,
                y,
                module,
                matrix,
            } => qr(&mut out, *x, *y, *module, matrix),
        }
    }
    out
}

fn path(out: &mut String, ops: &[PathOp], paint: Paint) {
    for op in ops {
        let _ = match *op {
            PathOp::Move(x, y) => writeln!(out, "{} {} m", number(x), number(y)),
            PathOp::Line(x, y) => writeln!(out, "{} {} l", number(x), number(y)),
            PathOp::Cubic(x1, y1, x2, y2, x, y) => writeln!(
                out,
                "{} {} {} {} {} {} c",
                number(x1),
                number(y1),
                number(x2),
                number(y2),
                number(x),
                number(y)
            ),
            PathOp::Close => writeln!(out, "h"),
        };
    }
    let _ = match paint {
        Paint::Fill(color) => writeln!(out, "{} rg f", rgb(color)),
        Paint::Stroke(color, width) => writeln!(out, "{} RG {} w S", rgb(color), number(width)),
    };
}

/// One rectangle per run of dark modules, in module units under a scaling matrix.
fn qr(out: &mut String, x: f64, y: f64, module: f64, matrix: &QrMatrix) {
    let m = number(module);
    let _ = writeln!(out, "q {m} 0 0 {m} {} {} cm 0 0 0 rg", number(x), number(y));
    for run in matrix.dark_runs() {
        let _ = writeln!(out, "{} {} {} 1 re", run.column, run.row, run.length);
    }
    out.push_str("f Q\n");
}

/// Places the shaped glyphs from the text's left edge. The font size is 1 and the text matrix
/// scales to the item's size, so `TJ` adjustments are thousandths of an em: they move each
/// glyph from where the font's own advance would put it to where the shaper put it.
///
/// No `ActualText` span is added: Poppler reads it as if drawn left to right and then
/// reverses Arabic, so copied text came out backwards; the ToUnicode map in visual order (see
/// `text::Glyph::text`) gives the right text in Poppler and in readers that keep visual order.
fn text(out: &mut String, item: &TextItem, shaper: &Shaper, used: &mut UsedGlyphs) {
    let size = number(item.size);
    let _ = write!(
        out,
        "BT /F1 1 Tf {} rg {size} 0 0 -{size} {} {} Tm [",
        rgb(item.color),
        number(item.left()),
        number(item.baseline)
    );
    let per_unit = 1000.0 / shaper.units_per_em();
    let mut rise = 0;
    // Where the shaper's pen is ahead of the PDF's, in thousandths of an em. Rounding of the
    // `/W` widths is carried here and written out only once it reaches half a unit.
    let mut drift = 0.0;
    for glyph in &item.line.glyphs {
        // The first non-empty text a glyph stands for names it; a glyph reused for other
        // text (rare outside ligatures) still draws right, and only copies as the first.
        let known = used.entry(glyph.id).or_default();
        if known.is_empty() {
            known.push_str(&glyph.text);
        }
        if glyph.y_offset != rise {
            rise = glyph.y_offset;
            let _ = write!(
                out,
                "] TJ {} Ts [",
                number(f64::from(rise) / shaper.units_per_em())
            );
        }
        let offset = f64::from(glyph.x_offset) * per_unit;
        drift += offset;
        if drift.abs() >= 0.5 {
            let _ = write!(out, "{} ", number(-drift));
            drift = 0.0;
        }
        let _ = write!(out, "<{:04X}>", glyph.id);
        let width = f64::from(font::pdf_width(shaper, glyph.id));
        drift += f64::from(glyph.x_advance) * per_unit - offset - width;
        if drift.abs() >= 0.5 {
            let _ = write!(out, " {} ", number(-drift));
            drift = 0.0;
        }
    }
    out.push_str("] TJ");
    if rise != 0 {
        out.push_str(" 0 Ts");
    }
    out.push_str(" ET\n");
}

fn rgb(Rgb(r, g, b): Rgb) -> String {
    let channel = |c: u8| number(f64::from(c) / 255.0);
    format!("{} {} {}", channel(r), channel(g), channel(b))
}

/// Collects numbered objects and writes the cross-reference table at the end.
pub(crate) struct Writer {
    bytes: Vec<u8>,
    /// Byte offset of each object, by object number (index 0 unused).
    offsets: Vec<usize>,
}

impl Writer {
    fn new() -> Self {
        // The comment of four high bytes tells transfer tools the file is binary.
        let mut bytes = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        bytes.reserve(256 * 1024);
        Self {
            bytes,
            offsets: vec![0],
        }
    }

    fn record_offset(&mut self, number: usize) {
        if self.offsets.len() <= number {
            self.offsets.resize(number + 1, 0);
        }
        self.offsets[number] = self.bytes.len();
    }

    /// Writes object `number` with a dictionary or other direct value.
    pub(crate) fn object(&mut self, number: usize, body: &str) {
        self.record_offset(number);
        self.bytes
            .extend_from_slice(format!("{number} 0 obj\n{body}\nendobj\n").as_bytes());
    }

    /// Writes object `number` as a Flate-compressed stream; `extra` adds dictionary entries
    /// besides `/Length` and `/Filter`.
    pub(crate) fn stream(&mut self, number: usize, extra: &str, data: &[u8]) {
        self.record_offset(number);
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(data, FLATE_LEVEL);
        let head = format!(
            "{number} 0 obj\n<< /Length {} /Filter /FlateDecode{extra} >>\nstream\n",
            packed.len()
        );
        self.bytes.extend_from_slice(head.as_bytes());
        self.bytes.extend_from_slice(&packed);
        self.bytes.extend_from_slice(b"\nendstream\nendobj\n");
    }

    /// Appends the cross-reference table and trailer. Every object number below the highest
    /// must have been written: the writer numbers objects densely by construction.
    fn finish(mut self, root: usize, info: usize) -> Vec<u8> {
        let xref = self.bytes.len();
        let count = self.offsets.len();
        let mut table = format!("xref\n0 {count}\n0000000000 65535 f \n");
        for offset in &self.offsets[1..] {
            assert!(*offset > 0, "PDF object numbers must be dense");
            let _ = writeln!(table, "{offset:010} 00000 n ");
        }
        let _ = write!(
            table,
            "trailer\n<< /Size {count} /Root {root} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
        );
        self.bytes.extend_from_slice(table.as_bytes());
        self.bytes
    }
}
