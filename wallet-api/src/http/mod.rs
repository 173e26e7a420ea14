//! HTTP: routes, shared state and the conventions every route follows (DESIGN §9): JSON
//! under `/v1`, errors as RFC 9457 problem+json with stable types, bounded bodies, request
//! ids in every log line, metrics per route, a time limit per request.

mod accounts;
mod activation;
pub mod body;
mod cards;
mod entries;
mod events;
mod intents;
mod journal;
pub mod limits;
mod me;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod principal;
pub mod problem;
mod programmes;
mod registry;
pub mod render;
mod requests;
mod sessions;
mod transparency;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use tracing::Instrument as _;

use crate::auth::{Sessions, TokenCache};
use crate::clock::Clock;
use crate::committer::Committer;
use crate::db::Database;
use crate::verifier::Verifier;
pub use accounts::{KEY_PROOF_CONTEXT, key_proof_bytes};
pub use events::EXPIRY_GRACE_MS;
use limits::{ApiConfig, RateLimiter};
use metrics::HttpMetrics;
use problem::Problem;

/// The default largest request body, in bytes. Signed intents are far smaller (at most
/// 16 KiB); this bounds what a client can make us buffer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What handlers share: a handle, cloned for every request (axum's `State` and each
/// middleware take their own copy), so a clone is one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppParts {
    /// Service rows (participants, tokens, requests) and entry details.
    pub db: Database,
    /// Writes, and the committed view for reads.
    pub committer: Committer,
    /// Time, for expiry.
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub config: Arc<ApiConfig>,
    /// Wallet-holder sessions.
    pub sessions: Arc<Sessions>,
    /// Operator tokens last confirmed, for reads while the database is away.
    pub tokens: Arc<TokenCache>,
    /// Write rates per caller.
    pub limiter: Arc<RateLimiter>,
    /// Request counts and latencies.
    pub metrics: Arc<HttpMetrics>,
    /// Parses and verifies signed intents in batches, off the async threads.
    pub verifier: Verifier,
    /// Programmes and cards; absent when the service has no server secret.
    pub programmes: Option<crate::programme::Programmes>,
    /// Signs journal checkpoints; absent when the service has no server secret.
    pub checkpoints: Option<crate::checkpoints::Checkpointer>,
    /// The last transparency report built (see [`transparency::report`]).
    transparency: Arc<tokio::sync::Mutex<Option<transparency::CachedReport>>>,
    /// Turns true when the service begins shutting down: event streams end then, so
    /// graceful shutdown is not held open by them.
    stopping: tokio::sync::watch::Sender<bool>,
    /// One permit per open event stream ([`ApiConfig::max_event_streams`]).
    event_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State with the given limits.
    pub fn new(
        db: Database,
        committer: Committer,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
        verifier: Verifier,
    ) -> Self {
        Self(Arc::new(AppParts {
            db,
            committer,
            clock,
            verifier,
            limiter: Arc::new(RateLimiter::new(
                config.writes_per_second,
                config.write_burst,
            )),
            event_streams: Arc::new(tokio::sync::Semaphore::new(config.max_event_streams)),
            config: Arc::new(config),
            sessions: Arc::new(Sessions::default()),
            tokens: Arc::new(TokenCache::default()),
            metrics: Arc::new(HttpMetrics::default()),
            stopping: tokio::sync::watch::channel(false).0,
            programmes: None,
            checkpoints: None,
            transparency: Arc::default(),
        }))
    }

    /// Turns on programmes and cards.
    pub fn with_programmes(mut self, programmes: crate::programme::Programmes) -> Self {
        // Called while the service is built, before any clone exists: nothing is copied.
        Arc::make_mut(&mut self.0).programmes = Some(programmes);
        self
    }

    /// Turns on signed journal checkpoints.
    pub fn with_checkpoints(mut self, checkpoints: crate::checkpoints::Checkpointer) -> Self {
        // Called while the service is built, before any clone exists: nothing is copied.
        Arc::make_mut(&mut self.0).checkpoints = Some(checkpoints);
        self
    }

    /// Ends event streams; call when shutdown begins.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut watch = self.stopping.subscribe();
        async move {
            let _ = watch.wait_for(|stopping| *stopping).await;
        }
    }
}

/// Enrolment files are CSV exports of whole registers: 100,000 households is about 7 MB.
const ENROLMENT_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// The one route with [`ENROLMENT_BODY_LIMIT`].
const ENROLMENT_ROUTE: &str = "/v1/programmes/{id}/enrolments";

/// Every route: (method, path template, handler). The router is built from this list and
/// the OpenAPI test checks each entry is documented, so neither can drift from the other.
fn endpoints() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("GET", "/healthz", get(ops::healthz)),
        ("GET", "/readyz", get(ops::readyz)),
        ("GET", "/metrics", get(metrics::metrics)),
        ("GET", "/openapi.json", get(openapi::openapi_json)),
        ("GET", "/docs", get(openapi::docs)),
        ("GET", "/v1/units", get(registry::list_units)),
        ("POST", "/v1/units", post(registry::create_unit)),
        ("GET", "/v1/units/{code}", get(registry::get_unit)),
        ("GET", "/v1/participants", get(registry::list_participants)),
        (
            "POST",
            "/v1/participants",
            post(registry::create_participant),
        ),
        (
            "GET",
            "/v1/participants/{id}",
            get(registry::get_participant),
        ),
        (
            "PUT",
            "/v1/participants/{id}/bank-account",
            put(registry::set_bank_account),
        ),
        (
            "PUT",
            "/v1/participants/{id}/research-consent",
            put(registry::set_research_consent),
        ),
        ("GET", "/v1/registry", get(registry::registry)),
        ("POST", "/v1/accounts", post(accounts::create)),
        ("GET", "/v1/accounts/{id}", get(accounts::get)),
        ("GET", "/v1/accounts/{id}/balance", get(accounts::balance)),
        ("GET", "/v1/accounts/{id}/entries", get(accounts::history)),
        ("GET", "/v1/accounts/{id}/events", get(events::account)),
        ("PUT", "/v1/accounts/{id}/key", put(accounts::register_key)),
        (
            "POST",
            "/v1/accounts/{id}/activation-codes",
            post(activation::issue_code),
        ),
        ("PUT", "/v1/accounts/{id}/status", put(accounts::set_status)),
        ("GET", "/v1/entries/{id}", get(entries::get_entry)),
        ("GET", "/v1/journal/heads", get(entries::journal_heads)),
        (
            "GET",
            "/v1/journal/checkpoints",
            get(journal::latest_checkpoints),
        ),
        (
            "POST",
            "/v1/journal/checkpoints",
            post(journal::sign_checkpoints),
        ),
        (
            "GET",
            "/v1/journal/checkpoints/{unit}",
            get(journal::unit_checkpoints),
        ),
        ("GET", "/v1/transparency", get(transparency::report)),
        ("POST", "/v1/intents", post(intents::submit)),
        ("GET", "/v1/intents/{id}", get(entries::get_intent)),
        ("POST", "/v1/payment-requests", post(requests::create)),
        ("GET", "/v1/payment-requests/{id}", get(requests::get)),
        (
            "POST",
            "/v1/payment-requests/{id}/cancel",
            post(requests::cancel),
        ),
        (
            "GET",
            "/v1/payment-requests/{id}/events",
            get(events::payment_request),
        ),
        ("GET", "/v1/accounts/{id}/expiries", get(cards::expiries)),
        ("GET", "/v1/programmes", get(programmes::list)),
        ("POST", "/v1/programmes", post(programmes::create)),
        ("GET", "/v1/programmes/{id}", get(programmes::get)),
        (
            "POST",
            "/v1/programmes/{id}/rules",
            post(programmes::change_rules),
        ),
        (
            "POST",
            ENROLMENT_ROUTE,
            post(programmes::enrol).layer(DefaultBodyLimit::max(ENROLMENT_BODY_LIMIT)),
        ),
        (
            "GET",
            "/v1/programmes/{id}/households",
            get(programmes::households),
        ),
        (
            "POST",
            "/v1/programmes/{id}/households/{household}/cards",
            post(cards::issue),
        ),
        (
            "PUT",
            "/v1/programmes/{id}/households/{household}/research-consent",
            put(programmes::research_consent),
        ),
        ("POST", "/v1/programmes/{id}/runs", post(programmes::run)),
        ("GET", "/v1/programmes/{id}/runs", get(programmes::runs)),
        (
            "POST",
            "/v1/programmes/{id}/expiry-sweeps",
            post(programmes::sweep),
        ),
        (
            "GET",
            "/v1/programmes/{id}/merchants",
            get(programmes::merchants),
        ),
        (
            "PUT",
            "/v1/programmes/{id}/merchants/{participant}",
            put(programmes::decide_merchant),
        ),
        (
            "GET",
            "/v1/programmes/{id}/settlement",
            get(programmes::settlement),
        ),
        (
            "POST",
            "/v1/programmes/{id}/sepa-credit-transfer",
            post(programmes::sepa),
        ),
        (
            "DELETE",
            "/v1/programmes/{id}/sepa-credit-transfer",
            delete(programmes::void_sepa),
        ),
        (
            "GET",
            "/v1/programmes/{id}/redemption-quote",
            get(programmes::redemption_quote),
        ),
        ("GET", "/v1/cards/{number}", get(cards::get)),
        ("POST", "/v1/cards/{number}/payments", post(cards::pay)),
        ("POST", "/v1/cards/{number}/unlock", post(cards::unlock)),
        ("PUT", "/v1/cards/{number}/pin", put(cards::change_pin)),
        (
            "POST",
            "/v1/cards/{number}/replacement",
            post(cards::replace),
        ),
        ("POST", "/v1/registry/applications", post(cards::apply)),
        ("POST", "/v1/sessions/challenge", post(sessions::challenge)),
        ("POST", "/v1/sessions", post(sessions::login)),
        ("GET", "/v1/me", get(me::me)),
    ]
}

/// Every route the service answers, as (method, path template).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    endpoints()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for (_, path, handler) in endpoints() {
        // Routes on the same path with other methods merge into one method router.
        router = router.route(path, handler);
    }
    // One middleware around every request, not one per concern: axum boxes and clones each
    // layer's service, and boxes its future, for every request.
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// Around every request: a request id (the client's `X-Request-Id` if sane, else a new
/// one) on the tracing span and the response, a time limit (event streams excepted), bare
/// errors made problem+json, and the metrics. It runs for every payment, so it borrows
/// or clones handles rather than copying strings: the span and a new id's header are its
/// only allocations.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let client_id = request
        .headers()
        .get("x-request-id")
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= 64 && v.iter().all(u8::is_ascii_graphic)
        })
        .cloned();
    let mut new_id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let request_id: &str = match &client_id {
        // Visible ASCII only (checked above), so this is the whole value.
        Some(v) => v.to_str().unwrap_or_default(),
        None => ledger::ids::new_v7().hyphenated().encode_lower(&mut new_id),
    };
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!("request", id = %request_id, %method, %route);
    let streaming = route.ends_with("/events");
    let timeout = state.config.request_timeout;
    let handled = next.run(request).instrument(span.clone());
    let response = if streaming {
        handled.await
    } else {
        match tokio::time::timeout(timeout, handled).await {
            Ok(response) => response,
            Err(_) => {
                let _entered = span.enter();
                tracing::warn!(?timeout, "request timed out");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "Request timed out",
                    format!(
                        "the request took longer than {} ms; a write may still complete, \
                         so retry with the same intent id or Idempotency-Key",
                        timeout.as_millis()
                    ),
                )
                .into_response()
            }
        }
    };
    let body_limit = if route == ENROLMENT_ROUTE {
        ENROLMENT_BODY_LIMIT
    } else {
        state.config.max_body_bytes
    };
    let mut response = problem_for_bare_errors(body_limit, response);
    let status = response.status();
    state
        .metrics
        .record(route, method.as_str(), status.as_u16(), started.elapsed());
    if status.is_server_error() {
        let _entered = span.enter();
        tracing::warn!(status = status.as_u16(), "request failed");
    }
    let id_header = match client_id {
        Some(v) => Ok(v),
        None => HeaderValue::from_str(request_id),
    };
    if let Ok(value) = id_header {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Errors produced by axum itself (a body over the limit, a wrong method) come as plain text;
/// turn them into problem+json so clients see one error shape everywhere.
fn problem_for_bare_errors(body_limit: usize, response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(problem::PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "body-too-large",
            "Request body too large",
            format!("request bodies are limited to {body_limit} bytes"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(
            status,
            "method-not-allowed",
            "Method not allowed",
            "this route does not accept that method",
        ),
        _ => Problem::new(
            status,
            "http-error",
            "Request failed",
            status.canonical_reason().unwrap_or("error"),
        ),
    };
    problem.into_response()
}
