//! Prometheus metrics (text exposition format 0.0.4), kept by hand: a counter and a latency
//! histogram per route, method and status class, plus the committer's figures. A metrics
//! crate would add a registry and macros for a dozen series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::committer::{BATCH_SIZE_BUCKETS, WRITE_TIME_BUCKETS_MICROS, WriteState};

/// Latency bucket bounds, in seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_s: f64,
    buckets: [u64; LATENCY_BUCKETS_S.len()],
}

/// One route's series, by (method, status).
type ByMethodStatus = BTreeMap<(&'static str, u16), Series>;

/// Request counts and latencies.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// By route, then (method, status). Looked up by `&str`, so a known route costs no
    /// allocation per request.
    series: Mutex<BTreeMap<String, ByMethodStatus>>,
}

impl HttpMetrics {
    /// Records one answered request. `route` is the matched route template, so ids in
    /// paths do not explode the number of series.
    pub fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            _ => "OTHER",
        };
        let seconds = took.as_secs_f64();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !series.contains_key(route) {
            series.insert(route.to_owned(), BTreeMap::new());
        }
        let Some(by_route) = series.get_mut(route) else {
            return;
        };
        let entry = by_route.entry((method, status)).or_default();
        entry.count = entry.count.saturating_add(1);
        entry.sum_s += seconds;
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&b| seconds <= b) {
            entry.buckets[i] = entry.buckets[i].saturating_add(1);
        }
    }

    fn render(&self, out: &mut String) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.push_str(
            "# HELP coledger_http_requests_total Requests answered, by route, method and status.\n",
        );
        out.push_str("# TYPE coledger_http_requests_total counter\n");
        let flat: Vec<(&str, &str, u16, &Series)> = series
            .iter()
            .flat_map(|(route, by)| {
                by.iter()
                    .map(move |((method, status), s)| (route.as_str(), *method, *status, s))
            })
            .collect();
        for &(route, method, status, s) in &flat {
            let _ = writeln!(
                out,
                "coledger_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP coledger_http_request_duration_seconds Time to answer, by route and method.\n",
        );
        out.push_str("# TYPE coledger_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for &(route, method, _, s) in &flat {
            let merged = by_route.entry((route, method)).or_default();
            merged.count = merged.count.saturating_add(s.count);
            merged.sum_s += s.sum_s;
            for (m, b) in merged.buckets.iter_mut().zip(s.buckets) {
                *m = m.saturating_add(b);
            }
        }
        for ((route, method), s) in &by_route {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            let mut cumulative = 0u64;
            for (bound, n) in LATENCY_BUCKETS_S.iter().zip(s.buckets) {
                cumulative = cumulative.saturating_add(n);
                let _ = writeln!(
                    out,
                    "coledger_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "coledger_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "coledger_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_s
            );
            let _ = writeln!(
                out,
                "coledger_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
    )
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    let stats = state.committer.stats();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    counter(
        &mut out,
        "coledger_entries_committed_total",
        "Journal entries committed.",
        stats.entries.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "coledger_intents_rejected_total",
        "Intents refused by the ledger's rules.",
        stats.rejected.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "coledger_committer_queue_depth",
        "Requests waiting for the writer.",
        u64::try_from(state.committer.queue_depth()).unwrap_or(u64::MAX),
    );
    gauge(
        &mut out,
        "coledger_payment_requests_kept",
        "Payment requests the writer keeps in memory (paid or cancelled, and still payable).",
        stats.requests_kept.load(Ordering::Relaxed),
    );
    // One series per state, 1 for the current one: alert on storage-full before users call.
    let current = stats.write_state();
    out.push_str(
        "# HELP coledger_write_state How the latest ledger write went (1 for the current state).\n\
         # TYPE coledger_write_state gauge\n",
    );
    for state in [
        WriteState::Ok,
        WriteState::StorageFull,
        WriteState::StorageUnavailable,
    ] {
        let _ = writeln!(
            out,
            "coledger_write_state{{state=\"{}\"}} {}",
            state.as_str(),
            u8::from(state == current)
        );
    }
    histogram(
        &mut out,
        "coledger_committer_batch_size",
        "Entries per committed batch.",
        &stats.batch_sizes,
        |i| BATCH_SIZE_BUCKETS.get(i).map(u64::to_string),
        stats.entries.load(Ordering::Relaxed) as f64,
    );
    // The mean is sum over count, and a rising mean at a steady batch size is storage
    // slowing down (disk, checkpoints, lock waits); the buckets show single stalls.
    histogram(
        &mut out,
        "coledger_committer_write_seconds",
        "Time from BEGIN to COMMIT of each committed batch (PostgreSQL: including the wait for \
         the batch before).",
        &stats.write_times,
        |i| {
            WRITE_TIME_BUCKETS_MICROS
                .get(i)
                .map(|&us| (us as f64 / 1e6).to_string())
        },
        stats.write_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    let keys = state.verifier.signer_keys();
    counter(
        &mut out,
        "coledger_verifier_intents_total",
        "Signed intents received by the signature verifier.",
        state.verifier.stats().intents.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "coledger_verifier_batches_total",
        "Batches the signature verifier checked; intents over batches is the mean batch, and the \
         larger it is the less each signature costs.",
        state.verifier.stats().batches.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "coledger_verifier_signer_key_hits_total",
        "Intents whose signer's key was found decoded already (see docs/operations.md, Memory).",
        keys.hits(),
    );
    gauge(
        &mut out,
        "coledger_verifier_signer_keys",
        "Signers' decoded keys kept by the verifier.",
        u64::try_from(keys.len()).unwrap_or(u64::MAX),
    );
    if let Some(checkpoints) = &state.checkpoints {
        let stats = checkpoints.stats();
        counter(
            &mut out,
            "coledger_checkpoints_signed_total",
            "Journal checkpoints signed and stored.",
            stats.signed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "coledger_checkpoints_failed_total",
            "Signings of journal checkpoints that failed.",
            stats.failures.load(Ordering::Relaxed),
        );
        let last_ms = stats.last_success_ms.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP coledger_checkpoints_last_success_timestamp_seconds When the service's own \
             signing last succeeded (its start until then); alert when older than twice the interval.\n\
             # TYPE coledger_checkpoints_last_success_timestamp_seconds gauge\n\
             coledger_checkpoints_last_success_timestamp_seconds {}",
            last_ms as f64 / 1e3
        );
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A Prometheus histogram from per-bucket (not cumulative) `counts`; `upper(i)` is bucket
/// `i`'s upper bound as printed, `None` for the last (+Inf).
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    counts: &[AtomicU64],
    upper: impl Fn(usize) -> Option<String>,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, bucket) in counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(bucket.load(Ordering::Relaxed));
        let le = upper(i).unwrap_or_else(|| "+Inf".to_owned());
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
}
