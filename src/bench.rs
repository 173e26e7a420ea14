//! `coledger bench ledger`: the figures in BENCHMARKS.md.
//!
//! Measures, in one run so ratios are fair on a noisy machine:
//! - the Book's apply rate (pure, in memory) and the journal's hashing rate;
//! - durable payments/s through the committer on SQLite and PostgreSQL at several numbers of
//!   concurrent submitters, with p50/p99 latency from submit to durable reply;
//! - the same payments done naively (one transaction per payment, row locks) as the baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ledger::{AccountId, VerifiedIntent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wallet_api::db::{naive, scratch};
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

use crate::config::BenchLedgerArgs;

mod book;
use crate::scheme::{Scheme, now_s};

/// No single measurement runs longer than this; rates are computed over what was done.
const RUN_LIMIT: Duration = Duration::from_secs(15);
/// Opening balance of every account, in minor units; payments are 1..=100.
pub(crate) const OPENING_MINOR: i64 = 1_000_000;
pub(crate) const SEED: u64 = 7;

pub async fn ledger(args: BenchLedgerArgs) -> Result<()> {
    print_machine();
    println!(
        "accounts: {}, payments per committer run: {} (or {} s), naive: {}",
        args.accounts,
        args.payments,
        RUN_LIMIT.as_secs(),
        args.naive_payments
    );
    book::apply(&args);

    println!(
        "\npreparing {} accounts and {} signed payment intents…",
        args.accounts, args.payments
    );
    let started = Instant::now();
    let scheme = Arc::new(Scheme::generate("BENCH", args.accounts, 0, SEED)?);
    let (funding, payments) = prepare_intents(&scheme, args.payments)?;
    println!("prepared in {:.1} s", started.elapsed().as_secs_f64());
    let warm_up = if args.warm_payments > 0 {
        let started = Instant::now();
        let (_, warm_up) = prepare_intents(&scheme, args.warm_payments)?;
        println!(
            "{} more payments, committed before each committer run's clock starts so the \
             Book holds as many recent intents as a busy service: prepared in {:.1} s",
            args.warm_payments,
            started.elapsed().as_secs_f64()
        );
        warm_up
    } else {
        Arc::default()
    };

    let scratch_dir = match &args.scratch_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("coledger-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch_dir)?;
    let mut targets = vec![Target::Sqlite(scratch_dir.clone())];
    match &args.postgres_url {
        Some(url) => targets.push(Target::Postgres(url.clone())),
        None => println!("\n(no --postgres-url / COLEDGER_BENCH_POSTGRES_URL: PostgreSQL skipped)"),
    }
    println!(
        "\n{:<9} {:>10} {:>14} {:>9} {:>9} {:>10} {:>12} {:>12} {:>8}",
        "database",
        "submitters",
        "committed/s",
        "p50 ms",
        "p99 ms",
        "avg batch",
        "db µs/pay",
        "naive/s",
        "gain"
    );
    for target in &targets {
        for &submitters in &args.submitters {
            let intents = RunIntents {
                funding: &funding,
                warm_up: &warm_up,
                timed: &payments,
            };
            let run = committer_run(target, &scheme, intents, submitters).await?;
            let naive_rate =
                naive_run(target, &scheme, &payments, submitters, args.naive_payments).await?;
            println!(
                "{:<9} {:>10} {:>14.0} {:>9.2} {:>9.2} {:>10.1} {:>12.2} {:>12.0} {:>7.1}x",
                target.name(),
                submitters,
                run.rate,
                run.p50_ms,
                run.p99_ms,
                run.mean_batch,
                run.write_micros_per_entry,
                naive_rate,
                run.rate / naive_rate.max(f64::MIN_POSITIVE)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
    Ok(())
}

pub(crate) fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "machine: {cores} cores, {cpu}; build: {}",
        if cfg!(debug_assertions) {
            "DEBUG (numbers meaningless)"
        } else {
            "release"
        }
    );
}

pub(crate) type Intents = Arc<Vec<VerifiedIntent>>;

pub(crate) fn prepare_intents(scheme: &Arc<Scheme>, payments: usize) -> Result<(Intents, Intents)> {
    let now = now_s();
    let holders: Vec<AccountId> = scheme.holders.iter().map(|h| h.account).collect();
    let funding = scheme.issuance(&holders, OPENING_MINOR, "bench funding", now)?;
    // Signing and verifying is the slow part of preparing; use every core.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_thread = payments.div_ceil(threads);
    let parts: Vec<Result<Vec<VerifiedIntent>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let scheme = scheme.clone();
                s.spawn(move || {
                    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 1 + t as u64);
                    let n = scheme.holders.len();
                    (0..per_thread)
                        .map(|_| {
                            let from = rng.gen_range(0..n);
                            let to = (from + rng.gen_range(1..n)) % n;
                            scheme.payment(
                                &scheme.holders[from],
                                scheme.holders[to].account,
                                rng.gen_range(1..=100),
                                "",
                                now,
                            )
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signing thread"))
            .collect()
    });
    let mut all = Vec::with_capacity(payments);
    for part in parts {
        all.extend(part?);
    }
    all.truncate(payments);
    Ok((Arc::new(funding), Arc::new(all)))
}

pub(crate) enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Target {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    pub(crate) async fn fresh(&self, label: &str) -> Result<(Database, String)> {
        let url = match self {
            Target::Sqlite(dir) => format!(
                "sqlite://{}",
                dir.join(format!("{label}-{}.db", uuid::Uuid::now_v7().simple()))
                    .display()
            ),
            Target::Postgres(admin) => {
                scratch::create_postgres_database(admin, &format!("coledger_bench_{label}")).await?
            }
        };
        let db = Database::connect(&url)
            .await
            .with_context(|| format!("connecting to scratch {}", self.name()))?;
        db.migrate().await?;
        Ok((db, url))
    }

    pub(crate) async fn discard(&self, db: Database, url: &str) -> Result<()> {
        db.close().await;
        match self {
            Target::Sqlite(_) => {
                let path = url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm", ".writer-lease"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            Target::Postgres(admin) => scratch::drop_postgres_database(admin, url).await?,
        }
        Ok(())
    }
}

struct RunResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
    /// Lane time writing to storage per committed entry (see `CommitterStats::write_micros`).
    /// With one lane (SQLite) the committer cannot pass 1/this, however fast the rest is.
    write_micros_per_entry: f64,
}

/// What a committer run submits, in order: the opening balances, the untimed warm-up, then
/// the timed payments.
struct RunIntents<'a> {
    funding: &'a Intents,
    warm_up: &'a Intents,
    timed: &'a Intents,
}

async fn committer_run(
    target: &Target,
    scheme: &Scheme,
    intents: RunIntents<'_>,
    submitters: usize,
) -> Result<RunResult> {
    let (db, url) = target.fresh("committer").await?;
    let (committer, mut task) = Committer::start(
        db.clone(),
        CommitterConfig::default(),
        Arc::new(SystemClock),
    )
    .await?;
    scheme.register(&committer).await?;
    drive(&committer, intents.funding.clone(), 64, None).await?;
    if !intents.warm_up.is_empty() {
        drive(
            &committer,
            intents.warm_up.clone(),
            submitters.max(64),
            None,
        )
        .await?;
    }
    let batches_before = committer.stats().batches.load(Ordering::Relaxed);
    let entries_before = committer.stats().entries.load(Ordering::Relaxed);
    let write_micros_before = committer.stats().write_micros.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut latencies = drive(
        &committer,
        intents.timed.clone(),
        submitters,
        Some(started + RUN_LIMIT),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let batches = committer.stats().batches.load(Ordering::Relaxed) - batches_before;
    let entries = committer.stats().entries.load(Ordering::Relaxed) - entries_before;
    let write_micros = committer.stats().write_micros.load(Ordering::Relaxed) - write_micros_before;
    drop(committer);
    task.join().await.map_err(anyhow::Error::msg)?;
    target.discard(db, &url).await?;
    latencies.sort_unstable();
    Ok(RunResult {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        mean_batch: entries as f64 / batches.max(1) as f64,
        write_micros_per_entry: write_micros as f64 / entries.max(1) as f64,
    })
}

/// Submits `intents` from `submitters` concurrent tasks until done or `deadline`; returns
/// each committed submission's latency in microseconds.
pub(crate) async fn drive(
    committer: &Committer,
    intents: Intents,
    submitters: usize,
    deadline: Option<Instant>,
) -> Result<Vec<u32>> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..submitters)
        .map(|_| {
            let (committer, intents, next) = (committer.clone(), intents.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(intent) = intents.get(i) else { break };
                    let started = Instant::now();
                    committer.submit(intent).await?;
                    latencies
                        .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

async fn naive_run(
    target: &Target,
    scheme: &Scheme,
    payments: &Intents,
    submitters: usize,
    count: usize,
) -> Result<f64> {
    let (db, url) = target.fresh("naive").await?;
    let ids: Vec<uuid::Uuid> = scheme.holders.iter().map(|h| h.account.0).collect();
    naive::setup(&db, &ids, OPENING_MINOR).await?;
    let pairs: Arc<Vec<(uuid::Uuid, uuid::Uuid, i64)>> = Arc::new(
        payments
            .iter()
            .take(count)
            .filter_map(|p| match &p.intent().action {
                ledger::Action::Payment {
                    from,
                    to,
                    amount_minor,
                    ..
                } => Some((from.0, to.0, amount_minor.minor())),
                ledger::Action::Entry { .. } | ledger::Action::Refund { .. } => None,
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + RUN_LIMIT;
    let started = Instant::now();
    let tasks: Vec<_> = (0..submitters)
        .map(|_| {
            let (db, pairs, next) = (db.clone(), pairs.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = 0usize;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(from, to, amount)) = pairs.get(i) else {
                        break;
                    };
                    naive::pay(&db, from, to, amount).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    target.discard(db, &url).await?;
    Ok(rate)
}

pub(crate) fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[index]) / 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
