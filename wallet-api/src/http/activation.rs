//! Activation codes over HTTP: an operator asks for a one-time code for an account
//! (`POST /v1/accounts/{id}/activation-codes`), and a phone wallet with no token registers its
//! own key with it (`PUT /v1/accounts/{id}/key` carrying `activation_code`). The rules are in
//! [`crate::activation`]; here are who may ask, the rate limit, and the answers.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use ledger::AccountId;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::accounts::{self, KeyRegistration};
use super::body::{self, Keep, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use crate::activation::{
    self, ActivationCode, ActivationError, DEFAULT_VALIDITY_MS, MAX_VALIDITY_MS, MIN_VALIDITY_MS,
};

/// The rate-limit bucket (and idempotency namespace) of code attempts on one account: the
/// same limiter as every write, keyed by the account, since the caller has no token.
fn attempts_of(account: AccountId) -> String {
    format!("activation:{account}")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewActivationCode {
    /// Seconds the code stays valid: 60 to 7,776,000 (90 days); 604,800 (7 days) if absent.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 7_776_000)]
    expires_in_s: Option<i64>,
}

/// The validity asked for, in ms.
fn validity_ms(asked: &NewActivationCode) -> Result<i64, Problem> {
    let Some(seconds) = asked.expires_in_s else {
        return Ok(DEFAULT_VALIDITY_MS);
    };
    let (min_s, max_s) = (MIN_VALIDITY_MS / 1000, MAX_VALIDITY_MS / 1000);
    if !(min_s..=max_s).contains(&seconds) {
        return Err(Problem::invalid_field(
            "expires_in_s",
            format!("expires_in_s must be between {min_s} and {max_s} (got {seconds})"),
        ));
    }
    Ok(seconds.saturating_mul(1000))
}

/// `POST /v1/accounts/{id}/activation-codes`: a one-time code with which the account's
/// holder registers their phone wallet's key. Issuing supersedes the account's earlier
/// unused codes. The code is shown once and never stored, so a retry under the same
/// `Idempotency-Key` issues a fresh code (superseding the first) rather than replaying it.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/activation-codes",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body = NewActivationCode,
    responses(
        (status = 201, description = "`{account_id, code, expires_at_ms}`: the code \
            (`XXXX-XXXX-XXXX`), shown only now"),
        (status = 403, description = "This token may not manage the account"),
        (status = 404, description = "No such account, or not visible"),
        (status = 409, description = "The account is closed (`/problems/account-closed`), or \
            its key is the programme's or its card's (`/problems/programme-unit`)"),
        (status = 422, description = "A field is invalid (named in `field`), such as \
            expires_in_s out of range"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn issue_code(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        let account_id = {
            let view = state.committer.view().read();
            let account = accounts::readable(&view, &principal, &id)?;
            if !principal.can_manage(account, &view) {
                return Err(Problem::forbidden(
                    "this token may not issue activation codes for this account",
                ));
            }
            account.account.id
        };
        let asked: NewActivationCode = body::parse(&headers, &body)?;
        let validity_ms = validity_ms(&asked)?;
        let issued =
            activation::issue(&state.db, state.clock.now_ms(), account_id, validity_ms).await?;
        Ok::<Written, Problem>((
            StatusCode::CREATED,
            json!({
                "account_id": issued.account,
                "code": issued.code.grouped(),
                "expires_at_ms": issued.expires_at_ms,
            }),
        ))
    };
    let owner = principal.key();
    body::idempotent_with(
        &state,
        &headers,
        &owner,
        Keep::Nothing,
        &target,
        &body,
        write,
    )
    .await
}

/// `PUT /v1/accounts/{id}/key` without a bearer token: the body must carry an activation
/// code for the account. Attempts are rate limited per account, before anything is checked.
pub(super) async fn register_with_code(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    target: &WriteTarget,
    body: &Bytes,
) -> Response {
    // A malformed id cannot have a code: the same answer as a wrong code.
    let Ok(account) = id.parse::<AccountId>() else {
        return Problem::from(ActivationError::BadCode).into_response();
    };
    let write = async {
        let registration: KeyRegistration = body::parse(headers, body)?;
        let Some(typed) = registration.activation_code.as_deref() else {
            return Err(Problem::unauthenticated(
                "this route needs a bearer token, or an activation_code in the body",
            ));
        };
        // The proof first, so a mistyped key does not use the code up.
        let key = accounts::proven_key(account, &registration)?;
        let code = ActivationCode::parse(typed).ok_or(ActivationError::BadCode)?;
        activation::activate(
            &state.db,
            &state.committer,
            state.clock.now_ms(),
            account,
            &code,
            key,
        )
        .await?;
        Ok::<Written, Problem>((StatusCode::OK, accounts::as_committed(state, account)?))
    };
    let owner = attempts_of(account);
    body::idempotent_with(state, headers, &owner, Keep::Response, target, body, write).await
}

impl From<ActivationError> for Problem {
    fn from(error: ActivationError) -> Self {
        let detail = error.to_string();
        match error {
            ActivationError::BadCode => Problem::new(
                StatusCode::UNAUTHORIZED,
                "bad-activation-code",
                "Activation code not accepted",
                "the activation code is wrong, has expired, or was used or replaced by a newer \
                 one; ask for a new code",
            ),
            ActivationError::UnknownAccount(account) => {
                Problem::not_found(detail).with("account", account.to_string())
            }
            ActivationError::Closed(account) => Problem::new(
                StatusCode::CONFLICT,
                "account-closed",
                "Account closed",
                format!("{detail}: a closed account cannot be activated"),
            )
            .with("account", account.to_string()),
            ActivationError::ProgrammeKey { account, .. } => Problem::new(
                StatusCode::CONFLICT,
                "programme-unit",
                "This account's key is the programme's or its card's",
                detail,
            )
            .with("account", account.to_string()),
            ActivationError::Validity(_) => Problem::invalid_field("expires_in_s", detail),
            ActivationError::Db(e) => e.into(),
            ActivationError::Commit(e) => e.into(),
        }
    }
}
