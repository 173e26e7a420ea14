//! The programme commands run against the database directly: `disburse`, `enrol` and
//! `expire` take the writer lease (so the service must be stopped; while it runs, use its
//! API), `cards print` only reads.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use merchant_terminal::card_sheet::{CardFace, render_pdf, render_svg_pages};
use wallet_api::db::DbError;
use wallet_api::enrolment::parse_enrolment;
use wallet_api::programme::disburse::{RunKind, RunOptions, RunProgress};
use wallet_api::programme::{HouseholdInput, Programmes};
use wallet_api::{Committer, CommitterConfig, CommitterTask, Database, SystemClock};

use crate::config::{
    CardsPrintArgs, DisburseArgs, EnrolArgs, ExpireArgs, ExportResearchArgs, ProgrammeArgs,
};

/// The database, the writer and the programme operations.
pub struct Session {
    /// Operations.
    pub programmes: Programmes,
    committer: Committer,
    task: CommitterTask,
}

impl Session {
    /// Opens the database and takes the writer lease.
    pub async fn open(database_url: &str, args: &ProgrammeArgs) -> Result<Self> {
        let db = Database::connect_existing(database_url)
            .await
            .context("opening the database")?;
        db.migrate().await.context("migrating the schema")?;
        let clock: Arc<dyn wallet_api::Clock> = Arc::new(SystemClock);
        let secret = crate::secret::require(database_url, args)?;
        // Held to the service's checkpoints, the load checks only the entries signed since
        // signature by signature, not the whole journal.
        let config = CommitterConfig {
            checkpoint_key: Some(wallet_api::checkpoints::checkpoint_key(&secret)),
            ..CommitterConfig::default()
        };
        let (committer, task) = match Committer::start(db.clone(), config, clock.clone()).await {
            Ok(started) => started,
            Err(wallet_api::db::LoadError::Db(DbError::LeaseHeld(_))) => bail!(
                "the service is running on this database and holds the writer; stop it, \
                     or do this through its API"
            ),
            Err(e) => return Err(e).context("loading the ledger"),
        };
        let programmes = Programmes::new(
            db,
            committer.clone(),
            clock,
            secret,
            crate::secret::card_settings(args)?,
        );
        programmes
            .check_secret()
            .await
            .context("checking the server secret")?;
        Ok(Self {
            programmes,
            committer,
            task,
        })
    }

    /// Waits until everything is committed and releases the writer.
    pub async fn close(self) -> Result<()> {
        let Self {
            programmes,
            committer,
            mut task,
        } = self;
        drop(programmes);
        drop(committer);
        task.join()
            .await
            .map_err(|e| anyhow::anyhow!("the ledger writer failed: {e}"))
    }
}

fn programme_id(text: &str) -> Result<ledger::ProgrammeId> {
    text.parse()
        .with_context(|| format!("--programme {text:?} is not a programme id"))
}

/// A one-line progress bar on stderr.
fn progress_bar(progress: RunProgress) {
    const WIDTH: usize = 30;
    let filled = WIDTH * progress.done / progress.total.max(1);
    eprint!(
        "\r[{}{}] {}/{} entries",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        progress.done,
        progress.total
    );
    if progress.done == progress.total {
        eprintln!();
    }
    let _ = std::io::stderr().flush();
}

/// `coledger disburse`.
pub async fn disburse(args: DisburseArgs) -> Result<()> {
    // What can be checked without the ledger is checked before loading it (minutes for a
    // large one).
    let programme = programme_id(&args.programme)?;
    let kind = if args.emergency {
        RunKind::Emergency { area: args.area }
    } else {
        RunKind::Monthly
    };
    wallet_api::programme::disburse::validate_period(&kind, &args.period)
        .map_err(|e| anyhow::anyhow!("--period {:?}: {e}", args.period))?;
    let session = Session::open(&args.database.database_url, &args.programmes).await?;
    let outcome = if args.dry_run {
        let plan = session
            .programmes
            .plan_run(programme, &args.period, &kind)
            .await?;
        let scale = scale(&session, programme).await?;
        println!("dry run of {} {}", plan.kind, plan.period);
        if let Some(due) = &plan.due_date {
            println!("  due on:          {due}");
        }
        println!("  households paid: {}", plan.households);
        println!("  total:           {}", decimal(plan.total_minor, scale));
        println!("  entries:         {}", plan.entries);
        println!(
            "  budget left:     {}",
            decimal(plan.budget_available_minor, scale)
        );
        if plan.budget_short_minor > 0 {
            println!(
                "  BUDGET SHORT by  {}: the run would be refused",
                decimal(plan.budget_short_minor, scale)
            );
        }
        if plan.existing.is_some() {
            println!("  this period was executed before: running it again pays nobody twice");
        }
        println!("  exceptions:      {}", plan.exceptions.len());
        for e in plan.exceptions.iter().take(50) {
            let paid = if e.paid { "paid" } else { "NOT paid" };
            println!("    {} ({paid}): {}", e.reference, e.reason);
        }
        if plan.exceptions.len() > 50 {
            println!("    … and {} more", plan.exceptions.len() - 50);
        }
        Ok(())
    } else {
        let options = RunOptions {
            stop_after_entries: args.stop_after_entries,
        };
        let report = session
            .programmes
            .execute_run(programme, &args.period, &kind, options, &progress_bar)
            .await?;
        println!(
            "run {} {}: {} households, {} entries committed now, {} already committed",
            report.run,
            report.period,
            report.households,
            report.committed_entries,
            report.already_committed_entries
        );
        for (entry, reason) in &report.failed_entries {
            println!("  entry {entry} FAILED: {reason}");
        }
        if report.complete {
            println!("complete");
            Ok(())
        } else if args.stop_after_entries.is_some() {
            println!("stopped early as asked; run again to finish");
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "the run is not complete; fix the failures and run it again (paid entries are not repeated)"
            ))
        }
    };
    session.close().await?;
    outcome
}

async fn scale(session: &Session, programme: ledger::ProgrammeId) -> Result<u8> {
    let unit = session.programmes.get(programme).await?.unit;
    Ok(session
        .committer
        .view()
        .read()
        .unit(unit)
        .map_or(0, ledger::Unit::scale))
}

fn decimal(minor: i64, scale: u8) -> String {
    wallet_api::http::render::decimal(minor, scale)
}

/// Reads and validates an enrolment file, then enrols the accepted rows.
pub async fn enrol_file(
    programmes: &Programmes,
    programme: ledger::ProgrammeId,
    bytes: &[u8],
    all_or_nothing: bool,
) -> Result<(wallet_api::programme::service::EnrolmentOutcome, usize)> {
    let p = programmes.get(programme).await?;
    let report = parse_enrolment(bytes, &p.enrolment_rules())?;
    for rejection in &report.rejected {
        eprintln!("rejected {rejection}");
    }
    if all_or_nothing && !report.rejected.is_empty() {
        bail!(
            "{} rows rejected; nothing enrolled (--all-or-nothing)",
            report.rejected.len()
        );
    }
    let rejected = report.rejected.len();
    let rows = report
        .accepted
        .into_iter()
        .map(HouseholdInput::from)
        .collect();
    Ok((programmes.enrol(programme, rows).await?, rejected))
}

/// `coledger enrol`.
pub async fn enrol(args: EnrolArgs) -> Result<()> {
    let programme = programme_id(&args.programme)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let session = Session::open(&args.database.database_url, &args.programmes).await?;
    let outcome = enrol_file(&session.programmes, programme, &bytes, args.all_or_nothing).await;
    session.close().await?;
    let (outcome, rejected) = outcome?;
    println!(
        "enrolled: {} new, {} updated, {} unchanged, {} rejected",
        outcome.created, outcome.updated, outcome.unchanged, rejected
    );
    Ok(())
}

/// `coledger expire`.
pub async fn expire(args: ExpireArgs) -> Result<()> {
    let programme = programme_id(&args.programme)?;
    let session = Session::open(&args.database.database_url, &args.programmes).await?;
    let report = session.programmes.sweep_expired(programme).await;
    let scale = scale(&session, programme).await;
    session.close().await?;
    let (report, scale) = (report?, scale?);
    println!(
        "expired: {} households, {} returned to the budget in {} entries",
        report.households,
        decimal(report.total_minor, scale),
        report.entries
    );
    if !report.failed.is_empty() {
        bail!(
            "{} entries failed: {}",
            report.failed.len(),
            report.failed.join("; ")
        );
    }
    Ok(())
}

/// The payload of a card's QR code: what a terminal scans.
pub fn card_qr_payload(number: &str) -> String {
    format!("coledger:card:{number}")
}

/// `coledger cards print`.
pub async fn print_cards(args: CardsPrintArgs) -> Result<()> {
    if !matches!(args.format.as_str(), "pdf" | "svg") {
        bail!("--format {:?}: choose pdf or svg", args.format);
    }
    let programme_id = programme_id(&args.programme)?;
    let db = Database::connect_existing(&args.database.database_url)
        .await
        .context("opening the database")?;
    let programme = db
        .programme(programme_id)
        .await?
        .with_context(|| format!("no programme {programme_id}"))?;
    let mut faces = Vec::new();
    for household in db.households(programme_id).await? {
        for card in db.cards_of(household.id).await? {
            if card.status == "active" {
                faces.push(CardFace {
                    scheme_name: programme.name.clone(),
                    holder_name: household.name.clone(),
                    qr_payload: card_qr_payload(&card.number),
                    card_number: card.number,
                    language: household.language.clone(),
                });
            }
        }
    }
    if faces.is_empty() {
        bail!("programme {programme_id} has no active cards to print");
    }
    match args.format.as_str() {
        "pdf" => {
            let pdf = render_pdf(&faces)?;
            // Whole or not at all: a sheet cut short by a full disk must not reach a printer.
            let mut out = crate::output_file::OutputFile::create(&args.out)?;
            out.writer()
                .write_all(&pdf)
                .with_context(|| format!("writing {}", args.out.display()))?;
            out.finish()?;
            println!("{} cards written to {}", faces.len(), args.out.display());
        }
        "svg" => {
            let pages = render_svg_pages(&faces)?;
            let stem = args.out.with_extension("");
            let page_path = |number: usize| {
                let mut name = stem.as_os_str().to_owned();
                name.push(format!("-{number}.svg"));
                std::path::PathBuf::from(name)
            };
            // Whole or not at all, as the PDF: every page is written before any replaces an
            // earlier print's, so a failure leaves the earlier print as it was.
            let mut written = Vec::with_capacity(pages.len());
            for (i, page) in pages.iter().enumerate() {
                let path = page_path(i + 1);
                let mut out = crate::output_file::OutputFile::create(&path)?;
                out.writer()
                    .write_all(page.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push((path, out));
            }
            for (path, out) in written {
                out.finish()?;
                println!("{}", path.display());
            }
            println!("{} cards on {} pages", faces.len(), pages.len());
            let stale = pages_beyond(&stem, pages.len());
            if !stale.is_empty() {
                eprintln!(
                    "warning: {} left from an earlier print with more pages; their cards may \
                     have been replaced since: delete them rather than print them",
                    stale.join(", ")
                );
            }
        }
        other => bail!("--format {other:?}: choose pdf or svg"),
    }
    Ok(())
}

/// The SVG pages `<stem>-N.svg` beside the output with N above `pages`: an earlier print's.
fn pages_beyond(stem: &std::path::Path, pages: usize) -> Vec<String> {
    let (Some(parent), Some(name)) = (stem.parent(), stem.file_name()) else {
        return Vec::new();
    };
    let dir = if parent.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        parent
    };
    let prefix = format!("{}-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stale: Vec<(usize, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let number = file.strip_prefix(&prefix)?.strip_suffix(".svg")?;
            let page: usize = number.parse().ok()?;
            // Named as the written pages are (`cards-1.svg`, not `./cards-1.svg`).
            (page > pages).then(|| (page, stem.with_file_name(&file).display().to_string()))
        })
        .collect();
    stale.sort_unstable();
    stale.into_iter().map(|(_, path)| path).collect()
}

/// `coledger export research`.
pub async fn export_research(args: ExportResearchArgs) -> Result<()> {
    let db = Database::connect_existing(&args.database.database_url)
        .await
        .context("opening the database")?;
    let secret = crate::secret::require(&args.database.database_url, &args.programmes)?;
    // Written whole or not at all: a failure part-way leaves no partial file.
    let mut out = crate::output_file::OutputFile::create(&args.out)?;
    let report = wallet_api::research::export(
        &db,
        &secret,
        wallet_api::research::ExportOptions {
            grain_s: args.grain_s,
        },
        out.writer(),
    )
    .await?;
    out.finish()?;
    println!(
        "{} events written to {} ({} postings left out for withheld consent, {} without research meaning, {} refunds and fully refunded payments netted out; {} areas of fewer than {} households not named)",
        report.events,
        args.out.display(),
        report.withheld,
        report.skipped,
        report.refunded,
        report.small_areas,
        wallet_api::transparency::MIN_HOUSEHOLDS
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_numbered_pages_beyond_this_print_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["cards-1.svg", "cards-2.svg", "cards-3.svg", "cards-10.svg"] {
            std::fs::write(dir.path().join(file), "<svg/>").unwrap();
        }
        for other in ["cards-x.svg", "cards-4.pdf", "other-5.svg", "cards.svg"] {
            std::fs::write(dir.path().join(other), "").unwrap();
        }
        let stem = dir.path().join("cards");
        let named = |path: &str| dir.path().join(path).display().to_string();
        assert_eq!(
            pages_beyond(&stem, 2),
            vec![named("cards-3.svg"), named("cards-10.svg")]
        );
        assert!(pages_beyond(&stem, 10).is_empty());
    }
}
