//! Merchant redemption outputs: the SEPA credit-transfer file the municipality's bank executes
//! to pay merchants in euros for the voucher units they redeem ([`pain001`]), and the
//! settlement report each merchant receives per period ([`settlement`]).
//!
//! Both are pure: values in, text out, no IO and no clock (creation times are passed in).
//! Amounts are integer minor units throughout and become decimal text only at the very end,
//! by integer division, so no float ever touches money.

pub mod pain001;
pub mod settlement;

pub use pain001::{
    CreditTransferFile, Debtor, IbanError, IdProblem, SepaError, Transfer, normalise_bic,
    normalise_iban, pain001_xml, sepa_name,
};
pub use settlement::{Period, SettlementError, SettlementFigures, SettlementRow, settlement_csv};

/// The earliest year a [`Date`] may carry: nothing in this service predates Unix time.
pub const MIN_YEAR: u16 = 1970;
/// The latest year a [`Date`] may carry; ISO 8601 dates have four-digit years.
pub const MAX_YEAR: u16 = 9999;
/// Seconds in a day; Unix time has no leap seconds.
const SECONDS_PER_DAY: i64 = 86_400;

/// Why a calendar date could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The year is outside [`MIN_YEAR`]..=[`MAX_YEAR`].
    #[error("year {0} is outside {MIN_YEAR}..={MAX_YEAR}")]
    Year(i32),
    /// The month is not 1..=12.
    #[error("month {0} is not 1..=12")]
    Month(u8),
    /// The day does not exist in that month (30 February, 31 April, 29 February 2027).
    #[error("day {day} does not exist in {year:04}-{month:02}")]
    Day {
        /// The year.
        year: u16,
        /// The month.
        month: u8,
        /// The rejected day.
        day: u8,
    },
    /// A Unix time before 1970 or after 9999.
    #[error("unix time {0} s is outside the years {MIN_YEAR}..={MAX_YEAR}")]
    UnixTime(i64),
}

/// A proleptic Gregorian calendar date, always valid once built. Ordering is chronological.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// Validates and builds a date.
    pub fn new(year: i32, month: u8, day: u8) -> Result<Self, DateError> {
        let year = u16::try_from(year)
            .ok()
            .filter(|y| (MIN_YEAR..=MAX_YEAR).contains(y))
            .ok_or(DateError::Year(year))?;
        if !(1..=12).contains(&month) {
            return Err(DateError::Month(month));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(DateError::Day { year, month, day });
        }
        Ok(Self { year, month, day })
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub fn day(self) -> u8 {
        self.day
    }
}

impl std::fmt::Display for Date {
    /// ISO 8601 calendar date, `2026-11-30`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A UTC instant to the second, as written in ISO 8601: `2026-11-22T22:06:52Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcDateTime {
    /// The UTC calendar date.
    pub date: Date,
    /// Seconds since midnight UTC, 0..86400.
    pub second_of_day: u32,
}

impl UtcDateTime {
    /// The UTC date and time of a Unix time in seconds (1970..=9999).
    pub fn from_unix_s(unix_s: i64) -> Result<Self, DateError> {
        if unix_s < 0 {
            return Err(DateError::UnixTime(unix_s));
        }
        let days = unix_s / SECONDS_PER_DAY;
        let second_of_day =
            u32::try_from(unix_s % SECONDS_PER_DAY).map_err(|_| DateError::UnixTime(unix_s))?;
        let (year, month, day) = ledger::policy::civil_from_days(days);
        let in_range = (i32::try_from(year), u8::try_from(month), u8::try_from(day));
        let (Ok(year), Ok(month), Ok(day)) = in_range else {
            return Err(DateError::UnixTime(unix_s));
        };
        let date = Date::new(year, month, day).map_err(|_| DateError::UnixTime(unix_s))?;
        Ok(Self {
            date,
            second_of_day,
        })
    }
}

impl std::fmt::Display for UtcDateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, m, s) = (
            self.second_of_day / 3600,
            self.second_of_day / 60 % 60,
            self.second_of_day % 60,
        );
        write!(f, "{}T{h:02}:{m:02}:{s:02}Z", self.date)
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn impossible_dates_are_refused() {
        assert_eq!(
            Date::new(2027, 2, 29),
            Err(DateError::Day {
                year: 2027,
                month: 2,
                day: 29
            })
        );
        assert!(Date::new(2028, 2, 29).is_ok());
        assert!(Date::new(2100, 2, 29).is_err());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert_eq!(Date::new(2026, 13, 1), Err(DateError::Month(13)));
        assert_eq!(
            Date::new(2026, 4, 31).unwrap_err().to_string(),
            "day 31 does not exist in 2026-04"
        );
        assert_eq!(Date::new(1969, 12, 31), Err(DateError::Year(1969)));
        assert_eq!(Date::new(10_000, 1, 1), Err(DateError::Year(10_000)));
    }

    #[test]
    fn unix_times_become_utc_calendar_times() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_385_212, "2026-11-22T22:06:52Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (unix_s, text) in cases {
            assert_eq!(UtcDateTime::from_unix_s(unix_s).unwrap().to_string(), text);
        }
        assert_eq!(UtcDateTime::from_unix_s(-1), Err(DateError::UnixTime(-1)));
        assert!(UtcDateTime::from_unix_s(i64::MAX).is_err());
    }

    #[test]
    fn dates_order_chronologically() {
        assert!(Date::new(2026, 1, 31).unwrap() < Date::new(2026, 2, 1).unwrap());
        assert_eq!(Date::new(2026, 3, 5).unwrap().to_string(), "2026-03-05");
    }
}
