//! Any bytes as a municipality's enrolment CSV: the parser answers with a report or a
//! file-level error, never a panic. In a report every row is accounted for once, on a line of
//! the file after the header; what it accepts obeys every rule (so nothing invalid reaches the
//! database); every rejection says why; and the rejection report is CSV that reads back with
//! one record per rejected row.
#![no_main]

use enrolment::{EnrolmentRules, MAX_HOUSEHOLD_REF_CHARS, MAX_NAME_CHARS, parse_enrolment};
use libfuzzer_sys::fuzz_target;

fn rules() -> EnrolmentRules {
    EnrolmentRules {
        areas: vec!["Centro".into(), "San Blas".into()],
        languages: vec!["es".into(), "el".into(), "ar".into(), "en".into()],
        default_language: "es".into(),
        max_dependents: 10,
    }
}

fuzz_target!(|data: &[u8]| {
    let rules = rules();
    let Ok(report) = parse_enrolment(data, &rules) else {
        return;
    };
    let line_breaks = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let mut lines: Vec<usize> = Vec::new();
    let mut references: Vec<String> = Vec::new();
    for h in &report.accepted {
        lines.push(h.line);
        let reference = &h.household_ref;
        assert!(!reference.is_empty() && reference.chars().count() <= MAX_HOUSEHOLD_REF_CHARS);
        assert!(
            reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)),
            "{reference:?}"
        );
        references.push(reference.to_ascii_lowercase());
        assert!(!h.name.is_empty() && h.name.chars().count() <= MAX_NAME_CHARS);
        assert!(!h.name.chars().any(char::is_control), "{:?}", h.name);
        assert_eq!(
            h.name.split_whitespace().collect::<Vec<_>>().join(" "),
            h.name
        );
        assert!(h.dependents <= rules.max_dependents);
        assert!(rules.areas.contains(&h.area), "{:?}", h.area);
        assert!(rules.languages.contains(&h.language), "{:?}", h.language);
        if let Some(phone) = &h.phone {
            let digits = phone.strip_prefix('+').expect("a phone starts with +");
            assert!((8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    for r in &report.rejected {
        assert!(!r.reasons.is_empty(), "a rejection without a reason");
        lines.push(r.line);
    }
    let rows = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), rows, "a line reported twice");
    assert!(lines.iter().all(|&l| l >= 2 && l <= line_breaks + 1), "{lines:?}");
    references.sort_unstable();
    references.dedup();
    assert_eq!(references.len(), report.accepted.len(), "a household accepted twice");

    let rejections = enrolment::rejection_report_csv(&report);
    let body = rejections.trim_start_matches('\u{FEFF}');
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let records = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("the rejection report reads back as CSV");
    assert_eq!(records.len(), report.rejected.len());
    for (record, rejection) in records.iter().zip(&report.rejected) {
        assert_eq!(record.get(0), Some(rejection.line.to_string().as_str()));
    }
});
