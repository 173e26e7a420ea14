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
//!   withdraw) of `x` at time `t` contributes `x * (t - mean arrival time)`. Its velocity is
//!   `window / mean holding time`. A Little's-law estimate, average stock * window / outflow,
//!   is reported beside it.
//! - *Local recirculation share* `p̂`: of all money leaving local holders (transfers and
//!   withdrawals), the share paid to local holders. Closed forms `1 + p̂ + p̂²` and `1/(1-p̂)`
//!   are reported as cross-checks of LM3 and LM-all.
//! - *Leakage*: tracked money leaving by reason (redemption with its fee, expiry, demurrage,
//!   outflow) or paid to outside firms, as shares of `D`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::{Dictionary, Event, EventKind, Reason};

/// Generations tracked per holder (so LM-1 … LM-`ROUNDS` are reported).
pub const ROUNDS: usize = 10;
const UNTRACKED: usize = ROUNDS;
const SLOTS: usize = ROUNDS + 1;
/// Most periods one measurement may span.
pub const MAX_PERIODS: usize = 100_000;
/// Seconds in a day.
pub const DAY_S: i64 = 86_400;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasureConfig {
    /// Length of one period of the time series, in seconds (default 30 days).
    pub period_s: i64,
    /// Follow only deposits of this programme (other deposits become untracked money).
    pub programme: Option<String>,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        Self {
            period_s: 30 * DAY_S,
            programme: None,
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
    /// Events arrived out of time order.
    #[error("event at {time_s} is before the previous event at {previous_s}")]
    OutOfOrder {
        /// This event's time.
        time_s: i64,
        /// The previous one's.
        previous_s: i64,
    },
}

#[derive(Clone, Copy, Default)]
struct Holding {
    slots: [i64; SLOTS],
    /// Money-weighted mean arrival time of the balance, seconds since the origin. A float:
    /// it only feeds the reported holding time, never a balance.
    arrival_mean_s: f64,
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
}

/// Measures of a whole stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measures {
    /// Events measured.
    pub events: u64,
    /// Period length in seconds.
    pub period_s: i64,
    /// Start of the first period, Unix seconds (first event's day).
    pub origin_s: i64,
    /// The programme followed, if one was selected.
    pub programme: Option<String>,
    /// Per unit, in order of first appearance.
    pub units: Vec<UnitMeasures>,
    /// All units together, as if one money: LM3 over the sum of deposits and rounds.
    pub combined_lm3: Option<f64>,
    /// All units together: LM-all.
    pub combined_lm_all: Option<f64>,
}

#[derive(Default)]
struct UnitState {
    events: u64,
    holdings: Vec<Holding>,
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
    spend: [i64; ROUNDS],
    periods: Vec<Period>,
    last_s: i64,
    by_programme: Vec<CohortFlows>,
    by_category: Vec<CohortFlows>,
    by_area: Vec<CohortFlows>,
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

fn cohort(list: &mut Vec<CohortFlows>, label: u32) -> &mut CohortFlows {
    let index = label as usize;
    if list.len() <= index {
        list.resize_with(index + 1, || CohortFlows {
            received_by_round_minor: vec![0; ROUNDS],
            ..CohortFlows::default()
        });
    }
    &mut list[index]
}

/// Takes `amount` out of `holding` in proportion to its generations (largest remainder),
/// returning the parts, how much of `amount` exceeded the balance (returned as untracked), and
/// the money-seconds the taken money was held.
fn take(holding: &mut Holding, amount: i64, now: i64) -> ([i64; SLOTS], i64, f64) {
    let balance: i64 = holding.slots.iter().sum();
    if balance <= amount {
        let mut parts = holding.slots;
        let excess = amount - balance;
        parts[UNTRACKED] += excess;
        let held = balance as f64 * (now as f64 - holding.arrival_mean_s);
        *holding = Holding::default();
        return (parts, excess, held);
    }
    let mut parts = [0i64; SLOTS];
    let nonzero = holding.slots.iter().filter(|&&s| s != 0).count();
    if nonzero == 1 {
        let only = holding.slots.iter().position(|&s| s != 0).unwrap_or(0);
        parts[only] = amount;
    } else {
        let mut remainders = [0i64; SLOTS];
        let mut given = 0;
        if balance <= 1 << 31 {
            // Products stay below 2^62. Divisions dominate the measuring time, so each quotient
            // is estimated with one float reciprocal and corrected to the exact integer.
            let (amount, balance) = (amount as u64, balance as u64);
            let inverse = 1.0 / balance as f64;
            for (i, &slot) in holding.slots.iter().enumerate() {
                if slot == 0 {
                    continue;
                }
                let product = slot as u64 * amount;
                let mut quotient = (product as f64 * inverse) as u64;
                while quotient * balance > product {
                    quotient -= 1;
                }
                while product - quotient * balance >= balance {
                    quotient += 1;
                }
                parts[i] = quotient as i64;
                remainders[i] = (product - quotient * balance) as i64;
                given += parts[i];
            }
        } else {
            for (i, &slot) in holding.slots.iter().enumerate() {
                let product = i128::from(slot) * i128::from(amount);
                parts[i] = (product / i128::from(balance)) as i64;
                // Below `balance`, so it fits.
                remainders[i] = (product % i128::from(balance)) as i64;
                given += parts[i];
            }
        }
        // The remainders sum to (amount - given) * balance, each below balance, so at least
        // that many are positive; each gets one more minor unit, largest first.
        for _ in given..amount {
            let mut best = 0;
            for i in 1..SLOTS {
                if remainders[i] > remainders[best] {
                    best = i;
                }
            }
            parts[best] += 1;
            remainders[best] = -1;
        }
    }
    for (slot, part) in holding.slots.iter_mut().zip(parts) {
        *slot -= part;
    }
    (
        parts,
        0,
        amount as f64 * (now as f64 - holding.arrival_mean_s),
    )
}

/// Moves the mean arrival time for `amount` arriving at `now` (before it joins the slots).
fn receive(holding: &mut Holding, amount: i64, now: i64) {
    let balance: i64 = holding.slots.iter().sum();
    let weight = amount as f64 / (balance as f64 + amount as f64);
    holding.arrival_mean_s += (now as f64 - holding.arrival_mean_s) * weight;
}

/// Measures a stream event by event; call [`Measurer::push`] in time order, then
/// [`Measurer::finish`].
pub struct Measurer {
    config: MeasureConfig,
    programme_label: Option<Option<u32>>,
    origin_s: Option<i64>,
    previous_s: i64,
    events: u64,
    units: Vec<UnitState>,
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
            origin_s: None,
            previous_s: i64::MIN,
            events: 0,
            units: Vec::new(),
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
        let origin = *self
            .origin_s
            .get_or_insert(event.time_s.div_euclid(DAY_S) * DAY_S);
        let now = event.time_s - origin;
        let unit = usize::from(event.unit);
        if self.units.len() <= unit {
            self.units.resize_with(unit + 1, UnitState::default);
        }
        let period_s = self.config.period_s;
        let state = &mut self.units[unit];
        state.advance(now, period_s)?;
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
        state.events += 1;
        state.apply(event, dictionary, now, tracked_programme);
        self.events += 1;
        Ok(())
    }

    /// The measures; periods run to the end of the last event's period.
    pub fn finish(mut self, dictionary: &Dictionary) -> Measures {
        let period_s = self.config.period_s;
        let origin_s = self.origin_s.unwrap_or(0);
        let last = self.previous_s.saturating_sub(origin_s).max(0);
        let periods = usize::try_from(last / period_s + 1).unwrap_or(1);
        // Event times may be coarsened to the day, so the last event's whole day is observed.
        let end_s = (last.div_euclid(DAY_S) + 1) * DAY_S;
        let mut units = Vec::new();
        let (mut deposits, mut rounds) = (0i64, [0i64; ROUNDS]);
        for (id, state) in self.units.iter_mut().enumerate() {
            if state.events == 0 {
                continue;
            }
            state.finish_periods(periods, period_s, end_s);
            deposits += state.tracked_deposits;
            for (total, s) in rounds.iter_mut().zip(state.spend) {
                *total += s;
            }
            let code = u16::try_from(id).map_or("", |id| dictionary.unit_code(id));
            units.push(state.report(code, dictionary, origin_s));
        }
        let ratio =
            |extra: i64| (deposits > 0).then(|| (deposits + extra) as f64 / deposits as f64);
        Measures {
            events: self.events,
            period_s,
            origin_s,
            programme: self.config.programme.clone(),
            units,
            combined_lm3: ratio(rounds[0] + rounds[1]),
            combined_lm_all: ratio(rounds.iter().sum()),
        }
    }
}

impl UnitState {
    fn holding(&mut self, id: u32) -> &mut Holding {
        let index = id as usize;
        if self.holdings.len() <= index {
            self.holdings.resize(index + 1, Holding::default());
        }
        &mut self.holdings[index]
    }

    /// Integrates the stock up to `now`, closing every period that ends before it.
    fn advance(&mut self, now: i64, period_s: i64) -> Result<(), MeasureError> {
        let index = usize::try_from(now / period_s).map_err(|_| MeasureError::TooManyPeriods)?;
        if index >= MAX_PERIODS {
            return Err(MeasureError::TooManyPeriods);
        }
        self.close_until(index + 1, period_s);
        if let Some(current) = self.periods.last_mut() {
            current.stock_integral += i128::from(self.stock) * i128::from(now - self.last_s);
        }
        self.last_s = now;
        Ok(())
    }

    /// Makes `count` periods exist, integrating the stock to the end of each one closed.
    fn close_until(&mut self, count: usize, period_s: i64) {
        while self.periods.len() < count {
            if let Some(current) = self.periods.last_mut() {
                let end = current.start_s + period_s;
                current.stock_integral += i128::from(self.stock) * i128::from(end - self.last_s);
                self.last_s = end;
            }
            let start_s = self.periods.len() as i64 * period_s;
            self.periods.push(Period {
                start_s,
                length_s: period_s,
                ..Period::default()
            });
        }
    }

    /// Closes the measurement: `count` periods, the last integrated to `end_s` (the end of the
    /// last event's day) or its own end, whichever is first.
    fn finish_periods(&mut self, count: usize, period_s: i64, end_s: i64) {
        self.close_until(count, period_s);
        if let Some(current) = self.periods.last_mut() {
            let end = (current.start_s + period_s).min(end_s).max(self.last_s);
            current.stock_integral += i128::from(self.stock) * i128::from(end - self.last_s);
            current.length_s = end - current.start_s;
            self.last_s = end;
        }
    }

    fn apply(&mut self, event: &Event, dictionary: &Dictionary, now: i64, tracked_programme: bool) {
        let amount = event.amount_minor;
        let source_kind = dictionary.participant_info(event.source).kind;
        let target_info = dictionary.participant_info(event.target);
        let target_local = target_info.kind.is_local();
        let target_category = target_info.category;
        let source_category = dictionary.participant_info(event.source).category;
        let period_index = self.periods.len() - 1;
        match event.kind() {
            EventKind::Deposit => {
                let tracked = tracked_programme && target_local;
                let holding = self.holding(event.target);
                receive(holding, amount, now);
                holding.slots[if tracked { 0 } else { UNTRACKED }] += amount;
                self.stock += amount;
                self.deposits += amount;
                if tracked {
                    self.tracked_deposits += amount;
                }
                self.periods[period_index].deposits_minor += amount;
                cohort(&mut self.by_programme, event.programme).deposits_minor += amount;
                cohort(&mut self.by_area, event.area).deposits_minor += amount;
            }
            EventKind::Transfer => {
                let local_source = source_kind.is_local();
                self.transfer(event, now, (local_source, target_local), target_category);
            }
            EventKind::Withdraw => {
                let (parts, excess, held) = take(self.holding(event.source), amount, now);
                self.unbacked += excess;
                self.hold_sum += held;
                self.outflow_total += amount;
                if source_kind.is_local() {
                    self.local_outflow += amount;
                }
                let index = leak_index(event.reason);
                self.withdrawals[index] += amount;
                self.tracked_leak[index] += amount - parts[UNTRACKED];
                self.stock -= amount;
                self.periods[period_index].withdrawals_minor += amount;
                cohort(&mut self.by_category, source_category).withdrawn_minor += amount;
                cohort(&mut self.by_programme, event.programme).withdrawn_minor += amount;
            }
        }
        self.periods[period_index].stock_end_minor = self.stock;
    }

    /// A transfer: generations move one round on when the payee is local.
    fn transfer(&mut self, event: &Event, now: i64, local: (bool, bool), target_category: u32) {
        let (source_local, target_local) = local;
        let amount = event.amount_minor;
        let (parts, excess, held) = take(self.holding(event.source), amount, now);
        self.unbacked += excess;
        self.hold_sum += held;
        self.outflow_total += amount;
        let target = self.holding(event.target);
        receive(target, amount, now);
        if target_local {
            for (g, &part) in parts[..ROUNDS].iter().enumerate() {
                target.slots[(g + 1).min(ROUNDS - 1)] += part;
            }
            target.slots[UNTRACKED] += parts[UNTRACKED];
        } else {
            target.slots[UNTRACKED] += amount;
            self.tracked_outside += amount - parts[UNTRACKED];
        }
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
            (&mut self.by_category, target_category),
            (&mut self.by_area, event.area),
        ] {
            let flows = cohort(list, label);
            flows.received_minor += amount;
            if target_local {
                for (total, part) in flows.received_by_round_minor.iter_mut().zip(parts) {
                    *total += part;
                }
            }
        }
        if target_local {
            for (total, part) in self.spend.iter_mut().zip(parts) {
                *total += part;
            }
        }
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
        let ratio = |extra: i64| (d > 0).then(|| (d + extra) as f64 / d as f64);
        let mut lm = Vec::with_capacity(ROUNDS);
        let mut running = 0;
        for n in 1..=ROUNDS {
            if n >= 2 {
                running += self.spend[n - 2];
            }
            lm.push(ratio(running).unwrap_or(0.0));
        }
        let window_s: i64 = self.periods.iter().map(|p| p.length_s).sum::<i64>().max(1);
        let integral: i128 = self.periods.iter().map(|p| p.stock_integral).sum();
        let stock_average = integral as f64 / window_s as f64;
        let velocity = (stock_average > 0.0).then(|| self.transfers as f64 / stock_average);
        let holding_s = (self.outflow_total > 0).then(|| self.hold_sum / self.outflow_total as f64);
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
            local_spending_by_round_minor: self.spend.to_vec(),
            lm3: ratio(self.spend[0] + self.spend[1]),
            lm_all: ratio(self.spend.iter().sum()),
            lm,
            recirculation_share: p,
            lm3_closed_form: p.map(|p| 1.0 + p + p * p),
            lm_all_closed_form: p.filter(|&p| p < 1.0).map(|p| 1.0 / (1.0 - p)),
            leakage: self.leakage(still_held),
            periods: self.period_rows(origin_s),
            by_programme: labelled(&self.by_programme, dictionary),
            by_category: labelled(&self.by_category, dictionary),
            by_area: labelled(&self.by_area, dictionary),
        }
    }
}

/// The cohorts that saw any flow, by label text.
fn labelled(list: &[CohortFlows], dictionary: &Dictionary) -> BTreeMap<String, CohortFlows> {
    let empty = CohortFlows {
        received_by_round_minor: vec![0; ROUNDS],
        ..CohortFlows::default()
    };
    list.iter()
        .enumerate()
        .filter(|(_, c)| **c != empty)
        .map(|(id, c)| (dictionary.label_text(id as u32).to_owned(), c.clone()))
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
    fn rounding_of_proportional_parts_is_exact() {
        let mut holding = Holding {
            slots: [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            arrival_mean_s: 0.0,
        };
        let (parts, excess, _) = take(&mut holding, 2, 0);
        assert_eq!((parts.iter().sum::<i64>(), excess), (2, 0));
        assert_eq!(parts[..3], [1, 1, 0]);
        assert_eq!(holding.slots[..3], [0, 0, 1]);
        let (parts, excess, _) = take(&mut holding, 5, 0);
        assert_eq!((parts[2], parts[UNTRACKED], excess), (1, 4, 4));
    }

    #[test]
    fn proportional_parts_are_exact_on_both_arithmetic_paths() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for round in 0..2000 {
            let scale: i64 = if round % 2 == 0 { 1_000 } else { 1 << 40 };
            let mut holding = Holding::default();
            for slot in &mut holding.slots {
                *slot = if rng.gen_bool(0.7) {
                    rng.gen_range(0..scale)
                } else {
                    0
                };
            }
            let before = holding.slots;
            let balance: i64 = before.iter().sum();
            if balance < 2 {
                continue;
            }
            let amount = rng.gen_range(1..balance);
            let (parts, excess, _) = take(&mut holding, amount, 0);
            assert_eq!((parts.iter().sum::<i64>(), excess), (amount, 0));
            for i in 0..SLOTS {
                assert!(parts[i] >= 0 && parts[i] <= before[i]);
                // Within one minor unit of the exact proportional share.
                let exact = before[i] as f64 * amount as f64 / balance as f64;
                assert!((parts[i] as f64 - exact).abs() < 1.0 + 1e-6 * exact);
            }
        }
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
            programme: None,
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
                programme: None
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
            programme: None,
        })
        .unwrap();
        daily.push(&event(0), &dictionary).unwrap();
        assert_eq!(
            daily.push(&far, &dictionary),
            Err(MeasureError::TooManyPeriods)
        );
    }
}
