//! `GET /v1/me`: who a token or session is, so a page that was only given a token (the
//! merchant terminal) can find the participant and accounts it acts for.

use axum::extract::State;
use axum::response::Json;
use serde_json::{Value, json};

use super::AppState;
use super::principal::Principal;
use super::problem::Problem;

/// `GET /v1/me`.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "sessions",
    responses(
        (status = 200, description = "The caller: an operator token's role and participant with that participant's accounts, or a wallet session's account"),
        (status = 401, description = "No or unknown token"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, Problem> {
    Ok(Json(match principal {
        Principal::Operator {
            role, participant, ..
        } => {
            let accounts: Vec<Value> = participant.map_or_else(Vec::new, |id| {
                let view = state.committer.view().read();
                view.accounts_of(id)
                    .map(|a| super::render::account(a, &view))
                    .collect()
            });
            json!({
                "kind": "operator",
                "role": role.as_str(),
                "participant_id": participant,
                "accounts": accounts,
            })
        }
        Principal::Holder { account } => json!({"kind": "session", "account_id": account}),
    }))
}
