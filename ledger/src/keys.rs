//! Public keys and signatures as they travel: base64url without padding, as fixed bytes inside.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ed25519 public key (32 bytes); on the wire, 43 characters of base64url.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes); on the wire, 86 characters of base64url.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

/// Why a key or signature text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} bytes of unpadded base64url")]
pub struct KeyTextError {
    /// How many bytes the value must decode to.
    pub expected: usize,
}

fn decode_fixed<const N: usize>(text: &str) -> Result<[u8; N], KeyTextError> {
    let error = KeyTextError { expected: N };
    // Reject early so a hostile megabyte of base64 is never decoded.
    if text.len() > N.saturating_mul(2) {
        return Err(error);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| error.clone())?;
    bytes.try_into().map_err(|_| error)
}

impl PublicKey {
    /// Reads a key from base64url text.
    pub fn from_base64url(text: &str) -> Result<Self, KeyTextError> {
        decode_fixed(text).map(Self)
    }
    /// The key as base64url text.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
    /// The key of a signing key.
    pub fn of(signing_key: &ed25519_dalek::SigningKey) -> Self {
        Self(signing_key.verifying_key().to_bytes())
    }
}

impl Signature {
    /// Reads a signature from base64url text.
    pub fn from_base64url(text: &str) -> Result<Self, KeyTextError> {
        decode_fixed(text).map(Self)
    }
    /// The signature as base64url text.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64url())
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Signatures are not secret, but logs have no use for all 86 characters.
        write!(f, "Signature({}…)", &self.to_base64url()[..8])
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64url())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PublicKey::from_base64url(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64url())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Signature::from_base64url(&text).map_err(serde::de::Error::custom)
    }
}
