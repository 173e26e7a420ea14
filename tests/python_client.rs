//! A client we did not write: `tests/python/client.py` (PyNaCl + rfc8785 + urllib) makes its
//! own key, registers it for a household's account over HTTP (with a proof of possession),
//! signs a payment that a real `coledger serve` accepts, sees a tampered copy refused, and
//! logs in by signing a challenge to read its balance. Skips loudly without the Python
//! packages; under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{Action, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags, UnitCode};
use serde_json::{Value, json};
use support::*;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import nacl, rfc8785"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("SKIPPED: python3 with PyNaCl and rfc8785 is missing (scripts/test installs them)");
    }
    ok
}

fn python(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn python_async(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python(&args)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_python_client_registers_its_key_pays_and_reads_its_balance() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let admin = token_cli(&url, "admin", None).await;
    let (_server, address) = serve(&url, &[]).await;
    let base = format!("http://{address}");
    let call = |method: &'static str, path: String, body: Value| {
        let (address, admin) = (address.clone(), admin.clone());
        async move {
            let reply = http(
                &address,
                method,
                &path,
                Some(&admin),
                &[],
                Some(&body.to_string()),
            )
            .await;
            assert!(reply.status < 300, "{method} {path}: {}", reply.body);
            reply.json()
        }
    };

    // The operator sets the scheme up over HTTP; the household's account has no key yet.
    call(
        "POST",
        "/v1/units".into(),
        json!({"code": "PGI-EUR", "name": "Voucher", "scale": 2, "kind": "voucher"}),
    )
    .await;
    let open = |kind: &'static str| {
        call(
            "POST",
            "/v1/accounts".into(),
            json!({"unit": "PGI-EUR", "kind": kind}),
        )
    };
    let issuer = open("issuer").await["id"].as_str().unwrap().to_owned();
    let household = open("holder").await["id"].as_str().unwrap().to_owned();
    let shop = open("merchant").await["id"].as_str().unwrap().to_owned();
    let operator = SigningKey::from_bytes(&[7; 32]);
    let public = PublicKey::of(&operator);
    let proof = operator.sign(&wallet_api::http::key_proof_bytes(
        issuer.parse().unwrap(),
        &public,
    ));
    call(
        "PUT",
        format!("/v1/accounts/{issuer}/key"),
        json!({"public_key": public.to_base64url(), "proof": ledger::Signature(proof.to_bytes()).to_base64url()}),
    )
    .await;
    let unit = UnitCode::new("PGI-EUR").unwrap();
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after: i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
            + 60,
        signer: public,
        action: Action::Entry {
            kind: EntryKind::Issue,
            legs: vec![
                Leg {
                    account: issuer.parse().unwrap(),
                    unit,
                    delta: -50_00,
                },
                Leg {
                    account: household.parse().unwrap(),
                    unit,
                    delta: 50_00,
                },
            ],
            memo: String::new(),
            tags: Tags::default(),
        },
    };
    let issued = http(
        &address,
        "POST",
        "/v1/intents",
        None,
        &[],
        Some(&SignedIntent::sign(intent, &operator).unwrap().to_json()),
    )
    .await;
    assert_eq!(issued.status, 201, "{}", issued.body);

    // The Python client makes a key and registers it.
    let key = python_async(vec!["keygen".into()]).await;
    let seed = key["seed_hex"].as_str().unwrap().to_owned();
    let registered = python_async(vec![
        "register".into(),
        base.clone(),
        admin.clone(),
        household.clone(),
        seed.clone(),
    ])
    .await;
    assert_eq!(registered["status"], 200, "{registered}");
    assert_eq!(registered["body"]["public_key"], key["public_key"]);

    // It pays; a tampered copy is refused.
    let result = python_async(vec![
        "pay".into(),
        base.clone(),
        seed.clone(),
        household.clone(),
        shop.clone(),
        "PGI-EUR".into(),
        "1250".into(),
    ])
    .await;
    assert_eq!(result["paid"]["status"], 201, "{result}");
    assert_eq!(result["paid"]["body"]["duplicate"], false);
    assert_eq!(result["tampered"]["status"], 403, "{result}");
    assert_eq!(
        result["tampered"]["body"]["type"],
        "/problems/bad-signature"
    );

    // It logs in by signing a challenge and reads its own balance.
    let balance = python_async(vec!["balance".into(), base, household, seed]).await;
    assert_eq!(balance["status"], 200, "{balance}");
    assert_eq!(balance["body"]["balance"], "37.50");
}
