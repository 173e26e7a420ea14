//! Accounts: opening them, their balance and statement, their key, their status.
//!
//! Reads come from the committed view (never the writer), and statements from storage up to
//! the view's last published position; an account the caller may not see is answered exactly
//! like one that does not exist, so ids cannot be probed.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Json, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::{
    Account, AccountId, AccountKind, AccountStatus, EntryKind, Limits, ParticipantId, PublicKey,
    Signature, UnitCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, WriteTarget, Written};
use super::principal::{self, Principal};
use super::problem::Problem;
use super::{AppState, render};
use crate::auth::Role;
use crate::history::HistoryFilter;
use crate::view::{AccountView, ViewState};

/// Bytes a new key signs to prove it is held by whoever registers it: this context, the
/// account id, a newline, the key (base64url).
pub const KEY_PROOF_CONTEXT: &str = "coledger/v1/key\n";

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no account {id}")).with("account", id.to_owned())
}

/// Finds an account the caller may read, or a 404.
pub(super) fn readable<'v>(
    view: &'v ViewState,
    principal: &Principal,
    id: &str,
) -> Result<&'v AccountView, Problem> {
    let parsed: AccountId = id.parse().map_err(|_| not_found(id))?;
    view.account(parsed)
        .filter(|a| principal.can_read(a, view))
        .ok_or_else(|| not_found(id))
}

/// An account as the view holds it right after a write to it committed (the committer
/// answers only after the view has the change).
pub(super) fn as_committed(state: &AppState, id: AccountId) -> Result<Value, Problem> {
    let view = state.committer.view().read();
    let account = view
        .account(id)
        .ok_or_else(|| Problem::internal(&format!("account {id} is missing from the view")))?;
    Ok(render::account(account, &view))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    participant_id: Option<ParticipantId>,
    unit: String,
    kind: String,
    #[serde(default)]
    lower_limit: Option<String>,
    #[serde(default)]
    upper_limit: Option<String>,
    #[serde(default)]
    public_key: Option<String>,
}

/// A signed limit in the unit's decimals: `"-20.00"`.
fn parse_limit(field: &str, text: &str, scale: u8) -> Result<i64, Problem> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let amount = ledger::Amount::parse(digits, scale)
        .map_err(|e| Problem::invalid_field(field, format!("{field}: {e}")))?;
    Ok(if negative {
        amount.minor().saturating_neg()
    } else {
        amount.minor()
    })
}

fn parse_key(field: &str, text: &str) -> Result<PublicKey, Problem> {
    PublicKey::from_base64url(text)
        .map_err(|e| Problem::invalid_field(field, format!("{field}: {e}")))
}

/// `POST /v1/accounts`.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Opened"),
        (status = 403, description = "Role may not open accounts in this unit"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        let new: NewAccount = body::parse(&headers, &body)?;
        let unit =
            UnitCode::new(&new.unit).map_err(|e| Problem::invalid_field("unit", e.to_string()))?;
        let kind = AccountKind::parse(&new.kind).ok_or_else(|| {
            Problem::invalid_field(
                "kind",
                "kind must be issuer, holder, merchant, collector or system",
            )
        })?;
        let (scale, mutual, voucher) = {
            let view = state.committer.view().read();
            let found = view
                .unit(unit)
                .ok_or_else(|| Problem::invalid_field("unit", format!("no unit {unit}")))?;
            (
                found.scale(),
                found.kind() == ledger::UnitKind::MutualCredit,
                found.kind() == ledger::UnitKind::Voucher,
            )
        };
        let allowed = match principal.role() {
            Some(Role::Admin | Role::ProgrammeManager) => true,
            Some(Role::Coordinator) => mutual,
            _ => false,
        };
        if !allowed {
            return Err(Problem::forbidden(
                "only admins and programme managers (or coordinators, in mutual-credit units) open accounts",
            ));
        }
        // Held until the account is open: a programme created in this unit meanwhile would
        // find an account it did not open, and this check would have missed its programme.
        // Programmes pay in voucher units only, so other units' openings never wait.
        let _no_programme_created_meanwhile = match &state.programmes {
            Some(programmes) if voucher => Some(programmes.hold_programme_units().await),
            _ => None,
        };
        if let Some(programme) = programme_of(&state, unit).await? {
            // The programme opens its unit's accounts itself (budget, households, approved
            // merchants); another issuer account there would issue past the budget.
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "programme-unit",
                "Accounts of a programme's unit are the programme's",
                format!(
                    "{unit} belongs to programme {}: households are enrolled, merchants approved",
                    programme.id
                ),
            ));
        }
        if let Some(owner) = new.participant_id
            && state.db.participant(owner).await?.is_none()
        {
            return Err(Problem::invalid_field(
                "participant_id",
                format!("no participant {owner}"),
            ));
        }
        // Households, shops and collection points cannot go below zero unless told (a
        // time bank's credit limit); issuers and system accounts have no floor by default.
        let default_floor = match kind {
            AccountKind::Issuer | AccountKind::System => None,
            _ => Some(0),
        };
        let lower = match new.lower_limit.as_deref() {
            Some(text) => Some(parse_limit("lower_limit", text, scale)?),
            None => default_floor,
        };
        let upper = new
            .upper_limit
            .as_deref()
            .map(|t| parse_limit("upper_limit", t, scale))
            .transpose()?;
        let limits = Limits::new(lower, upper).map_err(|e| {
            // Name the limit that excludes zero (the lower one if both do).
            let field = if e.lower.is_some_and(|l| l > 0) {
                "lower_limit"
            } else {
                "upper_limit"
            };
            Problem::invalid_field(field, e.to_string())
        })?;
        let authority = new
            .public_key
            .as_deref()
            .map(|k| parse_key("public_key", k))
            .transpose()?;
        let account = Account {
            id: AccountId::new(),
            unit,
            kind,
            status: AccountStatus::Active,
            limits,
            authority,
        };
        let id = account.id;
        state
            .committer
            .open_owned_account(account, new.participant_id)
            .await?;
        Ok::<Written, Problem>((StatusCode::CREATED, as_committed(&state, id)?))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// `GET /v1/accounts/{id}`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account with its balance"),
        (status = 404, description = "No such account, or not visible to this caller"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let view = state.committer.view().read();
    let account = readable(&view, &principal, &id)?;
    Ok(Json(render::account(account, &view)))
}

/// `GET /v1/accounts/{id}/balance`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/balance",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The committed balance"),
        (status = 404, description = "No such account, or not visible to this caller"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn balance(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let view = state.committer.view().read();
    let account = readable(&view, &principal, &id)?;
    let scale = view.unit(account.account.unit).map_or(0, |u| u.scale());
    Ok(Json(json!({
        "account_id": account.account.id,
        "unit": account.account.unit.as_str(),
        "balance_minor": account.balance.0,
        "balance": render::decimal(account.balance.0, scale),
        "as_of_position": view.last_position(),
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    #[param(value_type = Option<String>)]
    counterparty: Option<AccountId>,
}

/// A history cursor: the position of the last item shown, opaque to clients.
fn encode_cursor(position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("h{position}"))
}

fn decode_cursor(text: &str) -> Result<i64, Problem> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('h').and_then(|p| p.parse().ok()))
        .ok_or_else(|| Problem::invalid_field("cursor", "cursor is not one we issued"))
}

/// `GET /v1/accounts/{id}/entries`: the statement, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/entries",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of the statement, newest first, with next_cursor. \
            A filter that matches rarely is searched through a bounded stretch of history per \
            request, so a page may hold fewer items than the limit, or none, while next_cursor \
            is set: follow next_cursor until it is null. Each payment the account received \
            that can be refunded says what is left to refund of it (refundable_minor), and \
            each refund names its payment (reverses).",
            body = super::openapi::HistoryPageDoc),
        (status = 404, description = "No such account, or not visible to this caller"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    let query: HistoryQuery = body::query(raw.as_deref())?;
    let limit = state.config.page_limit(query.limit)? as usize;
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            EntryKind::parse(k)
                .ok_or_else(|| Problem::invalid_field("kind", format!("unknown entry kind {k:?}")))
        })
        .transpose()?;
    let filter = HistoryFilter {
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        kind,
        counterparty: query.counterparty,
    };
    // Check access and take the account's latest published entry under the read lock, then
    // walk its chain from there in storage without holding it. Storage may already hold a
    // batch that is committed but not yet published; starting at the published entry keeps
    // the statement consistent with the balance (never an entry the balance does not include
    // yet).
    let (account, scale, head) = {
        let view = state.committer.view().read();
        let account = readable(&view, &principal, &id)?;
        let scale = view.unit(account.account.unit).map_or(0, |u| u.scale());
        (account.account.id, scale, account.last_entry)
    };
    let below = before.unwrap_or(i64::MAX);
    let page = state
        .db
        .statement_page(account, head, &filter, below, limit)
        .await?;
    let items: Vec<Value> = page
        .lines
        .iter()
        .map(|line| render::history_item(line, scale))
        .collect();
    // Set on a full page, and on one cut short (even empty) where a filter that matches
    // rarely used up the walk's budget: the client follows it either way.
    let next = page.next_before.map(encode_cursor);
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyRegistration {
    /// The new ed25519 public key, unpadded base64url.
    pub(super) public_key: String,
    /// The new key's signature over `"coledger/v1/key\n" + account id + "\n" + public_key`.
    pub(super) proof: String,
    /// Without a bearer token: the one-time code an operator issued for this account
    /// (`XXXX-XXXX-XXXX`; any case, dashes and spaces optional). With a token, leave it out.
    #[serde(default)]
    pub(super) activation_code: Option<String>,
}

/// The bytes a new key signs to prove possession.
pub fn key_proof_bytes(account: AccountId, key: &PublicKey) -> Vec<u8> {
    format!("{KEY_PROOF_CONTEXT}{account}\n{}", key.to_base64url()).into_bytes()
}

/// The key of a registration, once its proof verifies: the new key must sign a proof, so
/// nobody registers a key they do not hold (a typo would otherwise lock the account).
pub(super) fn proven_key(
    account: AccountId,
    registration: &KeyRegistration,
) -> Result<PublicKey, Problem> {
    let key = parse_key("public_key", &registration.public_key)?;
    let proof = Signature::from_base64url(&registration.proof)
        .map_err(|e| Problem::invalid_field("proof", format!("proof: {e}")))?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.0)
        .map_err(|_| Problem::invalid_field("public_key", "not a valid ed25519 key"))?;
    verifying
        .verify_strict(
            &key_proof_bytes(account, &key),
            &ed25519_dalek::Signature::from_bytes(&proof.0),
        )
        .map_err(|_| {
            Problem::invalid_field(
                "proof",
                "the proof does not verify: sign \"coledger/v1/key\\n<account id>\\n<public key>\" with the new key",
            )
        })?;
    Ok(key)
}

/// `PUT /v1/accounts/{id}/key`: registers (or replaces) the key that authorises payments
/// from the account, proven by a signature of the new key. Authorised by an operator token
/// that manages the account or, without a token, by a one-time activation code from
/// `POST /v1/accounts/{id}/activation-codes`.
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/key",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body = KeyRegistration,
    responses(
        (status = 200, description = "Registered; the account as it is now"),
        (status = 401, description = "No token and no activation code, or the code is wrong, \
            expired, used or superseded (`/problems/bad-activation-code`, one answer for all)"),
        (status = 403, description = "This token may not manage the account"),
        (status = 404, description = "No such account, or not visible"),
        (status = 409, description = "The account's key is the programme's or its card's \
            (`/problems/programme-unit`)"),
        (status = 422, description = "The key or its proof is invalid, or a token and an \
            activation code were both given"),
        (status = 429, description = "Too many attempts for this account (without a token) or \
            writes from this token"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn register_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let principal = match principal::optional(&state, &headers).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return super::activation::register_with_code(&state, &id, &headers, &target, &body)
                .await;
        }
        Err(problem) => return problem.into_response(),
    };
    let write = async {
        let (account_id, unit, kind) = {
            let view = state.committer.view().read();
            let account = readable(&view, &principal, &id)?;
            if !principal.can_manage(account, &view) {
                return Err(Problem::forbidden(
                    "this token may not register keys for this account",
                ));
            }
            (
                account.account.id,
                account.account.unit,
                account.account.kind,
            )
        };
        // In a programme's unit only merchants hold their own keys: the budget, clearing and
        // fee accounts answer to the programme, and a household's account to its card.
        if kind != AccountKind::Merchant && programme_of(&state, unit).await?.is_some() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "programme-unit",
                "This account's key is the programme's or its card's",
                format!(
                    "account {account_id} is a {} account of programme unit {unit}; its \
                     authority is set by the programme (issue or replace a card)",
                    kind.as_str()
                ),
            ));
        }
        let registration: KeyRegistration = body::parse(&headers, &body)?;
        if registration.activation_code.is_some() {
            // Two authorisations for one change is a client's mistake; say so rather than
            // pick one (and leave the code unused or use it up unasked).
            return Err(Problem::invalid_field(
                "activation_code",
                "send an activation code without a bearer token; with a token, leave it out",
            ));
        }
        let key = proven_key(account_id, &registration)?;
        state.committer.set_authority(account_id, key).await?;
        Ok::<Written, Problem>((StatusCode::OK, as_committed(&state, account_id)?))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: String,
}

/// `PUT /v1/accounts/{id}/status`: freeze, unfreeze or close (admin, programme manager).
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/status",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body = StatusChange,
    responses(
        (status = 200, description = "Changed; the account as it is now"),
        (status = 403, description = "Role may not change statuses"),
        (status = 404, description = "No such account"),
        (status = 422, description = "Unknown status"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_status(
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
            readable(&view, &principal, &id)?.account.id
        };
        principal.require(
            &[Role::Admin, Role::ProgrammeManager],
            "change account status",
        )?;
        let change: StatusChange = body::parse(&headers, &body)?;
        let status = AccountStatus::parse(&change.status).ok_or_else(|| {
            Problem::invalid_field("status", "status must be active, frozen or closed")
        })?;
        state.committer.set_status(account_id, status).await?;
        Ok::<Written, Problem>((StatusCode::OK, as_committed(&state, account_id)?))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// The programme whose unit `unit` is, if any.
async fn programme_of(
    state: &AppState,
    unit: UnitCode,
) -> Result<Option<crate::programme::Programme>, Problem> {
    Ok(state
        .db
        .programmes()
        .await?
        .into_iter()
        .find(|p| p.unit == unit))
}
