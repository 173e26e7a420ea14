//! Tests of the public API: validation, page counts, SVG attributes and QR fidelity, PDF
//! structure and text recovery.

use std::collections::HashMap;

use qrcode::{Color, EcLevel, QrCode};

use super::*;

fn card(language: &str, holder_name: &str, number: &str) -> CardFace {
    CardFace {
        scheme_name: "Moneda Social Sevilla".to_owned(),
        holder_name: holder_name.to_owned(),
        card_number: number.to_owned(),
        qr_payload: format!("coledger:card:{number}"),
        language: language.to_owned(),
    }
}

fn mixed_cards(count: usize) -> Vec<CardFace> {
    let people = [
        ("es", "Lucía Fernández"),
        ("el", "Ελένη Παπαδοπούλου"),
        ("ar", "فاطمة الزهراء"),
        ("pt", "João Gonçalves"),
    ];
    (0..count)
        .map(|i| {
            let (language, name) = people[i % people.len()];
            card(
                language,
                name,
                &format!("{:016}", 4_000_000_000_000_000u64 + i as u64),
            )
        })
        .collect()
}

#[test]
fn twenty_three_cards_make_three_pages_in_both_formats() {
    let cards = mixed_cards(23);
    let svg = render_svg_pages(&cards).expect("svg");
    assert_eq!(svg.len(), 3);
    assert_eq!(
        svg[2].matches("<text ").count(),
        3 * 6,
        "last page holds three cards"
    );
    let pdf = render_pdf(&cards).expect("pdf");
    let text = String::from_utf8_lossy(&pdf);
    assert_eq!(text.matches("/Type /Page /").count(), 3);
    assert!(text.contains("/Count 3 "));
}

#[test]
fn invalid_input_is_refused_with_the_card_it_concerns() {
    assert_eq!(render_svg_pages(&[]), Err(SheetError::Empty));
    assert_eq!(render_pdf(&[]), Err(SheetError::Empty));
    let good = card("en", "Ann Lee", "1234567890123456");
    let cases = [
        (
            CardFace {
                card_number: "123456789012345".into(),
                ..good.clone()
            },
            SheetError::InvalidCardNumber { index: 1 },
        ),
        (
            CardFace {
                card_number: "1234 5678 9012 3456".into(),
                ..good.clone()
            },
            SheetError::InvalidCardNumber { index: 1 },
        ),
        (
            CardFace {
                card_number: "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦".into(),
                ..good.clone()
            },
            SheetError::InvalidCardNumber { index: 1 },
        ),
        (
            CardFace {
                language: "de".into(),
                ..good.clone()
            },
            SheetError::UnknownLanguage {
                index: 1,
                language: "de".into(),
            },
        ),
        (
            CardFace {
                qr_payload: String::new(),
                ..good.clone()
            },
            SheetError::EmptyQrPayload { index: 1 },
        ),
        (
            CardFace {
                qr_payload: "x".repeat(MAX_QR_PAYLOAD_BYTES + 1),
                ..good.clone()
            },
            SheetError::QrPayloadTooLong {
                index: 1,
                bytes: MAX_QR_PAYLOAD_BYTES + 1,
                max: MAX_QR_PAYLOAD_BYTES,
            },
        ),
        (
            CardFace {
                holder_name: " ".into(),
                ..good.clone()
            },
            SheetError::InvalidName {
                index: 1,
                field: "holder_name",
                max: MAX_HOLDER_NAME_CHARS,
            },
        ),
        (
            CardFace {
                holder_name: "Ann\nLee".into(),
                ..good.clone()
            },
            SheetError::InvalidName {
                index: 1,
                field: "holder_name",
                max: MAX_HOLDER_NAME_CHARS,
            },
        ),
        (
            CardFace {
                scheme_name: "S".repeat(MAX_SCHEME_NAME_CHARS + 1),
                ..good.clone()
            },
            SheetError::InvalidName {
                index: 1,
                field: "scheme_name",
                max: MAX_SCHEME_NAME_CHARS,
            },
        ),
        (
            CardFace {
                holder_name: "王小明".into(),
                ..good.clone()
            },
            SheetError::UnsupportedCharacter {
                index: 1,
                field: "holder_name",
                character: '王',
            },
        ),
    ];
    for (bad, expected) in cases {
        let cards = [good.clone(), bad];
        assert_eq!(render_svg_pages(&cards), Err(expected.clone()));
        assert_eq!(render_pdf(&cards), Err(expected));
    }
    let too_many = vec![good; MAX_CARDS + 1];
    assert_eq!(
        render_pdf(&too_many),
        Err(SheetError::TooManyCards {
            count: MAX_CARDS + 1,
            max: MAX_CARDS
        })
    );
}

#[test]
fn language_tags_match_on_their_primary_subtag() {
    assert_eq!(Language::from_tag("ar-MA"), Some(Language::Ar));
    assert_eq!(Language::from_tag("PT_br"), Some(Language::Pt));
    assert_eq!(Language::from_tag("el"), Some(Language::El));
    assert_eq!(Language::from_tag(""), None);
    assert_eq!(Language::from_tag("english"), None);
}

#[test]
fn card_numbers_are_grouped_in_fours() {
    assert_eq!(group_card_number("1234567890123456"), "1234 5678 9012 3456");
}

#[test]
fn names_are_escaped_in_svg() {
    let cards = [CardFace {
        scheme_name: "A \"quoted\" scheme".into(),
        ..card("en", "O'Brien & <Sons>", "1234567890123456")
    }];
    let svg = render_svg_pages(&cards).expect("svg").remove(0);
    assert!(
        svg.contains(">O&apos;Brien &amp; &lt;Sons&gt;</text>"),
        "{svg}"
    );
    assert!(svg.contains(">A &quot;quoted&quot; scheme</text>"));
    assert!(!svg.contains("<Sons>"));
    assert!(!svg.contains("& "), "a bare ampersand");
}

#[test]
fn arabic_card_is_right_to_left_in_svg_and_its_number_is_not() {
    let cards = [
        card("ar", "فاطمة الزهراء", "1234567890123456"),
        card("es", "Lucía", "1234567890123457"),
    ];
    let svg = render_svg_pages(&cards).expect("svg").remove(0);
    let line = |needle: &str| {
        svg.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}"))
            .to_owned()
    };
    let name = line(">فاطمة الزهراء<");
    assert!(
        name.contains(
            "xml:lang=\"ar\" direction=\"rtl\" unicode-bidi=\"embed\" text-anchor=\"start\""
        ),
        "{name}"
    );
    let label = line(">رقم البطاقة<");
    assert!(label.contains("direction=\"rtl\""));
    let number = line(">1234 5678 9012 3456<");
    assert!(!number.contains("direction=\"rtl\""));
    assert!(number.contains("text-anchor=\"end\""), "{number}");
    let spanish = line(">Lucía<");
    assert!(
        spanish.contains("xml:lang=\"es\" text-anchor=\"start\""),
        "{spanish}"
    );
    // The Arabic card is mirrored: the name's anchor is the right edge of its column, and the
    // card's QR code (the first on the page) sits at the card's left.
    let name_x: f64 = after(&name, "x=\"").parse().expect("name x");
    let qr_x: f64 = after(&svg, "translate(")
        .split(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .expect("qr x");
    assert!(name_x > qr_x + 60.0, "name at {name_x}, QR at {qr_x}");
}

/// The text after the first `marker`, up to the next double quote.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text.find(marker).expect("marker") + marker.len();
    text[start..].split('"').next().expect("value")
}

/// Rebuilds each QR code drawn in an SVG page from its `M c r h n v1 h-n z` runs.
fn svg_qr_codes(svg: &str) -> Vec<Vec<Vec<bool>>> {
    let mut codes = Vec::new();
    for chunk in svg.split("crispEdges\" fill=\"#000000\" d=\"").skip(1) {
        let d = chunk.split('"').next().expect("path data");
        let mut rows: Vec<Vec<bool>> = Vec::new();
        for run in d.split('M').filter(|r| !r.is_empty()) {
            let run = run.strip_suffix('z').expect("closed run");
            let (start, rest) = run.split_once('h').expect("h");
            let (length, _) = rest.split_once('v').expect("v");
            let (column, row) = start.split_once(' ').expect("column row");
            let (column, row, length): (usize, usize, usize) = (
                column.parse().expect("c"),
                row.parse().expect("r"),
                length.parse().expect("n"),
            );
            if rows.len() <= row {
                rows.resize(row + 1, Vec::new());
            }
            let cells = &mut rows[row];
            if cells.len() < column + length {
                cells.resize(column + length, false);
            }
            cells[column..column + length].fill(true);
        }
        codes.push(rows);
    }
    codes
}

#[test]
fn svg_qr_modules_match_the_qrcode_matrix() {
    let cards = mixed_cards(3);
    let svg = render_svg_pages(&cards).expect("svg").remove(0);
    let drawn = svg_qr_codes(&svg);
    assert_eq!(drawn.len(), cards.len());
    for (card, rows) in cards.iter().zip(drawn) {
        let code = QrCode::with_error_correction_level(card.qr_payload.as_bytes(), EcLevel::M)
            .expect("qr");
        let width = code.width();
        let expected: Vec<Vec<bool>> = code
            .to_colors()
            .chunks(width)
            .map(|row| row.iter().map(|&c| c == Color::Dark).collect())
            .collect();
        // The drawn rows stop at their last dark module; pad them to the full width.
        let rows: Vec<Vec<bool>> = rows
            .into_iter()
            .map(|mut row| {
                row.resize(width, false);
                row
            })
            .collect();
        assert_eq!(rows, expected);
    }
}

/// Checks the trailer and that every xref entry points at its `N 0 obj`.
fn check_xref(pdf: &[u8]) -> usize {
    assert!(pdf.starts_with(b"%PDF-1.7\n"));
    assert!(pdf.ends_with(b"%%EOF\n"));
    let tail = String::from_utf8_lossy(&pdf[pdf.len() - 64..]).into_owned();
    let start: usize = tail
        .rsplit("startxref\n")
        .next()
        .and_then(|t| t.lines().next())
        .and_then(|n| n.parse().ok())
        .expect("startxref");
    let table = String::from_utf8_lossy(&pdf[start..]).into_owned();
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("xref"));
    let count: usize = lines
        .next()
        .and_then(|l| l.strip_prefix("0 "))
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert_eq!(lines.next(), Some("0000000000 65535 f "));
    for object in 1..count {
        let entry = lines.next().expect("entry");
        assert_eq!(
            entry.len(),
            19,
            "xref entries are 20 bytes with the newline"
        );
        let offset: usize = entry[..10].parse().expect("offset");
        let head = format!("{object} 0 obj\n");
        assert!(
            pdf[offset..].starts_with(head.as_bytes()),
            "object {object} not at {offset}"
        );
    }
    assert_eq!(lines.next(), Some("trailer"));
    count
}

#[test]
fn pdf_structure_and_xref_offsets_are_sound() {
    let pdf = render_pdf(&mixed_cards(23)).expect("pdf");
    let objects = check_xref(&pdf);
    // Free entry, catalog, page tree, five font objects, a page and its content per page, info.
    assert_eq!(objects, 1 + 2 + 5 + 2 * 3 + 1);
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("/Subtype /CIDFontType2"));
    assert!(text.contains("/Encoding /Identity-H"));
    assert!(text.contains("+DejaVuSans"));
    // About 43 KB: a 30 KB compressed font subset and under 1 KB per card. Without subsetting
    // or compression it would be several times larger.
    assert!(pdf.len() < 80 * 1024, "PDF is {} bytes", pdf.len());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The PDF as text with every stream inflated in place, for reading content and CMaps.
fn inflated(pdf: &[u8]) -> String {
    const DICT: &[u8] = b"<< /Length ";
    let mut out = String::new();
    let mut at = 0;
    while let Some(found) = find(&pdf[at..], DICT) {
        let dict = at + found;
        let digits = pdf[dict + DICT.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let length: usize =
            std::str::from_utf8(&pdf[dict + DICT.len()..dict + DICT.len() + digits])
                .ok()
                .and_then(|n| n.parse().ok())
                .expect("stream length");
        let data = dict + find(&pdf[dict..], b"stream\n").expect("stream") + b"stream\n".len();
        out.push_str(&String::from_utf8_lossy(&pdf[at..data]));
        let plain = miniz_oxide::inflate::decompress_to_vec_zlib(&pdf[data..data + length])
            .expect("inflates");
        out.push_str(&String::from_utf8_lossy(&plain));
        at = data + length;
    }
    out.push_str(&String::from_utf8_lossy(&pdf[at..]));
    out
}

/// The ToUnicode map, glyph id to text.
fn to_unicode(pdf: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for block in pdf.split("beginbfchar\n").skip(1) {
        let block = block.split("endbfchar").next().expect("block end");
        for line in block.lines() {
            let (glyph, utf16) = line.split_once("> <").expect("pair");
            let units: Vec<u16> = utf16
                .trim_end_matches('>')
                .as_bytes()
                .chunks(4)
                .map(|hex| {
                    u16::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16).expect("hex")
                })
                .collect();
            map.insert(
                glyph.trim_start_matches('<').to_owned(),
                String::from_utf16(&units).expect("utf16"),
            );
        }
    }
    map
}

/// Each text object's glyphs, mapped back through ToUnicode, in drawing (visual) order.
fn text_objects(pdf: &str) -> Vec<Vec<String>> {
    let map = to_unicode(pdf);
    pdf.lines()
        .filter(|l| l.starts_with("BT "))
        .map(|l| {
            l.split('<')
                .skip(1)
                .map(|g| map.get(&g[..4]).cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

#[test]
fn pdf_text_maps_back_to_the_names() {
    let cards = [
        card("el", "Ελένη Παπαδοπούλου", "1234567890123456"),
        card("ar", "فاطمة الزهراء", "1234567890123457"),
    ];
    let pdf = render_pdf(&cards).expect("pdf");
    let objects = text_objects(&inflated(&pdf));
    let left_to_right: Vec<String> = objects.iter().map(|o| o.concat()).collect();
    assert!(left_to_right.contains(&"Ελένη Παπαδοπούλου".to_owned()));
    assert!(
        left_to_right.contains(&"1234 5678 9012 3457".to_owned()),
        "number keeps its order on an RTL card"
    );
    // Arabic is drawn and mapped right to left: reading from the right gives the name back.
    let right_to_left: Vec<String> = left_to_right
        .iter()
        .map(|o| o.chars().rev().collect())
        .collect();
    assert!(
        right_to_left.contains(&"فاطمة الزهراء".to_owned()),
        "{right_to_left:?}"
    );
    assert!(right_to_left.contains(&"رقم البطاقة".to_owned()));
}

#[test]
fn pdf_arabic_glyphs_are_joined_forms() {
    let shaper = Shaper::new().expect("font");
    let pdf = render_pdf(&[card("ar", "فاطمة", "1234567890123456")]).expect("pdf");
    let text = inflated(&pdf);
    let name_line = text_objects(&text)
        .into_iter()
        .zip(text.lines().filter(|l| l.starts_with("BT ")))
        .find(|(glyphs, _)| glyphs.concat().chars().rev().collect::<String>() == "فاطمة")
        .map(|(_, line)| line.to_owned())
        .expect("name drawn");
    let drawn: Vec<u16> = name_line
        .split('<')
        .skip(1)
        .map(|g| u16::from_str_radix(&g[..4], 16).expect("glyph id"))
        .collect();
    let isolated: Vec<u16> = "فاطمة"
        .chars()
        .rev()
        .map(|c| shaper.nominal_glyph(c).expect("covered"))
        .collect();
    assert_eq!(drawn.len(), isolated.len());
    assert!(
        drawn.iter().zip(&isolated).filter(|(d, i)| d != i).count() >= 3,
        "{drawn:?} {isolated:?}"
    );
}

#[test]
fn output_is_deterministic() {
    let cards = mixed_cards(5);
    assert_eq!(render_pdf(&cards), render_pdf(&cards));
    assert_eq!(render_svg_pages(&cards), render_svg_pages(&cards));
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Any name in the scripts the cards carry, XML specials included, renders in both formats:
    /// escaped in the SVG, and with sound cross-references in the PDF.
    #[test]
    fn any_printable_name_renders_in_both_formats(
        name in "[A-Za-zÀ-ÿΑ-ΡΣ-Ωα-ωء-غف-ي &<>\"'.-]{1,48}",
        language in proptest::sample::select(vec!["en", "es", "el", "ar", "pt", "fr"]),
    ) {
        proptest::prop_assume!(!name.trim().is_empty());
        let cards = [card(language, &name, "1234567890123456")];
        let svg = render_svg_pages(&cards).expect("svg").remove(0);
        let escaped = format!(">{}</text>", svg::escape(&name));
        proptest::prop_assert!(svg.contains(&escaped));
        let pdf = render_pdf(&cards).expect("pdf");
        check_xref(&pdf);
    }

    #[test]
    fn escaping_leaves_no_markup_and_round_trips(text in "\\PC{0,64}") {
        let escaped = svg::escape(&text);
        proptest::prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
        proptest::prop_assert_eq!(unescape(&escaped), text);
    }
}
