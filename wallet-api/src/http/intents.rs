//! `POST /v1/intents`: submit a signed intent. The signature is the authorisation, so no
//! token is needed; the `intent_id` is the idempotency key (a retry returns the original
//! result with `"duplicate": true`, status 200 instead of 201, even once the intent expired). A payment that names a
//! payment request must match it (payee, unit, amount), arrive before it expires and before
//! it is cancelled, and be staged by the writer before its deadline too. A
//! refund is checked against its payment by the Book, in the writer, so two refunds of one
//! sale racing each other can never add up to more than it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use ledger::{Action, EntryId, IntentError, IntentId, VerifiedIntent};
use serde::Serialize;

use super::AppState;
use super::body::JsonContentType;
use super::openapi::SignedIntentDoc;
use super::problem::Problem;
use crate::db::service::PaymentRequest;
use crate::verifier::VerifyError;

#[utoipa::path(
    post,
    path = "/v1/intents",
    tag = "entries",
    request_body = SignedIntentDoc,
    responses(
        (status = 201, description = "Committed (durable)"),
        (status = 200, description = "Already committed: the original result, duplicate = true (also when the retry comes after the intent expired)"),
        (status = 400, description = "Malformed"),
        (status = 403, description = "Bad signature, or the signer may not debit the account"),
        (status = 409, description = "Intent id reused for different content, or request already paid"),
        (status = 415, description = "Not JSON"),
        (status = 422, description = "Refused by the rules: funds, limits, status, expiry; for a payment request, unknown, mismatch, expired (also when the writer reaches it after the deadline) or cancelled; for a refund, unknown payment, refund mismatch or more than is left of the payment"),
        (status = 429, description = "Rate limited"),
        (status = 503, description = "Storage unavailable or full (`/problems/storage-unavailable`, `/problems/storage-full`): nothing was written; retry with the same intent"),
    )
)]
pub(super) async fn submit(
    State(state): State<AppState>,
    _: JsonContentType,
    body: Bytes,
) -> Response {
    match submit_inner(&state, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn submit_inner(state: &AppState, body: Bytes) -> Result<Response, Problem> {
    let now_ms = state.clock.now_ms();
    // Parsing and ed25519 verification are CPU work: the verifier threads do it, in batches.
    let verified = match state.verifier.verify(body.clone(), now_ms).await {
        Ok(verified) => verified,
        Err(VerifyError::Refused(expired @ IntentError::Expired { not_after, .. })) => {
            // Boxed, as are the other rare paths below: inline, their storage reads would
            // make every request's future (moved into a box per request) kilobytes larger.
            return Box::pin(late_retry(state, body, not_after, expired)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let intent = verified.intent();
    refuse_derived_id(intent.intent_id)?;
    // Limited per signing key, once the signature proved the key is the caller's.
    state.limiter.check_signer(&intent.signer, now_ms)?;
    let request = check_payment_request(state, &verified, now_ms).await?;
    let intent_id = intent.intent_id;
    let committed = state
        .committer
        .submit_with_deadline(&verified, request.map(|r| r.expires_at))
        .await?;
    if let (Action::Refund { to, .. }, Some(programmes)) = (&intent.action, &state.programmes) {
        // A refund of a sale paid with a card since replaced lands on the old card (it must
        // mirror the sale); pass it on to the household's current card now. The refund is
        // committed whatever happens here, and a start passes on what a failure left.
        if let Err(e) = Box::pin(programmes.forward_to_current_card(*to)).await {
            tracing::warn!(account = %to, error = %e, "refund not yet passed on to the current card");
        }
    }
    let status = if committed.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = Submitted {
        duplicate: committed.duplicate,
        entry_id: committed.entry_id,
        intent_id,
    };
    Ok((status, Json(body)).into_response())
}

/// An intent that has expired may still be the retry of one committed in time: a client that
/// lost the answer and tries again after `not_after` gets the original result, as every retry
/// does, not "expired". Only an expired intent comes here, so the hot path pays nothing: its
/// signature is checked as of its own last valid second (by the same verifier threads, so
/// their backpressure holds), then storage is asked whether this very intent (same digest)
/// was committed. Anything else is refused as expired.
async fn late_retry(
    state: &AppState,
    body: Bytes,
    not_after: i64,
    expired: IntentError,
) -> Result<Response, Problem> {
    let last_valid_ms = not_after.saturating_mul(1000);
    let verified = match state.verifier.verify(body, last_valid_ms).await {
        Ok(verified) => verified,
        Err(VerifyError::Refused(_)) => return Err(expired.into()),
        Err(e @ VerifyError::Stopped) => return Err(e.into()),
    };
    let intent_id = verified.intent().intent_id;
    match state.db.intent_outcome(intent_id).await? {
        Some((entry_id, digest)) if digest == verified.digest() => {
            let body = Submitted {
                duplicate: true,
                entry_id,
                intent_id,
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        _ => Err(expired.into()),
    }
}

/// The answer to a submitted intent, serialised straight from the struct rather than through
/// a `serde_json::Value` map on every request.
#[derive(Serialize)]
struct Submitted {
    duplicate: bool,
    entry_id: EntryId,
    intent_id: IntentId,
}

/// A payment naming a request must pay exactly what was asked, to whom, in time; returns
/// the request. What a request asks never changes once made, so checking that here (before
/// the writer) cannot race. Its deadline and cancellation can: the writer, which sees every
/// payment in order, refuses a payment staged after the deadline read here or after a
/// cancellation, and a second payment of a request.
async fn check_payment_request(
    state: &AppState,
    verified: &VerifiedIntent,
    now_ms: i64,
) -> Result<Option<PaymentRequest>, Problem> {
    let Action::Payment {
        to,
        unit,
        amount_minor,
        request: Some(id),
        ..
    } = &verified.intent().action
    else {
        return Ok(None);
    };
    let payment = RequestedPayment {
        request: *id,
        to: *to,
        unit: *unit,
        amount: *amount_minor,
        intent_id: verified.intent().intent_id,
    };
    Box::pin(check_request_matches(state, &payment, now_ms))
        .await
        .map(Some)
}

/// A payment that names a payment request, as the checks see it.
pub(super) struct RequestedPayment {
    pub(super) request: ledger::PaymentRequestId,
    pub(super) to: ledger::AccountId,
    pub(super) unit: ledger::UnitCode,
    pub(super) amount: ledger::Amount,
    pub(super) intent_id: ledger::IntentId,
}

/// The request exists, asks for exactly this (payee, unit, amount), and has been neither
/// cancelled nor expired (unless this very intent settled it: a retry). Returns the request,
/// whose deadline the caller hands to the writer with the payment.
pub(super) async fn check_request_matches(
    state: &AppState,
    payment: &RequestedPayment,
    now_ms: i64,
) -> Result<PaymentRequest, Problem> {
    let RequestedPayment {
        request: id,
        to,
        unit,
        amount: amount_minor,
        intent_id,
    } = payment;
    let unprocessable = |slug, title, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, detail)
            .with("payment_request", id.to_string())
    };
    let request = state.db.payment_request(*id).await?.ok_or_else(|| {
        unprocessable(
            "unknown-payment-request",
            "Unknown payment request",
            format!("no payment request {id}"),
        )
    })?;
    if request.account != *to || request.unit != *unit || request.amount != *amount_minor {
        return Err(unprocessable(
            "payment-request-mismatch",
            "Payment does not match the request",
            format!(
                "request {id} asks for {} minor units of {} to account {}",
                request.amount.minor(),
                request.unit,
                request.account
            ),
        ));
    }
    let cancelled = request.cancelled_at.is_some();
    if cancelled || now_ms > request.expires_at {
        // A retry of the payment that settled it in time is still answered as a duplicate.
        let committed = state.db.intent_position(*intent_id).await?.is_some();
        // A request paid before its cancellation reached the writer stays paid: another
        // payment of it is told so (by the writer, 409), not that it was cancelled.
        let paid = cancelled && super::requests::paid_by(state, &request).await?.is_some();
        if !committed && !paid {
            return Err(if cancelled {
                Problem::request_cancelled(*id)
            } else {
                Problem::request_expired(*id, request.expires_at)
            });
        }
    }
    Ok(request)
}

/// Version-8 UUIDs are the ids the service derives for its own idempotent work (a run's
/// entries, a card replacement); a client taking one first could block that work for good.
pub(super) fn refuse_derived_id(id: ledger::IntentId) -> Result<(), Problem> {
    if id.0.get_version_num() == 8 {
        return Err(Problem::invalid_field(
            "intent_id",
            "intent_id: version-8 UUIDs are reserved for ids the service derives; use a \
             random (v4) or time-ordered (v7) UUID",
        ));
    }
    Ok(())
}
