//! Runs `tests/vectors/check_vectors.py` (PyNaCl and the `rfc8785` package: libraries we did
//! not write) on a published vector file. Shared by the vector tests.

use std::path::Path;
use std::process::Command;

/// What the script printed, after it passed; `None` (a loud skip, a failure under `CI=true`)
/// when python3 with PyNaCl and rfc8785 is missing.
pub fn check_vectors(vectors: &Path) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/check_vectors.py");
    let probe = Command::new("python3")
        .args(["-c", "import nacl, rfc8785"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let message = "SKIPPED: python3 with PyNaCl and rfc8785 is missing \
                       (pip install -r ledger/tests/vectors/requirements.txt)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message}, and CI=true forbids skipping"
        );
        eprintln!("\n!!!!!!!! {message} !!!!!!!!\n");
        return None;
    }
    let output = Command::new("python3")
        .arg(script)
        .arg(vectors)
        .output()
        .expect("python3 runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python check failed:\n{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(printed)
}
