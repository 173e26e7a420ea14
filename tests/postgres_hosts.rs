//! Several PostgreSQL servers in one URL (`postgres://user@h1:p1,h2:p2/db`): a malformed list
//! is refused with a message naming the server at fault, and the service uses the first
//! server that accepts writes, skipping one that cannot be reached. Skipping a standby in
//! recovery and following a promotion are shown by `coledger torture promote`
//! (tests/torture.rs), which runs a real primary and standby.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;
use wallet_api::Database;
use wallet_api::db::DbError;

#[tokio::test]
async fn serve_refuses_a_malformed_host_list_and_says_which_server_is_wrong() {
    let cases = [
        (
            "postgres://coledger:hunter2@db-a:5432,,db-b:5432/ledger",
            "server 2 of \"db-a:5432,,db-b:5432\": empty (two commas in a row, or a comma at an end)",
        ),
        (
            "postgres://coledger@db-a:5432,db-b:54x2/ledger",
            "port \"54x2\" is not a number from 1 to 65535",
        ),
        (
            "postgres://coledger@db-a,db-b/ledger?target_session_attrs=read-only",
            "target_session_attrs=read-only is not possible",
        ),
    ];
    for (url, expected) in cases {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{url} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("bad database URL"), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        // The password never appears in the message.
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// `url` with `server` (host:port) put in front of its host.
fn with_server_first(url: &str, server: &str) -> String {
    let authority = url.find("://").unwrap() + 3;
    let host = url[authority..]
        .find('@')
        .map_or(authority, |at| authority + at + 1);
    format!("{}{server},{}", &url[..host], &url[host..])
}

/// A loopback port nobody listens on (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn an_unreachable_first_server_is_skipped_for_the_next_one() {
    let Some((_, url, _)) = databases()
        .await
        .into_iter()
        .find(|(label, _, _)| *label == "postgres")
    else {
        return; // skipped loudly (a failure under CI) by databases()
    };
    let dead = format!("127.0.0.1:{}", closed_port());
    let listed = with_server_first(&url, &dead);
    let db = Database::connect(&listed).await.unwrap();
    db.migrate().await.unwrap();
    db.ping().await.unwrap();
    // The writer too looks for the server that accepts writes, on every (re)open.
    let mut writer = db.writer().await.unwrap();
    writer.load(0).await.unwrap();
    drop(writer);
    db.close().await;

    // With no server left, the error names each one and counts as "unavailable" (a 503 to
    // clients while a standby is being promoted), not as a bad request.
    let also_dead = format!("127.0.0.1:{}", closed_port());
    let none = with_server_first(&format!("postgres://postgres@{also_dead}/ledger"), &dead);
    let error = Database::connect(&none).await.unwrap_err();
    assert!(matches!(error, DbError::NoPrimary(_)), "{error:?}");
    assert!(error.is_unavailable());
    let message = error.to_string();
    assert!(
        message.starts_with("no PostgreSQL server that accepts writes:")
            && message.contains(&dead)
            && message.contains(&also_dead),
        "{message}"
    );
}
