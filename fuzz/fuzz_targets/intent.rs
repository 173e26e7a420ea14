//! Any bytes posted to `/v1/intents`: parsing and verification must refuse cleanly (never
//! panic), and whatever verifies must turn into an entry or a clear entry error.
#![no_main]

use ledger::{EntryId, SignedIntent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedIntent::from_json(data) else {
        return;
    };
    // The canonical form re-parses to the same intent.
    let again = SignedIntent::from_json(signed.to_json().as_bytes())
        .expect("a parsed intent's own JSON parses again");
    assert_eq!(again.intent(), signed.intent());
    // Verify at a fixed time: expired, bad signature or fine, never a panic.
    if let Ok(verified) = signed.verify(1_700_000_000_000) {
        let _ = verified.to_entry(EntryId::new(), 1_700_000_000_000);
    }
});
