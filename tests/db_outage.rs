//! The database goes away under a running service (PostgreSQL behind a TCP proxy that the
//! test cuts): writes are answered 503 with a clear problem type, committed balances stay
//! readable, nothing partial is written, and service resumes by itself when the database
//! is reachable again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{
    Action, Amount, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags, UnitCode,
};
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A TCP proxy to the database that can be cut (every connection dropped, new ones
/// refused) and restored.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, all) = (up.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // the database is "down": refuse by hanging up
                    continue;
                }
                let upstream = upstream.clone();
                all.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy { address, up, links }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn sign(key: &SigningKey, action: Action) -> String {
    let not_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 600;
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after,
        signer: PublicKey::of(key),
        action,
    };
    SignedIntent::sign(intent, key).unwrap().to_json()
}

#[tokio::test]
async fn writes_get_503_while_the_database_is_away_and_resume_by_themselves() {
    let Ok(admin_url) = std::env::var("COLEDGER_TEST_POSTGRES_URL") else {
        skip("COLEDGER_TEST_POSTGRES_URL is not set: the database-outage test SKIPPED");
        return;
    };
    let direct = wallet_api::db::scratch::create_postgres_database(&admin_url, "coledger_outage")
        .await
        .unwrap();
    // Route the service through the proxy: same database, the proxy's host and port.
    let after_at = direct.rsplit_once('@').unwrap();
    let (host_port, database) = after_at.1.split_once('/').unwrap();
    let proxy = Proxy::start(host_port.to_owned()).await;
    let url = format!("{}@{}/{database}", after_at.0, proxy.address);

    let admin = token_cli(&url, "admin", None).await;
    let (_server, address) = serve(&url, &[]).await;
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let (address, admin) = (address.clone(), admin.clone());
        async move {
            let body = body.map(|b| b.to_string());
            http(&address, method, &path, Some(&admin), &[], body.as_deref()).await
        }
    };
    // A unit, an issuer, a household and a shop, with keys; the household gets 50.00.
    let made = call(
        "POST",
        "/v1/units".into(),
        Some(json!({"code": "OUT-EUR", "name": "x", "scale": 2, "kind": "voucher"})),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let mut ids = Vec::new();
    let keys: Vec<SigningKey> = (1..=3u8)
        .map(|s| SigningKey::from_bytes(&[s; 32]))
        .collect();
    for (kind, key) in ["issuer", "holder", "merchant"].into_iter().zip(&keys) {
        let account = call(
            "POST",
            "/v1/accounts".into(),
            Some(json!({"unit": "OUT-EUR", "kind": kind})),
        )
        .await;
        let id: ledger::AccountId = account.json()["id"].as_str().unwrap().parse().unwrap();
        let public = PublicKey::of(key);
        let proof = key.sign(&wallet_api::http::key_proof_bytes(id, &public));
        let registered = call(
            "PUT",
            format!("/v1/accounts/{id}/key"),
            Some(json!({"public_key": public.to_base64url(), "proof": ledger::Signature(proof.to_bytes()).to_base64url()})),
        )
        .await;
        assert_eq!(registered.status, 200, "{}", registered.body);
        ids.push(id);
    }
    let unit = UnitCode::new("OUT-EUR").unwrap();
    let funding = sign(
        &keys[0],
        Action::Entry {
            kind: EntryKind::Issue,
            legs: vec![
                Leg {
                    account: ids[0],
                    unit,
                    delta: -50_00,
                },
                Leg {
                    account: ids[1],
                    unit,
                    delta: 50_00,
                },
            ],
            memo: String::new(),
            tags: Tags::default(),
        },
    );
    assert_eq!(
        http(&address, "POST", "/v1/intents", None, &[], Some(&funding))
            .await
            .status,
        201
    );

    // The database goes away.
    proxy.cut().await;
    let payment = sign(
        &keys[1],
        Action::Payment {
            from: ids[1],
            to: ids[2],
            unit,
            amount_minor: Amount::from_minor(7_00).unwrap(),
            memo: String::new(),
            request: None,
        },
    );
    let refused = http(&address, "POST", "/v1/intents", None, &[], Some(&payment)).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        refused.problem_type(),
        "/problems/storage-unavailable",
        "{}",
        refused.body
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Committed balances stay readable; readiness says not ready; health says alive.
    let balance = call("GET", format!("/v1/accounts/{}/balance", ids[1]), None).await;
    assert_eq!(
        (balance.status, balance.json()["balance_minor"].as_i64()),
        (200, Some(50_00)),
        "{}",
        balance.body
    );
    assert_eq!(
        http(&address, "GET", "/readyz", None, &[], None)
            .await
            .status,
        503
    );
    assert_eq!(
        http(&address, "GET", "/healthz", None, &[], None)
            .await
            .status,
        200
    );

    // It comes back: the same payment, retried, goes through without anyone restarting us.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    let paid = loop {
        let answer = http(&address, "POST", "/v1/intents", None, &[], Some(&payment)).await;
        if answer.status != 503 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(paid.status == 201 || paid.status == 200, "{}", paid.body);
    let balance = call("GET", format!("/v1/accounts/{}/balance", ids[1]), None).await;
    assert_eq!(
        balance.json()["balance_minor"].as_i64(),
        Some(43_00),
        "paid exactly once: {}",
        balance.body
    );
    assert_eq!(
        http(&address, "GET", "/readyz", None, &[], None)
            .await
            .status,
        200
    );
}
