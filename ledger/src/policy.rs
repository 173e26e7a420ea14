//! Programme rules the Book enforces at payment time.
//!
//! A unit paid out by a municipal programme carries a [`UnitPolicy`]: the programme's
//! administrator key, and its spending rules as versions that each take effect at a stated
//! time (a rule change never rewrites the past: an entry is judged by the version in force at
//! its `created_at`). The rules say where a household may spend (registered merchants of
//! allowed categories), how much per day and per month, and how merchants redeem (the fee and
//! where it goes). The Book learns which accounts are registered merchants, with their
//! category, through [`crate::Book::set_payee`].

use serde::{Deserialize, Serialize};

use crate::TimestampMs;
use crate::amount::Amount;
use crate::ids::AccountId;
use crate::keys::PublicKey;

/// Milliseconds in a day; spending caps count calendar days and months in UTC.
const DAY_MS: i64 = 86_400_000;

/// A merchant category code (ISO 18245), such as 5411 for grocery stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryCode(u16);

/// A category code that is not four digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a merchant category code: it must be 4 digits (ISO 18245)")]
pub struct CategoryCodeError(pub String);

impl CategoryCode {
    /// Parses a 4-digit code.
    pub fn parse(text: &str) -> Result<Self, CategoryCodeError> {
        if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse()
                .map(CategoryCode)
                .map_err(|_| CategoryCodeError(text.to_owned()))
        } else {
            Err(CategoryCodeError(text.to_owned()))
        }
    }
}

impl std::fmt::Display for CategoryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl Serialize for CategoryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CategoryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CategoryCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How merchants give units back for national money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRule {
    /// The system account that receives redeemed units (what the municipality owes merchants).
    pub clearing_account: AccountId,
    /// The account the fee goes to.
    pub fee_account: AccountId,
    /// The fee in basis points of the gross amount (150 = 1.5 %).
    pub fee_basis_points: u32,
}

impl RedemptionRule {
    /// The fee on `gross` minor units, rounded up to a whole minor unit (the rounding named
    /// in the scheme rules). Rounding up, not to nearest, so splitting a redemption into
    /// tiny ones never avoids the fee: any positive amount pays at least one minor unit.
    #[allow(clippy::arithmetic_side_effects)] // i64 × u32 + 9999 cannot overflow an i128
    pub fn fee_for(&self, gross: Amount) -> Amount {
        let scaled = i128::from(gross.minor()) * i128::from(self.fee_basis_points);
        let fee = (scaled + 9_999) / 10_000;
        // A fee of at most 100 % of an i64 fits in an i64; above that it is capped at gross.
        Amount::from_minor(i64::try_from(fee).unwrap_or(i64::MAX).min(gross.minor()))
            .unwrap_or(gross)
    }
}

/// One version of a programme's spending rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingRules {
    /// When this version takes effect (Unix milliseconds).
    pub effective_from: TimestampMs,
    /// Merchant categories households may pay; `None` admits every registered merchant.
    #[serde(default)]
    pub allowed_categories: Option<Vec<CategoryCode>>,
    /// Most a household may pay per UTC calendar day.
    #[serde(default)]
    pub daily_cap: Option<Amount>,
    /// Most a household may pay per UTC calendar month.
    #[serde(default)]
    pub monthly_cap: Option<Amount>,
    /// How merchants redeem; `None` means redemption is not open.
    #[serde(default)]
    pub redemption: Option<RedemptionRule>,
}

/// A unit's programme: who administers it and its rules over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitPolicy {
    administrator: PublicKey,
    /// Sorted by `effective_from`, at least one.
    versions: Vec<SpendingRules>,
}

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No versions at all.
    #[error("a policy needs at least one version of its rules")]
    NoVersions,
    /// Two versions take effect at the same moment.
    #[error("two rule versions take effect at the same time ({0} ms)")]
    SameEffectiveTime(TimestampMs),
    /// A fee above 100 %.
    #[error("a redemption fee of {0} basis points is more than 100 %")]
    FeeTooHigh(u32),
    /// A cap of zero or less.
    #[error("spending caps must be positive")]
    NonPositiveCap,
}

impl UnitPolicy {
    /// A policy with the given versions, in any order.
    pub fn new(
        administrator: PublicKey,
        mut versions: Vec<SpendingRules>,
    ) -> Result<Self, PolicyError> {
        if versions.is_empty() {
            return Err(PolicyError::NoVersions);
        }
        versions.sort_by_key(|v| v.effective_from);
        for pair in versions.windows(2) {
            if pair[0].effective_from == pair[1].effective_from {
                return Err(PolicyError::SameEffectiveTime(pair[0].effective_from));
            }
        }
        for v in &versions {
            if let Some(r) = &v.redemption
                && r.fee_basis_points > 10_000
            {
                return Err(PolicyError::FeeTooHigh(r.fee_basis_points));
            }
            if [v.daily_cap, v.monthly_cap]
                .iter()
                .flatten()
                .any(|cap| cap.minor() <= 0)
            {
                return Err(PolicyError::NonPositiveCap);
            }
        }
        Ok(Self {
            administrator,
            versions,
        })
    }

    /// The programme's key: it may return a household's expired units to the budget and
    /// move a lost card's balance to its replacement, and nothing else from holder accounts.
    pub fn administrator(&self) -> PublicKey {
        self.administrator
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[SpendingRules] {
        &self.versions
    }

    /// The version in force at `at`, if any has taken effect.
    pub fn rules_at(&self, at: TimestampMs) -> Option<&SpendingRules> {
        let after = self.versions.partition_point(|v| v.effective_from <= at);
        after.checked_sub(1).map(|i| &self.versions[i])
    }
}

/// Which spending rule refused a payment; the API names it in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpendingRule {
    /// Holders pay registered merchants only.
    RegisteredMerchantsOnly,
    /// The merchant's category is not allowed by the programme.
    MerchantCategory,
    /// The household's daily cap.
    DailyCap,
    /// The household's monthly cap.
    MonthlyCap,
    /// Holder accounts pay by payment entries only (not fees, conversions, …).
    HolderPaysByPaymentOnly,
    /// Only registered merchants redeem, to the programme's clearing and fee accounts.
    Redemption,
    /// The redemption fee must be exactly the programme's.
    RedemptionFee,
    /// The administrator key moves holder funds only back to the budget (expiry) or to a
    /// replacement card.
    AdministratorScope,
}

impl SpendingRule {
    /// The rule's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendingRule::RegisteredMerchantsOnly => "registered_merchants_only",
            SpendingRule::MerchantCategory => "merchant_category",
            SpendingRule::DailyCap => "daily_cap",
            SpendingRule::MonthlyCap => "monthly_cap",
            SpendingRule::HolderPaysByPaymentOnly => "holder_pays_by_payment_only",
            SpendingRule::Redemption => "redemption",
            SpendingRule::RedemptionFee => "redemption_fee",
            SpendingRule::AdministratorScope => "administrator_scope",
        }
    }
}

impl std::fmt::Display for SpendingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a household has paid in the current day and month, for the caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpendWindow {
    day: i64,
    day_total: i64,
    month: i64,
    month_total: i64,
}

impl SpendWindow {
    /// Totals as they would be after paying `amount` at `at`.
    pub fn after(&self, at: TimestampMs, amount: i64) -> (i64, i64) {
        let (day, month) = day_and_month(at);
        let day_total = if day == self.day { self.day_total } else { 0 };
        let month_total = if month == self.month {
            self.month_total
        } else {
            0
        };
        (
            day_total.saturating_add(amount),
            month_total.saturating_add(amount),
        )
    }

    /// Records a payment of `amount` at `at`. Entries arrive in commit order, whose
    /// timestamps may step back a little across writers; an older entry counts toward the
    /// current window rather than reopening a past one.
    pub fn record(&mut self, at: TimestampMs, amount: i64) {
        let (day, month) = day_and_month(at);
        if day > self.day {
            self.day = day;
            self.day_total = 0;
        }
        if month > self.month {
            self.month = month;
            self.month_total = 0;
        }
        self.day_total = self.day_total.saturating_add(amount);
        self.month_total = self.month_total.saturating_add(amount);
    }

    /// Adds `other` (a replaced card's window) to this one (the new card's): each total
    /// counts if its day or month is the later of the two, and same periods add up, as if
    /// one card had recorded both cards' payments.
    pub fn merge(&mut self, other: SpendWindow) {
        (self.day, self.day_total) =
            merge_period((self.day, self.day_total), (other.day, other.day_total));
        (self.month, self.month_total) = merge_period(
            (self.month, self.month_total),
            (other.month, other.month_total),
        );
    }

    /// Gives back a refund of `amount` made at `at` for a payment made on UTC day
    /// `paid_day` (see [`day_of`]): the day's total shrinks if payment and refund share the
    /// current day, the month's if they share the current month, so a refunded purchase
    /// does not eat the cap. A refund in a later window gives nothing back: the payment
    /// counted in a window that has closed. Totals never go below zero.
    pub fn give_back(&mut self, paid_day: i64, at: TimestampMs, amount: i64) {
        let (day, month) = day_and_month(at);
        if day == paid_day && day == self.day {
            self.day_total = self.day_total.saturating_sub(amount).max(0);
        }
        if month == month_of_day(paid_day) && month == self.month {
            self.month_total = self.month_total.saturating_sub(amount).max(0);
        }
    }
}

/// Two (period, total) counters as one: the later period's total, or both totals if the
/// periods are the same.
fn merge_period(ours: (i64, i64), theirs: (i64, i64)) -> (i64, i64) {
    match ours.0.cmp(&theirs.0) {
        std::cmp::Ordering::Greater => ours,
        std::cmp::Ordering::Less => theirs,
        std::cmp::Ordering::Equal => (ours.0, ours.1.saturating_add(theirs.1)),
    }
}

/// The UTC day number (from 1970-01-01) of a timestamp.
pub fn day_of(at: TimestampMs) -> i64 {
    at.div_euclid(DAY_MS)
}

/// The UTC month number (year * 12 + month - 1) of a timestamp, so months compare and
/// subtract.
pub fn month_of(at: TimestampMs) -> i64 {
    month_of_day(day_of(at))
}

/// The UTC day number and month number (year * 12 + month - 1) of a timestamp.
fn day_and_month(at: TimestampMs) -> (i64, i64) {
    let day = day_of(at);
    (day, month_of_day(day))
}

/// The month number (year * 12 + month - 1) of a UTC day number.
#[allow(clippy::arithmetic_side_effects)] // a year from an i64 of milliseconds is tiny
fn month_of_day(day: i64) -> i64 {
    let (year, month, _) = civil_from_days(day);
    year * 12 + i64::from(month) - 1
}

/// The proleptic Gregorian (year, month, day) of a day number counted from 1970-01-01.
/// Exact for any day an i64 of milliseconds can name (|days| < 1.1e11), far from overflow.
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to an era-based calendar starting 0000-03-01, so leap days fall at the end.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number (from 1970-01-01) of a proleptic Gregorian date, for years within
/// ±10^9 (callers parse years of four digits).
#[allow(clippy::arithmetic_side_effects)]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn civil_dates_round_trip_across_leap_years_and_eras() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for day in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn category_codes_are_four_digits() {
        assert_eq!(CategoryCode::parse("5411").unwrap().to_string(), "5411");
        assert_eq!(CategoryCode::parse("0742").unwrap().to_string(), "0742");
        for bad in ["541", "54111", "54a1", "", "+541"] {
            assert!(CategoryCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fee_rounds_up_to_a_minor_unit() {
        let rule = |bps| RedemptionRule {
            clearing_account: AccountId::new(),
            fee_account: AccountId::new(),
            fee_basis_points: bps,
        };
        let amount = |m| Amount::from_minor(m).unwrap();
        assert_eq!(rule(150).fee_for(amount(10_000)).minor(), 150);
        // 1.5 % of 1.00 is 1.5 cents: 2; of 0.33 is 0.495 cents: 1, so splitting a
        // redemption into tiny ones costs more fee, not less.
        assert_eq!(rule(150).fee_for(amount(100)).minor(), 2);
        assert_eq!(rule(150).fee_for(amount(33)).minor(), 1);
        assert_eq!(rule(150).fee_for(amount(1)).minor(), 1);
        let max = crate::amount::MAX_MINOR;
        assert_eq!(rule(10_000).fee_for(amount(max)).minor(), max);
        assert_eq!(rule(0).fee_for(amount(5)).minor(), 0);
    }

    #[test]
    fn the_version_in_force_is_the_latest_that_has_taken_effect() {
        let key = PublicKey([7; 32]);
        let version = |at, cap: i64| SpendingRules {
            effective_from: at,
            allowed_categories: None,
            daily_cap: Some(Amount::from_minor(cap).unwrap()),
            monthly_cap: None,
            redemption: None,
        };
        let policy = UnitPolicy::new(key, vec![version(200, 2), version(100, 1)]).unwrap();
        assert!(policy.rules_at(99).is_none());
        assert_eq!(policy.rules_at(100).unwrap().daily_cap.unwrap().minor(), 1);
        assert_eq!(policy.rules_at(199).unwrap().daily_cap.unwrap().minor(), 1);
        assert_eq!(
            policy.rules_at(5_000).unwrap().daily_cap.unwrap().minor(),
            2
        );
        assert_eq!(
            UnitPolicy::new(key, vec![version(1, 1), version(1, 2)]),
            Err(PolicyError::SameEffectiveTime(1))
        );
        assert_eq!(UnitPolicy::new(key, vec![]), Err(PolicyError::NoVersions));
    }

    #[test]
    fn spend_windows_reset_at_day_and_month_boundaries() {
        let day = |d: i64| d * DAY_MS;
        let start = days_from_civil(2026, 12, 31);
        let mut w = SpendWindow::default();
        w.record(day(start) + 1, 500);
        assert_eq!(w.after(day(start) + 2, 100), (600, 600));
        // 1 January: a new day and a new month.
        assert_eq!(w.after(day(start + 1), 100), (100, 100));
        w.record(day(start + 1), 100);
        w.record(day(start + 2), 100);
        assert_eq!(w.after(day(start + 2), 1), (101, 201));
    }

    #[test]
    fn a_refund_gives_back_only_to_the_windows_its_payment_counted_in() {
        let day = |d: i64| d * DAY_MS;
        let start = days_from_civil(2027, 1, 30);
        let mut w = SpendWindow::default();
        w.record(day(start), 500);
        // Same day: both totals shrink, never below zero.
        w.give_back(start, day(start) + 5, 200);
        assert_eq!(w.after(day(start), 0), (300, 300));
        w.give_back(start, day(start) + 6, 1_000);
        assert_eq!(w.after(day(start), 0), (0, 0));
        // Next day, same month: only the month's total.
        w.record(day(start), 400);
        w.record(day(start + 1), 100);
        w.give_back(start, day(start + 1), 300);
        assert_eq!(w.after(day(start + 1), 0), (100, 200));
        // A refund in February of a January payment gives nothing back.
        w.record(day(start + 2), 50);
        w.give_back(start + 1, day(start + 2), 100);
        assert_eq!(w.after(day(start + 2), 0), (50, 50));
        assert_eq!(day_of(day(start) + 1), start);
    }

    #[test]
    fn a_replaced_cards_window_merges_into_the_new_cards_by_period() {
        let day = |d: i64| d * DAY_MS;
        let start = days_from_civil(2027, 1, 30);
        // Same day: both totals add up.
        let (mut old, mut new) = (SpendWindow::default(), SpendWindow::default());
        old.record(day(start), 300);
        new.record(day(start) + 1, 200);
        new.merge(old);
        assert_eq!(new.after(day(start) + 2, 0), (500, 500));
        // The old card last paid the day before, same month: only the month's totals add.
        let (mut old, mut new) = (SpendWindow::default(), SpendWindow::default());
        old.record(day(start), 300);
        new.record(day(start + 1), 200);
        new.merge(old);
        assert_eq!(new.after(day(start + 1), 0), (200, 500));
        // Either way round: the later period wins.
        let (mut old, mut new) = (SpendWindow::default(), SpendWindow::default());
        old.record(day(start + 1), 300);
        new.record(day(start), 200);
        new.merge(old);
        assert_eq!(new.after(day(start + 1), 0), (300, 500));
        // A new card that never paid takes the old card's window whole.
        let (mut old, mut new) = (SpendWindow::default(), SpendWindow::default());
        old.record(day(start + 2), 300);
        new.merge(old);
        assert_eq!(new, old);
    }
}
