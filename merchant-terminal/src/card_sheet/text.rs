//! Text measuring and shaping with the embedded DejaVu Sans: the Unicode bidi algorithm splits
//! a line into directional runs in visual order, and `rustybuzz` shapes each run, so Arabic
//! letters take their joined forms and marks sit on their bases.

use std::str::FromStr;

use rustybuzz::{Direction as BuzzDirection, Face, UnicodeBuffer};
use unicode_bidi::{BidiInfo, Level};

use super::SheetError;

/// DejaVu Sans 2.37: Latin, Greek, Cyrillic and Arabic under the Bitstream Vera licence
/// (`fonts/LICENSE-DejaVu.txt`). Shipped so neither format depends on the host's fonts.
pub(crate) static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

/// The base direction of a line of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Left to right.
    Ltr,
    /// Right to left.
    Rtl,
}

/// One positioned glyph, in font units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glyph {
    /// Glyph id in the embedded font.
    pub id: u16,
    /// How far the pen moves after this glyph.
    pub x_advance: i32,
    /// Horizontal shift of this glyph alone (marks).
    pub x_offset: i32,
    /// Vertical shift of this glyph alone, up positive (marks).
    pub y_offset: i32,
    /// The characters this glyph stands for, empty for the second and later glyphs of a
    /// cluster; becomes the PDF's ToUnicode entry. Like the glyphs, it is in visual order: a
    /// right-to-left ligature such as lam-alef holds its letters reversed, so a reader that
    /// collects glyphs left to right and then reverses Arabic (Poppler does) gets them back
    /// in logical order, and one that keeps visual order stays consistent.
    pub text: String,
}

/// A line shaped into glyphs in visual order, left to right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShapedLine {
    /// The glyphs, leftmost first.
    pub glyphs: Vec<Glyph>,
    /// Sum of the glyphs' advances, in font units.
    pub advance: i64,
}

/// Shapes text with the embedded font.
pub(crate) struct Shaper {
    face: Face<'static>,
}

impl Shaper {
    /// Parses the embedded font.
    pub fn new() -> Result<Self, SheetError> {
        let face = Face::from_slice(FONT, 0).ok_or(SheetError::Font("not a TrueType font"))?;
        Ok(Self { face })
    }

    /// Font units per em (2048 for DejaVu Sans).
    pub fn units_per_em(&self) -> f64 {
        f64::from(self.face.units_per_em())
    }

    /// The first character of `text` the font has no glyph for; invisible formatting
    /// characters (joiners, bidi marks) are not asked for.
    pub fn first_missing(&self, text: &str) -> Option<char> {
        text.chars()
            .filter(|&c| !is_invisible_format(c))
            .find(|&c| self.face.glyph_index(c).is_none())
    }

    /// Width of `line` at font size `size`, in the size's unit.
    pub fn width(&self, line: &ShapedLine, size: f64) -> f64 {
        line.advance as f64 * size / self.units_per_em()
    }

    /// Shapes one line with base direction `direction`, `language` a BCP 47 tag.
    pub fn shape(&self, text: &str, direction: Direction, language: &str) -> ShapedLine {
        let base = match direction {
            Direction::Ltr => Level::ltr(),
            Direction::Rtl => Level::rtl(),
        };
        let bidi = BidiInfo::new(text, Some(base));
        let mut glyphs = Vec::new();
        for paragraph in &bidi.paragraphs {
            let (levels, runs) = bidi.visual_runs(paragraph, paragraph.range.clone());
            for run in runs {
                let rtl = levels[run.start].is_rtl();
                self.shape_run(&text[run], rtl, language, &mut glyphs);
            }
        }
        let advance = glyphs.iter().map(|g| i64::from(g.x_advance)).sum();
        ShapedLine { glyphs, advance }
    }

    /// Shapes one directional run and appends its glyphs, which `rustybuzz` returns in
    /// visual order for both directions.
    fn shape_run(&self, run: &str, rtl: bool, language: &str, out: &mut Vec<Glyph>) {
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(run);
        buffer.set_direction(if rtl {
            BuzzDirection::RightToLeft
        } else {
            BuzzDirection::LeftToRight
        });
        if let Ok(language) = rustybuzz::Language::from_str(language) {
            buffer.set_language(language);
        }
        buffer.guess_segment_properties();
        let shaped = rustybuzz::shape(&self.face, &[], buffer);
        let mut starts: Vec<usize> = shaped
            .glyph_infos()
            .iter()
            .map(|info| info.cluster as usize)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut cluster_named = vec![false; starts.len()];
        for (info, position) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
            let start = info.cluster as usize;
            let slot = starts.partition_point(|&s| s < start);
            let end = starts.get(slot + 1).copied().unwrap_or(run.len());
            let text = if cluster_named[slot] {
                String::new()
            } else {
                cluster_named[slot] = true;
                let logical = run.get(start..end).unwrap_or_default();
                if rtl {
                    logical.chars().rev().collect()
                } else {
                    logical.to_owned()
                }
            };
            out.push(Glyph {
                id: u16::try_from(info.glyph_id).unwrap_or(0),
                x_advance: position.x_advance,
                x_offset: position.x_offset,
                y_offset: position.y_offset,
                text,
            });
        }
    }

    /// The glyph the font's character map gives `c` alone, before any shaping.
    #[cfg(test)]
    pub fn nominal_glyph(&self, c: char) -> Option<u16> {
        self.face.glyph_index(c).map(|id| id.0)
    }

    /// The parsed font, for the PDF writer's metrics.
    pub fn face(&self) -> &Face<'static> {
        &self.face
    }
}

/// Zero-width formatting characters that shapers hide: joiners, bidi marks and controls.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper() -> Shaper {
        Shaper::new().expect("embedded font parses")
    }

    #[test]
    fn arabic_letters_take_joined_forms() {
        let shaper = shaper();
        let word = "بطاقة";
        let line = shaper.shape(word, Direction::Rtl, "ar");
        let isolated: Vec<u16> = word
            .chars()
            .map(|c| shaper.nominal_glyph(c).expect("covered"))
            .collect();
        let shaped: Vec<u16> = line.glyphs.iter().map(|g| g.id).collect();
        assert_eq!(shaped.len(), isolated.len());
        // Visual order is the reverse of logical order, and joined forms differ from the
        // isolated ones the character map gives.
        let mut logical = shaped.clone();
        logical.reverse();
        let joined = logical
            .iter()
            .zip(&isolated)
            .filter(|(s, i)| s != i)
            .count();
        assert!(
            joined >= 4,
            "only {joined} of {} glyphs joined: {logical:?} vs {isolated:?}",
            isolated.len()
        );
    }

    #[test]
    fn lam_alef_becomes_one_ligature_that_maps_back_to_both_letters_in_visual_order() {
        let shaper = shaper();
        let line = shaper.shape("لا", Direction::Rtl, "ar");
        assert_eq!(line.glyphs.len(), 1);
        assert_eq!(line.glyphs[0].text, "ال");
    }

    #[test]
    fn arabic_runs_are_reversed_and_latin_runs_inside_them_are_not() {
        let shaper = shaper();
        let line = shaper.shape("رقم PIN", Direction::Rtl, "ar");
        let text: String = line.glyphs.iter().map(|g| g.text.as_str()).collect();
        // Leftmost first: the Latin run reads left to right, then the Arabic word, reversed.
        assert_eq!(text, "PIN ".to_owned() + "مقر");
    }

    #[test]
    fn a_grouped_card_number_keeps_its_order_as_left_to_right_text() {
        let shaper = shaper();
        let line = shaper.shape("1234 5678", Direction::Ltr, "ar");
        let text: String = line.glyphs.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(text, "1234 5678");
    }

    #[test]
    fn missing_glyphs_are_found_and_joiners_are_not_missing() {
        let shaper = shaper();
        assert_eq!(shaper.first_missing("Ana\u{200D} Ρένα محمد"), None);
        assert_eq!(shaper.first_missing("王小明"), Some('王'));
    }
}
