//! Operational endpoints. `/healthz` says the process is up; `/readyz` says the database
//! answers and the ledger is loaded, so a load balancer sends traffic only then, and names
//! how the latest write went (a full disk refuses writes while reads are still served).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::AppState;
use super::problem::Problem;

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
        (status = 200, description = "Database reachable and ledger loaded; `writes` is how the latest write went: `ok`, `storage-full` (writes refused until space is freed) or `storage-unavailable`"),
        (status = 503, description = "Not ready (`/problems/not-ready`): database unreachable or writer stopped; `detail` says which"),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    // A problem document, not bare JSON: the layer that gives bare errors the problem shape
    // would otherwise replace the reason with a generic one.
    let not_ready = |reason: &str| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            reason.to_owned(),
        )
        .into_response()
    };
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return not_ready("database unreachable");
    }
    // From the committed view, not through the writer: an inspection would wait for the
    // batches in flight, and a load balancer probing every second would slow every commit.
    if !state.committer.is_running() {
        return not_ready("ledger writer stopped");
    }
    // Ready even when the latest write failed (a full disk): reads are served, and no other
    // process could take the writes, since one writer holds the database. `writes` says so.
    let writes = state.committer.stats().write_state().as_str();
    let view = state.committer.view().read();
    Json(json!({
        "status": "ready",
        "accounts": view.account_count(),
        "entries": view.last_position(),
        "writes": writes,
    }))
    .into_response()
}
