//! The pages' JavaScript modules under Node's test runner (`tests/js/web.test.mjs`): RFC 8785
//! canonical JSON and Ed25519 signatures against the published intent vectors, money at
//! several scales, and the EMV payload writer and reader against the Rust encoder's vector
//! and the refusals of its decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

#[test]
fn the_pages_javascript_passes_its_unit_tests() {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        support::skip("SKIPPED: node is missing, so the pages' JavaScript unit tests did not run");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{root}/tests/js/web.test.mjs"))
        .arg(root)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
    assert!(!report.contains("# pass 0"), "{report}");
}
