//! `GET /v1/transparency`: the public transparency report (see [`crate::transparency`]).

use axum::extract::State;
use axum::response::Json;
use serde_json::{Value, json};

use super::AppState;
use super::problem::Problem;
use crate::transparency::{self, MIN_HOUSEHOLDS, REBUILD_EVERY_MS};

/// `GET /v1/transparency` (public): where each unit's money is and what each programme paid,
/// in aggregate, with cells of one to four households suppressed.
#[utoipa::path(
    get,
    path = "/v1/transparency",
    tag = "transparency",
    responses((status = 200, description = "`{k, as_of_position, at_ms, units, programmes}`, \
        rebuilt at most every ten minutes. Per unit: its chain head (`seq`, `hash`), its totals \
        per entry kind and positive balances (public, as its signed checkpoints state them), \
        how many households took part in each kind, and who holds the money (`held`). Per \
        programme: households enrolled, budget left, redeemed units awaiting settlement, fees, \
        and per run the households paid and the total. Amounts are minor units as decimal \
        strings. Household counts of 1 to k-1 are null; a breakdown cell that would describe \
        them has null figures and `suppressed: true` (with a second cell where subtraction \
        would find it); a unit or programme of 1 to k-1 households shows no breakdown.")),
)]
pub(super) async fn report(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let now_ms = state.clock.now_ms();
    // One report at a time, rebuilt at most every ten minutes: rebuilt after every entry,
    // anyone watching it would see single entries; and building one reads every account
    // under the read model's lock, which holds up the writer's publishing.
    let mut cache = state.transparency.lock().await;
    if let Some(cached) = cache.as_ref()
        && now_ms.saturating_sub(cached.made_ms) < REBUILD_EVERY_MS
        && now_ms >= cached.made_ms
    {
        return Ok(Json(cached.report.clone()));
    }
    let facts = transparency::stored_facts(&state.db).await?;
    let report = {
        let view = state.committer.view().read();
        json!({
            "k": MIN_HOUSEHOLDS,
            "as_of_position": view.last_position(),
            "at_ms": now_ms,
            "units": transparency::units(&view, &facts.households),
            "programmes": transparency::programmes(&view, &facts.programmes),
        })
    };
    *cache = Some(CachedReport {
        made_ms: now_ms,
        report: report.clone(),
    });
    Ok(Json(report))
}

/// The last report built.
pub struct CachedReport {
    made_ms: i64,
    report: Value,
}
