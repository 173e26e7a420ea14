//! A QR code as a matrix of modules: the one place this crate asks `qrcode` to encode. The
//! card sheet's SVG and PDF writers and the `qr_render` module draw from it (the `qrcode`
//! crate only encodes; it renders nothing here).

use qrcode::{Color, EcLevel, QrCode};

/// Light modules the standard asks for around the code, on each side.
pub const QUIET_ZONE_MODULES: usize = 4;

/// The modules of one QR code, row by row, `true` for dark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QrMatrix {
    width: usize,
    dark: Vec<bool>,
}

/// A horizontal run of dark modules: row, first column, length, in modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DarkRun {
    pub row: usize,
    pub column: usize,
    pub length: usize,
}

impl QrMatrix {
    /// Encodes `payload` (its UTF-8 bytes, in byte mode where needed) at error correction
    /// level M in the smallest version that holds it; `None` when even version 40 cannot.
    /// Callers that print small codes check [`QrMatrix::width`] against their own limit.
    pub fn encode(payload: &str) -> Option<Self> {
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).ok()?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|color| color == Color::Dark)
            .collect();
        Some(Self { width, dark })
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at `row`, `column` (from the top left, quiet zone excluded) is
    /// dark; modules outside the code, in the quiet zone or beyond, are light.
    pub fn is_dark(&self, row: usize, column: usize) -> bool {
        row < self.width && column < self.width && self.dark[row * self.width + column]
    }

    /// The dark modules as maximal horizontal runs, row by row, left to right; drawing one
    /// rectangle per run keeps the output several times smaller than one per module.
    pub fn dark_runs(&self) -> Vec<DarkRun> {
        let mut runs = Vec::new();
        for (row, cells) in self.dark.chunks(self.width).enumerate() {
            let mut column = 0;
            while column < cells.len() {
                if !cells[column] {
                    column += 1;
                    continue;
                }
                let start = column;
                while column < cells.len() && cells[column] {
                    column += 1;
                }
                runs.push(DarkRun {
                    row,
                    column: start,
                    length: column - start,
                });
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_exactly_the_dark_modules() {
        let matrix = QrMatrix::encode("coledger:card:1234567890123456").expect("encodes");
        let mut drawn = vec![false; matrix.width() * matrix.width()];
        for run in matrix.dark_runs() {
            for column in run.column..run.column + run.length {
                let cell = &mut drawn[run.row * matrix.width() + column];
                assert!(!*cell, "runs overlap");
                *cell = true;
            }
        }
        assert_eq!(drawn, matrix.dark);
    }

    #[test]
    fn payload_beyond_version_forty_is_refused() {
        // Version 40-M holds 2331 bytes, 177 modules a side.
        let large = QrMatrix::encode(&"x".repeat(2_331)).expect("fits version 40-M");
        assert_eq!(large.width(), 177);
        assert!(QrMatrix::encode(&"x".repeat(2_332)).is_none());
    }

    #[test]
    fn modules_outside_the_code_are_light() {
        let matrix = QrMatrix::encode("coledger").expect("encodes");
        // The top-left finder pattern's corner is dark; one step outside is not.
        assert!(matrix.is_dark(0, 0));
        assert!(!matrix.is_dark(0, matrix.width()));
        assert!(!matrix.is_dark(matrix.width(), 0));
    }
}
