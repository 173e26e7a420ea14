//! The merchant's signature over a payload: the message it covers, and how its 86 characters
//! are split across the two unreserved templates.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use ledger::{PublicKey, Signature};

use super::SIGNED_MESSAGE_PREFIX;
use super::decode::DecodeError;

/// Characters of base64url signature in each of the two templates (86 in all).
pub(crate) const HALF_CHARS: usize = 43;

/// The bytes signed: [`SIGNED_MESSAGE_PREFIX`], then the payload's data objects before the
/// signature templates, as UTF-8.
pub(crate) fn message(signed_part: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNED_MESSAGE_PREFIX.len() + signed_part.len());
    message.extend_from_slice(SIGNED_MESSAGE_PREFIX.as_bytes());
    message.extend_from_slice(signed_part.as_bytes());
    message
}

/// The signature of `signed_part`, as two halves of base64url text.
pub(crate) fn sign(signing_key: &SigningKey, signed_part: &str) -> (String, String) {
    let signature = Signature(signing_key.sign(&message(signed_part)).to_bytes());
    let mut first = signature.to_base64url();
    let second = first.split_off(HALF_CHARS);
    (first, second)
}

/// Reads the signature from its two halves.
pub(crate) fn join(first: &str, second: &str) -> Result<Signature, DecodeError> {
    if first.len() != HALF_CHARS || second.len() != HALF_CHARS {
        return Err(DecodeError::BadSignatureText);
    }
    Signature::from_base64url(&format!("{first}{second}"))
        .map_err(|_| DecodeError::BadSignatureText)
}

/// Checks `signature` over `message` with the merchant's key, strictly (RFC 8032 with no
/// malleable signatures and no small-order keys), as the ledger checks intents.
pub(crate) fn verify(
    merchant_key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), DecodeError> {
    let key = VerifyingKey::from_bytes(&merchant_key.0).map_err(|_| DecodeError::BadPublicKey)?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature)
        .map_err(|_| DecodeError::BadSignature)
}
