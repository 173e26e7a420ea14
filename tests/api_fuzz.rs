//! API fuzzing: schemathesis (from PyPI) generates requests from `/openapi.json` and sends
//! them, with an admin token, to a real `coledger serve`. No request may get a 5xx, and
//! every answer's status and content type must be ones the description documents. Skips
//! loudly without schemathesis; under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[tokio::test]
async fn generated_requests_never_get_a_server_error_or_an_undocumented_answer() {
    let ready = std::process::Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        skip("SKIPPED: schemathesis (`st`) is missing (scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let admin = token_cli(&url, "admin", None).await;
    let (_server, address) = serve(
        &url,
        &["--writes-per-second", "100000", "--write-burst", "100000"],
    )
    .await;
    let output = tokio::process::Command::new("st")
        .args([
            "run",
            &format!("http://{address}/openapi.json"),
            "-H",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance",
            "--phases",
            "coverage,fuzzing",
            "--max-time",
            "25",
            "--workers",
            "2",
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems (rerun with the seed it prints):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
