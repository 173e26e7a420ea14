//! `coledger torture bank | crash`: the bank workload (a Jepsen-style bank test of our own)
//! against a real `coledger serve`, optionally SIGKILLed at random moments and restarted
//! (sometimes again while it is still loading), then a checker that proves no acknowledged
//! payment was lost or duplicated and no money created. Prints what it did and the verdict;
//! exits non-zero if anything did not hold.

mod check;
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
    let db = wallet_api::Database::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", wallet_api::db::redact(&url)))?;
    db.migrate().await?;
    let token = crate::token::issue(&db, wallet_api::auth::Role::Admin, None, "torture").await?;
    db.close().await;
    Ok((scratch, url, token))
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
    match faults {
        Faults::None => {}
        Faults::Crash => println!(
            "faults: {kills} SIGKILLs while serving, {start_kills} more during start-up recovery"
        ),
        Faults::Failover => {
            println!("faults: {kills} SIGKILLs of the writer, {takeovers} takeovers by the standby")
        }
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
