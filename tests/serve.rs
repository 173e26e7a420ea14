//! `coledger serve` as a user runs it: a real process on port 0, health and readiness, the
//! demo data, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[tokio::test]
async fn serve_reports_health_and_readiness_and_stops_cleanly() {
    for (label, url, _dir) in databases().await {
        let (mut child, mut lines) =
            coledger(&["serve", "--database-url", &url, "--listen", "127.0.0.1:0"]);
        let banner = next_line(&mut lines).await.expect("serve printed nothing");
        let address = banner
            .strip_prefix("coledger listening on http://")
            .unwrap_or_else(|| panic!("{label}: unexpected banner {banner:?}"))
            .to_owned();

        let (status, body) = get(&address, "/healthz").await;
        assert_eq!(
            (status, body.contains("\"ok\"")),
            (200, true),
            "{label}: {body}"
        );
        let (status, body) = get(&address, "/readyz").await;
        assert_eq!(status, 200, "{label}: {body}");
        assert!(body.contains("\"ready\""), "{body}");
        let (status, _) = get(&address, "/no-such-page").await;
        assert_eq!(status, 404);

        stop_with_sigterm(&mut child, label).await;
    }
}

/// Starts `serve --demo` on `url` and reads what it prints up to its banner.
async fn serve_demo(url: &str) -> (tokio::process::Child, Vec<String>, String) {
    let (child, mut lines) = coledger(&[
        "serve",
        "--demo",
        "--database-url",
        url,
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut banner = String::new();
    let mut printed = Vec::new();
    while !banner.starts_with("coledger listening") {
        banner = next_line(&mut lines).await.expect("serve --demo stopped");
        printed.push(banner.clone());
    }
    let address = banner
        .trim_start_matches("coledger listening on http://")
        .to_owned();
    (child, printed, address)
}

/// The active tokens `coledger token list` shows, as (role, label).
fn active_tokens(url: &str) -> Vec<(String, String)> {
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["token", "list", "--database-url", url])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut active: Vec<(String, String)> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| line.contains(" active "))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (
                words[1].to_owned(),
                line.rsplit("  ").next().unwrap().to_owned(),
            )
        })
        .collect();
    active.sort();
    active
}

#[tokio::test]
async fn serve_with_demo_data_is_ready_with_a_months_entries() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (mut child, printed, address) = serve_demo(&url).await;
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("demo programme") && l.contains("PIN 2580")),
        "{printed:?}"
    );
    let (status, body) = get(&address, "/readyz").await;
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["accounts"], 1_068,
        "the demo town (1 issuer, 1,000 households, 20 merchants), the demo programme \
         (budget, clearing, fees, 40 households, 2 shops) and the pages' demo (the grocer's \
         euro account, a phone wallet)"
    );
    assert!(ready["entries"].as_u64().unwrap() > 5_000, "{ready}");
    stop_with_sigterm(&mut child, "sqlite").await;

    // Each start prints new demo tokens, shown once; the earlier ones are revoked, so
    // restarts do not leave valid tokens that nobody holds.
    let admin_token = |printed: &[String]| {
        printed
            .iter()
            .find_map(|l| l.strip_prefix("demo admin token (shown once): "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no admin token in {printed:?}"))
    };
    let first = admin_token(&printed);
    let (mut child, printed, address) = serve_demo(&url).await;
    assert_ne!(admin_token(&printed), first);
    let admin_only = |token: String| {
        let address = address.clone();
        async move {
            http(&address, "GET", "/v1/participants", Some(&token), &[], None)
                .await
                .status
        }
    };
    assert_eq!(
        admin_only(first).await,
        401,
        "the first start's token is revoked"
    );
    assert_eq!(admin_only(admin_token(&printed)).await, 200);
    stop_with_sigterm(&mut child, "sqlite").await;
    assert_eq!(
        active_tokens(&url),
        vec![
            ("admin".to_owned(), "demo admin".to_owned()),
            ("merchant".to_owned(), "demo terminal".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_bad_database_url_is_a_clear_error() {
    let (mut child, _lines) = coledger(&["serve", "--database-url", "mysql://localhost/x"]);
    let output = child.wait().await.unwrap();
    assert!(!output.success());
    // The message itself goes to stderr; check it with a captured run.
    let captured = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["serve", "--database-url", "mysql://localhost/x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&captured.stderr);
    assert!(
        stderr.contains("expected sqlite://path/to/file.db or postgres://"),
        "{stderr}"
    );
}

#[test]
fn a_commit_linger_beyond_a_second_is_refused_before_anything_starts() {
    let captured = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["serve", "--commit-linger-ms", "5000"])
        .env_remove("COLEDGER_COMMIT_LINGER_MS")
        .output()
        .unwrap();
    assert!(!captured.status.success());
    let stderr = String::from_utf8_lossy(&captured.stderr);
    assert!(
        stderr.contains("--commit-linger-ms") && stderr.contains("5000 is not in 0..=1000"),
        "{stderr}"
    );
}

#[test]
fn verifier_threads_outside_1_to_16_are_refused_before_anything_starts() {
    for threads in ["0", "17"] {
        let captured = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args(["serve", "--verifier-threads", threads])
            .env_remove("COLEDGER_VERIFIER_THREADS")
            .output()
            .unwrap();
        assert!(!captured.status.success());
        let stderr = String::from_utf8_lossy(&captured.stderr);
        assert!(
            stderr.contains("--verifier-threads")
                && stderr.contains(&format!("{threads} is not in 1..=16")),
            "{stderr}"
        );
    }
}

#[test]
fn an_unknown_start_check_is_refused_before_anything_starts() {
    let captured = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["serve", "--start-check", "none"])
        .env_remove("COLEDGER_START_CHECK")
        .output()
        .unwrap();
    assert!(!captured.status.success());
    let stderr = String::from_utf8_lossy(&captured.stderr);
    assert!(
        stderr.contains("invalid value 'none' for '--start-check")
            && stderr.contains("[possible values: signatures, chain]"),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_create_refuses_unknown_roles_and_unscoped_merchant_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args(["token", "create", "--database-url", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let unknown = run(&["--role", "mayor"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown role \"mayor\""));
    let unscoped = run(&["--role", "merchant"]);
    assert!(!unscoped.status.success());
    assert!(String::from_utf8_lossy(&unscoped.stderr).contains("give --participant"));
    let nobody = run(&[
        "--role",
        "merchant",
        "--participant",
        "0192f3a0-aaaa-7000-8000-000000000001",
    ]);
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no participant"));
    let admin = run(&["--role", "admin"]);
    assert!(admin.status.success());
    assert!(String::from_utf8_lossy(&admin.stdout).starts_with("colt_"));
}

#[test]
fn token_list_and_revoke_open_an_existing_ledger_and_never_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("ledgr.db");
    let url = format!("sqlite://{}", typo.display());
    for args in [
        vec!["list"],
        vec!["revoke", "0192f3a0aaaa70008000000000000001"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .arg("token")
            .args(&args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("there is no database file at") && err.contains("ledgr.db"),
            "{args:?}: {err}"
        );
        assert!(
            !typo.exists(),
            "{args:?} made a database at a mistyped path"
        );
    }
}
