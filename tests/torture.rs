//! The reliability suite at CI scale: `coledger torture bank`, `crash`, `failover`, `promote`
//! and `soak` run as a user runs them, on SQLite and PostgreSQL, and must print PASS with
//! nothing lost, duplicated or created. The full-scale runs and their figures are in
//! RELIABILITY.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;

async fn torture(mode: &str, url: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "torture",
        mode,
        "--database-url",
        url,
        "--accounts",
        "6",
        "--clients",
        "8",
    ];
    args.extend_from_slice(extra);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "torture {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "lost: 0, duplicated: 0, created: 0, balance mismatches: 0, API mismatches: 0"
        ),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("PASS"), "{stdout}");
    stdout
}

#[tokio::test]
async fn the_bank_workload_loses_duplicates_and_creates_nothing() {
    for (label, url, _dir) in databases().await {
        let report = torture("bank", &url, &["--duration", "3"]).await;
        eprintln!("{label}:\n{report}");
    }
}

#[tokio::test]
async fn killing_the_service_mid_load_loses_and_duplicates_nothing() {
    for (label, url, _dir) in databases().await {
        let report = torture("crash", &url, &["--duration", "6", "--kills", "4"]).await;
        assert!(
            report.contains("faults: 4 SIGKILLs while serving, 1 more during start-up recovery"),
            "{report}"
        );
        eprintln!("{label}:\n{report}");
    }
}

#[tokio::test]
async fn a_standby_takes_over_when_the_writer_dies() {
    for (label, url, _dir) in databases().await {
        let report = torture("failover", &url, &["--duration", "6", "--kills", "3"]).await;
        assert!(
            report.contains("faults: 3 SIGKILLs of the writer, 3 takeovers by the standby"),
            "{report}"
        );
        eprintln!("{label}:\n{report}");
    }
}

/// Whether the PostgreSQL server binaries `torture promote` needs are installed (it looks in
/// the same place).
fn postgres_server_binaries() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| {
            ["initdb", "pg_ctl", "pg_basebackup"]
                .iter()
                .all(|tool| version.path().join("bin").join(tool).is_file())
        })
}

#[tokio::test]
async fn promoting_the_postgres_standby_after_killing_the_primary_loses_nothing() {
    if !postgres_server_binaries() {
        skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             the PostgreSQL promotion test is SKIPPED",
        );
        return;
    }
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args([
            "torture",
            "promote",
            "--duration",
            "6",
            "--kills",
            "1",
            "--accounts",
            "6",
            "--clients",
            "8",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("COLEDGER_TORTURE_DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "torture promote failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "lost: 0, duplicated: 0, created: 0, balance mismatches: 0, API mismatches: 0, anomalies: 0"
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("faults: 1 SIGKILLs of the PostgreSQL primary, 1 promotions of its standby"),
        "{stdout}"
    );
    // Writes resumed on the promoted server, and it was timed.
    assert!(
        stdout.contains("first write acknowledged") && !stdout.contains("acknowledged never"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("PASS"), "{stdout}");
    eprintln!("{stdout}(took {:.1} s)", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn promote_refuses_a_database_url_because_it_starts_its_own_servers() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(["torture", "promote", "--database-url", "postgres://u@h/db"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("torture promote starts its own PostgreSQL primary and standby"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_short_soak_answers_everything_with_stable_latency() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args([
            "torture",
            "soak",
            "--duration",
            "30",
            "--rate",
            "200",
            "--accounts",
            "20",
            "--clients",
            "8",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("errors 0"), "{stdout}");
    assert!(stdout.trim_end().ends_with("PASS"), "{stdout}");
}
