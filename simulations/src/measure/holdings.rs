//! Every holder's balance of one unit, split by generation (see the parent module), and the
//! proportional arithmetic on it.
//!
//! Measuring touches two holders per event, spread over every participant of the stream, so
//! the balances are stored compactly: 56 bytes per holder while every generation fits 32 bits
//! (where the arithmetic's 96-byte form would cross two cache lines), with larger balances in
//! a side table. Storage never changes a value: `get` returns exactly what `set` was given.

use super::{ROUNDS, SLOTS, UNTRACKED};

/// One holder's balance by generation, in the form the arithmetic works on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Holding {
    /// Minor units by generation; the last slot is untracked money. Never negative.
    pub slots: [i64; SLOTS],
    /// Money-weighted mean arrival time of the balance, seconds since the origin. A float:
    /// it only feeds the reported holding time, never a balance.
    pub arrival_mean_s: f64,
}

/// A [`Holding`] as stored.
#[derive(Clone, Copy, Default)]
struct Stored {
    /// The slots, while every one fits 32 bits.
    narrow: [u32; SLOTS],
    /// 0 while the slots are `narrow`; else 1 + their index in [`Holdings::wide`].
    wide: u32,
    arrival_mean_s: f64,
}

/// The holdings of one unit, indexed by participant id; a holder never seen holds nothing.
#[derive(Default)]
pub(super) struct Holdings {
    stored: Vec<Stored>,
    wide: Vec<[i64; SLOTS]>,
    /// Indexes of `wide` no holder uses.
    free: Vec<u32>,
}

impl Holdings {
    /// The holding of participant `id`.
    pub fn get(&self, id: u32) -> Holding {
        let Some(stored) = self.stored.get(id as usize) else {
            return Holding::default();
        };
        let slots = match stored.wide {
            0 => stored.narrow.map(i64::from),
            k => self.wide[k as usize - 1],
        };
        Holding {
            slots,
            arrival_mean_s: stored.arrival_mean_s,
        }
    }

    /// Stores the holding of participant `id`.
    pub fn set(&mut self, id: u32, holding: &Holding) {
        let index = id as usize;
        if self.stored.len() <= index {
            self.stored.resize(index + 1, Stored::default());
        }
        let stored = &mut self.stored[index];
        stored.arrival_mean_s = holding.arrival_mean_s;
        let high = holding.slots.iter().fold(0, |bits, &s| bits | s as u64) >> 32;
        if high == 0 {
            stored.narrow = holding.slots.map(|s| s as u32);
            if stored.wide != 0 {
                self.free.push(stored.wide - 1);
                stored.wide = 0;
            }
            return;
        }
        if stored.wide == 0 {
            let slot = match self.free.pop() {
                Some(free) => free,
                None => {
                    self.wide.push([0; SLOTS]);
                    // Fewer wide holdings than holders, and holder ids are u32.
                    (self.wide.len() - 1) as u32
                }
            };
            stored.wide = slot + 1;
        }
        self.wide[stored.wide as usize - 1] = holding.slots;
    }

    /// Every holding, by participant id.
    pub fn iter(&self) -> impl Iterator<Item = Holding> + '_ {
        (0..self.stored.len()).map(|id| self.get(id as u32))
    }
}

/// Takes `amount` out of `holding` in proportion to its generations (largest remainder),
/// returning the parts, how much of `amount` exceeded the balance (returned as untracked), and
/// the money-seconds the taken money was held.
pub(super) fn take(holding: &mut Holding, amount: i64, now: i64) -> ([i64; SLOTS], i64, f64) {
    let balance: i64 = holding.slots.iter().sum();
    if balance <= amount {
        let mut parts = holding.slots;
        let excess = amount - balance;
        parts[UNTRACKED] += excess;
        let held = balance as f64 * (now as f64 - holding.arrival_mean_s);
        *holding = Holding::default();
        return (parts, excess, held);
    }
    let parts = if balance <= NARROW_BALANCE_MAX {
        split_narrow(&holding.slots, amount, balance)
    } else {
        split_wide(&holding.slots, amount, balance)
    };
    for (slot, part) in holding.slots.iter_mut().zip(parts) {
        // 0 <= part <= slot: cannot overflow.
        *slot = slot.wrapping_sub(part);
    }
    (
        parts,
        0,
        amount as f64 * (now as f64 - holding.arrival_mean_s),
    )
}

/// Largest balance [`split_narrow`] takes: its products `slot * amount` stay below 2^62 and
/// its remainders below 2^31, so a remainder and its slot index pack into one `u64` key.
const NARROW_BALANCE_MAX: i64 = 1 << 31;

/// The largest-remainder split of `amount` (`0 < amount < balance <= 2^31`) over `slots`
/// (which sum to `balance`): slot `i` gets `floor(slots[i] * amount / balance)`, and the minor
/// units left over go one each to the largest remainders, the lower slot first on a tie.
///
/// Measuring spends most of its time here, so the quotients come from one division per call:
/// with `r = floor((2^64 - 1) / balance)`, `floor(product * r / 2^64)` is the exact quotient
/// or one less (the error is below `product * 2 / 2^64 < 1/2`), and one step corrects it. It
/// gives the same parts as [`split_wide`]; `split_narrow_matches_the_reference_split` checks.
fn split_narrow(slots: &[i64; SLOTS], amount: i64, balance: i64) -> [i64; SLOTS] {
    debug_assert!(0 < amount && amount < balance && balance <= NARROW_BALANCE_MAX);
    let (amount, balance) = (amount as u64, balance as u64);
    let reciprocal = u64::MAX / balance;
    let mut parts = [0i64; SLOTS];
    // Remainder in the high bits, then 15 - slot: the largest key is the largest remainder,
    // the lowest slot among equals. Every key is at least 15 - ROUNDS > 0.
    let mut keys = [0u64; SLOTS];
    let mut given = 0u64;
    for i in 0..SLOTS {
        // No step can overflow (product < 2^62, estimate * balance <= product, quotient <=
        // amount < 2^31); wrapping arithmetic only spares the checks in this hot loop.
        let product = (slots[i] as u64).wrapping_mul(amount);
        let estimate = ((u128::from(product) * u128::from(reciprocal)) >> 64) as u64;
        let remainder = product.wrapping_sub(estimate.wrapping_mul(balance));
        let short = u64::from(remainder >= balance);
        let quotient = estimate.wrapping_add(short);
        parts[i] = quotient as i64;
        keys[i] = (remainder.wrapping_sub(short.wrapping_mul(balance)) << 4) | (15 - i) as u64;
        given = given.wrapping_add(quotient);
    }
    // The remainders sum to (amount - given) * balance, each below balance, so at least that
    // many are positive: only those are ever picked.
    for _ in given..amount {
        let best = largest(&keys);
        let i = 15 - (best & 15) as usize;
        parts[i] += 1;
        keys[i] = 0;
    }
    parts
}

/// The largest key, by a tree of pairwise maxima: which key wins is data, not pattern, so
/// branches would be mispredicted, and a tree keeps the compare-and-moves short and parallel.
fn largest(keys: &[u64; SLOTS]) -> u64 {
    let mut level = [0u64; 16];
    level[..SLOTS].copy_from_slice(keys);
    let mut width = level.len();
    while width > 1 {
        width /= 2;
        for i in 0..width {
            level[i] = level[i].max(level[i + width]);
        }
    }
    level[0]
}

/// [`split_narrow`] for any balance, in 128-bit arithmetic.
fn split_wide(slots: &[i64; SLOTS], amount: i64, balance: i64) -> [i64; SLOTS] {
    let mut parts = [0i64; SLOTS];
    let mut remainders = [0i64; SLOTS];
    let mut given = 0;
    for (i, &slot) in slots.iter().enumerate() {
        let product = i128::from(slot) * i128::from(amount);
        parts[i] = (product / i128::from(balance)) as i64;
        // Below `balance`, so it fits.
        remainders[i] = (product % i128::from(balance)) as i64;
        given += parts[i];
    }
    // As in `split_narrow`: each left-over unit goes to the largest remainder left.
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
    parts
}

/// Adds `parts` to `totals`, both non-negative, in place. Called for every transfer, so it adds
/// without per-element checks, yet still refuses to wrap: a sum of non-negative numbers
/// overflowed exactly when it turned negative.
pub(super) fn add_non_negative<const N: usize>(totals: &mut [i64; N], parts: &[i64; N]) {
    let mut signs = 0;
    for (total, &part) in totals.iter_mut().zip(parts) {
        *total = total.wrapping_add(part);
        signs |= *total;
    }
    assert!(signs >= 0, "a money total overflowed i64");
}

/// [`add_non_negative`] of the tracked generations of `parts` to round totals.
pub(super) fn add_rounds(totals: &mut [i64; ROUNDS], parts: &[i64; SLOTS]) {
    let mut rounds = [0i64; ROUNDS];
    rounds.copy_from_slice(&parts[..ROUNDS]);
    add_non_negative(totals, &rounds);
}

/// Moves the mean arrival time for `amount` arriving at `now` (before it joins the slots).
pub(super) fn receive(holding: &mut Holding, amount: i64, now: i64) {
    let balance: i64 = holding.slots.iter().sum();
    let weight = amount as f64 / (balance as f64 + amount as f64);
    holding.arrival_mean_s += (now as f64 - holding.arrival_mean_s) * weight;
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

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

    /// The split as first written (exact 128-bit quotients; each left-over unit to the first
    /// largest remainder, scanning all slots): the fast paths must give the same parts, which
    /// is what keeps every measure unchanged.
    fn reference_split(slots: &[i64; SLOTS], amount: i64) -> [i64; SLOTS] {
        let balance: i64 = slots.iter().sum();
        let mut parts = [0i64; SLOTS];
        let mut remainders = [0i128; SLOTS];
        for i in 0..SLOTS {
            let product = i128::from(slots[i]) * i128::from(amount);
            parts[i] = (product / i128::from(balance)) as i64;
            remainders[i] = product % i128::from(balance);
        }
        for _ in parts.iter().sum::<i64>()..amount {
            let mut best = 0;
            for i in 1..SLOTS {
                if remainders[i] > remainders[best] {
                    best = i;
                }
            }
            parts[best] += 1;
            remainders[best] = -1;
        }
        parts
    }

    #[test]
    fn split_narrow_matches_the_reference_split() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        // Small slots make ties between remainders common; large ones use every bit.
        for scale in [4i64, 100, 1 << 20, NARROW_BALANCE_MAX / 11] {
            for _ in 0..20_000 {
                let mut slots = [0i64; SLOTS];
                for slot in &mut slots {
                    if rng.gen_bool(0.8) {
                        *slot = rng.gen_range(0..=scale);
                    }
                }
                let balance: i64 = slots.iter().sum();
                if balance < 2 {
                    continue;
                }
                let amount = rng.gen_range(1..balance);
                let expected = reference_split(&slots, amount);
                assert_eq!(
                    split_narrow(&slots, amount, balance),
                    expected,
                    "{slots:?} {amount}"
                );
                assert_eq!(split_wide(&slots, amount, balance), expected);
            }
        }
    }

    #[test]
    fn holdings_store_exactly_what_they_are_given() {
        let mut holdings = Holdings::default();
        assert_eq!(holdings.get(7), Holding::default());
        let narrow = Holding {
            slots: [1, 2, 3, 0, 0, 0, 0, 0, 0, 0, i64::from(u32::MAX)],
            arrival_mean_s: 12.5,
        };
        let wide = Holding {
            slots: [1 << 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 << 52],
            arrival_mean_s: -3.0,
        };
        holdings.set(3, &narrow);
        holdings.set(5, &wide);
        holdings.set(6, &wide);
        assert_eq!(
            (holdings.get(3), holdings.get(5), holdings.get(6)),
            (narrow, wide, wide)
        );
        // Back to narrow frees the side slot, which the next wide holding reuses.
        holdings.set(5, &narrow);
        holdings.set(0, &wide);
        assert_eq!(holdings.wide.len(), 2);
        assert_eq!((holdings.get(5), holdings.get(0)), (narrow, wide));
        assert_eq!(holdings.iter().count(), 7);
    }
}
