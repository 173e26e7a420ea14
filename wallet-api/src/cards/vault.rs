//! The custodial card key, sealed under the holder's PIN and the server secret.
//!
//! Each card has an ed25519 [`SigningKey`] that the server keeps and uses only when the holder
//! types the PIN at a terminal. At rest the key is sealed:
//!
//! 1. `stretched = argon2id(PIN, salt, params)`: 32 bytes, a fresh random 16-byte salt per
//!    seal, so a guess costs the full argon2id work for one card only.
//! 2. `aead_key = HMAC-SHA256(key = server secret, "coledger/v1 card key\n" || stretched)`:
//!    a database dump without the server secret gives nothing to guess PINs against, and the
//!    server secret without the PIN opens nothing.
//! 3. ChaCha20-Poly1305 with a fresh random 96-bit nonce seals the 32-byte key; the associated
//!    data is the header (version, params, salt) and the card number, so a sealed key copied
//!    onto another card's row, or with edited parameters, does not open.
//!
//! A failed tag check cannot tell a wrong PIN from a wrong card, a wrong server secret or
//! tampered bytes: all of them are [`VaultError::WrongPin`], and callers count each one as a
//! wrong PIN attempt (the card locks after a few). Changing the PIN is [`change_pin`]: open
//! with the old PIN, seal with the new one under a fresh salt and nonce.
//!
//! Cost: with [`KdfParams::default`] (argon2id, 19 MiB, 2 passes, 1 lane) one [`open`] takes
//! about 22 ms of one core, and [`seal`] about 18 ms, on the 2-core AMD EPYC development
//! machine (argon2 built at opt-level 2 as in the dev profile, the machine busy with other
//! builds; measured 2026-11-22 over 20 calls). So one core opens about 45 cards a second: put
//! `open` on a blocking thread and bound how many run at once. [`KdfParams::for_tests`] costs
//! about 0.09 ms. The PIN-attempt rate limit and the card lock, not this cost alone, are what
//! stop guessing at the terminal; the cost is what protects PINs if the database and the
//! server secret both leak.
//!
//! Secrets (`Pin`, `ServerSecret`, the stretched PIN, the AEAD key, the plaintext key bytes)
//! are wiped when dropped, and their `Debug` shows nothing of them.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::number::{CARD_NUMBER_DIGITS, CardNumber};

/// The format version written as the first byte of [`SealedKey::to_bytes`].
pub const SEALED_KEY_VERSION: u8 = 1;
/// Bytes of argon2id salt, fresh for every seal.
pub const SALT_LEN: usize = 16;
/// Bytes of ChaCha20-Poly1305 nonce, fresh for every seal.
pub const NONCE_LEN: usize = 12;
/// Bytes of an ed25519 secret key, and of every derived key here.
const KEY_LEN: usize = 32;
/// Bytes of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Version byte plus three little-endian `u32` parameters plus the salt.
const HEADER_LEN: usize = 1 + 4 * 3 + SALT_LEN;
/// Length of every sealed key in its byte form (89).
pub const SEALED_KEY_LEN: usize = HEADER_LEN + NONCE_LEN + KEY_LEN + TAG_LEN;
/// Separates this use of the server secret from any other use of it.
const DERIVATION_LABEL: &[u8] = b"coledger/v1 card key\n";

/// Most argon2 memory a stored record may ask for (1 GiB), so a corrupt or hostile row cannot
/// make the server allocate without bound.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
/// Most argon2 passes a stored record may ask for.
pub const MAX_ITERATIONS: u32 = 64;
/// Most argon2 lanes a stored record may ask for.
pub const MAX_PARALLELISM: u32 = 16;

/// Fewest PIN digits.
pub const PIN_MIN_DIGITS: usize = 4;
/// Most PIN digits.
pub const PIN_MAX_DIGITS: usize = 8;
/// Hex characters in a server secret (32 bytes).
pub const SERVER_SECRET_HEX_LEN: usize = 64;

/// Why a card key could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The tag did not verify: a wrong PIN, or (indistinguishably) another card's record, a
    /// different server secret or altered bytes. Count it as a wrong PIN attempt.
    #[error("wrong PIN")]
    WrongPin,
    /// The stored bytes are not a sealed key of the expected length.
    #[error("a sealed card key is {expected} bytes, but this one is {found}")]
    BadLength {
        /// The length every sealed key has.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The stored bytes start with a format version this build does not know.
    #[error("sealed card key has unknown format version {0}")]
    UnsupportedVersion(u8),
    /// Key-derivation parameters outside argon2's rules or this module's limits.
    #[error(
        "argon2id parameters out of range: {memory_kib} KiB, {iterations} passes, {parallelism} lanes"
    )]
    BadParams {
        /// Memory asked for, in KiB.
        memory_kib: u32,
        /// Passes asked for.
        iterations: u32,
        /// Lanes asked for.
        parallelism: u32,
    },
}

/// Why a PIN was refused. No message shows the digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Fewer than 4 or more than 8 characters.
    #[error("a PIN has 4 to 8 digits")]
    WrongLength,
    /// Something other than the ASCII digits 0 to 9.
    #[error("a PIN has only the digits 0 to 9")]
    NotDigits,
    /// One digit repeated, such as 0000.
    #[error("a PIN of one digit repeated is too easy to guess; choose another")]
    AllSame,
    /// Consecutive digits up or down, such as 1234, 4321 or 7890.
    #[error("a PIN of consecutive digits, like 1234 or 4321, is too easy to guess; choose another")]
    Straight,
}

/// Why a server secret could not be loaded. No message shows any of the secret.
#[derive(Debug, thiserror::Error)]
pub enum ServerSecretError {
    /// Not exactly 64 hexadecimal characters (surrounding whitespace aside).
    #[error("the server secret is 64 hexadecimal characters (32 bytes)")]
    BadHex,
    /// Every byte the same, such as all zeros: a placeholder, not a secret.
    #[error("the server secret has every byte equal; generate a random one")]
    Weak,
    /// The secret file could not be read.
    #[error("cannot read the server secret file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The server's 32-byte secret, mixed into every card's sealing key. Wiped on drop.
pub struct ServerSecret([u8; KEY_LEN]);

impl ServerSecret {
    /// From 64 hex characters (either case); surrounding whitespace, such as the newline at
    /// the end of a file, is ignored.
    pub fn from_hex(text: &str) -> Result<Self, ServerSecretError> {
        let text = text.trim().as_bytes();
        if text.len() != SERVER_SECRET_HEX_LEN {
            return Err(ServerSecretError::BadHex);
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let high = hex_value(pair[0]).ok_or(ServerSecretError::BadHex)?;
            let low = hex_value(pair[1]).ok_or(ServerSecretError::BadHex)?;
            *byte = (high << 4) | low;
        }
        Self::from_bytes(*bytes)
    }

    /// From a file holding the 64 hex characters. At most 256 bytes are read, so pointing
    /// this at the wrong file fails fast.
    pub fn from_file(path: &Path) -> Result<Self, ServerSecretError> {
        const MAX_FILE_BYTES: usize = 256;
        let read_error = |source| ServerSecretError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let mut buffer = Zeroizing::new([0u8; MAX_FILE_BYTES + 1]);
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(read_error(error)),
            }
        }
        if filled > MAX_FILE_BYTES {
            return Err(ServerSecretError::BadHex);
        }
        let text = std::str::from_utf8(&buffer[..filled]).map_err(|_| ServerSecretError::BadHex)?;
        Self::from_hex(text)
    }

    /// From raw bytes; refuses every byte equal (an all-zero placeholder).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<Self, ServerSecretError> {
        let secret = Self(bytes);
        if secret.0.iter().all(|&byte| byte == secret.0[0]) {
            return Err(ServerSecretError::Weak);
        }
        Ok(secret)
    }

    /// A 32-byte key derived from the secret for one purpose (`context`), by HMAC-SHA256
    /// keyed with the secret (the research export's pseudonym key, for one).
    pub fn derive_key(&self, context: &[u8]) -> [u8; KEY_LEN] {
        self.derive_signing_key(context, b"").to_bytes()
    }

    /// A signing key derived from the secret for one purpose (`context`) and subject
    /// (`input`), by HMAC-SHA256 keyed with the secret: programmes sign with keys derived
    /// this way, so no private key of theirs is ever stored.
    pub fn derive_signing_key(&self, context: &[u8], input: &[u8]) -> SigningKey {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length.
            Err(_) => unreachable!("HMAC refused a 32-byte key"),
        };
        mac.update(&(context.len() as u64).to_be_bytes());
        mac.update(context);
        mac.update(input);
        let seed = Zeroizing::new(<[u8; KEY_LEN]>::from(mac.finalize().into_bytes()));
        SigningKey::from_bytes(&seed)
    }

    /// The secret as 64 lower-case hex characters, for writing a new secret file.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(
            String::with_capacity(SERVER_SECRET_HEX_LEN),
            |mut text, b| {
                let _ = write!(text, "{b:02x}");
                text
            },
        )
    }

    /// A fresh random secret, for set-up tools and tests.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl Drop for ServerSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A card PIN: 4 to 8 ASCII digits. Wiped on drop; `Debug` shows no digit.
pub struct Pin {
    digits: [u8; PIN_MAX_DIGITS],
    len: usize,
}

impl Pin {
    /// A PIN a holder chooses: the format, and not one digit repeated (0000) nor a straight
    /// run up or down (1234, 4321, and across 9-0 as on a keypad: 7890, 0987).
    pub fn parse(text: &str) -> Result<Self, PinError> {
        let pin = Self::parse_attempt(text)?;
        let digits = pin.as_bytes();
        let steps = || digits.windows(2).map(|pair| (10 + pair[1] - pair[0]) % 10);
        if steps().all(|step| step == 0) {
            return Err(PinError::AllSame);
        }
        if steps().all(|step| step == 1) || steps().all(|step| step == 9) {
            return Err(PinError::Straight);
        }
        Ok(pin)
    }

    /// A PIN typed to unlock a card: the format only. The strength rules apply when a PIN is
    /// chosen, so tightening them later never locks a holder out of an existing card.
    pub fn parse_attempt(text: &str) -> Result<Self, PinError> {
        let bytes = text.as_bytes();
        if !(PIN_MIN_DIGITS..=PIN_MAX_DIGITS).contains(&bytes.len()) {
            // A non-ASCII digit is several bytes; say what is wrong with the characters first.
            if text.chars().any(|c| !c.is_ascii_digit()) {
                return Err(PinError::NotDigits);
            }
            return Err(PinError::WrongLength);
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        let mut digits = [0u8; PIN_MAX_DIGITS];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            digits,
            len: bytes.len(),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.digits.zeroize();
        self.len.zeroize();
    }
}

/// argon2id cost parameters, stored with every sealed key so they can be raised later
/// without breaking old records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// argon2's minimum (8 KiB, 1 pass, 1 lane): fast enough for tests, useless against
    /// guessing. Never for real cards.
    pub const fn for_tests() -> Self {
        Self {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn to_argon2(self) -> Result<Params, VaultError> {
        let bad = VaultError::BadParams {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        };
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(bad);
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|_| bad)
    }
}

/// A card's signing key sealed under its PIN and the server secret; stored as a BLOB through
/// [`SealedKey::to_bytes`]. Every part is public data: its secrecy rests on the PIN and the
/// server secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    ciphertext: [u8; KEY_LEN],
    tag: [u8; TAG_LEN],
}

impl SealedKey {
    /// The byte form, [`SEALED_KEY_LEN`] bytes: version, memory KiB, passes, lanes (each
    /// `u32` little-endian), salt, nonce, ciphertext, tag.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SEALED_KEY_LEN);
        bytes.extend_from_slice(&self.header());
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.ciphertext);
        bytes.extend_from_slice(&self.tag);
        bytes
    }

    /// Reads [`SealedKey::to_bytes`]. Checks length, version and parameter limits; whether
    /// the rest is genuine only [`open`] can tell.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let bytes: &[u8; SEALED_KEY_LEN] = bytes.try_into().map_err(|_| VaultError::BadLength {
            expected: SEALED_KEY_LEN,
            found: bytes.len(),
        })?;
        if bytes[0] != SEALED_KEY_VERSION {
            return Err(VaultError::UnsupportedVersion(bytes[0]));
        }
        let mut parts = Reader { bytes, at: 1 };
        let params = KdfParams {
            memory_kib: u32::from_le_bytes(parts.take()),
            iterations: u32::from_le_bytes(parts.take()),
            parallelism: u32::from_le_bytes(parts.take()),
        };
        params.to_argon2()?;
        Ok(Self {
            params,
            salt: parts.take(),
            nonce: parts.take(),
            ciphertext: parts.take(),
            tag: parts.take(),
        })
    }

    /// The argon2id parameters this key was sealed with; re-seal when they fall below policy.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[0] = SEALED_KEY_VERSION;
        header[1..5].copy_from_slice(&self.params.memory_kib.to_le_bytes());
        header[5..9].copy_from_slice(&self.params.iterations.to_le_bytes());
        header[9..13].copy_from_slice(&self.params.parallelism.to_le_bytes());
        header[13..].copy_from_slice(&self.salt);
        header
    }

    /// The AEAD associated data: the header, then the card number's 16 digits.
    fn associated_data(&self, card: &CardNumber) -> [u8; HEADER_LEN + CARD_NUMBER_DIGITS] {
        let mut data = [0u8; HEADER_LEN + CARD_NUMBER_DIGITS];
        data[..HEADER_LEN].copy_from_slice(&self.header());
        data[HEADER_LEN..].copy_from_slice(card.as_str().as_bytes());
        data
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("version", &SEALED_KEY_VERSION)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Takes fixed-size pieces off a sealed key's bytes, front to back.
struct Reader<'a> {
    bytes: &'a [u8; SEALED_KEY_LEN],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut piece = [0u8; N];
        piece.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        piece
    }
}

/// Seals `key` for `card` under `pin` and `secret` with a fresh salt and nonce from `rng`.
/// Fails only for `params` out of range.
pub fn seal<R: RngCore + CryptoRng + ?Sized>(
    key: &SigningKey,
    pin: &Pin,
    secret: &ServerSecret,
    card: &CardNumber,
    params: KdfParams,
    rng: &mut R,
) -> Result<SealedKey, VaultError> {
    let mut sealed = SealedKey {
        params,
        salt: [0u8; SALT_LEN],
        nonce: [0u8; NONCE_LEN],
        ciphertext: [0u8; KEY_LEN],
        tag: [0u8; TAG_LEN],
    };
    rng.fill_bytes(&mut sealed.salt);
    rng.fill_bytes(&mut sealed.nonce);
    let cipher = cipher_for(pin, secret, &sealed.salt, params)?;
    let mut buffer = Zeroizing::new(key.to_bytes());
    let tag = match cipher.encrypt_in_place_detached(
        &Nonce::from(sealed.nonce),
        &sealed.associated_data(card),
        &mut buffer[..],
    ) {
        Ok(tag) => tag,
        // The only refusal is for messages over 256 GiB; this one is 32 bytes.
        Err(_) => unreachable!("ChaCha20-Poly1305 refused a 32-byte message"),
    };
    sealed.ciphertext = *buffer;
    sealed.tag.copy_from_slice(&tag);
    Ok(sealed)
}

/// Opens `sealed` for `card` with `pin` and `secret`. Costs one argon2id run at the sealed
/// key's parameters (about 22 ms of one core at the defaults): call it off the async runtime.
pub fn open(
    sealed: &SealedKey,
    pin: &Pin,
    secret: &ServerSecret,
    card: &CardNumber,
) -> Result<SigningKey, VaultError> {
    let cipher = cipher_for(pin, secret, &sealed.salt, sealed.params)?;
    let mut buffer = Zeroizing::new(sealed.ciphertext);
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(sealed.nonce),
            &sealed.associated_data(card),
            &mut buffer[..],
            &Tag::from(sealed.tag),
        )
        .map_err(|_| VaultError::WrongPin)?;
    Ok(SigningKey::from_bytes(&buffer))
}

/// Opens with `old_pin` and seals the same key under `new_pin` (fresh salt and nonce, and
/// `params`, so a PIN change also upgrades old parameters).
pub fn change_pin<R: RngCore + CryptoRng + ?Sized>(
    sealed: &SealedKey,
    old_pin: &Pin,
    new_pin: &Pin,
    secret: &ServerSecret,
    card: &CardNumber,
    params: KdfParams,
    rng: &mut R,
) -> Result<SealedKey, VaultError> {
    let key = open(sealed, old_pin, secret, card)?;
    seal(&key, new_pin, secret, card, params, rng)
}

/// argon2id stretches the PIN; HMAC-SHA256 keyed with the server secret turns that into the
/// AEAD key. Every intermediate is wiped before returning.
fn cipher_for(
    pin: &Pin,
    secret: &ServerSecret,
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> Result<ChaCha20Poly1305, VaultError> {
    let argon2_params = params.to_argon2()?;
    let block_count = argon2_params.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params);
    let mut stretched = Zeroizing::new([0u8; KEY_LEN]);
    let mut memory = vec![Block::default(); block_count];
    let hashed = argon2.hash_password_into_with_memory(
        pin.as_bytes(),
        salt,
        &mut stretched[..],
        &mut memory[..],
    );
    for block in &mut memory {
        block.zeroize();
    }
    hashed.map_err(|_| VaultError::BadParams {
        memory_kib: params.memory_kib,
        iterations: params.iterations,
        parallelism: params.parallelism,
    })?;

    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&secret.0) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(DERIVATION_LABEL);
    mac.update(&stretched[..]);
    // HMAC-SHA256 output is exactly a ChaCha20-Poly1305 key: 32 bytes.
    let mut derived: Key = mac.finalize().into_bytes();
    let cipher = ChaCha20Poly1305::new(&derived);
    let derived_bytes: &mut [u8] = &mut derived;
    derived_bytes.zeroize();
    Ok(cipher)
}

fn hex_value(character: u8) -> Option<u8> {
    match character {
        b'0'..=b'9' => Some(character - b'0'),
        b'a'..=b'f' => Some(character - b'a' + 10),
        b'A'..=b'F' => Some(character - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SECRET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(42)
    }

    fn card(text: &str) -> CardNumber {
        CardNumber::parse(text).unwrap()
    }

    struct Fixture {
        key: SigningKey,
        pin: Pin,
        secret: ServerSecret,
        card: CardNumber,
        sealed: SealedKey,
    }

    fn fixture() -> Fixture {
        let mut rng = rng();
        let key = SigningKey::generate(&mut rng);
        let pin = Pin::parse("2580").unwrap();
        let secret = ServerSecret::from_hex(SECRET_HEX).unwrap();
        let card = card("4111111111111111");
        let sealed = seal(&key, &pin, &secret, &card, KdfParams::for_tests(), &mut rng).unwrap();
        Fixture {
            key,
            pin,
            secret,
            card,
            sealed,
        }
    }

    #[test]
    fn sealed_key_opens_with_the_right_pin_secret_and_card() {
        let f = fixture();
        let opened = open(&f.sealed, &f.pin, &f.secret, &f.card).unwrap();
        assert_eq!(opened.to_bytes(), f.key.to_bytes());
        assert_eq!(opened.verifying_key(), f.key.verifying_key());
    }

    #[test]
    fn a_wrong_pin_is_wrong_pin() {
        let f = fixture();
        for wrong in ["2581", "0258", "25800", "12345678"] {
            let pin = Pin::parse_attempt(wrong).unwrap();
            assert_eq!(
                open(&f.sealed, &pin, &f.secret, &f.card).unwrap_err(),
                VaultError::WrongPin
            );
        }
    }

    #[test]
    fn a_sealed_key_does_not_open_for_another_card() {
        let f = fixture();
        let other = card("5555555555554444");
        assert_eq!(
            open(&f.sealed, &f.pin, &f.secret, &other).unwrap_err(),
            VaultError::WrongPin
        );
    }

    #[test]
    fn a_wrong_server_secret_does_not_open() {
        let f = fixture();
        let other = ServerSecret::generate(&mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(
            open(&f.sealed, &f.pin, &other, &f.card).unwrap_err(),
            VaultError::WrongPin
        );
    }

    #[test]
    fn every_tampered_byte_is_detected() {
        let f = fixture();
        let bytes = f.sealed.to_bytes();
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x01;
            match SealedKey::from_bytes(&tampered) {
                // Version and parameter bytes may fail to parse at all; either way it fails.
                Err(_) => assert!(index < 13, "byte {index} failed to parse"),
                Ok(sealed) => assert_eq!(
                    open(&sealed, &f.pin, &f.secret, &f.card).unwrap_err(),
                    VaultError::WrongPin,
                    "byte {index}"
                ),
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_still_open() {
        let f = fixture();
        let bytes = f.sealed.to_bytes();
        assert_eq!(bytes.len(), SEALED_KEY_LEN);
        assert_eq!(bytes[0], SEALED_KEY_VERSION);
        let back = SealedKey::from_bytes(&bytes).unwrap();
        assert_eq!(back, f.sealed);
        assert_eq!(back.params(), KdfParams::for_tests());
        let opened = open(&back, &f.pin, &f.secret, &f.card).unwrap();
        assert_eq!(opened.to_bytes(), f.key.to_bytes());
    }

    #[test]
    fn garbage_bytes_are_errors_not_panics() {
        let f = fixture();
        assert_eq!(
            SealedKey::from_bytes(&[]).unwrap_err(),
            VaultError::BadLength {
                expected: SEALED_KEY_LEN,
                found: 0
            }
        );
        let mut long = f.sealed.to_bytes();
        long.push(0);
        assert!(matches!(
            SealedKey::from_bytes(&long),
            Err(VaultError::BadLength { found: 90, .. })
        ));
        let mut version = f.sealed.to_bytes();
        version[0] = 2;
        assert_eq!(
            SealedKey::from_bytes(&version).unwrap_err(),
            VaultError::UnsupportedVersion(2)
        );
        // A hostile row asking for 4 TiB of memory is refused before anything is allocated.
        let mut greedy = f.sealed.to_bytes();
        greedy[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SealedKey::from_bytes(&greedy),
            Err(VaultError::BadParams { .. })
        ));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for length in 0..200 {
            let mut random = vec![0u8; length];
            rng.fill_bytes(&mut random);
            if let Some(first) = random.first_mut() {
                *first = SEALED_KEY_VERSION;
            }
            if let Ok(sealed) = SealedKey::from_bytes(&random) {
                assert!(open(&sealed, &f.pin, &f.secret, &f.card).is_err());
            }
        }
    }

    #[test]
    fn params_outside_argon2_rules_or_limits_are_refused_when_sealing() {
        let f = fixture();
        let mut rng = rng();
        for params in [
            KdfParams {
                memory_kib: 7,
                iterations: 1,
                parallelism: 1,
            },
            KdfParams {
                memory_kib: 64,
                iterations: 0,
                parallelism: 1,
            },
            KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 0,
            },
            KdfParams {
                memory_kib: MAX_MEMORY_KIB + 1,
                iterations: 1,
                parallelism: 1,
            },
            KdfParams {
                memory_kib: 64,
                iterations: MAX_ITERATIONS + 1,
                parallelism: 1,
            },
        ] {
            assert!(
                matches!(
                    seal(&f.key, &f.pin, &f.secret, &f.card, params, &mut rng),
                    Err(VaultError::BadParams { .. })
                ),
                "{params:?}"
            );
        }
    }

    #[test]
    fn default_params_are_the_owasp_recommendation_and_seal_and_open() {
        let params = KdfParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19 * 1024, 2, 1)
        );
        let f = fixture();
        let mut rng = rng();
        let sealed = seal(&f.key, &f.pin, &f.secret, &f.card, params, &mut rng).unwrap();
        let opened = open(&sealed, &f.pin, &f.secret, &f.card).unwrap();
        assert_eq!(opened.to_bytes(), f.key.to_bytes());
    }

    #[test]
    fn each_seal_uses_a_fresh_salt_and_nonce() {
        let f = fixture();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let params = KdfParams::for_tests();
        let first = seal(&f.key, &f.pin, &f.secret, &f.card, params, &mut rng).unwrap();
        let second = seal(&f.key, &f.pin, &f.secret, &f.card, params, &mut rng).unwrap();
        assert_ne!(first.salt, second.salt);
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn changing_the_pin_opens_with_the_new_pin_only() {
        let f = fixture();
        let new_pin = Pin::parse("97310").unwrap();
        let mut rng = rng();
        let resealed = change_pin(
            &f.sealed,
            &f.pin,
            &new_pin,
            &f.secret,
            &f.card,
            KdfParams::for_tests(),
            &mut rng,
        )
        .unwrap();
        let opened = open(&resealed, &new_pin, &f.secret, &f.card).unwrap();
        assert_eq!(opened.to_bytes(), f.key.to_bytes());
        assert_eq!(
            open(&resealed, &f.pin, &f.secret, &f.card).unwrap_err(),
            VaultError::WrongPin
        );
        let wrong_old = Pin::parse_attempt("1111").unwrap();
        assert_eq!(
            change_pin(
                &f.sealed,
                &wrong_old,
                &new_pin,
                &f.secret,
                &f.card,
                KdfParams::for_tests(),
                &mut rng
            )
            .unwrap_err(),
            VaultError::WrongPin
        );
    }

    #[test]
    fn pins_are_four_to_eight_ascii_digits() {
        for good in ["2580", "19375", "97315", "8264913", "31415926"] {
            assert!(Pin::parse(good).is_ok(), "{good}");
        }
        for (bad, error) in [
            ("", PinError::WrongLength),
            ("258", PinError::WrongLength),
            ("258013579", PinError::WrongLength),
            ("25a0", PinError::NotDigits),
            (" 2580", PinError::NotDigits),
            ("2580 ", PinError::NotDigits),
            ("٢٥٨٠", PinError::NotDigits),
            ("２５８０", PinError::NotDigits),
            ("+258", PinError::NotDigits),
        ] {
            assert_eq!(Pin::parse(bad).unwrap_err(), error, "{bad:?}");
            assert_eq!(Pin::parse_attempt(bad).unwrap_err(), error, "{bad:?}");
        }
    }

    #[test]
    fn repeated_and_straight_pins_are_refused_when_chosen() {
        for same in ["0000", "1111", "99999999"] {
            assert_eq!(Pin::parse(same).unwrap_err(), PinError::AllSame, "{same}");
        }
        for straight in [
            "1234", "4321", "0123", "3210", "12345678", "87654321", "7890", "0987", "8901",
        ] {
            assert_eq!(
                Pin::parse(straight).unwrap_err(),
                PinError::Straight,
                "{straight}"
            );
        }
        // Typing one to unlock an old card is still possible.
        assert!(Pin::parse_attempt("1234").is_ok());
        assert!(Pin::parse_attempt("0000").is_ok());
        // Near misses are allowed.
        for fine in ["1235", "1243", "0001", "2468"] {
            assert!(Pin::parse(fine).is_ok(), "{fine}");
        }
        assert!(PinError::Straight.to_string().contains("1234 or 4321"));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let f = fixture();
        assert_eq!(format!("{:?}", f.pin), "Pin(..)");
        assert_eq!(format!("{:?}", f.secret), "ServerSecret(..)");
        let sealed = format!("{:?}", f.sealed);
        assert!(sealed.starts_with("SealedKey { version: 1"), "{sealed}");
        assert!(!sealed.contains("ciphertext"), "{sealed}");
        for message in [
            PinError::WrongLength.to_string(),
            PinError::AllSame.to_string(),
            ServerSecretError::BadHex.to_string(),
        ] {
            assert!(!message.contains("2580"), "{message}");
        }
    }

    #[test]
    fn server_secret_reads_hex_and_files_and_refuses_placeholders() {
        let mixed = SECRET_HEX.to_uppercase();
        assert_eq!(
            ServerSecret::from_hex(&mixed).unwrap().0,
            ServerSecret::from_hex(SECRET_HEX).unwrap().0
        );
        assert!(ServerSecret::from_hex(&format!("  {SECRET_HEX}\n")).is_ok());
        for bad in [
            "",
            &SECRET_HEX[..62],
            &format!("{SECRET_HEX}00"),
            &SECRET_HEX.replace('f', "g"),
        ] {
            assert!(matches!(
                ServerSecret::from_hex(bad),
                Err(ServerSecretError::BadHex)
            ));
        }
        assert!(matches!(
            ServerSecret::from_hex(&"0".repeat(64)),
            Err(ServerSecretError::Weak)
        ));
        assert!(matches!(
            ServerSecret::from_bytes([7u8; 32]),
            Err(ServerSecretError::Weak)
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET_HEX}\n")).unwrap();
        assert_eq!(
            ServerSecret::from_file(&path).unwrap().0,
            ServerSecret::from_hex(SECRET_HEX).unwrap().0
        );
        std::fs::write(&path, vec![b'a'; 10_000]).unwrap();
        assert!(matches!(
            ServerSecret::from_file(&path),
            Err(ServerSecretError::BadHex)
        ));
        let missing = ServerSecret::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, ServerSecretError::Read { .. }));
        assert!(missing.to_string().contains("missing"));
    }
}
