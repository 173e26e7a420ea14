//! The pages in a real browser: `coledger serve --demo` as a new user would start it, then
//! `tests/python/browser_test.py` drives the shop terminal and the phone wallet in two
//! headless Chromium instances (Selenium, Debian's chromium and chromedriver) through a QR
//! sale, a partial refund then the rest (the refund offered is what is left of the sale, and
//! a sale refunded in full offers none), a card sale with a wrong PIN first, and Arabic right
//! to left.
//!
//! Screenshots go to `$COLEDGER_SCREENSHOTS` when set (`docs/screenshots` is made that way),
//! else to a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn browser_ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    let ready = Path::new(&chromium).exists() && Path::new(&driver).exists() && selenium;
    if !ready {
        skip(&format!(
            "SKIPPED: browser tests need {chromium}, {driver} (Debian packages chromium and \
             chromium-driver; .ci/run installs them) and Python's selenium (scripts/test installs it)"
        ));
    }
    ready
}

/// What `serve --demo` prints for trying the pages.
#[derive(Default, Debug)]
struct DemoAccess {
    base_url: String,
    token: String,
    wallet_link: String,
    card: String,
    pin: String,
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.split_once(marker)
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
}

#[tokio::test]
async fn a_whole_sale_in_the_terminal_and_wallet_pages() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (mut child, mut lines) = coledger(&[
        "serve",
        "--demo",
        "--database-url",
        &url,
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut access = DemoAccess::default();
    loop {
        let line = next_line(&mut lines).await.expect("serve --demo stopped");
        if let Some(token) = after(&line, "merchant token ") {
            access.token = token.trim_end_matches(')').to_owned();
        }
        if let Some(link) = after(&line, "demo phone wallet:") {
            access.wallet_link = link.to_owned();
        }
        if let Some(card) = after(&line, "demo card:") {
            access.card = card.to_owned();
            access.pin = after(&line, " PIN ").unwrap_or_default().to_owned();
        }
        if let Some(address) = line.strip_prefix("coledger listening on ") {
            access.base_url = address.to_owned();
            break;
        }
    }
    assert!(
        !access.token.is_empty() && !access.wallet_link.is_empty() && !access.card.is_empty(),
        "serve --demo did not print the pages' demo access: {access:?}"
    );
    let screenshots = match std::env::var("COLEDGER_SCREENSHOTS") {
        Ok(dir) if !dir.is_empty() => dir,
        _ => dir.path().join("screenshots").display().to_string(),
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/browser_test.py");
    let failures = dir.path().display().to_string();
    let output = tokio::process::Command::new("python3")
        .args([
            script,
            &access.base_url,
            "--token",
            &access.token,
            "--wallet-link",
            &access.wallet_link,
            "--card",
            &access.card,
            "--pin",
            &access.pin,
            "--screenshots",
            &screenshots,
            "--failures",
            &failures,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed (failure screenshots in {failures}):\n{stderr}\n{stdout}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!(
        "terminal saw the payment {} s after the wallet's tap",
        summary["terminal_saw_paid_s"]
    );
    // The payload the page wrote in JavaScript decodes, signature and all, with the Rust
    // decoder: the two implementations of the wire format agree.
    let payload = summary["payload"].as_str().unwrap();
    let decoded = merchant_terminal::emv::decode(payload).unwrap();
    let request = decoded
        .payload()
        .reference
        .expect("a dynamic code names its request");
    let address = access.base_url.trim_start_matches("http://");
    let (status, body) = get(address, &format!("/v1/payment-requests/{request}")).await;
    assert_eq!(status, 200, "{body}");
    let request: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = ledger::PublicKey::from_base64url(request["payee"]["public_key"].as_str().unwrap())
        .unwrap();
    let verified = decoded.into_verified(&key).unwrap();
    assert_eq!(verified.unit.as_str(), "DEMO-EUR");
    assert_eq!(verified.merchant_name, "Ultramarinos Centro");
    assert_eq!(request["status"], "paid");
    stop_with_sigterm(&mut child, "serve --demo").await;
}
