//! Operational endpoints. `/healthz` says the process is up; `/readyz` says the database
//! answers and the ledger is loaded, so a load balancer sends traffic only then.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::json;

use super::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses(
        (status = 200, description = "The process is up"),
    )
)]
pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Database reachable and ledger loaded"),
        (status = 503, description = "Not ready: database unreachable or writer stopped"),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "database unreachable"})),
        );
    }
    // From the committed view, not through the writer: an inspection would wait for the
    // batches in flight, and a load balancer probing every second would slow every commit.
    if !state.committer.is_running() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "ledger writer stopped"})),
        );
    }
    let view = state.committer.view().read();
    (
        StatusCode::OK,
        Json(json!({
            "status": "ready",
            "accounts": view.account_count(),
            "entries": view.last_position(),
        })),
    )
}
