//! `coledger bench api`: signed payments per second through the whole service, the figures
//! in BENCHMARKS.md.
//!
//! The service, composed as `serve` composes it, runs in this process on loopback, over a
//! fresh database per run (SQLite always, PostgreSQL when given), with a funded scheme.
//! Payment intents are signed before the clock starts; then many HTTP/1.1 keep-alive
//! connections post them to `/v1/intents`, one at a time each. Latency is measured by the
//! client, from writing a request to reading the whole response. The load generator shares the
//! process and its cores with the service, so the CPU per payment includes the client's share.
//! Every response must be a 201: anything else is counted, printed, and fails the command, so
//! a broken run cannot pass for a fast one.

pub(crate) mod cpu;
pub(crate) mod load;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::ServiceExt as _;
use tokio::net::TcpListener;
use wallet_api::committer::WRITE_TIME_BUCKETS_MICROS;
use wallet_api::http::AppState;
use wallet_api::{Committer, CommitterConfig, SystemClock, Verifier};

use crate::bench::{self, Intents, Target};
use crate::config::BenchApiArgs;
use crate::front::Front;
use crate::scheme::Scheme;
use load::Load;

pub async fn run(args: BenchApiArgs) -> Result<()> {
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.connections.contains(&0) {
        bail!("--connections must be at least 1");
    }
    bench::print_machine();
    println!(
        "accounts: {}, payments per run: {} (or {} s), connections: {:?}, verifier threads: {}, \
         commit linger: {} ms",
        args.accounts,
        args.payments,
        args.seconds,
        args.connections,
        args.verifier_threads,
        args.commit_linger_ms
    );
    match args.rate {
        Some(rate) => println!(
            "open loop: {rate} requests/s due on a fixed schedule; latency counts from when each was due"
        ),
        None => println!(
            "closed loop: each connection sends as soon as it is answered; latency ≈ connections / throughput"
        ),
    }
    println!(
        "\npreparing {} accounts and {} signed payment intents…",
        args.accounts, args.payments
    );
    let started = Instant::now();
    let scheme = Arc::new(Scheme::generate("BENCH", args.accounts, 0, bench::SEED)?);
    let (funding, payments) = bench::prepare_intents(&scheme, args.payments)?;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        payments
            .iter()
            .map(|p| load::intent_request(&p.signed().to_json()))
            .collect(),
    );
    drop(payments);
    println!("prepared in {:.1} s", started.elapsed().as_secs_f64());

    let scratch_dir = match &args.scratch_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("coledger-bench-api-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch_dir)?;
    let mut targets = vec![Target::Sqlite(scratch_dir.clone())];
    match &args.postgres_url {
        Some(url) => targets.push(Target::Postgres(url.clone())),
        None => println!("\n(no --postgres-url / COLEDGER_BENCH_POSTGRES_URL: PostgreSQL skipped)"),
    }
    println!(
        "\n{:<9} {:>11} {:>11} {:>8} {:>8} {:>8} {:>9} {:>7} {:>12} {:>10}",
        "database",
        "connections",
        "payments/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "accepted",
        "refused",
        "CPU µs/pay",
        "avg verify"
    );
    let limit = Duration::from_secs(args.seconds);
    let mut refused = 0;
    for target in &targets {
        for &connections in &args.connections {
            let run = Run {
                target,
                scheme: &scheme,
                funding: &funding,
                requests: &requests,
                shape: load::Shape {
                    connections,
                    rate: args.rate,
                    limit,
                },
                verifier_threads: args.verifier_threads,
                commit_linger_ms: args.commit_linger_ms,
            };
            refused += run.measure().await?;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
    if refused > 0 {
        bail!("{refused} requests were not answered 201 Created: the figures above are not valid");
    }
    Ok(())
}

/// The service as `serve` runs it (front, API and pages) on a loopback port in this process,
/// with no write-rate limits: the benchmarks measure the service, not the limiter's refusals.
pub(crate) struct InProcess {
    /// Where it listens.
    pub(crate) address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    pub(crate) async fn serve(
        db: &wallet_api::Database,
        committer: &Committer,
        verifier: Verifier,
    ) -> Result<Self> {
        let limits = wallet_api::http::limits::ApiConfig {
            writes_per_second: 1e9,
            write_burst: 1e9,
            ..Default::default()
        };
        // The service as `serve` runs it, its front included.
        let front = Front::standby();
        front.activate(crate::serve::app(AppState::new(
            db.clone(),
            committer.clone(),
            Arc::new(SystemClock),
            limits,
            verifier,
        )));
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(listener, front.into_make_service())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Ok(Self {
            address,
            stop,
            server,
        })
    }

    /// Stops once open connections close.
    pub(crate) async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.server.await?.context("serving HTTP")
    }

    /// Stops now, whatever is still connected (event streams, say).
    pub(crate) fn abort(self) {
        let _ = self.stop.send(());
        self.server.abort();
    }
}

/// One measurement: a fresh database and service, one number of connections.
struct Run<'a> {
    target: &'a Target,
    scheme: &'a Scheme,
    funding: &'a Intents,
    requests: &'a Arc<Vec<Vec<u8>>>,
    shape: load::Shape,
    verifier_threads: usize,
    commit_linger_ms: u64,
}

impl Run<'_> {
    /// Runs, prints a row, and returns how many requests were not answered 201.
    async fn measure(&self) -> Result<usize> {
        let (db, url) = self.target.fresh("api").await?;
        let (committer, mut task) = Committer::start(
            db.clone(),
            CommitterConfig {
                linger: std::time::Duration::from_millis(self.commit_linger_ms),
                ..CommitterConfig::default()
            },
            Arc::new(SystemClock),
        )
        .await?;
        self.scheme.register(&committer).await?;
        bench::drive(&committer, self.funding.clone(), 64, None).await?;
        let verifier = Verifier::start(self.verifier_threads).context("starting the verifier")?;
        let service = InProcess::serve(&db, &committer, verifier.clone()).await?;
        let address = service.address;

        let entries_before = committer.stats().entries.load(Ordering::Relaxed);
        let writes_before = write_times(&committer);
        let load = load::drive(address, self.requests.clone(), self.shape).await?;
        let entries = committer.stats().entries.load(Ordering::Relaxed) - entries_before;
        let writes: Vec<u64> = write_times(&committer)
            .iter()
            .zip(&writes_before)
            .map(|(after, before)| after - before)
            .collect();
        let stats = verifier.stats();
        let mean_verify_batch = stats.intents.load(Ordering::Relaxed) as f64
            / stats.batches.load(Ordering::Relaxed).max(1) as f64;

        // The client has closed its connections, so the server stops at once.
        service.stop().await?;
        drop(committer);
        task.join().await.map_err(anyhow::Error::msg)?;
        self.target.discard(db, &url).await?;

        self.print(&load, mean_verify_batch);
        print_write_times(&writes);
        if entries != load.created_us.len() as u64 {
            bail!(
                "{} payments were answered 201 but the committer committed {entries}",
                load.created_us.len()
            );
        }
        Ok(load.refused())
    }

    fn print(&self, load: &Load, mean_verify_batch: f64) {
        let mut latencies = load.created_us.clone();
        latencies.sort_unstable();
        let accepted = latencies.len();
        let rate = accepted as f64 / load.elapsed.as_secs_f64();
        let per_payment = |cpu: Duration| cpu.as_secs_f64() * 1e6 / accepted.max(1) as f64;
        println!(
            "{:<9} {:>11} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>7} {:>12.1} {:>10.1}",
            self.target.name(),
            self.shape.connections,
            rate,
            bench::percentile(&latencies, 0.50),
            bench::percentile(&latencies, 0.99),
            bench::percentile(&latencies, 0.999),
            accepted,
            load.refused(),
            per_payment(load.cpu.total),
            mean_verify_batch,
        );
        let threads: Vec<String> = load
            .cpu
            .by_kind
            .iter()
            .filter(|(_, used)| !used.is_zero())
            .map(|(kind, used)| format!("{kind} {:.1}", per_payment(*used)))
            .collect();
        println!(
            "          CPU µs/payment by thread (client included): {}",
            threads.join(", ")
        );
        for (status, count) in &load.other_statuses {
            println!("          !! {count} responses with status {status}");
        }
        for error in &load.failed_connections {
            println!("          !! connection failed: {error}");
        }
    }
}

/// The committer's writes so far, counted by how long each took (see
/// `CommitterStats::write_times`).
fn write_times(committer: &Committer) -> Vec<u64> {
    let stats = committer.stats();
    stats
        .write_times
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect()
}

/// How long the run's writes to storage took, by bucket: slow writes are where a latency
/// tail starts (a checkpoint, a slow disk), and the mean hides them.
fn print_write_times(writes: &[u64]) {
    let bounds = WRITE_TIME_BUCKETS_MICROS;
    let buckets: Vec<String> = writes
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(i, count)| match bounds.get(i) {
            Some(bound) => format!("<= {} ms: {count}", bound / 1_000),
            None => format!("> {} ms: {count}", bounds.last().unwrap_or(&0) / 1_000),
        })
        .collect();
    println!(
        "          writes to storage by time ({} in all): {}",
        writes.iter().sum::<u64>(),
        buckets.join(", ")
    );
}
