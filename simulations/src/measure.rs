//! Measures on an event stream, in one pass: velocity, holding time, LM-n, local recirculation,
//! leakage, per period and per cohort.
//!
//! # How money is followed (LM-n)
//!
//! Every holder's balance, per unit, is split into *generations*: generation `g` is money that
//! has passed through `g` local transfers since it was deposited. A deposit from the issuer to a
//! local holder adds generation 0. A transfer whose target is local (a household, merchant or
//! social enterprise) moves money of generation `g` out of the payer and adds it to the payee
//! as generation `g + 1`; its volume counts as *local spending of round `g + 2`*. Money that
//! reaches an outside firm, or that came from somewhere the stream does not show (a balance
//! that was never deposited in the stream, a deposit of another programme when a programme is
//! selected), is *untracked* and never counts in a round. Generations deeper than
//! [`ROUNDS`]` - 1` stay in the last one.
//!
//! With `D` the tracked deposits and `S_g` the local spending of tracked generation-`g` money,
//! following the New Economics Foundation's LM3 (round 1 = the income, round 2 = how its
//! recipients spend it locally, round 3 = how those recipients re-spend it locally):
//!
//! `LM-n = (D + S_0 + S_1 + … + S_{n-2}) / D`, so `LM3 = (D + S_0 + S_1) / D`, and `LM-all`
//! sums every round. With a constant local re-spend share `p`, `S_g = p^(g+1) D` and
//! `LM3 = 1 + p + p^2`.
//!
//! **Attribution is proportional**: a payment takes every generation in proportion to its share
//! of the payer's balance (largest-remainder rounding, so parts sum exactly to the payment).
//! Money is fungible and the ledger records no order within a balance; FIFO would make the
//! result depend on an order the payer never chose, and needs a queue of lots per holder,
//! while proportional needs [`ROUNDS`]` + 1` integers per holder and unit.
//!
//! # Other measures
//!
//! - *Money stock*: tracked over time as deposits minus withdrawals (money held by holders).
//! - *Velocity* (conventional): transfer volume / time-weighted average money stock, over each
//!   period and over the window (from the first event's day to the end of the last event's day;
//!   the last period is cut there); also per year.
//! - *Mean holding time* (per transfer): each holder keeps the money-weighted mean time at
//!   which its balance arrived (proportional, like generations); every outflow (transfer or
//!   withdraw) of `x` at time `t` contributes `x * (t - mean arrival time)`, and the mean is
//!   over outflows of money whose arrival the stream shows (not unbacked ones). Its velocity is
//!   `window / mean holding time`. A Little's-law estimate, average stock * window / outflow,
//!   is reported beside it.
//! - *Local recirculation share* `p̂`: of all money leaving local holders (transfers and
//!   withdrawals), the share paid to local holders. Closed forms `1 + p̂ + p̂²` and `1/(1-p̂)`
//!   are reported as cross-checks of LM3 and LM-all.
//! - *Leakage*: tracked money leaving by reason (redemption with its fee, expiry, demurrage,
//!   outflow) or paid to outside firms, as shares of `D`.
//! - *LM-n per cohort*: by area of issuance and by category of first spend, following the same
//!   generations (see the `cohorts` module for the definitions and how payments are split).
//! - *LM-n per period* (a flow measure, as a field LM3 survey of one period is): with `D_P`
//!   the tracked deposits made in period `P` and `S_g^P` the local spending of tracked
//!   generation-`g` money by transfers made in `P` (whenever that money was issued),
//!   `LM-n(P) = (D_P + S_0^P + … + S_{n-2}^P) / D_P`. The periods' flows add up to the unit's
//!   (`sum of D_P = D`, `sum of S_g^P = S_g`). It is the LM-n of the money issued in `P` when
//!   that money does its rounds within `P`, or when issuance and behaviour are steady; not in
//!   between (see `simulations/README.md`). It costs nothing per event and nothing per
//!   holder: the unit's tracked deposits and `S_g` are noted when a period closes, and a
//!   period's flows are the difference of two notes ([`ROUNDS`]` + 1` integers per period).
//!   LM-n of the money *issued* in each period would need every holder's money split by
//!   period of issuance, as areas split it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::{Dictionary, Event, EventKind, Participant, Reason};

mod cohorts;
mod holdings;

use cohorts::{Assign, Tracker};
pub use cohorts::{CohortMultiplier, MAX_COHORTS, OTHER_COHORT};
use holdings::{Holdings, add_non_negative, add_rounds, receive, take};

/// Generations tracked per holder (so LM-1 … LM-`ROUNDS` are reported).
pub const ROUNDS: usize = 10;
/// The slot of untracked money in a holding.
const UNTRACKED: usize = ROUNDS;
/// Slots in a holding: the tracked generations and untracked money.
const SLOTS: usize = ROUNDS + 1;
/// Most periods one measurement may span.
pub const MAX_PERIODS: usize = 100_000;
/// Seconds in a day.
pub const DAY_S: i64 = 86_400;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasureConfig {
    /// Length of one period of the time series, in seconds (default 30 days); unused when
    /// `calendar_months` is set.
    pub period_s: i64,
    /// Periods are calendar months (UTC) instead of `period_s` from the first event's day:
    /// monthly payments on a fixed day then fall one per period, where 30-day periods put two
    /// paydays in one period now and then and none in the next.
    pub calendar_months: bool,
    /// Follow only deposits of this programme (other deposits become untracked money).
    pub programme: Option<String>,
    /// Also follow LM-n per area and per category (default true). It keeps each cohort's share
    /// of every holder's money by generation (`holders * generations * cohorts * 8` bytes per
    /// unit) and mixes the payee's on every local payment, which about doubles the measuring
    /// time of the agent model; a sweep, which reports none of it, turns it off.
    pub cohort_multipliers: bool,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        Self {
            period_s: 30 * DAY_S,
            calendar_months: false,
            programme: None,
            cohort_multipliers: true,
        }
    }
}

/// Why a measurement stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MeasureError {
    /// The period length is not positive.
    #[error("period must be at least one second, got {0}")]
    BadPeriod(i64),
    /// The stream spans more than [`MAX_PERIODS`] periods.
    #[error("stream spans more than {MAX_PERIODS} periods; use a longer period")]
    TooManyPeriods,
    /// The amounts add up past what an i64 of minor units holds (each may be up to 2^53 - 1,
    /// so about a thousand of the largest do).
    #[error(
        "the amounts add up to more than {} minor units; measure fewer events at a time",
        i64::MAX
    )]
    VolumeOverflow,
    /// With calendar months, a time outside the years 0 to 9999.
    #[error("time {0} s is outside the years 0 to 9999, which calendar months are counted in")]
    TimeOutOfCalendar(i64),
    /// Events arrived out of time order.
    #[error("event at {time_s} is before the previous event at {previous_s}")]
    OutOfOrder {
        /// This event's time.
        time_s: i64,
        /// The previous one's.
        previous_s: i64,
    },
}

/// Flows of one period (per unit), in minor units.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Period {
    /// Start of the period, Unix seconds.
    pub start_s: i64,
    /// Length in seconds: the period length, except the last period, which ends with the day
    /// of the last event.
    pub length_s: i64,
    /// Deposits in the period.
    pub deposits_minor: i64,
    /// Transfer volume.
    pub transfers_minor: i64,
    /// Number of transfers.
    pub transfers_count: u64,
    /// Transfers whose target is local.
    pub local_transfers_minor: i64,
    /// Withdrawals (all reasons).
    pub withdrawals_minor: i64,
    /// Money stock at the end of the period.
    pub stock_end_minor: i64,
    /// Time-weighted average money stock (float: it is a mean).
    pub stock_average_minor: f64,
    /// Transfer volume / average stock; `None` when the stock was zero throughout.
    pub velocity: Option<f64>,
    #[serde(skip)]
    stock_integral: i128,
}

/// LM-n of one period by the flow definition (see the module docs): the period's tracked
/// deposits and the local spending, by round, of tracked money in the period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeriodMultiplier {
    /// Start of the period, Unix seconds (as in [`Period`]).
    pub start_s: i64,
    /// Tracked deposits made in the period (`D_P`).
    pub deposits_minor: i64,
    /// `S_g^P`: local spending of tracked generation-`g` money by transfers made in the
    /// period, whenever the money was issued (index 0 = round 2).
    pub local_spending_by_round_minor: Vec<i64>,
    /// LM-1 … LM-`ROUNDS` of the period (index 0 = LM-1 = 1; all 0 without deposits).
    pub lm: Vec<f64>,
    /// LM3: `(D_P + S_0^P + S_1^P) / D_P`; `None` without deposits in the period.
    pub lm3: Option<f64>,
    /// All rounds: `(D_P + sum of S_g^P) / D_P`.
    pub lm_all: Option<f64>,
}

impl PeriodMultiplier {
    fn new(start_s: i64, flows: &RoundFlows) -> Self {
        let (lm, lm3, lm_all) = multipliers(flows.deposits, &flows.spend);
        Self {
            start_s,
            deposits_minor: flows.deposits,
            local_spending_by_round_minor: flows.spend.to_vec(),
            lm,
            lm3,
            lm_all,
        }
    }
}

/// Tracked deposits and local spending by round: a unit's totals so far, or one period's.
#[derive(Clone, Copy, Debug, Default)]
struct RoundFlows {
    deposits: i64,
    spend: [i64; ROUNDS],
}

impl RoundFlows {
    /// What was added between `earlier` and `self`, totals of the same unit (which never
    /// decrease, so no part is negative).
    fn since(&self, earlier: &Self) -> Self {
        let mut spend = self.spend;
        for (part, before) in spend.iter_mut().zip(earlier.spend) {
            *part -= before;
        }
        Self {
            deposits: self.deposits - earlier.deposits,
            spend,
        }
    }
}

/// LM-1 … LM-`ROUNDS`, LM3 and LM-all from deposits `d` and spending by generation:
/// `LM-n = (d + S_0 + … + S_{n-2}) / d`, summed in integers so every caller rounds alike.
fn multipliers(d: i64, spend: &[i64; ROUNDS]) -> (Vec<f64>, Option<f64>, Option<f64>) {
    let ratio = |extra: i64| (d > 0).then(|| (d + extra) as f64 / d as f64);
    let mut lm = Vec::with_capacity(ROUNDS);
    let mut running = 0;
    for n in 1..=ROUNDS {
        if n >= 2 {
            running += spend[n - 2];
        }
        lm.push(ratio(running).unwrap_or(0.0));
    }
    (lm, ratio(spend[0] + spend[1]), ratio(spend.iter().sum()))
}

/// Flows attributed to one cohort label (a programme, a category or an area).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CohortFlows {
    /// Deposits into the cohort (programme: its deposits; area: deposits in the area).
    pub deposits_minor: i64,
    /// Transfers received (category: by participants of the category; area: in the area).
    pub received_minor: i64,
    /// Local spending of tracked money received, by round (index 0 = round 2, as `S_0`).
    pub received_by_round_minor: Vec<i64>,
    /// Withdrawals (category: by participants of the category).
    pub withdrawn_minor: i64,
}

/// Leakage of tracked money, as shares of tracked deposits.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Leakage {
    /// Redemption plus its fee.
    pub redemption: f64,
    /// The fee alone.
    pub fee: f64,
    /// Expiry.
    pub expiry: f64,
    /// Demurrage.
    pub demurrage: f64,
    /// Outflow withdrawals.
    pub outflow: f64,
    /// Paid to outside firms.
    pub outside: f64,
    /// Still held by local holders at the end.
    pub still_held: f64,
}

/// The measures of one unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitMeasures {
    /// Unit code.
    pub unit: String,
    /// All deposits.
    pub deposits_minor: i64,
    /// Deposits followed for LM-n (`D`).
    pub tracked_deposits_minor: i64,
    /// Transfer volume.
    pub transfers_minor: i64,
    /// Number of transfers.
    pub transfers_count: u64,
    /// Transfers to local holders.
    pub local_transfers_minor: i64,
    /// Withdrawals by reason name.
    pub withdrawals_minor: BTreeMap<String, i64>,
    /// Money stock at the end.
    pub stock_end_minor: i64,
    /// Outflows larger than the payer's known balance, summed (money the stream never showed
    /// arriving; 0 for a complete stream).
    pub unbacked_minor: i64,
    /// Whether the holders' balances sum to the stock (deposits - withdrawals) at the end.
    pub balances_reconcile: bool,
    /// Window length in days (whole periods).
    pub window_days: f64,
    /// Time-weighted average stock over the window.
    pub stock_average_minor: f64,
    /// Transfer volume / average stock over the window.
    pub velocity: Option<f64>,
    /// Velocity scaled to 365 days.
    pub velocity_per_year: Option<f64>,
    /// Mean holding time per unit of money leaving a holder, in days.
    pub mean_holding_time_days: Option<f64>,
    /// Window / mean holding time.
    pub holding_time_velocity: Option<f64>,
    /// Little's law: average stock * window / outflow, in days.
    pub littles_law_holding_time_days: Option<f64>,
    /// `S_g`, local spending of tracked money by generation (index 0 = round 2).
    pub local_spending_by_round_minor: Vec<i64>,
    /// LM-1 … LM-`ROUNDS` (index 0 = LM-1 = 1).
    pub lm: Vec<f64>,
    /// LM3.
    pub lm3: Option<f64>,
    /// All rounds: (D + sum of S_g) / D.
    pub lm_all: Option<f64>,
    /// Local recirculation share `p̂`.
    pub recirculation_share: Option<f64>,
    /// `1 + p̂ + p̂²`.
    pub lm3_closed_form: Option<f64>,
    /// `1 / (1 - p̂)`.
    pub lm_all_closed_form: Option<f64>,
    /// Leakage of tracked money.
    pub leakage: Leakage,
    /// Time series.
    pub periods: Vec<Period>,
    /// Flows by programme label.
    pub by_programme: BTreeMap<String, CohortFlows>,
    /// Flows by participant category.
    pub by_category: BTreeMap<String, CohortFlows>,
    /// Flows by area.
    pub by_area: BTreeMap<String, CohortFlows>,
    /// LM-n of the money deposited in each area (empty when not measured).
    pub lm_by_area: BTreeMap<String, CohortMultiplier>,
    /// LM-n of the money first spent at each category of local holder, counting that
    /// spending as round 1 (empty when not measured).
    pub lm_by_category: BTreeMap<String, CohortMultiplier>,
    /// LM-n per period, flow definition (one per entry of `periods`; always measured).
    pub lm_by_period: Vec<PeriodMultiplier>,
}

/// Measures of a whole stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measures {
    /// Events measured.
    pub events: u64,
    /// Period length in seconds (unless `calendar_months`).
    pub period_s: i64,
    /// Whether periods are calendar months (UTC).
    pub calendar_months: bool,
    /// Start of the first period, Unix seconds (first event's day, or its month's first day).
    pub origin_s: i64,
    /// The programme followed, if one was selected.
    pub programme: Option<String>,
    /// Per unit, in order of first appearance.
    pub units: Vec<UnitMeasures>,
    /// All units together, as if one money: LM3 over the sum of deposits and rounds.
    pub combined_lm3: Option<f64>,
    /// All units together: LM-all.
    pub combined_lm_all: Option<f64>,
    /// All units together, as if one money: LM-n by area of issuance.
    pub combined_lm_by_area: BTreeMap<String, CohortMultiplier>,
    /// All units together: LM-n by category of first spend.
    pub combined_lm_by_category: BTreeMap<String, CohortMultiplier>,
    /// All units together: LM-n per period, flow definition.
    pub combined_lm_by_period: Vec<PeriodMultiplier>,
}

#[derive(Default)]
struct UnitState {
    events: u64,
    holdings: Holdings,
    stock: i64,
    deposits: i64,
    tracked_deposits: i64,
    transfers: i64,
    transfers_count: u64,
    local_transfers: i64,
    withdrawals: [i64; 5],
    tracked_leak: [i64; 5],
    tracked_outside: i64,
    unbacked: i64,
    local_outflow: i64,
    local_outflow_local: i64,
    outflow_total: i64,
    hold_sum: f64,
    periods: Vec<Period>,
    /// The unit's tracked deposits and local spending by round at the end of each closed
    /// period: a period's flows are the difference from the one before (see `close_rounds`).
    period_ends: Vec<RoundFlows>,
    last_s: i64,
    by_programme: Vec<CohortState>,
    by_category: Vec<CohortState>,
    by_area: Vec<CohortState>,
    /// LM-n by area of issuance and by category of first spend, when configured.
    multipliers: Option<Box<Multipliers>>,
}

/// The two cohort dimensions of LM-n.
struct Multipliers {
    by_area: Tracker,
    by_category: Tracker,
}

fn leak_index(reason: Reason) -> usize {
    match reason {
        Reason::Redemption => 0,
        Reason::Fee => 1,
        Reason::Expiry => 2,
        Reason::Demurrage => 3,
        _ => 4,
    }
}

const LEAK_NAMES: [&str; 5] = ["redemption", "fee", "expiry", "demurrage", "outflow"];

/// [`CohortFlows`] while measuring: rounds in a fixed array, added to on every transfer.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct CohortState {
    deposits: i64,
    received: i64,
    received_by_round: [i64; ROUNDS],
    withdrawn: i64,
}

fn cohort(list: &mut Vec<CohortState>, label: u32) -> &mut CohortState {
    let index = label as usize;
    if list.len() <= index {
        list.resize(index + 1, CohortState::default());
    }
    &mut list[index]
}

/// What measuring needs of a participant, copied from the dictionary as its ids appear: 8
/// bytes where the dictionary's records take 24, so the two looked up per event stay in cache.
#[derive(Clone, Copy, Debug)]
struct Role {
    /// A household, merchant or social enterprise.
    local: bool,
    /// Label id of its category.
    category: u32,
}

impl Role {
    fn of(participant: &Participant) -> Self {
        Self {
            local: participant.kind.is_local(),
            category: participant.category,
        }
    }
}

/// Measures a stream event by event; call [`Measurer::push`] in time order, then
/// [`Measurer::finish`].
pub struct Measurer {
    config: MeasureConfig,
    programme_label: Option<Option<u32>>,
    /// The first period's start (Unix seconds) and the periods from there, once an event came.
    origin: Option<(i64, Grid)>,
    /// Every amount pushed so far, all units. Each running sum (per unit, and the totals
    /// across units) adds up some of these, so while this fits an i64, so do they.
    volume: i64,
    previous_s: i64,
    events: u64,
    units: Vec<UnitState>,
    /// By participant id (a participant's kind and category never change).
    roles: Vec<Role>,
}

impl Measurer {
    /// A measurer; fails on a non-positive period.
    pub fn new(config: MeasureConfig) -> Result<Self, MeasureError> {
        if config.period_s <= 0 {
            return Err(MeasureError::BadPeriod(config.period_s));
        }
        let programme_label = config.programme.as_ref().map(|_| None);
        Ok(Self {
            config,
            programme_label,
            origin: None,
            volume: 0,
            previous_s: i64::MIN,
            events: 0,
            units: Vec::new(),
            roles: Vec::new(),
        })
    }

    /// Accounts one event; `dictionary` must be the one its ids come from.
    pub fn push(&mut self, event: &Event, dictionary: &Dictionary) -> Result<(), MeasureError> {
        if event.time_s < self.previous_s {
            return Err(MeasureError::OutOfOrder {
                time_s: event.time_s,
                previous_s: self.previous_s,
            });
        }
        self.previous_s = event.time_s;
        if self.config.calendar_months && !(MIN_CALENDAR_S..=MAX_CALENDAR_S).contains(&event.time_s)
        {
            return Err(MeasureError::TimeOutOfCalendar(event.time_s));
        }
        let (origin, grid) = *self.origin.get_or_insert_with(|| {
            let origin = Grid::origin(event.time_s);
            (origin, Grid::new(&self.config, origin))
        });
        let now = event.time_s - origin;
        let unit = usize::from(event.unit);
        if self.units.len() <= unit {
            let multipliers = self.config.cohort_multipliers;
            self.units.resize_with(unit + 1, || UnitState {
                multipliers: multipliers.then(|| {
                    Box::new(Multipliers {
                        by_area: Tracker::new(Assign::AtDeposit),
                        by_category: Tracker::new(Assign::AtFirstSpend),
                    })
                }),
                ..UnitState::default()
            });
        }
        self.volume = self
            .volume
            .checked_add(event.amount_minor)
            .ok_or(MeasureError::VolumeOverflow)?;
        let state = &mut self.units[unit];
        state.advance(now, grid)?;
        // Resolve the programme filter lazily: the label may appear only mid-stream.
        let tracked_programme = match (&self.config.programme, &mut self.programme_label) {
            (Some(name), Some(label)) => {
                if label.is_none() && dictionary.label_text(event.programme) == name {
                    *label = Some(event.programme);
                }
                *label == Some(event.programme)
            }
            _ => true,
        };
        if self.roles.len() <= event.source.max(event.target) as usize {
            let known = &dictionary.participants()[self.roles.len()..];
            self.roles.extend(known.iter().map(Role::of));
        }
        let roles = (
            self.roles[event.source as usize],
            self.roles[event.target as usize],
        );
        state.events += 1;
        state.apply(event, roles, now, tracked_programme);
        self.events += 1;
        Ok(())
    }

    /// The measures; periods run to the end of the last event's period.
    pub fn finish(mut self, dictionary: &Dictionary) -> Measures {
        let (origin_s, grid) = self.origin.unwrap_or((0, Grid::new(&self.config, 0)));
        let last = self.previous_s.saturating_sub(origin_s).max(0);
        let periods = usize::try_from(grid.index_of(last) + 1).unwrap_or(1);
        // Event times may be coarsened to the day, so the last event's whole day is observed.
        let end_s = (last.div_euclid(DAY_S) + 1) * DAY_S;
        let mut units = Vec::new();
        let (mut deposits, mut rounds) = (0i64, [0i64; ROUNDS]);
        // Every unit's periods start at the origin, so period k is the same time in each.
        let mut by_period = vec![RoundFlows::default(); periods];
        for (id, state) in self.units.iter_mut().enumerate() {
            if state.events == 0 {
                continue;
            }
            state.finish_periods(periods, grid, end_s);
            deposits += state.tracked_deposits;
            for (total, s) in rounds.iter_mut().zip(state.spend()) {
                *total += s;
            }
            let code = u16::try_from(id).map_or("", |id| dictionary.unit_code(id));
            let unit = state.report(code, dictionary, origin_s);
            for (total, period) in by_period.iter_mut().zip(&unit.lm_by_period) {
                total.deposits += period.deposits_minor;
                for (sum, s) in total
                    .spend
                    .iter_mut()
                    .zip(&period.local_spending_by_round_minor)
                {
                    *sum += s;
                }
            }
            units.push(unit);
        }
        let ratio =
            |extra: i64| (deposits > 0).then(|| (deposits + extra) as f64 / deposits as f64);
        let combined = |pick: fn(&Multipliers) -> &Tracker| {
            combine(
                self.units
                    .iter()
                    .filter_map(|state| state.multipliers.as_deref())
                    .map(pick),
                dictionary,
            )
        };
        Measures {
            events: self.events,
            period_s: self.config.period_s,
            calendar_months: self.config.calendar_months,
            origin_s,
            programme: self.config.programme.clone(),
            units,
            combined_lm3: ratio(rounds[0] + rounds[1]),
            combined_lm_all: ratio(rounds.iter().sum()),
            combined_lm_by_area: combined(|m| &m.by_area),
            combined_lm_by_category: combined(|m| &m.by_category),
            combined_lm_by_period: by_period
                .iter()
                .enumerate()
                .map(|(k, flows)| PeriodMultiplier::new(origin_s + grid.start_of(k as i64), flows))
                .collect(),
        }
    }
}

/// LM-n per cohort name over the units' trackers of one dimension, as if one money.
fn combine<'a>(
    trackers: impl Iterator<Item = &'a Tracker>,
    dictionary: &Dictionary,
) -> BTreeMap<String, CohortMultiplier> {
    let mut assign = None;
    let mut totals: BTreeMap<String, (f64, [f64; ROUNDS])> = BTreeMap::new();
    for tracker in trackers {
        assign = Some(tracker.assign());
        for (name, (base, spend)) in tracker.totals_by_name(dictionary) {
            let total = totals.entry(name).or_insert((0.0, [0.0; ROUNDS]));
            total.0 += base;
            for (sum, s) in total.1.iter_mut().zip(spend) {
                *sum += s;
            }
        }
    }
    let Some(assign) = assign else {
        return BTreeMap::new();
    };
    totals
        .into_iter()
        .filter(|(_, (base, spend))| *base != 0.0 || spend.iter().any(|&s| s != 0.0))
        .map(|(name, (base, spend))| (name, CohortMultiplier::new(assign, base, &spend)))
        .collect()
}

/// The first second of the year 0 and the last of 9999 (UTC): calendar months are counted
/// between them, far from any overflow.
const MIN_CALENDAR_S: i64 = -62_167_219_200;
const MAX_CALENDAR_S: i64 = 253_402_300_799;

/// Where periods start, in seconds from the origin (the first event's day): every
/// `period_s`, or at each calendar month's first instant (UTC), the first period running
/// from the origin to the end of its month.
#[derive(Clone, Copy, Debug)]
enum Grid {
    Fixed { period_s: i64 },
    Months { origin_s: i64, origin_month: i64 },
}

impl Grid {
    fn new(config: &MeasureConfig, origin_s: i64) -> Self {
        if config.calendar_months {
            Self::Months {
                origin_s,
                origin_month: ledger::policy::month_of(origin_s.saturating_mul(1000)),
            }
        } else {
            Self::Fixed {
                period_s: config.period_s,
            }
        }
    }

    /// The origin for a stream whose first event is at `first_s`: the start of its day.
    fn origin(first_s: i64) -> i64 {
        first_s.div_euclid(DAY_S) * DAY_S
    }

    /// The period holding `now` (seconds from the origin, not negative).
    fn index_of(self, now: i64) -> i64 {
        match self {
            Self::Fixed { period_s } => now / period_s,
            Self::Months {
                origin_s,
                origin_month,
            } => {
                ledger::policy::month_of(origin_s.saturating_add(now).saturating_mul(1000))
                    - origin_month
            }
        }
    }

    /// The start of period `index`, in seconds from the origin.
    fn start_of(self, index: i64) -> i64 {
        match self {
            Self::Fixed { period_s } => index * period_s,
            Self::Months { .. } if index == 0 => 0,
            Self::Months {
                origin_s,
                origin_month,
            } => {
                let month = origin_month + index;
                let first_day = ledger::policy::days_from_civil(
                    month.div_euclid(12),
                    month.rem_euclid(12) as u32 + 1,
                    1,
                );
                first_day * DAY_S - origin_s
            }
        }
    }
}

impl UnitState {
    /// Integrates the stock up to `now`, closing every period that ends before it.
    fn advance(&mut self, now: i64, grid: Grid) -> Result<(), MeasureError> {
        // Most events fall in the current period: no division then. `now` never goes back, so
        // it is at or after the current period's start.
        let current = self
            .periods
            .last()
            .is_some_and(|p| now - p.start_s < p.length_s);
        if !current {
            let index =
                usize::try_from(grid.index_of(now)).map_err(|_| MeasureError::TooManyPeriods)?;
            if index >= MAX_PERIODS {
                return Err(MeasureError::TooManyPeriods);
            }
            self.close_until(index + 1, grid);
        }
        // Events often share a time stamp (exports coarsen time, models step by day).
        if now != self.last_s
            && let Some(current) = self.periods.last_mut()
        {
            current.stock_integral += i128::from(self.stock) * i128::from(now - self.last_s);
        }
        self.last_s = now;
        Ok(())
    }

    /// Makes `count` periods exist, integrating the stock to the end of each one closed and
    /// noting the totals LM-n per period is the difference of.
    fn close_until(&mut self, count: usize, grid: Grid) {
        while self.periods.len() < count {
            if let Some(current) = self.periods.last_mut() {
                let end = current.start_s + current.length_s;
                current.stock_integral += i128::from(self.stock) * i128::from(end - self.last_s);
                self.last_s = end;
                self.close_rounds();
            }
            // Fewer than MAX_PERIODS: the index fits.
            let index = self.periods.len() as i64;
            let start_s = grid.start_of(index);
            self.periods.push(Period {
                start_s,
                length_s: grid.start_of(index + 1) - start_s,
                ..Period::default()
            });
        }
    }

    /// Notes the totals at the end of the current period. Every event before this point was
    /// in it or earlier, so a period's flows are the change since the last note: nothing is
    /// added per payment (the totals are kept anyway), and this costs one pass over the
    /// categories' rounds per period closed.
    fn close_rounds(&mut self) {
        let totals = RoundFlows {
            deposits: self.tracked_deposits,
            spend: self.spend(),
        };
        self.period_ends.push(totals);
    }

    /// Closes the measurement: `count` periods, the last integrated to `end_s` (the end of the
    /// last event's day) or its own end, whichever is first.
    fn finish_periods(&mut self, count: usize, grid: Grid, end_s: i64) {
        self.close_until(count, grid);
        if let Some(current) = self.periods.last_mut() {
            let end = (current.start_s + current.length_s)
                .min(end_s)
                .max(self.last_s);
            current.stock_integral += i128::from(self.stock) * i128::from(end - self.last_s);
            current.length_s = end - current.start_s;
            self.last_s = end;
            self.close_rounds();
        }
    }

    /// LM-n of each period (after `finish_periods`, which notes the last period's totals).
    fn lm_by_period(&self, origin_s: i64) -> Vec<PeriodMultiplier> {
        let mut before = RoundFlows::default();
        self.periods
            .iter()
            .zip(&self.period_ends)
            .map(|(period, end)| {
                let flows = end.since(&before);
                before = *end;
                PeriodMultiplier::new(period.start_s + origin_s, &flows)
            })
            .collect()
    }

    fn apply(&mut self, event: &Event, roles: (Role, Role), now: i64, tracked_programme: bool) {
        let amount = event.amount_minor;
        let (source, target) = roles;
        let period_index = self.periods.len() - 1;
        match event.kind() {
            EventKind::Deposit => {
                let tracked = tracked_programme && target.local;
                let mut holding = self.holdings.get(event.target);
                if tracked && let Some(m) = &mut self.multipliers {
                    let area = m.by_area.cohort(event.area);
                    m.by_area
                        .deposit(event.target, area, amount, holding.slots[0]);
                }
                receive(&mut holding, amount, now);
                holding.slots[if tracked { 0 } else { UNTRACKED }] += amount;
                self.holdings.set(event.target, &holding);
                self.stock += amount;
                self.deposits += amount;
                if tracked {
                    self.tracked_deposits += amount;
                }
                self.periods[period_index].deposits_minor += amount;
                cohort(&mut self.by_programme, event.programme).deposits += amount;
                cohort(&mut self.by_area, event.area).deposits += amount;
            }
            EventKind::Transfer => self.transfer(event, now, roles),
            EventKind::Withdraw => {
                let mut holding = self.holdings.get(event.source);
                // The cohorts' shares of what is left stay as they were.
                let (parts, excess, held) = take(&mut holding, amount, now);
                self.holdings.set(event.source, &holding);
                self.unbacked += excess;
                self.hold_sum += held;
                self.outflow_total += amount;
                if source.local {
                    self.local_outflow += amount;
                }
                let index = leak_index(event.reason);
                self.withdrawals[index] += amount;
                self.tracked_leak[index] += amount - parts[UNTRACKED];
                self.stock -= amount;
                self.periods[period_index].withdrawals_minor += amount;
                cohort(&mut self.by_category, source.category).withdrawn += amount;
                cohort(&mut self.by_programme, event.programme).withdrawn += amount;
            }
        }
        self.periods[period_index].stock_end_minor = self.stock;
    }

    /// A transfer: generations move one round on when the payee is local.
    fn transfer(&mut self, event: &Event, now: i64, roles: (Role, Role)) {
        let (source_local, target_local) = (roles.0.local, roles.1.local);
        let amount = event.amount_minor;
        let mut source = self.holdings.get(event.source);
        let (parts, excess, held) = take(&mut source, amount, now);
        self.holdings.set(event.source, &source);
        self.unbacked += excess;
        self.hold_sum += held;
        self.outflow_total += amount;
        let mut target = self.holdings.get(event.target);
        if target_local && let Some(m) = &mut self.multipliers {
            // A category becomes a cohort when money is first spent there (a payee that only
            // ever receives money already spent, as households do, costs no room).
            let category = match parts[0] {
                0 => 0,
                _ => m.by_category.cohort(roles.1.category),
            };
            let payee = |cohort| Some((event.target, cohort, &target.slots));
            m.by_area.transfer(event.source, payee(0), &parts);
            m.by_category
                .transfer(event.source, payee(category), &parts);
        }
        receive(&mut target, amount, now);
        if target_local {
            // Generation g becomes g + 1; the last generation keeps what reaches it.
            let mut moved = [0i64; SLOTS];
            moved[1..ROUNDS].copy_from_slice(&parts[..ROUNDS - 1]);
            moved[ROUNDS - 1] += parts[ROUNDS - 1];
            moved[UNTRACKED] = parts[UNTRACKED];
            add_non_negative(&mut target.slots, &moved);
        } else {
            target.slots[UNTRACKED] += amount;
            self.tracked_outside += amount - parts[UNTRACKED];
        }
        self.holdings.set(event.target, &target);
        if source_local {
            self.local_outflow += amount;
            if target_local {
                self.local_outflow_local += amount;
            }
        }
        self.transfers += amount;
        self.transfers_count += 1;
        // `advance` made at least one period before any event is applied.
        let last = self.periods.len() - 1;
        let period = &mut self.periods[last];
        period.transfers_minor += amount;
        period.transfers_count += 1;
        if target_local {
            period.local_transfers_minor += amount;
            self.local_transfers += amount;
        }
        for (list, label) in [
            (&mut self.by_category, roles.1.category),
            (&mut self.by_area, event.area),
        ] {
            let flows = cohort(list, label);
            flows.received += amount;
            if target_local {
                add_rounds(&mut flows.received_by_round, &parts);
            }
        }
    }

    /// `S_g`: every local transfer lands in exactly one category, so the categories' rounds
    /// sum to the unit's (kept once, not twice, per transfer).
    fn spend(&self) -> [i64; ROUNDS] {
        let mut spend = [0i64; ROUNDS];
        for flows in &self.by_category {
            for (total, part) in spend.iter_mut().zip(flows.received_by_round) {
                *total += part;
            }
        }
        spend
    }

    fn leakage(&self, still_held: i64) -> Leakage {
        let d = self.tracked_deposits;
        let share = |x: i64| if d > 0 { x as f64 / d as f64 } else { 0.0 };
        Leakage {
            redemption: share(self.tracked_leak[0] + self.tracked_leak[1]),
            fee: share(self.tracked_leak[1]),
            expiry: share(self.tracked_leak[2]),
            demurrage: share(self.tracked_leak[3]),
            outflow: share(self.tracked_leak[4]),
            outside: share(self.tracked_outside),
            still_held: share(still_held),
        }
    }

    fn period_rows(&self, origin_s: i64) -> Vec<Period> {
        self.periods
            .iter()
            .map(|p| {
                let average = p.stock_integral as f64 / p.length_s.max(1) as f64;
                Period {
                    start_s: p.start_s + origin_s,
                    stock_average_minor: average,
                    velocity: (average > 0.0).then(|| p.transfers_minor as f64 / average),
                    ..p.clone()
                }
            })
            .collect()
    }

    fn report(&self, unit: &str, dictionary: &Dictionary, origin_s: i64) -> UnitMeasures {
        let d = self.tracked_deposits;
        let spend = self.spend();
        let (lm, lm3, lm_all) = multipliers(d, &spend);
        let window_s: i64 = self.periods.iter().map(|p| p.length_s).sum::<i64>().max(1);
        let integral: i128 = self.periods.iter().map(|p| p.stock_integral).sum();
        let stock_average = integral as f64 / window_s as f64;
        let velocity = (stock_average > 0.0).then(|| self.transfers as f64 / stock_average);
        // Over the money whose arrival the stream shows: an unbacked outflow (from a payer
        // whose income is not in the file, such as a household that withheld consent) adds
        // no holding time, so counting it would pull the mean towards zero.
        let backed_outflow = self.outflow_total - self.unbacked;
        let holding_s = (backed_outflow > 0).then(|| self.hold_sum / backed_outflow as f64);
        let p = (self.local_outflow > 0)
            .then(|| self.local_outflow_local as f64 / self.local_outflow as f64);
        let still_held: i64 = self
            .holdings
            .iter()
            .enumerate()
            .filter(|(id, _)| dictionary.participants()[*id].kind.is_local())
            .map(|(_, h)| h.slots[..ROUNDS].iter().sum::<i64>())
            .sum();
        let balances: i64 = self
            .holdings
            .iter()
            .map(|h| h.slots.iter().sum::<i64>())
            .sum();
        UnitMeasures {
            unit: unit.to_owned(),
            deposits_minor: self.deposits,
            tracked_deposits_minor: d,
            transfers_minor: self.transfers,
            transfers_count: self.transfers_count,
            local_transfers_minor: self.local_transfers,
            withdrawals_minor: LEAK_NAMES
                .iter()
                .zip(self.withdrawals)
                .map(|(n, w)| ((*n).to_owned(), w))
                .collect(),
            stock_end_minor: self.stock,
            unbacked_minor: self.unbacked,
            balances_reconcile: balances == self.stock,
            window_days: window_s as f64 / DAY_S as f64,
            stock_average_minor: stock_average,
            velocity,
            velocity_per_year: velocity.map(|v| v * 365.0 * DAY_S as f64 / window_s as f64),
            mean_holding_time_days: holding_s.map(|s| s / DAY_S as f64),
            holding_time_velocity: holding_s.filter(|&s| s > 0.0).map(|s| window_s as f64 / s),
            littles_law_holding_time_days: (self.outflow_total > 0)
                .then(|| integral as f64 / self.outflow_total as f64 / DAY_S as f64),
            local_spending_by_round_minor: spend.to_vec(),
            lm3,
            lm_all,
            lm,
            recirculation_share: p,
            lm3_closed_form: p.map(|p| 1.0 + p + p * p),
            lm_all_closed_form: p.filter(|&p| p < 1.0).map(|p| 1.0 / (1.0 - p)),
            leakage: self.leakage(still_held),
            periods: self.period_rows(origin_s),
            by_programme: labelled(&self.by_programme, dictionary),
            by_category: labelled(&self.by_category, dictionary),
            by_area: labelled(&self.by_area, dictionary),
            lm_by_area: self
                .multipliers
                .as_ref()
                .map(|m| m.by_area.report(dictionary))
                .unwrap_or_default(),
            lm_by_category: self
                .multipliers
                .as_ref()
                .map(|m| m.by_category.report(dictionary))
                .unwrap_or_default(),
            lm_by_period: self.lm_by_period(origin_s),
        }
    }
}

/// The cohorts that saw any flow, by label text.
fn labelled(list: &[CohortState], dictionary: &Dictionary) -> BTreeMap<String, CohortFlows> {
    list.iter()
        .enumerate()
        .filter(|(_, c)| **c != CohortState::default())
        .map(|(id, c)| {
            let flows = CohortFlows {
                deposits_minor: c.deposits,
                received_minor: c.received,
                received_by_round_minor: c.received_by_round.to_vec(),
                withdrawn_minor: c.withdrawn,
            };
            (dictionary.label_text(id as u32).to_owned(), flows)
        })
        .collect()
}

/// LM-n for a constant local re-spend share `p`: `1 + p + … + p^(n-1)` (LM3 = 1 + p + p²).
pub fn lm_n_closed_form(p: f64, n: u32) -> f64 {
    (0..n).map(|k| p.powi(k as i32)).sum()
}

/// The Keynesian local multiplier `1 / (1 - c * s)` for a propensity to spend `c` and a local
/// share `s` of that spending; `None` when `c * s >= 1` (no finite multiplier).
pub fn keynesian_multiplier(c: f64, s: f64) -> Option<f64> {
    let p = c * s;
    (p < 1.0).then(|| 1.0 / (1.0 - p))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::events::EventReader;

    fn measure(text: &str, config: MeasureConfig) -> Measures {
        let body: String = text.lines().map(|l| format!("{}\n", l.trim())).collect();
        let input = format!(
            "{}\n{}\n{body}",
            crate::events::CSV_MAGIC,
            crate::events::CSV_HEADER
        );
        let mut reader = EventReader::new(input.as_bytes()).unwrap();
        let mut measurer = Measurer::new(config).unwrap();
        while let Some(event) = reader.next_event().unwrap() {
            measurer.push(&event, reader.dictionary()).unwrap();
        }
        measurer.finish(reader.dictionary())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Hand-worked: 100.00 to a household; it pays 60.00 at a shop and 40.00 at an outside
    /// firm; the shop pays 30.00 wages and redeems 30.00; the worker spends 10.00 at the shop.
    /// D = 10000, S_0 = 6000, S_1 = 3000, S_2 = 1000: LM3 = 1.9, LM4 = LM-all = 2.0.
    const HAND: &str = "
        0,deposit,issuance,city,issuer,,h1,household,,10000,EUR-L,mi,north
        3600,transfer,payment,h1,household,,m1,merchant,food,6000,EUR-L,,north
        7200,transfer,payment,h1,household,,o1,outside,,4000,EUR-L,,
        86400,transfer,wage,m1,merchant,food,h2,household,,3000,EUR-L,,north
        86400,withdraw,redemption,m1,merchant,food,clear,system,,2850,EUR-L,,
        86400,withdraw,fee,m1,merchant,food,fees,system,,150,EUR-L,,
        172800,transfer,payment,h2,household,,m1,merchant,food,1000,EUR-L,,north";

    #[test]
    fn hand_worked_lm3_follows_the_money_round_by_round() {
        let m = measure(HAND, MeasureConfig::default());
        let u = &m.units[0];
        assert_eq!(u.local_spending_by_round_minor[..4], [6000, 3000, 1000, 0]);
        assert!(close(u.lm3.unwrap(), 1.9));
        assert!(close(u.lm[3], 2.0) && close(u.lm_all.unwrap(), 2.0) && close(u.lm[0], 1.0));
        assert!(close(u.leakage.outside, 0.4));
        assert!(close(u.leakage.redemption, 0.3) && close(u.leakage.fee, 0.015));
        assert!(close(u.leakage.still_held, 0.3));
        assert_eq!(u.stock_end_minor, 7000);
        assert!(u.balances_reconcile);
        assert_eq!(u.unbacked_minor, 0);
        // Local holders paid out 6000 + 4000 + 3000 + 3000 + 1000, of which 10000 locally.
        assert!(close(u.recirculation_share.unwrap(), 10000.0 / 17000.0));
        assert_eq!(
            u.by_category["food"].received_by_round_minor[..3],
            [6000, 0, 1000]
        );
        assert_eq!(u.by_category["food"].withdrawn_minor, 3000);
        assert_eq!(u.by_programme["mi"].deposits_minor, 10000);
    }

    /// Hand-worked proportional attribution: a shop holds 50.00 of round-1 money (from h1) and
    /// 50.00 of generation-3 money (h1 -> m2 -> wage to h2 -> m1); it pays 40.00 to a supplier,
    /// 20.00 of each generation, so round 3 and round 5 spending each gain 20.00.
    #[test]
    fn mixed_balances_are_split_in_proportion() {
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,10000,U,,
             1,transfer,payment,h1,household,,m1,merchant,,5000,U,,
             2,transfer,payment,h1,household,,m2,merchant,,5000,U,,
             3,transfer,wage,m2,merchant,,h2,household,,5000,U,,
             4,transfer,payment,h2,household,,m1,merchant,,5000,U,,
             5,transfer,supply,m1,merchant,,m3,merchant,,4000,U,,",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert_eq!(
            u.local_spending_by_round_minor[..4],
            [10000, 5000 + 2000, 5000, 2000]
        );
    }

    #[test]
    fn velocity_and_holding_time_on_a_steady_stock() {
        // 300.00 deposited at day 0, paid on at day 10, day 20 and back; 30-day period.
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,30000,U,,
             864000,transfer,payment,h1,household,,m1,merchant,,30000,U,,
             1728000,transfer,supply,m1,merchant,,m2,merchant,,30000,U,,",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert!(close(u.stock_average_minor, 30000.0));
        assert!(close(u.velocity.unwrap(), 2.0));
        // The window ends with the last event's day: 21 days.
        assert!(close(u.window_days, 21.0));
        assert!(close(u.velocity_per_year.unwrap(), 2.0 * 365.0 / 21.0));
        assert!(close(u.mean_holding_time_days.unwrap(), 10.0));
        assert!(close(u.holding_time_velocity.unwrap(), 2.1));
        assert_eq!(u.periods.len(), 1);
        assert!(close(u.periods[0].velocity.unwrap(), 2.0));
    }

    #[test]
    fn periods_split_the_stock_integral() {
        let day = MeasureConfig {
            period_s: DAY_S,
            ..MeasureConfig::default()
        };
        let m = measure(
            "43200,deposit,issuance,city,issuer,,h1,household,,1000,U,,
             129600,withdraw,expiry,h1,household,,x,system,,1000,U,,",
            day,
        );
        let p = &m.units[0].periods;
        assert_eq!(p.len(), 2);
        assert!(close(p[0].stock_average_minor, 500.0) && close(p[1].stock_average_minor, 500.0));
        assert_eq!((p[0].stock_end_minor, p[1].stock_end_minor), (1000, 0));
        assert!(close(m.units[0].leakage.expiry, 1.0));
    }

    #[test]
    fn programme_filter_follows_only_its_deposits() {
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,1000,U,a,
             0,deposit,issuance,city,issuer,,h1,household,,3000,U,b,
             1,transfer,payment,h1,household,,m1,merchant,,2000,U,,",
            MeasureConfig {
                programme: Some("a".into()),
                ..MeasureConfig::default()
            },
        );
        let u = &m.units[0];
        assert_eq!(u.tracked_deposits_minor, 1000);
        assert_eq!(u.local_spending_by_round_minor[0], 500);
    }

    #[test]
    fn money_never_seen_arriving_is_unbacked() {
        let m = measure(
            "5,transfer,payment,h1,household,,m1,merchant,,700,U,,",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert_eq!(
            (u.unbacked_minor, u.local_spending_by_round_minor[0]),
            (700, 0)
        );
        assert_eq!(u.lm3, None);
    }

    /// Paid on the 15th of each month from 15 January 2026: 30-day periods from the first
    /// payday put two paydays in one period and none in the next; calendar months put one in
    /// each, and each period is its month, whatever its length.
    #[test]
    fn calendar_months_hold_one_monthly_payday_each() {
        let day = |month: u32, day: u32| ledger::policy::days_from_civil(2026, month, day) * DAY_S;
        let rows: String = (1..=4)
            .map(|month| {
                format!(
                    "{},deposit,issuance,city,issuer,,h1,household,,10000,U,,\n",
                    day(month, 15)
                )
            })
            .collect();
        let deposits = |config| -> Vec<(i64, i64)> {
            measure(&rows, config)
                .combined_lm_by_period
                .iter()
                .map(|p| (p.start_s, p.deposits_minor))
                .collect()
        };
        let thirty_days = deposits(MeasureConfig::default());
        assert!(
            thirty_days.iter().any(|&(_, d)| d == 20000)
                && thirty_days.iter().any(|&(_, d)| d == 0),
            "{thirty_days:?}"
        );
        let months = deposits(MeasureConfig {
            calendar_months: true,
            ..MeasureConfig::default()
        });
        assert_eq!(
            months,
            [
                (day(1, 15), 10000),
                (day(2, 1), 10000),
                (day(3, 1), 10000),
                (day(4, 1), 10000)
            ]
        );
        let m = measure(
            &rows,
            MeasureConfig {
                calendar_months: true,
                ..MeasureConfig::default()
            },
        );
        let lengths: Vec<i64> = m.units[0]
            .periods
            .iter()
            .map(|p| p.length_s / DAY_S)
            .collect();
        // January from the first event's day, February and March whole, April to the end of
        // the last event's day: nothing before the stream is counted in the window.
        assert_eq!(lengths, [17, 28, 31, 15]);
        assert!(m.calendar_months);
        // Times the calendar cannot name are refused, not overflowed.
        let mut far = Measurer::new(MeasureConfig {
            calendar_months: true,
            ..MeasureConfig::default()
        })
        .unwrap();
        let text = format!(
            "{}\n{}\n{}\n",
            crate::events::CSV_MAGIC,
            crate::events::CSV_HEADER,
            "9000000000000000,deposit,issuance,city,issuer,,h1,household,,1,U,,"
        );
        let mut reader = EventReader::new(text.as_bytes()).unwrap();
        let event = reader.next_event().unwrap().unwrap();
        assert_eq!(
            far.push(&event, reader.dictionary()),
            Err(MeasureError::TimeOutOfCalendar(9_000_000_000_000_000))
        );
    }

    /// h1 holds 100.00 for ten days; m2, whose income is not in the stream, redeems 100.00 on
    /// the same day. The mean holding time is h1's ten days, not five.
    #[test]
    fn unbacked_outflows_do_not_shorten_the_holding_time() {
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,10000,U,,\n\
             864000,transfer,payment,h1,household,,m1,merchant,,10000,U,,\n\
             864000,withdraw,redemption,m2,merchant,,city,issuer,,10000,U,,",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert_eq!(u.unbacked_minor, 10000);
        let days = u.mean_holding_time_days.unwrap();
        assert!((days - 10.0).abs() < 1e-9, "{days}");
    }

    /// Hand-worked LM-n by area of issuance: 100.00 deposited in the north (h1) and in the
    /// south (h2); h1 pays 60.00 and h2 20.00 at m1, whose 80.00 of round-1 money is then
    /// three quarters northern; m1 pays 40.00 on to m2 (30.00 northern), which pays 10.00 of
    /// wages (7.50 northern). North: S = 6000, 3000, 750, so LM3 = 1.9, LM4 = 1.975; south:
    /// S = 2000, 1000, 250, LM3 = 1.3; all: LM3 = 1.6, the deposit-weighted mean.
    #[test]
    fn hand_worked_lm_by_area_follows_the_money_of_each_area() {
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,10000,U,,north
             0,deposit,issuance,city,issuer,,h2,household,,10000,U,,south
             1,transfer,payment,h1,household,,m1,merchant,food,6000,U,,north
             2,transfer,payment,h2,household,,m1,merchant,food,2000,U,,north
             3,transfer,supply,m1,merchant,food,m2,merchant,retail,4000,U,,north
             4,transfer,wage,m2,merchant,retail,h3,household,,1000,U,,north",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert!(close(u.lm3.unwrap(), 1.6));
        let (north, south) = (&u.lm_by_area["north"], &u.lm_by_area["south"]);
        assert_eq!(north.base_minor, 10000.0);
        assert_eq!(
            north.local_spending_by_round_minor[..4],
            [6000.0, 3000.0, 750.0, 0.0]
        );
        assert!(close(north.lm3.unwrap(), 1.9) && close(north.lm[3], 1.975));
        assert!(close(north.lm_all.unwrap(), 1.975) && close(north.lm[0], 1.0));
        assert_eq!(
            south.local_spending_by_round_minor[..3],
            [2000.0, 1000.0, 250.0]
        );
        assert!(close(south.lm3.unwrap(), 1.3));
        assert_eq!(u.lm_by_area.len(), 2);
        assert_eq!(m.combined_lm_by_area, u.lm_by_area);
    }

    /// Hand-worked LM-n by category of first spend (each category's LM3 counts the spending
    /// that first reached it as round 1, as NEF's LM3 does for one organisation): 100.00 to
    /// h1, who spends 60.00 at m1 (food) and 20.00 at m2 (retail); m1 pays 30.00 to m2, which
    /// then holds 20.00 of round-1 (retail) and 30.00 of round-2 (food) money and pays half of
    /// it as wages to h2, who spends all 25.00 at m1. Food: S = 6000, 3000, 1500, 1500, so
    /// LM2 = 1.5, LM3 = 1.75, LM-all = 2; retail: S = 2000, 1000, 1000, LM3 = LM-all = 2.
    /// Then `D * LM4 = D + 6000 * LM3(food) + 2000 * LM3(retail)`.
    #[test]
    fn hand_worked_lm_by_category_starts_where_money_is_first_spent() {
        let m = measure(
            "0,deposit,issuance,city,issuer,,h1,household,,10000,U,,
             1,transfer,payment,h1,household,,m1,merchant,food,6000,U,,
             2,transfer,payment,h1,household,,m2,merchant,retail,2000,U,,
             3,transfer,supply,m1,merchant,food,m2,merchant,retail,3000,U,,
             4,transfer,wage,m2,merchant,retail,h2,household,,2500,U,,
             5,transfer,payment,h2,household,,m1,merchant,food,2500,U,,",
            MeasureConfig::default(),
        );
        let u = &m.units[0];
        assert_eq!(
            u.local_spending_by_round_minor[..5],
            [8000, 4000, 2500, 1500, 0]
        );
        let (food, retail) = (&u.lm_by_category["food"], &u.lm_by_category["retail"]);
        assert_eq!(food.base_minor, 6000.0);
        assert_eq!(
            food.local_spending_by_round_minor[..5],
            [6000.0, 3000.0, 1500.0, 1500.0, 0.0]
        );
        assert!(close(food.lm[1], 1.5) && close(food.lm3.unwrap(), 1.75));
        assert!(close(food.lm_all.unwrap(), 2.0));
        assert_eq!(
            retail.local_spending_by_round_minor[..3],
            [2000.0, 1000.0, 1000.0]
        );
        assert!(close(retail.lm3.unwrap(), 2.0) && close(retail.lm_all.unwrap(), 2.0));
        assert!(close(u.lm[3], 2.45));
        assert!(close(
            10000.0 * u.lm[3],
            10000.0 + 6000.0 * 1.75 + 2000.0 * 2.0
        ));
        // No area on the deposit: one cohort, the unit itself.
        assert_eq!(u.lm_by_area[""].lm3, u.lm3);
    }

    /// Hand-worked LM-n per period (30-day periods; day d is `d * 86400`). Generations:
    ///
    /// - P0 (days 0-29): 100.00 issued to h1 (programme p0); h1 pays m1 60.00 (gen 0, S_0);
    ///   m1 pays m2 30.00 (gen 1, S_1). D = 10000, S = 6000, 3000, 0:
    ///   LM3(P0) = (10000 + 6000 + 3000) / 10000 = 1.9 = LM4(P0).
    /// - P1 (days 30-59): 100.00 issued to h2 (p1); h2 pays m1 50.00 (gen 0), so m1 holds
    ///   80.00 of gen 1; m2 pays 20.00 wages out of its 30.00 of gen 2 (S_2, P0's money
    ///   spent in P1); m1 pays m3 40.00 (gen 1); h1 spends 20.00 more of its gen 0 at m3.
    ///   D = 10000, S = 5000 + 2000, 4000, 2000: LM3(P1) = 2.1, LM4(P1) = 2.3.
    /// - P2 (day 60): no deposit; m3 (20.00 of gen 1, 40.00 of gen 2) pays m1 30.00, a third
    ///   gen 1 and two thirds gen 2. S = 0, 1000, 2000 and no LM-n.
    ///
    /// The whole stream: D = 20000, S = 13000, 8000, 4000, LM3 = 2.05, and the periods' flows
    /// add up to it: 19000 + 21000 + 1000 = 41000 = D * LM3. By period of *issuance* (the
    /// `programme` filter follows each period's money here) P0's money has LM3 2.35
    /// (S = 8000, 3000 + 1500 + 1000, ...: 30.00 of m1's 80.00 was P0's) and P1's 1.75: the
    /// flow definition credits P1 with P0's later rounds, as a survey of P1 would.
    #[test]
    fn hand_worked_lm_by_period_counts_each_periods_flows() {
        let stream = "
            0,deposit,issuance,city,issuer,,h1,household,,10000,U,p0,
            86400,transfer,payment,h1,household,,m1,merchant,food,6000,U,,
            172800,transfer,supply,m1,merchant,food,m2,merchant,retail,3000,U,,
            2592000,deposit,issuance,city,issuer,,h2,household,,10000,U,p1,
            2678400,transfer,payment,h2,household,,m1,merchant,food,5000,U,,
            2764800,transfer,wage,m2,merchant,retail,h3,household,,2000,U,,
            2851200,transfer,supply,m1,merchant,food,m3,merchant,food,4000,U,,
            2937600,transfer,payment,h1,household,,m3,merchant,food,2000,U,,
            5184000,transfer,supply,m3,merchant,food,m1,merchant,food,3000,U,,";
        let m = measure(stream, MeasureConfig::default());
        let u = &m.units[0];
        let periods = &u.lm_by_period;
        assert_eq!(periods.len(), 3);
        let starts: Vec<i64> = periods.iter().map(|p| p.start_s).collect();
        assert_eq!(starts, [0, 2592000, 5184000]);
        let flows = |k: usize| {
            let p = &periods[k];
            (
                p.deposits_minor,
                p.local_spending_by_round_minor[..4].to_vec(),
            )
        };
        assert_eq!(flows(0), (10000, vec![6000, 3000, 0, 0]));
        assert_eq!(flows(1), (10000, vec![7000, 4000, 2000, 0]));
        assert_eq!(flows(2), (0, vec![0, 1000, 2000, 0]));
        assert!(close(periods[0].lm3.unwrap(), 1.9) && close(periods[0].lm[3], 1.9));
        assert!(close(periods[1].lm3.unwrap(), 2.1) && close(periods[1].lm[3], 2.3));
        assert!(close(periods[1].lm_all.unwrap(), 2.3) && close(periods[1].lm[0], 1.0));
        assert_eq!((periods[2].lm3, periods[2].lm_all), (None, None));
        assert!(periods[2].lm.iter().all(|&v| v == 0.0));
        assert!(close(u.lm3.unwrap(), 2.05));
        assert_eq!(u.local_spending_by_round_minor[..4], [13000, 8000, 4000, 0]);
        assert_eq!(m.combined_lm_by_period, u.lm_by_period);
        // The time series carries D_P, round 2 and 3 spending, LM3 and LM-all per period.
        let csv = crate::report::timeseries_csv(&m);
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[0].ends_with(",tracked_deposits_minor,round2_minor,round3_minor,lm3,lm_all"));
        assert!(rows[1].ends_with(",10000,6000,3000,1.9,1.9"), "{}", rows[1]);
        assert!(rows[3].ends_with(",0,0,1000,,"), "{}", rows[3]);
        // By period of issuance, for contrast: each period's deposits as a programme.
        let issued_in = |programme: &str| {
            let config = MeasureConfig {
                programme: Some(programme.into()),
                ..MeasureConfig::default()
            };
            let m = measure(stream, config);
            let u = &m.units[0];
            (
                u.local_spending_by_round_minor[..3].to_vec(),
                u.lm3.unwrap(),
            )
        };
        let (p0, lm3_p0) = issued_in("p0");
        assert_eq!(p0, [8000, 5500, 2750]);
        assert!(close(lm3_p0, 2.35));
        let (p1, lm3_p1) = issued_in("p1");
        assert_eq!(p1, [5000, 2500, 1250]);
        assert!(close(lm3_p1, 1.75));
    }

    /// An agent run over five periods: the periods' flows add up to the unit's exactly, all
    /// units' to the combined ones, and, every period having deposits, the deposit-weighted
    /// mean of the periods' LM-n is the unit's.
    #[test]
    fn period_multipliers_add_up_to_the_unit_ones() {
        let mut scenario = crate::scenario::Scenario::default();
        scenario.households.count = 200;
        scenario.merchants.count = 20;
        scenario.days = 150;
        scenario.policy.local_unit_share = 0.5;
        let (_, m) = crate::simulate_with(&scenario, None, false).unwrap();
        let mut combined = vec![(0i64, [0i64; ROUNDS]); 5];
        for u in &m.units {
            assert_eq!(u.lm_by_period.len(), 5);
            let (mut deposits, mut spend) = (0i64, [0i64; ROUNDS]);
            for (k, (lm, period)) in u.lm_by_period.iter().zip(&u.periods).enumerate() {
                assert_eq!(lm.start_s, period.start_s);
                assert!(lm.deposits_minor > 0 && lm.deposits_minor == period.deposits_minor);
                deposits += lm.deposits_minor;
                combined[k].0 += lm.deposits_minor;
                let rounds = &lm.local_spending_by_round_minor;
                for ((unit, all), &s) in spend.iter_mut().zip(&mut combined[k].1).zip(rounds) {
                    *unit += s;
                    *all += s;
                }
            }
            assert_eq!(deposits, u.tracked_deposits_minor);
            assert_eq!(spend[..], u.local_spending_by_round_minor[..]);
            let d = deposits as f64;
            for n in 0..ROUNDS {
                let weighted: f64 = u
                    .lm_by_period
                    .iter()
                    .map(|p| p.deposits_minor as f64 * p.lm[n])
                    .sum();
                assert!((weighted - d * u.lm[n]).abs() <= 1e-9 * d * u.lm[n]);
            }
        }
        for (all, (deposits, spend)) in m.combined_lm_by_period.iter().zip(&combined) {
            assert_eq!(all.deposits_minor, *deposits);
            assert_eq!(all.local_spending_by_round_minor[..], spend[..]);
        }
    }

    #[test]
    fn labels_beyond_the_most_cohorts_share_one() {
        let rows: String = (0..20)
            .map(|i| format!("0,deposit,issuance,city,issuer,,h{i},household,,100,U,,a{i}\n"))
            .collect();
        let m = measure(&rows, MeasureConfig::default());
        let areas = &m.units[0].lm_by_area;
        assert_eq!(areas.len(), MAX_COHORTS);
        // a15 was the last cohort when a16 arrived: it shares with a16 … a19.
        assert_eq!(areas[OTHER_COHORT].base_minor, 500.0);
        assert_eq!(areas["a14"].base_minor, 100.0);
    }

    /// An agent run with areas and categories: every identity that ties the cohorts to the
    /// unit holds, and following cohorts changes no other measure.
    #[test]
    fn cohort_multipliers_add_up_to_the_unit_ones() {
        let mut scenario = crate::scenario::Scenario::default();
        scenario.households.count = 300;
        scenario.merchants.count = 40;
        scenario.days = 150;
        scenario.areas = vec!["north".into(), "south".into(), "east".into()];
        scenario.policy.local_unit_share = 0.5;
        scenario.policy.expiry_days = 40;
        let dictionary = crate::agents::dictionary(&scenario).unwrap();
        let run = |cohorts: bool| {
            let config = MeasureConfig {
                cohort_multipliers: cohorts,
                ..MeasureConfig::default()
            };
            let mut measurer = Measurer::new(config).unwrap();
            crate::agents::run(&scenario, &dictionary, &mut |e| {
                measurer.push(e, &dictionary).unwrap()
            })
            .unwrap();
            for state in &measurer.units {
                let m = state.multipliers.as_deref();
                assert!(m.is_none_or(|m| m.by_area.shares_sum_to_one()));
                assert!(m.is_none_or(|m| m.by_category.shares_sum_to_one()));
            }
            measurer.finish(&dictionary)
        };
        let (with, mut without) = (run(true), run(false));
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        for u in &with.units {
            let d = u.tracked_deposits_minor as f64;
            assert_eq!(u.lm_by_area.len(), 3);
            assert_eq!(u.lm_by_category.len(), 3);
            let bases: f64 = u.lm_by_area.values().map(|c| c.base_minor).sum();
            assert_eq!(bases, d);
            for g in 0..ROUNDS {
                let spent = u.local_spending_by_round_minor[g] as f64;
                for cohorts in [&u.lm_by_area, &u.lm_by_category] {
                    let sum: f64 = cohorts
                        .values()
                        .map(|c| c.local_spending_by_round_minor[g])
                        .sum();
                    assert!(near(sum, spent), "round {g}: {sum} vs {spent}");
                }
            }
            for n in 0..ROUNDS {
                // Areas: the deposit-weighted mean of LM-n is the unit's LM-n.
                let weighted: f64 = u.lm_by_area.values().map(|c| c.base_minor * c.lm[n]).sum();
                assert!(near(weighted, d * u.lm[n]));
                // Categories: D * LM-(n+1) = D + sum of S_0 * LM-n.
                if n + 1 < ROUNDS {
                    let weighted: f64 = u
                        .lm_by_category
                        .values()
                        .map(|c| c.base_minor * c.lm[n])
                        .sum();
                    assert!(near(d + weighted, d * u.lm[n + 1]));
                }
            }
        }
        assert!(without.units.iter().all(|u| u.lm_by_area.is_empty()));
        for (u, w) in without.units.iter_mut().zip(&with.units) {
            u.lm_by_area.clone_from(&w.lm_by_area);
            u.lm_by_category.clone_from(&w.lm_by_category);
        }
        without
            .combined_lm_by_area
            .clone_from(&with.combined_lm_by_area);
        without
            .combined_lm_by_category
            .clone_from(&with.combined_lm_by_category);
        assert_eq!(without, with);
    }

    #[test]
    fn closed_forms_match_hand_values() {
        assert!(close(lm_n_closed_form(0.5, 3), 1.75));
        assert!(close(lm_n_closed_form(0.0, 3), 1.0));
        assert!(close(keynesian_multiplier(0.8, 0.5).unwrap(), 1.0 / 0.6));
        assert_eq!(keynesian_multiplier(1.0, 1.0), None);
    }

    #[test]
    fn out_of_order_events_and_bad_periods_are_refused() {
        assert_eq!(
            Measurer::new(MeasureConfig {
                period_s: 0,
                ..MeasureConfig::default()
            })
            .err(),
            Some(MeasureError::BadPeriod(0))
        );
        let mut dictionary = Dictionary::new();
        let issuer = dictionary
            .participant("city", crate::events::ParticipantKind::Issuer, "")
            .unwrap();
        let household = dictionary
            .participant("h", crate::events::ParticipantKind::Household, "")
            .unwrap();
        let unit = dictionary.unit("U").unwrap();
        let event = |time_s| Event {
            time_s,
            reason: Reason::Issuance,
            source: issuer,
            target: household,
            amount_minor: 1,
            unit,
            programme: 0,
            area: 0,
        };
        let mut measurer = Measurer::new(MeasureConfig::default()).unwrap();
        measurer.push(&event(10), &dictionary).unwrap();
        assert_eq!(
            measurer.push(&event(9), &dictionary),
            Err(MeasureError::OutOfOrder {
                time_s: 9,
                previous_s: 10
            })
        );
        let far = event(10 + MAX_PERIODS as i64 * DAY_S);
        let mut daily = Measurer::new(MeasureConfig {
            period_s: DAY_S,
            ..MeasureConfig::default()
        })
        .unwrap();
        daily.push(&event(0), &dictionary).unwrap();
        assert_eq!(
            daily.push(&far, &dictionary),
            Err(MeasureError::TooManyPeriods)
        );
        // The largest amount the format allows, 1,024 times, fits; once more does not, and
        // is an error rather than an overflow.
        let largest = Event {
            amount_minor: (1 << 53) - 1,
            ..event(20)
        };
        let mut big = Measurer::new(MeasureConfig::default()).unwrap();
        for _ in 0..1024 {
            big.push(&largest, &dictionary).unwrap();
        }
        assert_eq!(
            big.push(&largest, &dictionary),
            Err(MeasureError::VolumeOverflow)
        );
    }
}
