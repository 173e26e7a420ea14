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

/// An HTTP response, as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The problem type of an error response.
    pub fn problem_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").to_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection: `extra` are (name, value) headers; a body is
/// sent as JSON.
pub async fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        // JSON unless the caller names another type.
        if !extra
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut raw))
        .await
        .expect("no response")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut head_lines = head.lines();
    let status = head_lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An open server-sent-events stream.
pub struct Events {
    stream: tokio::net::TcpStream,
    seen: String,
}

impl Events {
    /// Opens `path` as an event stream; panics unless the server answers 200.
    pub async fn open(address: &str, path: &str, token: Option<&str>) -> Events {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n");
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut events = Events {
            stream,
            seen: String::new(),
        };
        events.read_until(|seen| seen.contains("\r\n\r\n")).await;
        assert!(
            events.seen.starts_with("HTTP/1.1 200"),
            "event stream refused: {}",
            events.seen
        );
        events
    }

    async fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        let mut buffer = [0u8; 4096];
        while !done(&self.seen) {
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut buffer))
                .await
                .expect("no event in time")
                .unwrap();
            assert!(n > 0, "the event stream closed; got so far: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }

    /// Waits for the next `event: NAME` and returns its data as JSON.
    pub async fn next(&mut self, name: &str) -> serde_json::Value {
        let marker = format!("event: {name}\ndata: ");
        self.read_until(|seen| {
            seen.find(&marker)
                .is_some_and(|at| seen[at + marker.len()..].contains('\n'))
        })
        .await;
        let at = self.seen.find(&marker).unwrap();
        let rest = self.seen[at + marker.len()..].to_owned();
        let (data, tail) = rest.split_once('\n').unwrap();
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        self.seen = tail.to_owned();
        data
    }
}

/// Creates an operator token with the CLI, as an operator would.
pub async fn token_cli(url: &str, role: &str, participant: Option<&str>) -> String {
    let mut args = vec![
        "token".to_owned(),
        "create".to_owned(),
        "--database-url".to_owned(),
        url.to_owned(),
        "--role".to_owned(),
        role.to_owned(),
        "--label".to_owned(),
        format!("e2e {role}"),
    ];
    if let Some(p) = participant {
        args.push("--participant".to_owned());
        args.push(p.to_owned());
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Starts `coledger serve` on port 0 against `url`; returns the process and its address.
pub async fn serve(url: &str, extra: &[&str]) -> (Child, String) {
    let mut args = vec!["serve", "--database-url", url, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (child, mut lines) = coledger(&args);
    let mut banner = String::new();
    while !banner.starts_with("coledger listening") {
        banner = next_line(&mut lines).await.expect("serve stopped");
    }
    let address = banner
        .trim_start_matches("coledger listening on http://")
        .to_owned();
    (child, address)
}

/// Sends SIGTERM and waits: the process must exit 0 (a clean, draining stop).
pub async fn stop_with_sigterm(child: &mut Child, label: &str) {
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "{label}: serve exited with {status} on SIGTERM"
    );
}
