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
    /// The previous page's `next_cursor`: only checkpoints after it.
    #[serde(default)]
    cursor: Option<String>,
    /// Checkpoints per page (1 to the service's page limit).
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
        (status = 200, description = "`{key, unit, items: [...], next_cursor}`: the unit's \
            checkpoints, oldest first, a page at a time; `next_cursor` is the next page's \
            `cursor`, null on the last"),
        (status = 404, description = "No such unit"),
    ),
)]
pub(super) async fn unit_checkpoints(
    State(state): State<AppState>,
    Path(unit): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    let query: CheckpointQuery = body::query(raw.as_deref())?;
    let limit = state.config.page_limit(query.limit)?;
    let after: u64 = match query.cursor.as_deref() {
        Some(cursor) => cursor
            .parse()
            .map_err(|_| Problem::invalid_field("cursor", "cursor is not one we issued"))?,
        None => 0,
    };
    let no_unit = || Problem::not_found(format!("no unit {unit}"));
    let code = UnitCode::new(&unit).map_err(|_| no_unit())?;
    if state.committer.view().read().unit(code).is_none() {
        return Err(no_unit());
    }
    // One more than a page tells whether another page follows.
    let mut page = state
        .db
        .checkpoints_of(code, after, limit.saturating_add(1))
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = more
        .then(|| page.last().map(|(seq, _)| seq.to_string()))
        .flatten();
    let items: Vec<Value> = page.into_iter().map(|(_, body)| body).collect();
    Ok(Json(json!({
        "key": key(&state),
        "unit": code,
        "items": items,
        "next_cursor": next_cursor,
    })))
}

/// `POST /v1/journal/checkpoints` (admin, auditor): signs a checkpoint now for every unit
/// whose chain moved since its latest one. The body is ignored. `signed` counts those this
/// call stored (one the service's own timer stored first is not counted again).
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
