//! Amount parsing at every scale: never a panic, never a rounding, and what parses formats
//! back to a string that parses to the same amount.
#![no_main]

use ledger::Amount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&scale, text)) = data.split_first() else {
        return;
    };
    let scale = scale % 10; // 0..=9: the valid 0..=8 and one that must be refused
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(amount) = Amount::parse(text, scale) {
        assert!(scale <= 8, "scale {scale} accepted");
        let formatted = amount.format(scale);
        assert_eq!(
            Amount::parse(&formatted, scale).ok(),
            Some(amount),
            "{text:?} -> {formatted:?}"
        );
    }
});
