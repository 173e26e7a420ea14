//! Committed entries by id, and intents by `intent_id` (how a client that lost its answer
//! learns what happened). Visible to whoever may read one of the accounts they touch. And
//! the journal's heads, public, for anyone to keep.

use axum::extract::{Path, State};
use axum::response::Json;
use ledger::{EntryId, IntentId};
use serde_json::{Value, json};

use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::db::service::EntryRecord;

async fn visible_entry(
    state: &AppState,
    principal: &Principal,
    position: Option<i64>,
    missing: &str,
) -> Result<(EntryRecord, Value), Problem> {
    let position = position.ok_or_else(|| Problem::not_found(missing.to_owned()))?;
    let record = state
        .db
        .entries_at(&[position])
        .await?
        .pop()
        .ok_or_else(|| Problem::not_found(missing.to_owned()))?;
    let view = state.committer.view().read();
    let allowed = record.postings.iter().any(|p| {
        [p.debit, p.credit].into_iter().any(|id| {
            view.account(id)
                .is_some_and(|a| principal.can_read(a, &view))
        })
    });
    if !allowed {
        return Err(Problem::not_found(missing.to_owned()));
    }
    let json = render::entry(&record, &view);
    Ok((record, json))
}

/// `GET /v1/journal/heads` (public): where each unit's hash chain ends now (its last
/// committed link: sequence number and hash). Anyone may keep these; `coledger verify
/// --expect-heads` then checks that a later export still holds every one of them, so a
/// chain rewritten or cut short in between is caught, whoever has the database.
#[utoipa::path(
    get,
    path = "/v1/journal/heads",
    tag = "entries",
    responses((status = 200, description = "`{at_ms, heads: [{unit, seq, hash}]}`, units in \
        code order; hashes in lowercase hex")),
)]
pub(super) async fn journal_heads(State(state): State<AppState>) -> Json<Value> {
    let heads: Vec<ledger::JournalLink> = state
        .committer
        .view()
        .read()
        .chain_heads()
        .iter()
        .map(|(&unit, head)| ledger::JournalLink {
            unit,
            seq: head.seq,
            hash: head.hash,
        })
        .collect();
    Json(json!({ "at_ms": state.clock.now_ms(), "heads": heads }))
}

/// `GET /v1/entries/{id}`.
#[utoipa::path(
    get,
    path = "/v1/entries/{id}",
    tag = "entries",
    params(("id" = String, Path, description = "Entry id")),
    responses(
        (status = 200, description = "The entry with its postings and signed intent"),
        (status = 404, description = "No such entry, or not visible"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_entry(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let missing = format!("no entry {id}");
    let position = match id.parse::<EntryId>() {
        Ok(entry) => state.db.entry_position(entry).await?,
        Err(_) => None,
    };
    let (_, json) = visible_entry(&state, &principal, position, &missing).await?;
    Ok(Json(json))
}

/// `GET /v1/intents/{intent_id}`: the result of a committed intent. An intent that was
/// refused or never arrived is not found: nothing was recorded, so resubmitting it is safe.
#[utoipa::path(
    get,
    path = "/v1/intents/{id}",
    tag = "entries",
    params(("id" = String, Path, description = "Intent id")),
    responses(
        (status = 200, description = "The committed result of the intent"),
        (status = 404, description = "Not committed (safe to resubmit)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_intent(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let missing = format!("no committed intent {id}");
    let position = match id.parse::<IntentId>() {
        Ok(intent) => state.db.intent_position(intent).await?,
        Err(_) => None,
    };
    let (record, entry) = visible_entry(&state, &principal, position, &missing).await?;
    Ok(Json(json!({
        "intent_id": record.intent_id,
        "status": "committed",
        "entry_id": record.id,
        "entry": entry,
    })))
}
