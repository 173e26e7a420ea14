//! The HTTP API driven in-process (`oneshot`, no socket) against a real committer and
//! database: signed payments, idempotent retries, and one clear problem+json per mistake.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../committer/support.rs"]
#[allow(dead_code)]
mod support;

mod activation;
mod cards;
mod consent;
mod history;
mod requests;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ledger::{Action, EntryKind, IntentId, Leg, Tags};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt as _;
use wallet_api::auth::Role;
use wallet_api::http::limits::ApiConfig;
use wallet_api::http::{AppState, MAX_BODY_BYTES, router};
use wallet_api::{Committer, CommitterTask, ManualClock};

struct Api {
    app: axum::Router,
    db: wallet_api::Database,
    scheme: Scheme,
    _db: TestDb,
    _committer: (Committer, CommitterTask),
}

/// A funded scheme (Alice holds 100.00) behind the router, with the clock at `now_ms`.
async fn api_at(now_ms: i64) -> Api {
    api_with(now_ms, ApiConfig::default()).await
}

async fn api_with(now_ms: i64, config: ApiConfig) -> Api {
    api_on(TestDb::sqlite(), now_ms, config).await
}

/// [`api_with`] on the database `test_db`.
async fn api_on(test_db: TestDb, now_ms: i64, config: ApiConfig) -> Api {
    let db = test_db.open().await;
    let (committer, task) = start(&db).await;
    let scheme = Scheme::new();
    scheme.register(&committer).await;
    scheme.fund(&committer, scheme.alice, 100_00).await;
    let state = AppState::new(
        db.clone(),
        committer.clone(),
        Arc::new(ManualClock::new(now_ms)),
        config,
        wallet_api::Verifier::start(1).unwrap(),
    );
    Api {
        app: router(state),
        db,
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

    /// A token of `role` stored in the database, as `coledger token create` does.
    async fn token(&self, role: Role) -> String {
        let issued = wallet_api::auth::issue_token(role, None, "test", NOW_MS);
        self.db.insert_token(&issued.stored).await.unwrap();
        issued.text
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, String, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
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

    // An entry with a leg of nothing.
    let issue = |legs: Vec<(ledger::AccountId, i64)>| {
        let legs = legs
            .into_iter()
            .map(|(account, delta)| Leg {
                account,
                unit: api.scheme.unit,
                delta,
            })
            .collect();
        let action = Action::Entry {
            kind: EntryKind::Issue,
            legs,
            memo: String::new(),
            tags: Tags::default(),
        };
        sign(&api.scheme.operator, action).signed().to_json()
    };
    let nothing = issue(vec![(api.scheme.issuer, 0), (api.scheme.alice, 0)]);
    assert_problem(
        &api.post_intent(&nothing).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/zero-amount",
    );

    // A scheme rule: an issuer pays out only by issuing, never by a payment.
    let issuer_pays = sign(
        &api.scheme.operator,
        api.scheme
            .payment(api.scheme.issuer, api.scheme.alice, 1_00),
    );
    let refused = api.post_intent(&issuer_pays.signed().to_json()).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/rule-violation",
    );
    assert!(
        refused.2["detail"]
            .as_str()
            .unwrap()
            .contains("an issuer account pays out only through issue entries"),
        "{}",
        refused.2
    );

    // A unit nobody registered, and a registered unit the accounts do not hold.
    let pay_in = |unit: &str| {
        let mut action = api.scheme.payment(api.scheme.alice, api.scheme.shop, 1_00);
        if let Action::Payment { unit: u, .. } = &mut action {
            *u = ledger::UnitCode::new(unit).unwrap();
        }
        sign(&api.scheme.alice_key, action).signed().to_json()
    };
    let unknown = api.post_intent(&pay_in("NOPE")).await;
    assert_problem(
        &unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/unknown-unit",
    );
    assert_eq!(unknown.2["unit"], "NOPE");
    let admin = api.token(Role::Admin).await;
    let register_hours = async || {
        let hours =
            r#"{"code": "HOURS", "name": "Time bank hours", "scale": 0, "kind": "mutual_credit"}"#;
        api.call("POST", "/v1/units", &admin, "application/json", hours)
            .await
    };
    let unit = register_hours().await;
    assert_eq!(unit.0, StatusCode::CREATED, "{}", unit.2);
    assert_problem(
        &api.post_intent(&pay_in("HOURS")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/unit-mismatch",
    );
    // Registering the unit again is a conflict, not a second unit.
    let again = register_hours().await;
    assert_problem(&again, StatusCode::CONFLICT, "/problems/duplicate");

    // An account whose balance may not pass 1.00.
    let capped = api
        .call(
            "POST",
            "/v1/accounts",
            &admin,
            "application/json",
            r#"{"unit": "PGI-EUR", "kind": "holder", "upper_limit": "1.00"}"#,
        )
        .await;
    assert_eq!(capped.0, StatusCode::CREATED, "{}", capped.2);
    let capped: ledger::AccountId = capped.2["id"].as_str().unwrap().parse().unwrap();
    let over = api
        .post_intent(&issue(vec![(api.scheme.issuer, -2_00), (capped, 2_00)]))
        .await;
    assert_problem(
        &over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/limit-exceeded",
    );
    assert_eq!(over.2["limit_minor"], 1_00, "{}", over.2);

    // Query parameters: one the route does not know is named; one given twice is a bad query.
    let get = async |query: &str| {
        let path = format!("/v1/accounts/{}/entries?{query}", api.scheme.alice);
        api.call("GET", &path, &admin, "application/json", "").await
    };
    let unknown = get("colour=blue").await;
    assert_problem(
        &unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation-failed",
    );
    assert_eq!(unknown.2["field"], "colour");
    assert_problem(
        &get("limit=5&limit=6").await,
        StatusCode::BAD_REQUEST,
        "/problems/bad-query",
    );
}

impl Api {
    /// The shop's terminal (key 3) refunds `minor` of `payment` to Alice.
    fn refund(&self, payment: &Value, minor: i64) -> String {
        self.refund_to(payment, self.scheme.alice, minor)
    }

    fn refund_to(&self, payment: &Value, to: ledger::AccountId, minor: i64) -> String {
        sign(&key(3), self.refund_action(payment, to, minor))
            .signed()
            .to_json()
    }

    fn refund_action(&self, payment: &Value, to: ledger::AccountId, minor: i64) -> Action {
        Action::Refund {
            payment: payment.as_str().unwrap().parse().unwrap(),
            from: self.scheme.shop,
            to,
            unit: self.scheme.unit,
            amount_minor: ledger::Amount::from_minor(minor).unwrap(),
            memo: "devolución".into(),
        }
    }

    /// Alice pays the shop `minor`; the committed entry's id.
    async fn paid(&self, minor: i64) -> Value {
        let (status, _, body) = self.post_intent(&self.payment(minor)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["entry_id"].clone()
    }

    /// Stops the writer and starts another on the same database, as a restart does: the
    /// Book is rebuilt by replaying the journal.
    async fn restart(self) -> Api {
        let Api {
            app,
            db,
            scheme,
            _db,
            _committer: (committer, task),
        } = self;
        drop(app);
        stop(committer, task).await;
        let (committer, task) = start(&db).await;
        let state = AppState::new(
            db.clone(),
            committer.clone(),
            Arc::new(ManualClock::new(NOW_MS)),
            ApiConfig::default(),
            wallet_api::Verifier::start(1).unwrap(),
        );
        Api {
            app: router(state),
            db,
            scheme,
            _db,
            _committer: (committer, task),
        }
    }
}

#[tokio::test]
async fn a_merchant_refunds_a_whole_sale_and_the_entry_names_the_payment() {
    let api = api().await;
    let payment = api.paid(12_50).await;
    let wire = api.refund(&payment, 12_50);
    let (status, _, refunded) = api.post_intent(&wire).await;
    assert_eq!(status, StatusCode::CREATED, "{refunded}");
    // A retry is the same refund, not a second one.
    let (status, _, again) = api.post_intent(&wire).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["entry_id"], refunded["entry_id"]);
    assert_eq!(balance(&api._committer.0, api.scheme.alice).await, 100_00);
    assert_eq!(balance(&api._committer.0, api.scheme.shop).await, 0);

    let auditor = api.token(Role::Auditor).await;
    let path = format!("/v1/entries/{}", refunded["entry_id"].as_str().unwrap());
    let (status, _, entry) = api
        .call("GET", &path, &auditor, "application/json", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["kind"], "reversal");
    assert_eq!(entry["tags"]["reverses"], payment);
    assert_eq!(entry["memo"], "devolución");
    assert_eq!(entry["postings"][0]["debit"], json!(api.scheme.shop));
    assert_eq!(entry["postings"][0]["credit"], json!(api.scheme.alice));
    assert_eq!(entry["postings"][0]["amount_minor"], 12_50);
    assert_eq!(entry["intent"]["signed"]["action"]["type"], "refund");
    assert_eq!(entry["intent"]["signed"]["action"]["payment"], payment);
    // Nothing is left to refund.
    assert_problem(
        &api.post_intent(&api.refund(&payment, 1)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/refund-exceeds-payment",
    );
}

#[tokio::test]
async fn partial_refunds_add_up_and_one_too_many_is_refused_with_what_is_left() {
    let api = api().await;
    let payment = api.paid(10_00).await;
    assert_eq!(
        api.post_intent(&api.refund(&payment, 4_00)).await.0,
        StatusCode::CREATED
    );
    let over = api.post_intent(&api.refund(&payment, 7_00)).await;
    assert_problem(
        &over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/refund-exceeds-payment",
    );
    assert_eq!(over.2["refundable_minor"], 6_00);
    assert_eq!(over.2["requested_minor"], 7_00);
    assert_eq!(over.2["payment"], payment);
    assert!(
        over.2["detail"]
            .as_str()
            .unwrap()
            .contains("600 minor units left"),
        "{}",
        over.2
    );
    assert_eq!(
        api.post_intent(&api.refund(&payment, 6_00)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(balance(&api._committer.0, api.scheme.alice).await, 100_00);
    assert_eq!(balance(&api._committer.0, api.scheme.shop).await, 0);
}

#[tokio::test]
async fn refunds_of_nothing_to_the_wrong_account_or_by_the_wrong_key_are_refused() {
    let api = api().await;
    let payment = api.paid(5_00).await;
    let ghost = json!(ledger::EntryId::new());
    let response = api.post_intent(&api.refund(&ghost, 1_00)).await;
    assert_problem(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/unknown-payment",
    );
    assert_eq!(response.2["payment"], ghost);

    let response = api
        .post_intent(&api.refund_to(&payment, api.scheme.bob, 1_00))
        .await;
    assert_problem(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/refund-mismatch",
    );
    assert_eq!(response.2["field"], "action.to");

    // Alice cannot refund herself from the shop's account.
    let theft = sign(
        &api.scheme.alice_key,
        api.refund_action(&payment, api.scheme.alice, 1_00),
    )
    .signed()
    .to_json();
    assert_problem(
        &api.post_intent(&theft).await,
        StatusCode::FORBIDDEN,
        "/problems/not-authorised",
    );

    // A general entry cannot carry the link: only a refund action makes one.
    let legs = vec![
        Leg {
            account: api.scheme.shop,
            unit: api.scheme.unit,
            delta: -1_00,
        },
        Leg {
            account: api.scheme.alice,
            unit: api.scheme.unit,
            delta: 1_00,
        },
    ];
    let action = Action::Entry {
        kind: EntryKind::Reversal,
        legs,
        memo: String::new(),
        tags: Tags {
            reverses: Some(payment.as_str().unwrap().parse().unwrap()),
            ..Tags::default()
        },
    };
    let faked = sign(&key(3), action).signed().to_json();
    let response = api.post_intent(&faked).await;
    assert_problem(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation-failed",
    );
    assert_eq!(response.2["field"], "action.tags.reverses");

    assert_eq!(balance(&api._committer.0, api.scheme.shop).await, 5_00);
}

#[tokio::test]
async fn what_is_left_to_refund_survives_a_restart() {
    let api = api().await;
    let payment = api.paid(10_00).await;
    assert_eq!(
        api.post_intent(&api.refund(&payment, 7_50)).await.0,
        StatusCode::CREATED
    );
    let api = api.restart().await;
    let over = api.post_intent(&api.refund(&payment, 2_51)).await;
    assert_problem(
        &over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/refund-exceeds-payment",
    );
    assert_eq!(over.2["refundable_minor"], 2_50);
    assert_eq!(
        api.post_intent(&api.refund(&payment, 2_50)).await.0,
        StatusCode::CREATED
    );
    let api = api.restart().await;
    assert_problem(
        &api.post_intent(&api.refund(&payment, 1)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/refund-exceeds-payment",
    );
    assert_eq!(balance(&api._committer.0, api.scheme.alice).await, 100_00);
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

    // A 413 names the limit that applied: the API's, or the enrolment route's own (64 MiB).
    let too_large = |reply: &(StatusCode, String, Value), limit: usize| {
        assert_problem(
            reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/body-too-large",
        );
        let detail = reply.2["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("limited to {limit} bytes")),
            "{detail}"
        );
    };
    let huge_body = "x".repeat(MAX_BODY_BYTES + 1);
    too_large(&api.post_intent(&huge_body).await, MAX_BODY_BYTES);
    let admin = api.token(Role::Admin).await;
    let enrolment_limit = 64 * 1024 * 1024;
    let register = "x".repeat(enrolment_limit + 1);
    let path = format!("/v1/programmes/{}/enrolments", uuid::Uuid::now_v7());
    too_large(
        &api.call("POST", &path, &admin, "text/csv", &register).await,
        enrolment_limit,
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

#[tokio::test]
async fn every_route_is_in_the_openapi_description_and_answers() {
    let api = api().await;
    let (status, content_type, spec) = api
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/json"));
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1: {}",
        spec["openapi"]
    );
    let routes = wallet_api::http::routes();
    assert!(routes.len() > 20);
    for (method, path) in &routes {
        let documented = &spec["paths"][path][method.to_lowercase()];
        assert!(
            documented.is_object(),
            "{method} {path} is not in /openapi.json"
        );
        assert!(
            documented["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no responses"
        );
        // And the router answers it (anything but the fallback's "no such route").
        let concrete = path
            .replace("{code}", "NONE")
            .replace("{id}", "00000000-0000-0000-0000-000000000000");
        let request = Request::builder()
            .method(*method)
            .uri(&concrete)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        if path.ends_with("/events") {
            continue; // streams stay open; covered end to end
        }
        let (status, _, body) = api.send(request).await;
        assert!(
            !(status == StatusCode::NOT_FOUND && body["detail"] == "no such route")
                && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not routed ({status})"
        );
    }
    // Nothing documented that is not routed.
    let documented: usize = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "the description lists routes the router lacks"
    );

    let (status, content_type, _) = api
        .send(Request::get("/docs").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
}

#[tokio::test]
async fn every_write_route_refuses_bad_json_clearly() {
    let api = api().await;
    let admin = api.token(Role::Admin).await;
    let account = api.scheme.alice;
    for (method, path) in [
        ("POST", "/v1/units".to_owned()),
        ("POST", "/v1/participants".to_owned()),
        ("POST", "/v1/accounts".to_owned()),
        ("PUT", format!("/v1/accounts/{account}/key")),
        ("POST", format!("/v1/accounts/{account}/activation-codes")),
        ("PUT", format!("/v1/accounts/{account}/status")),
        ("POST", "/v1/payment-requests".to_owned()),
        ("POST", "/v1/sessions/challenge".to_owned()),
        ("POST", "/v1/sessions".to_owned()),
        (
            "PUT",
            format!(
                "/v1/participants/{}/research-consent",
                ledger::ParticipantId::new()
            ),
        ),
    ] {
        let broken = api
            .call(method, &path, &admin, "application/json", "{")
            .await;
        assert_problem(
            &broken,
            StatusCode::BAD_REQUEST,
            "/problems/malformed-request",
        );
        let form = api
            .call(
                method,
                &path,
                &admin,
                "application/x-www-form-urlencoded",
                "a=b",
            )
            .await;
        assert_problem(
            &form,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
        );
        let unknown = api
            .call(
                method,
                &path,
                &admin,
                "application/json",
                "{\"colour\": \"blue\"}",
            )
            .await;
        assert!(
            unknown.0.is_client_error(),
            "{method} {path}: {:?}",
            unknown
        );
        assert!(
            unknown.2["detail"].as_str().unwrap().contains("colour")
                || unknown.2["detail"]
                    .as_str()
                    .unwrap()
                    .contains("missing field"),
            "{method} {path}: {}",
            unknown.2
        );
    }
    // A wrong type names its field.
    let wrong = api
        .call(
            "POST",
            "/v1/units",
            &admin,
            "application/json",
            r#"{"code": "X-PTS", "name": "x", "scale": "two", "kind": "points"}"#,
        )
        .await;
    assert_problem(
        &wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation-failed",
    );
    assert_eq!(wrong.2["field"], "scale");
    // An unknown field is named.
    let unknown = api
        .call(
            "POST",
            "/v1/units",
            &admin,
            "application/json",
            r#"{"code": "X-PTS", "name": "x", "scale": 0, "kind": "points", "colour": 1}"#,
        )
        .await;
    assert!(
        unknown.2["detail"].as_str().unwrap().contains("colour"),
        "{}",
        unknown.2
    );
    // A limit more precise than the unit, or an upper limit below zero, is refused, naming
    // the field.
    for (body, field) in [
        (
            r#"{"unit": "PGI-EUR", "kind": "holder", "lower_limit": "-1.005"}"#,
            "lower_limit",
        ),
        (
            r#"{"unit": "PGI-EUR", "kind": "holder", "upper_limit": "-5"}"#,
            "upper_limit",
        ),
    ] {
        let refused = api
            .call("POST", "/v1/accounts", &admin, "application/json", body)
            .await;
        assert_problem(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );
        assert_eq!(refused.2["field"], field, "{}", refused.2);
    }
}

/// Open event streams are capped for all callers together: past the limit a new one is a
/// 503 that says so, and a closed stream frees its place.
#[tokio::test]
async fn event_streams_beyond_the_limit_are_refused_until_one_closes() {
    let config = ApiConfig {
        max_event_streams: 1,
        ..ApiConfig::default()
    };
    let api = api_with(NOW_MS, config).await;
    let admin = api.token(Role::Admin).await;
    let open = || {
        Request::get(format!("/v1/accounts/{}/events", api.scheme.alice))
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap()
    };
    let first = api.app.clone().oneshot(open()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let refused = api.send(open()).await;
    assert_problem(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "/problems/too-many-event-streams",
    );
    drop(first);
    let again = api.app.clone().oneshot(open()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn writes_beyond_the_rate_are_refused_with_429() {
    let config = ApiConfig {
        writes_per_second: 0.0,
        write_burst: 2.0,
        ..ApiConfig::default()
    };
    let api = api_with(NOW_MS, config).await;
    assert_eq!(
        api.post_intent(&api.payment(1)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post_intent(&api.payment(1)).await.0,
        StatusCode::CREATED
    );
    let third = api.post_intent(&api.payment(1)).await;
    assert_problem(
        &third,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/rate-limited",
    );
    assert_eq!(balance(&api._committer.0, api.scheme.shop).await, 2);
    // Operator writes are limited per token.
    let admin = api.token(Role::Admin).await;
    let person = r#"{"kind": "person", "name": "Eva"}"#;
    for _ in 0..2 {
        let made = api
            .call(
                "POST",
                "/v1/participants",
                &admin,
                "application/json",
                person,
            )
            .await;
        assert_eq!(made.0, StatusCode::CREATED, "{}", made.2);
    }
    let third = api
        .call(
            "POST",
            "/v1/participants",
            &admin,
            "application/json",
            person,
        )
        .await;
    assert_problem(
        &third,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/rate-limited",
    );
    let other = api.token(Role::Admin).await;
    let made = api
        .call(
            "POST",
            "/v1/participants",
            &other,
            "application/json",
            person,
        )
        .await;
    assert_eq!(
        made.0,
        StatusCode::CREATED,
        "another token has its own allowance"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_show_the_committer() {
    let api = api().await;
    api.post_intent(&api.payment(5)).await;
    let request = Request::get("/metrics")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    let response = api.app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "trace-me-42",
        "a client's request id is echoed"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"coledger_http_requests_total{route="/v1/intents",method="POST",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("coledger_http_request_duration_seconds_bucket{route=\"/v1/intents\""),
        "{text}"
    );
    assert!(text.contains("coledger_entries_committed_total"), "{text}");
    assert!(text.contains("coledger_committer_queue_depth 0"), "{text}");
    assert!(
        text.contains("coledger_write_state{state=\"ok\"} 1")
            && text.contains("coledger_write_state{state=\"storage-full\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("coledger_committer_batch_size_bucket{le=\"1\"}"),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|line| !line.is_empty() && !line.starts_with(char::is_whitespace)),
        "every line is a comment or a sample, flush left: {text}"
    );
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(
        sample("coledger_committer_write_seconds_count") >= 1.0
            && sample("coledger_committer_write_seconds_sum") > 0.0,
        "the committed payment's batch was timed: {text}"
    );
    assert_eq!(
        sample("coledger_committer_write_seconds_bucket{le=\"+Inf\"}"),
        sample("coledger_committer_write_seconds_count"),
        "every timed write is in a bucket: {text}"
    );
    assert!(
        text.contains("coledger_committer_write_seconds_bucket{le=\"0.001\"}")
            && text.contains("coledger_committer_write_seconds_bucket{le=\"1\"}"),
        "{text}"
    );
    assert!(
        sample("coledger_verifier_intents_total") >= 1.0
            && sample("coledger_verifier_batches_total") >= 1.0
            && sample("coledger_verifier_batches_total")
                <= sample("coledger_verifier_intents_total")
            && sample("coledger_verifier_signer_keys") >= 1.0
            && sample("coledger_verifier_signer_key_hits_total") >= 0.0,
        "the payment's signer key was kept once its signature verified: {text}"
    );
    let response = api
        .app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let made = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(
        made.len(),
        36,
        "a request id is made when none is given: {made}"
    );
}

#[tokio::test]
async fn idempotency_records_are_kept_then_forgotten_after_the_window() {
    use wallet_api::db::service::Remembered;
    let api = api().await;
    let (owner, key, print) = ("token:x", "k-1", [1u8; 32]);
    let first = api
        .db
        .begin_idempotent(owner, key, &print, 1_000)
        .await
        .unwrap();
    assert_eq!(first, Remembered::New);
    let racing = api
        .db
        .begin_idempotent(owner, key, &print, 1_001)
        .await
        .unwrap();
    assert_eq!(racing, Remembered::InProgress);
    api.db
        .finish_idempotent(owner, key, 201, "{}")
        .await
        .unwrap();
    let retry = api
        .db
        .begin_idempotent(owner, key, &print, 2_000)
        .await
        .unwrap();
    assert_eq!(
        retry,
        Remembered::Done {
            status: 201,
            body: "{}".into()
        }
    );
    let other = api
        .db
        .begin_idempotent(owner, key, &[2u8; 32], 2_000)
        .await
        .unwrap();
    assert_eq!(other, Remembered::Mismatch);
    assert_eq!(api.db.prune_idempotency(1_500).await.unwrap(), 1);
    let later = api
        .db
        .begin_idempotent(owner, key, &print, 3_000)
        .await
        .unwrap();
    assert_eq!(later, Remembered::New);
}
