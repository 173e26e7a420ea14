//! Operational endpoints. `/healthz` says the process is up; `/readyz` says the database
//! answers and the ledger is loaded, so a load balancer sends traffic only then.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::json;

use super::AppState;

pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "database unreachable"})),
        );
    }
    match state
        .committer
        .inspect(|book| (book.account_count(), book.applied_count()))
        .await
    {
        Ok((accounts, entries)) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "accounts": accounts, "entries": entries})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "ledger writer stopped"})),
        ),
    }
}
