//! The shell terminal against a real service, on SQLite and PostgreSQL: `terminal init`
//! registers the terminal's key, `terminal charge` prints a signed EMV QR payload (which an
//! independent decode verifies against that key) and waits; a wallet pays the request it
//! names; the terminal reports it paid; `terminal sales` counts it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{
    Action, Amount, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags, UnitCode,
};
use serde_json::{Value, json};
use support::*;
use wallet_api::http::key_proof_bytes;

const UNIT: &str = "TERM-EUR";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn send(address: &str, method: &str, path: &str, token: &str, body: Value) -> Reply {
    http(
        address,
        method,
        path,
        Some(token),
        &[],
        Some(&body.to_string()),
    )
    .await
}

async fn account(address: &str, admin: &str, kind: &str, participant: Option<&str>) -> String {
    let mut body = json!({"unit": UNIT, "kind": kind});
    if let Some(p) = participant {
        body["participant_id"] = json!(p);
    }
    let reply = send(address, "POST", "/v1/accounts", admin, body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn register(address: &str, token: &str, account: &str, key: &SigningKey) {
    let public = PublicKey::of(key);
    let proof = key.sign(&key_proof_bytes(account.parse().unwrap(), &public));
    let reply = send(
        address,
        "PUT",
        &format!("/v1/accounts/{account}/key"),
        token,
        json!({
            "public_key": public.to_base64url(),
            "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
        }),
    )
    .await;
    assert!(reply.status < 300, "{}", reply.body);
}

fn signed(key: &SigningKey, action: Action) -> String {
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after: now_s() + 300,
        signer: PublicKey::of(key),
        action,
    };
    SignedIntent::sign(intent, key).unwrap().to_json()
}

#[tokio::test]
async fn a_shell_terminal_charges_with_a_signed_qr_and_sees_it_paid() {
    for (label, url, _dir) in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let admin = token_cli(&url, "admin", None).await;
        let (mut server, address) = serve(&url, &[]).await;
        let a = address.as_str();
        let unit = send(
            a,
            "POST",
            "/v1/units",
            &admin,
            json!({
                "code": UNIT, "name": "Terminal euro", "scale": 2, "kind": "voucher", "peg": "EUR"
            }),
        )
        .await;
        assert_eq!(unit.status, 201, "{}", unit.body);
        let shop = send(
            a,
            "POST",
            "/v1/participants",
            &admin,
            json!({
                "kind": "organisation", "name": "Panaderia Triana", "roles": ["merchant"],
                "category_code": "5462", "area": "Sevilla", "listed": true
            }),
        )
        .await;
        let shop = shop.json()["id"].as_str().unwrap().to_owned();
        let till = account(a, &admin, "merchant", Some(&shop)).await;
        let issuer = account(a, &admin, "issuer", None).await;
        let household = account(a, &admin, "holder", None).await;
        let (issuer_key, household_key) = (
            SigningKey::from_bytes(&[41; 32]),
            SigningKey::from_bytes(&[42; 32]),
        );
        register(a, &admin, &issuer, &issuer_key).await;
        register(a, &admin, &household, &household_key).await;
        let unit_code = UnitCode::new(UNIT).unwrap();
        let issue = signed(
            &issuer_key,
            Action::Entry {
                kind: EntryKind::Issue,
                legs: vec![
                    Leg {
                        account: issuer.parse().unwrap(),
                        unit: unit_code,
                        delta: -50_00,
                    },
                    Leg {
                        account: household.parse().unwrap(),
                        unit: unit_code,
                        delta: 50_00,
                    },
                ],
                memo: "benefit".into(),
                tags: Tags::default(),
            },
        );
        let issued = http(a, "POST", "/v1/intents", Some(&admin), &[], Some(&issue)).await;
        assert_eq!(issued.status, 201, "{}", issued.body);

        // The merchant sets up its terminal, then charges 12.50.
        let merchant = token_cli(&url, "merchant", Some(&shop)).await;
        let key_file = dir.path().join("terminal.key");
        let api = format!("http://{a}");
        let common = [
            "--api",
            api.as_str(),
            "--token",
            merchant.as_str(),
            "--account",
            till.as_str(),
            "--key-file",
            key_file.to_str().unwrap(),
        ];
        let init = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args([&["terminal", "init"][..], &common].concat())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let (mut charge, mut lines) = coledger(
            &[
                &["terminal", "charge", "12.50"][..],
                &common,
                &["--memo", "pan y leche"],
            ]
            .concat(),
        );
        let mut payload = String::new();
        let mut request = String::new();
        let mut qr_rows = 0;
        while request.is_empty() {
            let line = next_line(&mut lines)
                .await
                .expect("terminal charge stopped");
            if line.contains('█') || line.contains('▀') || line.contains('▄') {
                qr_rows += 1;
            }
            if let Some(p) = line.strip_prefix("payload: ") {
                payload = p.to_owned();
            }
            if let Some(r) = line.strip_prefix("request: ") {
                request = r.to_owned();
            }
        }
        assert!(qr_rows > 10, "the QR code is drawn in the terminal");
        // An independent decode: CRC, structure and the merchant's signature.
        let text = std::fs::read_to_string(&key_file).unwrap();
        let seed: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text.trim()[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let terminal_key = SigningKey::from_bytes(&seed.try_into().unwrap());
        let decoded =
            merchant_terminal::emv::decode_verified(&payload, &PublicKey::of(&terminal_key))
                .unwrap();
        assert_eq!(
            decoded.amount().unwrap().value,
            Amount::from_minor(12_50).unwrap()
        );
        assert_eq!(decoded.reference.unwrap().to_string(), request);
        assert_eq!(decoded.merchant_account.to_string(), till);
        assert_eq!(decoded.currency_numeric, 978);
        assert!(
            merchant_terminal::emv::decode_verified(&payload, &PublicKey::of(&household_key))
                .is_err()
        );

        // The household's wallet pays exactly what the code asks; the terminal sees it.
        let pay = signed(
            &household_key,
            Action::Payment {
                from: household.parse().unwrap(),
                to: decoded.merchant_account,
                unit: decoded.unit,
                amount_minor: decoded.amount().unwrap().value,
                memo: String::new(),
                request: decoded.reference,
            },
        );
        let paid = http(a, "POST", "/v1/intents", None, &[], Some(&pay)).await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        let mut last = String::new();
        while !last.starts_with("PAID") {
            last = next_line(&mut lines)
                .await
                .expect("terminal charge stopped before PAID");
        }
        assert!(charge.wait().await.unwrap().success());

        let sales = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args([&["terminal", "sales"][..], &common].concat())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&sales.stdout);
        assert!(
            sales.status.success(),
            "{}",
            String::from_utf8_lossy(&sales.stderr)
        );
        assert!(out.contains("today: 1 sales, 12.50 TERM-EUR"), "{out}");
        // A bad amount is a clear error, not a request.
        let bad = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args([&["terminal", "charge", "12.505"][..], &common].concat())
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("12.505"));
        stop_with_sigterm(&mut server, label).await;
    }
}
