//! A minimal PNG writer for black-and-white images: 1-bit greyscale, one IDAT chunk
//! compressed with `miniz_oxide`, no interlacing, no ancillary chunks.

use super::crc32::crc32;

/// The eight bytes every PNG file starts with.
pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
/// Deflate effort: the images are small and written once, so take the best compression.
const COMPRESSION_LEVEL: u8 = 9;
/// PNG filter type 0: rows stored as they are (1-bit rows gain nothing from filtering).
const FILTER_NONE: u8 = 0;

/// Encodes a `width` × `height` 1-bit greyscale image; `white(x, y)` says whether the pixel
/// at column `x`, row `y` is white. The caller keeps both sides within `u32`.
pub(crate) fn bilevel(width: u32, height: u32, white: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    let (columns, rows) = (width as usize, height as usize);
    let row_bytes = columns.div_ceil(8);
    let mut raw = Vec::with_capacity(rows * (row_bytes + 1));
    for y in 0..rows {
        raw.push(FILTER_NONE);
        let start = raw.len();
        raw.resize(start + row_bytes, 0);
        for x in (0..columns).filter(|&x| white(x, y)) {
            // Most significant bit first: the leftmost pixel of each byte is bit 7.
            raw[start + x / 8] |= 0x80 >> (x % 8);
        }
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 1, colour type 0 (greyscale), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    let data = miniz_oxide::deflate::compress_to_vec_zlib(&raw, COMPRESSION_LEVEL);
    let mut png = Vec::with_capacity(data.len() + 64);
    png.extend_from_slice(&SIGNATURE);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &data);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Appends one chunk: length, type, data, CRC-32 of type and data.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // A chunk holds at most 2^31 - 1 bytes; a QR image at the largest scale is far below.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    png.extend_from_slice(&length.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}
