//! A household's dated lots of local units, oldest first, for the agent model's expiry rule.
//!
//! The model looks at every household's lots every day (expiry) and on every shopping trip
//! (units due soon, units spent), so the first [`INLINE`] lots sit in one 64-byte cache line
//! per household, stored in household order; only a household holding more lots than that
//! spills the newer ones to a queue on the heap. Lots expire in the order they were added
//! (each is dated `day + expiry_days`), and a lot with the same expiry day as the newest one
//! joins it: spending oldest first, the sums due and the sums expiring are the same either way.

use std::collections::VecDeque;

/// Lots held in line before the rest spill to the heap.
pub const INLINE: usize = 4;

/// Dated lots (expiry day, amount in minor units), oldest first; amounts are positive.
#[derive(Clone, Debug, Default)]
#[repr(align(64))]
pub struct Lots {
    amounts: [i64; INLINE],
    expires: [u32; INLINE],
    /// Lots in line, at the front of the order.
    len: u8,
    /// The newer lots once the line is full (never non-empty while the line has room). Boxed:
    /// a `VecDeque` takes 32 bytes in line, a box 8, and the struct must fit 64.
    #[allow(clippy::box_collection)]
    spill: Option<Box<VecDeque<(u32, i64)>>>,
}

impl Lots {
    /// Adds `amount` (skipped when not positive) expiring on `expires`, which must not be
    /// before the newest lot's day.
    pub fn push(&mut self, expires: u32, amount: i64) {
        if amount <= 0 {
            return;
        }
        if let Some(spill) = self.spill.as_mut().filter(|s| !s.is_empty()) {
            match spill.back_mut() {
                Some(back) if back.0 == expires => back.1 += amount,
                _ => spill.push_back((expires, amount)),
            }
            return;
        }
        let len = usize::from(self.len);
        if len > 0 && self.expires[len - 1] == expires {
            self.amounts[len - 1] += amount;
        } else if len < INLINE {
            self.expires[len] = expires;
            self.amounts[len] = amount;
            self.len += 1;
        } else {
            self.spill
                .get_or_insert_with(Box::default)
                .push_back((expires, amount));
        }
    }

    /// The sum of the oldest lots expiring on or before `day`.
    pub fn due_by(&self, day: u32) -> i64 {
        let mut due = 0;
        for i in 0..usize::from(self.len) {
            if self.expires[i] > day {
                return due;
            }
            due += self.amounts[i];
        }
        if let Some(spill) = &self.spill {
            due += spill
                .iter()
                .take_while(|lot| lot.0 <= day)
                .map(|lot| lot.1)
                .sum::<i64>();
        }
        due
    }

    /// Takes `amount` out, oldest lots first (as far as the lots go).
    pub fn consume(&mut self, mut amount: i64) {
        while amount > 0 && self.len > 0 {
            let used = self.amounts[0].min(amount);
            self.amounts[0] -= used;
            amount -= used;
            if self.amounts[0] == 0 {
                self.pop_front();
            }
        }
    }

    /// Removes the lots expiring on or before `day`, returning their sum.
    pub fn expire_by(&mut self, day: u32) -> i64 {
        let mut expired = 0;
        while self.len > 0 && self.expires[0] <= day {
            expired += self.amounts[0];
            self.pop_front();
        }
        expired
    }

    fn pop_front(&mut self) {
        let len = usize::from(self.len);
        self.expires.copy_within(1..len, 0);
        self.amounts.copy_within(1..len, 0);
        match self.spill.as_mut().and_then(|s| s.pop_front()) {
            Some((expires, amount)) => {
                self.expires[len - 1] = expires;
                self.amounts[len - 1] = amount;
            }
            None => self.len -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn lots_fit_one_cache_line() {
        assert_eq!(std::mem::size_of::<Lots>(), 64);
    }

    /// The plain queue the model used before: every operation must give the same sums.
    #[test]
    fn lots_behave_like_a_plain_queue_of_lots() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..200 {
            let (mut lots, mut queue) = (Lots::default(), VecDeque::<(u32, i64)>::new());
            let mut day = 0u32;
            for _ in 0..300 {
                day += rng.gen_range(0..3);
                match rng.gen_range(0..4) {
                    0 | 1 => {
                        let expires = day + 10;
                        let amount = rng.gen_range(0..50);
                        lots.push(expires, amount);
                        if amount > 0 {
                            queue.push_back((expires, amount));
                        }
                    }
                    2 => {
                        let amount = rng.gen_range(0..80);
                        lots.consume(amount);
                        let mut left = amount;
                        while left > 0 {
                            let Some(front) = queue.front_mut() else {
                                break;
                            };
                            let used = front.1.min(left);
                            front.1 -= used;
                            left -= used;
                            if front.1 == 0 {
                                queue.pop_front();
                            }
                        }
                    }
                    _ => {
                        let mut expired = 0;
                        while let Some(&(expires, amount)) = queue.front() {
                            if expires > day {
                                break;
                            }
                            expired += amount;
                            queue.pop_front();
                        }
                        assert_eq!(lots.expire_by(day), expired);
                    }
                }
                let rush = day + rng.gen_range(0..12);
                let due: i64 = queue
                    .iter()
                    .take_while(|lot| lot.0 <= rush)
                    .map(|lot| lot.1)
                    .sum();
                assert_eq!(lots.due_by(rush), due);
                let total: i64 = queue.iter().map(|lot| lot.1).sum();
                assert_eq!(lots.due_by(u32::MAX), total);
            }
        }
    }
}
