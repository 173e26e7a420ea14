//! `coledger torture bank | crash`: the bank workload (a Jepsen-style bank test of our own)
//! against a real `coledger serve`, optionally SIGKILLed at random moments and restarted
//! (sometimes again while it is still loading), then a checker that proves no acknowledged
//! payment was lost or duplicated and no money created. Prints what it did and the verdict;
//! exits non-zero if anything did not hold. `coledger torture promote` does the same to
//! PostgreSQL itself: a primary with a synchronous standby, the primary killed and the
//! standby promoted under load.

mod check;
mod pgpair;
mod server;
mod soak;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;

use crate::config::TortureArgs;
use server::Server;

/// After the run ends, clients keep retrying unanswered payments this long.
const SETTLE: Duration = Duration::from_secs(60);

/// `coledger torture bank`: the workload with no faults.
pub async fn bank(args: TortureArgs) -> Result<()> {
    run(args, Faults::None).await
}

/// `coledger torture crash`: the workload while the service is killed and restarted.
pub async fn crash(args: TortureArgs) -> Result<()> {
    run(args, Faults::Crash).await
}

/// `coledger torture failover`: two service processes on one database; the writer is
/// killed again and again and the standby takes over.
pub async fn failover(args: TortureArgs) -> Result<()> {
    run(args, Faults::Failover).await
}

/// `coledger torture promote`: PostgreSQL itself fails over. A primary with a synchronous
/// standby (started here), one service given both; the primary is SIGKILLed mid-load and the
/// standby promoted, `--kills` times (the dead primary rebuilt as the new standby between).
pub async fn promote(args: TortureArgs) -> Result<()> {
    if args.database_url.is_some() {
        bail!(
            "torture promote starts its own PostgreSQL primary and standby, so it takes no \
             --database-url (unset COLEDGER_TORTURE_DATABASE_URL)"
        );
    }
    if args.accounts < 2 || args.clients == 0 || args.kills == 0 {
        bail!("--accounts must be at least 2, --clients at least 1 and --kills at least 1");
    }
    let mut pair = pgpair::Pair::start()
        .await
        .context("starting a PostgreSQL primary and standby")?;
    pair.create_database(PROMOTE_DATABASE).await?;
    let url = pair.url_all(PROMOTE_DATABASE);
    let token = set_up_database(&url).await?;
    let (primary_port, standby_port) = pair.ports();
    println!(
        "torture promote: {} accounts, {} clients, {} s, {} promotions; PostgreSQL primary on \
         127.0.0.1:{primary_port}, synchronous standby on 127.0.0.1:{standby_port}; the service \
         is given {url}",
        args.accounts, args.clients, args.duration_s, args.kills
    );
    let server = Server::start(&url).await?;
    let bank = Arc::new(workload::set_up(&server.address, &token, args.accounts, args.seed).await?);
    let (_publish, address) = watch::channel(vec![server.address.clone()]);
    let started = Instant::now();
    let stop = started + Duration::from_secs(args.duration_s);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(workload::client(
                bank.clone(),
                address.clone(),
                args.seed.wrapping_add(1 + i as u64),
                stop,
                stop + SETTLE,
            ))
        })
        .collect();

    // Evenly spaced, so there is load before the first kill and after the last.
    let spacing = Duration::from_secs(args.duration_s) / (args.kills as u32 + 1);
    let mut promotions: Vec<Promotion> = Vec::new();
    let mut probes = Vec::new();
    for round in 1..=args.kills {
        tokio::time::sleep_until((started + spacing * round as u32).into()).await;
        if Instant::now() + spacing / 2 >= stop {
            println!(
                "promotion {round} not done: under {:.1} s of load was left",
                (spacing / 2).as_secs_f64()
            );
            break;
        }
        let mut rebuilt = None;
        if round > 1 {
            // The standby the previous round left is the dead primary rebuilt: synchronous
            // again only once it has caught up, so only then may the primary die.
            let rebuilding = Instant::now();
            pair.rebuild_standby()
                .await
                .context("rebuilding the old primary as a standby")?;
            rebuilt = Some(rebuilding.elapsed());
        }
        // A round that rebuilding pushed late would leave no load to measure the failover by
        // (the service reloads the whole ledger first, which takes seconds once it is big).
        if Instant::now() + spacing / 2 >= stop {
            println!(
                "promotion {round} not done: under {:.1} s of load was left",
                (spacing / 2).as_secs_f64()
            );
            break;
        }
        let killed = Instant::now();
        pair.kill_primary().await?;
        // A payment sent the moment the primary is dead and retried until answered: its
        // acknowledgement can only come from the promoted server, and its time is the
        // failover as a client sees it (however long the rest of the load lasts).
        let probe = tokio::spawn(probe(
            bank.clone(),
            address.clone(),
            round,
            Instant::now() + Duration::from_secs(120),
        ));
        pair.promote().await?;
        let promoted = killed.elapsed();
        let (attempts, answered) = probe.await.context("the probe panicked")??;
        let resumed = answered.map(|at| at.duration_since(killed));
        if resumed.is_none() {
            bail!(
                "FAIL: a payment sent after the kill was not acknowledged by the promoted \
                 server: {:?}",
                attempts.last().map(|a| &a.outcome)
            );
        }
        probes.extend(attempts);
        promotions.push(Promotion {
            killed,
            promoted,
            resumed,
            rebuilt,
        });
    }
    let mut attempts = probes;
    for client in clients {
        attempts.extend(client.await.context("a client panicked")??);
    }
    let elapsed = started.elapsed();
    server
        .stop()
        .await
        .context("stopping the service cleanly")?;

    // The checker reads the promoted server alone: whatever was acknowledged must be there.
    let (mut verdict, balances) =
        check::check(&pair.url_primary(PROMOTE_DATABASE), &bank, &attempts).await?;
    let restarted = Server::start(&url).await?;
    verdict.api_mismatches =
        check::api_balances_match(&restarted.address, &token, &balances).await?;
    restarted.stop().await?;

    let mut faults = Vec::new();
    for (n, promotion) in promotions.iter().enumerate() {
        faults.push(format!(
            "promotion {}: primary SIGKILLed at {:.1} s, standby promoted {:.3} s later, \
             first write acknowledged {} after the kill",
            n + 1,
            promotion.killed.duration_since(started).as_secs_f64(),
            promotion.promoted.as_secs_f64(),
            promotion
                .resumed
                .map_or("never".to_owned(), |d| format!("{:.3} s", d.as_secs_f64()))
        ));
        if let Some(rebuilt) = promotion.rebuilt {
            faults.push(format!(
                "  (before it, the old primary was rebuilt as a synchronous standby in {:.1} s)",
                rebuilt.as_secs_f64()
            ));
        }
    }
    faults.push(format!(
        "faults: {} SIGKILLs of the PostgreSQL primary, {} promotions of its standby",
        promotions.len(),
        promotions.len()
    ));
    report(&verdict, elapsed, &faults)
}

/// The database `torture promote` creates on its PostgreSQL pair.
const PROMOTE_DATABASE: &str = "torture";

/// One failover of PostgreSQL.
struct Promotion {
    /// When the primary was killed.
    killed: Instant,
    /// From the kill until `pg_ctl promote` returned.
    promoted: Duration,
    /// From the kill until a payment sent just after it was acknowledged.
    resumed: Option<Duration>,
    /// How long rebuilding the standby took before this round (none before the first).
    rebuilt: Option<Duration>,
}

/// A payment sent now and retried until answered (or `give_up`), as a client would: the
/// moment it is acknowledged (`None` if never), with every attempt made. Should the payer
/// lack even the smallest amount, the next account pays instead.
async fn probe(
    bank: Arc<workload::Bank>,
    address: watch::Receiver<Vec<String>>,
    round: usize,
    give_up: Instant,
) -> Result<(Vec<workload::Attempt>, Option<Instant>)> {
    let n = bank.accounts.len();
    let amount = 1;
    let mut attempts = Vec::new();
    for k in 0..n {
        let (from, to) = ((round + k) % n, (round + k + 1) % n);
        let intent = workload::sign(
            &bank.accounts[from].1,
            ledger::Action::Payment {
                from: bank.accounts[from].0,
                to: bank.accounts[to].0,
                unit: ledger::UnitCode::new(workload::UNIT)?,
                amount_minor: ledger::Amount::from_minor(amount)?,
                memo: String::new(),
                request: None,
            },
        )?;
        let (outcome, tries) = workload::deliver(&intent.to_json(), &address, give_up).await;
        let answered = Instant::now();
        let acknowledged = matches!(outcome, workload::Outcome::Acknowledged(_));
        let refused = matches!(outcome, workload::Outcome::Refused(_));
        attempts.push(workload::Attempt {
            intent_id: intent.intent().intent_id,
            from,
            to,
            amount,
            outcome,
            tries,
        });
        if acknowledged {
            return Ok((attempts, Some(answered)));
        }
        if !refused {
            break; // unknown or an anomaly: the checker and the caller will say
        }
    }
    Ok((attempts, None))
}

/// `coledger torture soak`: a steady load for a long time, watching memory and latency.
pub async fn soak(args: TortureArgs) -> Result<()> {
    let (_scratch, url, token) = prepare(&args).await?;
    let server = Server::start(&url).await?;
    let bank = Arc::new(workload::set_up(&server.address, &token, args.accounts, args.seed).await?);
    let rate = match args.rate {
        Some(rate) => rate,
        None => {
            // Capacity: closed-loop clients as fast as they go, for ten seconds.
            let (_publish, address) = watch::channel(vec![server.address.clone()]);
            let stop = Instant::now() + Duration::from_secs(10);
            let started = Instant::now();
            let mut done = 0usize;
            let clients: Vec<_> = (0..args.clients)
                .map(|i| {
                    tokio::spawn(workload::client(
                        bank.clone(),
                        address.clone(),
                        args.seed.wrapping_add(1000 + i as u64),
                        stop,
                        stop + SETTLE,
                    ))
                })
                .collect();
            for client in clients {
                done += client.await??.len();
            }
            let capacity = done as f64 / started.elapsed().as_secs_f64();
            println!("measured capacity: {capacity:.0} payments/s; soaking at half");
            capacity / 2.0
        }
    };
    println!(
        "soak: {rate:.0} payments/s from {} clients for {} s",
        args.clients, args.duration_s
    );
    let outcome = soak::soak(
        &server,
        bank,
        rate,
        args.clients,
        Duration::from_secs(args.duration_s),
        args.seed,
    )
    .await;
    server.stop().await?;
    outcome
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faults {
    None,
    Crash,
    Failover,
}

/// The database to torture (a fresh SQLite file unless one is given; the directory lives as
/// long as the returned guard), migrated, with an admin token for setting it up.
async fn prepare(args: &TortureArgs) -> Result<(tempfile::TempDir, String, String)> {
    let scratch = tempfile::tempdir()?;
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", scratch.path().join("torture.db").display()),
    };
    let token = set_up_database(&url).await?;
    Ok((scratch, url, token))
}

/// Migrates the database and issues an admin token for setting it up.
async fn set_up_database(url: &str) -> Result<String> {
    let db = wallet_api::Database::connect(url)
        .await
        .with_context(|| format!("connecting to {}", wallet_api::db::redact(url)))?;
    db.migrate().await?;
    let token = crate::token::issue(&db, wallet_api::auth::Role::Admin, None, "torture").await?;
    db.close().await;
    Ok(token)
}

/// The index of the server whose `/readyz` answers 200.
async fn find_writer(servers: &[Server]) -> Option<usize> {
    for (index, server) in servers.iter().enumerate() {
        let ready = crate::http_client::request(
            &server.address,
            "GET",
            "/readyz",
            None,
            None,
            Duration::from_secs(2),
        )
        .await;
        if ready.is_ok_and(|r| r.status == 200) {
            return Some(index);
        }
    }
    None
}

async fn run(args: TortureArgs, faults: Faults) -> Result<()> {
    let crashes = faults != Faults::None;
    if args.accounts < 2 || args.clients == 0 {
        bail!("--accounts must be at least 2 and --clients at least 1");
    }
    let (_scratch, url, token) = prepare(&args).await?;
    let redacted = wallet_api::db::redact(&url);
    println!(
        "torture {}: {} accounts, {} clients, {} s{} on {redacted}",
        match faults {
            Faults::None => "bank",
            Faults::Crash => "crash",
            Faults::Failover => "failover",
        },
        args.accounts,
        args.clients,
        args.duration_s,
        if crashes {
            format!(", {} kills", args.kills)
        } else {
            String::new()
        }
    );
    let first = Server::start(&url).await?;
    let bank = Arc::new(workload::set_up(&first.address, &token, args.accounts, args.seed).await?);
    let mut servers = vec![first];
    if faults == Faults::Failover {
        let standby = Server::start(&url).await?;
        if standby.active {
            bail!("the second process became a writer while the first held the lease");
        }
        servers.push(standby);
    }
    let addresses = |servers: &[Server]| {
        servers
            .iter()
            .map(|s| s.address.clone())
            .collect::<Vec<_>>()
    };
    let (publish, address) = watch::channel(addresses(&servers));
    let started = Instant::now();
    let stop = started + Duration::from_secs(args.duration_s);
    let give_up = stop + SETTLE;
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(workload::client(
                bank.clone(),
                address.clone(),
                args.seed.wrapping_add(1 + i as u64),
                stop,
                give_up,
            ))
        })
        .collect();

    let (mut kills, mut start_kills, mut takeovers) = (0usize, 0usize, 0usize);
    if crashes && args.kills > 0 {
        let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
        // Spread the kills over the run, at random moments.
        let spacing_ms = (args.duration_s * 1000 / args.kills as u64).max(50);
        while kills < args.kills && Instant::now() < stop {
            tokio::time::sleep(Duration::from_millis(
                rng.gen_range(spacing_ms / 4..=spacing_ms),
            ))
            .await;
            // Kill the writer: the process whose /readyz says ready.
            let Some(writer) = find_writer(&servers).await else {
                continue; // a takeover is still loading; try at the next moment
            };
            servers.remove(writer).kill().await?;
            kills += 1;
            // Every third time, kill a starting process again while it loads the ledger.
            if faults == Faults::Crash && kills % 3 == 0 {
                Server::kill_during_start(&url, Duration::from_millis(rng.gen_range(5..150)))
                    .await?;
                start_kills += 1;
            }
            if faults == Faults::Failover {
                // The standby must take over on its own before the killed one comes back.
                let deadline = Instant::now() + Duration::from_secs(60);
                while find_writer(&servers).await.is_none() {
                    if Instant::now() > deadline {
                        bail!("FAIL: the standby did not take over within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                takeovers += 1;
            }
            let restarted = Server::start(&url)
                .await
                .context("restarting after a kill")?;
            servers.push(restarted);
            publish.send_replace(addresses(&servers));
        }
    }
    let mut attempts = Vec::new();
    for client in clients {
        attempts.extend(client.await.context("a client panicked")??);
    }
    let elapsed = started.elapsed();
    for running in servers {
        running
            .stop()
            .await
            .context("stopping the service cleanly")?;
    }

    let (mut verdict, balances) = check::check(&url, &bank, &attempts).await?;
    let restarted = Server::start(&url).await?;
    verdict.api_mismatches =
        check::api_balances_match(&restarted.address, &token, &balances).await?;
    restarted.stop().await?;

    let faults = match faults {
        Faults::None => vec![],
        Faults::Crash => vec![format!(
            "faults: {kills} SIGKILLs while serving, {start_kills} more during start-up recovery"
        )],
        Faults::Failover => vec![format!(
            "faults: {kills} SIGKILLs of the writer, {takeovers} takeovers by the standby"
        )],
    };
    report(&verdict, elapsed, &faults)
}

/// Prints what the run did, the faults and the checker's verdict; fails unless it passed.
fn report(verdict: &check::Verdict, elapsed: Duration, faults: &[String]) -> Result<()> {
    println!(
        "ran {:.1} s: {} payments attempted in {} requests; {} acknowledged, {} refused by the rules, \
         {} unknown at the end ({} of them applied)",
        elapsed.as_secs_f64(),
        verdict.attempted,
        verdict.requests,
        verdict.acknowledged,
        verdict.refused,
        verdict.unknown,
        verdict.unknown_applied
    );
    for line in faults {
        println!("{line}");
    }
    println!(
        "journal: {} entries; hash chain and invariants verified on load",
        verdict.journal_entries
    );
    println!(
        "lost: {}, duplicated: {}, created: {}, balance mismatches: {}, API mismatches: {}, anomalies: {}",
        verdict.lost,
        verdict.duplicated,
        verdict.created,
        verdict.balance_mismatches,
        verdict.api_mismatches,
        verdict.anomalies.len()
    );
    for anomaly in verdict.anomalies.iter().take(5) {
        println!("  anomaly: {anomaly}");
    }
    if verdict.acknowledged == 0 {
        bail!("FAIL: nothing was acknowledged, so nothing was tested");
    }
    if !verdict.passed() {
        bail!("FAIL: the checker found violations (above)");
    }
    println!("PASS");
    Ok(())
}
