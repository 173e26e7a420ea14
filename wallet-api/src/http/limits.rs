//! Configurable limits: body size, page size, request time, and per-caller write rates.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use foldhash::{HashMap, HashMapExt as _};

use super::problem::Problem;

/// Limits of the HTTP API; the defaults suit a pilot.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Items per page when the client does not say.
    pub default_page: u32,
    /// Most items per page a client may ask for.
    pub max_page: u32,
    /// A request taking longer is answered 503 (SSE streams are exempt).
    pub request_timeout: Duration,
    /// Sustained writes per second per caller (token, session, or signing key).
    pub writes_per_second: f64,
    /// Writes a caller may burst above the sustained rate.
    pub write_burst: f64,
    /// Event streams open at once, all callers together; beyond it a new one gets 503.
    /// Each holds a connection (a file descriptor) and is woken by every commit.
    pub max_event_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            default_page: 50,
            max_page: 500,
            request_timeout: Duration::from_secs(10),
            writes_per_second: 50.0,
            write_burst: 200.0,
            max_event_streams: 10_000,
        }
    }
}

impl ApiConfig {
    /// The page size for a request: the default, or what was asked within bounds.
    pub fn page_limit(&self, asked: Option<u32>) -> Result<u32, Problem> {
        match asked {
            None => Ok(self.default_page),
            Some(n) if n >= 1 && n <= self.max_page => Ok(n),
            Some(n) => Err(Problem::invalid_field(
                "limit",
                format!("limit must be between 1 and {} (got {n})", self.max_page),
            )),
        }
    }
}

/// Callers tracked before idle (refilled) buckets are dropped.
const MAX_TRACKED: usize = 100_000;

/// Token buckets per caller key.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` sustained and `burst` at once, per key.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the bucket of the key that signed an intent, or says how long
    /// to wait. The key is written on the stack: this runs for every payment.
    pub fn check_signer(&self, signer: &ledger::PublicKey, now_ms: i64) -> Result<(), Problem> {
        const PREFIX: &[u8] = b"signer:";
        // 32 bytes are always 43 characters of unpadded base64url: the buffer is exactly full.
        let mut key = [0u8; PREFIX.len() + 43];
        let (prefix, encoded) = key.split_at_mut(PREFIX.len());
        prefix.copy_from_slice(PREFIX);
        let _ = URL_SAFE_NO_PAD.encode_slice(signer.0, encoded);
        // Prefix and base64url are ASCII.
        self.check(std::str::from_utf8(&key).unwrap_or("signer:"), now_ms)
    }

    /// Takes one token from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), Problem> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, last)| refill(*tokens, *last, now_ms, rate, burst) < burst);
        }
        // A known caller costs no allocation; a new one costs its key once.
        if !buckets.contains_key(key) {
            buckets.insert(key.to_owned(), (self.burst, now_ms));
        }
        let Some(bucket) = buckets.get_mut(key) else {
            return Ok(());
        };
        let available = refill(bucket.0, bucket.1, now_ms, self.per_second, self.burst);
        *bucket = (available, now_ms);
        if available >= 1.0 {
            bucket.0 = available - 1.0;
            return Ok(());
        }
        let wait_s = if self.per_second > 0.0 {
            ((1.0 - available) / self.per_second).ceil().max(1.0)
        } else {
            60.0
        };
        Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("too many writes from this caller; retry in {wait_s} s"),
        )
        .with("retry_after_s", wait_s))
    }
}

fn refill(tokens: f64, last_ms: i64, now_ms: i64, per_second: f64, burst: f64) -> f64 {
    let elapsed_s = (now_ms.saturating_sub(last_ms).max(0) as f64) / 1000.0;
    (tokens + elapsed_s * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let limiter = RateLimiter::new(2.0, 3.0);
        for _ in 0..3 {
            assert!(limiter.check("a", 0).is_ok());
        }
        let refused = limiter.check("a", 0).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.type_uri(), "/problems/rate-limited");
        assert!(limiter.check("b", 0).is_ok(), "buckets are per key");
        assert!(
            limiter.check("a", 500).is_ok(),
            "half a second refills one at 2/s"
        );
        assert!(limiter.check("a", 500).is_err());
    }

    #[test]
    fn a_signer_is_limited_under_its_base64url_key() {
        let signer = ledger::PublicKey([7; 32]);
        let limiter = RateLimiter::new(1.0, 1.0);
        assert!(limiter.check_signer(&signer, 0).is_ok());
        // The same bucket as the key spelled out, as other callers of `check` would.
        let spelled = format!("signer:{}", signer.to_base64url());
        assert!(limiter.check(&spelled, 0).is_err());
        assert!(limiter.check_signer(&ledger::PublicKey([8; 32]), 0).is_ok());
    }
}
