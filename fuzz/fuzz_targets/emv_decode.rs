//! Any text as a scanned payment-request QR code: `decode` must refuse or accept, never panic.
//! What it accepts it reads the same way twice, and since it refuses anything `encode` would
//! not write, encoding the payload again (with any key) gives back exactly the signed part of
//! the input: the decoder is canonical. Checking the signature with an arbitrary key must
//! answer too.
//!
//! Each input is tried as it is and, when it ends in a CRC object, with its CRC made right, so
//! that mutations inside a payload get past the CRC check to the field parsers.
#![no_main]

use ed25519_dalek::SigningKey;
use ledger::PublicKey;
use libfuzzer_sys::fuzz_target;
use merchant_terminal::emv::{crc16_ccitt_false, decode, encode};

fn check(text: &str) {
    let Ok(decoded) = decode(text) else {
        return;
    };
    assert_eq!(
        decode(text).as_ref(),
        Ok(&decoded),
        "decode is not deterministic"
    );
    let key = SigningKey::from_bytes(&[7; 32]);
    let _ = decoded.verify(&PublicKey::of(&key));
    let again = encode(decoded.payload(), &key).expect("a decoded payload encodes");
    let redecoded = decode(&again).expect("an encoded payload decodes");
    assert_eq!(redecoded.payload(), decoded.payload());
    assert_eq!(
        redecoded.signed_message(),
        decoded.signed_message(),
        "the decoder accepted a form the encoder does not write"
    );
    assert!(redecoded.verify(&PublicKey::of(&key)).is_ok());
}

/// `text` with the value of its final `6304` object replaced by the right CRC.
fn with_right_crc(text: &str) -> Option<String> {
    let body = text.get(..text.len().checked_sub(4)?)?;
    if !body.ends_with("6304") {
        return None;
    }
    Some(format!("{body}{:04X}", crc16_ccitt_false(body.as_bytes())))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    if let Some(repaired) = with_right_crc(text) {
        check(&repaired);
    }
});
