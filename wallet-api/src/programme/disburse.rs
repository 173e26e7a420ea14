//! Disbursement runs: pay every eligible household of a programme for a period, once.
//!
//! A run is first **planned**: who gets how much under the rules in force, with the
//! exceptions (frozen accounts are skipped; households without a card are paid but listed;
//! a budget that cannot cover the total refuses the run). A dry run stops there. Executing
//! stores the plan (unique per programme and period) before paying anything, then commits it
//! as signed entries of up to [`HOUSEHOLDS_PER_ENTRY`] households each, whose intent ids and
//! bytes derive from the stored plan. Running the same period again, after success or after a
//! crash half-way, replays the same intents: committed chunks answer as duplicates and only
//! the rest pay, so nobody is paid twice.

use futures_util::StreamExt as _;
use ledger::entry::MAX_POSTINGS;
use ledger::{AccountStatus, EntryKind, HouseholdId, Leg, ProgrammeId, RunId, Tags};
use serde::Serialize;

use super::service::{ProgrammeEntry, ProgrammeError, Programmes, invalid};
use super::{Programme, rules_at};
use crate::db::DbError;
use crate::db::programmes::{RunLine, StoredRun};

/// Households per entry: one leg debits the budget, the rest credit households.
pub const HOUSEHOLDS_PER_ENTRY: usize = MAX_POSTINGS - 1;

/// Entries submitted at once; the committer batches them into few transactions.
const IN_FLIGHT: usize = 256;

/// Which households a run pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// Every household, for a month (`YYYY-MM`).
    Monthly,
    /// A one-off payment, named by a label, to every household or those of one area.
    Emergency {
        /// The area, if limited to one.
        area: Option<String>,
    },
}

impl RunKind {
    fn as_str(&self) -> &'static str {
        match self {
            RunKind::Monthly => "monthly",
            RunKind::Emergency { .. } => "emergency",
        }
    }

    fn area(&self) -> Option<&str> {
        match self {
            RunKind::Monthly => None,
            RunKind::Emergency { area } => area.as_deref(),
        }
    }
}

/// A household the run does not pay normally, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunException {
    /// The household.
    pub household: HouseholdId,
    /// Its reference.
    pub reference: String,
    /// Whether it is paid anyway.
    pub paid: bool,
    /// Why it is listed.
    pub reason: String,
}

/// What a run would do (a dry run), or what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunPlan {
    /// The programme.
    pub programme: ProgrammeId,
    /// The period or label.
    pub period: String,
    /// `monthly` or `emergency`.
    pub kind: String,
    /// Households paid.
    pub households: usize,
    /// Total, minor units.
    pub total_minor: i64,
    /// Entries it takes.
    pub entries: usize,
    /// What the budget can still pay, minor units.
    pub budget_available_minor: i64,
    /// By how much the budget falls short (0 when it suffices).
    pub budget_short_minor: i64,
    /// Households skipped or flagged.
    pub exceptions: Vec<RunException>,
    /// When a monthly run of this period is due (`YYYY-MM-DD`, the programme's pay day).
    pub due_date: Option<String>,
    /// The stored run for this period, if it was executed (partly or wholly) before.
    #[serde(skip)]
    pub existing: Option<StoredRun>,
    #[serde(skip)]
    lines: Vec<RunLine>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// The run.
    pub run: RunId,
    /// The period or label.
    pub period: String,
    /// Households paid by the run (over all its executions).
    pub households: u32,
    /// Total, minor units.
    pub total_minor: i64,
    /// Entries committed by this execution.
    pub committed_entries: usize,
    /// Entries found committed already (a resumed or repeated run).
    pub already_committed_entries: usize,
    /// Entries that failed, with why; the run is complete when there are none.
    pub failed_entries: Vec<(u32, String)>,
    /// Whether every entry of the run has committed.
    pub complete: bool,
}

/// Progress of an execution, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunProgress {
    /// Entries settled so far.
    pub done: usize,
    /// Entries in the run.
    pub total: usize,
}

/// Test and operations hooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many entries have been submitted, as a crash would (the plan is
    /// stored; the rest is paid when the run is executed again).
    pub stop_after_entries: Option<usize>,
}

/// Checks a period: `YYYY-MM` for monthly runs; a label of letters, digits, `-`, `_` and `.`
/// (at most 64) for emergency runs.
pub fn validate_period(kind: &RunKind, period: &str) -> Result<(), ProgrammeError> {
    match kind {
        RunKind::Monthly => {
            // Digits only: `"+1".parse::<u8>()` succeeds, and "2026-+1" would be a second
            // name for January, paid again.
            let bytes = period.as_bytes();
            let ok = bytes.len() == 7
                && bytes[4] == b'-'
                && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit)
                && period[5..]
                    .parse::<u8>()
                    .is_ok_and(|m| (1..=12).contains(&m));
            if ok {
                Ok(())
            } else {
                Err(invalid(
                    "period",
                    "a monthly period is YYYY-MM, e.g. 2026-12",
                ))
            }
        }
        RunKind::Emergency { .. } => {
            if validate_period(&RunKind::Monthly, period).is_ok() {
                return Err(invalid(
                    "period",
                    "an emergency run needs its own label, not a month (YYYY-MM is for monthly runs)",
                ));
            }
            let ok = !period.is_empty()
                && period.len() <= 64
                && period
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if ok {
                Ok(())
            } else {
                Err(invalid(
                    "period",
                    "an emergency run's label is 1 to 64 letters, digits, '-', '_' or '.'",
                ))
            }
        }
    }
}

/// How far ahead of the current month a monthly run may be paid: the month before it is
/// due, so a payment can be prepared, but no further.
pub const MONTHS_AHEAD: i64 = 1;

/// The monthly period (`YYYY-MM`, UTC) a timestamp falls in.
pub fn monthly_period_of(at_ms: i64) -> String {
    let (year, month, _) = ledger::policy::civil_from_days(ledger::policy::day_of(at_ms));
    format!("{year:04}-{month:02}")
}

/// Refuses a new monthly run for a month before the programme existed or more than
/// [`MONTHS_AHEAD`] after the current one: each is almost surely a typed year or month (2027-12
/// for 2026-12), and a run pays every household at once. `period` is a valid `YYYY-MM`.
pub fn check_period_window(
    period: &str,
    created_at_ms: i64,
    now_ms: i64,
) -> Result<(), ProgrammeError> {
    let parsed = (
        period.get(..4).and_then(|y| y.parse::<i64>().ok()),
        period.get(5..).and_then(|m| m.parse::<i64>().ok()),
    );
    let (Some(year), Some(month)) = parsed else {
        return Err(invalid(
            "period",
            "a monthly period is YYYY-MM, e.g. 2026-12",
        ));
    };
    // A month number as `ledger::policy::month_of` counts them.
    let asked = year * 12 + month - 1;
    if asked > ledger::policy::month_of(now_ms) + MONTHS_AHEAD {
        return Err(invalid(
            "period",
            format!(
                "{period} is more than {MONTHS_AHEAD} month ahead of the current month; a \
                 monthly run is paid at most the month before it is due"
            ),
        ));
    }
    if asked < ledger::policy::month_of(created_at_ms) {
        return Err(invalid(
            "period",
            format!("{period} is before the month the programme was created in"),
        ));
    }
    Ok(())
}

impl Programmes {
    /// Plans a run without paying: households, total, budget, exceptions.
    pub async fn plan_run(
        &self,
        programme: ProgrammeId,
        period: &str,
        kind: &RunKind,
    ) -> Result<RunPlan, ProgrammeError> {
        let programme = self.get(programme).await?;
        self.plan(&programme, period, kind).await
    }

    async fn plan(
        &self,
        programme: &Programme,
        period: &str,
        kind: &RunKind,
    ) -> Result<RunPlan, ProgrammeError> {
        validate_period(kind, period)?;
        if let Some(area) = kind.area()
            && !programme.areas.iter().any(|a| a == area)
        {
            return Err(invalid(
                "area",
                format!("the programme has no area {area:?}"),
            ));
        }
        let now = self.now_ms();
        let existing = self.db.run_for(programme.id, period).await?;
        // A run already planned is resumed whatever the date: it may have been stopped halfway.
        if existing.is_none() && *kind == RunKind::Monthly {
            check_period_window(period, programme.created_at, now)?;
        }
        let versions = self.db.rule_versions(programme.id).await?;
        let rules = rules_at(&versions, now)
            .ok_or_else(|| ProgrammeError::Conflict("no rules are in force yet".into()))?;
        let households = self.db.households(programme.id).await?;
        let cards = self.db.card_states(programme.id).await?;
        let mut exceptions = Vec::new();
        let mut lines = Vec::new();
        let budget_available;
        {
            let view = self.committer.view().read();
            budget_available = view.account(programme.accounts.budget).map_or(0, |b| {
                let floor = b.account.limits.lower().map_or(i64::MIN, |l| l.0);
                b.balance.0.saturating_sub(floor)
            });
            for h in &households {
                if kind.area().is_some_and(|area| h.area != area) {
                    continue;
                }
                let status = view.account(h.account).map(|a| a.account.status);
                let skip = match status {
                    None => Some("its account is not open yet (enrol again to open it)"),
                    Some(AccountStatus::Frozen) => Some("its account is frozen"),
                    Some(AccountStatus::Closed) => Some("its account is closed"),
                    Some(AccountStatus::Active) => None,
                };
                if let Some(reason) = skip {
                    exceptions.push(RunException {
                        household: h.id,
                        reference: h.reference.clone(),
                        paid: false,
                        reason: reason.into(),
                    });
                    continue;
                }
                let Some(amount) = rules
                    .rules
                    .amount
                    .amount_for(h.dependents)
                    .filter(|&a| a > 0)
                else {
                    exceptions.push(RunException {
                        household: h.id,
                        reference: h.reference.clone(),
                        paid: false,
                        reason: "the amount rule gives nothing payable".into(),
                    });
                    continue;
                };
                let card_note = match cards.get(&h.id).map(String::as_str) {
                    Some("active") => None,
                    Some("locked") => Some(
                        "card locked after wrong PINs: paid, spendable once an operator unlocks it",
                    ),
                    _ => Some("no card yet: paid to the account, spendable once a card is issued"),
                };
                if let Some(reason) = card_note {
                    exceptions.push(RunException {
                        household: h.id,
                        reference: h.reference.clone(),
                        paid: true,
                        reason: reason.into(),
                    });
                }
                lines.push(RunLine {
                    chunk: 0,
                    household: h.id,
                    account: h.account,
                    amount_minor: amount,
                });
            }
        }
        lines.sort_by_key(|l| l.household);
        for (i, line) in lines.iter_mut().enumerate() {
            line.chunk = u32::try_from(i / HOUSEHOLDS_PER_ENTRY).unwrap_or(u32::MAX);
        }
        let total_minor = lines
            .iter()
            .try_fold(0i64, |sum, l| sum.checked_add(l.amount_minor))
            .ok_or_else(|| invalid("amount", "the run's total overflows"))?;
        Ok(RunPlan {
            programme: programme.id,
            period: period.to_owned(),
            kind: kind.as_str().to_owned(),
            households: lines.len(),
            total_minor,
            entries: lines.len().div_ceil(HOUSEHOLDS_PER_ENTRY),
            budget_available_minor: budget_available,
            budget_short_minor: total_minor.saturating_sub(budget_available).max(0),
            exceptions,
            due_date: match kind {
                RunKind::Monthly => programme.schedule.due_date(period),
                RunKind::Emergency { .. } => None,
            },
            existing,
            lines,
        })
    }

    /// Executes (or resumes) the run of `period`, reporting progress as entries settle.
    pub async fn execute_run(
        &self,
        programme: ProgrammeId,
        period: &str,
        kind: &RunKind,
        options: RunOptions,
        progress: &(dyn Fn(RunProgress) + Send + Sync),
    ) -> Result<RunReport, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let programme = self.get(programme).await?;
        let existing = self.db.run_for(programme.id, period).await?;
        let resuming = existing.is_some();
        let (run, lines) = match existing {
            Some(run) => {
                check_same_run(&run, kind)?;
                let lines = self.db.run_lines(run.id).await?;
                (run, lines)
            }
            None => {
                let plan = self.plan(&programme, period, kind).await?;
                if plan.budget_short_minor > 0 {
                    return Err(ProgrammeError::BudgetShort {
                        needed_minor: plan.total_minor,
                        available_minor: plan.budget_available_minor,
                    });
                }
                if plan.lines.is_empty() {
                    return Err(ProgrammeError::Conflict(
                        "no household is eligible for this run".into(),
                    ));
                }
                let run = StoredRun {
                    id: RunId::new(),
                    programme: programme.id,
                    period: period.to_owned(),
                    kind: kind.as_str().to_owned(),
                    area: kind.area().map(str::to_owned),
                    households: u32::try_from(plan.lines.len()).unwrap_or(u32::MAX),
                    total_minor: plan.total_minor,
                    chunks: u32::try_from(plan.entries).unwrap_or(u32::MAX),
                    created_at: self.now_ms(),
                    completed_at: None,
                };
                match self.db.insert_run(&run, &plan.lines).await {
                    Ok(()) => (run, plan.lines),
                    // Another process planned the same period meanwhile: resume its plan.
                    Err(DbError::Sql(e)) if is_unique_violation(&e) => {
                        let run =
                            self.db
                                .run_for(programme.id, period)
                                .await?
                                .ok_or_else(|| {
                                    ProgrammeError::Conflict(
                                        "the run vanished while planning".into(),
                                    )
                                })?;
                        let lines = self.db.run_lines(run.id).await?;
                        (run, lines)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.pay(&programme, &run, &lines, resuming, options, progress)
            .await
    }

    async fn pay(
        &self,
        programme: &Programme,
        run: &StoredRun,
        lines: &[RunLine],
        resuming: bool,
        options: RunOptions,
        progress: &(dyn Fn(RunProgress) + Send + Sync),
    ) -> Result<RunReport, ProgrammeError> {
        let chunks: Vec<&[RunLine]> = lines.chunk_by(|a, b| a.chunk == b.chunk).collect();
        let total = chunks.len();
        let submit = options.stop_after_entries.unwrap_or(total).min(total);
        let mut intents = Vec::with_capacity(chunks.len());
        let mut already = 0usize;
        for chunk in chunks.iter().take(submit) {
            let number = chunk.first().map_or(0, |l| l.chunk);
            // A resumed run skips what committed before without signing it again, so a run
            // finishes even after its intents would have expired.
            if resuming
                && self
                    .db
                    .intent_position(chunk_intent_id(run, number))
                    .await?
                    .is_some()
            {
                already = already.saturating_add(1);
                continue;
            }
            let lines = if resuming {
                self.to_current_accounts(chunk).await?
            } else {
                chunk.to_vec()
            };
            intents.push((number, self.chunk_intent(programme, run, number, &lines)?));
        }
        let mut report = RunReport {
            run: run.id,
            period: run.period.clone(),
            households: run.households,
            total_minor: run.total_minor,
            committed_entries: 0,
            already_committed_entries: already,
            failed_entries: Vec::new(),
            complete: false,
        };
        let committer = &self.committer;
        progress(RunProgress {
            done: already,
            total,
        });
        let mut settled = futures_util::stream::iter(intents)
            .map(|(number, intent)| async move { (number, committer.submit(&intent).await) })
            .buffer_unordered(IN_FLIGHT);
        let mut done = already;
        while let Some((number, result)) = settled.next().await {
            match result {
                Ok(c) if c.duplicate => report.already_committed_entries += 1,
                Ok(_) => report.committed_entries += 1,
                Err(e) => report.failed_entries.push((number, e.to_string())),
            }
            done = done.saturating_add(1);
            progress(RunProgress { done, total });
        }
        report.failed_entries.sort_unstable();
        report.complete = submit == total && report.failed_entries.is_empty();
        if report.complete {
            self.db.complete_run(run.id, self.now_ms()).await?;
        }
        Ok(report)
    }

    /// A resumed chunk's lines, each paying the household's account now: a card replaced
    /// since the plan froze the account the plan names, and an entry crediting a frozen
    /// account would fail, every time, with the rest of its chunk. Only chunks that never
    /// committed are built again, so the new bytes never meet the old ones.
    async fn to_current_accounts(&self, chunk: &[RunLine]) -> Result<Vec<RunLine>, ProgrammeError> {
        let mut lines = chunk.to_vec();
        for line in &mut lines {
            let frozen = self
                .committer
                .view()
                .read()
                .account(line.account)
                .is_some_and(|a| a.account.status == AccountStatus::Frozen);
            if !frozen {
                continue;
            }
            if let Some(household) = self.db.household(line.household).await? {
                line.account = household.account;
            }
        }
        Ok(lines)
    }

    /// The signed entry paying one chunk. Everything in it derives from the stored plan, so
    /// it is byte-for-byte the same intent every time the run is executed (a resumed chunk
    /// that never committed excepted: see [`Programmes::to_current_accounts`]).
    fn chunk_intent(
        &self,
        programme: &Programme,
        run: &StoredRun,
        number: u32,
        lines: &[RunLine],
    ) -> Result<ledger::VerifiedIntent, ProgrammeError> {
        let total: i64 = lines.iter().map(|l| l.amount_minor).sum();
        let mut legs = Vec::with_capacity(lines.len().saturating_add(1));
        legs.push(Leg {
            account: programme.accounts.budget,
            unit: programme.unit,
            delta: total.saturating_neg(),
        });
        legs.extend(lines.iter().map(|l| Leg {
            account: l.account,
            unit: programme.unit,
            delta: l.amount_minor,
        }));
        let intent_id =
            super::derived_intent_id("disbursement", &[run.id.as_bytes(), &number.to_be_bytes()]);
        self.sign_entry(
            programme.id,
            ProgrammeEntry {
                intent_id,
                valid_from_ms: run.created_at,
                kind: EntryKind::Issue,
                legs,
                memo: format!("{} {}", programme.name, run.period),
                tags: Tags {
                    programme: Some(programme.id.to_string()),
                    budget_line: Some(run.period.clone()),
                    category: None,
                    reverses: None,
                },
            },
        )
    }
}

/// A stored run is resumed only by the same kind of run for the same area: an emergency run
/// named like another run must not "resume" (and so silently skip) it.
fn check_same_run(run: &StoredRun, kind: &RunKind) -> Result<(), ProgrammeError> {
    if run.kind == kind.as_str() && run.area.as_deref() == kind.area() {
        Ok(())
    } else {
        Err(ProgrammeError::Conflict(format!(
            "{} names an earlier {} run{}; choose another period label",
            run.period,
            run.kind,
            run.area
                .as_deref()
                .map(|a| format!(" for area {a}"))
                .unwrap_or_default()
        )))
    }
}

/// The intent id of a run's chunk: derived from the run and the chunk's number.
fn chunk_intent_id(run: &StoredRun, number: u32) -> ledger::IntentId {
    super::derived_intent_id("disbursement", &[run.id.as_bytes(), &number.to_be_bytes()])
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_checked_per_kind() {
        let monthly = RunKind::Monthly;
        assert!(validate_period(&monthly, "2026-12").is_ok());
        for bad in [
            "2026-13", "2026-00", "26-12", "2026/12", "2026-1", "", "2026-+1", "+026-01",
        ] {
            assert!(validate_period(&monthly, bad).is_err(), "{bad}");
        }
        let emergency = RunKind::Emergency { area: None };
        assert!(validate_period(&emergency, "flood-2026.11_north").is_ok());
        assert!(validate_period(&emergency, "2026-12").is_err());
        assert!(validate_period(&emergency, "flood 2026").is_err());
        assert!(validate_period(&emergency, &"x".repeat(65)).is_err());
    }

    #[test]
    fn a_monthly_run_is_refused_before_the_programme_and_beyond_next_month() {
        // 2026-11-22T00:00:00Z; the programme was created on 2026-06-15.
        let now_ms = 1_795_305_600_000;
        let created_ms = 1_781_481_600_000;
        for fine in ["2026-06", "2026-10", "2026-11", "2026-12"] {
            assert!(
                check_period_window(fine, created_ms, now_ms).is_ok(),
                "{fine}"
            );
        }
        for (typo, says) in [
            ("2027-01", "more than 1 month ahead"),
            ("2027-12", "more than 1 month ahead"),
            ("2026-05", "before the month the programme was created"),
            ("2025-12", "before the month the programme was created"),
        ] {
            let refused = check_period_window(typo, created_ms, now_ms).unwrap_err();
            assert!(
                matches!(&refused, ProgrammeError::Invalid { field, .. } if *field == "period")
                    && refused.to_string().contains(says),
                "{typo}: {refused}"
            );
        }
        assert_eq!(monthly_period_of(now_ms), "2026-11");
        assert_eq!(monthly_period_of(1_796_083_200_000 - 1), "2026-11");
        assert_eq!(monthly_period_of(1_796_083_200_000), "2026-12");
        // December's run may be paid from 1 November, January's from 1 December (UTC).
        let december_first_ms = 1_796_083_200_000;
        assert!(check_period_window("2027-01", created_ms, december_first_ms).is_ok());
        assert!(check_period_window("2027-01", created_ms, december_first_ms - 1).is_err());
    }
}
