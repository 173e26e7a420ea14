//! The models' ledger: integer balances per participant and unit, moves that can never make a
//! balance negative, conservation checked at the end, and every move emitted as an [`Event`].

use crate::events::{Dictionary, Event, ParticipantKind, Reason, check_roles};

/// Where a model's events go (a measurer, a file writer, or both).
pub type Sink<'a> = dyn FnMut(&Event) + 'a;

/// A money move a model asked for that the book refuses; a model bug, never user input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BookError {
    /// The payer does not hold enough.
    #[error("participant {participant} holds {available} of unit {unit}, asked to pay {requested}")]
    Insufficient {
        /// Payer id.
        participant: u32,
        /// Unit id.
        unit: u16,
        /// Its balance.
        available: i64,
        /// The amount asked.
        requested: i64,
    },
    /// Balances do not sum to deposits minus withdrawals.
    #[error("unit {unit}: balances {balances} != deposits {deposits} - withdrawals {withdrawals}")]
    NotConserved {
        /// Unit id.
        unit: u16,
        /// Sum of balances.
        balances: i64,
        /// Deposits.
        deposits: i64,
        /// Withdrawals.
        withdrawals: i64,
    },
}

/// Totals of one unit, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitTotals {
    /// Money in.
    pub deposits_minor: i64,
    /// Money moved between holders.
    pub transfers_minor: i64,
    /// Money out.
    pub withdrawals_minor: i64,
    /// Money held at the end (deposits - withdrawals).
    pub held_minor: i64,
    /// Events emitted.
    pub events: u64,
}

/// Balances of every participant in every unit of a [`Dictionary`].
pub struct Book {
    units: usize,
    balances: Vec<i64>,
    totals: Vec<UnitTotals>,
    time_s: i64,
    programme: u32,
    /// Area label id per participant (0 = none).
    areas: Vec<u32>,
    /// Kind per participant, copied from the dictionary: one byte each, so the check on
    /// every post stays in cache (the dictionary's records are 24 bytes).
    kinds: Vec<ParticipantKind>,
}

impl Book {
    /// A book of zero balances for the participants and units already in `dictionary` (the
    /// only ones it can move money between).
    pub fn new(dictionary: &Dictionary) -> Self {
        let units = dictionary.units().len();
        Self {
            units,
            balances: vec![0; units * dictionary.participants().len()],
            totals: vec![UnitTotals::default(); units],
            time_s: 0,
            programme: 0,
            areas: vec![0; dictionary.participants().len()],
            kinds: dictionary.participants().iter().map(|p| p.kind).collect(),
        }
    }

    /// Sets the time stamped on the next events (must not go backwards).
    pub fn set_time(&mut self, time_s: i64) {
        assert!(time_s >= self.time_s || self.totals.iter().all(|t| t.events == 0));
        self.time_s = time_s;
    }

    /// The time stamped on the next events.
    pub fn time_s(&self) -> i64 {
        self.time_s
    }

    /// Sets the programme label stamped on deposits.
    pub fn set_programme(&mut self, label: u32) {
        self.programme = label;
    }

    /// Places a participant in an area (a label id). An event is stamped with the area of its
    /// local end: the payee when it is local, else the payer.
    pub fn set_area(&mut self, participant: u32, label: u32) {
        self.areas[participant as usize] = label;
    }

    /// The balance of a participant in a unit.
    pub fn balance(&self, participant: u32, unit: u16) -> i64 {
        self.balances[participant as usize * self.units + usize::from(unit)]
    }

    /// Moves `amount` (skipped when zero) and emits the event; the reason decides the kind.
    pub fn post(
        &mut self,
        sink: &mut Sink<'_>,
        reason: Reason,
        (source, target): (u32, u32),
        unit: u16,
        amount: i64,
    ) -> Result<(), BookError> {
        if amount == 0 {
            return Ok(());
        }
        assert!(amount > 0, "models post positive amounts");
        let kind = reason.kind();
        let source_kind = self.kinds[source as usize];
        let target_kind = self.kinds[target as usize];
        assert!(
            check_roles(kind, source_kind, target_kind).is_ok(),
            "model posted a {reason:?} between wrong roles"
        );
        let u = usize::from(unit);
        if source_kind.is_holder() {
            let index = source as usize * self.units + u;
            let available = self.balances[index];
            if available < amount {
                return Err(BookError::Insufficient {
                    participant: source,
                    unit,
                    available,
                    requested: amount,
                });
            }
            self.balances[index] = available - amount;
        }
        if target_kind.is_holder() {
            self.balances[target as usize * self.units + u] += amount;
        }
        let totals = &mut self.totals[u];
        match kind {
            crate::events::EventKind::Deposit => totals.deposits_minor += amount,
            crate::events::EventKind::Transfer => totals.transfers_minor += amount,
            crate::events::EventKind::Withdraw => totals.withdrawals_minor += amount,
        }
        totals.events += 1;
        let programme = if kind == crate::events::EventKind::Deposit {
            self.programme
        } else {
            0
        };
        sink(&Event {
            time_s: self.time_s,
            reason,
            source,
            target,
            amount_minor: amount,
            unit,
            programme,
            area: if target_kind.is_local() {
                self.areas[target as usize]
            } else {
                self.areas[source as usize]
            },
        });
        Ok(())
    }

    /// Checks conservation per unit (deposits = balances + withdrawals) and returns totals.
    pub fn finish(mut self) -> Result<Vec<UnitTotals>, BookError> {
        for u in 0..self.units {
            let balances: i64 = self.balances.iter().skip(u).step_by(self.units).sum();
            let totals = &mut self.totals[u];
            totals.held_minor = balances;
            if balances != totals.deposits_minor - totals.withdrawals_minor {
                return Err(BookError::NotConserved {
                    unit: u16::try_from(u).unwrap_or(u16::MAX),
                    balances,
                    deposits: totals.deposits_minor,
                    withdrawals: totals.withdrawals_minor,
                });
            }
        }
        Ok(self.totals)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn posts_move_money_and_overdrafts_are_refused() {
        let mut d = Dictionary::new();
        let issuer = d.participant("city", ParticipantKind::Issuer, "").unwrap();
        let h = d.participant("h", ParticipantKind::Household, "").unwrap();
        let m = d.participant("m", ParticipantKind::Merchant, "").unwrap();
        let sys = d.participant("clear", ParticipantKind::System, "").unwrap();
        let unit = d.unit("U").unwrap();
        let mut book = Book::new(&d);
        let mut events = Vec::new();
        let mut sink = |e: &Event| events.push(*e);
        book.post(&mut sink, Reason::Issuance, (issuer, h), unit, 500)
            .unwrap();
        book.post(&mut sink, Reason::Payment, (h, m), unit, 300)
            .unwrap();
        book.post(&mut sink, Reason::Payment, (h, m), unit, 0)
            .unwrap();
        assert_eq!(
            book.post(&mut sink, Reason::Payment, (h, m), unit, 201),
            Err(BookError::Insufficient {
                participant: h,
                unit,
                available: 200,
                requested: 201
            })
        );
        book.post(&mut sink, Reason::Redemption, (m, sys), unit, 300)
            .unwrap();
        assert_eq!((book.balance(h, unit), book.balance(m, unit)), (200, 0));
        let totals = book.finish().unwrap();
        assert_eq!(totals[0].held_minor, 200);
        assert_eq!(totals[0].events, 3);
        assert_eq!(events.len(), 3);
    }
}
