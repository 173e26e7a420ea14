//! The payment-request QR codes we print are read by tools we did not write:
//! `tests/python/emv_interop.py` decodes each PNG from `qr_render::png` (the print renderer)
//! with zxing-cpp, parses the text with its own EMV merchant-presented parser written from
//! docs/wire-format.md, checks the CRC-16/CCITT-FALSE and verifies the merchant's signature
//! with PyNaCl. Every field it reads must be the one we encoded, and a code whose payload has
//! one character changed must be reported as a CRC failure, so the check can fail. Skips
//! loudly without the Python packages; under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use ledger::{AccountId, Amount, CategoryCode, PaymentRequestId, PublicKey, UnitCode};
use merchant_terminal::emv::{
    self, AlternateLanguage, Initiation, NO_CURRENCY, PaymentRequestPayload, RequestAmount,
};
use merchant_terminal::qr_render;
use serde_json::{Value, json};
use support::*;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zxingcpp, PIL, nacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            "SKIPPED: python3 with zxing-cpp, pillow and PyNaCl is missing (scripts/test installs them)",
        );
    }
    ok
}

/// The merchant's key; every code in these tests is signed with it.
fn merchant_key() -> SigningKey {
    SigningKey::from_bytes(&[0x2a; 32])
}

/// Runs the Python reader on `pngs`: its exit status, its JSON reports and its stderr.
fn read_back(pngs: &[PathBuf]) -> (Option<i32>, Vec<Value>, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/emv_interop.py");
    let output: Output = Command::new("python3")
        .arg(script)
        .arg(PublicKey::of(&merchant_key()).to_base64url())
        .args(pngs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let reports: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON from the reader ({e}):\n{stderr}"));
    (output.status.code(), reports, stderr)
}

/// Renders `text` as the PNG we print, at `scale` pixels per module, into `dir`.
fn render(dir: &Path, name: &str, text: &str, scale: u32) -> PathBuf {
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, qr_render::png(text, scale).unwrap()).unwrap();
    path
}

fn dynamic(minor: i64, scale: u8) -> Initiation {
    Initiation::Dynamic {
        amount: RequestAmount {
            value: Amount::from_minor(minor).unwrap(),
            scale,
        },
    }
}

fn account(text: &str) -> AccountId {
    text.parse().unwrap()
}

fn request(text: &str) -> Option<PaymentRequestId> {
    Some(text.parse().unwrap())
}

/// (name, payload, PNG pixels per module): a euro request, a time-bank sticker with no amount
/// and a Greek name, a dinar request (3 decimals) with an Arabic name whose fatha counts as a
/// character, and a whole-number points request with a Greek name and city.
fn cases() -> Vec<(&'static str, PaymentRequestPayload, u32)> {
    let euro = PaymentRequestPayload {
        initiation: dynamic(12_50, 2),
        merchant_account: account("018f3a2b-7c4d-7e5f-8a6b-9c0d1e2f3a4b"),
        unit: UnitCode::new("PGI-EUR").unwrap(),
        category: CategoryCode::parse("5411").unwrap(),
        currency_numeric: emv::currency_numeric("EUR").unwrap(),
        country: "ES".into(),
        merchant_name: "Fruteria Lopez".into(),
        city: "Malaga".into(),
        reference: request("018f3a2b-7c4d-7e5f-8a6b-000000000042"),
        terminal: Some("caja-2".into()),
        alternate: None,
    };
    let sticker = PaymentRequestPayload {
        initiation: Initiation::Static,
        merchant_account: account("018f3a2b-7c4d-7e5f-8a6b-0000000000aa"),
        unit: UnitCode::new("HOUR").unwrap(),
        category: CategoryCode::parse("5812").unwrap(),
        currency_numeric: NO_CURRENCY,
        country: "GR".into(),
        merchant_name: "Kafeneio".into(),
        city: "Athina".into(),
        reference: None,
        terminal: None,
        alternate: Some(AlternateLanguage {
            language: "el".into(),
            name: "Καφενείο".into(),
            city: None,
        }),
    };
    let dinar = PaymentRequestPayload {
        initiation: dynamic(12_500, 3),
        merchant_account: account("018f3a2b-7c4d-7e5f-8a6b-0000000000bb"),
        unit: UnitCode::new("SFAX-TND").unwrap(),
        currency_numeric: emv::currency_numeric("TND").unwrap(),
        country: "TN".into(),
        merchant_name: "Epicerie Ben Salah".into(),
        city: "Sfax".into(),
        reference: request("018f3a2b-7c4d-7e5f-8a6b-ffffffffffff"),
        terminal: Some("caisse-1".into()),
        alternate: Some(AlternateLanguage {
            language: "ar".into(),
            name: "بَقالة بن صالح".into(),
            city: Some("صفاقس".into()),
        }),
        ..euro.clone()
    };
    let points = PaymentRequestPayload {
        initiation: dynamic(7, 0),
        merchant_account: account("018f3a2b-7c4d-7e5f-8a6b-0000000000cc"),
        unit: UnitCode::new("BZ-PTS").unwrap(),
        category: CategoryCode::parse("5499").unwrap(),
        currency_numeric: NO_CURRENCY,
        country: "GR".into(),
        merchant_name: "Synetairismos Agora".into(),
        city: "Thessaloniki".into(),
        reference: request("018f3a2b-7c4d-7e5f-8a6b-123456789abc"),
        terminal: Some("tameio-3".into()),
        alternate: Some(AlternateLanguage {
            language: "el".into(),
            name: "Συνεταιρισμός Αγορά".into(),
            city: Some("Θεσσαλονίκη".into()),
        }),
    };
    vec![
        ("euro", euro, 4),
        ("sticker", sticker, 8),
        ("dinar", dinar, 3),
        ("points", points, 2),
    ]
}

/// The fields as the reader reports them, from what we encoded.
fn expected_fields(payload: &PaymentRequestPayload) -> Value {
    json!({
        "initiation": match payload.initiation {
            Initiation::Static => "static",
            Initiation::Dynamic { .. } => "dynamic",
        },
        "merchant_account": payload.merchant_account.to_string(),
        "unit": payload.unit.as_str(),
        "category": payload.category.to_string(),
        "currency": format!("{:03}", payload.currency_numeric),
        "amount": payload.amount().map(|a| a.text()),
        "country": payload.country,
        "name": payload.merchant_name,
        "city": payload.city,
        "reference": payload.reference.map(|r| r.to_string()),
        "terminal": payload.terminal,
        "alternate": payload.alternate.as_ref().map(|a| json!({
            "language": a.language,
            "name": a.name,
            "city": a.city,
        })),
    })
}

#[test]
fn printed_codes_read_back_with_zxing_and_an_independent_emv_parser() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = merchant_key();
    let cases = cases();
    let mut texts = Vec::new();
    let mut pngs = Vec::new();
    for (name, payload, scale) in &cases {
        let text = emv::encode(payload, &key).unwrap();
        pngs.push(render(dir.path(), name, &text, *scale));
        texts.push(text);
    }
    let (status, reports, stderr) = read_back(&pngs);
    assert_eq!(status, Some(0), "the reader refused our codes:\n{stderr}");
    assert_eq!(reports.len(), cases.len());
    for (((name, payload, _), text), report) in cases.iter().zip(&texts).zip(&reports) {
        assert_eq!(
            report["text"],
            text.as_str(),
            "{name}: decoded text differs"
        );
        assert_eq!(report["errors"], json!([]), "{name}: {report}");
        assert_eq!(report["ec_level"], "M", "{name}: error correction level");
        assert_eq!(report["crc"]["ok"], true, "{name}: {report}");
        assert_eq!(report["crc"]["computed"], &text[text.len() - 4..], "{name}");
        assert_eq!(report["signature_verified"], true, "{name}: {report}");
        let fields = &report["fields"];
        let expected = expected_fields(payload);
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&fields[field], value, "{name}: field {field} differs");
        }
    }
    // The Arabic name's fatha is its own character, both to us and to the reader.
    let dinar = &reports[2]["templates"]["64"]["01"];
    assert_eq!(dinar.as_str().unwrap().chars().count(), 14);
}

#[test]
fn a_code_with_one_character_changed_is_a_crc_failure_to_the_independent_parser() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, payload, scale) = cases().remove(0);
    let text = emv::encode(&payload, &merchant_key()).unwrap();
    // One letter of the name, same length, CRC and signature left as they were.
    let flipped = text.replacen("Fruteria", "Frutaria", 1);
    assert_ne!(flipped, text);
    let png = render(dir.path(), "flipped", &flipped, scale);
    let (status, reports, stderr) = read_back(&[png]);
    assert_eq!(status, Some(1), "a changed payload passed:\n{stderr}");
    let report = &reports[0];
    assert_eq!(report["text"], flipped.as_str());
    assert_eq!(report["crc"]["ok"], false, "{report}");
    assert_eq!(report["crc"]["stated"], &text[text.len() - 4..]);
    assert_eq!(report["signature_verified"], false, "{report}");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("CRC mismatch"),
        "{report}"
    );
    assert!(stderr.contains("CRC mismatch"), "{stderr}");
}
