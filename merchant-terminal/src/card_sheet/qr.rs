//! A card's QR code as a module matrix, drawn by the SVG and PDF writers as runs of dark
//! modules (the `qrcode` crate only encodes; it renders nothing here).

use qrcode::{Color, EcLevel, QrCode};

/// Width in modules of QR version 10, the largest a card prints (see `MAX_QR_PAYLOAD_BYTES`).
pub(crate) const MAX_QR_WIDTH_MODULES: usize = 57;
/// Light modules the standard asks for around the code, on each side.
pub(crate) const QUIET_ZONE_MODULES: usize = 4;

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
    /// Encodes `payload` at error correction level M in the smallest version that holds it;
    /// `None` when it needs a version wider than [`MAX_QR_WIDTH_MODULES`].
    pub fn encode(payload: &str) -> Option<Self> {
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).ok()?;
        let width = code.width();
        if width > MAX_QR_WIDTH_MODULES {
            return None;
        }
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
    fn payload_needing_a_version_above_ten_is_refused() {
        assert!(QrMatrix::encode(&"x".repeat(200)).is_some());
        assert!(QrMatrix::encode(&"x".repeat(300)).is_none());
    }
}
