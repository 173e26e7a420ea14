//! Activation codes over HTTP, on SQLite and PostgreSQL: an operator issues a one-time code,
//! a phone wallet with no token registers its fresh key with it, and every way a code can be
//! wrong (mistyped, expired, used, superseded, raced, guessed too often) gets one answer.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{AccountId, ParticipantId, PublicKey, Signature, Unit, UnitCode, UnitKind};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;
use wallet_api::activation::ActivationCode;
use wallet_api::auth::{Role, session_signed_bytes};
use wallet_api::cards::{CardPrefix, KdfParams, ServerSecret};
use wallet_api::db::service::{Participant, Remembered};
use wallet_api::http::limits::ApiConfig;
use wallet_api::http::{AppState, key_proof_bytes, router};
use wallet_api::programme::{
    AmountRule, CardSettings, HouseholdInput, NewProgramme, Programme, ProgrammeRules, Programmes,
    Schedule,
};
use wallet_api::{Committer, CommitterTask, Database, ManualClock};

use super::assert_problem;
use super::support::*;

const BAD_CODE: &str = "/problems/bad-activation-code";

/// A funded scheme (Alice holds 100.00) behind the router, on one database, with a clock the
/// test moves.
struct Env {
    app: axum::Router,
    db: Database,
    clock: Arc<ManualClock>,
    scheme: Scheme,
    committer: Committer,
    label: &'static str,
    _task: CommitterTask,
    _db: TestDb,
}

async fn env(test_db: TestDb, config: ApiConfig) -> Env {
    let db = test_db.open().await;
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let (committer, task) = start_on(&db, &clock).await;
    let scheme = Scheme::new();
    scheme.register(&committer).await;
    scheme.fund(&committer, scheme.alice, 100_00).await;
    let state = AppState::new(
        db.clone(),
        committer.clone(),
        clock.clone(),
        config,
        wallet_api::Verifier::start(1).unwrap(),
    );
    Env {
        app: router(state),
        db,
        clock,
        scheme,
        committer,
        label: test_db.label,
        _task: task,
        _db: test_db,
    }
}

/// One environment per database (SQLite always, PostgreSQL when configured).
async fn envs(config: ApiConfig) -> Vec<Env> {
    let mut all = Vec::new();
    for test_db in TestDb::all().await {
        all.push(env(test_db, config.clone()).await);
    }
    all
}

pub(super) type Reply = (StatusCode, String, Value);

pub(super) async fn send(app: &axum::Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
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

pub(super) fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// Logs in to `app` as the holder of `account` with `key`: a challenge, signed.
pub(super) async fn holder_login(
    app: &axum::Router,
    account: AccountId,
    key: &SigningKey,
) -> Reply {
    let body = json!({"account_id": account});
    let challenge = send(app, request("POST", "/v1/sessions/challenge", None, &body)).await;
    assert_eq!(challenge.0, StatusCode::CREATED, "{}", challenge.2);
    let text = challenge.2["challenge"].as_str().unwrap();
    let signature = Signature(key.sign(&session_signed_bytes(account, text)).to_bytes());
    let login = json!({
        "account_id": account, "challenge": text, "signature": signature.to_base64url()
    });
    send(app, request("POST", "/v1/sessions", None, &login)).await
}

/// A fresh key, as a phone wallet makes one in the browser.
fn fresh_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    SigningKey::from_bytes(&seed)
}

/// The registration body: the key, its proof, and (if any) the code as typed.
fn registration(account: AccountId, key: &SigningKey, code: Option<&str>) -> Value {
    let public = PublicKey::of(key);
    let proof = Signature(key.sign(&key_proof_bytes(account, &public)).to_bytes());
    let mut body = json!({"public_key": public.to_base64url(), "proof": proof.to_base64url()});
    if let Some(code) = code {
        body["activation_code"] = json!(code);
    }
    body
}

impl Env {
    async fn token(&self, role: Role, participant: Option<ParticipantId>) -> String {
        let issued = wallet_api::auth::issue_token(role, participant, "test", NOW_MS);
        self.db.insert_token(&issued.stored).await.unwrap();
        issued.text
    }

    async fn issue(&self, token: &str, account: AccountId, body: Value) -> Reply {
        let path = format!("/v1/accounts/{account}/activation-codes");
        send(&self.app, request("POST", &path, Some(token), &body)).await
    }

    /// Issues a code as `token`, which must succeed; returns the code as shown.
    async fn code_for(&self, token: &str, account: AccountId) -> String {
        let reply = self.issue(token, account, json!({})).await;
        assert_eq!(reply.0, StatusCode::CREATED, "{}: {}", self.label, reply.2);
        reply.2["code"].as_str().unwrap().to_owned()
    }

    /// `PUT /v1/accounts/{id}/key` with no token.
    async fn activate(&self, account: AccountId, key: &SigningKey, code: &str) -> Reply {
        let path = format!("/v1/accounts/{account}/key");
        let body = registration(account, key, Some(code));
        send(&self.app, request("PUT", &path, None, &body)).await
    }

    async fn authority(&self, account: AccountId) -> Option<PublicKey> {
        self.committer
            .view()
            .read()
            .account(account)
            .unwrap()
            .account
            .authority
    }

    async fn pay(&self, key: &SigningKey, from: AccountId, minor: i64) -> Reply {
        let wire = sign(key, self.scheme.payment(from, self.scheme.shop, minor))
            .signed()
            .to_json();
        let request = Request::post("/v1/intents")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(wire))
            .unwrap();
        send(&self.app, request).await
    }

    /// Logs in as the holder of `account` with `key`: a challenge, signed.
    async fn login(&self, account: AccountId, key: &SigningKey) -> Reply {
        holder_login(&self.app, account, key).await
    }
}

#[tokio::test]
async fn an_issued_code_registers_a_fresh_key_once_and_the_key_pays_and_logs_in() {
    for env in envs(ApiConfig::default()).await {
        let label = env.label;
        let manager = env.token(Role::ProgrammeManager, None).await;
        let alice = env.scheme.alice;
        let issued = env.issue(&manager, alice, json!({})).await;
        assert_eq!(issued.0, StatusCode::CREATED, "{label}: {}", issued.2);
        assert_eq!(issued.2["account_id"], alice.to_string());
        assert_eq!(
            issued.2["expires_at_ms"],
            NOW_MS + 7 * 86_400_000,
            "a week by default"
        );
        let code = issued.2["code"].as_str().unwrap().to_owned();
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 3, "{code}");
        assert!(groups.iter().all(|g| g.len() == 4), "{code}");
        assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");

        // Only the hash is stored.
        let stored = env.db.activation_codes(alice).await.unwrap();
        assert_eq!(stored.len(), 1);
        let parsed = ActivationCode::parse(&code).unwrap();
        assert_eq!(stored[0].code_hash, parsed.hash(alice));
        assert_eq!(stored[0].used_at, None);

        let phone = fresh_key();
        let activated = env.activate(alice, &phone, &code).await;
        assert_eq!(activated.0, StatusCode::OK, "{label}: {}", activated.2);
        let phone_public = PublicKey::of(&phone);
        assert_eq!(activated.2["public_key"], phone_public.to_base64url());
        assert_eq!(env.authority(alice).await, Some(phone_public));
        let stored = env.db.activation_codes(alice).await.unwrap();
        assert_eq!(stored[0].used_at, Some(NOW_MS), "{label}");

        // The new key pays; the old one no longer does.
        let paid = env.pay(&phone, alice, 12_50).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        assert_problem(
            &env.pay(&env.scheme.alice_key, alice, 1_00).await,
            StatusCode::FORBIDDEN,
            "/problems/not-authorised",
        );
        assert_eq!(balance(&env.committer, env.scheme.shop).await, 12_50);

        // And logs in: the session reads the account.
        let session = env.login(alice, &phone).await;
        assert_eq!(session.0, StatusCode::CREATED, "{label}: {}", session.2);
        let token = session.2["token"].as_str().unwrap();
        let path = format!("/v1/accounts/{alice}/balance");
        let request = Request::get(&path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let read = send(&env.app, request).await;
        assert_eq!(read.0, StatusCode::OK, "{label}: {}", read.2);
        assert_eq!(read.2["balance_minor"], 100_00 - 12_50);

        // The code is spent: another key cannot use it.
        let thief = fresh_key();
        assert_problem(
            &env.activate(alice, &thief, &code).await,
            StatusCode::UNAUTHORIZED,
            BAD_CODE,
        );
        assert_eq!(env.authority(alice).await, Some(phone_public), "{label}");
    }
}

#[tokio::test]
async fn a_code_is_accepted_in_lower_case_with_spaces_and_without_dashes() {
    for env in envs(ApiConfig::default()).await {
        let admin = env.token(Role::Admin, None).await;
        let bob = env.scheme.bob;
        let code = env.code_for(&admin, bob).await;
        let typed = format!("  {}  ", code.replace('-', " ").to_lowercase());
        assert!(!typed.contains('-'));
        let phone = fresh_key();
        let activated = env.activate(bob, &phone, &typed).await;
        assert_eq!(
            activated.0,
            StatusCode::OK,
            "{}: {}",
            env.label,
            activated.2
        );
        assert_eq!(env.authority(bob).await, Some(PublicKey::of(&phone)));
        let squashed = env.code_for(&admin, bob).await.replace('-', "");
        let again = env.activate(bob, &fresh_key(), &squashed).await;
        assert_eq!(again.0, StatusCode::OK, "{}: {}", env.label, again.2);
    }
}

#[tokio::test]
async fn wrong_expired_and_superseded_codes_get_one_answer_and_change_nothing() {
    for env in envs(ApiConfig::default()).await {
        let label = env.label;
        let admin = env.token(Role::Admin, None).await;
        let alice = env.scheme.alice;
        let before = env.authority(alice).await;
        let phone = fresh_key();

        let first = env.code_for(&admin, alice).await;
        let second = env.code_for(&admin, alice).await;
        assert_ne!(first, second);
        let superseded = env.activate(alice, &phone, &first).await;
        assert_problem(&superseded, StatusCode::UNAUTHORIZED, BAD_CODE);

        let wrong = env.activate(alice, &phone, "2345-6789-ABCD").await;
        assert_problem(&wrong, StatusCode::UNAUTHORIZED, BAD_CODE);
        let malformed = env.activate(alice, &phone, "not a code").await;
        assert_problem(&malformed, StatusCode::UNAUTHORIZED, BAD_CODE);
        // The code of another account does not open this one.
        let bobs = env.code_for(&admin, env.scheme.bob).await;
        let elsewhere = env.activate(alice, &phone, &bobs).await;
        assert_problem(&elsewhere, StatusCode::UNAUTHORIZED, BAD_CODE);
        // An account that does not exist answers the same.
        let nowhere = env.activate(AccountId::new(), &phone, &second).await;
        assert_problem(&nowhere, StatusCode::UNAUTHORIZED, BAD_CODE);

        // Expired: a one-minute code a minute later.
        let short = env.issue(&admin, alice, json!({"expires_in_s": 60})).await;
        assert_eq!(short.0, StatusCode::CREATED, "{label}: {}", short.2);
        assert_eq!(short.2["expires_at_ms"], NOW_MS + 60_000);
        env.clock.advance(60_000);
        let expired = env
            .activate(alice, &phone, short.2["code"].as_str().unwrap())
            .await;
        assert_problem(&expired, StatusCode::UNAUTHORIZED, BAD_CODE);

        // One message for every cause, so a refusal reveals nothing.
        for other in [&wrong, &malformed, &elsewhere, &nowhere, &expired] {
            assert_eq!(other.2, superseded.2, "{label}");
        }
        assert_eq!(
            env.authority(alice).await,
            before,
            "{label}: nothing changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parallel_uses_of_one_code_register_exactly_one_key() {
    for env in envs(ApiConfig::default()).await {
        let admin = env.token(Role::Admin, None).await;
        let alice = env.scheme.alice;
        for round in 0..4 {
            let code = env.code_for(&admin, alice).await;
            let keys = [fresh_key(), fresh_key()];
            let attempts = keys.iter().map(|key| {
                let app = env.app.clone();
                let body = registration(alice, key, Some(&code));
                let path = format!("/v1/accounts/{alice}/key");
                tokio::spawn(async move { send(&app, request("PUT", &path, None, &body)).await })
            });
            let replies: Vec<Reply> = futures_util::future::join_all(attempts)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            let winners: Vec<usize> = (0..2).filter(|i| replies[*i].0 == StatusCode::OK).collect();
            assert_eq!(winners.len(), 1, "{} round {round}: {replies:?}", env.label);
            let loser = &replies[1 - winners[0]];
            assert_problem(loser, StatusCode::UNAUTHORIZED, BAD_CODE);
            assert_eq!(
                env.authority(alice).await,
                Some(PublicKey::of(&keys[winners[0]])),
                "{} round {round}: the winner's key is registered",
                env.label
            );
        }
    }
}

/// A programme on its own unit (`SEV-EUR`, a 2-place voucher) that pays 100.00 to its one
/// enrolled household (`SEV-00001`, in Triana), with the given schedule and daily cap. The
/// lost-card tests (`cards.rs`) build on it too.
pub(super) async fn one_household_programme(
    db: &Database,
    committer: &Committer,
    clock: &Arc<ManualClock>,
    schedule: Schedule,
    daily_cap_minor: Option<i64>,
) -> (Programmes, Programme) {
    let unit = UnitCode::new("SEV-EUR").unwrap();
    committer
        .add_unit(Unit::new(unit, "Sevilla voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap())
        .await
        .unwrap();
    let programmes = Programmes::new(
        db.clone(),
        committer.clone(),
        clock.clone(),
        ServerSecret::from_bytes(std::array::from_fn(|i| i as u8 ^ 0x5a)).unwrap(),
        CardSettings {
            prefix: CardPrefix::parse("990001").unwrap(),
            kdf: KdfParams::for_tests(),
            lock_after: 3,
        },
    );
    let (programme, _) = programmes
        .create(NewProgramme {
            name: "Ingreso mínimo".into(),
            unit,
            budget_minor: 1_000_00,
            schedule,
            areas: vec!["Triana".into()],
            languages: vec!["es".into()],
            rules: ProgrammeRules {
                amount: AmountRule {
                    base_minor: 100_00,
                    per_dependent_minor: 0,
                    cap_minor: None,
                },
                allowed_categories: None,
                daily_cap_minor,
                monthly_cap_minor: None,
                expiry_days: None,
                redemption_fee_basis_points: None,
            },
            fee_account: None,
            debtor: None,
        })
        .await
        .unwrap();
    let household = HouseholdInput {
        reference: "SEV-00001".into(),
        name: "Familia Uno".into(),
        dependents: 0,
        area: "Triana".into(),
        phone: None,
        language: "es".into(),
    };
    programmes
        .enrol(programme.id, vec![household])
        .await
        .unwrap();
    (programmes, programme)
}

/// [`one_household_programme`], paying once; returns the household's account.
async fn programme_household(env: &Env) -> AccountId {
    let (_, programme) =
        one_household_programme(&env.db, &env.committer, &env.clock, Schedule::OneOff, None).await;
    env.db.households(programme.id).await.unwrap()[0].account
}

#[tokio::test]
async fn only_managers_issue_codes_and_never_for_programme_or_closed_accounts() {
    for env in envs(ApiConfig::default()).await {
        let label = env.label;
        let alice = env.scheme.alice;
        // A shop's token sees only its own accounts: another's is answered as not existing.
        let shop = ParticipantId::new();
        env.db
            .insert_participant(&Participant {
                id: shop,
                kind: "organisation".into(),
                name: "Ultramarinos Triana".into(),
                roles: vec!["merchant".into()],
                category_code: Some("5411".into()),
                address: None,
                opening_hours: None,
                listed: true,
                created_at: NOW_MS,
                area: None,
                social_enterprise: false,
                iban: None,
                bic: None,
                account_holder: None,
            })
            .await
            .unwrap();
        let shop_token = env.token(Role::Merchant, Some(shop)).await;
        let refused = env.issue(&shop_token, alice, json!({})).await;
        assert_problem(&refused, StatusCode::NOT_FOUND, "/problems/not-found");
        // An auditor sees it but manages nothing.
        let auditor = env.token(Role::Auditor, None).await;
        let refused = env.issue(&auditor, alice, json!({})).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "/problems/forbidden");
        // Without a token, nothing.
        let path = format!("/v1/accounts/{alice}/activation-codes");
        let anonymous = send(&env.app, request("POST", &path, None, &json!({}))).await;
        assert_problem(
            &anonymous,
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
        );
        assert!(env.db.activation_codes(alice).await.unwrap().is_empty());

        let admin = env.token(Role::Admin, None).await;
        for seconds in [59, 90 * 86_400 + 1, -1] {
            let out_of_range = env
                .issue(&admin, alice, json!({"expires_in_s": seconds}))
                .await;
            assert_problem(
                &out_of_range,
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/validation-failed",
            );
            assert_eq!(out_of_range.2["field"], "expires_in_s");
        }
        let longest = env
            .issue(&admin, alice, json!({"expires_in_s": 90 * 86_400}))
            .await;
        assert_eq!(longest.0, StatusCode::CREATED, "{label}: {}", longest.2);
        let unknown = env.issue(&admin, alice, json!({"colour": "blue"})).await;
        assert_problem(
            &unknown,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );
        assert_eq!(unknown.2["field"], "colour");

        // A household's key is its card's.
        let household = programme_household(&env).await;
        let refused = env.issue(&admin, household, json!({})).await;
        assert_problem(&refused, StatusCode::CONFLICT, "/problems/programme-unit");
        assert!(env.db.activation_codes(household).await.unwrap().is_empty());
        let attempt = env
            .activate(household, &fresh_key(), "2345-6789-ABCD")
            .await;
        assert_problem(&attempt, StatusCode::UNAUTHORIZED, BAD_CODE);

        // A closed account cannot be activated, and a code issued before closing dies with it.
        let bob = env.scheme.bob;
        let code = env.code_for(&admin, bob).await;
        let path = format!("/v1/accounts/{bob}/status");
        let closed = send(
            &env.app,
            request("PUT", &path, Some(&admin), &json!({"status": "closed"})),
        )
        .await;
        assert_eq!(closed.0, StatusCode::OK, "{label}: {}", closed.2);
        let refused = env.issue(&admin, bob, json!({})).await;
        assert_problem(&refused, StatusCode::CONFLICT, "/problems/account-closed");
        let attempt = env.activate(bob, &fresh_key(), &code).await;
        assert_problem(&attempt, StatusCode::UNAUTHORIZED, BAD_CODE);
    }
}

#[tokio::test]
async fn code_attempts_are_rate_limited_per_account() {
    let config = ApiConfig {
        writes_per_second: 0.0,
        write_burst: 3.0,
        ..ApiConfig::default()
    };
    for env in envs(config).await {
        let admin = env.token(Role::Admin, None).await;
        let alice = env.scheme.alice;
        let code = env.code_for(&admin, alice).await;
        let phone = fresh_key();
        for _ in 0..3 {
            let guess = env.activate(alice, &phone, "2345-6789-ABCD").await;
            assert_problem(&guess, StatusCode::UNAUTHORIZED, BAD_CODE);
        }
        // Even the right code waits now: the limit is on attempts, not on failures.
        let limited = env.activate(alice, &phone, &code).await;
        assert_problem(
            &limited,
            StatusCode::TOO_MANY_REQUESTS,
            "/problems/rate-limited",
        );
        assert!(limited.2["retry_after_s"].is_number());
        assert_eq!(
            env.authority(alice).await,
            Some(PublicKey::of(&env.scheme.alice_key))
        );
        // Another account has its own allowance.
        let bob = env.scheme.bob;
        let guess = env.activate(bob, &phone, "2345-6789-ABCD").await;
        assert_problem(&guess, StatusCode::UNAUTHORIZED, BAD_CODE);
    }
}

#[tokio::test]
async fn a_token_keeps_the_old_rules_and_retries_are_safe() {
    for env in envs(ApiConfig::default()).await {
        let label = env.label;
        let admin = env.token(Role::Admin, None).await;
        let alice = env.scheme.alice;
        let path = format!("/v1/accounts/{alice}/key");

        // With a token the code is not wanted: one authorisation per change.
        let phone = fresh_key();
        let code = env.code_for(&admin, alice).await;
        let both = registration(alice, &phone, Some(&code));
        let refused = send(&env.app, request("PUT", &path, Some(&admin), &both)).await;
        assert_problem(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );
        assert_eq!(refused.2["field"], "activation_code");
        let plain = registration(alice, &phone, None);
        let registered = send(&env.app, request("PUT", &path, Some(&admin), &plain)).await;
        assert_eq!(registered.0, StatusCode::OK, "{label}: {}", registered.2);

        // Without a token and without a code: authentication is needed.
        let anonymous = send(&env.app, request("PUT", &path, None, &plain)).await;
        assert_problem(
            &anonymous,
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
        );
        // A bad proof is refused before the code is looked at, so the code survives it.
        let mut bad_proof = registration(alice, &fresh_key(), Some(&code));
        bad_proof["proof"] = registration(alice, &phone, None)["proof"].clone();
        let refused = send(&env.app, request("PUT", &path, None, &bad_proof)).await;
        assert_problem(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );
        assert_eq!(refused.2["field"], "proof");

        // A wallet retrying its activation under an Idempotency-Key gets the first answer.
        let second_phone = fresh_key();
        let body = registration(alice, &second_phone, Some(&code));
        let keyed = || {
            Request::put(&path)
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", "activate-1")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let first = send(&env.app, keyed()).await;
        assert_eq!(first.0, StatusCode::OK, "{label}: {}", first.2);
        let response = env.app.clone().oneshot(keyed()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{label}");
        assert_eq!(response.headers()["idempotency-replayed"], "true");

        // An operator retrying an issue under an Idempotency-Key gets a fresh code, which
        // supersedes the first: the code is never stored, so it cannot be replayed.
        let issue_path = format!("/v1/accounts/{alice}/activation-codes");
        let keyed_issue = || {
            Request::post(&issue_path)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header("idempotency-key", "issue-1")
                .body(Body::from("{}"))
                .unwrap()
        };
        let once = send(&env.app, keyed_issue()).await;
        let twice = send(&env.app, keyed_issue()).await;
        assert_eq!(
            (once.0, twice.0),
            (StatusCode::CREATED, StatusCode::CREATED)
        );
        assert_ne!(once.2["code"], twice.2["code"]);
        let other_body = Request::post(&issue_path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header("idempotency-key", "issue-1")
            .body(Body::from(r#"{"expires_in_s": 600}"#))
            .unwrap();
        assert_problem(
            &send(&env.app, other_body).await,
            StatusCode::CONFLICT,
            "/problems/idempotency-key-reused",
        );
        let stale = env
            .activate(alice, &fresh_key(), once.2["code"].as_str().unwrap())
            .await;
        assert_problem(&stale, StatusCode::UNAUTHORIZED, BAD_CODE);
        let fresh = env
            .activate(alice, &fresh_key(), twice.2["code"].as_str().unwrap())
            .await;
        assert_eq!(fresh.0, StatusCode::OK, "{label}: {}", fresh.2);
        // The idempotency record kept that the key was used, not the response with its code.
        let route = format!("POST /v1/accounts/{alice}/activation-codes");
        let mut fingerprint = Sha256::new();
        fingerprint.update(route.as_bytes());
        fingerprint.update([0]);
        fingerprint.update(b"{}");
        let kept = env
            .db
            .begin_idempotent(
                &format!("token:{}", token_id(&admin)),
                "issue-1",
                &fingerprint.finalize().into(),
                NOW_MS,
            )
            .await
            .unwrap();
        assert_eq!(
            kept,
            Remembered::Done {
                status: 201,
                body: String::new()
            },
            "{label}"
        );
    }
}

fn token_id(token: &str) -> uuid::Uuid {
    wallet_api::auth::parse_operator_token(token).unwrap().0
}

/// Makes every write of an account's key fail in storage (a trigger), or stops that.
async fn fail_key_writes(db: &Database, fail: bool) {
    use sqlx::Executor as _;
    match db {
        Database::Sqlite { pool, .. } => {
            let sql = if fail {
                "create trigger fail_key_writes before update of authority on account \
                 begin select raise(abort, 'key writes fail in this test'); end"
            } else {
                "drop trigger fail_key_writes"
            };
            pool.execute(sql).await.unwrap();
        }
        Database::Postgres { pool, .. } => {
            let sql = if fail {
                "create function fail_key_writes() returns trigger language plpgsql as \
                 $$ begin raise exception 'key writes fail in this test'; end $$; \
                 create trigger fail_key_writes before update of authority on account \
                 for each row execute function fail_key_writes()"
            } else {
                "drop trigger fail_key_writes on account; drop function fail_key_writes()"
            };
            pool.execute(sql).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_code_stays_used_when_the_key_may_have_been_registered() {
    for env in envs(ApiConfig::default()).await {
        let label = env.label;
        let admin = env.token(Role::Admin, None).await;
        let alice = env.scheme.alice;
        let code = env.code_for(&admin, alice).await;
        let phone = fresh_key();

        // The write fails: the writer cannot tell whether the COMMIT landed, so the outcome
        // is unknown (503), and the code must not be handed back: if the key did take, the
        // same code could replace it again.
        fail_key_writes(&env.db, true).await;
        let failed = env.activate(alice, &phone, &code).await;
        assert_problem(
            &failed,
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/storage-unavailable",
        );
        fail_key_writes(&env.db, false).await;
        let stored = env.db.activation_codes(alice).await.unwrap();
        assert_eq!(
            stored[0].used_at,
            Some(NOW_MS),
            "{label}: the code stays used"
        );
        let again = env.activate(alice, &phone, &code).await;
        assert_problem(&again, StatusCode::UNAUTHORIZED, BAD_CODE);

        // Here the key did not take (storage refused it); a new code registers it.
        assert_eq!(
            env.authority(alice).await,
            Some(PublicKey::of(&env.scheme.alice_key)),
            "{label}"
        );
        let fresh = env.code_for(&admin, alice).await;
        let activated = env.activate(alice, &phone, &fresh).await;
        assert_eq!(activated.0, StatusCode::OK, "{label}: {}", activated.2);
        assert_eq!(env.authority(alice).await, Some(PublicKey::of(&phone)));
    }
}
