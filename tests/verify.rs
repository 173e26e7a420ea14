//! The auditor's path end to end: `coledger demo` writes a month of history, `coledger export
//! journal` writes it out while the service runs, `coledger verify` accepts the file, and
//! refuses it, naming the line, once one amount in it is changed or its tail is cut off. A
//! checker we did not write (`tests/python/check_journal.py`, from docs/wire-format.md alone)
//! agrees on both files. Exports taken while payments commit are consistent snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;

async fn run(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A server secret file in `dir` (a fixed test secret); its path.
fn secret_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{}\n", "0123456789abcdef".repeat(4))).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `tests/python/check_journal.py FILE`: (exit status ok, what it printed); None (a loud
/// skip) without python3, PyNaCl and rfc8785.
async fn python_check(file: &str) -> Option<(bool, String)> {
    python_check_with(&[file]).await
}

/// `tests/python/check_journal.py ARGS…`, as [`python_check`].
async fn python_check_with(args: &[&str]) -> Option<(bool, String)> {
    let ready = tokio::process::Command::new("python3")
        .args(["-c", "import nacl, rfc8785"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !ready {
        skip("SKIPPED: python3 with PyNaCl and rfc8785 is missing (scripts/test installs them)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_journal.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Some((output.status.success(), printed))
}

/// Adds one to the first posting amount inside the entry on `line` (1-based).
fn change_an_amount(text: &str, line: usize) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = &mut lines[line - 1];
    let marker = "\\\"amount\\\":";
    let start = target.find(marker).expect("an amount") + marker.len();
    let digits = target[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    let amount: u64 = target[start..start + digits].parse().unwrap();
    target.replace_range(start..start + digits, &(amount + 1).to_string());
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn an_exported_journal_verifies_and_a_changed_amount_is_caught_on_its_line() {
    for (label, url, _dir) in databases().await {
        let (ok, out, err) = run(&["demo", "--database-url", &url]).await;
        assert!(ok, "{label}: {out}{err}");
        // Exported alongside the running service: a read-only snapshot needs no lease.
        let (mut server, _address) = serve(&url, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal.jsonl");
        let file = file.to_str().unwrap();
        let (ok, exported, err) =
            run(&["export", "journal", "--database-url", &url, "--out", file]).await;
        assert!(ok, "{label}: {exported}{err}");
        stop_with_sigterm(&mut server, label).await;
        let entries = exported_entries(&exported);
        assert!(entries > 1_000, "{label}: {exported}");

        let (ok, verdict, err) = run(&["verify", file]).await;
        assert!(ok, "{label}: {verdict}{err}");
        assert!(verdict.contains("chain intact: yes"), "{verdict}");
        assert!(
            verdict.contains(&format!("entries: {entries}\n")),
            "{verdict}"
        );
        assert!(
            verdict.contains("DEMO-EUR (voucher, 2 decimals)"),
            "{verdict}"
        );
        assert!(verdict.contains("balances sum to 0.00"), "{verdict}");
        assert!(verdict.contains("issue "), "{verdict}");
        if let Some((ok, printed)) = python_check(file).await {
            assert!(
                ok,
                "{label}: the Python checker refused the export: {printed}"
            );
            assert!(printed.contains(&format!("{entries} entries")), "{printed}");
        }

        let text = std::fs::read_to_string(file).unwrap();
        let tampered = dir.path().join("tampered.jsonl");
        std::fs::write(&tampered, change_an_amount(&text, 50)).unwrap();
        let (ok, verdict, err) = run(&["verify", tampered.to_str().unwrap()]).await;
        assert!(!ok, "{label}: a changed amount verified: {verdict}");
        assert!(verdict.contains("verdict: FAILED"), "{verdict}");
        assert!(
            err.contains("tampered.jsonl line 50: chain break in unit DEMO-EUR"),
            "{label}: {err}"
        );
        if let Some((ok, printed)) = python_check(tampered.to_str().unwrap()).await {
            assert!(!ok, "{label}: the Python checker accepted a changed amount");
            assert!(printed.starts_with("line 50: chain break"), "{printed}");
        }

        let cut: String = text.lines().take(100).map(|l| format!("{l}\n")).collect();
        std::fs::write(&tampered, cut).unwrap();
        let (ok, _, err) = run(&["verify", tampered.to_str().unwrap()]).await;
        assert!(!ok, "{label}: a truncated file verified");
        assert!(
            err.contains(&format!(
                "line 101: the header promises {entries} entries but the file holds 99"
            )),
            "{label}: {err}"
        );
    }
}

/// Heads kept from `GET /v1/journal/heads` catch what an export alone cannot: the last entry
/// cut out of the database (triggers dropped, rows deleted) exports and verifies cleanly, but
/// not against the heads kept before.
#[tokio::test]
async fn heads_kept_from_the_service_catch_entries_cut_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ledger.db");
    let url = format!("sqlite://{}", db_path.display());
    let (ok, out, err) = run(&["demo", "--database-url", &url]).await;
    assert!(ok, "{out}{err}");
    let (mut server, address) = serve(&url, &[]).await;
    let heads = http(&address, "GET", "/v1/journal/heads", None, &[], None).await;
    assert_eq!(heads.status, 200, "{}", heads.body);
    let demo_head = heads.json()["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["unit"] == "DEMO-EUR")
        .cloned()
        .unwrap();
    assert!(demo_head["seq"].as_u64().unwrap() > 1_000, "{demo_head}");
    stop_with_sigterm(&mut server, "sqlite").await;
    let kept = dir.path().join("heads.json");
    // Saved as a person might, pretty-printed.
    std::fs::write(&kept, serde_json::to_string_pretty(&heads.json()).unwrap()).unwrap();
    let kept = kept.to_str().unwrap();

    let export = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (before, after) = (export("before.jsonl"), export("after.jsonl"));
    let (ok, out, err) = run(&[
        "export",
        "journal",
        "--database-url",
        &url,
        "--out",
        &before,
    ])
    .await;
    assert!(ok, "{out}{err}");
    let (ok, verdict, err) = run(&["verify", &before, "--expect-heads", kept]).await;
    assert!(ok, "{verdict}{err}");
    assert!(verdict.contains("holding to "), "{verdict}");

    // Someone with the database file removes the last entry, whole.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in [
        "drop trigger entry_no_delete",
        "drop trigger posting_no_delete",
        "drop trigger journal_no_delete",
        "delete from journal where entry_position = (select max(position) from entry)",
        "delete from posting where entry_position = (select max(position) from entry)",
        "delete from entry where position = (select max(position) from entry)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (ok, out, err) = run(&["export", "journal", "--database-url", &url, "--out", &after]).await;
    assert!(ok, "{out}{err}");
    let (ok, verdict, err) = run(&["verify", &after]).await;
    assert!(ok, "on its own the cut journal verifies: {verdict}{err}");
    for kept_earlier in [kept, before.as_str()] {
        let (ok, verdict, err) = run(&["verify", &after, "--expect-heads", kept_earlier]).await;
        assert!(!ok, "{verdict}");
        assert!(
            err.contains("unit DEMO-EUR: a head recorded earlier is at sequence")
                && err.contains("entries were cut off"),
            "{err}"
        );
    }
    let (ok, _, err) = run(&[
        "verify",
        &after,
        "--expect-heads",
        &after.replace("after", "nope"),
    ])
    .await;
    assert!(!ok && err.contains("opening"), "{err}");
}

/// The service signs a checkpoint of each unit as it starts (and on an auditor's request);
/// anyone can read them, and `coledger verify --checkpoints` holds an export to them: the
/// honest export passes, a checkpoint altered after signing or signed by another key is
/// refused, and one a forger signed with totals the journal does not add up to is caught. On
/// both databases.
#[tokio::test]
async fn signed_checkpoints_hold_an_export_to_the_totals_the_service_published() {
    for (label, url, _keep) in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let secret = &secret_file(&dir);
        let (ok, out, err) = run(&["demo", "--database-url", &url]).await;
        assert!(ok, "{label}: {out}{err}");
        let (mut server, address) = serve(&url, &["--secret-file", secret]).await;

        let heads = http(&address, "GET", "/v1/journal/heads", None, &[], None).await;
        let demo_head = heads.json()["heads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["unit"] == "DEMO-EUR")
            .cloned()
            .unwrap();
        // Signed as the service started: the demo's chain, head and all.
        let latest = http(&address, "GET", "/v1/journal/checkpoints", None, &[], None).await;
        assert_eq!(latest.status, 200, "{label}: {}", latest.body);
        let latest = latest.json();
        let key = latest["key"].as_str().unwrap().to_owned();
        let demo = latest["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["unit"] == "DEMO-EUR")
            .cloned()
            .unwrap_or_else(|| panic!("{label}: no DEMO-EUR checkpoint in {latest}"));
        assert_eq!(demo["seq"], demo_head["seq"], "{label}");
        assert_eq!(demo["hash"], demo_head["hash"], "{label}");
        assert_eq!(demo["key"], key.as_str(), "{label}");
        let signed = ledger::journal::checkpoint::SignedCheckpoint::from_json(&demo).unwrap();
        signed.verify().unwrap();
        let (issues, issued) = signed.checkpoint.totals.of_kind(ledger::EntryKind::Issue);
        assert!(issues > 0 && issued > 0, "{label}: {demo}");

        // Signing on request is for admins and auditors; nothing moved, so nothing new.
        let post = |token: Option<String>| {
            let address = address.clone();
            async move {
                http(
                    &address,
                    "POST",
                    "/v1/journal/checkpoints",
                    token.as_deref(),
                    &[],
                    Some("{}"),
                )
                .await
            }
        };
        assert_eq!(post(None).await.status, 401, "{label}");
        let researcher = token_cli(&url, "researcher", None).await;
        let refused = post(Some(researcher)).await;
        assert_eq!(refused.status, 403, "{label}: {}", refused.body);
        let auditor = token_cli(&url, "auditor", None).await;
        let again = post(Some(auditor)).await;
        assert_eq!(again.status, 200, "{label}: {}", again.body);
        assert_eq!(again.json()["signed"], 0, "{label}: {}", again.body);
        assert_eq!(
            again.json()["checkpoints"],
            latest["checkpoints"],
            "{label}"
        );

        // One unit's history, oldest first (paging is tested in tests/wallet_api.rs).
        let page = http(
            &address,
            "GET",
            "/v1/journal/checkpoints/DEMO-EUR?limit=1",
            None,
            &[],
            None,
        )
        .await;
        assert_eq!(page.status, 200, "{label}: {}", page.body);
        assert_eq!(page.json()["items"], serde_json::json!([demo]), "{label}");
        assert!(page.json()["next_cursor"].is_null(), "{label}");
        let bad = http(
            &address,
            "GET",
            "/v1/journal/checkpoints/DEMO-EUR?cursor=x",
            None,
            &[],
            None,
        )
        .await;
        assert_eq!(bad.status, 422, "{label}: {}", bad.body);
        let none = http(
            &address,
            "GET",
            "/v1/journal/checkpoints/NOPE",
            None,
            &[],
            None,
        )
        .await;
        assert_eq!(none.status, 404, "{label}");
        let bad = http(
            &address,
            "GET",
            "/v1/journal/checkpoints/DEMO-EUR?limit=0",
            None,
            &[],
            None,
        )
        .await;
        assert!(
            bad.status == 400 || bad.status == 422,
            "{label}: {}",
            bad.status
        );
        stop_with_sigterm(&mut server, label).await;

        let kept = dir.path().join("checkpoints.json");
        std::fs::write(&kept, serde_json::to_string_pretty(&latest).unwrap()).unwrap();
        let kept = kept.to_str().unwrap();
        let export = dir.path().join("journal.jsonl");
        let export = export.to_str().unwrap();
        let (ok, out, err) =
            run(&["export", "journal", "--database-url", &url, "--out", export]).await;
        assert!(ok, "{label}: {out}{err}");
        let (ok, verdict, err) = run(&["verify", export, "--checkpoints", kept]).await;
        assert!(ok, "{label}: {verdict}{err}");
        assert!(
            verdict.contains("signed checkpoints: ") && verdict.contains(&key),
            "{verdict}"
        );
        let (ok, verdict, err) = run(&[
            "verify",
            export,
            "--checkpoints",
            kept,
            "--checkpoint-key",
            &key,
        ])
        .await;
        assert!(ok, "{label}: {verdict}{err}");
        // Every checkpoint the service stored, exported with the journal from one snapshot,
        // holds too.
        let again = dir.path().join("journal-again.jsonl");
        let again = again.to_str().unwrap();
        let stored = dir.path().join("stored-checkpoints.json");
        let stored = stored.to_str().unwrap();
        let (ok, out, err) = run(&[
            "export",
            "journal",
            "--database-url",
            &url,
            "--out",
            again,
            "--checkpoints-out",
            stored,
        ])
        .await;
        assert!(
            ok && out.contains("signed checkpoints from the same snapshot written"),
            "{label}: {out}{err}"
        );
        let (ok, verdict, err) = run(&[
            "verify",
            again,
            "--checkpoints",
            stored,
            "--checkpoint-key",
            &key,
        ])
        .await;
        assert!(ok, "{label}: {verdict}{err}");
        // One file for both would be overwritten by the other: refused, naming it.
        let (ok, _, err) = run(&[
            "export",
            "journal",
            "--database-url",
            &url,
            "--out",
            again,
            "--checkpoints-out",
            again,
        ])
        .await;
        assert!(
            !ok && err.contains("--checkpoints-out names the file --out writes"),
            "{label}: {err}"
        );
        assert!(
            run(&["verify", again]).await.0,
            "{label}: the earlier export is untouched"
        );
        // A checker we did not write, from docs/wire-format.md alone, agrees.
        if let Some((ok, printed)) = python_check_with(&[export, "--checkpoints", kept]).await {
            let held = latest["checkpoints"].as_array().unwrap().len();
            assert!(
                ok && printed.contains(&format!("{held} checkpoints hold")),
                "{label}: {printed}"
            );
        }

        // Another key named: refused, naming the key that did sign.
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let stranger_key = ledger::PublicKey::of(&stranger).to_base64url();
        let (ok, _, err) = run(&[
            "verify",
            export,
            "--checkpoints",
            kept,
            "--checkpoint-key",
            &stranger_key,
        ])
        .await;
        assert!(
            !ok && err.contains("not by a key given with --checkpoint-key"),
            "{err}"
        );

        // A figure changed after signing: the signature no longer verifies.
        let mut altered = latest.clone();
        for checkpoint in altered["checkpoints"].as_array_mut().unwrap() {
            if checkpoint["unit"] == "DEMO-EUR" {
                checkpoint["positive_balances"] = serde_json::json!("1");
            }
        }
        let altered_file = dir.path().join("altered.json");
        std::fs::write(&altered_file, altered.to_string()).unwrap();
        let altered_file = altered_file.to_str().unwrap();
        let (ok, _, err) = run(&["verify", export, "--checkpoints", altered_file]).await;
        assert!(!ok && err.contains("does not verify"), "{label}: {err}");
        if let Some((ok, printed)) =
            python_check_with(&[export, "--checkpoints", altered_file]).await
        {
            assert!(
                !ok && printed.contains("bad signature"),
                "{label}: {printed}"
            );
        }

        // A forger's checkpoint, honestly signed by the forger, with more issued than the
        // journal holds: caught by the totals, and by the key once it is pinned.
        let mut forged = signed.checkpoint;
        forged.totals.count_posting(ledger::EntryKind::Issue, 100);
        let forged = forged.sign(&stranger);
        let forged_file = dir.path().join("forged.json");
        std::fs::write(
            &forged_file,
            serde_json::json!({ "checkpoints": [forged.to_json()] }).to_string(),
        )
        .unwrap();
        let forged_file = forged_file.to_str().unwrap();
        let (ok, verdict, err) = run(&["verify", export, "--checkpoints", forged_file]).await;
        assert!(!ok, "{label}: {verdict}");
        assert!(
            err.contains("the signed checkpoint at sequence")
                && err.contains("disagrees with the journal there: issue totals"),
            "{label}: {err}"
        );
        if let Some((ok, printed)) =
            python_check_with(&[export, "--checkpoints", forged_file]).await
        {
            assert!(
                !ok && printed.contains("other totals"),
                "{label}: {printed}"
            );
        }
        let (ok, _, err) = run(&[
            "verify",
            export,
            "--checkpoints",
            forged_file,
            "--checkpoint-key",
            &key,
        ])
        .await;
        assert!(!ok && err.contains("not by a key given"), "{label}: {err}");
        let (ok, _, err) = run(&[
            "verify",
            export,
            "--checkpoints",
            kept,
            "--checkpoints",
            forged_file,
        ])
        .await;
        assert!(!ok && err.contains("more than one key"), "{label}: {err}");
        let (ok, _, err) = run(&["verify", export, "--checkpoints", export]).await;
        assert!(
            !ok && err.contains("not a saved answer of GET /v1/journal/checkpoints"),
            "{label}: {err}"
        );
    }
}

/// The entry count `coledger export journal` reports.
fn exported_entries(report: &str) -> u64 {
    report
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in {report:?}"))
}

#[tokio::test]
async fn exports_taken_while_payments_commit_are_consistent_snapshots() {
    for (label, url, _dir) in databases().await {
        let mut bank = tokio::process::Command::new(env!("CARGO_BIN_EXE_coledger"))
            .args(["torture", "bank", "--database-url", &url])
            .args(["--duration", "6", "--clients", "8"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal.jsonl");
        let file = file.to_str().unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let (mut verified, mut seen) = (Vec::new(), false);
        while verified.len() < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let (ok, exported, err) =
                run(&["export", "journal", "--database-url", &url, "--out", file]).await;
            // Until the workload has made its schema and first entries there is nothing to read.
            if !ok && !seen {
                continue;
            }
            assert!(ok, "{label}: {exported}{err}");
            let entries = exported_entries(&exported);
            if entries == 0 {
                continue;
            }
            seen = true;
            let (ok, verdict, err) = run(&["verify", file]).await;
            assert!(ok, "{label}: an export taken during writes: {verdict}{err}");
            verified.push(entries);
        }
        assert_eq!(verified.len(), 4, "{label}: {verified:?}");
        let status = tokio::time::timeout(PATIENCE, bank.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{label}: the bank workload failed");
        eprintln!("{label}: exports during writes held {verified:?} entries");
    }
}

#[tokio::test]
async fn export_journal_never_creates_a_database_and_its_help_says_so() {
    let (ok, help, err) = run(&["export", "journal", "--help"]).await;
    assert!(ok, "{help}{err}");
    assert!(!help.contains("created if missing"), "{help}");
    assert!(help.contains("never created"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite://{}", missing.display());
    let out = dir.path().join("journal.jsonl");
    // An earlier, good export at the same path survives the failed one.
    std::fs::write(&out, "an earlier export\n").unwrap();
    let (ok, _, err) = run(&[
        "export",
        "journal",
        "--database-url",
        &url,
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "an export of a missing database succeeded");
    assert!(!missing.exists(), "the export created the database: {err}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "an earlier export\n",
        "a failed export touched the earlier one"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "a failed export left a file behind: {left:?}"
    );
}

/// Research times are coarsened by at least a minute: a grain of 0 (which used to mean
/// exact to the second) is refused before anything is opened. Nor may a grain straddle days
/// (a week's grain put seven days of payments on one time, and `simulate measure` cut the
/// last period to the one day it saw).
#[tokio::test]
async fn export_research_refuses_a_grain_finer_than_a_minute_or_not_dividing_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.csv");
    for grain in [
        "--grain-s=0",
        "--grain-s=-5",
        "--grain-s=59",
        "--grain-s=7000",
        "--grain-s=604800",
        "--grain-s=hour",
    ] {
        let (ok, _, err) =
            run(&["export", "research", grain, "--out", out.to_str().unwrap()]).await;
        assert!(
            !ok && (err.contains("divides a day") || err.contains("whole number")),
            "--grain-s {grain}: {err}"
        );
        assert!(!out.exists());
    }
}

/// `coledger verify --database-url`: the auditor's check run on a database itself (its journal
/// streamed from one snapshot into the check, nothing written to disk), held to every
/// checkpoint stored in it. On both databases; the database is only read.
#[tokio::test]
async fn a_database_verifies_in_place_against_the_checkpoints_stored_in_it() {
    for (label, url, _keep) in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let secret = &secret_file(&dir);
        let (ok, out, err) = run(&["demo", "--database-url", &url]).await;
        assert!(ok, "{label}: {out}{err}");
        // The service signs its checkpoints as it starts.
        let (mut server, address) = serve(&url, &["--secret-file", secret]).await;
        let latest = http(&address, "GET", "/v1/journal/checkpoints", None, &[], None).await;
        let key = latest.json()["key"].as_str().unwrap().to_owned();
        stop_with_sigterm(&mut server, label).await;

        let (ok, verdict, err) = run(&["verify", "--database-url", &url]).await;
        assert!(ok, "{label}: {verdict}{err}");
        for expected in [
            "signed checkpoint(s) stored in",
            "chain intact: yes",
            "verdict: OK",
            "signed checkpoints: ",
            key.as_str(),
        ] {
            assert!(verdict.contains(expected), "{label}: {expected}: {verdict}");
        }
        let (ok, verdict, err) =
            run(&["verify", "--database-url", &url, "--checkpoint-key", &key]).await;
        assert!(ok, "{label}: {verdict}{err}");
        let other = ledger::PublicKey::of(&ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
        let (ok, _, err) = run(&[
            "verify",
            "--database-url",
            &url,
            "--checkpoint-key",
            &other.to_base64url(),
        ])
        .await;
        assert!(!ok, "{label}");
        assert!(
            err.contains("not by a key given with --checkpoint-key"),
            "{label}: {err}"
        );
    }

    // A file or a database, not both, and one of them.
    let (ok, _, err) = run(&["verify"]).await;
    assert!(
        !ok && err.contains("<FILE>") && err.contains("coledger verify --database-url <URL>"),
        "{err}"
    );
    let (ok, _, err) = run(&["verify", "x.jsonl", "--database-url", "sqlite://x.db"]).await;
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    // Nothing is made at a mistyped path.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("ledgr.db");
    let (ok, _, err) = run(&[
        "verify",
        "--database-url",
        &format!("sqlite://{}", typo.display()),
    ])
    .await;
    assert!(!ok && err.contains("there is no database file at"), "{err}");
    assert!(!typo.exists());

    // On SQLite, a journal longer than what the auditor reads at once (so it stops reading
    // while the export is still writing), signed as the service stopped.
    let db_path = dir.path().join("ledger.db");
    let url = format!("sqlite://{}", db_path.display());
    for seed in ["1", "2"] {
        let (ok, out, err) = run(&["demo", "--database-url", &url, "--seed", seed]).await;
        assert!(ok, "{out}{err}");
    }
    let (mut server, _) = serve(&url, &["--secret-file", &secret_file(&dir)]).await;
    stop_with_sigterm(&mut server, "sqlite").await;
    let before = std::fs::read(&db_path).unwrap();
    let (ok, verdict, err) = run(&["verify", "--database-url", &url]).await;
    assert!(ok, "{verdict}{err}");
    assert!(verdict.contains("verdict: OK"), "{verdict}");
    assert_eq!(
        std::fs::read(&db_path).unwrap(),
        before,
        "verify only reads"
    );

    // Someone with the database removes the last entry whole: the chain is whole, but the
    // checkpoint stored in the database states more.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in [
        "drop trigger entry_no_delete",
        "drop trigger posting_no_delete",
        "drop trigger journal_no_delete",
        "delete from journal where entry_position = (select max(position) from entry)",
        "delete from posting where entry_position = (select max(position) from entry)",
        "delete from entry where position = (select max(position) from entry)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let (ok, verdict, err) = run(&["verify", "--database-url", &url]).await;
    assert!(!ok, "{verdict}");
    assert!(
        verdict.contains("verdict: FAILED at the end of the export")
            && err.contains("at the end of its export")
            && err.contains("entries were cut off"),
        "{verdict}{err}"
    );

    // And an amount changed early on is caught at its entry.
    for sql in [
        "drop trigger posting_no_update",
        "update posting set amount_minor = amount_minor + 1 where entry_position = 10",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let (ok, verdict, err) = run(&["verify", "--database-url", &url]).await;
    assert!(!ok, "{verdict}");
    assert!(
        verdict.contains("verdict: FAILED at entry position 10")
            && err.contains("entry position 10 (line 11 of its export): chain break"),
        "{verdict}{err}"
    );

    // An entry whose postings were deleted cannot even be exported: the database is named
    // inconsistent at that entry (with entry 10 put back, so that is the first fault).
    for sql in [
        "update posting set amount_minor = amount_minor - 1 where entry_position = 10",
        "delete from posting where entry_position = 20",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (ok, verdict, err) = run(&["verify", "--database-url", &url]).await;
    assert!(!ok, "{verdict}");
    assert!(
        verdict.contains("verdict: FAILED at entry position 20")
            && err.contains("inconsistent at entry position 20: the entry has no postings"),
        "{verdict}{err}"
    );
}
