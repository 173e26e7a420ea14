//! `GET /v1/transparency`: the public transparency report (see [`crate::transparency`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Json;
use serde_json::{Value, json};

use super::AppState;
use super::problem::Problem;
use crate::transparency::{self, MIN_HOUSEHOLDS};

/// `GET /v1/transparency` (public): where each unit's money is and what each programme paid,
/// in aggregate, with cells of one to four households suppressed.
#[utoipa::path(
    get,
    path = "/v1/transparency",
    tag = "entries",
    responses((status = 200, description = "`{k, as_of_position, at_ms, units, programmes}`. \
        Per unit: its chain head (`seq`, `hash`, as signed in its checkpoints), per entry kind \
        the entries, their amount and the households that took part, what holders, merchants, \
        collectors and system accounts hold, and the households that ever took part. Per \
        programme: households enrolled, budget left, redeemed units awaiting settlement, fees, \
        and per run the households paid and the total. Amounts are minor units as decimal \
        strings; a cell describing 1 to k-1 households has null values and `suppressed: \
        true`.")),
)]
pub(super) async fn report(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let position = state.committer.view().read().last_position();
    // One report at a time, and not more often than the ledger moves: building it reads
    // every account under the read model's lock, which holds up the writer's publishing.
    let mut cache = state.transparency.lock().await;
    if let Some(cached) = cache.as_ref()
        && cached.is_fresh(position)
    {
        return Ok(Json((*cached.report).clone()));
    }
    let facts = transparency::programme_facts(&state.db).await?;
    let report = {
        let view = state.committer.view().read();
        json!({
            "k": MIN_HOUSEHOLDS,
            "as_of_position": view.last_position(),
            "at_ms": state.clock.now_ms(),
            "units": transparency::units(&view),
            "programmes": transparency::programmes(&view, &facts),
        })
    };
    let report = Arc::new(report);
    *cache = Some(CachedReport {
        position,
        made: Instant::now(),
        report: report.clone(),
    });
    Ok(Json((*report).clone()))
}

/// Reports are rebuilt at most this often, however fast the ledger moves.
const MIN_AGE: Duration = Duration::from_secs(1);
/// A report is rebuilt after this long even if the ledger has not moved (enrolments and
/// runs being planned change the programmes' part without an entry).
const MAX_AGE: Duration = Duration::from_secs(60);

/// The last report built.
pub struct CachedReport {
    position: i64,
    made: Instant,
    report: Arc<Value>,
}

impl CachedReport {
    fn is_fresh(&self, position: i64) -> bool {
        let age = self.made.elapsed();
        age < MIN_AGE || (self.position == position && age < MAX_AGE)
    }
}
