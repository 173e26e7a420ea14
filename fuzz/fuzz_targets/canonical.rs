//! RFC 8785 canonicalisation of arbitrary JSON: never a panic, and idempotent (the canonical
//! form of a canonical document is itself).
#![no_main]

use ledger::canonical::to_canonical_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(canonical) = to_canonical_bytes(&value) {
        let reparsed: serde_json::Value =
            serde_json::from_slice(&canonical).expect("canonical output is JSON");
        let twice = to_canonical_bytes(&reparsed).expect("canonical output canonicalises");
        assert_eq!(canonical, twice);
    }
});
