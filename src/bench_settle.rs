//! `coledger bench settle`: how long a sale takes to show as paid on the shop's screen
//! (issue 5: "confirmed on both screens within a second").
//!
//! The real router runs in this process on loopback over a fresh SQLite file (and
//! PostgreSQL when given). For each sale the "terminal" creates a payment request and opens
//! its event stream, exactly as `/terminal` does; the "wallet" then posts a signed payment
//! naming the request. Two times are taken from the wallet's send: its own answer (the
//! wallet's receipt) and the `settled` event on the terminal's stream. Sales run one after
//! another, with optional background payments from other connections, so the figure is the
//! latency a shop sees on a busy service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ledger::{Action, Amount, PaymentRequestId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wallet_api::{Committer, CommitterConfig, SystemClock, Verifier};

use crate::bench::{self, Target};
use crate::bench_api::{InProcess, load};
use crate::config::BenchSettleArgs;
use crate::http_client::request;
use crate::scheme::{Scheme, now_ms, now_s, sign};

/// Longest one call may take before the run fails.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// What each sale costs, in cents.
const SALE_MINOR: i64 = 12_50;

pub async fn run(args: BenchSettleArgs) -> Result<()> {
    if args.sales == 0 {
        bail!("--sales must be at least 1");
    }
    bench::print_machine();
    let scratch_dir =
        std::env::temp_dir().join(format!("coledger-bench-settle-{}", std::process::id()));
    std::fs::create_dir_all(&scratch_dir)?;
    let mut targets = vec![Target::Sqlite(scratch_dir.clone())];
    if let Some(url) = &args.postgres_url {
        targets.push(Target::Postgres(url.clone()));
    }
    println!(
        "sales: {} one after another; background: {} connections paying each other as fast as answered",
        args.sales, args.background_connections
    );
    println!(
        "\n{:<9} {:>10} {:>14} {:>14} {:>13} {:>13} {:>13} {:>14}",
        "database",
        "background",
        "receipt p50 ms",
        "receipt p99 ms",
        "paid p50 ms",
        "paid p99 ms",
        "paid max ms",
        "background/s"
    );
    for target in &targets {
        for background in [0, args.background_connections] {
            measure(target, &args, background).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
    Ok(())
}

async fn measure(target: &Target, args: &BenchSettleArgs, background: usize) -> Result<()> {
    // Holders 0..sales each pay one sale; the rest pay each other in the background.
    let background_payments = if background > 0 {
        args.background_payments
    } else {
        0
    };
    let scheme = Arc::new(Scheme::generate(
        "SETTLE",
        args.sales + 1_000,
        1,
        bench::SEED,
    )?);
    let (funding, payments) = bench::prepare_intents(&scheme, background_payments)?;
    // Background payments stay among the holders that make no sale, so a sale never finds
    // its payer's balance spent.
    let sellers: std::collections::HashSet<_> = scheme.holders[..args.sales]
        .iter()
        .map(|h| h.account)
        .collect();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        payments
            .iter()
            .filter(|p| match &p.intent().action {
                Action::Payment { from, to, .. } => {
                    !sellers.contains(from) && !sellers.contains(to)
                }
                _ => false,
            })
            .map(|p| load::intent_request(&p.signed().to_json()))
            .collect(),
    );
    let (db, url) = target.fresh("settle").await?;
    let (committer, mut task) = Committer::start(
        db.clone(),
        CommitterConfig::default(),
        Arc::new(SystemClock),
    )
    .await?;
    scheme.register(&committer).await?;
    bench::drive(&committer, funding, 64, None).await?;
    let token = admin_token(&db).await?;
    let verifier = Verifier::start(crate::config::default_verifier_threads())
        .context("starting the verifier")?;
    let service = InProcess::serve(&db, &committer, verifier).await?;
    let address = service.address;

    let load = (background > 0).then(|| {
        tokio::spawn(load::drive(
            address,
            requests,
            load::Shape {
                connections: background,
                rate: None,
                limit: Duration::from_secs(600),
            },
        ))
    });
    // Let the background load reach its pace before the first sale.
    if load.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let merchant = scheme.merchants[0].account;
    let (mut receipts, mut paid) = (Vec::new(), Vec::new());
    let entries = || {
        committer
            .stats()
            .entries
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (entries_before, started) = (entries(), Instant::now());
    for holder in &scheme.holders[..args.sales] {
        let address = address.to_string();
        let created = request(
            &address,
            "POST",
            "/v1/payment-requests",
            Some(&token),
            Some(&format!(
                r#"{{"account_id":"{merchant}","amount":"12.50"}}"#
            )),
            CALL_LIMIT,
        )
        .await?;
        if created.status != 201 {
            bail!(
                "creating a payment request: {} {}",
                created.status,
                created.body
            );
        }
        let id: PaymentRequestId = created.json()["id"]
            .as_str()
            .context("no request id")?
            .parse()?;
        let mut events = open_events(&address, id).await?;
        let payment = sign(
            &holder.key,
            Action::Payment {
                from: holder.account,
                to: merchant,
                unit: scheme.code(),
                amount_minor: Amount::from_minor(SALE_MINOR)?,
                memo: String::new(),
                request: Some(id),
            },
            now_s(),
        )?;
        let body = payment.signed().to_json();
        let sent = Instant::now();
        let (answer, settled) = tokio::join!(
            request(
                &address,
                "POST",
                "/v1/intents",
                None,
                Some(&body),
                CALL_LIMIT
            ),
            async {
                let seen = wait_for_settled(&mut events).await;
                (seen, sent.elapsed())
            }
        );
        let receipt = sent.elapsed();
        let answer = answer?;
        if answer.status != 201 {
            bail!("paying the request: {} {}", answer.status, answer.body);
        }
        settled.0?;
        receipts.push(micros(receipt));
        paid.push(micros(settled.1));
    }
    // Payments the background committed per second while the sales ran.
    let background_rate = (entries() - entries_before).saturating_sub(args.sales as u64) as f64
        / started.elapsed().as_secs_f64();
    if let Some(handle) = load {
        handle.abort();
        let _ = handle.await;
    }
    service.abort();
    drop(committer);
    task.join().await.map_err(anyhow::Error::msg)?;
    target.discard(db, &url).await?;
    receipts.sort_unstable();
    paid.sort_unstable();
    println!(
        "{:<9} {:>10} {:>14.2} {:>14.2} {:>13.2} {:>13.2} {:>13.2} {:>14.0}",
        target.name(),
        background,
        bench::percentile(&receipts, 0.50),
        bench::percentile(&receipts, 0.99),
        bench::percentile(&paid, 0.50),
        bench::percentile(&paid, 0.99),
        bench::percentile(&paid, 1.0),
        background_rate,
    );
    Ok(())
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

async fn admin_token(db: &wallet_api::Database) -> Result<String> {
    let issued = wallet_api::auth::issue_token(
        wallet_api::auth::Role::Admin,
        None,
        "bench settle",
        now_ms(),
    );
    db.insert_token(&issued.stored).await?;
    Ok(issued.text)
}

/// Opens a payment request's event stream and reads past the response head.
async fn open_events(address: &str, id: PaymentRequestId) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    let head = format!(
        "GET /v1/payment-requests/{id}/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    Ok(stream)
}

/// Reads the stream until its `settled` event.
async fn wait_for_settled(stream: &mut TcpStream) -> Result<()> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(CALL_LIMIT, async {
        loop {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                bail!("the event stream ended without `settled`");
            }
            seen.extend_from_slice(&buffer[..read]);
            if seen.windows(15).any(|w| w == b"event: settled\n") {
                return Ok(());
            }
        }
    })
    .await
    .context("no `settled` event within the limit")?
}
