//! Any payload (an EMV payment request, a pay link) as a QR code: SVG for pages, PNG for
//! print, Unicode half blocks for a terminal.
//!
//! Every format draws the same matrix: error correction level M, the smallest QR version
//! that holds the payload's UTF-8 bytes, and a quiet zone of [`QUIET_ZONE_MODULES`] light
//! modules on each side, as the QR standard asks. Dark modules are black, light ones white.

mod crc32;
mod png;

#[cfg(test)]
mod tests;

use crate::qr_matrix::QrMatrix;

pub use crate::qr_matrix::QUIET_ZONE_MODULES;

/// Most bytes of payload rendered: a signed EMV payload in Arabic or Greek stays well below,
/// and beyond this a QR code grows too dense for a phone camera at arm's length.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Most pixels per module in a PNG: 32 prints the densest code above 20 cm wide at 300 dpi.
pub const MAX_PNG_SCALE: u32 = 32;

/// Why a payload could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The payload is too long for a code a phone reads reliably.
    #[error("the payload has {bytes} bytes; at most {MAX_PAYLOAD_BYTES} are drawn as a QR code")]
    TooLong {
        /// The payload's length in UTF-8 bytes.
        bytes: usize,
    },
    /// A PNG scale of zero or above [`MAX_PNG_SCALE`].
    #[error("PNG scale {0} must be 1-{MAX_PNG_SCALE} pixels per module")]
    Scale(u32),
}

/// The payload's modules and the side of the drawing, quiet zone included, in modules.
fn matrix(payload: &str) -> Result<(QrMatrix, usize), RenderError> {
    let bytes = payload.len();
    if bytes > MAX_PAYLOAD_BYTES {
        return Err(RenderError::TooLong { bytes });
    }
    // Within the limit every payload fits version 40-M (2331 bytes); reported, not trusted.
    let matrix = QrMatrix::encode(payload).ok_or(RenderError::TooLong { bytes })?;
    let side = matrix.width() + 2 * QUIET_ZONE_MODULES;
    Ok((matrix, side))
}

/// Whether the module at `row`, `column` of the drawing (quiet zone included) is dark.
fn dark_with_quiet_zone(matrix: &QrMatrix, row: usize, column: usize) -> bool {
    match (
        row.checked_sub(QUIET_ZONE_MODULES),
        column.checked_sub(QUIET_ZONE_MODULES),
    ) {
        (Some(row), Some(column)) => matrix.is_dark(row, column),
        _ => false,
    }
}

/// The code as a standalone SVG document for web pages. One unit of the `viewBox` is one
/// module and no width or height is set, so the image fills whatever box the page gives it;
/// a white square covers the quiet zone and one black path draws the dark modules as
/// horizontal runs, with `shape-rendering="crispEdges"` so edges stay sharp when scaled.
pub fn svg(payload: &str) -> Result<String, RenderError> {
    let (matrix, side) = matrix(payload)?;
    let mut path = String::new();
    for run in matrix.dark_runs() {
        let (x, y) = (
            run.column + QUIET_ZONE_MODULES,
            run.row + QUIET_ZONE_MODULES,
        );
        path.push_str(&format!("M{x} {y}h{}v1h-{}z", run.length, run.length));
    }
    Ok(format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" "#,
            r#"shape-rendering="crispEdges">"#,
            r##"<rect width="{side}" height="{side}" fill="#fff"/>"##,
            r##"<path fill="#000" d="{path}"/></svg>"##,
        ),
        side = side,
        path = path,
    ))
}

/// The code as a PNG file for print: 1-bit greyscale, `scale` pixels per module (1 to
/// [`MAX_PNG_SCALE`]), quiet zone included, so the image is `(width + 8) × scale` pixels
/// square. No physical size is recorded; the printing page decides it.
pub fn png(payload: &str, scale: u32) -> Result<Vec<u8>, RenderError> {
    if !(1..=MAX_PNG_SCALE).contains(&scale) {
        return Err(RenderError::Scale(scale));
    }
    let (matrix, side) = matrix(payload)?;
    let scale_px = scale as usize;
    // At most (177 + 8) × 32 pixels a side, far within u32.
    let pixels = u32::try_from(side * scale_px).unwrap_or(u32::MAX);
    Ok(png::bilevel(pixels, pixels, |x, y| {
        !dark_with_quiet_zone(&matrix, y / scale_px, x / scale_px)
    }))
}

/// The code as text for a terminal: each character is one module wide and two high, drawn
/// with `█`, `▀`, `▄` and space; lines end with `\n`. Block characters are the *light*
/// modules, for the usual light-on-dark terminal, so the code reads dark on light and the
/// quiet zone shows. The output has `width + 8` columns and `(width + 9) / 2` lines (the
/// last line's lower half is extra quiet zone, the side being odd).
pub fn unicode(payload: &str) -> Result<String, RenderError> {
    let (matrix, side) = matrix(payload)?;
    let light = |row: usize, column: usize| !dark_with_quiet_zone(&matrix, row, column);
    let mut out = String::with_capacity(side * side.div_ceil(2) * 3 + side);
    for top in (0..side).step_by(2) {
        for column in 0..side {
            let upper = light(top, column);
            let lower = top + 1 >= side || light(top + 1, column);
            out.push(match (upper, lower) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}
