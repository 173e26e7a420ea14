//! The settlement report: one CSV row per merchant and period with the redemptions, the gross
//! amount redeemed, the fee kept and the net amount paid, in the unit's own decimals.
//!
//! The CSV follows RFC 4180 (comma-separated, CRLF line ends, fields with `,`, `"`, CR or LF
//! quoted and inner quotes doubled). Merchants name themselves, and a report is opened in
//! spreadsheets, so a text cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`
//! (the OWASP advice against CSV formula injection): the cell shows as text, never runs.
//! Amount cells are written by us from non-negative integers and are never guarded.

use ledger::{Amount, ParticipantId, UnitCode, amount::MAX_SCALE};

use super::Date;

/// The header line's cells, in order.
pub const SETTLEMENT_CSV_HEADER: [&str; 8] = [
    "merchant_id",
    "merchant_name",
    "period",
    "redemptions",
    "gross",
    "fee",
    "net",
    "unit",
];
/// The longest merchant name a row accepts, in characters.
pub const MAX_MERCHANT_NAME_CHARS: usize = 200;
/// The characters that make a spreadsheet read a cell as a formula when they come first.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Why a settlement row could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// A period that ends before it starts.
    #[error("period ends {end} before it starts {start}")]
    PeriodReversed {
        /// The first day.
        start: Date,
        /// The last day.
        end: Date,
    },
    /// The fee is larger than the gross amount.
    #[error("merchant_id {merchant}: fee {fee} minor units exceeds gross {gross} minor units")]
    FeeExceedsGross {
        /// The merchant.
        merchant: ParticipantId,
        /// Gross, minor units.
        gross: i64,
        /// Fee, minor units.
        fee: i64,
    },
    /// A merchant name that is empty or longer than [`MAX_MERCHANT_NAME_CHARS`].
    #[error("merchant_id {merchant}: merchant_name must be 1-{MAX_MERCHANT_NAME_CHARS} characters")]
    BadName {
        /// The merchant.
        merchant: ParticipantId,
    },
    /// A unit scale beyond [`MAX_SCALE`].
    #[error("unit scale {0} is more than the maximum {MAX_SCALE}")]
    BadScale(u8),
}

/// A settlement period: whole days from `start` to `end`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    start: Date,
    end: Date,
}

impl Period {
    /// A period from `start` to `end` inclusive; `end` must not precede `start`.
    pub fn new(start: Date, end: Date) -> Result<Self, SettlementError> {
        if end < start {
            return Err(SettlementError::PeriodReversed { start, end });
        }
        Ok(Self { start, end })
    }
}

impl std::fmt::Display for Period {
    /// An ISO 8601 interval of dates, `2026-11-01/2026-11-30`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.start, self.end)
    }
}

/// A merchant's redemptions in a period, as counted by the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlementFigures {
    /// How many redemption entries.
    pub redemptions: u64,
    /// The units redeemed, before the fee.
    pub gross: Amount,
    /// The fee kept, in the same unit.
    pub fee: Amount,
}

/// One line of the report. Built only through [`SettlementRow::new`], so `net` is always
/// `gross - fee` and never negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementRow {
    merchant_id: ParticipantId,
    merchant_name: String,
    period: Period,
    unit: UnitCode,
    scale: u8,
    figures: SettlementFigures,
    net: Amount,
}

impl SettlementRow {
    /// Checks the figures and computes the net amount; `scale` is the unit's decimal places.
    pub fn new(
        merchant_id: ParticipantId,
        merchant_name: &str,
        period: Period,
        unit: UnitCode,
        scale: u8,
        figures: SettlementFigures,
    ) -> Result<Self, SettlementError> {
        if scale > MAX_SCALE {
            return Err(SettlementError::BadScale(scale));
        }
        let name_chars = merchant_name.chars().count();
        if merchant_name.trim().is_empty() || name_chars > MAX_MERCHANT_NAME_CHARS {
            return Err(SettlementError::BadName {
                merchant: merchant_id,
            });
        }
        let net = figures.gross.checked_sub(figures.fee).map_err(|_| {
            SettlementError::FeeExceedsGross {
                merchant: merchant_id,
                gross: figures.gross.minor(),
                fee: figures.fee.minor(),
            }
        })?;
        Ok(Self {
            merchant_id,
            merchant_name: merchant_name.to_owned(),
            period,
            unit,
            scale,
            figures,
            net,
        })
    }

    /// What the merchant is paid: gross less fee.
    pub fn net(&self) -> Amount {
        self.net
    }

    fn cells(&self) -> [String; 8] {
        [
            self.merchant_id.to_string(),
            text_cell(&self.merchant_name),
            self.period.to_string(),
            self.figures.redemptions.to_string(),
            self.figures.gross.format(self.scale),
            self.figures.fee.format(self.scale),
            self.net.format(self.scale),
            self.unit.to_string(),
        ]
    }
}

/// The report as RFC 4180 CSV: a header line, then one line per row, each ended by CRLF.
pub fn settlement_csv(rows: &[SettlementRow]) -> String {
    let mut out = String::new();
    push_line(&mut out, SETTLEMENT_CSV_HEADER.iter().copied());
    for row in rows {
        push_line(&mut out, row.cells().iter().map(String::as_str));
    }
    out
}

fn push_line<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_quoted(out, cell);
    }
    out.push_str("\r\n");
}

/// Writes a cell, quoting it when RFC 4180 requires and doubling inner quotes.
fn push_quoted(out: &mut String, cell: &str) {
    if cell.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&cell.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(cell);
    }
}

/// Free text from users, made inert for spreadsheets: a leading formula trigger gets a `'`.
fn text_cell(text: &str) -> String {
    if text.starts_with(FORMULA_TRIGGERS) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn november() -> Period {
        Period::new(
            Date::new(2026, 11, 1).unwrap(),
            Date::new(2026, 11, 30).unwrap(),
        )
        .unwrap()
    }

    fn row(name: &str, gross: i64, fee: i64) -> SettlementRow {
        SettlementRow::new(
            ParticipantId::from_bytes([7; 16]),
            name,
            november(),
            UnitCode::new("PGI-EUR").unwrap(),
            2,
            SettlementFigures {
                redemptions: 42,
                gross: Amount::from_minor(gross).unwrap(),
                fee: Amount::from_minor(fee).unwrap(),
            },
        )
        .unwrap()
    }

    fn lines(csv: &str) -> Vec<&str> {
        assert!(csv.ends_with("\r\n"));
        csv.trim_end_matches("\r\n").split("\r\n").collect()
    }

    #[test]
    fn a_report_has_a_header_and_exact_decimal_amounts() {
        let csv = settlement_csv(&[row("Panaderia Lopez", 1_234_56, 1_23), row("Kiosk", 1, 0)]);
        assert_eq!(
            lines(&csv),
            [
                "merchant_id,merchant_name,period,redemptions,gross,fee,net,unit",
                "07070707-0707-0707-0707-070707070707,Panaderia Lopez,2026-11-01/2026-11-30,42,1234.56,1.23,1233.33,PGI-EUR",
                "07070707-0707-0707-0707-070707070707,Kiosk,2026-11-01/2026-11-30,42,0.01,0.00,0.01,PGI-EUR",
            ]
        );
    }

    #[test]
    fn amounts_use_the_units_scale() {
        let points = SettlementRow::new(
            ParticipantId::from_bytes([1; 16]),
            "Recycling Coop",
            november(),
            UnitCode::new("BZ-PTS").unwrap(),
            0,
            SettlementFigures {
                redemptions: 3,
                gross: Amount::from_minor(1500).unwrap(),
                fee: Amount::from_minor(15).unwrap(),
            },
        )
        .unwrap();
        assert!(settlement_csv(&[points]).contains(",3,1500,15,1485,BZ-PTS\r\n"));
    }

    #[test]
    fn cells_with_commas_quotes_and_newlines_are_quoted() {
        let csv = settlement_csv(&[row("Smith, \"Best\" Bakery\nUnit 2", 100, 0)]);
        assert!(
            csv.contains(",\"Smith, \"\"Best\"\" Bakery\nUnit 2\",2026-11-01/"),
            "{csv}"
        );
        let plain = settlement_csv(&[row("Café Ñandú", 100, 0)]);
        assert!(plain.contains(",Café Ñandú,"), "{plain}");
    }

    #[test]
    fn names_that_look_like_formulas_stay_text() {
        for (name, cell) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tTab", "'\tTab"),
            ("=1,2", "\"'=1,2\""),
        ] {
            let csv = settlement_csv(&[row(name, 100, 0)]);
            assert!(csv.contains(&format!(",{cell},")), "{name:?} gave {csv}");
        }
        // A trigger inside a name is harmless and left alone.
        assert!(settlement_csv(&[row("Bread=Life", 100, 0)]).contains(",Bread=Life,"));
    }

    #[test]
    fn a_fee_above_gross_or_a_reversed_period_is_refused() {
        let error = SettlementRow::new(
            ParticipantId::from_bytes([7; 16]),
            "Kiosk",
            november(),
            UnitCode::new("PGI-EUR").unwrap(),
            2,
            SettlementFigures {
                redemptions: 1,
                gross: Amount::from_minor(100).unwrap(),
                fee: Amount::from_minor(101).unwrap(),
            },
        )
        .unwrap_err();
        assert!(matches!(
            error,
            SettlementError::FeeExceedsGross {
                gross: 100,
                fee: 101,
                ..
            }
        ));
        let (a, b) = (
            Date::new(2026, 11, 30).unwrap(),
            Date::new(2026, 11, 1).unwrap(),
        );
        assert_eq!(
            Period::new(a, b),
            Err(SettlementError::PeriodReversed { start: a, end: b })
        );
    }

    #[test]
    fn empty_or_oversized_names_and_scales_are_refused() {
        let make = |name: &str, scale: u8| {
            SettlementRow::new(
                ParticipantId::from_bytes([7; 16]),
                name,
                november(),
                UnitCode::new("PGI-EUR").unwrap(),
                scale,
                SettlementFigures {
                    redemptions: 0,
                    gross: Amount::ZERO,
                    fee: Amount::ZERO,
                },
            )
        };
        assert!(matches!(
            make("  ", 2),
            Err(SettlementError::BadName { .. })
        ));
        assert!(matches!(
            make(&"x".repeat(MAX_MERCHANT_NAME_CHARS + 1), 2),
            Err(SettlementError::BadName { .. })
        ));
        assert_eq!(make("Kiosk", 9), Err(SettlementError::BadScale(9)));
        assert!(make("Kiosk", 8).is_ok());
    }

    #[test]
    fn an_empty_report_is_just_the_header() {
        assert_eq!(
            settlement_csv(&[]),
            "merchant_id,merchant_name,period,redemptions,gross,fee,net,unit\r\n"
        );
    }
}
