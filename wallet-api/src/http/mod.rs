//! HTTP: routes, shared state and the conventions every route follows (DESIGN §9): JSON
//! under `/v1`, errors as RFC 9457 problem+json with stable types, bounded bodies.

mod intents;
mod ops;
pub mod problem;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::committer::Committer;
use crate::db::Database;
use crate::verifier::Verifier;
use problem::Problem;

/// The largest request body accepted on any route, in bytes. Signed intents are far smaller
/// (at most 16 KiB); this bounds what a client can make us buffer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Reads.
    pub db: Database,
    /// Writes.
    pub committer: Committer,
    /// Time, for intent expiry.
    pub clock: Arc<dyn Clock>,
    /// Parses and verifies signed intents in batches, off the async threads.
    pub verifier: Verifier,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/intents", post(intents::submit))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// Errors produced by axum itself (a body over the limit, a wrong method) come as plain text;
/// turn them into problem+json so clients see one error shape everywhere.
async fn problem_for_bare_errors(response: axum::response::Response) -> axum::response::Response {
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
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
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
