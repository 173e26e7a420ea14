//! A client we did not write: `tests/python/client.py` (PyNaCl + rfc8785 + urllib) makes its
//! own key, signs a payment and sends it to a real `coledger serve`; a tampered copy is
//! refused. Skips loudly without the Python packages; under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;
use std::sync::Arc;

use ledger::{
    Account, AccountId, AccountKind, Action, EntryKind, Intent, IntentId, Leg, PublicKey,
    SignedIntent, Tags, Unit, UnitCode, UnitKind,
};
use serde_json::Value;
use support::*;
use wallet_api::{Clock as _, Committer, CommitterConfig, Database, SystemClock};

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

#[tokio::test]
async fn a_python_client_signs_a_payment_that_the_service_accepts() {
    if !python_ready() {
        return;
    }
    let key = python(&["keygen"]);
    let household_key = PublicKey::from_base64url(key["public_key"].as_str().unwrap()).unwrap();

    // Set the scheme up directly (account registration over HTTP is the wallet API's next step).
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let unit = UnitCode::new("PGI-EUR").unwrap();
    let operator = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (issuer, household, shop) = (AccountId::new(), AccountId::new(), AccountId::new());
    {
        let db = Database::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let (committer, mut task) = Committer::start(
            db.clone(),
            CommitterConfig::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        committer
            .add_unit(Unit::new(unit, "Voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap())
            .await
            .unwrap();
        for (id, kind, authority) in [
            (issuer, AccountKind::Issuer, PublicKey::of(&operator)),
            (household, AccountKind::Holder, household_key),
            (shop, AccountKind::Merchant, PublicKey([3; 32])),
        ] {
            committer
                .open_account(Account {
                    id,
                    ..Account::new(unit, kind, Some(authority))
                })
                .await
                .unwrap();
        }
        let legs = vec![
            Leg {
                account: issuer,
                unit,
                delta: -50_00,
            },
            Leg {
                account: household,
                unit,
                delta: 50_00,
            },
        ];
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
            signer: PublicKey::of(&operator),
            action: Action::Entry {
                kind: EntryKind::Issue,
                legs,
                memo: String::new(),
                tags: Tags::default(),
            },
        };
        let verified = SignedIntent::sign(intent, &operator)
            .unwrap()
            .verify(SystemClock.now_ms())
            .unwrap();
        committer.submit(&verified).await.unwrap();
        drop(committer);
        task.join().await.unwrap();
        db.close().await;
    }

    let (_server, mut lines) =
        coledger(&["serve", "--database-url", &url, "--listen", "127.0.0.1:0"]);
    let banner = next_line(&mut lines).await.unwrap();
    let base = banner
        .trim_start_matches("coledger listening on ")
        .to_owned();
    let seed = key["seed_hex"].as_str().unwrap().to_owned();
    let (household_text, shop_text) = (household.to_string(), shop.to_string());
    let result = tokio::task::spawn_blocking(move || {
        python(&[
            "pay",
            &base,
            &seed,
            &household_text,
            &shop_text,
            "PGI-EUR",
            "1250",
        ])
    })
    .await
    .unwrap();

    assert_eq!(result["paid"]["status"], 201, "{result}");
    assert_eq!(result["paid"]["body"]["duplicate"], false);
    assert_eq!(result["tampered"]["status"], 403, "{result}");
    assert_eq!(
        result["tampered"]["body"]["type"],
        "/problems/bad-signature"
    );
}
