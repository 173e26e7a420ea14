//! The credit-transfer file our generator writes is checked by a validator we did not write:
//! `tests/python/validate_pain001.py` validates it with lxml against the ISO 20022
//! pain.001.001.09 XSD shipped in the `sepaxml` package. A copy with `NbOfTxs` removed must be
//! reported invalid, so the check can fail. Skips loudly without the Python packages; under
//! CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;
use wallet_api::redemption::{CreditTransferFile, Date, Debtor, Transfer, pain001_xml};

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import lxml, sepaxml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            "SKIPPED: python3 with lxml and sepaxml is missing (pip install -r tests/python/requirements.txt)",
        );
    }
    ok
}

fn validate(path: &Path) -> Output {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/validate_pain001.py"
    );
    Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .unwrap()
}

fn transfer(id: &str, name: &str, iban: &str, bic: Option<&str>, cents: i64) -> Transfer {
    Transfer {
        end_to_end_id: id.to_owned(),
        creditor_name: name.to_owned(),
        creditor_iban: iban.to_owned(),
        creditor_bic: bic.map(str::to_owned),
        amount_cents: cents,
        remittance: format!("Coledger redemption 2026-11-01/2026-11-30 ref {id}"),
    }
}

/// A month's redemptions for merchants in four SEPA countries; check digits computed with
/// MOD 97-10 for these bank and account numbers.
fn realistic_file() -> CreditTransferFile {
    CreditTransferFile {
        message_id: "COLEDGER-PGI-2026-11-0001".to_owned(),
        created_at_unix_s: 1_795_385_212, // 2026-11-22T22:06:52Z
        execution_date: Date::new(2026, 11, 24).unwrap(),
        debtor: Debtor {
            name: "Ayuntamiento de Málaga – Programa de Garantía de Ingresos".to_owned(),
            iban: "ES91 2100 0418 4502 0005 1332".to_owned(),
            bic: Some("CAIXESBBXXX".to_owned()),
        },
        transfers: vec![
            transfer(
                "PGI-2026-11-M0001",
                "Panadería Núñez & Hijos S.L.",
                "es9121000418450200051332",
                Some("caixesbb"),
                1_234_56,
            ),
            transfer(
                "PGI-2026-11-M0002",
                "Bäckerei Groß & Söhne GmbH",
                "DE70 5001 0517 1234 5678 90",
                None,
                87_05,
            ),
            transfer(
                "PGI-2026-11-M0003",
                "Mercearia São João, Lda.",
                "PT50000201231234567890154",
                Some("CGDIPTPL"),
                1,
            ),
            transfer(
                "PGI-2026-11-M0004",
                "Cooperative \"Agora\" <Athens>",
                "GR1601101250000000012300695",
                None,
                15_000_00,
            ),
        ],
    }
}

#[test]
fn the_generated_credit_transfer_file_is_valid_against_the_official_xsd() {
    if !python_ready() {
        return;
    }
    let xml = pain001_xml(&realistic_file()).unwrap();
    assert!(xml.contains("<CtrlSum>16321.62</CtrlSum>"), "{xml}");
    assert!(
        xml.contains("<Nm>Panaderia Nunez + Hijos S.L.</Nm>"),
        "{xml}"
    );
    assert!(
        xml.contains("<Nm>Backerei Gross + Sohne GmbH</Nm>"),
        "{xml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("pain001.xml");
    std::fs::write(&good, &xml).unwrap();
    let output = validate(&good);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the XSD refused our file:\n{}{}\n{xml}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The same file without the group header's NbOfTxs must be refused, or the check is empty.
    let broken_xml = xml.replacen("<NbOfTxs>4</NbOfTxs>", "", 1);
    assert_ne!(broken_xml, xml);
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, &broken_xml).unwrap();
    let output = validate(&broken);
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a file without NbOfTxs passed:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("NbOfTxs"), "{report}");
}
