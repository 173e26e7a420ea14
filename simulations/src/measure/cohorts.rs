//! LM-n per cohort: the tracked money of one unit followed the way the parent module follows
//! all of it, split by the cohort it belongs to.
//!
//! A cohort is fixed once per unit of money, when the money first gets the attribute:
//!
//! - **area, at issuance**: a tracked deposit's money belongs to the deposit's area;
//! - **category, at first spend**: money belongs to the category of the local holder its
//!   first local transfer paid (generation 0 becomes generation 1 there); money never spent
//!   locally belongs to no category.
//!
//! Every holder keeps, per tracked generation, each cohort's share of that generation's money
//! (shares summing to 1). A payment takes the same fraction of every cohort of a generation
//! (money is fungible, as in the parent's proportional rule), so it leaves the payer's shares
//! as they were; the payee's generation `g + 1` becomes the money-weighted mix of what it held
//! and what arrived. A payment's part `p` of generation `g` counts as `p * share` local
//! spending of each cohort, so the cohorts' spending of a round sums to the unit's `S_g`.
//!
//! The shares are a measure, not money: they are `f64`, and per-cohort spending is real-valued
//! minor units (sums agree with the integer unit totals to floating-point rounding: 2 parts
//! in 10^14 in the benchmark year). Integer shares, split by largest remainder on every payment, cost about
//! 2,000 instructions a payment for three categories; these cost a few hundred. The arithmetic
//! runs in a fixed order, so results are deterministic.
//!
//! While a dimension has seen one cohort, every share is 1 and nothing is stored per holder.
//! From the second cohort on, every holder has a block of one `f64` per generation and cohort,
//! all in one array in holder order (the models visit households in order; blocks scattered
//! over the heap were several times slower): `holders * generations * cohorts * 8` bytes per
//! unit, e.g. 22 MB for 100,000 holders and 3 categories (generation 0 is not kept for
//! categories: that money has no cohort yet).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ROUNDS, SLOTS};
use crate::events::Dictionary;

/// Most cohorts of one dimension; further labels share the last one, reported as
/// [`OTHER_COHORT`].
pub const MAX_COHORTS: usize = 16;
/// Name of the cohort that labels beyond [`MAX_COHORTS`] share.
pub const OTHER_COHORT: &str = "(other)";

/// When money gets its cohort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Assign {
    /// At its deposit, from the deposit's label (areas).
    AtDeposit,
    /// At its first local transfer, from the payee's label (categories).
    AtFirstSpend,
}

/// LM-n of one cohort.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CohortMultiplier {
    /// The money the cohort starts from: tracked deposits in the area (area cohorts), or the
    /// round-2 spending that first reached the category (category cohorts, = `S_0`).
    pub base_minor: f64,
    /// `S_g` of the cohort's money, local spending by generation (index 0 = round 2), in
    /// real-valued minor units.
    pub local_spending_by_round_minor: Vec<f64>,
    /// LM-1 … LM-`ROUNDS`.
    pub lm: Vec<f64>,
    /// LM3.
    pub lm3: Option<f64>,
    /// All rounds.
    pub lm_all: Option<f64>,
}

impl CohortMultiplier {
    /// The multipliers of a cohort with this base and spending. Area cohorts (issuance):
    /// `LM-n = (base + S_0 + … + S_{n-2}) / base`. Category cohorts (first spend, where the
    /// base is `S_0`, the category's income): `LM-n = (S_0 + … + S_{n-1}) / S_0`.
    pub(super) fn new(assign: Assign, base: f64, spend: &[f64; ROUNDS]) -> Self {
        let ratio = |sum: f64| (base > 0.0).then(|| sum / base);
        let (start, offset) = match assign {
            Assign::AtDeposit => (base, 2),
            Assign::AtFirstSpend => (0.0, 1),
        };
        // LM-n adds S_0 … S_{n - offset} to the start.
        let lm_sum = |n: usize| start + spend[..(n + 1).saturating_sub(offset)].iter().sum::<f64>();
        Self {
            base_minor: base,
            local_spending_by_round_minor: spend.to_vec(),
            lm: (1..=ROUNDS)
                .map(|n| ratio(lm_sum(n)).unwrap_or(0.0))
                .collect(),
            lm3: ratio(lm_sum(3)),
            lm_all: ratio(start + spend.iter().sum::<f64>()),
        }
    }
}

/// One cohort dimension of one unit.
pub(super) struct Tracker {
    assign: Assign,
    /// Cohort index + 1 by label id (0: not seen).
    index_by_label: Vec<u16>,
    /// Label id of each cohort; `None` for the shared last one.
    labels: Vec<Option<u32>>,
    /// Each cohort's share of a holder's tracked money of a generation, at
    /// `(h * rows + r) * width + k` for generation `first_generation + r`. Empty while one
    /// cohort has been seen.
    shares: Vec<f64>,
    /// Cohorts a block has room for: all seen (0 while one cohort has been seen).
    width: usize,
    /// Tracked deposits per cohort (assigned at deposit).
    deposits: [i64; MAX_COHORTS],
    /// Local spending by generation and cohort, real-valued minor units.
    spend: [[f64; MAX_COHORTS]; ROUNDS],
    /// The payer's shares during a payment, reused.
    payer: [f64; ROUNDS * MAX_COHORTS],
}

impl Tracker {
    pub(super) fn new(assign: Assign) -> Self {
        Self {
            assign,
            index_by_label: Vec::new(),
            labels: Vec::new(),
            shares: Vec::new(),
            width: 0,
            deposits: [0; MAX_COHORTS],
            spend: [[0.0; MAX_COHORTS]; ROUNDS],
            payer: [0.0; ROUNDS * MAX_COHORTS],
        }
    }

    /// The first generation that has a cohort.
    fn first_generation(&self) -> usize {
        match self.assign {
            Assign::AtDeposit => 0,
            Assign::AtFirstSpend => 1,
        }
    }

    /// Generations kept per holder.
    fn rows(&self) -> usize {
        ROUNDS - self.first_generation()
    }

    fn is_split(&self) -> bool {
        self.labels.len() > 1
    }

    /// The cohort of `label`, made if new.
    pub(super) fn cohort(&mut self, label: u32) -> usize {
        let slot = label as usize;
        if let Some(&index) = self.index_by_label.get(slot)
            && index > 0
        {
            return usize::from(index) - 1;
        }
        let index = if self.labels.len() < MAX_COHORTS {
            self.widen();
            self.labels.push(Some(label));
            self.labels.len() - 1
        } else {
            self.labels[MAX_COHORTS - 1] = None;
            MAX_COHORTS - 1
        };
        if self.index_by_label.len() <= slot {
            self.index_by_label.resize(slot + 1, 0);
        }
        // At most MAX_COHORTS, so it fits.
        self.index_by_label[slot] = (index + 1) as u16;
        index
    }

    /// Makes room in every block for one more cohort (a rewrite at most MAX_COHORTS times,
    /// and blocks stay as small as they can be). At the second cohort, every share so far is
    /// the first one's: 1.
    fn widen(&mut self) {
        match self.labels.len() {
            0 => {}
            1 => self.width = 2,
            cohorts => {
                let (old, width) = (cohorts, cohorts + 1);
                let mut shares = vec![0.0; self.shares.len() / old * width];
                for (from, to) in self
                    .shares
                    .chunks_exact(old)
                    .zip(shares.chunks_exact_mut(width))
                {
                    to[..old].copy_from_slice(from);
                }
                self.shares = shares;
                self.width = width;
            }
        }
    }

    /// Holder `id`'s shares in `shares` (`rows` generations of `width` cohorts). A holder not
    /// stored yet gets the first cohort's: it has held no money since the split, or it holds
    /// money from before, which was all the first cohort's.
    fn block(shares: &mut Vec<f64>, rows: usize, width: usize, id: u32) -> &mut [f64] {
        let stride = rows * width;
        let start = id as usize * stride;
        if shares.len() < start + stride {
            let mut first = vec![0.0; width];
            first[0] = 1.0;
            let missing = (start + stride - shares.len()) / width;
            for _ in 0..missing {
                shares.extend_from_slice(&first);
            }
        }
        &mut shares[start..start + stride]
    }

    /// A tracked deposit of `amount` to `holder` in `cohort` (from [`Tracker::cohort`]); the
    /// holder had `held` of generation 0 before it.
    pub(super) fn deposit(&mut self, holder: u32, cohort: usize, amount: i64, held: i64) {
        self.deposits[cohort] += amount;
        if self.is_split() {
            let (rows, width) = (self.rows(), self.width);
            let row = &mut Self::block(&mut self.shares, rows, width, holder)[..width];
            mix_in_cohort(row, held, amount, cohort);
        }
    }

    /// A payment took `parts` (by generation) of the payer's money. `payee` is, when it is
    /// local, the payee, its label's cohort (from [`Tracker::cohort`]) and its slots before
    /// the payment: the money moves one generation on there, and money without a cohort yet
    /// (assigned at first spend) joins the payee's. When it is not local the money leaves,
    /// and the payer's shares are as they were either way.
    pub(super) fn transfer(
        &mut self,
        payer: u32,
        payee: Option<(u32, usize, &[i64; SLOTS])>,
        parts: &[i64; SLOTS],
    ) {
        let Some((payee, payee_cohort, held)) = payee else {
            return;
        };
        let first = self.first_generation();
        let mut held = *held;
        if first == 1 && parts[0] > 0 {
            // Generation 0 money gets its cohort.
            self.spend[0][payee_cohort] += parts[0] as f64;
            if self.is_split() {
                let (rows, width) = (self.rows(), self.width);
                let block = Self::block(&mut self.shares, rows, width, payee);
                mix_in_cohort(&mut block[..width], held[1], parts[0], payee_cohort);
            }
            held[1] += parts[0];
        }
        if !self.is_split() {
            // One cohort (or none yet): all tracked money is its money.
            if !self.labels.is_empty() {
                for (spend, &part) in self.spend.iter_mut().zip(parts).skip(first) {
                    spend[0] += part as f64;
                }
            }
            return;
        }
        let (rows, width) = (self.rows(), self.width);
        let (from, to) = Self::blocks(
            &mut self.shares,
            &mut self.payer,
            (rows, width),
            (payer, payee),
        );
        for (g, &part) in parts.iter().enumerate().take(ROUNDS).skip(first) {
            if part == 0 {
                continue;
            }
            let row = g - first;
            let from = &from[row * width..(row + 1) * width];
            let spend = &mut self.spend[g][..width];
            let amount = part as f64;
            for k in 0..width {
                spend[k] += amount * from[k];
            }
            let next = (g + 1).min(ROUNDS - 1);
            held[next] += part;
            let into = &mut to[(next - first) * width..(next - first + 1) * width];
            // The arriving money's weight in the mix; the shares move toward the payer's.
            let weight = amount / held[next] as f64;
            for k in 0..width {
                into[k] += (from[k] - into[k]) * weight;
            }
        }
    }

    /// In `shares`, the payer's block to read and the payee's to change; `scratch` holds a
    /// copy of the payer's when they are the same holder.
    fn blocks<'a>(
        shares: &'a mut Vec<f64>,
        scratch: &'a mut [f64],
        (rows, width): (usize, usize),
        (payer, payee): (u32, u32),
    ) -> (&'a [f64], &'a mut [f64]) {
        let stride = rows * width;
        // Both blocks exist once the later one does.
        Self::block(shares, rows, width, payer.max(payee));
        let (payer, payee) = (payer as usize * stride, payee as usize * stride);
        if payer < payee {
            let (before, after) = shares.split_at_mut(payee);
            (&before[payer..payer + stride], &mut after[..stride])
        } else if payer > payee {
            let (before, after) = shares.split_at_mut(payer);
            (&after[..stride], &mut before[payee..payee + stride])
        } else {
            // Paying oneself (the stream formats refuse it; a caller might not).
            scratch[..stride].copy_from_slice(&shares[payer..payer + stride]);
            (&scratch[..stride], &mut shares[payee..payee + stride])
        }
    }

    /// The cohorts that saw money, by label text.
    pub(super) fn report(&self, dictionary: &Dictionary) -> BTreeMap<String, CohortMultiplier> {
        self.totals_by_name(dictionary)
            .filter(|(_, (base, spend))| *base != 0.0 || spend.iter().any(|&s| s != 0.0))
            .map(|(name, (base, spend))| (name, CohortMultiplier::new(self.assign, base, &spend)))
            .collect()
    }

    /// Base and spending of cohort `index`.
    fn totals(&self, index: usize) -> (f64, [f64; ROUNDS]) {
        let spend = self.spend.map(|round| round[index]);
        let base = match self.assign {
            Assign::AtDeposit => self.deposits[index] as f64,
            Assign::AtFirstSpend => spend[0],
        };
        (base, spend)
    }

    /// Base and spending by label text, for adding up over units.
    pub(super) fn totals_by_name<'a>(
        &'a self,
        dictionary: &'a Dictionary,
    ) -> impl Iterator<Item = (String, (f64, [f64; ROUNDS]))> + 'a {
        self.labels.iter().enumerate().map(move |(index, label)| {
            let name = label.map_or(OTHER_COHORT, |l| dictionary.label_text(l));
            (name.to_owned(), self.totals(index))
        })
    }

    /// The assign rule.
    pub(super) fn assign(&self) -> Assign {
        self.assign
    }

    /// Every stored holder's shares of every generation sum to 1 (for tests).
    #[cfg(test)]
    pub(super) fn shares_sum_to_one(&self) -> bool {
        self.width == 0
            || self
                .shares
                .chunks_exact(self.width)
                .all(|row| (row.iter().sum::<f64>() - 1.0).abs() < 1e-9)
    }
}

/// Mixes `amount` of cohort `cohort` into a generation holding `held` with these shares.
fn mix_in_cohort(row: &mut [f64], held: i64, amount: i64, cohort: usize) {
    let weight = amount as f64 / (held + amount) as f64;
    for (k, share) in row.iter_mut().enumerate() {
        let arriving = if k == cohort { 1.0 } else { 0.0 };
        *share += (arriving - *share) * weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_paying_itself_keeps_its_shares() {
        let mut tracker = Tracker::new(Assign::AtDeposit);
        let (north, south) = (tracker.cohort(1), tracker.cohort(2));
        tracker.deposit(0, north, 300, 0);
        tracker.deposit(0, south, 100, 300);
        // 200 of generation 0 paid to itself: it held 200 then, and gains generation 1.
        let mut parts = [0i64; SLOTS];
        parts[0] = 200;
        let mut held = [0i64; SLOTS];
        held[0] = 200;
        tracker.transfer(0, Some((0, 0, &held)), &parts);
        assert_eq!(
            (tracker.spend[0][north], tracker.spend[0][south]),
            (150.0, 50.0)
        );
        let block = Tracker::block(&mut tracker.shares, ROUNDS, 2, 0);
        assert_eq!(block[..4], [0.75, 0.25, 0.75, 0.25]);
        assert!(tracker.shares_sum_to_one());
    }
}
