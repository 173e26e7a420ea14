//! The wallet API end to end: the real `coledger serve` on port 0, against SQLite and
//! PostgreSQL, driven over HTTP the way a terminal, a wallet and an operator drive it.
//! Covers paying, insufficient funds, replay, tampering, expiry, idempotent retries,
//! pagination, every role boundary, and server-sent events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{
    AccountId, Action, Amount, EntryKind, Intent, IntentId, Leg, PaymentRequestId, PublicKey,
    SignedIntent, Tags, UnitCode,
};
use serde_json::{Value, json};
use support::*;
use wallet_api::auth::session_signed_bytes;
use wallet_api::http::key_proof_bytes;

const UNIT: &str = "E2E-EUR";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed(key: &SigningKey, action: Action, not_after: i64) -> SignedIntent {
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after,
        signer: PublicKey::of(key),
        action,
    };
    SignedIntent::sign(intent, key).unwrap()
}

fn payment(
    from: AccountId,
    to: AccountId,
    minor: i64,
    request: Option<PaymentRequestId>,
) -> Action {
    Action::Payment {
        from,
        to,
        unit: UnitCode::new(UNIT).unwrap(),
        amount_minor: Amount::from_minor(minor).unwrap(),
        memo: format!("paid {minor}"),
        request,
    }
}

struct Town {
    address: String,
    admin: String,
    issuer: AccountId,
    issuer_key: SigningKey,
    alice: AccountId,
    alice_key: SigningKey,
    bob: AccountId,
    bob_key: SigningKey,
    shop: AccountId,
    shop_participant: String,
    alice_participant: String,
}

impl Town {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map(|b| b.to_string());
        http(&self.address, method, path, token, &[], body.as_deref()).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin), body).await
    }

    async fn submit(&self, intent: &SignedIntent) -> Reply {
        self.submit_json(&intent.to_json()).await
    }

    /// Posts `body` as a signed intent, as it is (tampered ones included).
    async fn submit_json(&self, body: &str) -> Reply {
        http(&self.address, "POST", "/v1/intents", None, &[], Some(body)).await
    }

    /// Asks for a login challenge for `account` and answers it signed with `key`.
    async fn log_in(&self, account: AccountId, key: &SigningKey) -> Reply {
        let challenge = self
            .call(
                "POST",
                "/v1/sessions/challenge",
                None,
                Some(json!({"account_id": account})),
            )
            .await;
        assert_eq!(challenge.status, 201, "{}", challenge.body);
        let text = challenge.json()["challenge"].as_str().unwrap().to_owned();
        let signature = key.sign(&session_signed_bytes(account, &text));
        let answer = json!({
            "account_id": account,
            "challenge": text,
            "signature": ledger::Signature(signature.to_bytes()).to_base64url(),
        });
        self.call("POST", "/v1/sessions", None, Some(answer)).await
    }

    async fn balance(&self, account: AccountId) -> i64 {
        let reply = self
            .admin("GET", &format!("/v1/accounts/{account}/balance"), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["balance_minor"].as_i64().unwrap()
    }
}

/// Registers `key` for `account` with a proof of possession, as `token`.
async fn register_key(address: &str, token: &str, account: &str, key: &SigningKey) -> Reply {
    let public = PublicKey::of(key);
    let proof = key.sign(&key_proof_bytes(account.parse().unwrap(), &public));
    let body = json!({
        "public_key": public.to_base64url(),
        "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
    })
    .to_string();
    http(
        address,
        "PUT",
        &format!("/v1/accounts/{account}/key"),
        Some(token),
        &[],
        Some(&body),
    )
    .await
}

/// A scheme built entirely over HTTP: a unit, a shop, two households, an issuer; Alice and
/// Bob are given 100.00 each.
async fn town(address: &str, admin: &str) -> Town {
    let call = |method: &'static str, path: &'static str, body: Value| {
        let body = body.to_string();
        async move { http(address, method, path, Some(admin), &[], Some(&body)).await }
    };
    let unit = call(
        "POST",
        "/v1/units",
        json!({"code": UNIT, "name": "E2E euro voucher", "scale": 2, "kind": "voucher", "peg": "EUR"}),
    )
    .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let mut participants = Vec::new();
    for body in [
        json!({"kind": "organisation", "name": "Forn de Pa", "roles": ["merchant"],
               "category_code": "5462", "address": "Carrer Major 1", "opening_hours": "Mo-Sa 07:00-14:00",
               "listed": true}),
        json!({"kind": "person", "name": "Alice", "roles": ["beneficiary"]}),
        json!({"kind": "person", "name": "Bob", "roles": ["beneficiary"]}),
    ] {
        let made = call("POST", "/v1/participants", body).await;
        assert_eq!(made.status, 201, "{}", made.body);
        participants.push(made.json()["id"].as_str().unwrap().to_owned());
    }
    let keys: Vec<SigningKey> = (1..=3u8)
        .map(|s| SigningKey::from_bytes(&[s; 32]))
        .collect();
    let mut accounts = Vec::new();
    for (participant, kind) in [
        (None, "issuer"),
        (Some(&participants[1]), "holder"),
        (Some(&participants[2]), "holder"),
        (Some(&participants[0]), "merchant"),
    ] {
        let mut body = json!({"unit": UNIT, "kind": kind});
        if let Some(p) = participant {
            body["participant_id"] = json!(p);
        }
        let made = call("POST", "/v1/accounts", body).await;
        assert_eq!(made.status, 201, "{}", made.body);
        accounts.push(made.json()["id"].as_str().unwrap().to_owned());
    }
    for (account, key) in accounts.iter().zip(&keys) {
        let registered = register_key(address, admin, account, key).await;
        assert_eq!(registered.status, 200, "{}", registered.body);
    }
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.parse().unwrap()).collect();
    let town = Town {
        address: address.to_owned(),
        admin: admin.to_owned(),
        issuer: ids[0],
        issuer_key: keys[0].clone(),
        alice: ids[1],
        alice_key: keys[1].clone(),
        bob: ids[2],
        bob_key: keys[2].clone(),
        shop: ids[3],
        shop_participant: participants[0].clone(),
        alice_participant: participants[1].clone(),
    };
    let unit = UnitCode::new(UNIT).unwrap();
    let issue = Action::Entry {
        kind: EntryKind::Issue,
        legs: vec![
            Leg {
                account: town.issuer,
                unit,
                delta: -200_00,
            },
            Leg {
                account: town.alice,
                unit,
                delta: 100_00,
            },
            Leg {
                account: town.bob,
                unit,
                delta: 100_00,
            },
        ],
        memo: "monthly benefit".into(),
        tags: Tags {
            programme: Some("e2e".into()),
            ..Tags::default()
        },
    };
    let issued = town
        .submit(&signed(&town.issuer_key, issue, now_s() + 60))
        .await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    town
}

#[tokio::test]
async fn the_wallet_api_end_to_end() {
    for (label, url, _dir) in databases().await {
        let admin = token_cli(&url, "admin", None).await;
        let (mut child, address) = serve(&url, &[]).await;
        if label == "postgres" {
            // No --secret-file on PostgreSQL: programmes and cards are off, and say so.
            let off = http(&address, "GET", "/v1/programmes", Some(&admin), &[], None).await;
            assert_eq!(off.status, 503, "{}", off.body);
            assert_eq!(off.problem_type(), "/problems/programmes-unavailable");
        }
        let town = town(&address, &admin).await;
        payments(&town).await;
        idempotent_writes(&town).await;
        pagination(&town).await;
        long_history(&town).await;
        role_boundaries(&town, &url).await;
        events_and_payment_requests(&town).await;
        late_retry(&town).await;
        checkpoints(&town, label).await;
        // A payment after the last checkpoint: the stop signs it.
        let pay = signed(
            &town.alice_key,
            payment(town.alice, town.shop, 1, None),
            now_s() + 60,
        );
        assert_eq!(town.submit(&pay).await.status, 201);
        let heads = town.admin("GET", "/v1/journal/heads", None).await.json();
        // Shutdown is graceful even with an event stream open: the stream ends, the
        // committer drains, the process exits 0.
        let _open = Events::open(
            &address,
            &format!("/v1/accounts/{}/events", town.shop),
            Some(&admin),
        )
        .await;
        stop_with_sigterm(&mut child, label).await;
        if label == "sqlite" {
            stopped_with_a_checkpoint_of_the_head(&url, &heads).await;
        }
        eprintln!("{label}: wallet API end to end passed");
    }
}

/// A clean stop signs what moved since the last checkpoint, so the next start has nothing
/// to check signature by signature.
async fn stopped_with_a_checkpoint_of_the_head(url: &str, heads: &Value) {
    let db = wallet_api::Database::connect(url).await.unwrap();
    let signed = db.checkpointed_seqs().await.unwrap();
    db.close().await;
    for head in heads["heads"].as_array().unwrap() {
        let unit = ledger::UnitCode::new(head["unit"].as_str().unwrap()).unwrap();
        assert_eq!(
            signed.get(&unit).copied(),
            head["seq"].as_u64(),
            "{unit}: {signed:?}"
        );
    }
}

/// Signed journal checkpoints: signed on request once the chain moves, paged oldest first,
/// each stating the head and the totals there. PostgreSQL runs here without a server
/// secret, so it signs none and says so.
async fn checkpoints(town: &Town, label: &str) {
    let sign = || town.admin("POST", "/v1/journal/checkpoints", Some(json!({})));
    if label == "postgres" {
        let off = sign().await;
        assert_eq!(off.status, 503, "{}", off.body);
        assert_eq!(off.problem_type(), "/problems/checkpoints-unavailable");
        return;
    }
    let first = sign().await;
    assert_eq!(first.status, 200, "{}", first.body);
    let pay = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1, None),
        now_s() + 60,
    );
    assert_eq!(town.submit(&pay).await.status, 201);
    let second = sign().await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.json()["signed"], 1, "{}", second.body);
    let heads = town.admin("GET", "/v1/journal/heads", None).await.json();
    let head = heads["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["unit"] == UNIT)
        .cloned()
        .unwrap();
    let path = format!("/v1/journal/checkpoints/{UNIT}");
    let (items, pages) = all_pages(town, &path, "limit=1").await;
    let count = items.len();
    assert!(count >= 2 && pages == count, "{pages} pages: {items:?}");
    let (older, newest) = (&items[count - 2], &items[count - 1]);
    assert_eq!(newest["seq"], head["seq"]);
    assert_eq!(newest["hash"], head["hash"]);
    let payments = |checkpoint: &Value| {
        checkpoint["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "payment")
            .map_or(0, |k| k["entries"].as_u64().unwrap())
    };
    // Other steps may have committed between the two; at least the one payment did.
    assert!(payments(newest) > payments(older), "{older} {newest}");
    for checkpoint in [older, newest] {
        let signed = ledger::journal::checkpoint::SignedCheckpoint::from_json(checkpoint).unwrap();
        signed.verify().unwrap();
    }
    // Operators can alert on a signer that stopped.
    let metrics = town.admin("GET", "/metrics", None).await.body;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(value("coledger_checkpoints_signed_total") >= 2.0);
    assert_eq!(value("coledger_checkpoints_failed_total"), 0.0);
    assert!(value("coledger_checkpoints_last_success_timestamp_seconds") > 1.7e9);
}

async fn payments(town: &Town) {
    // Pay.
    let pay = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 12_50, None),
        now_s() + 60,
    );
    let paid = town.submit(&pay).await;
    assert_eq!(paid.status, 201, "{}", paid.body);
    let entry_id = paid.json()["entry_id"].clone();
    assert_eq!(town.balance(town.alice).await, 87_50);
    assert_eq!(town.balance(town.shop).await, 12_50);

    // Replay: the same intent again is the same entry, once.
    let again = town.submit(&pay).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["entry_id"], entry_id);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(town.balance(town.alice).await, 87_50);

    // Looked up by intent id, and the entry by id, with the signed intent.
    let intent_id = pay.intent().intent_id;
    let found = town
        .admin("GET", &format!("/v1/intents/{intent_id}"), None)
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json()["entry_id"], entry_id);
    let entry = town
        .admin(
            "GET",
            &format!("/v1/entries/{}", entry_id.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        entry.json()["postings"][0]["amount"],
        "12.50",
        "{}",
        entry.body
    );

    // Insufficient funds.
    let too_much = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_000_00, None),
        now_s() + 60,
    );
    let refused = town.submit(&too_much).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/insufficient-funds");
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );

    // Tampered: the amount changed after signing.
    let honest = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, None),
        now_s() + 60,
    );
    let tampered = honest
        .to_json()
        .replace("\"amount_minor\":100", "\"amount_minor\":9000");
    assert_ne!(tampered, honest.to_json());
    let refused = town.submit_json(&tampered).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/bad-signature");

    // Expired.
    let stale = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, None),
        now_s() - 10,
    );
    let refused = town.submit(&stale).await;
    assert_eq!(
        refused.problem_type(),
        "/problems/intent-expired",
        "{}",
        refused.body
    );

    // A memo with U+0000 (valid JSON, but PostgreSQL's text cannot hold it) is refused as
    // an invalid entry before it reaches storage (on PostgreSQL it used to fail its whole
    // batch, with a reload of the ledger, on every retry).
    let mut nul = payment(town.alice, town.shop, 1_00, None);
    if let Action::Payment { memo, .. } = &mut nul {
        *memo = "pan\u{0}leche".into();
    }
    let refused = town
        .submit(&signed(&town.alice_key, nul, now_s() + 60))
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/invalid-entry");
    assert!(refused.body.contains("NUL"), "{}", refused.body);
    assert_eq!(town.balance(town.alice).await, 87_50);

    // Nobody moves another person's money: Bob's key cannot pay from Alice's account.
    let theft = signed(
        &town.bob_key,
        payment(town.alice, town.bob, 1_00, None),
        now_s() + 60,
    );
    let refused = town.submit(&theft).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/not-authorised");
    assert_eq!(town.balance(town.alice).await, 87_50);
}

/// A client that lost the answer and retries after its intent expired gets the original
/// result; a different intent under the same id, or a forged signature, is still refused as
/// expired.
async fn late_retry(town: &Town) {
    let not_after = now_s() + 1;
    let pay = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, None),
        not_after,
    );
    let paid = town.submit(&pay).await;
    assert_eq!(paid.status, 201, "{}", paid.body);
    let alice = town.balance(town.alice).await;
    while now_s() <= not_after {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let late = town.submit(&pay).await;
    assert_eq!(late.status, 200, "{}", late.body);
    assert_eq!(late.json()["duplicate"], true);
    assert_eq!(late.json()["entry_id"], paid.json()["entry_id"]);

    let reuse = SignedIntent::sign(
        Intent {
            action: payment(town.alice, town.shop, 2_00, None),
            ..pay.intent().clone()
        },
        &town.alice_key,
    )
    .unwrap();
    let refused = town.submit(&reuse).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/intent-expired");

    let forged = pay.to_json().replace(
        &format!("\"signature\":\"{}", &pay.signature().to_base64url()[..4]),
        "\"signature\":\"AAAA",
    );
    assert_ne!(forged, pay.to_json());
    let refused = town.submit_json(&forged).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/intent-expired");
    assert_eq!(town.balance(town.alice).await, alice, "nothing moved twice");
}

async fn idempotent_writes(town: &Town) {
    let body = json!({"kind": "person", "name": "Carol"}).to_string();
    let key = [("Idempotency-Key", "carol-1")];
    let first = http(
        &town.address,
        "POST",
        "/v1/participants",
        Some(&town.admin),
        &key,
        Some(&body),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let retry = http(
        &town.address,
        "POST",
        "/v1/participants",
        Some(&town.admin),
        &key,
        Some(&body),
    )
    .await;
    assert_eq!(retry.status, 201);
    assert_eq!(
        retry.json()["id"],
        first.json()["id"],
        "a retry is the original response"
    );
    assert_eq!(retry.header("idempotency-replayed"), Some("true"));
    let other = json!({"kind": "person", "name": "Dave"}).to_string();
    let conflict = http(
        &town.address,
        "POST",
        "/v1/participants",
        Some(&town.admin),
        &key,
        Some(&other),
    )
    .await;
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.problem_type(), "/problems/idempotency-key-reused");
}

async fn pagination(town: &Town) {
    for minor in 1..=5 {
        let pay = signed(
            &town.bob_key,
            payment(town.bob, town.shop, minor, None),
            now_s() + 60,
        );
        assert_eq!(town.submit(&pay).await.status, 201);
    }
    // Bob: the issue plus five payments, newest first, two per page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts/{}/entries?limit=2&cursor={c}", town.bob),
            None => format!("/v1/accounts/{}/entries?limit=2", town.bob),
        };
        let page = town.admin("GET", &path, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let json = page.json();
        let items = json["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["amount_minor"].as_i64().unwrap()));
        match json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![-5, -4, -3, -2, -1, 100_00]);
    // Filters: only payments, only with the shop.
    let filtered = town
        .admin(
            "GET",
            &format!(
                "/v1/accounts/{}/entries?kind=payment&counterparty={}",
                town.bob, town.shop
            ),
            None,
        )
        .await;
    assert_eq!(
        filtered.json()["items"].as_array().unwrap().len(),
        5,
        "{}",
        filtered.body
    );
    assert_eq!(filtered.json()["items"][0]["memo"], "paid 5");
    let bad = town
        .admin(
            "GET",
            &format!("/v1/accounts/{}/entries?limit=100000", town.bob),
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (422, Some("limit")),
        "{}",
        bad.body
    );
    let unknown = town
        .admin(
            "GET",
            &format!("/v1/accounts/{}/entries?colour=red", town.bob),
            None,
        )
        .await;
    assert!(
        unknown.status == 400 || unknown.status == 422,
        "{}",
        unknown.body
    );
}

/// Every page of `path` (which has no query yet) with `query`, followed by cursor, joined.
async fn all_pages(town: &Town, path: &str, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?{query}&cursor={c}"),
            None => format!("{path}?{query}"),
        };
        let page = town.admin("GET", &url, None).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        let json = page.json();
        let got = json["items"].as_array().unwrap().clone();
        pages += 1;
        assert!(pages < 100, "{url}: the cursor does not advance");
        match json["next_cursor"].as_str() {
            Some(next) => {
                assert!(!got.is_empty(), "{url}: an empty page with a next cursor");
                cursor = Some(next.to_owned());
                items.extend(got);
            }
            None => {
                items.extend(got);
                break;
            }
        }
    }
    (items, pages)
}

/// A statement longer than several pages, read from storage: payments both ways with three
/// counterparties and a multi-leg entry, paged whole and through filters that drop most rows.
async fn long_history(town: &Town) {
    let made = town
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"unit": UNIT, "kind": "holder", "participant_id": town.alice_participant})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let carol: AccountId = made.json()["id"].as_str().unwrap().parse().unwrap();
    let carol_key = SigningKey::from_bytes(&[4; 32]);
    let registered = register_key(&town.address, &town.admin, &carol.to_string(), &carol_key).await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let unit = UnitCode::new(UNIT).unwrap();
    let general = |kind, legs: Vec<(AccountId, i64)>, memo: &str| Action::Entry {
        kind,
        legs: legs
            .into_iter()
            .map(|(account, delta)| Leg {
                account,
                unit,
                delta,
            })
            .collect(),
        memo: memo.into(),
        tags: Tags::default(),
    };
    // What Carol's statement must say, oldest first: entry id, kind, her change, the other
    // side(s), memo.
    type Line = (Value, &'static str, i64, Vec<AccountId>, String);
    let mut expected: Vec<Line> = Vec::new();
    let mut submit = async |key: &SigningKey,
                            action: Action,
                            kind: &'static str,
                            delta: i64,
                            others: Vec<AccountId>| {
        let memo = match &action {
            Action::Payment { memo, .. } | Action::Entry { memo, .. } => memo.clone(),
            Action::Refund { memo, .. } => memo.clone(),
        };
        let reply = town.submit(&signed(key, action, now_s() + 60)).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        expected.push((reply.json()["entry_id"].clone(), kind, delta, others, memo));
    };
    let issue = general(
        EntryKind::Issue,
        vec![(town.issuer, -50_00), (carol, 50_00)],
        "carol's benefit",
    );
    submit(&town.issuer_key, issue, "issue", 50_00, vec![town.issuer]).await;
    for i in 1..=40i64 {
        let (key, action, delta, other) = match i % 4 {
            0 => (
                &carol_key,
                payment(carol, town.shop, i, None),
                -i,
                town.shop,
            ),
            1 => (
                &carol_key,
                payment(carol, town.alice, i, None),
                -i,
                town.alice,
            ),
            2 => (
                &town.alice_key,
                payment(town.alice, carol, i, None),
                i,
                town.alice,
            ),
            _ => (
                &town.bob_key,
                payment(town.bob, carol, i, None),
                i,
                town.bob,
            ),
        };
        submit(key, action, "payment", delta, vec![other]).await;
        if i == 21 {
            // One entry, two postings from Carol: she is one line, net -30, with both.
            let split = general(
                EntryKind::Payment,
                vec![(carol, -30), (town.shop, 20), (town.alice, 10)],
                "split bill",
            );
            submit(
                &carol_key,
                split,
                "payment",
                -30,
                vec![town.shop, town.alice],
            )
            .await;
        }
    }
    let path = format!("/v1/accounts/{carol}/entries");
    let check = |items: &[Value], keep: &dyn Fn(&Line) -> bool| {
        let want: Vec<_> = expected.iter().rev().filter(|e| keep(e)).collect();
        assert_eq!(items.len(), want.len(), "{items:?}");
        for (item, (entry_id, kind, delta, others, memo)) in items.iter().zip(want) {
            assert_eq!(&item["entry_id"], entry_id, "{item}");
            assert_eq!(item["kind"], *kind, "{item}");
            assert_eq!(item["amount_minor"], *delta, "{item}");
            assert_eq!(item["counterparties"], json!(others), "{item}");
            assert_eq!(item["memo"], *memo, "{item}");
        }
        let positions: Vec<i64> = items
            .iter()
            .map(|i| i["position"].as_i64().unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    };
    let (items, pages) = all_pages(town, &path, "limit=5").await;
    assert_eq!(pages, 9, "42 lines, five a page");
    check(&items, &|_| true);
    // The shop is on the other side of one payment in four and of the split: the walks skip
    // the rows between, and pages stay full until the last.
    let shop = format!("counterparty={}&limit=3", town.shop);
    let (items, pages) = all_pages(town, &path, &shop).await;
    assert_eq!((items.len(), pages), (11, 4));
    check(&items, &|e| e.3.contains(&town.shop));
    // Bob only ever paid Carol (credit side only); the issuer once, by kind too.
    let bob = format!("counterparty={}&limit=4", town.bob);
    let (items, _) = all_pages(town, &path, &bob).await;
    check(&items, &|e| e.3 == [town.bob]);
    let (items, pages) = all_pages(town, &path, "kind=issue&limit=1").await;
    assert_eq!(pages, 1, "one match fills the page and there is no more");
    check(&items, &|e| e.1 == "issue");
    let none = format!("counterparty={}&kind=issue", town.shop);
    let (items, _) = all_pages(town, &path, &none).await;
    assert!(items.is_empty());
    // The balance the view shows and the statement agree.
    let total: i64 = expected.iter().map(|e| e.2).sum();
    assert_eq!(town.balance(carol).await, total);
}

async fn role_boundaries(town: &Town, url: &str) {
    let alice_balance = format!("/v1/accounts/{}/balance", town.alice);
    let shop_balance = format!("/v1/accounts/{}/balance", town.shop);

    // No token, a bogus token, a revoked token: 401.
    assert_eq!(
        town.call("GET", &alice_balance, None, None).await.status,
        401
    );
    assert_eq!(
        town.call("GET", &alice_balance, Some("colt_nonsense"), None)
            .await
            .status,
        401
    );
    let doomed = token_cli(url, "auditor", None).await;
    assert_eq!(
        town.call("GET", &alice_balance, Some(&doomed), None)
            .await
            .status,
        200
    );
    let revoked = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["token", "revoke", "--database-url", url, &doomed])
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let after = town.call("GET", &alice_balance, Some(&doomed), None).await;
    assert_eq!(after.status, 401, "{}", after.body);

    // A merchant token sees its own accounts, not a household's; it cannot open accounts.
    let merchant = token_cli(url, "merchant", Some(&town.shop_participant)).await;
    assert_eq!(
        town.call("GET", &shop_balance, Some(&merchant), None)
            .await
            .status,
        200
    );
    let peek = town
        .call("GET", &alice_balance, Some(&merchant), None)
        .await;
    assert_eq!(peek.status, 404, "{}", peek.body);
    assert!(!peek.body.contains("balance_minor"));
    let history = format!("/v1/accounts/{}/entries", town.alice);
    assert_eq!(
        town.call("GET", &history, Some(&merchant), None)
            .await
            .status,
        404
    );
    let open = town
        .call(
            "POST",
            "/v1/accounts",
            Some(&merchant),
            Some(json!({"unit": UNIT, "kind": "merchant"})),
        )
        .await;
    assert_eq!(open.status, 403, "{}", open.body);
    let own_record = town
        .call(
            "GET",
            &format!("/v1/participants/{}", town.shop_participant),
            Some(&merchant),
            None,
        )
        .await;
    assert_eq!(own_record.status, 200, "{}", own_record.body);
    assert_eq!(own_record.json()["accounts"][0]["id"], json!(town.shop));
    assert_eq!(own_record.json()["accounts"].as_array().unwrap().len(), 1);
    let alice_record = format!("/v1/participants/{}", town.alice_participant);
    assert_eq!(
        town.call("GET", &alice_record, Some(&merchant), None)
            .await
            .status,
        404
    );
    // A merchant cannot replace a household's key (which would let it spend).
    let stolen = register_key(
        &town.address,
        &merchant,
        &town.alice.to_string(),
        &SigningKey::from_bytes(&[9; 32]),
    )
    .await;
    assert_eq!(stolen.status, 404, "{}", stolen.body);

    // A collector scoped to another participant sees nothing of the shop.
    let collector = token_cli(url, "collector", Some(&town.alice_participant)).await;
    assert_eq!(
        town.call("GET", &shop_balance, Some(&collector), None)
            .await
            .status,
        404
    );

    // An auditor reads everything and writes nothing.
    let auditor = token_cli(url, "auditor", None).await;
    assert_eq!(
        town.call("GET", &alice_balance, Some(&auditor), None)
            .await
            .status,
        200
    );
    let unit = town
        .call(
            "POST",
            "/v1/units",
            Some(&auditor),
            Some(json!({"code": "X-PTS", "name": "x", "scale": 0, "kind": "points"})),
        )
        .await;
    assert_eq!(unit.status, 403, "{}", unit.body);
    let freeze = town
        .call(
            "PUT",
            &format!("/v1/accounts/{}/status", town.alice),
            Some(&auditor),
            Some(json!({"status": "frozen"})),
        )
        .await;
    assert_eq!(freeze.status, 403, "{}", freeze.body);

    // A researcher sees no individual account; a coordinator none outside mutual credit.
    let researcher = token_cli(url, "researcher", None).await;
    assert_eq!(
        town.call("GET", &alice_balance, Some(&researcher), None)
            .await
            .status,
        404
    );
    assert_eq!(
        town.call("GET", "/v1/participants", Some(&researcher), None)
            .await
            .status,
        403
    );
    let coordinator = token_cli(url, "coordinator", None).await;
    assert_eq!(
        town.call("GET", &alice_balance, Some(&coordinator), None)
            .await
            .status,
        404
    );

    // A programme manager manages accounts: freezing stops Alice paying, unfreezing restores.
    let manager = token_cli(url, "programme_manager", None).await;
    let status_path = format!("/v1/accounts/{}/status", town.alice);
    let frozen = town
        .call(
            "PUT",
            &status_path,
            Some(&manager),
            Some(json!({"status": "frozen"})),
        )
        .await;
    assert_eq!(frozen.status, 200, "{}", frozen.body);
    let pay = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, None),
        now_s() + 60,
    );
    assert_eq!(
        town.submit(&pay).await.problem_type(),
        "/problems/account-frozen"
    );
    let thawed = town
        .call(
            "PUT",
            &status_path,
            Some(&manager),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(thawed.status, 200, "{}", thawed.body);

    // A household signs a challenge for a session: its own account only.
    let login = town.log_in(town.alice, &town.alice_key).await;
    assert_eq!(login.status, 201, "{}", login.body);
    let session = login.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        town.call("GET", &alice_balance, Some(&session), None)
            .await
            .status,
        200
    );
    assert_eq!(
        town.call("GET", &history, Some(&session), None)
            .await
            .status,
        200
    );
    let bob_balance = format!("/v1/accounts/{}/balance", town.bob);
    assert_eq!(
        town.call("GET", &bob_balance, Some(&session), None)
            .await
            .status,
        404
    );
    assert_eq!(
        town.call(
            "POST",
            "/v1/participants",
            Some(&session),
            Some(json!({"kind": "person", "name": "x"}))
        )
        .await
        .status,
        403
    );
    // Bob's key cannot log in as Alice.
    let refused = town.log_in(town.alice, &town.bob_key).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    // The open registry is public and shows the listed shop, never a household.
    let registry = town.call("GET", "/v1/registry", None, None).await;
    assert_eq!(registry.status, 200);
    assert!(registry.body.contains("Forn de Pa"), "{}", registry.body);
    assert!(!registry.body.contains("Alice"), "{}", registry.body);
}

async fn events_and_payment_requests(town: &Town) {
    let merchant_url_token = town.admin.clone();
    let mut shop_events = Events::open(
        &town.address,
        &format!("/v1/accounts/{}/events", town.shop),
        Some(&merchant_url_token),
    )
    .await;
    let opening = shop_events.next("balance").await;
    let opening_balance = opening["balance_minor"].as_i64().unwrap();

    let made = town
        .admin(
            "POST",
            "/v1/payment-requests",
            Some(json!({"account_id": town.shop, "amount": "3.20", "memo": "pa i llet"})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let request: PaymentRequestId = made.json()["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(made.json()["status"], "open");
    let mut request_events = Events::open(
        &town.address,
        &format!("/v1/payment-requests/{request}/events"),
        None,
    )
    .await;

    // A wallet fetches the request (public by reference), then pays it exactly.
    let fetched = town
        .call(
            "GET",
            &format!("/v1/payment-requests/{request}"),
            None,
            None,
        )
        .await;
    assert_eq!(fetched.json()["amount_minor"], 320, "{}", fetched.body);
    let wrong = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 3_00, Some(request)),
        now_s() + 60,
    );
    assert_eq!(
        town.submit(&wrong).await.problem_type(),
        "/problems/payment-request-mismatch"
    );
    let pay = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 3_20, Some(request)),
        now_s() + 60,
    );
    let paid = town.submit(&pay).await;
    assert_eq!(paid.status, 201, "{}", paid.body);

    let settled = request_events.next("settled").await;
    assert_eq!(settled["entry_id"], paid.json()["entry_id"]);
    let entry = shop_events.next("entry").await;
    assert_eq!(entry["amount_minor"], 320);
    assert_eq!(entry["entry_id"], paid.json()["entry_id"]);
    assert_eq!(town.balance(town.shop).await, opening_balance + 320);

    // Paid once: a second payment for the same request is refused; its status says paid.
    let twice = signed(
        &town.bob_key,
        payment(town.bob, town.shop, 3_20, Some(request)),
        now_s() + 60,
    );
    let refused = town.submit(&twice).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.problem_type(), "/problems/request-already-paid");
    let fetched = town
        .call(
            "GET",
            &format!("/v1/payment-requests/{request}"),
            None,
            None,
        )
        .await;
    assert_eq!(fetched.json()["status"], "paid");

    // A payment naming a request that does not exist, or one that has expired, is refused.
    let unknown = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, Some(PaymentRequestId::new())),
        now_s() + 60,
    );
    assert_eq!(
        town.submit(&unknown).await.problem_type(),
        "/problems/unknown-payment-request"
    );
    let brief = town
        .admin(
            "POST",
            "/v1/payment-requests",
            Some(json!({"account_id": town.shop, "amount": "1.00", "expires_in_s": 1})),
        )
        .await;
    assert_eq!(brief.status, 201, "{}", brief.body);
    let brief_id: PaymentRequestId = brief.json()["id"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let late = signed(
        &town.alice_key,
        payment(town.alice, town.shop, 1_00, Some(brief_id)),
        now_s() + 60,
    );
    assert_eq!(
        town.submit(&late).await.problem_type(),
        "/problems/payment-request-expired"
    );
    let status = town
        .call(
            "GET",
            &format!("/v1/payment-requests/{brief_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status.json()["status"], "expired");

    // Over-precise amounts are refused, naming the field.
    let precise = town
        .admin(
            "POST",
            "/v1/payment-requests",
            Some(json!({"account_id": town.shop, "amount": "3.205"})),
        )
        .await;
    assert_eq!(
        (precise.status, precise.json()["field"].as_str()),
        (422, Some("amount")),
        "{}",
        precise.body
    );
}
