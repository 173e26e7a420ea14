//! Digital benefit cards: the number printed on the card and the custodial signing key that
//! the server keeps for it, sealed under the holder's PIN.
//!
//! Both modules are pure: no database, no HTTP. A card's number is also the associated data
//! of its sealed key, so a sealed key copied onto another card's row does not open.

pub mod number;
pub mod vault;

pub use number::{CardNumber, CardNumberError, CardPrefix};
pub use vault::{KdfParams, Pin, PinError, SealedKey, ServerSecret, ServerSecretError, VaultError};
