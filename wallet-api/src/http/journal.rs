//! Signed journal checkpoints over HTTP (DESIGN §5; see [`crate::checkpoints`]): public to
//! read, so that anyone can keep them and later hold an export to them with
//! `coledger verify --checkpoints`; signed on demand by an admin or an auditor, besides the
//! service's own interval.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Json, Response};
use ledger::UnitCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::body::{self, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use crate::auth::Role;

/// Who may ask for checkpoints now.
const SIGNERS: &[Role] = &[Role::Admin, Role::Auditor];

/// The key checkpoints are signed with, or null when this service signs none (it has no
/// server secret); stored checkpoints name their key all the same.
fn key(state: &AppState) -> Value {
    state
        .checkpoints
        .as_ref()
        .map_or(Value::Null, |c| json!(c.key()))
}

/// `GET /v1/journal/checkpoints` (public): each unit's latest signed checkpoint.
#[utoipa::path(
    get,
    path = "/v1/journal/checkpoints",
    tag = "entries",
    responses((status = 200, description = "`{key, checkpoints: [...]}`: the key this service \
        signs with (null if it signs none) and each unit's latest signed checkpoint, in unit \
        code order. A checkpoint is `{unit, seq, hash, at_ms, kinds: [{kind, entries, \
        amount_minor}], positive_balances, key, signature}`; the signature is ed25519 over \
        \"coledger/checkpoint/v1\\n\" + the RFC 8785 JSON of the rest. Save the answer and \
        check a later export against it with `coledger verify --checkpoints FILE`.")),
)]
pub(super) async fn latest_checkpoints(
    State(state): State<AppState>,
) -> Result<Json<Value>, Problem> {
    let checkpoints = state.db.latest_checkpoints().await?;
    Ok(Json(
        json!({ "key": key(&state), "checkpoints": checkpoints }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CheckpointQuery {
    /// Only checkpoints after this sequence number (the previous page's `next_after`).
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /v1/journal/checkpoints/{unit}` (public): one unit's checkpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/journal/checkpoints/{unit}",
    tag = "entries",
    params(("unit" = String, Path, description = "Unit code"), CheckpointQuery),
    responses(
        (status = 200, description = "`{key, unit, checkpoints: [...], next_after}`: \
            checkpoints after `after`, oldest first; `next_after` is the `after` of the next \
            page, null on the last"),
        (status = 404, description = "No such unit"),
    ),
)]
pub(super) async fn unit_checkpoints(
    State(state): State<AppState>,
    Path(unit): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    let no_unit = || Problem::not_found(format!("no unit {unit}"));
    let code = UnitCode::new(&unit).map_err(|_| no_unit())?;
    if state.committer.view().read().unit(code).is_none() {
        return Err(no_unit());
    }
    let query: CheckpointQuery = body::query(raw.as_deref())?;
    let limit = state.config.page_limit(query.limit)?;
    let page = state
        .db
        .checkpoints_of(code, query.after.unwrap_or(0), limit)
        .await?;
    let next_after = if page.len() == limit as usize {
        page.last().map_or(Value::Null, |last| last["seq"].clone())
    } else {
        Value::Null
    };
    Ok(Json(json!({
        "key": key(&state),
        "unit": code,
        "checkpoints": page,
        "next_after": next_after,
    })))
}

/// `POST /v1/journal/checkpoints` (admin, auditor): signs a checkpoint now for every unit
/// whose chain moved since its latest one. The body is ignored.
#[utoipa::path(
    post,
    path = "/v1/journal/checkpoints",
    tag = "entries",
    responses(
        (status = 200, description = "`{key, signed, checkpoints: [...]}`: how many were \
            signed now, and each unit's latest checkpoint (as GET)"),
        (status = 403, description = "Only admin and auditor tokens may ask"),
        (status = 503, description = "This service has no server secret, so it signs no \
            checkpoints"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn sign_checkpoints(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(SIGNERS, "sign journal checkpoints")?;
        let checkpointer = state.checkpoints.as_ref().ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "checkpoints-unavailable",
                "Checkpoints unavailable",
                "this service runs without a server secret, so it signs no checkpoints",
            )
        })?;
        let signed = checkpointer.sign_moved().await?;
        let checkpoints = state.db.latest_checkpoints().await?;
        let json = json!({
            "key": checkpointer.key(),
            "signed": signed.len(),
            "checkpoints": checkpoints,
        });
        Ok::<Written, Problem>((StatusCode::OK, json))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}
