//! Errors as RFC 9457 `application/problem+json`, each cause with its own stable `type`.
//!
//! Types are relative URI references (`/problems/insufficient-funds`): stable identifiers a
//! client can switch on, resolvable against the service for documentation. Client errors
//! carry a `detail` naming what was wrong; server errors are opaque to the client and logged
//! once with their cause.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger::{BookError, EntryError, IntentError};
use serde_json::{Map, Value, json};

use crate::committer::CommitError;
use crate::verifier::VerifyError;

/// The content type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
}

impl Problem {
    /// A problem of type `/problems/{slug}`.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// Adds an extension member (RFC 9457 §3.2), e.g. the account and amounts involved.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable type, e.g. `/problems/insufficient-funds`.
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.slug)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("type".into(), json!(self.type_uri()));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        Value::Object(body)
    }

    /// 400: the request body is not what the endpoint reads.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 404: no such route or resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 422: a field's value is not acceptable; names the field.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "Validation failed",
            detail,
        )
        .with("field", field)
    }

    /// 401: no credentials, or credentials we do not accept.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 422: a payment names a payment request whose deadline has passed.
    pub fn request_expired(request: ledger::PaymentRequestId, expires_at: i64) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "payment-request-expired",
            "Payment request expired",
            format!("payment request {request} expired at {expires_at} ms"),
        )
        .with("payment_request", request.to_string())
    }

    /// 422: a payment names a payment request its merchant cancelled.
    pub fn request_cancelled(request: ledger::PaymentRequestId) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "payment-request-cancelled",
            "Payment request cancelled",
            format!("payment request {request} was cancelled by the merchant; ask for a new one"),
        )
        .with("payment_request", request.to_string())
    }

    /// 503: the database's disk is full. Nothing was written; the same request may be sent
    /// again (same intent id or Idempotency-Key) once an operator has freed space.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-full",
            "Storage full",
            "the ledger's disk is full, so nothing was written; retry with the same intent id \
             once space has been freed",
        )
    }

    /// 500: something went wrong on our side. The cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the service failed; the failure has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<IntentError> for Problem {
    fn from(error: IntentError) -> Self {
        let detail = error.to_string();
        use StatusCode as S;
        match error {
            IntentError::TooLarge { size } => Self::new(
                S::PAYLOAD_TOO_LARGE,
                "intent-too-large",
                "Intent too large",
                detail,
            )
            .with("size", size),
            IntentError::Malformed(_) => Self::malformed(detail),
            IntentError::NotCanonical(_) => Self::new(
                S::BAD_REQUEST,
                "not-canonicalisable",
                "Numbers must be integers within ±(2^53 - 1)",
                detail,
            ),
            IntentError::Expired { not_after, now } => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "intent-expired",
                "Intent expired",
                detail,
            )
            .with("not_after", not_after)
            .with("now", now),
            IntentError::BadSignature { .. } | IntentError::SignerMismatch { .. } => Self::new(
                S::FORBIDDEN,
                "bad-signature",
                "Signature does not verify",
                detail,
            ),
            IntentError::Entry(entry) => entry.into(),
            IntentError::ReversesInEntry => Self::invalid_field("action.tags.reverses", detail),
        }
    }
}

impl From<EntryError> for Problem {
    fn from(error: EntryError) -> Self {
        let detail = error.to_string();
        let slug = match error {
            EntryError::Unbalanced { .. } => "unbalanced-entry",
            EntryError::ZeroAmount { .. } => "zero-amount",
            _ => "invalid-entry",
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Invalid entry",
            detail,
        )
    }
}

impl From<BookError> for Problem {
    fn from(error: BookError) -> Self {
        let detail = error.to_string();
        use StatusCode as S;
        let unprocessable =
            |slug, title| Self::new(S::UNPROCESSABLE_ENTITY, slug, title, detail.clone());
        match error {
            BookError::InsufficientFunds {
                account,
                available,
                requested,
            } => unprocessable("insufficient-funds", "Insufficient funds")
                .with("account", account.to_string())
                .with("available_minor", available)
                .with("requested_minor", requested),
            BookError::LimitExceeded { account, limit, .. } => {
                unprocessable("limit-exceeded", "Balance limit exceeded")
                    .with("account", account.to_string())
                    .with("limit_minor", limit)
            }
            BookError::AccountFrozen(account) => unprocessable("account-frozen", "Account frozen")
                .with("account", account.to_string()),
            BookError::AccountClosed(account) => unprocessable("account-closed", "Account closed")
                .with("account", account.to_string()),
            BookError::UnknownAccount(account) => {
                unprocessable("unknown-account", "Unknown account")
                    .with("account", account.to_string())
            }
            BookError::UnknownUnit(unit) => {
                unprocessable("unknown-unit", "Unknown unit").with("unit", unit.to_string())
            }
            BookError::UnitMismatch { .. } => {
                unprocessable("unit-mismatch", "Account holds another unit")
            }
            BookError::NotAuthorised(account) => Self::new(
                S::FORBIDDEN,
                "not-authorised",
                "Signer may not debit this account",
                detail,
            )
            .with("account", account.to_string()),
            BookError::IntentConflict(intent) => Self::new(
                S::CONFLICT,
                "intent-conflict",
                "Intent id already used for a different intent",
                detail,
            )
            .with("intent_id", intent.to_string()),
            BookError::RuleViolation(_) => unprocessable("rule-violation", "Scheme rule violated"),
            BookError::SpendingRefused { rule, .. } => {
                unprocessable("spending-rule", "Refused by a programme spending rule")
                    .with("rule", rule.as_str())
            }
            BookError::Overflow(_) => unprocessable("balance-overflow", "Balance out of range"),
            // 422 like `unknown-account` and `unknown-payment-request`: the request's target
            // (`/v1/intents`) exists; what it names does not.
            BookError::UnknownPayment(payment) => {
                unprocessable("unknown-payment", "Unknown payment")
                    .with("payment", payment.to_string())
            }
            BookError::RefundMismatch { payment, field, .. } => {
                unprocessable("refund-mismatch", "Refund does not match the payment")
                    .with("payment", payment.to_string())
                    .with("field", format!("action.{field}"))
            }
            BookError::RefundExceedsPayment {
                payment,
                refundable,
                requested,
            } => unprocessable(
                "refund-exceeds-payment",
                "Refund exceeds what is left of the payment",
            )
            .with("payment", payment.to_string())
            .with("refundable_minor", refundable)
            .with("requested_minor", requested),
            // The committer asks storage and answers; reaching here means it could not.
            BookError::MaybeApplied(intent) => Self::new(
                S::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage unavailable",
                detail,
            )
            .with("intent_id", intent.to_string()),
            // Handled as success by the committer; reaching here is a bug, so say so plainly.
            BookError::Duplicate { .. }
            | BookError::DuplicateUnit(_)
            | BookError::DuplicateAccount(_) => {
                Self::new(S::CONFLICT, "duplicate", "Already exists", detail)
            }
        }
    }
}

impl From<CommitError> for Problem {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Invalid(e) => e.into(),
            CommitError::Rejected(e) => e.into(),
            CommitError::RequestAlreadyPaid(request) => Self::new(
                StatusCode::CONFLICT,
                "request-already-paid",
                "Payment request already paid",
                format!("payment request {request} has already been paid"),
            )
            .with("payment_request", request.to_string()),
            CommitError::RequestExpired {
                request,
                expires_at,
            } => Self::request_expired(request, expires_at),
            CommitError::RequestCancelled(request) => Self::request_cancelled(request),
            CommitError::BalancesMoved(accounts) => Self::new(
                StatusCode::CONFLICT,
                "balances-moved",
                "Balances moved meanwhile",
                format!(
                    "the entry was computed from balances that have moved since ({} accounts); compute it again",
                    accounts.len()
                ),
            ),
            CommitError::Unavailable(reason) => {
                tracing::warn!(%reason, "write refused: storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-unavailable",
                    "Storage unavailable",
                    "the ledger could not be written; retry with the same intent id",
                )
            }
            CommitError::StorageFull(reason) => {
                tracing::warn!(%reason, "write refused: storage full");
                Self::storage_full()
            }
            CommitError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "Service stopping",
                "the service is shutting down; retry with the same intent id",
            ),
        }
    }
}

impl From<crate::db::DbError> for Problem {
    fn from(error: crate::db::DbError) -> Self {
        if error.is_storage_full() {
            tracing::warn!(error = %error, "storage full");
            return Self::storage_full();
        }
        if error.is_unavailable() {
            tracing::warn!(error = %error, "storage unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage unavailable",
                "the database cannot be reached just now; retry shortly",
            );
        }
        Self::internal(&error)
    }
}

impl From<VerifyError> for Problem {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Refused(e) => e.into(),
            VerifyError::Stopped => Self::internal(&error),
        }
    }
}
