//! `POST /v1/intents`: submit a signed intent. The signature is the authorisation, so no
//! token is needed; the `intent_id` is the idempotency key (a retry returns the original
//! result with `"duplicate": true`, status 200 instead of 201).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use ledger::{EntryId, IntentId};
use serde::Serialize;

use super::AppState;
use super::problem::Problem;

pub(super) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match submit_inner(&state, &headers, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn submit_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    require_json(headers)?;
    let now_ms = state.clock.now_ms();
    let verified = state.verifier.verify(body, now_ms).await?;
    let intent_id = verified.intent().intent_id;
    let committed = state.committer.submit(&verified).await?;
    let status = if committed.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = Submitted {
        duplicate: committed.duplicate,
        entry_id: committed.entry_id,
        intent_id,
    };
    Ok((status, Json(body)).into_response())
}

/// The answer to a submitted intent, serialised straight from the struct rather than through
/// a `serde_json::Value` map on every request. Fields are in alphabetical order, as the map
/// wrote them.
#[derive(Serialize)]
struct Submitted {
    duplicate: bool,
    entry_id: EntryId,
    intent_id: IntentId,
}

/// Refuses bodies that do not say they are JSON, so a form post or a stray text upload gets
/// a clear 415 rather than a parse error.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send Content-Type: application/json (got {content_type:?})"),
        ))
    }
}
