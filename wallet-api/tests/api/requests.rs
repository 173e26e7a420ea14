//! Payment requests over HTTP, on SQLite and PostgreSQL: a merchant cancels a request and no
//! payment of it commits afterwards (or the payment came first and the cancel is told so),
//! the writer enforces the deadline itself, the request's event stream ends with how it
//! ended, and the public view of a request names only a merchant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ledger::{
    Account, AccountId, AccountKind, Action, Amount, ParticipantId, PaymentRequestId, PublicKey,
    VerifiedIntent,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use wallet_api::auth::Role;
use wallet_api::db::service::Participant;
use wallet_api::http::limits::ApiConfig;
use wallet_api::http::{AppState, EXPIRY_GRACE_MS, router};
use wallet_api::{Committer, CommitterConfig, CommitterTask, Database, ManualClock};

use super::activation::{Reply, request, send};
use super::assert_problem;
use super::support::*;

const CANCELLED: &str = "/problems/payment-request-cancelled";
const EXPIRED: &str = "/problems/payment-request-expired";
const ALREADY_PAID: &str = "/problems/request-already-paid";

/// A funded scheme behind the router, with two shops owned by merchants and a household's
/// account owned by a person. The API and the writer have a clock each, so a test can move
/// the writer past a deadline the API's check still allows.
struct Env {
    app: axum::Router,
    db: Database,
    clock: Arc<ManualClock>,
    writer_clock: Arc<ManualClock>,
    scheme: Scheme,
    committer: Committer,
    label: &'static str,
    /// Forn de Pa's account, and Forn de Pa.
    shop: AccountId,
    shop_owner: ParticipantId,
    /// Another merchant.
    other_owner: ParticipantId,
    /// A household's account (kind holder), owned by a person.
    household: AccountId,
    _task: CommitterTask,
    _db: TestDb,
}

fn participant(id: ParticipantId, kind: &str, name: &str, roles: &[&str]) -> Participant {
    Participant {
        id,
        kind: kind.into(),
        name: name.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        category_code: None,
        address: None,
        opening_hours: None,
        listed: false,
        created_at: NOW_MS,
        area: None,
        social_enterprise: false,
        iban: None,
        bic: None,
        account_holder: None,
    }
}

async fn env(test_db: TestDb) -> Env {
    let db = test_db.open().await;
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let writer_clock = Arc::new(ManualClock::new(NOW_MS));
    let (committer, task) =
        Committer::start(db.clone(), CommitterConfig::default(), writer_clock.clone())
            .await
            .unwrap();
    let scheme = Scheme::new();
    scheme.register(&committer).await;
    scheme.fund(&committer, scheme.alice, 100_00).await;
    let (shop_owner, other_owner, person) = (
        ParticipantId::new(),
        ParticipantId::new(),
        ParticipantId::new(),
    );
    for p in [
        participant(shop_owner, "organisation", "Forn de Pa", &["merchant"]),
        participant(other_owner, "organisation", "Peixateria", &["merchant"]),
        participant(person, "person", "Família Serra", &["beneficiary"]),
    ] {
        db.insert_participant(&p).await.unwrap();
    }
    let (shop, household) = (AccountId::new(), AccountId::new());
    let owned = [
        (shop, AccountKind::Merchant, shop_owner),
        (AccountId::new(), AccountKind::Merchant, other_owner),
        (household, AccountKind::Holder, person),
    ];
    for (id, kind, owner) in owned {
        let account = Account {
            id,
            ..Account::new(scheme.unit, kind, Some(PublicKey::of(&key(40))))
        };
        committer
            .open_owned_account(account, Some(owner))
            .await
            .unwrap();
    }
    let state = AppState::new(
        db.clone(),
        committer.clone(),
        clock.clone(),
        ApiConfig::default(),
        wallet_api::Verifier::start(1).unwrap(),
    );
    Env {
        app: router(state),
        db,
        clock,
        writer_clock,
        scheme,
        committer,
        label: test_db.label,
        shop,
        shop_owner,
        other_owner,
        household,
        _task: task,
        _db: test_db,
    }
}

/// One environment per database (SQLite always, PostgreSQL when configured).
async fn envs() -> Vec<Env> {
    let mut all = Vec::new();
    for test_db in TestDb::all().await {
        all.push(env(test_db).await);
    }
    all
}

impl Env {
    async fn token(&self, role: Role, participant: Option<ParticipantId>) -> String {
        let issued = wallet_api::auth::issue_token(role, participant, "test", NOW_MS);
        self.db.insert_token(&issued.stored).await.unwrap();
        issued.text
    }

    async fn merchant(&self) -> String {
        self.token(Role::Merchant, Some(self.shop_owner)).await
    }

    /// A request for `minor` to `account`, made as `token`, payable for `expires_in_s`.
    async fn ask(&self, token: &str, account: AccountId, minor: i64, expires_in_s: i64) -> Value {
        let amount = format!("{}.{:02}", minor / 100, minor % 100);
        let body = json!({"account_id": account, "amount": amount, "expires_in_s": expires_in_s});
        let made = send(
            &self.app,
            request("POST", "/v1/payment-requests", Some(token), &body),
        )
        .await;
        assert_eq!(made.0, StatusCode::CREATED, "{}: {}", self.label, made.2);
        made.2
    }

    async fn cancel(&self, token: Option<&str>, id: &Value) -> Reply {
        let path = format!("/v1/payment-requests/{}/cancel", id.as_str().unwrap());
        send(&self.app, request("POST", &path, token, &json!({}))).await
    }

    async fn get(&self, id: &Value) -> Value {
        let path = format!("/v1/payment-requests/{}", id.as_str().unwrap());
        let got = send(&self.app, request("GET", &path, None, &json!({}))).await;
        assert_eq!(got.0, StatusCode::OK, "{}: {}", self.label, got.2);
        got.2
    }

    /// Alice's payment of the request `made` (to the shop, for its amount).
    fn paying(&self, made: &Value) -> VerifiedIntent {
        let id: PaymentRequestId = made["id"].as_str().unwrap().parse().unwrap();
        let action = Action::Payment {
            from: self.scheme.alice,
            to: made["account_id"].as_str().unwrap().parse().unwrap(),
            unit: self.scheme.unit,
            amount_minor: Amount::from_minor(made["amount_minor"].as_i64().unwrap()).unwrap(),
            memo: String::new(),
            request: Some(id),
        };
        sign(&self.scheme.alice_key, action)
    }

    async fn submit(&self, intent: &VerifiedIntent) -> Reply {
        let request = Request::post("/v1/intents")
            .header("content-type", "application/json")
            .body(Body::from(intent.signed().to_json()))
            .unwrap();
        send(&self.app, request).await
    }

    /// Opens the request's event stream; returns once the stream is subscribed, with the
    /// task that reads it to its end.
    async fn watch(&self, id: &Value) -> tokio::task::JoinHandle<String> {
        let path = format!("/v1/payment-requests/{}/events", id.as_str().unwrap());
        let app = self.app.clone();
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let request = Request::get(&path).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let _ = ready.send(());
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        });
        subscribed.await.unwrap();
        reader
    }
}

/// The events of a finished stream, as (name, data).
async fn events(reader: tokio::task::JoinHandle<String>) -> Vec<(String, Value)> {
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the stream ends")
        .unwrap();
    let mut found = Vec::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        if let (Some(name), Some(data)) = (field("event:"), field("data:")) {
            found.push((name.to_owned(), serde_json::from_str(data).unwrap()));
        }
    }
    found
}

#[tokio::test]
async fn a_cancelled_request_is_refused_to_every_payer_and_says_cancelled() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let made = env.ask(&merchant, env.shop, 4_20, 900).await;
        let stream = env.watch(&made["id"]).await;

        let started = Instant::now();
        let cancelled = env.cancel(Some(&merchant), &made["id"]).await;
        assert_eq!(cancelled.0, StatusCode::OK, "{label}: {}", cancelled.2);
        assert_eq!(cancelled.2["status"], "cancelled");
        assert_eq!(cancelled.2["cancelled_at_ms"], NOW_MS);
        assert_eq!(
            cancelled.2["expires_at_ms"], NOW_MS,
            "the deadline is brought forward"
        );
        assert_eq!(cancelled.2["entry_id"], Value::Null);

        // The stream learns it at once from the writer, not at the deadline.
        let seen = events(stream).await;
        assert_eq!(seen.len(), 1, "{label}: {seen:?}");
        assert_eq!(seen[0].0, "cancelled", "{label}: {seen:?}");
        assert_eq!(seen[0].1["payment_request"], made["id"]);
        assert!(started.elapsed() < Duration::from_millis(EXPIRY_GRACE_MS as u64));

        let refused = env.submit(&env.paying(&made)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, CANCELLED);
        assert_eq!(refused.2["payment_request"], made["id"]);
        assert_eq!(env.get(&made["id"]).await["status"], "cancelled");
        assert_eq!(balance(&env.committer, env.shop).await, 0, "{label}");

        // Cancelling again answers the same.
        let again = env.cancel(Some(&merchant), &made["id"]).await;
        assert_eq!(again.0, StatusCode::OK, "{label}: {}", again.2);
        assert_eq!(again.2, cancelled.2);

        // A stream opened a grace after the cancellation ends with it at once.
        env.clock.advance(EXPIRY_GRACE_MS);
        let late = events(env.watch(&made["id"]).await).await;
        assert_eq!(late[0].0, "cancelled", "{label}: {late:?}");
    }
}

#[tokio::test]
async fn a_payment_in_flight_before_the_cancel_is_refused_by_the_writer() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let made = env.ask(&merchant, env.shop, 2_00, 900).await;
        let id: PaymentRequestId = made["id"].as_str().unwrap().parse().unwrap();
        let expires_at = made["expires_at_ms"].as_i64().unwrap();
        // The wallet's check passed before the cancel (it read the request then), and its
        // payment reaches the writer after: the writer refuses it.
        let cancelled = env.cancel(Some(&merchant), &made["id"]).await;
        assert_eq!(cancelled.0, StatusCode::OK, "{label}: {}", cancelled.2);
        let late = env
            .committer
            .submit_with_deadline(&env.paying(&made), Some(expires_at))
            .await;
        assert!(
            matches!(late, Err(wallet_api::CommitError::RequestCancelled(r)) if r == id),
            "{label}: {late:?}"
        );
        assert_eq!(balance(&env.committer, env.shop).await, 0, "{label}");
    }
}

#[tokio::test]
async fn a_request_paid_before_the_cancel_stays_paid_and_the_cancel_is_told_so() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let made = env.ask(&merchant, env.shop, 3_00, 900).await;
        let payment = env.paying(&made);
        let paid = env.submit(&payment).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);

        let late = env.cancel(Some(&merchant), &made["id"]).await;
        assert_problem(&late, StatusCode::CONFLICT, ALREADY_PAID);
        assert_eq!(late.2["entry_id"], paid.2["entry_id"], "{label}");
        assert_eq!(late.2["payment_request"], made["id"]);
        let got = env.get(&made["id"]).await;
        assert_eq!(
            (&got["status"], &got["entry_id"]),
            (&json!("paid"), &paid.2["entry_id"])
        );

        // The cancel that lost the race after storing itself (the writer had the payment
        // staged): paid still wins, the payer's retry is still its duplicate, and anyone
        // else is told it is paid, not that it was cancelled.
        let id: PaymentRequestId = made["id"].as_str().unwrap().parse().unwrap();
        assert!(env.db.cancel_payment_request(id, NOW_MS).await.unwrap());
        assert_eq!(env.get(&made["id"]).await["status"], "paid", "{label}");
        let retry = env.submit(&payment).await;
        assert_eq!(retry.0, StatusCode::OK, "{label}: {}", retry.2);
        assert_eq!(retry.2["duplicate"], true);
        let other = env.submit(&env.paying(&made)).await;
        assert_problem(&other, StatusCode::CONFLICT, ALREADY_PAID);
        let again = env.cancel(Some(&merchant), &made["id"]).await;
        assert_problem(&again, StatusCode::CONFLICT, ALREADY_PAID);
        assert_eq!(again.2["entry_id"], paid.2["entry_id"]);
        let seen = events(env.watch(&made["id"]).await).await;
        assert_eq!(seen[0].0, "settled", "{label}: {seen:?}");
        assert_eq!(balance(&env.committer, env.shop).await, 3_00, "{label}");
    }
}

#[tokio::test]
async fn only_the_owning_merchant_or_an_admin_cancels() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let made = env.ask(&merchant, env.shop, 1_00, 900).await;

        let other = env.token(Role::Merchant, Some(env.other_owner)).await;
        let refused = env.cancel(Some(&other), &made["id"]).await;
        assert_problem(&refused, StatusCode::NOT_FOUND, "/problems/not-found");
        let auditor = env.token(Role::Auditor, None).await;
        let refused = env.cancel(Some(&auditor), &made["id"]).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "/problems/forbidden");
        let anonymous = env.cancel(None, &made["id"]).await;
        assert_problem(
            &anonymous,
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
        );
        for unknown in [
            json!(PaymentRequestId::new().to_string()),
            json!("nonsense"),
        ] {
            let missing = env.cancel(Some(&merchant), &unknown).await;
            assert_problem(&missing, StatusCode::NOT_FOUND, "/problems/not-found");
        }
        assert_eq!(env.get(&made["id"]).await["status"], "open", "{label}");

        let admin = env.token(Role::Admin, None).await;
        let cancelled = env.cancel(Some(&admin), &made["id"]).await;
        assert_eq!(cancelled.0, StatusCode::OK, "{label}: {}", cancelled.2);
        assert_eq!(cancelled.2["status"], "cancelled");
    }
}

#[tokio::test]
async fn a_payment_the_writer_reaches_after_the_deadline_is_refused() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let in_time = env.ask(&merchant, env.shop, 1_50, 60).await;
        let payment = env.paying(&in_time);
        let paid = env.submit(&payment).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        let late = env.ask(&merchant, env.shop, 2_50, 60).await;

        // The API's check still sees the request open; by the writer's clock the deadline
        // has passed when it reaches the payment.
        env.writer_clock.advance(60_001);
        let refused = env.submit(&env.paying(&late)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, EXPIRED);
        assert_eq!(refused.2["payment_request"], late["id"]);
        assert_eq!(balance(&env.committer, env.shop).await, 1_50, "{label}");
        // The payment that paid the other in time is still answered as itself.
        let retry = env.submit(&payment).await;
        assert_eq!(retry.0, StatusCode::OK, "{label}: {}", retry.2);
        assert_eq!(retry.2["entry_id"], paid.2["entry_id"]);

        // Once the API's clock agrees, its own check refuses, and the retry still passes.
        env.clock.advance(60_001);
        let refused = env.submit(&env.paying(&late)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, EXPIRED);
        assert_eq!(env.submit(&payment).await.0, StatusCode::OK, "{label}");
        assert_eq!(env.get(&late["id"]).await["status"], "expired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_stream_waits_a_grace_past_the_deadline_before_saying_expired() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let paid_late = env.ask(&merchant, env.shop, 1_00, 1).await;
        let unpaid = env.ask(&merchant, env.shop, 2_00, 1).await;
        let started = Instant::now();
        let paid_stream = env.watch(&paid_late["id"]).await;
        let unpaid_stream = env.watch(&unpaid["id"]).await;

        // Past the deadline on the stream's timer, a payment the writer staged in time (its
        // clock has not moved) commits: the stream reports it rather than `expired`.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let paid = env.submit(&env.paying(&paid_late)).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        let seen = events(paid_stream).await;
        assert_eq!(seen.len(), 1, "{label}: {seen:?}");
        assert_eq!(seen[0].0, "settled", "{label}: {seen:?}");
        assert_eq!(seen[0].1["entry_id"], paid.2["entry_id"]);

        // Nothing paid the other: `expired`, but only once the grace is over.
        let seen = events(unpaid_stream).await;
        assert_eq!(seen.len(), 1, "{label}: {seen:?}");
        assert_eq!(seen[0].0, "expired", "{label}: {seen:?}");
        assert_eq!(seen[0].1["expires_at_ms"], unpaid["expires_at_ms"]);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1_000 + EXPIRY_GRACE_MS as u64 - 100),
            "{label}: expired after {waited:?}"
        );
    }
}

#[tokio::test]
async fn the_public_request_names_a_merchant_but_never_a_household() {
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let shop_request = env.ask(&merchant, env.shop, 1_00, 900).await;
        let got = env.get(&shop_request["id"]).await;
        assert_eq!(got["payee"]["name"], "Forn de Pa", "{label}: {got}");
        assert_eq!(
            got["payee"]["public_key"],
            PublicKey::of(&key(40)).to_base64url()
        );
        assert!(got["payee"].get("participant_id").is_none(), "{got}");

        // A person asking a neighbour for money: the reference is shown around, so their
        // name is not.
        let admin = env.token(Role::Admin, None).await;
        let household_request = env.ask(&admin, env.household, 1_00, 900).await;
        let got = env.get(&household_request["id"]).await;
        assert_eq!(got["payee"]["name"], Value::Null, "{label}: {got}");
        assert!(got["payee"]["public_key"].is_string());
        assert!(got["payee"].get("participant_id").is_none(), "{got}");
        assert!(!got.to_string().contains("Serra"), "{got}");
    }
}

#[tokio::test]
async fn a_paid_request_is_forgotten_past_its_deadline_yet_stays_paid_and_never_paid_twice() {
    use std::sync::atomic::Ordering;
    use wallet_api::CommitError;
    for env in envs().await {
        let label = env.label;
        let merchant = env.merchant().await;
        let made = env.ask(&merchant, env.shop, 1_25, 60).await;
        let id: PaymentRequestId = made["id"].as_str().unwrap().parse().unwrap();
        let expires_at = made["expires_at_ms"].as_i64().unwrap();
        let payment = env.paying(&made);
        let paid = env.submit(&payment).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        let kept = |env: &Env| {
            (
                env.committer.stats().requests_kept.load(Ordering::Relaxed),
                env.committer.view().read().paid_requests_kept(),
            )
        };
        assert_eq!(kept(&env), (1, 1), "{label}: kept while payable");

        // Past the deadline by both clocks. A second payment whose check passed in time
        // reaches the writer now: the writer forgets the paid request, and the deadline
        // refuses the payment instead.
        env.clock.advance(60_001);
        env.writer_clock.advance(60_001);
        let late = env
            .committer
            .submit_with_deadline(&env.paying(&made), Some(expires_at))
            .await;
        assert!(
            matches!(late, Err(CommitError::RequestExpired { request, .. }) if request == id),
            "{label}: {late:?}"
        );
        assert_eq!(kept(&env), (0, 0), "{label}: forgotten past the deadline");
        // Without a deadline from its submitter, the writer reads the stored one.
        let undated = env.committer.submit(&env.paying(&made)).await;
        assert!(
            matches!(undated, Err(CommitError::RequestExpired { request, .. }) if request == id),
            "{label}: {undated:?}"
        );
        // Over HTTP the check refuses it first; the first payment's retry is still itself.
        let refused = env.submit(&env.paying(&made)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, EXPIRED);
        let retry = env.submit(&payment).await;
        assert_eq!(retry.0, StatusCode::OK, "{label}: {}", retry.2);
        assert_eq!(retry.2["entry_id"], paid.2["entry_id"]);

        // Storage still says who paid it: the request, its cancel and its stream.
        let got = env.get(&made["id"]).await;
        assert_eq!(
            (&got["status"], &got["entry_id"]),
            (&json!("paid"), &paid.2["entry_id"]),
            "{label}: {got}"
        );
        let cancel = env.cancel(Some(&merchant), &made["id"]).await;
        assert_problem(&cancel, StatusCode::CONFLICT, ALREADY_PAID);
        assert_eq!(cancel.2["entry_id"], paid.2["entry_id"], "{label}");
        let seen = events(env.watch(&made["id"]).await).await;
        assert_eq!(seen[0].0, "settled", "{label}: {seen:?}");
        assert_eq!(seen[0].1["entry_id"], paid.2["entry_id"]);
        // The writer's own answer to a cancel of it also comes from storage.
        let closure = env.committer.close_request(id, expires_at).await.unwrap();
        assert_eq!(
            closure,
            wallet_api::RequestClosure::AlreadyPaid(
                paid.2["entry_id"].as_str().unwrap().parse().unwrap()
            ),
            "{label}"
        );
        assert_eq!(balance(&env.committer, env.shop).await, 1_25, "{label}");
    }
}
