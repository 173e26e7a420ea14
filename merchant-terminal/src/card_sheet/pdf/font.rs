//! The embedded font: a subset of DejaVu Sans that keeps every glyph id (unused glyphs are
//! emptied, not renumbered, so `/CIDToGIDMap /Identity` holds), and its PDF objects: Type 0
//! font, CIDFontType2 with widths, descriptor, font file and a ToUnicode CMap.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use rustybuzz::ttf_parser::{GlyphId, RawFace, Tag};

use super::super::SheetError;
use super::super::text::{FONT, Shaper};
use super::{UsedGlyphs, Writer};

/// Objects [`write_objects`] writes, numbered consecutively.
pub(super) const FONT_OBJECTS: usize = 5;
/// Tables a CIDFontType2 program needs (ISO 32000 9.9), plus `OS/2` for metrics and `name`,
/// which carries the licence notice. `cmap`, `post`, and the layout tables are dropped: the
/// PDF addresses glyphs by id and shaping is already done.
const KEPT_TABLES: [&[u8; 4]; 11] = [
    b"OS/2", b"cvt ", b"fpgm", b"glyf", b"head", b"hhea", b"hmtx", b"loca", b"maxp", b"name",
    b"prep",
];
/// Composite glyphs nest only a few levels deep; the bound stops a malformed cycle.
const MAX_COMPONENT_DEPTH: usize = 8;
/// `bfchar` entries per block, the CMap format's limit.
const MAX_BFCHAR_PER_BLOCK: usize = 100;

/// The glyph's advance as the PDF's `/W` array states it, in thousandths of an em.
pub(super) fn pdf_width(shaper: &Shaper, id: u16) -> i32 {
    let advance = shaper.face().glyph_hor_advance(GlyphId(id)).unwrap_or(0);
    (f64::from(advance) * 1000.0 / shaper.units_per_em()).round() as i32
}

/// Writes the five font objects from `first` on: Type 0 font, CIDFont, descriptor, font
/// file, ToUnicode CMap.
pub(super) fn write_objects(
    pdf: &mut Writer,
    first: usize,
    shaper: &Shaper,
    used: &UsedGlyphs,
) -> Result<(), SheetError> {
    let (cid_font, descriptor, file, to_unicode) = (first + 1, first + 2, first + 3, first + 4);
    let keep: BTreeSet<u16> = used.keys().copied().collect();
    let program = subset(FONT, &keep)?;
    let name = format!("{}+DejaVuSans", subset_tag(&keep));
    pdf.object(
        first,
        &format!(
            "<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H \
             /DescendantFonts [{cid_font} 0 R] /ToUnicode {to_unicode} 0 R >>"
        ),
    );
    let widths: Vec<String> = keep
        .iter()
        .map(|&id| format!("{id} [{}]", pdf_width(shaper, id)))
        .collect();
    pdf.object(
        cid_font,
        &format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} \
             /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor {descriptor} 0 R /DW 1000 /W [{}] /CIDToGIDMap /Identity >>",
            widths.join(" ")
        ),
    );
    let face = shaper.face();
    let em = |units: i16| (f64::from(units) * 1000.0 / shaper.units_per_em()).round() as i64;
    let bbox = face.global_bounding_box();
    pdf.object(
        descriptor,
        &format!(
            "<< /Type /FontDescriptor /FontName /{name} /Flags 4 /FontBBox [{} {} {} {}] \
             /ItalicAngle 0 /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 {file} 0 R >>",
            em(bbox.x_min),
            em(bbox.y_min),
            em(bbox.x_max),
            em(bbox.y_max),
            em(face.ascender()),
            em(face.descender()),
            em(face.capital_height().unwrap_or(face.ascender())),
        ),
    );
    pdf.stream(file, &format!(" /Length1 {}", program.len()), &program);
    pdf.stream(to_unicode, "", to_unicode_cmap(used).as_bytes());
    Ok(())
}

/// Six capital letters naming this subset, as PDF asks of subset fonts; derived from the glyph
/// set so the same cards give the same bytes.
fn subset_tag(keep: &BTreeSet<u16>) -> String {
    // FNV-1a over the glyph ids.
    let mut hash: u32 = 0x811C_9DC5;
    for id in keep {
        for byte in id.to_be_bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
    (0..6)
        .map(|_| {
            let letter = char::from(b'A' + (hash % 26) as u8);
            hash /= 26;
            letter
        })
        .collect()
}

/// Maps each glyph id to the text it stands for, so text can be searched and copied.
fn to_unicode_cmap(used: &UsedGlyphs) -> String {
    let mut cmap = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
         1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let entries: Vec<(&u16, &String)> = used.iter().filter(|(_, text)| !text.is_empty()).collect();
    for block in entries.chunks(MAX_BFCHAR_PER_BLOCK) {
        let _ = writeln!(cmap, "{} beginbfchar", block.len());
        for (id, text) in block {
            let utf16: String = text
                .encode_utf16()
                .map(|unit| format!("{unit:04X}"))
                .collect();
            let _ = writeln!(cmap, "<{id:04X}> <{utf16}>");
        }
        cmap.push_str("endbfchar\n");
    }
    cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    cmap
}

/// A TrueType program with only `keep` (and glyph 0, and the components of composite glyphs)
/// drawn; every other glyph keeps its id and metrics but has no outline.
pub(super) fn subset(font: &[u8], keep: &BTreeSet<u16>) -> Result<Vec<u8>, SheetError> {
    let raw = RawFace::parse(font, 0).map_err(|_| SheetError::Font("no table directory"))?;
    let table = |tag: &[u8; 4]| raw.table(Tag::from_bytes(tag));
    let missing = SheetError::Font("a required table is missing or short");
    let head = table(b"head")
        .filter(|t| t.len() >= 54)
        .ok_or(missing.clone())?;
    let maxp = table(b"maxp")
        .filter(|t| t.len() >= 6)
        .ok_or(missing.clone())?;
    let loca = table(b"loca").ok_or(missing.clone())?;
    let glyf = table(b"glyf").ok_or(missing.clone())?;
    let glyph_count = usize::from(read_u16(maxp, 4).ok_or(missing.clone())?);
    let long_loca = read_u16(head, 50) == Some(1);
    let ranges = glyph_ranges(loca, glyf.len(), glyph_count, long_loca).ok_or(missing.clone())?;
    let drawn = with_components(glyf, &ranges, keep);

    let mut new_glyf = Vec::new();
    let mut offsets = Vec::with_capacity(glyph_count + 1);
    for (id, range) in ranges.iter().enumerate() {
        offsets.push(new_glyf.len());
        if u16::try_from(id).is_ok_and(|id| drawn.contains(&id)) {
            new_glyf.extend_from_slice(&glyf[range.clone()]);
            new_glyf.resize(new_glyf.len().next_multiple_of(4), 0);
        }
    }
    offsets.push(new_glyf.len());
    let (mut new_loca, loca_format) = encode_loca(&offsets)?;
    let mut new_head = head.to_vec();
    new_head[8..12].fill(0); // checkSumAdjustment, set once the whole file is known
    new_head[50..52].copy_from_slice(&loca_format.to_be_bytes());

    let mut tables: Vec<([u8; 4], Vec<u8>)> = Vec::new();
    for tag in KEPT_TABLES {
        let data = match tag {
            b"glyf" => std::mem::take(&mut new_glyf),
            b"loca" => std::mem::take(&mut new_loca),
            b"head" => std::mem::take(&mut new_head),
            _ => match table(tag) {
                Some(data) => data.to_vec(),
                None => continue,
            },
        };
        tables.push((*tag, data));
    }
    assemble(tables)
}

/// The `loca` table for glyph offsets, and its `indexToLocFormat`: short (offsets halved into
/// 16 bits, half the size) when the subset's `glyf` is small enough, as it is for cards.
fn encode_loca(offsets: &[usize]) -> Result<(Vec<u8>, u16), SheetError> {
    let last = offsets.last().copied().unwrap_or(0);
    if last / 2 <= usize::from(u16::MAX) {
        let short = offsets
            .iter()
            .flat_map(|&o| ((o / 2) as u16).to_be_bytes())
            .collect();
        return Ok((short, 0));
    }
    let mut long = Vec::with_capacity(offsets.len() * 4);
    for &offset in offsets {
        long.extend_from_slice(&offset_u32(offset)?.to_be_bytes());
    }
    Ok((long, 1))
}

/// Each glyph's byte range in `glyf`, from `loca`.
fn glyph_ranges(
    loca: &[u8],
    glyf_len: usize,
    count: usize,
    long: bool,
) -> Option<Vec<std::ops::Range<usize>>> {
    let offset = |i: usize| -> Option<usize> {
        if long {
            read_u32(loca, i * 4).and_then(|o| usize::try_from(o).ok())
        } else {
            read_u16(loca, i * 2).map(|o| usize::from(o) * 2)
        }
    };
    (0..count)
        .map(|i| {
            let (start, end) = (offset(i)?, offset(i + 1)?);
            (start <= end && end <= glyf_len).then_some(start..end)
        })
        .collect()
}

/// `keep`, glyph 0 (`.notdef`, which viewers draw for anything missing), and every glyph a
/// kept composite glyph is built from.
fn with_components(
    glyf: &[u8],
    ranges: &[std::ops::Range<usize>],
    keep: &BTreeSet<u16>,
) -> BTreeSet<u16> {
    let mut drawn: BTreeSet<u16> = keep.clone();
    drawn.insert(0);
    let mut frontier: Vec<u16> = drawn.iter().copied().collect();
    for _ in 0..MAX_COMPONENT_DEPTH {
        let mut next = Vec::new();
        for id in frontier {
            let Some(range) = ranges.get(usize::from(id)) else {
                continue;
            };
            for component in components(&glyf[range.clone()]) {
                if drawn.insert(component) {
                    next.push(component);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    drawn
}

/// The glyph ids a composite glyph refers to; none for a simple or empty glyph.
fn components(glyph: &[u8]) -> Vec<u16> {
    const ARG_1_AND_2_ARE_WORDS: u16 = 0x0001;
    const WE_HAVE_A_SCALE: u16 = 0x0008;
    const MORE_COMPONENTS: u16 = 0x0020;
    const WE_HAVE_AN_X_AND_Y_SCALE: u16 = 0x0040;
    const WE_HAVE_A_TWO_BY_TWO: u16 = 0x0080;
    let mut found = Vec::new();
    let is_composite = glyph.len() >= 10 && glyph[0] & 0x80 != 0; // numberOfContours < 0
    if !is_composite {
        return found;
    }
    let mut at = 10;
    while let (Some(flags), Some(id)) = (read_u16(glyph, at), read_u16(glyph, at + 2)) {
        found.push(id);
        at += 4 + if flags & ARG_1_AND_2_ARE_WORDS != 0 {
            4
        } else {
            2
        };
        at += if flags & WE_HAVE_A_SCALE != 0 {
            2
        } else if flags & WE_HAVE_AN_X_AND_Y_SCALE != 0 {
            4
        } else if flags & WE_HAVE_A_TWO_BY_TWO != 0 {
            8
        } else {
            0
        };
        if flags & MORE_COMPONENTS == 0 {
            break;
        }
    }
    found
}

/// Writes an sfnt file: directory sorted by tag, tables 4-byte aligned, checksums, and the
/// `head` checksum adjustment.
fn assemble(mut tables: Vec<([u8; 4], Vec<u8>)>) -> Result<Vec<u8>, SheetError> {
    tables.sort_by_key(|(tag, _)| *tag);
    let count = u16::try_from(tables.len()).map_err(|_| SheetError::Font("too many tables"))?;
    let power = 1u16 << (15 - count.leading_zeros().min(15));
    let search_range = power * 16;
    let entry_selector = power.trailing_zeros() as u16;
    let mut font = Vec::new();
    font.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    for field in [
        count,
        search_range,
        entry_selector,
        count * 16 - search_range,
    ] {
        font.extend_from_slice(&field.to_be_bytes());
    }
    let mut offset = 12 + 16 * tables.len();
    let mut head_at = None;
    for (tag, data) in &tables {
        if tag == b"head" {
            head_at = Some(offset);
        }
        font.extend_from_slice(tag);
        font.extend_from_slice(&checksum(data).to_be_bytes());
        font.extend_from_slice(&offset_u32(offset)?.to_be_bytes());
        font.extend_from_slice(&offset_u32(data.len())?.to_be_bytes());
        offset += data.len().next_multiple_of(4);
    }
    for (_, data) in &tables {
        font.extend_from_slice(data);
        font.resize(font.len().next_multiple_of(4), 0);
    }
    if let Some(at) = head_at {
        let adjustment = 0xB1B0_AFBAu32.wrapping_sub(checksum(&font));
        font[at + 8..at + 12].copy_from_slice(&adjustment.to_be_bytes());
    }
    Ok(font)
}

/// The sfnt checksum: the sum of big-endian 32-bit words, the last one zero-padded.
fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

fn offset_u32(value: usize) -> Result<u32, SheetError> {
    u32::try_from(value).map_err(|_| SheetError::Font("font larger than 4 GiB"))
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keeps_glyph_ids_and_parses_as_a_font() {
        let shaper = Shaper::new().expect("font");
        let alef = shaper.nominal_glyph('ا').expect("alef");
        let keep = BTreeSet::from([alef]);
        let program = subset(FONT, &keep).expect("subset");
        assert!(
            program.len() < FONT.len() / 2,
            "subset is {} bytes",
            program.len()
        );
        let face = rustybuzz::ttf_parser::Face::parse(&program, 0).expect("subset parses");
        assert_eq!(face.number_of_glyphs(), shaper.face().number_of_glyphs());
        assert!(face.outline_glyph(GlyphId(alef), &mut NoPen).is_some());
        let omega = shaper.nominal_glyph('Ω').expect("omega");
        assert!(face.outline_glyph(GlyphId(omega), &mut NoPen).is_none());
        assert_eq!(checksum(&program), 0xB1B0_AFBA, "head checksum adjustment");
    }

    #[test]
    fn loca_is_short_while_offsets_fit_sixteen_bits_halved() {
        assert_eq!(
            encode_loca(&[0, 4, 0x1_FFFE]).expect("short"),
            (vec![0, 0, 0, 2, 0xFF, 0xFF], 0)
        );
        let (long, format) = encode_loca(&[0, 0x2_0000]).expect("long");
        assert_eq!((long, format), (vec![0, 0, 0, 0, 0, 2, 0, 0], 1));
    }

    struct NoPen;
    impl rustybuzz::ttf_parser::OutlineBuilder for NoPen {
        fn move_to(&mut self, _: f32, _: f32) {}
        fn line_to(&mut self, _: f32, _: f32) {}
        fn quad_to(&mut self, _: f32, _: f32, _: f32, _: f32) {}
        fn curve_to(&mut self, _: f32, _: f32, _: f32, _: f32, _: f32, _: f32) {}
        fn close(&mut self) {}
    }
}
