//! Helpers for the end-to-end tests: fresh databases and the real `coledger` binary.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Says loudly that a test is skipped for want of a tool; under CI (CI=true) a skip fails.
pub fn skip(message: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message}; CI=true forbids skipping"
    );
    eprintln!("\n!!!!!!!! {message} !!!!!!!!\n");
}

/// A fresh database URL per backend: SQLite always, PostgreSQL when
/// COLEDGER_TEST_POSTGRES_URL is set (a loud skip otherwise, a failure under CI).
pub async fn databases() -> Vec<(&'static str, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut all = vec![("sqlite", sqlite, Some(dir))];
    match std::env::var("COLEDGER_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let url = wallet_api::db::scratch::create_postgres_database(&admin, "coledger_e2e")
                .await
                .unwrap();
            all.push(("postgres", url, None));
        }
        _ => skip("COLEDGER_TEST_POSTGRES_URL is not set: PostgreSQL end-to-end tests SKIPPED"),
    }
    all
}

/// Starts `coledger ARGS` with stdout piped (stderr passes through, for diagnosis).
pub fn coledger(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The next line of output, failing the test after [`PATIENCE`].
pub async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the process went quiet")
        .unwrap()
}

/// A plain HTTP/1.1 GET: (status, body).
pub async fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
