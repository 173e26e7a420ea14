//! Any bytes as a journal export (`coledger verify`'s input): the strict parser and the
//! verifier must answer, never panic, and an error must name a line of the file (or the one
//! just after it, for a file cut short).
//!
//! Each input is also tried with its chain made right (positions, sequence numbers and hashes
//! recomputed, the header's count and heads set), so that mutated, reordered or repeated
//! entries get past the chain checks to the signature, intent, refund and total checks.
#![no_main]

use std::collections::BTreeMap;

use ledger::journal::audit::audit;
use ledger::journal::{Digest, chain_hash};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn check(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    match audit(data) {
        Ok(report) => {
            assert!(report.units.iter().all(|u| u.balance_sum == 0));
            assert!(report.entries < lines);
        }
        Err(error) => assert!(
            (1..=lines.saturating_add(1)).contains(&error.line),
            "line {} of {lines}: {error}",
            error.line
        ),
    }
}

/// The export with its chain recomputed, as a forger with no keys could.
fn rechained(data: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split('\n').filter(|l| !l.is_empty());
    let mut header: Map<String, Value> = serde_json::from_str(lines.next()?).ok()?;
    let mut heads: BTreeMap<String, (u64, Digest)> = BTreeMap::new();
    let mut out = Vec::new();
    for (position, line) in lines.enumerate() {
        let mut line: Map<String, Value> = serde_json::from_str(line).ok()?;
        let entry = line.get("entry")?.as_str()?.to_owned();
        line.insert("position".into(), json!(position + 1));
        for link in line.get_mut("links")?.as_array_mut()? {
            let link = link.as_object_mut()?;
            let unit = link.get("unit")?.as_str()?.to_owned();
            let (seq, previous) = heads.get(&unit).copied().unwrap_or_default();
            let hash = chain_hash(&previous, entry.as_bytes());
            link.insert("seq".into(), json!(seq + 1));
            link.insert("hash".into(), json!(hash.to_hex()));
            heads.insert(unit, (seq + 1, hash));
        }
        out.push(Value::Object(line).to_string());
    }
    header.insert("count".into(), json!(out.len()));
    let heads: Vec<Value> = heads
        .into_iter()
        .map(|(unit, (seq, hash))| json!({"hash": hash.to_hex(), "seq": seq, "unit": unit}))
        .collect();
    header.insert("heads".into(), Value::Array(heads));
    let mut text = Value::Object(header).to_string();
    for line in out {
        text.push('\n');
        text.push_str(&line);
    }
    Some(text.into_bytes())
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = rechained(data) {
        check(&repaired);
    }
});
