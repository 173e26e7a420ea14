//! Payment requests: a merchant asks for an amount; a wallet fetches the request (by the
//! reference in the QR code or pay link) and pays it with a signed payment intent naming it.
//! The merchant may cancel a request it no longer wants paid; the writer orders the
//! cancellation with the payments, so exactly one of them wins.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Json, Response};
use ledger::{AccountId, AccountKind, Amount, EntryId, PaymentRequestId};
use serde::Deserialize;
use serde_json::Value;

use super::body::{self, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::auth::Role;
use crate::committer::{CommitError, RequestClosure};
use crate::db::DbError;
use crate::db::service::{MAX_REQUEST_EXPIRY_MS, PaymentRequest};
use crate::view::{AccountView, PaidBy, ViewState};

/// How long a request stays payable when the merchant does not say.
pub const DEFAULT_EXPIRY_S: i64 = 15 * 60;
/// The longest a request may stay payable (a printed invoice, say).
pub const MAX_EXPIRY_S: i64 = MAX_REQUEST_EXPIRY_MS / 1000;
/// Longest memo.
const MAX_MEMO_CHARS: usize = 140;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    #[schema(value_type = String)]
    account_id: AccountId,
    amount: String,
    #[serde(default)]
    memo: String,
    #[serde(default)]
    expires_in_s: Option<i64>,
}

/// `POST /v1/payment-requests` (the merchant owning the account, or an admin).
#[utoipa::path(
    post,
    path = "/v1/payment-requests",
    tag = "payment-requests",
    request_body = NewRequest,
    responses(
        (status = 201, description = "Created"),
        (status = 403, description = "Only the merchant owning the account, or an admin"),
        (status = 404, description = "No such account, or not visible"),
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
        let new: NewRequest = body::parse(&headers, &body)?;
        let now_ms = state.clock.now_ms();
        let (unit, scale) = {
            let view = state.committer.view().read();
            let account =
                super::accounts::readable(&view, &principal, &new.account_id.to_string())?;
            may_request(&principal, account, &view)?;
            let scale = view.unit(account.account.unit).map_or(0, |u| u.scale());
            (account.account.unit, scale)
        };
        let amount = Amount::parse(&new.amount, scale)
            .map_err(|e| Problem::invalid_field("amount", format!("amount: {e}")))?;
        if amount.minor() == 0 {
            return Err(Problem::invalid_field(
                "amount",
                "amount must be more than zero",
            ));
        }
        if new.memo.chars().count() > MAX_MEMO_CHARS || new.memo.chars().any(char::is_control) {
            return Err(Problem::invalid_field(
                "memo",
                format!(
                    "memo must be at most {MAX_MEMO_CHARS} characters, without control characters"
                ),
            ));
        }
        let expires_in_s = new.expires_in_s.unwrap_or(DEFAULT_EXPIRY_S);
        if !(1..=MAX_EXPIRY_S).contains(&expires_in_s) {
            return Err(Problem::invalid_field(
                "expires_in_s",
                format!("expires_in_s must be between 1 and {MAX_EXPIRY_S}"),
            ));
        }
        let request = PaymentRequest {
            id: PaymentRequestId::new(),
            account: new.account_id,
            unit,
            amount,
            memo: new.memo,
            created_at: now_ms,
            expires_at: now_ms.saturating_add(expires_in_s.saturating_mul(1000)),
            cancelled_at: None,
        };
        state.db.insert_payment_request(&request).await?;
        let view = state.committer.view().read();
        // A request just made has not been paid.
        Ok::<Written, Problem>((
            StatusCode::CREATED,
            render::payment_request(&request, None, &view, now_ms),
        ))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// Whether `principal` may ask for payment to `account`, or cancel such a request: the
/// merchant (or collector) owning it, or an admin.
fn may_request(
    principal: &Principal,
    account: &AccountView,
    view: &ViewState,
) -> Result<(), Problem> {
    let allowed = match principal.role() {
        Some(Role::Admin) => true,
        Some(Role::Merchant | Role::Collector) => principal.can_manage(account, view),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "only the merchant owning the account (or an admin) may request payment to it",
        ))
    }
}

/// `POST /v1/payment-requests/{id}/cancel` (the merchant owning the account, or an admin):
/// the request can no longer be paid. The cancellation is stored first (bringing the
/// deadline forward, so every later check refuses), then handed to the writer, which orders
/// it with the payments: if a payment got there first the answer is 409 with its entry.
#[utoipa::path(
    post,
    path = "/v1/payment-requests/{id}/cancel",
    tag = "payment-requests",
    params(("id" = String, Path, description = "Payment request id")),
    responses(
        (status = 200, description = "Cancelled (cancelling again answers the same): the request, status `cancelled`; no payment of it can commit any more"),
        (status = 403, description = "Only the merchant owning the account, or an admin"),
        (status = 404, description = "No such request, or its account not visible"),
        (status = 409, description = "Already paid (`/problems/request-already-paid`, with `entry_id`): the payment came first and stands"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        let request = find(&state, &id).await?;
        {
            let view = state.committer.view().read();
            let account =
                super::accounts::readable(&view, &principal, &request.account.to_string())
                    .map_err(|_| Problem::not_found(format!("no payment request {id}")))?;
            may_request(&principal, account, &view)?;
        }
        if let Some(entry_id) = paid_by(&state, &request).await? {
            return Err(already_paid(request.id, entry_id));
        }
        // How long the writer must keep the request closed: until its deadline, after which
        // the deadline refuses payments anyway. If an earlier cancellation brought that
        // forward, the original is gone, and a payment checked before it may carry it: the
        // longest any request lives bounds it.
        let closed_until = request.latest_deadline();
        let now_ms = state.clock.now_ms();
        state.db.cancel_payment_request(request.id, now_ms).await?;
        if let RequestClosure::AlreadyPaid(entry_id) = state
            .committer
            .close_request(request.id, closed_until)
            .await?
        {
            return Err(already_paid(request.id, entry_id));
        }
        let cancelled = find(&state, &id).await?;
        let view = state.committer.view().read();
        // The writer closed it and storage holds no payment of it: none will commit.
        Ok::<Written, Problem>((
            StatusCode::OK,
            render::payment_request(&cancelled, None, &view, now_ms),
        ))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// 409: the request was paid (by `entry_id`) before the cancellation reached the writer.
fn already_paid(request: PaymentRequestId, entry_id: ledger::EntryId) -> Problem {
    Problem::from(CommitError::RequestAlreadyPaid(request)).with("entry_id", entry_id.to_string())
}

/// The entry that paid `request`, if one did. The committed view knows while the request is
/// still payable; it forgets paid requests past their deadline, and storage (the unique
/// index on `entry.payment_request`) answers for those.
pub(super) async fn paid_by(
    state: &AppState,
    request: &PaymentRequest,
) -> Result<Option<EntryId>, DbError> {
    let known = state
        .committer
        .view()
        .read()
        .paid_by(request.id, request.expires_at);
    match known {
        PaidBy::Entry(entry_id) => Ok(Some(entry_id)),
        PaidBy::Nobody => Ok(None),
        PaidBy::Forgotten => state.db.request_paid_by(request.id).await,
    }
}

/// Finds a request by the id in a URL.
pub(super) async fn find(state: &AppState, id: &str) -> Result<PaymentRequest, Problem> {
    let missing = || Problem::not_found(format!("no payment request {id}"));
    let id: PaymentRequestId = id.parse().map_err(|_| missing())?;
    state.db.payment_request(id).await?.ok_or_else(missing)
}

/// `GET /v1/payment-requests/{id}`: public to whoever has the reference (it is unguessable
/// and shown on the terminal's screen), so a wallet can check what it is about to pay.
#[utoipa::path(
    get,
    path = "/v1/payment-requests/{id}",
    tag = "payment-requests",
    params(("id" = String, Path, description = "Payment request id (the QR reference)")),
    responses(
        (status = 200, description = "The request and its status (open, paid, cancelled or expired), with `payee`: the public key that signs its QR codes and, for a merchant's account only, the merchant's name"),
        (status = 404, description = "No such request"),
    )
)]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let request = find(&state, &id).await?;
    let (merchant, public_key) = {
        let view = state.committer.view().read();
        view.account(request.account).map_or((None, None), |a| {
            let merchant = a.owner.filter(|_| a.account.kind == AccountKind::Merchant);
            (merchant, a.account.authority.map(|k| k.to_base64url()))
        })
    };
    // Who is asking to be paid: the name a wallet shows, and the key that signed the QR code.
    // Anyone with the reference reads this, so only a merchant's name is shown, never a
    // household's (a person asking a neighbour for money), and no participant id at all.
    let name = match merchant {
        Some(owner) => state.db.participant(owner).await?.map(|p| p.name),
        None => None,
    };
    let paid = paid_by(&state, &request).await?;
    let view = state.committer.view().read();
    let mut json = render::payment_request(&request, paid, &view, state.clock.now_ms());
    json["payee"] = serde_json::json!({
        "name": name,
        "public_key": public_key,
    });
    Ok(Json(json))
}
