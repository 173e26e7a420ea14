//! Published test vectors for signed intents (`tests/vectors/intents.json`): keys, intents,
//! their canonical bytes, signatures and the verdict at a given time. Client authors in any
//! language check their implementation against this file. Ed25519 is deterministic, so the
//! file is fully reproducible: `UPDATE_VECTORS=1 cargo test -p ledger --test vectors`
//! rewrites it, and a change to it in review means the wire format changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "common/python_check.rs"]
mod python_check;

use std::path::PathBuf;

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::canonical::to_canonical_bytes;
use ledger::intent::SIGNING_CONTEXT;
use ledger::{
    Action, Amount, EntryKind, Intent, IntentError, Leg, PublicKey, Signature, SignedIntent, Tags,
    UnitCode,
};
use serde_json::{Value, json};

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/intents.json")
}

fn id<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The cases, built from fixed seeds and ids so the output never changes.
fn cases() -> Vec<(&'static str, [u8; 32], Intent)> {
    let household = [0x11; 32];
    let operator = [0x22; 32];
    let merchant = [0x33; 32];
    let key = |seed: [u8; 32]| PublicKey::of(&SigningKey::from_bytes(&seed));
    let eur = UnitCode::new("PGI-EUR").unwrap();
    vec![
        (
            "payment at a shop",
            household,
            Intent {
                intent_id: id("0192f3a0-1111-7000-8000-000000000001"),
                not_after: 1_800_000_000,
                signer: key(household),
                action: Action::Payment {
                    from: id("0192f3a0-aaaa-7000-8000-000000000001"),
                    to: id("0192f3a0-bbbb-7000-8000-000000000002"),
                    unit: eur,
                    amount_minor: Amount::from_minor(1250).unwrap(),
                    memo: "pan y leche".into(),
                    request: None,
                },
            },
        ),
        (
            "payment of a merchant's payment request",
            household,
            Intent {
                intent_id: id("0192f3a0-1111-7000-8000-000000000004"),
                not_after: 1_800_000_000,
                signer: key(household),
                action: Action::Payment {
                    from: id("0192f3a0-aaaa-7000-8000-000000000001"),
                    to: id("0192f3a0-bbbb-7000-8000-000000000002"),
                    unit: eur,
                    amount_minor: Amount::from_minor(320).unwrap(),
                    memo: String::new(),
                    request: Some(id("0192f3a0-dddd-7000-8000-000000000005")),
                },
            },
        ),
        (
            "payment with an Arabic memo and escapes",
            household,
            Intent {
                intent_id: id("0192f3a0-1111-7000-8000-000000000002"),
                not_after: 1_800_000_000,
                signer: key(household),
                action: Action::Payment {
                    from: id("0192f3a0-aaaa-7000-8000-000000000001"),
                    to: id("0192f3a0-bbbb-7000-8000-000000000003"),
                    unit: eur,
                    amount_minor: Amount::from_minor(300).unwrap(),
                    memo: "خبز \"طازج\"\n\u{1}".into(),
                    request: None,
                },
            },
        ),
        (
            "operator issuance with legs and tags",
            operator,
            Intent {
                intent_id: id("0192f3a0-1111-7000-8000-000000000003"),
                not_after: 1_800_000_000,
                signer: key(operator),
                action: Action::Entry {
                    kind: EntryKind::Issue,
                    legs: vec![
                        Leg {
                            account: id("0192f3a0-cccc-7000-8000-000000000009"),
                            unit: eur,
                            delta: -20_000,
                        },
                        Leg {
                            account: id("0192f3a0-aaaa-7000-8000-000000000001"),
                            unit: eur,
                            delta: 20_000,
                        },
                    ],
                    memo: "minimum income 2026-12".into(),
                    tags: Tags {
                        programme: Some("pgi-2026".into()),
                        budget_line: Some("4800".into()),
                        category: None,
                        reverses: None,
                    },
                },
            },
        ),
        (
            "refund of part of a sale, signed by the merchant",
            merchant,
            Intent {
                intent_id: id("0192f3a0-1111-7000-8000-000000000006"),
                not_after: 1_800_000_000,
                signer: key(merchant),
                action: Action::Refund {
                    payment: id("0192f3a0-eeee-7000-8000-000000000007"),
                    from: id("0192f3a0-bbbb-7000-8000-000000000002"),
                    to: id("0192f3a0-aaaa-7000-8000-000000000001"),
                    unit: eur,
                    amount_minor: Amount::from_minor(450).unwrap(),
                    memo: "leche devuelta".into(),
                },
            },
        ),
    ]
}

/// The refund vector with its optional `memo` left out, as a client that has none sends it:
/// what is signed is the object without the member, not one with `"memo":""`.
fn refund_without_memo(refund: &Value) -> Value {
    let seed: [u8; 32] = unhex(refund["secret_seed_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    let mut intent = refund["intent"].clone();
    intent["action"].as_object_mut().unwrap().remove("memo");
    intent["intent_id"] = json!("0192f3a0-1111-7000-8000-000000000008");
    let canonical = String::from_utf8(to_canonical_bytes(&intent).unwrap()).unwrap();
    let signed_bytes = [SIGNING_CONTEXT, canonical.as_bytes()].concat();
    let signature = SigningKey::from_bytes(&seed).sign(&signed_bytes);
    let mut vector = refund.clone();
    vector["name"] = json!("refund with no memo (the member is absent, not empty)");
    vector["intent"] = intent;
    vector["canonical"] = json!(canonical);
    vector["signed_bytes_hex"] = json!(hex(&signed_bytes));
    vector["signature"] = json!(Signature(signature.to_bytes()));
    vector
}

fn generate() -> Value {
    let mut vectors = Vec::new();
    for (name, seed, intent) in cases() {
        let key = SigningKey::from_bytes(&seed);
        let signed = SignedIntent::sign(intent, &key).unwrap();
        let wire: Value = serde_json::from_str(&signed.to_json()).unwrap();
        vectors.push(json!({
            "name": name,
            "secret_seed_hex": hex(&seed),
            "public_key": PublicKey::of(&key),
            "intent": wire["intent"],
            "canonical": signed.canonical(),
            "signed_bytes_hex": hex(&signed.signed_bytes()),
            "signature": wire["signature"],
            "checked_at_unix_s": 1_700_000_000,
            "expect": "ok",
        }));
    }
    let refund = vectors
        .iter()
        .find(|v| v["intent"]["action"]["type"] == "refund")
        .cloned()
        .unwrap();
    vectors.push(refund_without_memo(&refund));
    // Negative cases derived from the first: a changed amount, and an expired check time.
    let mut tampered = vectors[0].clone();
    tampered["name"] = json!("amount changed after signing");
    tampered["intent"]["action"]["amount_minor"] = json!(9250);
    tampered["canonical"] =
        json!(String::from_utf8(to_canonical_bytes(&tampered["intent"]).unwrap()).unwrap());
    tampered["signed_bytes_hex"] = json!(hex(&[
        SIGNING_CONTEXT,
        tampered["canonical"].as_str().unwrap().as_bytes()
    ]
    .concat()));
    tampered["expect"] = json!("bad_signature");
    let mut expired = vectors[0].clone();
    expired["name"] = json!("checked after not_after");
    expired["checked_at_unix_s"] = json!(1_800_000_001);
    expired["expect"] = json!("expired");
    vectors.push(tampered);
    vectors.push(expired);
    json!({
        "format": "coledger signed intents v1",
        "signed_bytes": "\"coledger/v1\\n\" followed by the RFC 8785 canonical JSON of `intent`",
        "encoding": "public keys and signatures are unpadded base64url; ids are UUID strings; amounts are integer minor units",
        "vectors": vectors,
    })
}

#[test]
fn published_vectors_match_this_implementation() {
    let generated = generate();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(vectors_path(), text).unwrap();
    }
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    assert_eq!(
        published, generated,
        "regenerate with UPDATE_VECTORS=1 if the format changed on purpose"
    );

    for vector in published["vectors"].as_array().unwrap() {
        let canonical = to_canonical_bytes(&vector["intent"]).unwrap();
        assert_eq!(canonical, vector["canonical"].as_str().unwrap().as_bytes());
        assert_eq!(
            [SIGNING_CONTEXT, &canonical].concat(),
            unhex(vector["signed_bytes_hex"].as_str().unwrap())
        );
        let wire = json!({"intent": vector["intent"], "signature": vector["signature"]});
        let parsed = SignedIntent::from_json(wire.to_string().as_bytes()).unwrap();
        let now_ms = vector["checked_at_unix_s"].as_i64().unwrap() * 1000;
        let verdict = match parsed.verify(now_ms) {
            Ok(_) => "ok",
            Err(IntentError::BadSignature { .. }) => "bad_signature",
            Err(IntentError::Expired { .. }) => "expired",
            Err(other) => panic!("unexpected {other}"),
        };
        assert_eq!(verdict, vector["expect"], "{}", vector["name"]);
    }
}

/// An implementation we did not write (PyNaCl + the `rfc8785` package) must agree on every
/// canonical byte, signature and verdict.
#[test]
fn independent_python_implementation_agrees() {
    python_check::check_vectors(&vectors_path());
}
