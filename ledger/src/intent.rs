//! Signed intents: every state change is asked for by someone holding a key.
//!
//! The signed bytes are `"coledger/v1\n"` followed by the RFC 8785 canonical JSON of the
//! intent object, so any language with an ed25519 library and a JCS implementation can sign.
//! Canonicalisation runs over the JSON exactly as received, never over our re-serialisation,
//! so a client that omits an optional field still verifies.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::TimestampMs;
use crate::amount::Amount;
use crate::canonical::{CanonicalError, is_canonical, to_canonical_bytes};
use crate::entry::{Authorisation, EntryError, EntryKind, JournalEntry, Leg, Posting, Tags};
use crate::ids::{AccountId, EntryId, IntentId, PaymentRequestId};
use crate::journal::Digest;
use crate::keys::{PublicKey, Signature};
use crate::unit::UnitCode;

mod batch;
mod signer_keys;
pub use batch::{MAX_VERIFY_BATCH, verify_batch, verify_batch_with};
pub use signer_keys::SignerKeys;

/// Prefix of every signed message; the version lets us change the format without ambiguity.
pub const SIGNING_CONTEXT: &[u8] = b"coledger/v1\n";

/// The largest signed intent accepted, in bytes of JSON.
pub const MAX_INTENT_BYTES: usize = 16 * 1024;

/// Why an intent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// Larger than [`MAX_INTENT_BYTES`].
    #[error("signed intent is {size} bytes; the maximum is {MAX_INTENT_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not JSON, or not the shape of a signed intent.
    #[error("malformed intent: {0}")]
    Malformed(String),
    /// The intent has a number we cannot canonicalise.
    #[error("intent cannot be canonicalised: {0}")]
    NotCanonical(#[from] CanonicalError),
    /// Its `not_after` has passed.
    #[error("intent expired at {not_after} (Unix seconds); it is now {now}")]
    Expired {
        /// The intent's expiry, Unix seconds.
        not_after: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },
    /// The signature does not verify against the stated signer.
    #[error("signature does not verify for signer {signer:?}")]
    BadSignature {
        /// The key the intent names.
        signer: PublicKey,
    },
    /// The signing key is not the key the intent names.
    #[error("the intent names signer {named:?} but was signed with another key")]
    SignerMismatch {
        /// The key the intent names.
        named: PublicKey,
    },
    /// The intent describes an invalid entry.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A general `entry` action naming `tags.reverses`: refunds are signed as `refund`
    /// actions, so every link in the journal has one shape an auditor can read.
    #[error("tags.reverses is set only by a refund action, not by a general entry")]
    ReversesInEntry,
}

/// What the signer asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Pay `amount_minor` of `unit` from `from` to `to`. What wallets and cards sign.
    Payment {
        /// The paying account; the signer must control it.
        from: AccountId,
        /// The receiving account.
        to: AccountId,
        /// The unit, stated so a signer can never be tricked into paying in another one.
        unit: UnitCode,
        /// The amount in minor units.
        amount_minor: Amount,
        /// Free text for the statement.
        #[serde(default)]
        memo: String,
        /// The payment request this pays, if any: the service then checks that the payment
        /// matches it (payee, unit, amount, not expired) and settles it at most once. Absent
        /// from the signed JSON when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<PaymentRequestId>,
    },
    /// Give back `amount_minor` of an earlier payment, wholly or in part: what a shop's
    /// terminal signs with the merchant key. It becomes a `reversal` entry with one posting
    /// (`from` to `to`) whose `tags.reverses` names the payment. The Book checks that the
    /// payment exists, was paid by `to` to `from` in `unit`, and that its refunds never add
    /// up to more than it.
    Refund {
        /// The payment entry being refunded.
        payment: EntryId,
        /// The merchant account that was paid; the signer must control it.
        from: AccountId,
        /// The account that paid.
        to: AccountId,
        /// The unit, stated so a signer can never be tricked into refunding in another one.
        unit: UnitCode,
        /// The amount given back, in minor units.
        amount_minor: Amount,
        /// Free text for the statement.
        #[serde(default)]
        memo: String,
    },
    /// A general entry from balanced legs: issuance, fees, conversions. What operators sign.
    Entry {
        /// What the entry is.
        kind: EntryKind,
        /// Signed changes per account; per unit they must sum to zero.
        legs: Vec<Leg>,
        /// Free text.
        #[serde(default)]
        memo: String,
        /// Reporting labels. `reverses` is refused here: only a [`Action::Refund`] links an
        /// entry to the payment it gives back.
        #[serde(default)]
        tags: Tags,
    },
}

/// A request to change the ledger, before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The idempotency key: the same intent twice has one effect.
    pub intent_id: IntentId,
    /// The last second (Unix time) at which it may be applied.
    pub not_after: i64,
    /// The key that signs it.
    pub signer: PublicKey,
    /// What it asks for.
    pub action: Action,
}

/// An intent with its signature, as received or as made by [`SignedIntent::sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIntent {
    intent: Intent,
    signature: Signature,
    /// RFC 8785 JSON of the intent object as received, which is what was signed.
    canonical: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedIntentWire {
    intent: Value,
    signature: Signature,
}

/// The same wire shape with the intent left as the text received, for the fast path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedIntentRawWire<'a> {
    #[serde(borrow)]
    intent: &'a RawValue,
    signature: Signature,
}

impl SignedIntent {
    /// Signs `intent` with `key`, which must be the key the intent names.
    pub fn sign(intent: Intent, key: &SigningKey) -> Result<Self, IntentError> {
        if PublicKey::of(key) != intent.signer {
            return Err(IntentError::SignerMismatch {
                named: intent.signer,
            });
        }
        let value =
            serde_json::to_value(&intent).map_err(|e| IntentError::Malformed(e.to_string()))?;
        let canonical = canonical_string(&value)?;
        let signature = Signature(key.sign(&signed_message(canonical.as_bytes())).to_bytes());
        Ok(Self {
            intent,
            signature,
            canonical,
        })
    }

    /// Reads `{"intent": {...}, "signature": "..."}`; unknown fields are refused.
    pub fn from_json(bytes: &[u8]) -> Result<Self, IntentError> {
        if bytes.len() > MAX_INTENT_BYTES {
            return Err(IntentError::TooLarge { size: bytes.len() });
        }
        if let Some(fast) = Self::from_canonical_json(bytes) {
            return Ok(fast);
        }
        Self::from_any_json(bytes)
    }

    /// The fast path of [`Self::from_json`], for the usual case of a client that sends the
    /// intent in the canonical form it signed: the received text is then the signed text, and
    /// the intent is read from it directly, without a `Value` in between. `None` for anything
    /// else, including every error, so that the general path decides (and words) every
    /// refusal. When this returns an intent the general path returns the same one: the text
    /// passed [`is_canonical`], so canonicalising its value gives the text back, and strictly
    /// ordered members mean no repeated name that the two parsers could read differently.
    fn from_canonical_json(bytes: &[u8]) -> Option<Self> {
        let wire: SignedIntentRawWire<'_> = serde_json::from_slice(bytes).ok()?;
        let text = wire.intent.get();
        if !is_canonical(text) {
            return None;
        }
        let intent: Intent = serde_json::from_str(text).ok()?;
        Some(Self {
            intent,
            signature: wire.signature,
            canonical: text.to_owned(),
        })
    }

    /// The general path of [`Self::from_json`]: canonicalises the intent object as received,
    /// whatever its member order, whitespace or escapes.
    fn from_any_json(bytes: &[u8]) -> Result<Self, IntentError> {
        let wire: SignedIntentWire =
            serde_json::from_slice(bytes).map_err(|e| IntentError::Malformed(e.to_string()))?;
        let canonical = canonical_string(&wire.intent)?;
        let intent: Intent = serde_json::from_value(wire.intent)
            .map_err(|e| IntentError::Malformed(e.to_string()))?;
        Ok(Self {
            intent,
            signature: wire.signature,
            canonical,
        })
    }

    /// Reads an intent as the journal keeps it: its canonical JSON (exactly the text that was
    /// signed, after the context line) and its signature. The text must already be in RFC 8785
    /// form, so what is read is byte for byte what was signed; unknown fields are refused.
    pub fn from_canonical(canonical: &str, signature: Signature) -> Result<Self, IntentError> {
        if canonical.len() > MAX_INTENT_BYTES {
            return Err(IntentError::TooLarge {
                size: canonical.len(),
            });
        }
        // The journal holds canonical text, so this is the usual case; as in `from_json`,
        // any failure is left to the general path below to word.
        if is_canonical(canonical)
            && let Ok(intent) = serde_json::from_str::<Intent>(canonical)
        {
            return Ok(Self {
                intent,
                signature,
                canonical: canonical.to_owned(),
            });
        }
        let value: Value =
            serde_json::from_str(canonical).map_err(|e| IntentError::Malformed(e.to_string()))?;
        if canonical_string(&value)? != canonical {
            return Err(IntentError::Malformed(
                "the intent is not in RFC 8785 canonical form".into(),
            ));
        }
        let intent: Intent =
            serde_json::from_value(value).map_err(|e| IntentError::Malformed(e.to_string()))?;
        Ok(Self {
            intent,
            signature,
            canonical: canonical.to_owned(),
        })
    }

    /// Checks the signature strictly against the named signer, whatever the time: for
    /// re-verifying intents that were committed long ago (an audit), where expiry was judged
    /// when they arrived.
    pub fn verify_signature(self) -> Result<VerifiedIntent, IntentError> {
        let key = self.verifying_key()?;
        let message = self.signed_bytes();
        self.verify_strict_with(&key, message)
    }

    /// The wire form: the intent as canonical JSON plus the signature.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(self.canonical.len().saturating_add(120));
        out.extend_from_slice(b"{\"intent\":");
        out.extend_from_slice(self.canonical.as_bytes());
        out.extend_from_slice(b",\"signature\":\"");
        out.extend_from_slice(self.signature.to_base64url().as_bytes());
        out.extend_from_slice(b"\"}");
        String::from_utf8(out).unwrap_or_default()
    }

    /// The intent.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }
    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
    /// The canonical JSON of the intent.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
    /// Exactly the bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_message(self.canonical.as_bytes())
    }

    /// Checks expiry against `now` and the signature against the named signer.
    pub fn verify(self, now: TimestampMs) -> Result<VerifiedIntent, IntentError> {
        self.check_expiry(now)?;
        let key = self.verifying_key()?;
        let message = self.signed_bytes();
        self.verify_strict_with(&key, message)
    }

    /// Refuses an intent whose `not_after` second has passed at `now`.
    fn check_expiry(&self, now: TimestampMs) -> Result<(), IntentError> {
        let now_s = now.div_euclid(1000);
        if now_s > self.intent.not_after {
            return Err(IntentError::Expired {
                not_after: self.intent.not_after,
                now: now_s,
            });
        }
        Ok(())
    }

    /// The named signer as a curve point; bytes that are no point cannot have signed.
    fn verifying_key(&self) -> Result<VerifyingKey, IntentError> {
        VerifyingKey::from_bytes(&self.intent.signer.0).map_err(|_| self.bad_signature())
    }

    fn bad_signature(&self) -> IntentError {
        IntentError::BadSignature {
            signer: self.intent.signer,
        }
    }

    /// Verifies `message` (this intent's signed bytes) under `key` on its own. The batch path
    /// falls back to this, so one definition of "verifies" serves both.
    fn verify_strict_with(
        self,
        key: &VerifyingKey,
        message: Vec<u8>,
    ) -> Result<VerifiedIntent, IntentError> {
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        // Strict verification refuses weak keys and malleable signatures.
        key.verify_strict(&message, &signature)
            .map_err(|_| self.bad_signature())?;
        Ok(self.into_verified(&message))
    }

    /// Marks this intent verified; only for callers that have just checked `message`.
    fn into_verified(self, message: &[u8]) -> VerifiedIntent {
        VerifiedIntent {
            digest: Digest::of(message),
            signed: self,
        }
    }
}

/// Canonical JSON as text; the writer emits only complete UTF-8 sequences.
fn canonical_string(value: &Value) -> Result<String, IntentError> {
    let bytes = to_canonical_bytes(value)?;
    String::from_utf8(bytes).map_err(|e| IntentError::Malformed(e.to_string()))
}

/// SHA-256 of the bytes signed for an intent whose canonical JSON is `canonical`: what a
/// committed entry's `Authorisation::digest` holds, so a stored intent can be matched to its
/// entry without checking the signature again.
pub fn signed_digest(canonical: &str) -> Digest {
    Digest::of(&signed_message(canonical.as_bytes()))
}

fn signed_message(canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len().saturating_add(canonical.len()));
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(canonical);
    message
}

/// An intent whose signature verified and which had not expired when checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIntent {
    signed: SignedIntent,
    digest: Digest,
}

impl VerifiedIntent {
    /// The intent.
    pub fn intent(&self) -> &Intent {
        &self.signed.intent
    }
    /// The signed intent.
    pub fn signed(&self) -> &SignedIntent {
        &self.signed
    }
    /// SHA-256 of the signed bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Who authorised, for the entry.
    pub fn authorisation(&self) -> Authorisation {
        Authorisation {
            intent_id: self.signed.intent.intent_id,
            signer: self.signed.intent.signer,
            digest: self.digest,
            signature: self.signed.signature,
        }
    }

    /// The journal entry this intent asks for.
    pub fn to_entry(
        &self,
        id: EntryId,
        created_at: TimestampMs,
    ) -> Result<JournalEntry, IntentError> {
        let (kind, postings, memo, tags) = match &self.signed.intent.action {
            Action::Payment {
                from,
                to,
                unit,
                amount_minor,
                memo,
                request: _,
            } => (
                EntryKind::Payment,
                vec![Posting {
                    unit: *unit,
                    debit: *from,
                    credit: *to,
                    amount: *amount_minor,
                }],
                memo.clone(),
                Tags::default(),
            ),
            Action::Refund {
                payment,
                from,
                to,
                unit,
                amount_minor,
                memo,
            } => (
                EntryKind::Reversal,
                vec![Posting {
                    unit: *unit,
                    debit: *from,
                    credit: *to,
                    amount: *amount_minor,
                }],
                memo.clone(),
                Tags {
                    reverses: Some(*payment),
                    ..Tags::default()
                },
            ),
            Action::Entry {
                kind,
                legs,
                memo,
                tags,
            } => {
                if tags.reverses.is_some() {
                    return Err(IntentError::ReversesInEntry);
                }
                (
                    *kind,
                    JournalEntry::postings_from_legs(legs)?,
                    memo.clone(),
                    tags.clone(),
                )
            }
        };
        Ok(JournalEntry::new(
            id,
            kind,
            postings,
            memo,
            tags,
            self.authorisation(),
            created_at,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn payment(key: &SigningKey, not_after: i64) -> Intent {
        Intent {
            intent_id: IntentId::new(),
            not_after,
            signer: PublicKey::of(key),
            action: Action::Payment {
                from: AccountId::new(),
                to: AccountId::new(),
                unit: UnitCode::new("PGI-EUR").unwrap(),
                amount_minor: Amount::from_minor(1250).unwrap(),
                memo: "pan y leche".into(),
                request: None,
            },
        }
    }

    #[test]
    fn signed_intent_verifies_and_round_trips() {
        let k = key(1);
        let signed = SignedIntent::sign(payment(&k, 2_000_000_000), &k).unwrap();
        let parsed = SignedIntent::from_json(signed.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, signed);
        let verified = parsed.verify(1_900_000_000_000).unwrap();
        assert_eq!(verified.digest(), Digest::of(&signed.signed_bytes()));
        let entry = verified.to_entry(EntryId::new(), 5).unwrap();
        assert_eq!(entry.kind(), EntryKind::Payment);
        assert_eq!(entry.postings()[0].amount.minor(), 1250);
    }

    #[test]
    fn a_stored_intent_reads_back_from_its_canonical_text_and_verifies_at_any_time() {
        let k = key(1);
        let signed = SignedIntent::sign(payment(&k, 100), &k).unwrap();
        let stored = SignedIntent::from_canonical(signed.canonical(), *signed.signature()).unwrap();
        assert_eq!(stored, signed);
        // Long expired, yet its signature still verifies: an audit judges signatures, not time.
        assert!(stored.clone().verify(2_000_000_000_000).is_err());
        assert_eq!(
            stored.verify_signature().unwrap().digest(),
            Digest::of(&signed.signed_bytes())
        );
        let spaced = signed.canonical().replacen(':', ": ", 1);
        assert!(matches!(
            SignedIntent::from_canonical(&spaced, *signed.signature()),
            Err(IntentError::Malformed(_))
        ));
        let changed = signed.canonical().replace("1250", "1251");
        let changed = SignedIntent::from_canonical(&changed, *signed.signature()).unwrap();
        assert!(matches!(
            changed.verify_signature(),
            Err(IntentError::BadSignature { .. })
        ));
        let big = " ".repeat(MAX_INTENT_BYTES + 1);
        assert!(matches!(
            SignedIntent::from_canonical(&big, *signed.signature()),
            Err(IntentError::TooLarge { .. })
        ));
    }

    #[test]
    fn expired_intent_is_refused() {
        let k = key(1);
        let signed = SignedIntent::sign(payment(&k, 100), &k).unwrap();
        assert_eq!(
            signed.clone().verify(100_999).map(|_| ()),
            Ok(()),
            "valid through its last second"
        );
        assert_eq!(
            signed.verify(101_000).map(|_| ()),
            Err(IntentError::Expired {
                not_after: 100,
                now: 101
            })
        );
    }

    #[test]
    fn tampered_intent_fails_signature() {
        let k = key(1);
        let signed = SignedIntent::sign(payment(&k, 2_000_000_000), &k).unwrap();
        let tampered = signed.to_json().replace("1250", "9250");
        let parsed = SignedIntent::from_json(tampered.as_bytes()).unwrap();
        assert!(matches!(
            parsed.verify(0),
            Err(IntentError::BadSignature { .. })
        ));
    }

    #[test]
    fn signature_by_another_key_fails() {
        let (k, other) = (key(1), key(2));
        let intent = payment(&k, 2_000_000_000);
        assert!(matches!(
            SignedIntent::sign(intent.clone(), &other),
            Err(IntentError::SignerMismatch { .. })
        ));
        let mut forged = SignedIntent::sign(intent, &k).unwrap();
        forged.signature = SignedIntent::sign(payment(&other, 1), &other)
            .unwrap()
            .signature;
        assert!(matches!(
            forged.verify(0),
            Err(IntentError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_and_oversized_intents_are_refused() {
        assert!(matches!(
            SignedIntent::from_json(b"{"),
            Err(IntentError::Malformed(_))
        ));
        assert!(matches!(
            SignedIntent::from_json(br#"{"intent":{},"signature":"x","extra":1}"#),
            Err(IntentError::Malformed(_))
        ));
        let big = vec![b' '; MAX_INTENT_BYTES + 1];
        assert_eq!(
            SignedIntent::from_json(&big),
            Err(IntentError::TooLarge {
                size: MAX_INTENT_BYTES + 1
            })
        );
        let k = key(1);
        let signed = SignedIntent::sign(payment(&k, 2_000_000_000), &k).unwrap();
        let over_precise = signed.to_json().replace("1250", "12.5");
        assert!(matches!(
            SignedIntent::from_json(over_precise.as_bytes()),
            Err(IntentError::NotCanonical(CanonicalError::NotAnInteger(_)))
        ));
        let negative = signed.to_json().replace("1250", "-1250");
        assert!(matches!(
            SignedIntent::from_json(negative.as_bytes()),
            Err(IntentError::Malformed(_))
        ));
    }

    fn refund(key: &SigningKey, payment: EntryId) -> Intent {
        Intent {
            intent_id: IntentId::new(),
            not_after: 2_000_000_000,
            signer: PublicKey::of(key),
            action: Action::Refund {
                payment,
                from: AccountId::new(),
                to: AccountId::new(),
                unit: UnitCode::new("PGI-EUR").unwrap(),
                amount_minor: Amount::from_minor(450).unwrap(),
                memo: "devolución".into(),
            },
        }
    }

    #[test]
    fn a_refund_intent_becomes_a_reversal_linked_to_its_payment() {
        let k = key(4);
        let payment = EntryId::new();
        let signed = SignedIntent::sign(refund(&k, payment), &k).unwrap();
        assert!(
            signed.canonical().contains("\"type\":\"refund\""),
            "{}",
            signed.canonical()
        );
        let parsed = SignedIntent::from_json(signed.to_json().as_bytes()).unwrap();
        let entry = parsed
            .verify(0)
            .unwrap()
            .to_entry(EntryId::new(), 5)
            .unwrap();
        let Action::Refund { from, to, .. } = signed.intent().action else {
            unreachable!()
        };
        assert_eq!(entry.kind(), EntryKind::Reversal);
        assert_eq!(entry.tags().reverses, Some(payment));
        assert_eq!(entry.memo(), "devolución");
        assert_eq!(entry.postings().len(), 1);
        assert_eq!(
            (entry.postings()[0].debit, entry.postings()[0].credit),
            (from, to)
        );
        assert_eq!(entry.postings()[0].amount.minor(), 450);
    }

    #[test]
    fn a_refund_without_memo_signs_the_object_without_it() {
        let k = key(4);
        let mut value = serde_json::to_value(refund(&k, EntryId::new())).unwrap();
        value["action"].as_object_mut().unwrap().remove("memo");
        let canonical = to_canonical_bytes(&value).unwrap();
        assert!(
            !String::from_utf8(canonical.clone())
                .unwrap()
                .contains("memo")
        );
        let signature = Signature(k.sign(&signed_message(&canonical)).to_bytes());
        let wire = serde_json::json!({"intent": value, "signature": signature});
        let parsed = SignedIntent::from_json(wire.to_string().as_bytes()).unwrap();
        let entry = parsed
            .verify(0)
            .unwrap()
            .to_entry(EntryId::new(), 5)
            .unwrap();
        assert_eq!(entry.memo(), "");
        // A refund names its payment; there is no refund of nothing.
        let mut missing = value.clone();
        missing["action"].as_object_mut().unwrap().remove("payment");
        let wire = serde_json::json!({"intent": missing, "signature": signature});
        assert!(matches!(
            SignedIntent::from_json(wire.to_string().as_bytes()),
            Err(IntentError::Malformed(_))
        ));
    }

    #[test]
    fn a_general_entry_cannot_link_itself_to_a_payment() {
        let k = key(5);
        let unit = UnitCode::new("PGI-EUR").unwrap();
        let (a, b) = (AccountId::new(), AccountId::new());
        let intent = Intent {
            intent_id: IntentId::new(),
            not_after: 2_000_000_000,
            signer: PublicKey::of(&k),
            action: Action::Entry {
                kind: EntryKind::Reversal,
                legs: vec![
                    Leg {
                        account: a,
                        unit,
                        delta: -100,
                    },
                    Leg {
                        account: b,
                        unit,
                        delta: 100,
                    },
                ],
                memo: String::new(),
                tags: Tags {
                    reverses: Some(EntryId::new()),
                    ..Tags::default()
                },
            },
        };
        let verified = SignedIntent::sign(intent, &k).unwrap().verify(0).unwrap();
        assert_eq!(
            verified.to_entry(EntryId::new(), 5),
            Err(IntentError::ReversesInEntry)
        );
    }

    /// Signs `intent` as a client would, then sends it as `text` (some JSON of the same
    /// object): both paths of `from_json` must read it alike.
    fn signed_wire(key: &SigningKey, text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        let canonical = to_canonical_bytes(&value).unwrap();
        let signature = Signature(key.sign(&signed_message(&canonical)).to_bytes());
        format!(
            "{{\"intent\":{text},\"signature\":\"{}\"}}",
            signature.to_base64url()
        )
    }

    /// `from_json` equals its general path, and says whether the fast path took it.
    fn read_both_ways(wire: &str) -> (Result<SignedIntent, IntentError>, bool) {
        let general = SignedIntent::from_any_json(wire.as_bytes());
        let fast = SignedIntent::from_canonical_json(wire.as_bytes());
        if let Some(fast) = &fast {
            assert_eq!(Ok(fast), general.as_ref(), "{wire}");
        }
        assert_eq!(SignedIntent::from_json(wire.as_bytes()), general, "{wire}");
        (general, fast.is_some())
    }

    #[test]
    fn canonical_intents_take_the_fast_path_and_others_read_the_same_as_before() {
        let k = key(6);
        let mut intent = payment(&k, 2_000_000_000);
        if let Action::Payment { memo, .. } = &mut intent.action {
            *memo = "\"caf\u{e9}\" \\ \n\t\u{1}\u{7f} 😀 \u{2028} €".into();
        }
        let signed = SignedIntent::sign(intent, &k).unwrap();
        let (read, fast) = read_both_ways(&signed.to_json());
        assert!(fast, "{}", signed.to_json());
        assert_eq!(read.as_ref(), Ok(&signed));

        // The same object written otherwise: members out of order, spaces, escapes the
        // canonical form does not use. Read by the general path, to the same canonical bytes.
        let value: Value = serde_json::from_str(signed.canonical()).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let reordered = signed
            .canonical()
            .replacen("{\"action\":", "{\"signer\":\"SIGNER\",\"action\":", 1)
            .replace(&format!(",\"signer\":\"{}\"", k_b64(&k)), "")
            .replace("SIGNER", &k_b64(&k));
        let escaped = signed.canonical().replace("caf\u{e9}", "caf\\u00e9");
        let backslash = signed.canonical().replace("\\\\", "\\u005c");
        for text in [pretty, reordered, escaped, backslash] {
            let (read, fast) = read_both_ways(&signed_wire(&k, &text));
            assert!(!fast, "{text}");
            let read = read.unwrap();
            assert_eq!(read.canonical(), signed.canonical(), "{text}");
            assert_eq!(read.intent(), signed.intent());
            assert!(read.verify(0).is_ok());
        }
    }

    fn k_b64(k: &SigningKey) -> String {
        serde_json::to_value(PublicKey::of(k))
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_repeated_member_is_read_as_before_whichever_path() {
        let k = key(7);
        let signed = SignedIntent::sign(payment(&k, 2_000_000_000), &k).unwrap();
        // A repeated name inside the intent: the general path keeps the last one, as it
        // always has; the fast path must not see it as canonical.
        let twice = signed.canonical().replacen(
            "\"amount_minor\":1250,",
            "\"amount_minor\":1250,\"amount_minor\":1250,",
            1,
        );
        let wire = signed.to_json().replace(signed.canonical(), &twice);
        let (read, fast) = read_both_ways(&wire);
        assert!(!fast);
        assert_eq!(
            read.map(|r| r.canonical().to_owned()),
            Ok(signed.canonical().to_owned())
        );
        // Unknown members are refused on both paths; so are malformed and non-integer ones.
        for (from, to) in [
            ("\"memo\":", "\"memo2\":1,\"memo\":"),
            (
                "\"not_after\":2000000000",
                "\"not_after\":2000000000,\"zzz\":1",
            ),
            ("1250", "12.5"),
            ("1250", "-1250"),
            ("1250", "9007199254740992"),
            ("\"type\":\"payment\"", "\"type\":\"pay\""),
        ] {
            let wire = signed.to_json().replacen(from, to, 1);
            let (read, fast) = read_both_ways(&wire);
            assert!(read.is_err() && !fast, "{wire}");
        }
    }

    #[test]
    fn a_stored_intent_reads_back_alike_whether_canonical_or_not() {
        let k = key(8);
        let signed = SignedIntent::sign(payment(&k, 2_000_000_000), &k).unwrap();
        let fast = SignedIntent::from_canonical(signed.canonical(), *signed.signature());
        assert_eq!(fast.as_ref(), Ok(&signed));
        let unknown = signed.canonical().replacen("{", "{\"a\":1,", 1);
        assert!(matches!(
            SignedIntent::from_canonical(&unknown, *signed.signature()),
            Err(IntentError::Malformed(_))
        ));
    }

    #[test]
    fn omitted_optional_field_still_verifies() {
        // A client that leaves out `memo` signs the object without it; we must verify that
        // object, not our re-serialisation with `"memo":""`.
        let k = key(3);
        let intent = payment(&k, 2_000_000_000);
        let mut value = serde_json::to_value(&intent).unwrap();
        value["action"].as_object_mut().unwrap().remove("memo");
        let canonical = to_canonical_bytes(&value).unwrap();
        let signature = Signature(k.sign(&signed_message(&canonical)).to_bytes());
        let wire = serde_json::json!({"intent": value, "signature": signature});
        let parsed = SignedIntent::from_json(wire.to_string().as_bytes()).unwrap();
        assert!(parsed.verify(0).is_ok());
    }
}
