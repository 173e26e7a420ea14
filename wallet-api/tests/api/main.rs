//! The HTTP API driven in-process (`oneshot`, no socket) against a real committer and
//! database: signed payments, idempotent retries, and one clear problem+json per mistake.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../committer/support.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ledger::{Action, EntryKind, IntentId, Leg, Tags};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt as _;
use wallet_api::http::{AppState, MAX_BODY_BYTES, router};
use wallet_api::{Committer, CommitterTask, ManualClock, Verifier};

struct Api {
    app: axum::Router,
    scheme: Scheme,
    _db: TestDb,
    _committer: (Committer, CommitterTask),
}

/// A funded scheme (Alice holds 100.00) behind the router, with the clock at `now_ms`.
async fn api_at(now_ms: i64) -> Api {
    let test_db = TestDb::sqlite();
    let db = test_db.open().await;
    let (committer, task) = start(&db).await;
    let scheme = Scheme::new();
    scheme.register(&committer).await;
    committer
        .submit(&scheme.issue(scheme.alice, 100_00))
        .await
        .unwrap();
    let state = AppState {
        db,
        committer: committer.clone(),
        clock: Arc::new(ManualClock::new(now_ms)),
        verifier: Verifier::start(1).unwrap(),
    };
    Api {
        app: router(state),
        scheme,
        _db: test_db,
        _committer: (committer, task),
    }
}

async fn api() -> Api {
    api_at(NOW_MS).await
}

impl Api {
    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, String, Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post_intent(&self, wire: &str) -> (StatusCode, String, Value) {
        self.post_raw("/v1/intents", "application/json", wire.to_owned())
            .await
    }

    fn payment(&self, minor: i64) -> String {
        self.scheme
            .pay(
                &self.scheme.alice_key,
                self.scheme.alice,
                self.scheme.shop,
                minor,
            )
            .signed()
            .to_json()
    }
}

/// Asserts an RFC 9457 problem of the given status and type.
fn assert_problem(response: &(StatusCode, String, Value), status: StatusCode, type_uri: &str) {
    let (got_status, content_type, body) = response;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["type"], type_uri, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn a_signed_payment_commits_and_its_retry_returns_the_original_result() {
    let api = api().await;
    let wire = api.payment(12_50);
    let (status, _, first) = api.post_intent(&wire).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, _, again) = api.post_intent(&wire).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["entry_id"], first["entry_id"]);
    assert_eq!(
        balance(&api._committer.0, api.scheme.shop).await,
        12_50,
        "applied once"
    );
}

#[tokio::test]
async fn ledger_refusals_are_problems_with_stable_types() {
    let api = api().await;
    let response = api.post_intent(&api.payment(500_00)).await;
    assert_problem(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/insufficient-funds",
    );
    assert_eq!(response.2["available_minor"], 100_00);
    assert_eq!(response.2["requested_minor"], 500_00);

    let theft = api
        .scheme
        .pay(&api.scheme.bob_key, api.scheme.alice, api.scheme.shop, 1_00)
        .signed()
        .to_json();
    assert_problem(
        &api.post_intent(&theft).await,
        StatusCode::FORBIDDEN,
        "/problems/not-authorised",
    );

    let ghost = api
        .scheme
        .pay(
            &api.scheme.alice_key,
            api.scheme.alice,
            ledger::AccountId::new(),
            1_00,
        )
        .signed()
        .to_json();
    assert_problem(
        &api.post_intent(&ghost).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/unknown-account",
    );

    let id = IntentId::new();
    let first = sign_with_id(
        &api.scheme.alice_key,
        api.scheme.payment(api.scheme.alice, api.scheme.shop, 1_00),
        id,
    );
    let second = sign_with_id(
        &api.scheme.alice_key,
        api.scheme.payment(api.scheme.alice, api.scheme.shop, 2_00),
        id,
    );
    assert_eq!(
        api.post_intent(&first.signed().to_json()).await.0,
        StatusCode::CREATED
    );
    assert_problem(
        &api.post_intent(&second.signed().to_json()).await,
        StatusCode::CONFLICT,
        "/problems/intent-conflict",
    );

    let legs = vec![
        Leg {
            account: api.scheme.issuer,
            unit: api.scheme.unit,
            delta: -5_00,
        },
        Leg {
            account: api.scheme.alice,
            unit: api.scheme.unit,
            delta: 4_00,
        },
    ];
    let action = Action::Entry {
        kind: EntryKind::Issue,
        legs,
        memo: String::new(),
        tags: Tags::default(),
    };
    let unbalanced = sign(&api.scheme.operator, action).signed().to_json();
    assert_problem(
        &api.post_intent(&unbalanced).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/unbalanced-entry",
    );
}

#[tokio::test]
async fn tampered_and_expired_intents_are_refused() {
    let api = api().await;
    let tampered = api
        .payment(1_00)
        .replace("\"amount_minor\":100", "\"amount_minor\":9900");
    assert_problem(
        &api.post_intent(&tampered).await,
        StatusCode::FORBIDDEN,
        "/problems/bad-signature",
    );

    let later = api_at(NOW_MS + 2 * 3600 * 1000).await;
    let expired = later.payment(1_00);
    let response = later.post_intent(&expired).await;
    assert_problem(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/intent-expired",
    );
    assert!(response.2["not_after"].is_i64());
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_never_a_5xx() {
    let api = api().await;
    let wire = api.payment(1_00);

    let response = api.post_intent("{\"intent\": ").await;
    assert_problem(
        &response,
        StatusCode::BAD_REQUEST,
        "/problems/malformed-request",
    );

    let unknown_field: Value = {
        let mut value: Value = serde_json::from_str(&wire).unwrap();
        value["intent"]["colour"] = json!("blue");
        value
    };
    let response = api.post_intent(&unknown_field.to_string()).await;
    assert_problem(
        &response,
        StatusCode::BAD_REQUEST,
        "/problems/malformed-request",
    );
    assert!(
        response.2["detail"].as_str().unwrap().contains("colour"),
        "the field is named"
    );

    let over_precise = wire.replace("\"amount_minor\":100", "\"amount_minor\":1.5");
    assert_problem(
        &api.post_intent(&over_precise).await,
        StatusCode::BAD_REQUEST,
        "/problems/not-canonicalisable",
    );

    let negative = wire.replace("\"amount_minor\":100", "\"amount_minor\":-100");
    assert_problem(
        &api.post_intent(&negative).await,
        StatusCode::BAD_REQUEST,
        "/problems/malformed-request",
    );

    let response = api
        .post_raw("/v1/intents", "text/plain", wire.clone())
        .await;
    assert_problem(
        &response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "/problems/unsupported-media-type",
    );

    let big_intent = format!("{{\"pad\":\"{}\"}}", "x".repeat(20 * 1024));
    assert_problem(
        &api.post_intent(&big_intent).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "/problems/intent-too-large",
    );

    let huge_body = "x".repeat(MAX_BODY_BYTES + 1);
    assert_problem(
        &api.post_intent(&huge_body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "/problems/body-too-large",
    );

    let response = api
        .send(Request::get("/v1/nowhere").body(Body::empty()).unwrap())
        .await;
    assert_problem(&response, StatusCode::NOT_FOUND, "/problems/not-found");
    let response = api
        .send(Request::get("/v1/intents").body(Body::empty()).unwrap())
        .await;
    assert_problem(
        &response,
        StatusCode::METHOD_NOT_ALLOWED,
        "/problems/method-not-allowed",
    );

    // None of it moved money.
    assert_eq!(balance(&api._committer.0, api.scheme.shop).await, 0);
}
