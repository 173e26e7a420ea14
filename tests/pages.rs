//! The pages' routes without a browser: what is served, with which headers, and the errors
//! a mistyped link gets. The pages themselves run in Chromium in `tests/browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[tokio::test]
async fn pages_assets_and_qr_images_are_served_with_safe_headers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pages.db").display());
    let (mut child, address) = serve(&url, &[]).await;

    for (path, script) in [
        ("/terminal", "/assets/terminal.js"),
        ("/wallet", "/assets/wallet.js"),
        ("/transparency", "/assets/transparency.js"),
        (
            "/pay/0192f3a0-1111-7000-8000-000000000001",
            "/assets/wallet.js",
        ),
    ] {
        let page = http(&address, "GET", path, None, &[], None).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(page.body.contains(script), "{path} loads {script}");
        let policy = page.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
    }

    let script = http(&address, "GET", "/assets/emv.js", None, &[], None).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(script.header("x-content-type-options"), Some("nosniff"));
    let currencies = http(&address, "GET", "/assets/currencies.json", None, &[], None).await;
    assert_eq!(currencies.json()["EUR"], 978);
    assert_eq!(currencies.json()["JOD"], 400);

    let svg = http(
        &address,
        "GET",
        "/qr.svg?data=hello%20world",
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.body.starts_with("<svg"), "{}", svg.body);

    // Mistakes get problem+json with a reason, like the API's.
    for (path, status, kind) in [
        ("/assets/nothing.js", 404, "/problems/not-found"),
        ("/pay/not-a-request", 404, "/problems/not-found"),
        ("/qr.svg", 422, "/problems/validation-failed"),
        ("/qr.svg?data=", 422, "/problems/validation-failed"),
    ] {
        let reply = http(&address, "GET", path, None, &[], None).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert_eq!(reply.problem_type(), kind, "{path}");
    }
    let long = format!("/qr.svg?data={}", "A".repeat(1025));
    let reply = http(&address, "GET", &long, None, &[], None).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("1 to 1024")
    );
    // Within the character limit but beyond what a QR code holds: 1,000 four-byte characters.
    let huge = format!("/qr.svg?data={}", "%F0%9F%8D%9E".repeat(1000));
    let reply = http(&address, "GET", &huge, None, &[], None).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.problem_type(), "/problems/qr-too-long");

    stop_with_sigterm(&mut child, "serve").await;
}

#[tokio::test]
async fn me_names_a_merchant_tokens_shop_and_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("me.db").display());
    let admin = token_cli(&url, "admin", None).await;
    let (mut child, address) = serve(&url, &[]).await;
    let call = |method: &'static str, path: String, token: Option<String>, body: Option<String>| {
        let address = address.clone();
        async move {
            http(
                &address,
                method,
                &path,
                token.as_deref(),
                &[],
                body.as_deref(),
            )
            .await
        }
    };
    let unit = r#"{"code":"ME-EUR","name":"Me euro","scale":2,"kind":"voucher","peg":"EUR"}"#;
    let created = call(
        "POST",
        "/v1/units".into(),
        Some(admin.clone()),
        Some(unit.into()),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let shop = call(
        "POST",
        "/v1/participants".into(),
        Some(admin.clone()),
        Some(
            r#"{"kind":"organisation","name":"Horno","roles":["merchant"],"category_code":"5462"}"#
                .into(),
        ),
    )
    .await;
    assert_eq!(shop.status, 201, "{}", shop.body);
    let shop_id = shop.json()["id"].as_str().unwrap().to_owned();
    let account = call(
        "POST",
        "/v1/accounts".into(),
        Some(admin.clone()),
        Some(format!(
            r#"{{"participant_id":"{shop_id}","unit":"ME-EUR","kind":"merchant"}}"#
        )),
    )
    .await;
    assert_eq!(account.status, 201, "{}", account.body);
    let merchant = token_cli(&url, "merchant", Some(&shop_id)).await;

    let me = call("GET", "/v1/me".into(), Some(merchant), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["kind"], "operator");
    assert_eq!(me["role"], "merchant");
    assert_eq!(me["participant_id"], shop_id.as_str());
    assert_eq!(me["accounts"][0]["id"], account.json()["id"]);
    assert_eq!(me["accounts"][0]["unit"], "ME-EUR");

    let me = call("GET", "/v1/me".into(), Some(admin), None).await;
    assert_eq!(me.json()["participant_id"], serde_json::Value::Null);
    assert_eq!(me.json()["accounts"], serde_json::json!([]));
    let anonymous = call("GET", "/v1/me".into(), None, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.problem_type(), "/problems/unauthenticated");

    stop_with_sigterm(&mut child, "serve").await;
}
