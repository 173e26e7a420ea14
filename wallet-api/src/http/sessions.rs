//! Wallet-holder sessions: ask for a challenge, sign it with the account's registered key,
//! get a short-lived bearer token for reading that account (balance, statement, events). Its
//! one write is its participant's research consent (`PUT /v1/participants/{id}/research-consent`).
//! Paying never needs a session: every payment is its own signed intent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use ledger::{AccountId, Signature};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::body;
use super::problem::Problem;
use crate::auth::LoginError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChallengeRequest {
    #[schema(value_type = String)]
    account_id: AccountId,
}

/// `POST /v1/sessions/challenge`.
#[utoipa::path(
    post,
    path = "/v1/sessions/challenge",
    tag = "sessions",
    request_body = ChallengeRequest,
    responses(
        (status = 201, description = "A one-time challenge to sign"),
        (status = 429, description = "Rate limited"),
    )
)]
pub(super) async fn challenge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let request: ChallengeRequest = body::parse(&headers, &body)?;
    state.limiter.check(
        &format!("login:{}", request.account_id),
        state.clock.now_ms(),
    )?;
    // Challenges are issued for any id, known or not, so they reveal nothing.
    let (challenge, expires) = state
        .sessions
        .challenge(request.account_id, state.clock.now_ms());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "account_id": request.account_id,
            "challenge": challenge,
            "expires_at_ms": expires,
            "sign": "coledger/v1/session\\n<account_id>\\n<challenge>",
        })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    #[schema(value_type = String)]
    account_id: AccountId,
    challenge: String,
    signature: String,
}

/// `POST /v1/sessions`.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = Login,
    responses(
        (status = 201, description = "A session token for reading the account (and recording its participant's research consent)"),
        (status = 401, description = "Challenge or signature refused"),
    )
)]
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let login: Login = body::parse(&headers, &body)?;
    let signature = Signature::from_base64url(&login.signature)
        .map_err(|e| Problem::invalid_field("signature", format!("signature: {e}")))?;
    let key = state
        .committer
        .view()
        .read()
        .account(login.account_id)
        .and_then(|a| a.account.authority);
    let now_ms = state.clock.now_ms();
    let (token, expires) = state
        .sessions
        .login(login.account_id, key, &login.challenge, &signature, now_ms)
        .map_err(|e| match e {
            LoginError::BadSignature | LoginError::NoKey(_) => {
                // One message for both, so a caller cannot learn which accounts have keys.
                Problem::unauthenticated("the signature does not verify for this account")
            }
            LoginError::BadChallenge | LoginError::WrongAccount => {
                Problem::unauthenticated(e.to_string())
            }
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "account_id": login.account_id, "expires_at_ms": expires})),
    ))
}
