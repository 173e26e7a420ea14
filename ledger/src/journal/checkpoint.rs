//! Signed checkpoints (DESIGN §5): the service's signed statement that one unit's chain stood
//! at a sequence number and hash, with the totals the transparency report publishes.
//!
//! Kept heads ([`super::audit::Audit::expect_heads`]) let whoever kept them catch a chain
//! rewritten since. A signed checkpoint adds two things: the service cannot later deny it
//! said so (a third party can check the signature), and it carries the unit's public totals
//! (per entry kind, and what accounts in credit hold), which `coledger verify` recomputes
//! from an export, so a published figure that the journal does not add up to is caught too.
//!
//! The signed bytes are `"coledger/checkpoint/v1\n"` + the RFC 8785 canonical JSON of the
//! checkpoint's wire form without `signature` (the key is signed with the rest). Amounts are
//! strings of integer minor units: a unit's totals may exceed 2^53.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ChainHead, Digest};
use crate::canonical::{MAX_SAFE_INTEGER, to_canonical_bytes};
use crate::entry::EntryKind;
use crate::keys::{PublicKey, Signature};
use crate::unit::UnitCode;

/// What the signed bytes start with, so a checkpoint signature can never pass for an
/// intent's (`"coledger/v1\n"`) or the other way round.
pub const CHECKPOINT_DOMAIN: &[u8] = b"coledger/checkpoint/v1\n";

/// One unit's running totals: per entry kind, the entries touching the unit and the sum of
/// their postings' amounts in it; and the sum of the positive balances (what holders,
/// merchants and system accounts in credit hold; issuers' negative balances mirror it).
///
/// The service keeps these as it commits and `coledger verify` as it reads an export, each
/// through the same three calls, so the two cannot count differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitTotals {
    /// Indexed like [`EntryKind::ALL`]: entries, and amount in minor units.
    kinds: [(u64, i128); EntryKind::ALL.len()],
    positive_balances: i128,
}

impl UnitTotals {
    /// An entry of `kind` touches the unit (once per entry, whatever its postings).
    pub fn count_entry(&mut self, kind: EntryKind) {
        let total = &mut self.kinds[kind.index()];
        total.0 = total.0.saturating_add(1);
    }

    /// A posting of an entry of `kind` moves `amount_minor` in the unit.
    pub fn count_posting(&mut self, kind: EntryKind, amount_minor: i64) {
        let total = &mut self.kinds[kind.index()];
        total.1 = total.1.saturating_add(i128::from(amount_minor));
    }

    /// An account of the unit went from balance `before` to `after`.
    pub fn balance_moved(&mut self, before: i128, after: i128) {
        self.positive_balances = self
            .positive_balances
            .saturating_add(after.max(0))
            .saturating_sub(before.max(0));
    }

    /// The entries of `kind` and their amount.
    pub fn of_kind(&self, kind: EntryKind) -> (u64, i128) {
        self.kinds[kind.index()]
    }

    /// Every kind that occurs, in [`EntryKind::ALL`] order: (kind, entries, amount).
    pub fn kinds(&self) -> impl Iterator<Item = (EntryKind, u64, i128)> + '_ {
        EntryKind::ALL
            .iter()
            .zip(self.kinds)
            .filter(|(_, (entries, _))| *entries > 0)
            .map(|(&kind, (entries, amount))| (kind, entries, amount))
    }

    /// What accounts in credit hold.
    pub fn positive_balances(&self) -> i128 {
        self.positive_balances
    }

    fn to_json(self) -> (Value, String) {
        let kinds: Vec<Value> = self
            .kinds()
            .map(|(kind, entries, amount)| {
                json!({
                    "kind": kind.as_str(),
                    "entries": entries,
                    "amount_minor": amount.to_string(),
                })
            })
            .collect();
        (Value::Array(kinds), self.positive_balances.to_string())
    }
}

/// Where one unit's chain stood, and its totals there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The unit.
    pub unit: UnitCode,
    /// The chain's last link then (sequence 0 and zero hash: no entries yet).
    pub head: ChainHead,
    /// When it was signed (ms since the epoch).
    pub at_ms: i64,
    /// The unit's totals up to and including `head`.
    pub totals: UnitTotals,
}

/// A checkpoint, the key that signed it and the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What was signed.
    pub checkpoint: Checkpoint,
    /// The service's checkpoint key.
    pub key: PublicKey,
    /// Over [`CHECKPOINT_DOMAIN`] + the canonical JSON of the rest.
    pub signature: Signature,
}

/// Why a checkpoint could not be read or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint: a member missing, unknown or of the wrong form.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// The signature does not verify (strictly) under the checkpoint's key.
    #[error(
        "unit {unit} sequence {seq}: the signature does not verify under the key it names; the checkpoint was altered or not signed by that key"
    )]
    BadSignature {
        /// The unit.
        unit: UnitCode,
        /// The sequence number.
        seq: u64,
    },
}

impl Checkpoint {
    /// The wire form without `signature`, under `key`.
    fn unsigned_json(&self, key: PublicKey) -> Value {
        let (kinds, positive) = self.totals.to_json();
        json!({
            "unit": self.unit,
            "seq": self.head.seq,
            "hash": self.head.hash.to_hex(),
            "at_ms": self.at_ms,
            "kinds": kinds,
            "positive_balances": positive,
            "key": key,
        })
    }

    /// The bytes a signature covers, under `key`.
    pub fn signed_bytes(&self, key: PublicKey) -> Vec<u8> {
        let mut bytes = CHECKPOINT_DOMAIN.to_vec();
        // Every number here is a count or a time in ms, far below 2^53; amounts are strings.
        match to_canonical_bytes(&self.unsigned_json(key)) {
            Ok(canonical) => bytes.extend_from_slice(&canonical),
            Err(error) => unreachable!("a checkpoint holds no unsafe number: {error}"),
        }
        bytes
    }

    /// Signs it with `key`.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let public = PublicKey::of(key);
        let signature = Signature(key.sign(&self.signed_bytes(public)).to_bytes());
        SignedCheckpoint {
            checkpoint: self,
            key: public,
            signature,
        }
    }
}

impl SignedCheckpoint {
    /// Checks the signature, strictly, under the key it names (the caller decides whether
    /// that key is the service's).
    pub fn verify(&self) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::BadSignature {
            unit: self.checkpoint.unit,
            seq: self.checkpoint.head.seq,
        };
        let key = VerifyingKey::from_bytes(&self.key.0).map_err(|_| bad())?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.checkpoint.signed_bytes(self.key), &signature)
            .map_err(|_| bad())
    }

    /// The wire form: the signed members and `signature`.
    pub fn to_json(&self) -> Value {
        let mut value = self.checkpoint.unsigned_json(self.key);
        if let Value::Object(members) = &mut value {
            members.insert("signature".into(), json!(self.signature));
        }
        value
    }

    /// Reads the wire form (strictly: unknown members refused). The signature is not
    /// checked here; see [`SignedCheckpoint::verify`].
    pub fn from_json(value: &Value) -> Result<Self, CheckpointError> {
        let wire: Wire = serde_json::from_value(value.clone())
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        wire.try_into()
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    unit: UnitCode,
    seq: u64,
    hash: String,
    at_ms: i64,
    kinds: Vec<WireKind>,
    positive_balances: String,
    key: PublicKey,
    signature: Signature,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WireKind {
    kind: EntryKind,
    entries: u64,
    amount_minor: String,
}

fn integer(text: &str, what: &str) -> Result<i128, CheckpointError> {
    // Only what `to_string` writes: digits, a minus sign for negatives, no plus, no spaces.
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    canonical
        .then(|| text.parse::<i128>().ok())
        .flatten()
        .ok_or_else(|| CheckpointError::Malformed(format!("{what}: {text:?} is not an integer")))
}

/// A JSON number of the signed form: within ±(2^53 - 1), as RFC 8785 clients print exactly.
fn safe(value: i128, what: &str) -> Result<(), CheckpointError> {
    if value.unsigned_abs() > MAX_SAFE_INTEGER.unsigned_abs() as u128 {
        return Err(CheckpointError::Malformed(format!(
            "{what} {value} is beyond 2^53 - 1"
        )));
    }
    Ok(())
}

impl TryFrom<Wire> for SignedCheckpoint {
    type Error = CheckpointError;

    /// Only the form [`SignedCheckpoint::to_json`] writes is accepted (lowercase hex, kinds
    /// in [`EntryKind::ALL`] order, integers as it prints them), so the signature is checked
    /// over exactly the bytes any RFC 8785 checker derives from the same JSON.
    fn try_from(wire: Wire) -> Result<Self, CheckpointError> {
        safe(i128::from(wire.seq), "seq")?;
        safe(i128::from(wire.at_ms), "at_ms")?;
        let hash = Digest::from_hex(&wire.hash)
            .filter(|hash| hash.to_hex() == wire.hash)
            .ok_or_else(|| {
                CheckpointError::Malformed(format!(
                    "hash {:?} is not 64 lowercase hex digits",
                    wire.hash
                ))
            })?;
        let mut totals = UnitTotals {
            positive_balances: integer(&wire.positive_balances, "positive_balances")?,
            ..UnitTotals::default()
        };
        let mut last = None;
        for kind in &wire.kinds {
            let index = kind.kind.index();
            if last.is_some_and(|last| index <= last) || kind.entries == 0 {
                return Err(CheckpointError::Malformed(format!(
                    "kind {}: kinds are listed once each, with entries, in the order issue, \
                     payment, redeem, fee, expire, demurrage, time_exchange, waste_reward, \
                     reversal, convert, card_replacement",
                    kind.kind.as_str()
                )));
            }
            last = Some(index);
            safe(i128::from(kind.entries), "entries")?;
            totals.kinds[index] = (kind.entries, integer(&kind.amount_minor, "amount_minor")?);
        }
        Ok(Self {
            checkpoint: Checkpoint {
                unit: wire.unit,
                head: ChainHead {
                    seq: wire.seq,
                    hash,
                },
                at_ms: wire.at_ms,
                totals,
            },
            key: wire.key,
            signature: wire.signature,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn totals() -> UnitTotals {
        let mut totals = UnitTotals::default();
        totals.count_entry(EntryKind::Issue);
        totals.count_posting(EntryKind::Issue, 10_000);
        totals.balance_moved(0, 10_000);
        totals.count_entry(EntryKind::Payment);
        totals.count_posting(EntryKind::Payment, 2_500);
        totals.balance_moved(10_000, 7_500);
        totals.balance_moved(0, 2_500);
        totals
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            unit: UnitCode::new("PGI-EUR").unwrap(),
            head: ChainHead {
                seq: 2,
                hash: Digest([7; 32]),
            },
            at_ms: 1_795_305_600_000,
            totals: totals(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn totals_count_kinds_and_what_accounts_in_credit_hold() {
        let totals = totals();
        assert_eq!(totals.of_kind(EntryKind::Issue), (1, 10_000));
        assert_eq!(totals.of_kind(EntryKind::Payment), (1, 2_500));
        assert_eq!(totals.of_kind(EntryKind::Redeem), (0, 0));
        assert_eq!(totals.positive_balances(), 10_000);
        let kinds: Vec<_> = totals.kinds().map(|(kind, ..)| kind).collect();
        assert_eq!(kinds, [EntryKind::Issue, EntryKind::Payment]);
        // A balance crossing zero counts only its positive part.
        let mut crossing = UnitTotals::default();
        crossing.balance_moved(0, -300);
        assert_eq!(crossing.positive_balances(), 0);
        crossing.balance_moved(-300, 200);
        assert_eq!(crossing.positive_balances(), 200);
    }

    #[test]
    fn the_signed_bytes_are_the_domain_and_canonical_json() {
        let key = PublicKey::of(&key());
        let bytes = checkpoint().signed_bytes(key);
        let text = String::from_utf8(bytes).unwrap();
        let expected = format!(
            "coledger/checkpoint/v1\n{{\"at_ms\":1795305600000,\"hash\":\"{}\",\"key\":\"{}\",\"kinds\":[{{\"amount_minor\":\"10000\",\"entries\":1,\"kind\":\"issue\"}},{{\"amount_minor\":\"2500\",\"entries\":1,\"kind\":\"payment\"}}],\"positive_balances\":\"10000\",\"seq\":2,\"unit\":\"PGI-EUR\"}}",
            "07".repeat(32),
            key.to_base64url(),
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_signed_checkpoint_survives_its_wire_form_and_verifies() {
        let signed = checkpoint().sign(&key());
        signed.verify().unwrap();
        let wire = signed.to_json();
        let back = SignedCheckpoint::from_json(&wire).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let wire = checkpoint().sign(&key()).to_json();
        for (member, value) in [
            ("seq", json!(3)),
            ("hash", json!("08".repeat(32))),
            ("at_ms", json!(1)),
            ("positive_balances", json!("10001")),
            ("unit", json!("OTHER")),
            (
                "kinds",
                json!([{"kind": "issue", "entries": 1, "amount_minor": "10001"}]),
            ),
            (
                "key",
                json!(PublicKey::of(&SigningKey::from_bytes(&[1; 32]))),
            ),
        ] {
            let mut changed = wire.clone();
            changed[member] = value;
            let read = SignedCheckpoint::from_json(&changed).unwrap();
            assert!(
                matches!(read.verify(), Err(CheckpointError::BadSignature { .. })),
                "changing {member} went unnoticed"
            );
        }
    }

    #[test]
    fn malformed_checkpoints_are_named() {
        let wire = checkpoint().sign(&key()).to_json();
        let cases = [
            ("extra", json!(1), "unknown field"),
            ("hash", json!("xyz"), "not 64 lowercase hex digits"),
            (
                "hash",
                json!("07".repeat(31) + "0A"),
                "not 64 lowercase hex digits",
            ),
            (
                "hash",
                json!("+7".repeat(32)),
                "not 64 lowercase hex digits",
            ),
            ("seq", json!(1u64 << 53), "beyond 2^53 - 1"),
            ("at_ms", json!(i64::MIN), "beyond 2^53 - 1"),
            (
                "kinds",
                json!([
                    {"kind": "payment", "entries": 1, "amount_minor": "1"},
                    {"kind": "issue", "entries": 1, "amount_minor": "1"}
                ]),
                "listed once each",
            ),
            (
                "kinds",
                json!([{"kind": "issue", "entries": 1u64 << 60, "amount_minor": "1"}]),
                "beyond 2^53 - 1",
            ),
            ("positive_balances", json!("+5"), "not an integer"),
            ("positive_balances", json!("007"), "not an integer"),
            (
                "kinds",
                json!([
                    {"kind": "issue", "entries": 1, "amount_minor": "1"},
                    {"kind": "issue", "entries": 1, "amount_minor": "1"}
                ]),
                "listed once each",
            ),
            (
                "kinds",
                json!([{"kind": "gift", "entries": 1, "amount_minor": "1"}]),
                "unknown variant",
            ),
        ];
        for (member, value, expected) in cases {
            let mut changed = wire.clone();
            changed[member] = value;
            let error = SignedCheckpoint::from_json(&changed).unwrap_err();
            assert!(error.to_string().contains(expected), "{member}: {error}");
        }
        let mut missing = wire.clone();
        missing.as_object_mut().unwrap().remove("signature");
        assert!(SignedCheckpoint::from_json(&missing).is_err());
    }
}
