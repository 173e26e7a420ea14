//! Who is asking: operator bearer tokens (with roles, stored hashed) and wallet-holder
//! sessions (obtained by signing a challenge with the account's registered key).
//!
//! Operator tokens look like `colt_<id>_<secret>`: the id (a UUID, hex) finds the row, and
//! only SHA-256 of the 256-bit random secret is stored, so a leaked database holds no usable
//! token. A slow password hash is unnecessary for secrets with that much entropy.
//!
//! Holder sessions live in memory for [`SESSION_TTL_MS`]: a restart logs holders out, which
//! costs them one more signature and keeps no bearer secret on disk.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use ledger::{AccountId, ParticipantId, PublicKey, Signature};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::db::service::StoredToken;

/// Prefix of operator tokens.
pub const OPERATOR_TOKEN_PREFIX: &str = "colt_";
/// Prefix of holder session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "cols_";
/// How long a holder session lasts.
pub const SESSION_TTL_MS: i64 = 15 * 60 * 1000;
/// How long a login challenge may be answered.
pub const CHALLENGE_TTL_MS: i64 = 2 * 60 * 1000;
/// Bytes a holder signs to log in: this context, the account id, a newline, the challenge.
/// The context differs from intents' (`coledger/v1\n`), so a login signature can never be
/// replayed as a payment or the other way round.
pub const SESSION_SIGNING_CONTEXT: &str = "coledger/v1/session\n";
/// Entries an in-memory map here (sessions, challenges that opened one, tokens last
/// confirmed) holds before its expired ones are swept out.
const MAX_LIVE: usize = 200_000;

/// An operator's role (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Schemes, participants, accounts, keys, disbursements.
    ProgrammeManager,
    /// A shop: its own accounts and payment requests.
    Merchant,
    /// A collection point: its own accounts.
    Collector,
    /// A time-bank coordinator: mutual-credit accounts.
    Coordinator,
    /// Reads everything, writes nothing.
    Auditor,
    /// Aggregates only; no individual accounts.
    Researcher,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::ProgrammeManager,
        Role::Merchant,
        Role::Collector,
        Role::Coordinator,
        Role::Auditor,
        Role::Researcher,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ProgrammeManager => "programme_manager",
            Role::Merchant => "merchant",
            Role::Collector => "collector",
            Role::Coordinator => "coordinator",
            Role::Auditor => "auditor",
            Role::Researcher => "researcher",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether tokens of this role must be scoped to a participant (they act for one).
    pub fn needs_participant(self) -> bool {
        matches!(self, Role::Merchant | Role::Collector)
    }
}

/// A freshly made operator token: the text to hand over once, and the row to store.
#[derive(Debug)]
pub struct IssuedToken {
    /// The bearer token; shown once, never stored.
    pub text: String,
    /// What is stored.
    pub stored: StoredToken,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn random_32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Makes a new operator token.
pub fn issue_token(
    role: Role,
    participant: Option<ParticipantId>,
    label: &str,
    now_ms: i64,
) -> IssuedToken {
    let id = ledger::ids::new_v7();
    let secret = random_32();
    let text = format!(
        "{OPERATOR_TOKEN_PREFIX}{}_{}",
        id.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    IssuedToken {
        text,
        stored: StoredToken {
            id,
            secret_hash: sha256(&secret),
            role: role.as_str().to_owned(),
            participant,
            label: label.to_owned(),
            created_at: now_ms,
            revoked_at: None,
        },
    }
}

/// Splits an operator token into its id and the hash of its secret; None if malformed.
pub fn parse_operator_token(text: &str) -> Option<(Uuid, [u8; 32])> {
    let rest = text.strip_prefix(OPERATOR_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id = Uuid::try_parse(id).ok()?;
    let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
    (secret.len() == 32).then(|| (id, sha256(&secret)))
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a verified operator token may stand in for the database while it is
/// unreachable, so reads keep working through an outage.
pub const TOKEN_FALLBACK_MS: i64 = 10 * 60 * 1000;

/// Operator tokens last seen valid. Every request still asks the database (so a revocation
/// takes effect at once); this is consulted only when the database cannot be reached.
#[derive(Debug, Default)]
pub struct TokenCache {
    seen: Mutex<HashMap<Uuid, (StoredToken, i64)>>,
}

impl TokenCache {
    /// Remembers a token the database just confirmed.
    pub fn confirmed(&self, token: &StoredToken, now_ms: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_LIVE {
            seen.retain(|_, (_, at)| now_ms.saturating_sub(*at) < TOKEN_FALLBACK_MS);
        }
        seen.insert(token.id, (token.clone(), now_ms));
    }

    /// Forgets a token the database no longer accepts.
    pub fn forget(&self, id: Uuid) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The token as last confirmed, if recently enough.
    pub fn fallback(&self, id: Uuid, now_ms: i64) -> Option<StoredToken> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&id)
            .filter(|(_, at)| now_ms.saturating_sub(*at) < TOKEN_FALLBACK_MS)
            .map(|(token, _)| token.clone())
    }
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown, used or expired challenge.
    #[error("the challenge is unknown, already used or expired; ask for a new one")]
    BadChallenge,
    /// The challenge was issued for another account.
    #[error("the challenge was issued for another account")]
    WrongAccount,
    /// The account has no registered key.
    #[error("account {0} has no registered key")]
    NoKey(AccountId),
    /// The signature does not verify.
    #[error("the signature does not verify with the account's registered key")]
    BadSignature,
}

#[derive(Debug, Default)]
struct Live {
    /// Nonces of challenges that opened a session, until they expire: each opens one.
    used: HashMap<[u8; CHALLENGE_NONCE], i64>,
    sessions: HashMap<[u8; 32], (AccountId, i64)>,
}

/// A challenge's bytes (base64url on the wire): when it expires (ms, big-endian), a random
/// nonce, the account it is for, and a MAC of those three under a key only this process
/// holds. Issuing one stores nothing, so anyone may ask for any number of them (for ids
/// that exist or not) without crowding out anyone else's; only a challenge that opens a
/// session is remembered, to refuse it a second time.
const CHALLENGE_EXPIRY: usize = 8;
const CHALLENGE_NONCE: usize = 16;
const CHALLENGE_ACCOUNT: usize = 16;
const CHALLENGE_SIGNED: usize = CHALLENGE_EXPIRY + CHALLENGE_NONCE + CHALLENGE_ACCOUNT;
const CHALLENGE_BYTES: usize = CHALLENGE_SIGNED + 32;

/// What a valid challenge says.
struct Issued {
    nonce: [u8; CHALLENGE_NONCE],
    account: AccountId,
    expires: i64,
}

/// Holder login challenges and sessions, in memory.
pub struct Sessions {
    /// Keys the challenges' MACs; new per process, as the sessions are.
    challenge_key: [u8; 64],
    live: Mutex<Live>,
}

impl Default for Sessions {
    fn default() -> Self {
        let mut challenge_key = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut challenge_key);
        Self {
            challenge_key,
            live: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn challenge_mac(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.challenge_key.into());
        mac.update(signed);
        mac
    }

    /// A new one-time challenge for `account`; returns it and its expiry.
    pub fn challenge(&self, account: AccountId, now_ms: i64) -> (String, i64) {
        let expires = now_ms.saturating_add(CHALLENGE_TTL_MS);
        let mut bytes = [0u8; CHALLENGE_BYTES];
        let (signed, tag) = bytes.split_at_mut(CHALLENGE_SIGNED);
        let (expiry, rest) = signed.split_at_mut(CHALLENGE_EXPIRY);
        let (nonce, for_account) = rest.split_at_mut(CHALLENGE_NONCE);
        expiry.copy_from_slice(&expires.to_be_bytes());
        rand::rngs::OsRng.fill_bytes(nonce);
        for_account.copy_from_slice(account.as_bytes());
        tag.copy_from_slice(&self.challenge_mac(signed).finalize().into_bytes());
        (URL_SAFE_NO_PAD.encode(bytes), expires)
    }

    /// A challenge this process issued and that has not expired: its nonce, its account
    /// and when it expires.
    fn issued(&self, challenge: &str, now_ms: i64) -> Result<Issued, LoginError> {
        let bad = || LoginError::BadChallenge;
        let bytes = URL_SAFE_NO_PAD.decode(challenge).map_err(|_| bad())?;
        let (signed, tag) = bytes
            .split_at_checked(CHALLENGE_SIGNED)
            .filter(|(_, tag)| tag.len() == CHALLENGE_BYTES - CHALLENGE_SIGNED)
            .ok_or_else(bad)?;
        self.challenge_mac(signed)
            .verify_slice(tag)
            .map_err(|_| bad())?;
        let (expiry, rest) = signed
            .split_first_chunk::<CHALLENGE_EXPIRY>()
            .ok_or_else(bad)?;
        let (nonce, account) = rest
            .split_first_chunk::<CHALLENGE_NONCE>()
            .ok_or_else(bad)?;
        let expires = i64::from_be_bytes(*expiry);
        if expires < now_ms {
            return Err(bad());
        }
        Ok(Issued {
            nonce: *nonce,
            account: AccountId::from_bytes(account.try_into().map_err(|_| bad())?),
            expires,
        })
    }

    /// Checks a signed challenge and opens a session: returns its token and expiry.
    pub fn login(
        &self,
        account: AccountId,
        key: Option<PublicKey>,
        challenge: &str,
        signature: &Signature,
        now_ms: i64,
    ) -> Result<(String, i64), LoginError> {
        let issued = self.issued(challenge, now_ms)?;
        if self.live().used.contains_key(&issued.nonce) {
            return Err(LoginError::BadChallenge);
        }
        if issued.account != account {
            return Err(LoginError::WrongAccount);
        }
        let key = key.ok_or(LoginError::NoKey(account))?;
        let message = session_signed_bytes(account, challenge);
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.0)
            .map_err(|_| LoginError::BadSignature)?;
        verifying
            .verify_strict(
                &message,
                &ed25519_dalek::Signature::from_bytes(&signature.0),
            )
            .map_err(|_| LoginError::BadSignature)?;
        let secret = random_32();
        let token = format!("{SESSION_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let expires = now_ms.saturating_add(SESSION_TTL_MS);
        let mut live = self.live();
        // Checked again under the lock: two logins racing with one challenge open one session.
        if live.used.len() >= MAX_LIVE {
            live.used.retain(|_, exp| *exp >= now_ms);
        }
        if live.used.insert(issued.nonce, issued.expires).is_some() {
            return Err(LoginError::BadChallenge);
        }
        if live.sessions.len() >= MAX_LIVE {
            live.sessions.retain(|_, (_, exp)| *exp > now_ms);
        }
        live.sessions.insert(sha256(&secret), (account, expires));
        Ok((token, expires))
    }

    /// The account a live session token stands for.
    pub fn account_for(&self, token: &str, now_ms: i64) -> Option<AccountId> {
        let secret = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(SESSION_TOKEN_PREFIX)?)
            .ok()?;
        let hash = sha256(&secret);
        let mut live = self.live();
        match live.sessions.get(&hash) {
            Some(&(account, expires)) if expires >= now_ms => Some(account),
            Some(_) => {
                live.sessions.remove(&hash);
                None
            }
            None => None,
        }
    }
}

/// The bytes a holder signs to answer `challenge` for `account`.
pub fn session_signed_bytes(account: AccountId, challenge: &str) -> Vec<u8> {
    format!("{SESSION_SIGNING_CONTEXT}{account}\n{challenge}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    #[test]
    fn operator_tokens_round_trip_and_only_the_hash_is_kept() {
        let issued = issue_token(Role::Merchant, None, "shop", 1);
        let (id, hash) = parse_operator_token(&issued.text).unwrap();
        assert_eq!(id, issued.stored.id);
        assert!(hashes_equal(&hash, &issued.stored.secret_hash));
        assert!(
            !issued
                .text
                .contains(&URL_SAFE_NO_PAD.encode(issued.stored.secret_hash))
        );
        // Change a character inside the secret: the last one also carries padding bits that
        // strict base64 must leave zero, so changing it could make the text undecodable.
        let mut tampered = issued.text.clone().into_bytes();
        let inside = tampered.len() - 5;
        tampered[inside] = if tampered[inside] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let (_, other) = parse_operator_token(&tampered).unwrap();
        assert!(!hashes_equal(&other, &issued.stored.secret_hash));
        for bad in ["", "colt_", "colt_nothex_abc", "Bearer x", "cols_abc"] {
            assert!(parse_operator_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn login_needs_the_registered_key_and_a_fresh_challenge() {
        let sessions = Sessions::default();
        let key = SigningKey::from_bytes(&[7; 32]);
        let account = AccountId::new();
        let sign = |challenge: &str| {
            Signature(
                key.sign(&session_signed_bytes(account, challenge))
                    .to_bytes(),
            )
        };
        let (challenge, _) = sessions.challenge(account, 1_000);
        let (token, _) = sessions
            .login(
                account,
                Some(PublicKey::of(&key)),
                &challenge,
                &sign(&challenge),
                1_000,
            )
            .unwrap();
        assert_eq!(sessions.account_for(&token, 2_000), Some(account));
        assert_eq!(
            sessions.account_for(&token, 1_000 + SESSION_TTL_MS + 1),
            None
        );
        // Used challenges do not work twice.
        let again = sessions.login(
            account,
            Some(PublicKey::of(&key)),
            &challenge,
            &sign(&challenge),
            1_000,
        );
        assert_eq!(again, Err(LoginError::BadChallenge));
        // Another key's signature is refused.
        let (challenge, _) = sessions.challenge(account, 1_000);
        let other = SigningKey::from_bytes(&[8; 32]);
        let wrong = Signature(
            other
                .sign(&session_signed_bytes(account, &challenge))
                .to_bytes(),
        );
        let refused = sessions.login(
            account,
            Some(PublicKey::of(&key)),
            &challenge,
            &wrong,
            1_000,
        );
        assert_eq!(refused, Err(LoginError::BadSignature));
        // Expired challenges are refused.
        let (challenge, _) = sessions.challenge(account, 1_000);
        let late = sessions.login(
            account,
            Some(PublicKey::of(&key)),
            &challenge,
            &sign(&challenge),
            1_000 + CHALLENGE_TTL_MS + 1,
        );
        assert_eq!(late, Err(LoginError::BadChallenge));
        // A challenge issued for another account, or not by this process, or altered.
        let (theirs, _) = sessions.challenge(AccountId::new(), 1_000);
        let login = |challenge: &str| {
            sessions.login(
                account,
                Some(PublicKey::of(&key)),
                challenge,
                &sign(challenge),
                1_000,
            )
        };
        assert_eq!(login(&theirs), Err(LoginError::WrongAccount));
        let (elsewhere, _) = Sessions::default().challenge(account, 1_000);
        assert_eq!(login(&elsewhere), Err(LoginError::BadChallenge));
        let (mine, _) = sessions.challenge(account, 1_000);
        let mut altered = mine.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in [altered.as_str(), "", "abc", &mine[..mine.len() - 2]] {
            assert_eq!(login(bad), Err(LoginError::BadChallenge), "{bad:?}");
        }
        assert!(login(&mine).is_ok());
    }

    /// Challenges are not stored, so a flood of them for made-up accounts (more than
    /// `MAX_LIVE` used to hold) does not keep a holder from logging in.
    #[test]
    fn a_flood_of_challenges_locks_nobody_out() {
        let sessions = Sessions::default();
        for _ in 0..MAX_LIVE + 1_000 {
            sessions.challenge(AccountId::new(), 1_000);
        }
        let key = SigningKey::from_bytes(&[7; 32]);
        let account = AccountId::new();
        let (challenge, _) = sessions.challenge(account, 1_000);
        let signature = Signature(
            key.sign(&session_signed_bytes(account, &challenge))
                .to_bytes(),
        );
        let login = sessions.login(
            account,
            Some(PublicKey::of(&key)),
            &challenge,
            &signature,
            1_000,
        );
        assert!(login.is_ok(), "{login:?}");
    }
}
