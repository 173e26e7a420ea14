//! Lost cards over HTTP, on SQLite and PostgreSQL: a shop's refund of a sale paid with a card
//! since replaced, sent to `POST /v1/intents`, lands on the old card (it mirrors the sale) and
//! is passed on at once to the household's current card, once however often it is retried;
//! and the household's spending caps count it on the current card.

use std::sync::Arc;

use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use ledger::{AccountId, Action, Amount, EntryId, IntentId, ParticipantId, PublicKey, UnitCode};
use serde_json::{Value, json};
use wallet_api::auth::Role;
use wallet_api::db::service::Participant;
use wallet_api::http::limits::ApiConfig;
use wallet_api::http::{AppState, router};
use wallet_api::programme::Schedule;
use wallet_api::programme::disburse::{RunKind, RunOptions};
use wallet_api::{Committer, CommitterTask, ManualClock};

use super::activation::{Reply, one_household_programme, request, send};
use super::assert_problem;
use super::support::*;

/// The lost card's PIN.
const PIN: &str = "2580";
/// The replacement's PIN.
const NEW_PIN: &str = "1357";

/// A programme whose households may spend 50.00 a day, with one household paid 100.00 and
/// holding a card (number `card`, paying from `account`), and a registered grocer, behind a
/// router with programmes turned on.
struct Env {
    app: axum::Router,
    admin: String,
    card: String,
    account: AccountId,
    unit: UnitCode,
    grocer: AccountId,
    grocer_key: SigningKey,
    programme: ledger::ProgrammeId,
    programmes: wallet_api::programme::Programmes,
    label: &'static str,
    _committer: (Committer, CommitterTask),
    _db: TestDb,
}

async fn env(test_db: TestDb) -> Env {
    let db = test_db.open().await;
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let (committer, task) = start_on(&db, &clock).await;
    let (programmes, programme) = one_household_programme(
        &db,
        &committer,
        &clock,
        Schedule::Monthly { day: 5 },
        Some(50_00),
    )
    .await;
    let unit = programme.unit;
    programmes
        .execute_run(
            programme.id,
            "2026-12",
            &RunKind::Monthly,
            RunOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
    let grocer = ParticipantId::new();
    db.insert_participant(&Participant {
        id: grocer,
        kind: "organisation".into(),
        name: "Ultramarinos Triana".into(),
        roles: vec!["merchant".into()],
        category_code: Some("5411".into()),
        address: None,
        opening_hours: None,
        listed: true,
        created_at: NOW_MS,
        area: Some("Triana".into()),
        social_enterprise: false,
        iban: None,
        bic: None,
        account_holder: None,
    })
    .await
    .unwrap();
    programmes
        .apply_merchant(grocer, &[programme.id])
        .await
        .unwrap();
    let grocer_account = programmes
        .decide_merchant(programme.id, grocer, true)
        .await
        .unwrap()
        .account
        .unwrap();
    let grocer_key = key(12);
    committer
        .set_authority(grocer_account, PublicKey::of(&grocer_key))
        .await
        .unwrap();
    let household = db.households(programme.id).await.unwrap()[0].id;
    let state = AppState::new(
        db.clone(),
        committer.clone(),
        clock,
        ApiConfig::default(),
        wallet_api::Verifier::start(1).unwrap(),
    )
    .with_programmes(programmes.clone());
    let app = router(state);
    let issued = wallet_api::auth::issue_token(Role::Admin, None, "test", NOW_MS);
    db.insert_token(&issued.stored).await.unwrap();
    let admin = issued.text;
    let path = format!(
        "/v1/programmes/{}/households/{household}/cards",
        programme.id
    );
    let card = send(
        &app,
        request("POST", &path, Some(&admin), &json!({"pin": PIN})),
    )
    .await;
    assert_eq!(card.0, StatusCode::CREATED, "{}", card.2);
    Env {
        app,
        admin,
        card: card.2["number"].as_str().unwrap().to_owned(),
        account: serde_json::from_value(card.2["account"].clone()).unwrap(),
        unit,
        grocer: grocer_account,
        grocer_key,
        programme: programme.id,
        programmes,
        label: test_db.label,
        _committer: (committer, task),
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

/// The card that replaced a lost one: its number and account.
struct NewCard {
    number: String,
    account: AccountId,
}

impl Env {
    /// The grocer's terminal takes `minor` from `card`.
    async fn pay(&self, card: &str, pin: &str, minor: i64) -> Reply {
        self.pay_as(IntentId::new(), card, pin, minor).await
    }

    /// [`Env::pay`] under a chosen idempotency key.
    async fn pay_as(&self, intent_id: IntentId, card: &str, pin: &str, minor: i64) -> Reply {
        let body = json!({
            "intent_id": intent_id,
            "pin": pin,
            "to": self.grocer,
            "amount": format!("{}.{:02}", minor / 100, minor % 100),
        });
        let path = format!("/v1/cards/{card}/payments");
        send(&self.app, request("POST", &path, Some(&self.admin), &body)).await
    }

    /// The household's card pays `minor` to the grocer; returns the sale.
    async fn sale(&self, minor: i64) -> EntryId {
        let paid = self.pay(&self.card, PIN, minor).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{}: {}", self.label, paid.2);
        serde_json::from_value(paid.2["entry_id"].clone()).unwrap()
    }

    /// The household reports its card lost and gets a new one.
    async fn replace(&self) -> NewCard {
        let path = format!("/v1/cards/{}/replacement", self.card);
        let body = json!({"pin": NEW_PIN});
        let new = send(&self.app, request("POST", &path, Some(&self.admin), &body)).await;
        assert_eq!(new.0, StatusCode::CREATED, "{}: {}", self.label, new.2);
        NewCard {
            number: new.2["number"].as_str().unwrap().to_owned(),
            account: serde_json::from_value(new.2["account"].clone()).unwrap(),
        }
    }

    /// The grocer's signed refund of `minor` of `sale`, to the card that paid, as sent to
    /// `POST /v1/intents`.
    fn refund(&self, sale: EntryId, minor: i64) -> Value {
        let action = Action::Refund {
            payment: sale,
            from: self.grocer,
            to: self.account,
            unit: self.unit,
            amount_minor: Amount::from_minor(minor).unwrap(),
            memo: "stale bread".into(),
        };
        let wire = sign(&self.grocer_key, action).signed().to_json();
        serde_json::from_str(&wire).unwrap()
    }

    async fn submit(&self, intent: &Value) -> Reply {
        send(&self.app, request("POST", "/v1/intents", None, intent)).await
    }

    /// `GET /v1/accounts/{id}/balance`.
    async fn balance(&self, account: AccountId) -> i64 {
        let path = format!("/v1/accounts/{account}/balance");
        let reply = send(
            &self.app,
            request("GET", &path, Some(&self.admin), &json!({})),
        )
        .await;
        assert_eq!(reply.0, StatusCode::OK, "{}: {}", self.label, reply.2);
        reply.2["balance_minor"].as_i64().unwrap()
    }

    /// The `card_replacement` lines of an account's statement, newest first.
    async fn moves(&self, account: AccountId) -> Vec<Value> {
        let path = format!("/v1/accounts/{account}/entries?kind=card_replacement");
        let reply = send(
            &self.app,
            request("GET", &path, Some(&self.admin), &json!({})),
        )
        .await;
        assert_eq!(reply.0, StatusCode::OK, "{}: {}", self.label, reply.2);
        reply.2["items"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn a_refund_to_a_replaced_card_is_passed_on_to_the_new_card_once() {
    for env in envs().await {
        let label = env.label;
        let sale = env.sale(30_00).await;
        let new = env.replace().await;
        assert_eq!(env.balance(env.account).await, 0, "{label}");
        assert_eq!(env.balance(new.account).await, 70_00, "{label}");

        let refund = env.refund(sale, 10_00);
        let (status, _, body) = env.submit(&refund).await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {body}");
        assert_eq!(body["duplicate"], false, "{label}");
        assert_eq!(env.balance(env.account).await, 0, "{label}");
        assert_eq!(env.balance(new.account).await, 80_00, "{label}");
        // The replacement, then the refund passed on: both from the old card to the new.
        let moves = env.moves(new.account).await;
        let amounts: Vec<i64> = moves
            .iter()
            .map(|m| m["amount_minor"].as_i64().unwrap())
            .collect();
        assert_eq!(amounts, [10_00, 70_00], "{label}: newest first");
        assert!(
            moves
                .iter()
                .all(|m| m["counterparties"] == json!([env.account])),
            "{label}: {moves:?}"
        );

        // The grocer's terminal lost the answer and sends the refund again: the original
        // answer, and nothing moves a second time.
        let (status, _, again) = env.submit(&refund).await;
        assert_eq!(status, StatusCode::OK, "{label}: {again}");
        assert_eq!(again["duplicate"], true, "{label}");
        assert_eq!(again["entry_id"], body["entry_id"], "{label}");
        assert_eq!(env.balance(env.account).await, 0, "{label}");
        assert_eq!(env.balance(new.account).await, 80_00, "{label}");
        assert_eq!(env.moves(new.account).await.len(), 2, "{label}");
        assert_eq!(env.moves(env.account).await.len(), 2, "{label}");
    }
}

/// A terminal that lost the answer retries a card payment with the same key and gets the
/// original answer, without a second PIN check; the same key on a different sale is a
/// conflict, not a "paid" for money that never moved.
#[tokio::test]
async fn a_card_payment_key_answers_only_for_its_own_payment() {
    for env in envs().await {
        let label = env.label;
        let key = IntentId::new();
        let (status, _, paid) = env.pay_as(key, &env.card, PIN, 12_00).await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {paid}");
        let (status, _, again) = env.pay_as(key, &env.card, "0000", 12_00).await;
        assert_eq!(status, StatusCode::OK, "{label}: {again}");
        assert_eq!(again["duplicate"], true, "{label}");
        assert_eq!(again["entry_id"], paid["entry_id"], "{label}");

        let other_sale = env.pay_as(key, &env.card, PIN, 40_00).await;
        assert_problem(
            &other_sale,
            StatusCode::CONFLICT,
            "/problems/intent-conflict",
        );
        assert_eq!(env.balance(env.account).await, 88_00, "{label}");
    }
}

/// An `Idempotency-Key` names one request: the same key and body sent to unlock another card
/// is refused, not answered with the first card's result (the key's fingerprint took the
/// route's template, not the path, so it was).
#[tokio::test]
async fn one_idempotency_key_cannot_unlock_two_cards() {
    for env in envs().await {
        let label = env.label;
        let new = env.replace().await;
        let unlock = |card: &str| {
            let mut request = request(
                "POST",
                &format!("/v1/cards/{card}/unlock"),
                Some(&env.admin),
                &json!({}),
            );
            request.headers_mut().insert(
                "idempotency-key",
                axum::http::HeaderValue::from_static("unlock-1"),
            );
            send(&env.app, request)
        };
        let first = unlock(&new.number).await;
        assert!(first.0.is_success(), "{label}: {}", first.2);
        let other = unlock(&env.card).await;
        assert_problem(
            &other,
            StatusCode::CONFLICT,
            "/problems/idempotency-key-reused",
        );
    }
}

/// A card replaced twice (A by B, then B by C): asking again to replace A (a retry, a stale
/// screen) answers with C, the household's card, and leaves the household on C's account,
/// not on B's frozen one.
#[tokio::test]
async fn replacing_an_old_card_again_answers_with_the_newest() {
    for env in envs().await {
        let label = env.label;
        let b = env.replace().await;
        let path = format!("/v1/cards/{}/replacement", b.number);
        let body = json!({"pin": NEW_PIN});
        let c = send(&env.app, request("POST", &path, Some(&env.admin), &body)).await;
        assert_eq!(c.0, StatusCode::CREATED, "{label}: {}", c.2);

        let path = format!("/v1/cards/{}/replacement", env.card);
        let again = send(&env.app, request("POST", &path, Some(&env.admin), &body)).await;
        assert!(again.0.is_success(), "{label}: {}", again.2);
        assert_eq!(again.2["number"], c.2["number"], "{label}: {}", again.2);
        assert_eq!(again.2["account"], c.2["account"], "{label}: {}", again.2);
        // The household still pays with C, from what A had.
        let paid = env
            .pay(c.2["number"].as_str().unwrap(), NEW_PIN, 10_00)
            .await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        let c_account: AccountId = serde_json::from_value(c.2["account"].clone()).unwrap();
        assert_eq!(env.balance(c_account).await, 90_00, "{label}");
        assert_eq!(env.balance(b.account).await, 0, "{label}");
    }
}

/// Programme requests that cannot be served, each as the problem a client sees: a
/// redemption quote while the rules open no redemption, an enrolment file that is not one,
/// one with a bad row when all or nothing was asked for, and card payments with a wrong PIN,
/// with a locked card and with a replaced one.
#[tokio::test]
async fn programme_refusals_are_problems_with_stable_types() {
    for env in envs().await {
        let label = env.label;
        let p = format!("/v1/programmes/{}", env.programme);
        let quote = format!("{p}/redemption-quote?account={}&amount=1.00", env.grocer);
        let closed = send(
            &env.app,
            request("GET", &quote, Some(&env.admin), &json!({})),
        )
        .await;
        assert_problem(&closed, StatusCode::CONFLICT, "/problems/redemption-closed");

        let enrol = async |query: &str, csv: &'static str| {
            let request = axum::http::Request::post(format!("{p}/enrolments{query}"))
                .header("authorization", format!("Bearer {}", env.admin))
                .header("content-type", "text/csv")
                .body(axum::body::Body::from(csv))
                .unwrap();
            send(&env.app, request).await
        };
        let not_a_register = enrol("", "colour,shape\nblue,round\n").await;
        assert_problem(
            &not_a_register,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/enrolment-file",
        );
        let one_bad = "household_ref,name,dependents,area\n\
                       SEV-00002,Familia Dos,1,Triana\n\
                       SEV-00003,Familia Tres,many,Triana\n";
        let rejected = enrol("?all_or_nothing=true", one_bad).await;
        assert_problem(
            &rejected,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/enrolment-rejected",
        );
        assert_eq!(
            rejected.2["rejected"][0]["line"], 3,
            "{label}: {}",
            rejected.2
        );
        assert_eq!(
            rejected.2["rejected"][0]["household_ref"], "SEV-00003",
            "{label}"
        );

        // Wrong PINs lock the card (after three here); then even the right one is refused.
        let mut last = env.pay(&env.card, "0000", 1_00).await;
        for _ in 0..2 {
            assert_problem(
                &last,
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/wrong-pin",
            );
            last = env.pay(&env.card, "0000", 1_00).await;
        }
        assert_problem(&last, StatusCode::LOCKED, "/problems/card-locked");
        let locked = env.pay(&env.card, PIN, 1_00).await;
        assert_problem(&locked, StatusCode::LOCKED, "/problems/card-locked");
        // Reported lost and replaced: the old card is gone for good.
        let new = env.replace().await;
        let replaced = env.pay(&env.card, PIN, 1_00).await;
        assert_problem(&replaced, StatusCode::GONE, "/problems/card-replaced");
        let paid = env.pay(&new.number, NEW_PIN, 1_00).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
    }
}

#[tokio::test]
async fn the_daily_cap_counts_a_refund_to_a_lost_card_on_the_new_card() {
    for env in envs().await {
        let label = env.label;
        // 30.00 with the lost card, 20.00 with the new one, 10.00 of the first refunded: 40.00
        // spent today of the 50.00 cap.
        let sale = env.sale(30_00).await;
        let new = env.replace().await;
        let paid = env.pay(&new.number, NEW_PIN, 20_00).await;
        assert_eq!(paid.0, StatusCode::CREATED, "{label}: {}", paid.2);
        let refunded = env.submit(&env.refund(sale, 10_00)).await;
        assert_eq!(refunded.0, StatusCode::CREATED, "{label}: {}", refunded.2);

        let over = env.pay(&new.number, NEW_PIN, 10_01).await;
        assert_problem(
            &over,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/spending-rule",
        );
        assert_eq!(over.2["rule"], "daily_cap", "{label}");
        let last = env.pay(&new.number, NEW_PIN, 10_00).await;
        assert_eq!(last.0, StatusCode::CREATED, "{label}: {}", last.2);
        assert_eq!(env.balance(new.account).await, 50_00, "{label}");
    }
}

#[tokio::test]
async fn a_run_the_budget_cannot_pay_is_refused_saying_what_it_needs() {
    for env in envs().await {
        let label = env.label;
        // 1,000.00 of budget, 100.00 a run: December's run and nine emergency runs spend it.
        let run = async |period: &str| {
            let path = format!("/v1/programmes/{}/runs", env.programme);
            let body = json!({"period": period, "kind": "emergency"});
            send(&env.app, request("POST", &path, Some(&env.admin), &body)).await
        };
        for storm in 1..=9 {
            let paid = run(&format!("storm-{storm}")).await;
            assert_eq!(paid.0, StatusCode::OK, "{label}: {}", paid.2);
        }
        let short = run("storm-10").await;
        assert_problem(
            &short,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/budget-short",
        );
        assert_eq!(short.2["needed_minor"], 100_00, "{label}: {}", short.2);
        assert_eq!(short.2["available_minor"], 0, "{label}: {}", short.2);
        assert_eq!(env.balance(env.account).await, 1_000_00, "{label}");
    }
}

/// Also the one deterministic way found to hold a write in flight: its retry with the same
/// Idempotency-Key meanwhile is told so (409), and after it the first answer is replayed.
#[tokio::test]
async fn an_account_is_not_opened_while_a_programme_may_be_being_created() {
    for env in envs().await {
        let label = env.label;
        // As if a programme were being created: until it is stored, POST /v1/accounts waits,
        // then sees it (or, here, that there is none in this unit) and opens the account.
        let creating = env.programmes.hold_programme_units().await;
        let unit =
            r#"{"code": "ATH-EUR", "name": "Athens voucher", "scale": 2, "kind": "voucher"}"#;
        let made = send(
            &env.app,
            request(
                "POST",
                "/v1/units",
                Some(&env.admin),
                &serde_json::from_str(unit).unwrap(),
            ),
        )
        .await;
        assert_eq!(made.0, StatusCode::CREATED, "{label}: {}", made.2);
        let body = json!({"unit": "ATH-EUR", "kind": "holder"});
        let keyed = || {
            let mut open = request("POST", "/v1/accounts", Some(&env.admin), &body);
            open.headers_mut()
                .insert("idempotency-key", "athens-1".parse().unwrap());
            open
        };
        let (app, first) = (env.app.clone(), keyed());
        let open = tokio::spawn(async move { send(&app, first).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !open.is_finished(),
            "{label}: opened while a programme could be created"
        );
        // Its retry meanwhile (same key, same body) is told the first is still being handled.
        let retry = send(&env.app, keyed()).await;
        assert_problem(
            &retry,
            StatusCode::CONFLICT,
            "/problems/idempotency-key-in-use",
        );
        drop(creating);
        let opened = open.await.unwrap();
        assert_eq!(opened.0, StatusCode::CREATED, "{label}: {}", opened.2);
        // Once done, a retry is answered with the first answer: the same account, not another.
        let replayed = send(&env.app, keyed()).await;
        assert_eq!(replayed.0, StatusCode::CREATED, "{label}: {}", replayed.2);
        assert!(opened.2["id"].is_string(), "{label}: {}", opened.2);
        assert_eq!(replayed.2["id"], opened.2["id"], "{label}");
    }
}
