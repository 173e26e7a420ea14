//! `coledger torture soak`: a steady load (half the measured capacity unless told) held for
//! a long time, watching the service's resident memory and latency window by window.
//!
//! Memory must stay flat: the service keeps balances and the last minute's intents and
//! payments in memory and leaves the rest of the journal to storage (see `ledger::book`'s
//! `recent` module), so resident memory may grow with the number of accounts but not with
//! the number of payments. The soak fails if memory grows more than [`MAX_GROWTH_PCT`] after
//! warm-up, and reports the growth per payment so that a slow leak is visible even when
//! it stays under that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ledger::{Action, Amount, UnitCode};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tokio::sync::{Mutex, watch};

use super::server::Server;
use super::workload::{self, Bank, Outcome, UNIT};

/// Length of one measurement window.
const WINDOW: Duration = Duration::from_secs(10);

/// Windows after the memory warm-up needed before growth is judged.
const MIN_WINDOWS_FOR_MEMORY: usize = 10;

/// Resident-memory growth after warm-up above which the soak fails (issue 7: under 10 %).
pub const MAX_GROWTH_PCT: f64 = 10.0;

/// One window's figures.
struct Window {
    rss_kib: u64,
    answered: usize,
    errors: usize,
    p99_ms: f64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn p99(latencies: &mut [f64]) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_by(f64::total_cmp);
    let index = (latencies.len() * 99 / 100).min(latencies.len() - 1);
    latencies[index]
}

/// Runs `rate` payments per second from `clients` paced clients for `duration`.
pub async fn soak(
    server: &Server,
    bank: Arc<Bank>,
    rate: f64,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Result<()> {
    let pid = server.pid().unwrap_or(0);
    let (_publish, address) = watch::channel(vec![server.address.clone()]);
    let latencies: Arc<Mutex<(Vec<f64>, usize)>> = Arc::default();
    let stop = Instant::now() + duration;
    let per_client = Duration::from_secs_f64(clients as f64 / rate.max(0.1));
    let unit = UnitCode::new(UNIT)?;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (bank, address, latencies) = (bank.clone(), address.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha20Rng::seed_from_u64(seed.wrapping_add(c as u64));
            let mut tick = tokio::time::interval(per_client);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let n = bank.accounts.len();
            while Instant::now() < stop {
                tick.tick().await;
                let from = rng.gen_range(0..n);
                let to = (from + rng.gen_range(1..n)) % n;
                // Small amounts, so funds rarely run out over a long run.
                let amount = rng.gen_range(1..=100);
                let (payer, key) = &bank.accounts[from];
                let intent = workload::sign(
                    key,
                    Action::Payment {
                        from: *payer,
                        to: bank.accounts[to].0,
                        unit,
                        amount_minor: Amount::from_minor(amount)?,
                        memo: String::new(),
                        request: None,
                    },
                )?;
                let sent = Instant::now();
                let (outcome, _) =
                    workload::deliver(&intent.to_json(), &address, stop + Duration::from_secs(30))
                        .await;
                let took_ms = sent.elapsed().as_secs_f64() * 1000.0;
                let mut seen = latencies.lock().await;
                match outcome {
                    Outcome::Acknowledged(_) | Outcome::Refused(_) => seen.0.push(took_ms),
                    Outcome::Unknown | Outcome::Anomaly(_) => seen.1 += 1,
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut windows = Vec::new();
    let started = Instant::now();
    println!("window  elapsed  answered  errors  p99 ms  RSS MiB");
    while Instant::now() < stop {
        tokio::time::sleep(WINDOW.min(stop.saturating_duration_since(Instant::now()))).await;
        let (mut done, errors) = {
            let mut seen = latencies.lock().await;
            (std::mem::take(&mut seen.0), std::mem::take(&mut seen.1))
        };
        let window = Window {
            rss_kib: rss_kib(pid),
            answered: done.len(),
            errors,
            p99_ms: p99(&mut done),
        };
        println!(
            "{:>6}  {:>6.0}s  {:>8}  {:>6}  {:>6.1}  {:>7.1}",
            windows.len() + 1,
            started.elapsed().as_secs_f64(),
            window.answered,
            window.errors,
            window.p99_ms,
            window.rss_kib as f64 / 1024.0
        );
        windows.push(window);
    }
    for task in tasks {
        task.await??;
    }
    report(&windows)
}

/// Windows before the Book's memory reaches its steady size: it keeps recent intents and
/// payments in two generations of `remember_for` each (see `ledger::book::recent`), so it grows
/// for two of them, by design, before it starts dropping a generation per window's worth.
fn book_fill_windows() -> usize {
    let fill = wallet_api::CommitterConfig::default()
        .remember_for
        .saturating_mul(2);
    usize::try_from(fill.as_secs().div_ceil(WINDOW.as_secs())).unwrap_or(usize::MAX)
}

fn report(windows: &[Window]) -> Result<()> {
    if windows.len() < 3 {
        bail!("the soak needs at least three {WINDOW:?} windows; give a longer --duration");
    }
    // The first fifth is warm-up (allocator, caches, connection pools); for memory, at least
    // until the Book's generations are full, plus one window.
    let warm = (windows.len() / 5).max(1);
    let memory_warm = warm.max(book_fill_windows().saturating_add(1));
    let judge_memory = windows.len() >= memory_warm.saturating_add(MIN_WINDOWS_FOR_MEMORY);
    let after_warm_up = &windows[memory_warm.min(windows.len()) - 1];
    let last = &windows[windows.len() - 1];
    let entries: usize = windows[memory_warm.min(windows.len())..]
        .iter()
        .map(|w| w.answered)
        .sum();
    let growth_kib = last.rss_kib.saturating_sub(after_warm_up.rss_kib);
    let growth_pct = 100.0 * growth_kib as f64 / after_warm_up.rss_kib.max(1) as f64;
    let per_entry = growth_kib as f64 * 1024.0 / entries.max(1) as f64;
    let errors: usize = windows.iter().map(|w| w.errors).sum();
    let mut p99s: Vec<f64> = windows[warm..].iter().map(|w| w.p99_ms).collect();
    p99s.sort_by(f64::total_cmp);
    let median_p99 = p99s[p99s.len() / 2];
    let worst_p99 = p99s[p99s.len() - 1];
    println!(
        "after warm-up: RSS {:.1} -> {:.1} MiB ({growth_pct:+.1} %), {per_entry:.0} bytes per answered payment \
         over {entries} payments; p99 median {median_p99:.1} ms, worst window {worst_p99:.1} ms; errors {errors}",
        after_warm_up.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
    );
    if errors > 0 {
        bail!("FAIL: {errors} payments got no answer or a wrong one");
    }
    if !judge_memory {
        println!(
            "memory not judged: it needs {MIN_WINDOWS_FOR_MEMORY} windows after the first \
             {memory_warm} (the Book's two generations of recent intents fill for the first \
             {} windows, and caches such as SQLite's 64 MiB page cache fill meanwhile)",
            book_fill_windows()
        );
    } else if growth_pct > MAX_GROWTH_PCT {
        bail!(
            "FAIL: memory grew {growth_pct:.1} % after warm-up (limit {MAX_GROWTH_PCT} %), \
             {per_entry:.0} bytes per payment"
        );
    }
    if worst_p99 > 4.0 * median_p99.max(5.0) {
        bail!(
            "FAIL: latency not stable: a window's p99 was {worst_p99:.1} ms against a median of {median_p99:.1} ms"
        );
    }
    println!("PASS");
    Ok(())
}
