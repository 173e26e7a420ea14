#![allow(clippy::unwrap_used)]

use qrcode::{Color, EcLevel, QrCode};

use super::crc32::crc32;
use super::*;

const PAYLOAD: &str = "00020101021226680012org.coledger0136018f3a2b-7c4d-7e5f-8a6b-9c0d1e2f3a4b\
0208SFAX-TND5204541153037885802TN5918Epicerie Ben Salah6004Sfax64200002ar0113بقالة بن صالح6304ABCD";

/// The module matrix straight from `qrcode`, with the quiet zone added: the reference every
/// rendering must reproduce.
fn expected(payload: &str) -> Vec<Vec<bool>> {
    let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).unwrap();
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET_ZONE_MODULES;
    let mut grid = vec![vec![false; side]; side];
    for row in 0..width {
        for column in 0..width {
            grid[row + QUIET_ZONE_MODULES][column + QUIET_ZONE_MODULES] =
                colors[row * width + column] == Color::Dark;
        }
    }
    grid
}

/// Reads back the path `svg` writes: runs of `M{x} {y}h{n}v1h-{n}z`.
fn modules_from_svg(svg: &str) -> Vec<Vec<bool>> {
    let view_box = svg.split("viewBox=\"0 0 ").nth(1).unwrap();
    let side: usize = view_box.split(' ').next().unwrap().parse().unwrap();
    let mut grid = vec![vec![false; side]; side];
    let path = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    for run in path.split('z').filter(|run| !run.is_empty()) {
        let run = run.strip_prefix('M').unwrap();
        let (x, rest) = run.split_once(' ').unwrap();
        let (y, rest) = rest.split_once('h').unwrap();
        let (length, rest) = rest.split_once('v').unwrap();
        assert_eq!(rest, format!("1h-{length}"));
        let (x, y, length): (usize, usize, usize) = (
            x.parse().unwrap(),
            y.parse().unwrap(),
            length.parse().unwrap(),
        );
        for cell in &mut grid[y][x..x + length] {
            assert!(!*cell, "runs overlap");
            *cell = true;
        }
    }
    grid
}

#[test]
fn svg_draws_exactly_the_modules_of_the_code() {
    let svg = svg(PAYLOAD).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("shape-rendering=\"crispEdges\""));
    assert!(svg.ends_with("</svg>"));
    assert_eq!(modules_from_svg(&svg), expected(PAYLOAD));
}

struct Png {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Parses a PNG as `png` writes it, checking the signature, the chunk order, every CRC and
/// the header, and inflates the image data.
fn parse_png(bytes: &[u8]) -> Png {
    assert_eq!(
        &bytes[..8],
        &[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n']
    );
    let mut rest = &bytes[8..];
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().unwrap();
        let data = &rest[8..8 + length];
        let crc = u32::from_be_bytes(rest[8 + length..12 + length].try_into().unwrap());
        assert_eq!(crc, crc32(&[&kind, data]), "CRC of {:?}", kind);
        chunks.push((kind, data.to_vec()));
        rest = &rest[12 + length..];
    }
    let kinds: Vec<&[u8; 4]> = chunks.iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, [b"IHDR", b"IDAT", b"IEND"]);
    let header = &chunks[0].1;
    assert_eq!(header.len(), 13);
    let width = u32::from_be_bytes(header[..4].try_into().unwrap());
    let height = u32::from_be_bytes(header[4..8].try_into().unwrap());
    // 1-bit greyscale, deflate, filter method 0, no interlace.
    assert_eq!(&header[8..], &[1, 0, 0, 0, 0]);
    assert!(chunks[2].1.is_empty());
    let pixels = miniz_oxide::inflate::decompress_to_vec_zlib(&chunks[1].1).unwrap();
    Png {
        width,
        height,
        pixels,
    }
}

impl Png {
    fn white(&self, x: usize, y: usize) -> bool {
        let row_bytes = (self.width as usize).div_ceil(8);
        let row = &self.pixels[y * (row_bytes + 1)..(y + 1) * (row_bytes + 1)];
        assert_eq!(row[0], 0, "filter type");
        row[1 + x / 8] & (0x80 >> (x % 8)) != 0
    }
}

#[test]
fn png_decodes_back_to_the_modules_of_the_code() {
    for scale in [1, 3, 8] {
        let png = parse_png(&png(PAYLOAD, scale).unwrap());
        let grid = expected(PAYLOAD);
        let side = grid.len();
        let scale = scale as usize;
        assert_eq!(png.width as usize, side * scale);
        assert_eq!(png.height, png.width);
        let row_bytes = (side * scale).div_ceil(8);
        assert_eq!(png.pixels.len(), side * scale * (row_bytes + 1));
        for y in 0..side * scale {
            for x in 0..side * scale {
                assert_eq!(
                    png.white(x, y),
                    !grid[y / scale][x / scale],
                    "pixel {x},{y}"
                );
            }
        }
    }
}

#[test]
fn png_scale_outside_its_range_is_refused() {
    assert_eq!(png(PAYLOAD, 0), Err(RenderError::Scale(0)));
    assert_eq!(png(PAYLOAD, 33), Err(RenderError::Scale(33)));
    assert!(png(PAYLOAD, MAX_PNG_SCALE).is_ok());
}

#[test]
fn unicode_has_one_column_per_module_and_one_line_per_two() {
    let text = unicode(PAYLOAD).unwrap();
    let grid = expected(PAYLOAD);
    let side = grid.len();
    let lines: Vec<&str> = text.lines().collect();
    assert!(text.ends_with('\n'));
    assert_eq!(lines.len(), side.div_ceil(2));
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line.chars().count(), side);
        for (column, character) in line.chars().enumerate() {
            let light = |row: usize| row >= side || !grid[row][column];
            let (upper, lower) = (light(2 * index), light(2 * index + 1));
            let expected = match (upper, lower) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            };
            assert_eq!(character, expected, "line {index}, column {column}");
        }
    }
    // The quiet zone: the first two lines are all light.
    assert!(lines[0].chars().all(|c| c == '█'));
    assert!(lines[1].chars().all(|c| c == '█'));
}

#[test]
fn signed_payment_request_renders_in_every_format() {
    use ed25519_dalek::SigningKey;
    use ledger::{AccountId, Amount, CategoryCode, UnitCode};

    use crate::emv;

    let payload = emv::PaymentRequestPayload {
        initiation: emv::Initiation::Dynamic {
            amount: emv::RequestAmount {
                value: Amount::from_minor(999_999).unwrap(),
                scale: 2,
            },
        },
        merchant_account: AccountId::from_bytes([7; 16]),
        unit: UnitCode::new("ATHENS-CIVIC-PTS").unwrap(),
        category: CategoryCode::parse("5411").unwrap(),
        currency_numeric: emv::NO_CURRENCY,
        country: "GR".into(),
        merchant_name: "x".repeat(emv::MAX_NAME_CHARS),
        city: "y".repeat(emv::MAX_CITY_CHARS),
        reference: Some(ledger::PaymentRequestId::from_bytes([9; 16])),
        terminal: Some("z".repeat(emv::MAX_LABEL_CHARS)),
        alternate: Some(emv::AlternateLanguage {
            language: "el".into(),
            name: "Ω".repeat(emv::MAX_NAME_CHARS),
            city: Some("Α".repeat(emv::MAX_CITY_CHARS)),
        }),
    };
    let text = emv::encode(&payload, &SigningKey::from_bytes(&[3; 32])).unwrap();
    assert!(text.len() <= MAX_PAYLOAD_BYTES);
    assert_eq!(modules_from_svg(&svg(&text).unwrap()), expected(&text));
    let side = expected(&text).len();
    assert_eq!(parse_png(&png(&text, 4).unwrap()).width as usize, side * 4);
    assert_eq!(unicode(&text).unwrap().lines().count(), side.div_ceil(2));
}

#[test]
fn payload_over_the_limit_is_refused() {
    let long = "x".repeat(MAX_PAYLOAD_BYTES + 1);
    let error = RenderError::TooLong {
        bytes: MAX_PAYLOAD_BYTES + 1,
    };
    assert_eq!(svg(&long), Err(error.clone()));
    assert_eq!(png(&long, 1), Err(error.clone()));
    assert_eq!(unicode(&long), Err(error));
}
