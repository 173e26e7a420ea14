//! `coledger bench disburse`: enrol N households from a CSV file, then pay all of them in
//! one disbursement run, on a durable SQLite file (WAL, synchronous=FULL). Each repetition
//! uses a fresh database; medians are reported. Targets (issue 4): 100,000 households paid
//! in at most 2 s, 100,000 CSV rows enrolled in at most 3 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ledger::{Unit, UnitCode, UnitKind};
use wallet_api::cards::{CardPrefix, KdfParams, ServerSecret};
use wallet_api::enrolment::{EnrolmentRules, synthetic_enrolment_csv};
use wallet_api::programme::disburse::{RunKind, RunOptions, monthly_period_of};
use wallet_api::programme::{
    AmountRule, CardSettings, NewProgramme, ProgrammeRules, Programmes, Schedule,
};
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

use crate::config::BenchDisburseArgs;

struct Timings {
    parse_and_enrol: Duration,
    disburse: Duration,
}

async fn once(households: usize, dir: &std::path::Path, round: usize) -> Result<Timings> {
    let url = format!(
        "sqlite://{}",
        dir.join(format!("disburse-{round}.db")).display()
    );
    let db = Database::connect(&url).await?;
    db.migrate().await?;
    let clock: Arc<dyn wallet_api::Clock> = Arc::new(SystemClock);
    let (committer, mut task) =
        Committer::start(db.clone(), CommitterConfig::default(), clock.clone()).await?;
    let unit = UnitCode::new("BENCH-EUR")?;
    committer
        .add_unit(Unit::new(
            unit,
            "Bench voucher",
            2,
            UnitKind::Voucher,
            Some("EUR"),
        )?)
        .await?;
    let programmes = Programmes::new(
        db.clone(),
        committer.clone(),
        clock,
        ServerSecret::generate(&mut rand::rngs::OsRng),
        CardSettings {
            prefix: CardPrefix::parse("990001")?,
            kdf: KdfParams::for_tests(),
            lock_after: 3,
        },
    );
    let areas: Vec<String> = ["Centro", "Norte", "Sur", "Este", "Oeste"]
        .map(str::to_owned)
        .to_vec();
    let languages: Vec<String> = ["es", "ar", "el", "pt", "en", "fr"]
        .map(str::to_owned)
        .to_vec();
    let (programme, _) = programmes
        .create(NewProgramme {
            name: "Bench minimum income".into(),
            unit,
            budget_minor: 1_000_000_000_00,
            schedule: Schedule::Monthly { day: 5 },
            areas: areas.clone(),
            languages: languages.clone(),
            rules: ProgrammeRules {
                amount: AmountRule {
                    base_minor: 300_00,
                    per_dependent_minor: 75_00,
                    cap_minor: Some(600_00),
                },
                allowed_categories: None,
                daily_cap_minor: None,
                monthly_cap_minor: None,
                expiry_days: Some(90),
                redemption_fee_basis_points: Some(150),
            },
            fee_account: None,
            debtor: None,
        })
        .await?;
    let rules = EnrolmentRules {
        areas,
        languages,
        default_language: "es".into(),
        max_dependents: 30,
    };
    let csv = synthetic_enrolment_csv(households, round as u64, &rules);

    let started = Instant::now();
    let (outcome, rejected) =
        crate::programme_cli::enrol_file(&programmes, programme.id, &csv, true).await?;
    let parse_and_enrol = started.elapsed();
    ensure!(
        outcome.created == households && rejected == 0,
        "enrolled {} of {households}",
        outcome.created
    );

    let started = Instant::now();
    let report = programmes
        .execute_run(
            programme.id,
            &monthly_period_of(wallet_api::Clock::now_ms(&SystemClock)),
            &RunKind::Monthly,
            RunOptions::default(),
            &|_| {},
        )
        .await?;
    let disburse = started.elapsed();
    ensure!(
        report.complete,
        "the run did not complete: {:?}",
        report.failed_entries
    );
    ensure!(
        report.households as usize == households,
        "paid {}",
        report.households
    );
    let budget = committer
        .view()
        .read()
        .account(programme.accounts.budget)
        .map(|a| a.balance.0)
        .context("budget account")?;
    ensure!(
        budget == -report.total_minor,
        "budget moved {budget}, run total {}",
        report.total_minor
    );

    drop(programmes);
    drop(committer);
    task.join().await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(Timings {
        parse_and_enrol,
        disburse,
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Runs the benchmark and prints the medians.
pub async fn run(args: BenchDisburseArgs) -> Result<()> {
    ensure!(
        args.households > 0 && args.repeat > 0,
        "--households and --repeat must be positive"
    );
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    println!(
        "bench disburse: {} households, {} repetitions, SQLite (WAL, synchronous=FULL) in {}",
        args.households,
        args.repeat,
        dir.display()
    );
    let mut enrol = Vec::new();
    let mut pay = Vec::new();
    for round in 0..args.repeat {
        let t = once(args.households, &dir, round).await?;
        println!(
            "  round {}: enrol {:.3} s, disburse {:.3} s",
            round + 1,
            t.parse_and_enrol.as_secs_f64(),
            t.disburse.as_secs_f64()
        );
        enrol.push(t.parse_and_enrol);
        pay.push(t.disburse);
    }
    let (enrol, pay) = (median(enrol), median(pay));
    let per_s = |d: Duration| args.households as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "enrolment (CSV parse + validate + store + open accounts): median {:.3} s ({:.0} rows/s; target <= 3 s per 100k)",
        enrol.as_secs_f64(),
        per_s(enrol)
    );
    println!(
        "disbursement run (plan + sign + commit, durable): median {:.3} s ({:.0} households/s; target <= 2 s per 100k)",
        pay.as_secs_f64(),
        per_s(pay)
    );
    Ok(())
}
