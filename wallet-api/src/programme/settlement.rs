//! Merchant redemptions per period: the settlement report (CSV) and the SEPA credit-transfer
//! file (pain.001.001.09) the municipality's bank pays them with. Figures come from the
//! journal: `redeem` entries of the programme's unit crediting its clearing and fee accounts.

use ledger::policy::days_from_civil;
use ledger::{Amount, ParticipantId};
use sha2::{Digest as _, Sha256};

use super::service::{ProgrammeError, Programmes, invalid};
use crate::redemption::pain001::{
    CreditTransferFile, Debtor, Transfer, needs_bic, pain001_xml, require_sepa,
};
use crate::redemption::settlement::{Period, SettlementFigures, SettlementRow, settlement_csv};
use crate::redemption::{Date, UtcDateTime};

const DAY_MS: i64 = 86_400_000;

/// One merchant's redemptions in a period, with what a bank transfer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerchantSettlement {
    /// The merchant.
    pub merchant: ParticipantId,
    /// Its name.
    pub name: String,
    /// Its IBAN, if registered.
    pub iban: Option<String>,
    /// The name its bank account is held in, if not `name`.
    pub account_holder: Option<String>,
    /// Its bank's BIC, if registered.
    pub bic: Option<String>,
    /// Redemption entries.
    pub redemptions: u64,
    /// Units redeemed, minor units.
    pub gross_minor: i64,
    /// Fee kept, minor units.
    pub fee_minor: i64,
}

/// Parses `YYYY-MM-DD`, naming `field` in the error.
pub fn parse_date(field: &str, text: &str) -> Result<Date, ProgrammeError> {
    let bad = || invalid(field, format!("{text:?} is not a date; write YYYY-MM-DD"));
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad());
    }
    let year: i32 = text[..4].parse().map_err(|_| bad())?;
    let month: u8 = text[5..7].parse().map_err(|_| bad())?;
    let day: u8 = text[8..].parse().map_err(|_| bad())?;
    Date::new(year, month, day).map_err(|e| invalid(field, e.to_string()))
}

/// How long after a period ends its bank file may be made: longer than any redemption takes
/// from submission to commit.
pub const SETTLEMENT_GRACE_MS: i64 = 15 * 60 * 1000;

/// The day after a stored `YYYY-MM-DD`.
fn day_after(text: &str) -> Result<Date, ProgrammeError> {
    let day = parse_date("settled period", text)
        .map_err(|e| ProgrammeError::Internal(format!("a stored settlement period: {e}")))?;
    UtcDateTime::from_unix_s(start_ms(day).saturating_add(DAY_MS).div_euclid(1000))
        .map(|t| t.date)
        .map_err(|e| ProgrammeError::Internal(e.to_string()))
}

fn start_ms(date: Date) -> i64 {
    days_from_civil(
        i64::from(date.year()),
        u32::from(date.month()),
        u32::from(date.day()),
    )
    .saturating_mul(DAY_MS)
}

impl Programmes {
    /// Each merchant's redemptions from `start` to `end` (whole UTC days, both included).
    pub async fn settlement(
        &self,
        programme_id: ledger::ProgrammeId,
        start: Date,
        end: Date,
    ) -> Result<Vec<MerchantSettlement>, ProgrammeError> {
        Period::new(start, end).map_err(|e| invalid("to", e.to_string()))?;
        let programme = self.get(programme_id).await?;
        let totals = self
            .db
            .redemption_totals(
                programme.unit,
                programme.accounts.clearing,
                programme.accounts.fees,
                start_ms(start),
                start_ms(end).saturating_add(DAY_MS),
            )
            .await?;
        let mut lines = Vec::with_capacity(totals.len());
        for (account, redemptions, gross_minor, fee_minor) in totals {
            let owner = self
                .committer
                .view()
                .read()
                .account(account)
                .and_then(|a| a.owner);
            let Some(merchant) = owner else {
                return Err(ProgrammeError::Conflict(format!(
                    "redeeming account {account} belongs to no participant"
                )));
            };
            let participant = self
                .db
                .participant(merchant)
                .await?
                .ok_or_else(|| ProgrammeError::NotFound(format!("participant {merchant}")))?;
            lines.push(MerchantSettlement {
                merchant,
                name: participant.name,
                iban: participant.iban,
                account_holder: participant.account_holder,
                bic: participant.bic,
                redemptions: u64::try_from(redemptions).unwrap_or(0),
                gross_minor,
                fee_minor,
            });
        }
        lines.sort_by(|a, b| a.name.cmp(&b.name).then(a.merchant.cmp(&b.merchant)));
        Ok(lines)
    }

    /// The settlement report as CSV.
    pub async fn settlement_csv(
        &self,
        programme_id: ledger::ProgrammeId,
        start: Date,
        end: Date,
    ) -> Result<String, ProgrammeError> {
        let programme = self.get(programme_id).await?;
        let period = Period::new(start, end).map_err(|e| invalid("to", e.to_string()))?;
        let scale = self.unit_scale(programme.unit)?;
        let rows = self
            .settlement(programme_id, start, end)
            .await?
            .into_iter()
            .map(|m| {
                let figures = SettlementFigures {
                    redemptions: m.redemptions,
                    gross: amount(m.gross_minor)?,
                    fee: amount(m.fee_minor)?,
                };
                SettlementRow::new(m.merchant, &m.name, period, programme.unit, scale, figures)
                    .map_err(|e| ProgrammeError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(settlement_csv(&rows))
    }

    /// The SEPA credit-transfer file paying each merchant its net redemptions of the period,
    /// recording the period as settled; `None` (recorded too) if nobody is owed anything.
    pub async fn credit_transfer_file(
        &self,
        programme_id: ledger::ProgrammeId,
        start: Date,
        end: Date,
        execution: Date,
    ) -> Result<Option<String>, ProgrammeError> {
        let programme = self.get(programme_id).await?;
        let debtor = programme.debtor.clone().ok_or_else(|| {
            ProgrammeError::Conflict(
                "the programme has no debtor bank account; set one to produce SEPA files".into(),
            )
        })?;
        let unit = {
            let view = self.committer.view().read();
            view.unit(programme.unit).cloned()
        };
        let pegged_to_euro = unit
            .as_ref()
            .is_some_and(|u| u.peg() == Some("EUR") && u.scale() == 2);
        if !pegged_to_euro {
            return Err(ProgrammeError::Conflict(format!(
                "{} is not a euro voucher with cents; SEPA files pay euros",
                programme.unit
            )));
        }
        // Files are checked against the periods already paid and recorded one at a time, so
        // two overlapping requests cannot both pass the check.
        let _one_at_a_time = self.exclusive.lock().await;
        // A merchant is paid once per redemption: a file for a period overlapping one already
        // paid is refused; the same period again gives the same transfers.
        let (from_day, to_day) = (start.to_string(), end.to_string());
        let settled = self.db.settled_periods(programme_id).await?;
        let same_again = settled.iter().any(|(f, t)| *f == from_day && *t == to_day);
        if !same_again
            && let Some((from, to)) = settled
                .iter()
                .find(|(from, to)| from_day <= *to && *from <= to_day)
        {
            return Err(ProgrammeError::Conflict(format!(
                "{from_day}/{to_day} overlaps {from}/{to}, for which a SEPA file was already \
                 produced: merchants would be paid twice for the days in both"
            )));
        }
        // Periods follow one another without a gap: a redemption on a day no file covers
        // would sit in the clearing account, never paid, and nothing would say so. A new file
        // starts the day after the file before it (a gap left earlier can still be filled),
        // or, if none is before it, on or before the programme's first day.
        if !same_again {
            let before = settled
                .iter()
                .map(|(_, to)| to)
                .filter(|to| **to < from_day)
                .max();
            if let Some(last_to) = before {
                let next = day_after(last_to)?;
                if next != start {
                    return Err(ProgrammeError::Conflict(format!(
                        "the SEPA file before it paid up to {last_to}; the next period starts on \
                         {next} (from {start} would leave the days between unpaid)"
                    )));
                }
            } else {
                let created = UtcDateTime::from_unix_s(programme.created_at.div_euclid(1000))
                    .map_err(|e| ProgrammeError::Internal(e.to_string()))?
                    .date;
                if start > created {
                    return Err(ProgrammeError::Conflict(format!(
                        "the first SEPA file starts on or before {created}, the day the \
                         programme was created (from {start} would leave the days before \
                         unpaid)"
                    )));
                }
            }
        }
        // Only a period that has ended (UTC) can be paid: a file for one still running would
        // hold the redemptions so far, and the overlap rule above would then refuse the rest
        // of the period forever, or, asked again for the same days, pay the first part twice.
        if self.now_ms() < start_ms(end).saturating_add(DAY_MS) {
            return Err(ProgrammeError::Conflict(format!(
                "the period {start}/{end} has not ended (it ends at the end of {end}, UTC); a \
                 SEPA file pays a closed period, once"
            )));
        }
        // An entry's time is taken when it is submitted, and it is seen once its batch is
        // committed: a redemption made at 23:59:59 may land just after midnight, and a file
        // made then would leave it unpaid for good.
        if self.now_ms() < start_ms(end).saturating_add(DAY_MS + SETTLEMENT_GRACE_MS) {
            return Err(ProgrammeError::Conflict(format!(
                "the period {start}/{end} ended less than {} minutes ago; redemptions made at \
                 its end may still be committing, so ask again shortly",
                SETTLEMENT_GRACE_MS / 60_000
            )));
        }
        let lines = self.settlement(programme_id, start, end).await?;
        // Only merchants owed something are paid, so only they need an IBAN: a merchant
        // whose fees took all it redeemed must not hold up everyone else's payment.
        let payable: Vec<_> = lines
            .iter()
            .filter(|m| m.gross_minor > m.fee_minor)
            .collect();
        let missing: Vec<&str> = payable
            .iter()
            .filter(|m| m.iban.is_none())
            .map(|m| m.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ProgrammeError::Conflict(format!(
                "no IBAN registered for: {}",
                missing.join(", ")
            )));
        }
        let outside_sepa: Vec<&str> = payable
            .iter()
            .filter(|m| m.iban.as_deref().is_some_and(|i| require_sepa(i).is_err()))
            .map(|m| m.name.as_str())
            .collect();
        if !outside_sepa.is_empty() {
            return Err(ProgrammeError::Conflict(format!(
                "a SEPA file cannot pay an IBAN outside the SEPA scheme: {} (the settlement \
                 report in JSON gives their bank details)",
                outside_sepa.join(", ")
            )));
        }
        // Any payee, when the programme's own bank is outside the EEA.
        let debtor_outside_eea = needs_bic(&debtor.iban);
        let without_bic: Vec<&str> = payable
            .iter()
            .filter(|m| m.bic.is_none())
            .filter(|m| debtor_outside_eea || m.iban.as_deref().is_some_and(needs_bic))
            .map(|m| m.name.as_str())
            .collect();
        if !without_bic.is_empty() {
            return Err(ProgrammeError::Conflict(format!(
                "a SEPA transfer involving a bank outside the EEA needs the payee bank's BIC as \
                 well as the IBAN; register it (PUT /v1/participants/{{id}}/bank-account) for: \
                 {}",
                without_bic.join(", ")
            )));
        }
        // Nobody is owed anything (no redemptions, or fees took them all): there is no file to
        // make (a pain.001 holds at least one transfer), but the period is settled, so the
        // next one can follow it.
        if payable.is_empty() {
            self.db
                .record_settled_period(programme_id, &from_day, &to_day, self.now_ms())
                .await?;
            return Ok(None);
        }
        let period = format!("{start}/{end}");
        let compact = |d: Date| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day());
        let transfers = payable
            .iter()
            .map(|m| Transfer {
                // 1 + 8 + 26 = 35 characters, the schema's limit.
                end_to_end_id: format!("R{}{}", compact(end), id_digest(m.merchant.0, 26)),
                creditor_name: m.account_holder.clone().unwrap_or_else(|| m.name.clone()),
                creditor_iban: m.iban.clone().unwrap_or_default(),
                creditor_bic: m.bic.clone(),
                amount_cents: m.gross_minor.saturating_sub(m.fee_minor),
                remittance: format!("Redemptions {period} {}", programme.unit),
            })
            .collect();
        let file = CreditTransferFile {
            // 2 + 17 + 8 + 8 = 35 characters, the schema's limit.
            message_id: format!(
                "CL{}{}{}",
                id_digest(programme.id.0, 17),
                compact(start),
                compact(end)
            ),
            created_at_unix_s: self.now_ms().div_euclid(1000),
            execution_date: execution,
            debtor: Debtor {
                name: debtor.name,
                iban: debtor.iban,
                bic: debtor.bic,
            },
            transfers,
        };
        let xml = pain001_xml(&file).map_err(|e| invalid("settlement", e.to_string()))?;
        self.db
            .record_settled_period(programme_id, &from_day, &to_day, self.now_ms())
            .await?;
        Ok(Some(xml))
    }

    /// Voids the SEPA file of `start`..=`end`, recorded by mistake and never sent to the bank:
    /// the period no longer counts as paid, so its days can go in another file. Only the
    /// latest file can be voided (an earlier one would leave a gap), and only an operator who
    /// knows the bank never got it should: a voided file that was paid pays twice.
    pub async fn void_credit_transfer_file(
        &self,
        programme_id: ledger::ProgrammeId,
        start: Date,
        end: Date,
    ) -> Result<(), ProgrammeError> {
        self.get(programme_id).await?;
        let _one_at_a_time = self.exclusive.lock().await;
        let (from_day, to_day) = (start.to_string(), end.to_string());
        let settled = self.db.settled_periods(programme_id).await?;
        if !settled.iter().any(|(f, t)| *f == from_day && *t == to_day) {
            return Err(ProgrammeError::NotFound(format!(
                "SEPA file for {from_day}/{to_day} (none is recorded, or it was voided)"
            )));
        }
        if let Some((later_from, later_to)) = settled.iter().find(|(f, _)| *f > from_day) {
            return Err(ProgrammeError::Conflict(format!(
                "the file for {later_from}/{later_to} came after it; void that one first (a \
                 gap would leave its days unpaid)"
            )));
        }
        self.db
            .void_settled_period(programme_id, &from_day, &to_day, self.now_ms())
            .await?;
        Ok(())
    }

    fn unit_scale(&self, unit: ledger::UnitCode) -> Result<u8, ProgrammeError> {
        self.committer
            .view()
            .read()
            .unit(unit)
            .map(ledger::Unit::scale)
            .ok_or_else(|| ProgrammeError::NotFound(format!("unit {unit}")))
    }

    /// Today's date (UTC), for default execution dates.
    pub fn today(&self) -> Result<Date, ProgrammeError> {
        UtcDateTime::from_unix_s(self.now_ms().div_euclid(1000))
            .map(|t| t.date)
            .map_err(|e| ProgrammeError::Internal(e.to_string()))
    }
}

/// The first `len` hex digits of the SHA-256 of an id: a short stand-in for a whole id in
/// the bank file's identifiers (35 characters at most). Not a prefix of the id itself: ids
/// are UUIDv7, whose first digits are the creation time and whose last ones count upward
/// within a millisecond, so two programmes made in the same minute, or two merchants made in
/// the same millisecond, would share any slice of them and the bank would refuse the file as
/// a duplicate.
fn id_digest(id: uuid::Uuid, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    Sha256::digest(id.as_bytes())
        .iter()
        .flat_map(|byte| [byte >> 4, byte & 0x0F])
        .take(len)
        .map(|nibble| char::from(DIGITS[usize::from(nibble)]))
        .collect()
}

fn amount(minor: i64) -> Result<Amount, ProgrammeError> {
    Amount::from_minor(minor).map_err(|e| ProgrammeError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_file_ids_differ_for_ids_made_in_the_same_millisecond() {
        // Two v7 ids a counter apart: same time, same first 31 hex digits.
        let first = uuid::Uuid::from_u128(0x019a_b2c3_d4e5_7000_8000_0000_0000_0001);
        let second = uuid::Uuid::from_u128(0x019a_b2c3_d4e5_7000_8000_0000_0000_0002);
        let (a, b) = (id_digest(first, 17), id_digest(second, 17));
        assert_ne!(a, b);
        assert_eq!(a.len(), 17);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(id_digest(first, 26)[..17], a, "one id, one digest");
    }

    #[test]
    fn dates_are_parsed_strictly() {
        assert!(parse_date("from", "2026-12-01").is_ok());
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-12-01",
            "2026/12/01",
            "2026-12-1",
        ] {
            assert!(parse_date("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_starts_at_midnight_utc() {
        let day = parse_date("d", "1970-01-02").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(start_ms(day), DAY_MS);
    }
}
