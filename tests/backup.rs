//! `coledger backup` while the service runs, and `coledger restore` into a fresh place: the
//! restored ledger verifies (chain, invariants) and holds the same entries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use sqlx::Connection;
use support::*;

async fn run(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `coledger backup` of `url` to `to`.
async fn backup(url: &str, to: &str) -> (bool, String, String) {
    run(&["backup", "--database-url", url, "--to", to]).await
}

/// `coledger restore` of `from` into `url`.
async fn restore(url: &str, from: &str) -> (bool, String, String) {
    run(&["restore", "--database-url", url, "--from", from]).await
}

/// A ledger with some history: `torture bank` for `seconds` with `clients`.
async fn some_history(url: &str, seconds: &str, clients: &str) {
    let (ok, out, err) = run(&[
        "torture",
        "bank",
        "--database-url",
        url,
        "--duration",
        seconds,
        "--clients",
        clients,
    ])
    .await;
    assert!(ok, "{out}{err}");
}

/// "… N entries …" from a report line.
fn entries(report: &str) -> u64 {
    report
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in {report:?}"))
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_and_verifies() {
    for (label, url, _dir) in databases().await {
        // A ledger with some history.
        some_history(&url, "2", "4").await;
        let (_server, _address) = serve(&url, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.backup");
        let file = file.to_str().unwrap();
        let (ok, backed_up, err) = backup(&url, file).await;
        assert!(ok, "{label}: {backed_up}{err}");
        let (ok, _, err) = backup(&url, file).await;
        assert!(!ok && err.contains("never overwrite"), "{label}: {err}");

        let target = if label == "sqlite" {
            format!("sqlite://{}", dir.path().join("restored.db").display())
        } else {
            let admin = std::env::var("COLEDGER_TEST_POSTGRES_URL").unwrap();
            wallet_api::db::scratch::create_postgres_database(&admin, "coledger_restore")
                .await
                .unwrap()
        };
        if label == "postgres" {
            // A dump cut short fails to restore and leaves the database empty, so the retry
            // with the whole dump is not refused as "not empty".
            let bytes = std::fs::read(file).unwrap();
            let cut = dir.path().join("cut.backup");
            std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
            let (ok, out, err) = restore(&target, cut.to_str().unwrap()).await;
            assert!(!ok, "a cut dump restored: {out}");
            assert!(
                err.contains("did not restore") && err.contains("is left empty"),
                "{err}"
            );
            let mut conn = sqlx::PgConnection::connect(&target).await.unwrap();
            let tables: i64 = sqlx::query_scalar(
                "select count(*) from information_schema.tables where table_schema = 'public'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(tables, 0, "a failed restore left tables behind");
        }
        let (ok, restored, err) = restore(&target, file).await;
        assert!(ok, "{label}: {restored}{err}");
        assert!(
            restored.contains("hash chain and invariants verified"),
            "{restored}"
        );
        assert!(entries(&restored) > 10, "{restored}");
        assert!(backed_up.contains("verified"), "{label}: {backed_up}");
        assert_eq!(
            entries(&restored),
            entries(&backed_up),
            "{label}: {backed_up} / {restored}"
        );
        // Restoring over a ledger is refused.
        let (ok, _, err) = restore(&target, file).await;
        assert!(!ok, "{label}: restoring twice must be refused: {err}");
    }
}

/// On PostgreSQL `backup` verifies the dump in a scratch database, which needs CREATEDB. A
/// role that can read the ledger but not create databases gets the dump and a clear failure.
#[tokio::test]
async fn a_postgres_backup_that_cannot_be_verified_fails_and_says_why() {
    for (label, url, _dir) in databases().await {
        if label == "sqlite" {
            continue;
        }
        let db = wallet_api::Database::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        db.close().await;
        let role = format!("coledger_reader_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        for sql in [
            format!("create role {role} login nocreatedb"),
            format!("grant pg_read_all_data to {role}"),
        ] {
            sqlx::Executor::execute(&mut admin, sql.as_str())
                .await
                .unwrap();
        }
        let reader_url = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
        assert_ne!(
            reader_url, url,
            "the test URL names no postgres user: {url}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.backup");
        let (ok, out, err) = backup(&reader_url, file.to_str().unwrap()).await;
        assert!(!ok, "a backup that was not verified must fail: {out}");
        assert!(
            err.contains("not a verified backup") && err.contains("CREATEDB"),
            "{err}"
        );
        assert!(file.is_file(), "the unverified dump is kept for inspection");
    }
}

/// Operator slips that used to carry on against a new empty ledger, or write into a live one.
#[tokio::test]
async fn backups_and_the_demo_refuse_the_wrong_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    some_history(&url, "1", "2").await;

    // A mistyped path: no backup, and no empty database made at the typo.
    let typo = url.replace("ledger.db", "ledgr.db");
    let file = dir.path().join("nightly.db");
    let file = file.to_str().unwrap();
    let (ok, _, err) = backup(&typo, file).await;
    assert!(!ok && err.contains("no database file"), "{err}");
    assert!(!dir.path().join("ledgr.db").exists());
    assert!(!std::path::Path::new(file).exists());
    // A path without a scheme is not taken for a PostgreSQL server.
    let bare = dir.path().join("ledger.db");
    let (ok, _, err) = backup(bare.to_str().unwrap(), file).await;
    assert!(!ok && err.contains("not a database URL"), "{err}");

    // A file that is not a ledger does not restore, and leaves nothing in the way of a
    // retry with the right file.
    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "not a database").unwrap();
    let restored = dir.path().join("restored.db");
    let restored_url = format!("sqlite://{}", restored.display());
    let (ok, _, err) = restore(&restored_url, not_a_backup.to_str().unwrap()).await;
    assert!(
        !ok && err.contains("does not restore to a verified ledger"),
        "{err}"
    );
    assert!(!restored.exists());
    let good = dir.path().join("good.db");
    let (ok, _, err) = backup(&url, good.to_str().unwrap()).await;
    assert!(ok, "{err}");
    let (ok, out, err) = restore(&restored_url, good.to_str().unwrap()).await;
    assert!(ok && out.contains("verified"), "{out}{err}");

    // The demo's made-up month of payments never goes into a ledger that is not the demo's.
    let (ok, out, err) = run(&["demo", "--database-url", &url]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("loads only into an empty database"), "{err}");
}
