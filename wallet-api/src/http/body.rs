//! Request bodies and the shared write path: strict JSON (the content type, unknown fields
//! and wrong types each get a clear 4xx naming the field), `Idempotency-Key` replay, and
//! query strings.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::principal::Principal;
use super::problem::Problem;
use crate::db::service::Remembered;

/// How long a response stays replayable under its `Idempotency-Key`.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Refuses bodies that do not say they are JSON, so a form post or a stray text upload gets
/// a clear 415 rather than a parse error.
pub fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send Content-Type: application/json (got {content_type:?})"),
        ))
    }
}

/// Extractor: the request says its body is JSON, else a 415 as [`require_json`] gives. For
/// handlers that need nothing else from the headers; the `HeaderMap` extractor clones them all.
pub struct JsonContentType;

impl<S: Send + Sync> FromRequestParts<S> for JsonContentType {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        require_json(&parts.headers).map(|()| Self)
    }
}

/// Extractor: the method, path and query a write was sent to, as its `Idempotency-Key`
/// fingerprint needs them. Taken from the request itself, so the fingerprint names the
/// resource written (card A's unlock is not card B's) and how (an enrolment with
/// `?all_or_nothing=true` is another request than one without) without each handler
/// spelling its route out again.
pub struct WriteTarget(String);

impl<S: Send + Sync> FromRequestParts<S> for WriteTarget {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str());
        Ok(Self(format!("{} {target}", parts.method)))
    }
}

/// Parses a JSON body into `T` (whose fields should deny unknown names). A type or shape
/// error is a 422 naming the field's path; broken JSON is a 400.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    require_json(headers)?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::malformed(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Validation failed",
                inner.to_string(),
            )
        } else {
            Problem::invalid_field(&path, format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::malformed(format!("trailing data after the JSON body: {e}")))?;
    Ok(parsed)
}

/// A finished write: status and JSON body.
pub type Written = (StatusCode, Value);

/// What the idempotency store keeps of a finished write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The response, replayed to a retry.
    Response,
    /// Only that the key was used: the response shows a secret once (an activation code),
    /// and the store must not hold it. A retry runs the write again, so such a write must be
    /// safe to repeat (issuing a code supersedes the one issued before).
    Nothing,
}

/// Runs a write, rate limited per caller and honouring `Idempotency-Key`: the first request with a key runs and its
/// response is kept; a retry (same caller, key and request) gets that response again with
/// `Idempotency-Replayed: true`; the same key with a different request is a 409. Server
/// errors are not kept, so retrying after one runs the write again.
pub async fn idempotent<F>(
    state: &AppState,
    headers: &HeaderMap,
    principal: &Principal,
    target: &WriteTarget,
    body: &[u8],
    write: F,
) -> Response
where
    F: Future<Output = Result<Written, Problem>>,
{
    let owner = principal.key();
    idempotent_with(state, headers, &owner, Keep::Response, target, body, write).await
}

/// [`idempotent`] for a caller named by `owner` (its rate-limit bucket and the namespace of
/// its keys), keeping what `keep` says.
pub async fn idempotent_with<F>(
    state: &AppState,
    headers: &HeaderMap,
    owner: &str,
    keep: Keep,
    target: &WriteTarget,
    body: &[u8],
    write: F,
) -> Response
where
    F: Future<Output = Result<Written, Problem>>,
{
    // Every write is rate limited per caller; a replayed answer costs a token too, which
    // is fine: retries are rare and cheap ones still count against a runaway client.
    if let Err(limited) = state.limiter.check(owner, state.clock.now_ms()) {
        return limited.into_response();
    }
    let key = match idempotency_key(headers) {
        Ok(Some(key)) => key,
        Ok(None) => return respond(write.await),
        Err(problem) => return problem.into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(target.0.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    let fingerprint: [u8; 32] = hasher.finalize().into();
    let now_ms = state.clock.now_ms();
    let remembered = match state
        .db
        .begin_idempotent(owner, &key, &fingerprint, now_ms)
        .await
    {
        Ok(r) => r,
        Err(e) => return Problem::from(e).into_response(),
    };
    match remembered {
        Remembered::New => {}
        Remembered::Mismatch => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used for a different request",
            )
            .into_response();
        }
        Remembered::InProgress => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "Request in progress",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            )
            .into_response();
        }
        // Nothing was kept to replay: run the write again (see `Keep::Nothing`).
        Remembered::Done { .. } if keep == Keep::Nothing => return respond(write.await),
        Remembered::Done { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = if status.is_success() {
                "application/json"
            } else {
                super::problem::PROBLEM_JSON
            };
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
            return response;
        }
    }
    let outcome = write.await;
    let (status, json) = match &outcome {
        Ok((status, json)) => (*status, json.clone()),
        Err(problem) => (problem.status(), problem.body()),
    };
    let kept_body = match keep {
        Keep::Response => json.to_string(),
        Keep::Nothing => String::new(),
    };
    let kept = if status.is_server_error() {
        state.db.release_idempotent(owner, &key).await
    } else {
        state
            .db
            .finish_idempotent(owner, &key, status.as_u16(), &kept_body)
            .await
    };
    if let Err(e) = kept {
        // The write happened; only the record of its answer was lost. Say so in the log
        // and still answer: a retry will then run into the in-progress marker (a 409).
        tracing::error!(error = %e, "could not record an idempotent response");
    }
    respond(outcome)
}

/// The response for a finished write.
pub fn respond(outcome: Result<Written, Problem>) -> Response {
    match outcome {
        Ok((status, json)) => (status, axum::Json(json)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        Problem::invalid_field(
            "Idempotency-Key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

/// Parses a query string into `T` (whose fields should deny unknown names).
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, Problem> {
    let raw = raw.unwrap_or("");
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-query",
                "Bad query parameters",
                inner.to_string(),
            )
        } else {
            Problem::invalid_field(&path, format!("query parameter {path}: {inner}"))
        }
    })
}
