//! `coledger bench ledger` at toy size, so the benchmark cannot rot between the runs that
//! record BENCHMARKS.md. It checks that every measurement ran and printed, never a speed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::process::Command;

#[test]
fn bench_ledger_runs_every_measurement_at_toy_size() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coledger"));
    command.args([
        "bench",
        "ledger",
        "--accounts",
        "200",
        "--payments",
        "300",
        "--naive-payments",
        "30",
        "--book-ops",
        "2000",
        "--book-window",
        "500",
        "--submitters",
        "1,8",
        // The untimed warm-up before each committer run must commit too.
        "--warm-payments",
        "100",
    ]);
    match std::env::var("COLEDGER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            command.args(["--postgres-url", &url]);
        }
        _ => {
            command.env_remove("COLEDGER_BENCH_POSTGRES_URL");
        }
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Book apply"), "{stdout}");
    assert!(stdout.contains("from empty"), "{stdout}");
    assert!(stdout.contains("steady"), "{stdout}");
    let pause_ms: f64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("longest pause to forget between two batches of 1000: ")
        })
        .and_then(|rest| rest.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("no forgetting pause:\n{stdout}"))
        .parse()
        .unwrap();
    assert!(pause_ms >= 0.0, "{stdout}");
    assert!(stdout.contains("journal SHA-256 chaining"), "{stdout}");
    assert!(
        stdout.contains("100 more payments, committed before"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("sqlite ") || l.starts_with("postgres "))
        .collect();
    let databases = if std::env::var("COLEDGER_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        2
    } else {
        1
    };
    assert_eq!(
        rows.len(),
        2 * databases,
        "one row per database and submitter count:\n{stdout}"
    );
    for row in rows {
        let committed: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(committed > 0.0, "{row}");
    }
}

/// `coledger bench api` at toy size over real loopback HTTP: it must print a payments/s figure
/// and have every payment answered 201 (the command fails otherwise).
#[test]
fn bench_api_runs_at_toy_size_with_nothing_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args([
            "bench",
            "api",
            "--accounts",
            "200",
            "--payments",
            "500",
            "--connections",
            "8",
            "--verifier-threads",
            "1",
            "--commit-linger-ms",
            "2",
        ])
        .env_remove("COLEDGER_BENCH_POSTGRES_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("payments/s"), "{stdout}");
    assert!(stdout.contains("commit linger: 2 ms"), "{stdout}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("sqlite "))
        .unwrap_or_else(|| panic!("no sqlite row:\n{stdout}"))
        .split_whitespace()
        .collect();
    let (connections, rate, accepted, refused) = (row[1], row[2], row[6], row[7]);
    assert_eq!(connections, "8", "{stdout}");
    assert!(rate.parse::<f64>().unwrap() > 0.0, "{stdout}");
    assert_eq!(
        accepted, "500",
        "every payment is sent and accepted:\n{stdout}"
    );
    assert_eq!(refused, "0", "{stdout}");
    // The writes to storage, counted by how long each took: at least one, and all counted.
    let writes = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("writes to storage by time ("))
        .unwrap_or_else(|| panic!("no write times:\n{stdout}"));
    let (all, buckets) = writes.split_once(" in all): ").unwrap();
    let all: u64 = all.parse().unwrap();
    assert!(all > 0, "{stdout}");
    let counted: u64 = buckets
        .split(", ")
        .map(|bucket| bucket.rsplit(": ").next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, all, "{stdout}");
}

#[test]
fn bench_disburse_simulate_and_settle_run_at_toy_size() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let disburse = run(&["bench", "disburse", "--households", "300", "--repeat", "1"]);
    assert!(disburse.contains("enrolment (CSV parse"), "{disburse}");
    assert!(disburse.contains("disbursement run"), "{disburse}");
    let simulate = run(&[
        "bench",
        "simulate",
        "--events",
        "5000",
        "--households",
        "200",
        "--merchants",
        "10",
        "--days",
        "30",
        "--sweep-points",
        "2",
    ]);
    for line in ["agent-based run:", "measuring a stream:", "sweep:"] {
        assert!(simulate.contains(line), "{line}: {simulate}");
    }
    let settle = run(&[
        "bench",
        "settle",
        "--sales",
        "5",
        "--background-connections",
        "4",
        "--background-payments",
        "2000",
    ]);
    // One row idle and one under background load, each with figures.
    let rows: Vec<&str> = settle.lines().filter(|l| l.starts_with("sqlite")).collect();
    assert_eq!(rows.len(), 2, "{settle}");
    assert!(rows[1].split_whitespace().nth(1) == Some("4"), "{settle}");
}
