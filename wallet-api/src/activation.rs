//! One-time activation codes: how a beneficiary's phone wallet gets its own key onto an
//! account without an operator token.
//!
//! An operator who manages the account issues a code ([`issue`]) and hands it over (on paper,
//! by phone, in a link); the wallet generates its ed25519 key in the browser and registers it
//! with the code and a proof of possession ([`activate`]). A code is 12 characters from an
//! alphabet without look-alikes, shown as `XXXX-XXXX-XXXX`, valid for one use, until it
//! expires, and only while it is the account's newest code.
//!
//! Invariants: the code itself is never stored or logged, only
//! `SHA-256("coledger/v1/activation\n" ‖ account ‖ "\n" ‖ code)`; at most one code per account
//! is live (a unique index); a code is consumed by one conditional UPDATE, so of two parallel
//! uses exactly one succeeds.
//!
//! Why a fast hash is enough: a code carries 12 × log2(31) ≈ 59.4 bits. Online guessing goes
//! through the per-account rate limit: at the default 50 attempts a second, a 90-day code is
//! found with probability about 5 × 10^-10. Offline guessing needs a copy of the database and
//! about 2^58 SHA-256 evaluations for one account on average (the account id in the hashed
//! bytes rules out one computation serving many accounts): about 11 months at 10^10 hashes a
//! second. That only pays against a code still unused when the copy was taken and still
//! unused and unexpired when the search ends; a used code is worthless, and whoever can read
//! the database already reads every balance. A keyed hash would need a secret every caller
//! of [`issue`] has, which the service does not require.

use std::fmt;

use ledger::{AccountId, AccountKind, AccountStatus, ProgrammeId, PublicKey, UnitCode};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::committer::{CommitError, Committer};
use crate::db::activation::StoredActivationCode;
use crate::db::{Database, DbError};

/// The characters of a code: digits and capital letters without 0, O, 1, I and L, which are
/// easily mistaken for one another when read aloud or copied from paper.
pub const CODE_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Characters in a code (without dashes).
pub const CODE_LENGTH: usize = 12;

/// Characters per group in the displayed form (`XXXX-XXXX-XXXX`).
pub const CODE_GROUP: usize = 4;

/// Longest text accepted as a typed code (dashes and spaces included); longer is refused
/// before any work.
pub const MAX_CODE_INPUT_LEN: usize = 64;

/// How long a code is valid when the issuer does not say: a week.
pub const DEFAULT_VALIDITY_MS: i64 = 7 * 86_400_000;

/// The shortest validity an issuer may ask for: a minute.
pub const MIN_VALIDITY_MS: i64 = 60_000;

/// The longest validity an issuer may ask for: 90 days.
pub const MAX_VALIDITY_MS: i64 = 90 * 86_400_000;

/// Bytes hashed before the account and the code, so the hash cannot be confused with any
/// other SHA-256 the service computes.
const HASH_CONTEXT: &str = "coledger/v1/activation\n";

/// A code in normal form: [`CODE_LENGTH`] characters of [`CODE_ALPHABET`], no dashes. Its
/// `Debug` form hides it, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationCode(String);

impl ActivationCode {
    /// A new random code (from the operating system's generator).
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let code = (0..CODE_LENGTH)
            .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// A code as typed: any case, with or without dashes, spaces anywhere. `None` if what
    /// remains is not [`CODE_LENGTH`] characters of the alphabet.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_CODE_INPUT_LEN {
            return None;
        }
        let code: String = text
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid = code.len() == CODE_LENGTH && code.bytes().all(|b| CODE_ALPHABET.contains(&b));
        valid.then_some(Self(code))
    }

    /// The form shown to people: `XXXX-XXXX-XXXX`.
    pub fn grouped(&self) -> String {
        let mut shown = String::with_capacity(CODE_LENGTH + CODE_LENGTH / CODE_GROUP);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % CODE_GROUP == 0 {
                shown.push('-');
            }
            shown.push(c);
        }
        shown
    }

    /// What is stored for this code on `account`.
    pub fn hash(&self, account: AccountId) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(HASH_CONTEXT.as_bytes());
        hasher.update(account.to_string().as_bytes());
        hasher.update(b"\n");
        hasher.update(self.0.as_bytes());
        hasher.finalize().into()
    }
}

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActivationCode(<hidden>)")
    }
}

/// A code just issued: hand `code` over once; it is not stored and cannot be shown again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// The account whose key it registers.
    pub account: AccountId,
    /// The code.
    pub code: ActivationCode,
    /// It is refused from this moment on (ms since the Unix epoch).
    pub expires_at_ms: i64,
}

/// Why a code was not issued or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// The code is wrong, expired, used or superseded, or the account cannot be activated
    /// (unknown, closed, its key the programme's). One cause for all, so a caller without
    /// the code learns nothing.
    #[error("the activation code is not valid for this account")]
    BadCode,
    /// No such account.
    #[error("no account {0}")]
    UnknownAccount(AccountId),
    /// The account is closed.
    #[error("account {0} is closed")]
    Closed(AccountId),
    /// The account's key is set by its programme (budget and system accounts) or is its
    /// card's (households): a phone wallet cannot take it over.
    #[error(
        "account {account} is a {} account of programme unit {unit} (programme {programme}); its key is set by the programme or its card",
        kind.as_str()
    )]
    ProgrammeKey {
        /// The account.
        account: AccountId,
        /// Its kind.
        kind: AccountKind,
        /// Its unit.
        unit: UnitCode,
        /// The programme that owns the unit.
        programme: ProgrammeId,
    },
    /// The validity asked for is outside [`MIN_VALIDITY_MS`]..=[`MAX_VALIDITY_MS`].
    #[error("a code is valid for {MIN_VALIDITY_MS} to {MAX_VALIDITY_MS} ms (asked {0} ms)")]
    Validity(i64),
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Registering the key failed: the code was given back if the refusal was certain
    /// ([`CommitError::is_definite_refusal`]), and stays used if the outcome is unknown.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Why an account may not receive a code (`Ok(())` if it may): unknown, closed, or its key
/// the programme's. The rule for programme units is `PUT /v1/accounts/{id}/key`'s: only
/// merchants hold their own keys there.
async fn eligible(db: &Database, account: AccountId) -> Result<(), ActivationError> {
    let Some((stored, _owner)) = db.stored_account(account).await? else {
        return Err(ActivationError::UnknownAccount(account));
    };
    if stored.status == AccountStatus::Closed {
        return Err(ActivationError::Closed(account));
    }
    if stored.kind != AccountKind::Merchant
        && let Some(programme) = db
            .programmes()
            .await?
            .into_iter()
            .find(|p| p.unit == stored.unit)
    {
        return Err(ActivationError::ProgrammeKey {
            account,
            kind: stored.kind,
            unit: stored.unit,
            programme: programme.id,
        });
    }
    Ok(())
}

/// Issues a one-time code for `account`, valid for `validity_ms` from `now_ms`, and
/// supersedes the account's earlier unused codes. Refuses unknown and closed accounts and
/// accounts whose key the programme controls. Authorisation is the caller's job: the HTTP
/// route lets only operators who manage the account ask; the binary may call this directly
/// (say, for `serve --demo` to print an activation link).
pub async fn issue(
    db: &Database,
    now_ms: i64,
    account: AccountId,
    validity_ms: i64,
) -> Result<IssuedCode, ActivationError> {
    if !(MIN_VALIDITY_MS..=MAX_VALIDITY_MS).contains(&validity_ms) {
        return Err(ActivationError::Validity(validity_ms));
    }
    eligible(db, account).await?;
    let code = ActivationCode::generate();
    let expires_at_ms = now_ms.saturating_add(validity_ms);
    db.insert_activation_code(&StoredActivationCode {
        id: ledger::ids::new_v7(),
        account,
        code_hash: code.hash(account),
        created_at: now_ms,
        expires_at: expires_at_ms,
        used_at: None,
        superseded_at: None,
    })
    .await?;
    tracing::info!(%account, expires_at_ms, "activation code issued");
    Ok(IssuedCode {
        account,
        code,
        expires_at_ms,
    })
}

/// Consumes `code` for `account` and registers `key` as the account's authority. The key's
/// proof of possession is the caller's to check first (so a bad proof does not use up the
/// code). If the writer refused the key for certain, the code is given back, unless a newer
/// one was issued meanwhile. If the outcome is unknown (storage failed mid-write, the writer
/// stopped), the key may have been registered after all, so the code stays used: given back,
/// it could replace the key a second time. The holder then needs a new code, or checks that
/// the key took (by logging in with it).
pub async fn activate(
    db: &Database,
    committer: &Committer,
    now_ms: i64,
    account: AccountId,
    code: &ActivationCode,
    key: PublicKey,
) -> Result<(), ActivationError> {
    // An account that cannot be activated gets the same answer as a wrong code: no code can
    // be live for it (none is issued for such accounts), and a prober learns nothing.
    if eligible(db, account).await.is_err() {
        return Err(ActivationError::BadCode);
    }
    let Some(id) = db
        .consume_activation_code(account, &code.hash(account), now_ms)
        .await?
    else {
        return Err(ActivationError::BadCode);
    };
    if let Err(failed) = committer.set_authority(account, key).await {
        if !failed.is_definite_refusal() {
            tracing::warn!(%account, error = %failed,
                "activation: the key may or may not have been registered; the code stays used");
            return Err(failed.into());
        }
        match db.release_activation_code(id, now_ms).await {
            Ok(released) => tracing::warn!(%account, released, error = %failed,
                "activation: the key was not registered"),
            Err(e) => tracing::error!(%account, error = %e, cause = %failed,
                "activation: the key was not registered and the code could not be given back"),
        }
        return Err(failed.into());
    }
    tracing::info!(%account, "account activated with a one-time code");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_use_only_the_alphabet_and_parse_back() {
        for _ in 0..200 {
            let code = ActivationCode::generate();
            let shown = code.grouped();
            assert_eq!(shown.len(), 14, "{shown}");
            assert_eq!(shown.matches('-').count(), 2, "{shown}");
            assert!(
                shown
                    .bytes()
                    .all(|b| b == b'-' || CODE_ALPHABET.contains(&b))
            );
            assert_eq!(ActivationCode::parse(&shown), Some(code));
        }
    }

    #[test]
    fn the_alphabet_has_no_look_alikes_and_no_repeats() {
        for confusable in [b'0', b'O', b'1', b'I', b'L'] {
            assert!(!CODE_ALPHABET.contains(&confusable));
        }
        let mut sorted = CODE_ALPHABET.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn a_code_is_accepted_in_any_case_with_or_without_dashes_and_spaces() {
        let code = ActivationCode::parse("ABCD-EFGH-JKMN").unwrap();
        for typed in [
            "abcd-efgh-jkmn",
            "  ABCDEFGHJKMN ",
            "abcd efgh jkmn",
            "\tAbCd-EfGh-JkMn\n",
        ] {
            assert_eq!(
                ActivationCode::parse(typed).as_ref(),
                Some(&code),
                "{typed:?}"
            );
        }
        assert_eq!(code.grouped(), "ABCD-EFGH-JKMN");
    }

    #[test]
    fn malformed_codes_are_refused() {
        for typed in [
            "",
            "ABCD-EFGH-JKM",
            "ABCD-EFGH-JKMNP",
            "ABCD-EFGH-JKM0",
            "ABCD-EFGH-JKMO",
            "ABCD-EFGH-JKM1",
            "ABCD-EFGH-JKMI",
            "ABCD-EFGH-JKML",
            "ABCD_EFGH_JKMN",
            "ÄBCD-EFGH-JKMN",
        ] {
            assert!(ActivationCode::parse(typed).is_none(), "{typed:?}");
        }
        let padded = format!("{}ABCDEFGHJKMN", " ".repeat(MAX_CODE_INPUT_LEN));
        assert!(ActivationCode::parse(&padded).is_none(), "over-long input");
    }

    #[test]
    fn the_hash_depends_on_the_account_and_the_debug_form_hides_the_code() {
        let code = ActivationCode::parse("ABCD-EFGH-JKMN").unwrap();
        let (a, b) = (AccountId::new(), AccountId::new());
        assert_ne!(code.hash(a), code.hash(b));
        assert_eq!(code.hash(a), code.hash(a));
        assert!(!format!("{code:?}").contains("ABCD"));
    }
}
