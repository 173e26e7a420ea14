//! Verifying many signed intents at once.
//!
//! ed25519 batch verification checks n signatures with one multi-scalar multiplication, about
//! half the CPU per signature of checking them one by one (on the benchmark machine ~20 µs
//! against ~46 µs at 256 per batch). A batch either holds as a whole or fails as a whole, so a
//! failed batch is verified again intent by intent, and only the bad intents are refused.
//!
//! Semantics: the batch is only a fast path to *accept*. Every refusal, and every intent the
//! batch equation cannot judge exactly as [`SignedIntent::verify`] would, goes through
//! `verify` itself, so errors are the single path's errors. The strict checks the batch
//! equation lacks are done first, on bytes: the signer must not be a small-order point (as
//! `verify_strict` requires) and the signature's R must be a canonical encoding of a point
//! that is not of small order.
//!
//! One gap remains, and only the holder of a key can use it: a signature crafted with a small
//! torsion component on its key or R (points not themselves of small order) can pass the
//! batch equation where the strict single check refuses it. The batch's coefficients, derived
//! from the whole batch, cancel the torsion with probability up to 1/2, and a holder whose
//! intents are verified only with their own (two or more: a lone intent gets the strict
//! check) can grind offline until they do. Such a signature cannot be made for someone
//! else's key, so it moves nothing its holder could not move anyway, but the holder could
//! later disown the payment: an auditor re-verifying the journal strictly would find its
//! signature invalid. Closing it needs a torsion check of each R (a scalar multiplication
//! per signature), which would cost much of the batch's gain.

use std::sync::LazyLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::VerifyingKey;

use super::signer_keys::{Known, SignerKeys};
use super::{IntentError, SignedIntent, VerifiedIntent};
use crate::TimestampMs;

/// The most intents checked by one batch equation. Larger batches gain little (~10 % from
/// 64 to 256) and a failed batch costs every member a second, single check.
pub const MAX_VERIFY_BATCH: usize = 256;

/// Verifies each intent against its own `now`, as [`SignedIntent::verify`] would, in batches
/// of at most [`MAX_VERIFY_BATCH`]. Results come back in the order given.
pub fn verify_batch(
    intents: Vec<(SignedIntent, TimestampMs)>,
) -> Vec<Result<VerifiedIntent, IntentError>> {
    verify_batch_with(intents, &SignerKeys::new(0))
}

/// [`verify_batch`], decoding each signer's key at most once over the life of `keys`.
pub fn verify_batch_with(
    intents: Vec<(SignedIntent, TimestampMs)>,
    keys: &SignerKeys,
) -> Vec<Result<VerifiedIntent, IntentError>> {
    let mut results = Vec::with_capacity(intents.len());
    let mut remaining = intents.into_iter();
    loop {
        let chunk: Vec<_> = remaining.by_ref().take(MAX_VERIFY_BATCH).collect();
        if chunk.is_empty() {
            return results;
        }
        results.extend(verify_chunk(chunk, keys));
    }
}

/// An intent the batch equation can judge: unexpired, with a usable key and R.
struct Candidate {
    position: usize,
    intent: SignedIntent,
    key: VerifyingKey,
    /// Whether `key` was decoded for this intent (not found kept), so it is kept if it
    /// verifies.
    fresh: bool,
    message: Vec<u8>,
}

fn verify_chunk(
    chunk: Vec<(SignedIntent, TimestampMs)>,
    keys: &SignerKeys,
) -> Vec<Result<VerifiedIntent, IntentError>> {
    let mut decided = Vec::with_capacity(chunk.len());
    let mut candidates = Vec::with_capacity(chunk.len());
    let mut known = keys.known();
    for (position, (intent, now)) in chunk.into_iter().enumerate() {
        match batch_key(&intent, now, &mut known) {
            Some((key, fresh)) => {
                let message = intent.signed_bytes();
                candidates.push(Candidate {
                    position,
                    intent,
                    key,
                    fresh,
                    message,
                });
            }
            None => decided.push((position, intent.verify(now))),
        }
    }
    drop(known);
    // A lone signature is cheaper checked on its own (~51 µs with its key kept, parsing
    // included, against ~62 µs for a batch equation of one, measured in session 12): the
    // equation's fixed cost buys nothing then. That is the single check every refusal goes
    // through anyway.
    let batch_holds = candidates.len() > 1 && batch_equation_holds(&candidates);
    let mut verified_fresh = Vec::new();
    decided.extend(candidates.into_iter().map(|c| {
        let result = if batch_holds {
            Ok(c.intent.into_verified(&c.message))
        } else {
            c.intent.verify_strict_with(&c.key, c.message)
        };
        if c.fresh && result.is_ok() {
            verified_fresh.push(c.key);
        }
        (c.position, result)
    }));
    keys.keep(verified_fresh);
    decided.sort_unstable_by_key(|(position, _)| *position);
    decided.into_iter().map(|(_, result)| result).collect()
}

/// The signer's key if the batch equation can judge `intent` exactly as the single check
/// would, and whether it was decoded here (not kept already); `None` leaves it to the single
/// check.
fn batch_key(
    intent: &SignedIntent,
    now: TimestampMs,
    known: &mut Known<'_>,
) -> Option<(VerifyingKey, bool)> {
    if intent.check_expiry(now).is_err() || !r_is_batchable(&intent.signature.0) {
        return None;
    }
    // Only keys that passed the weak-key filter below become candidates, and only
    // candidates are kept, so a kept key is not weak.
    if let Some(key) = known.get(&intent.intent.signer.0) {
        return Some((key, false));
    }
    let key = intent.verifying_key().ok().filter(|key| !key.is_weak())?;
    Some((key, true))
}

/// Whether the one batch equation over `candidates` (two or more) holds.
fn batch_equation_holds(candidates: &[Candidate]) -> bool {
    let messages: Vec<&[u8]> = candidates.iter().map(|c| c.message.as_slice()).collect();
    let signatures: Vec<ed25519_dalek::Signature> = candidates
        .iter()
        .map(|c| ed25519_dalek::Signature::from_bytes(&c.intent.signature.0))
        .collect();
    let keys: Vec<VerifyingKey> = candidates.iter().map(|c| c.key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// Every encoding of R that decodes to a point of small order without being refused for a
/// non-canonical y: the eight torsion points, plus the two with x = 0 written with the sign
/// bit set (decoding ignores the sign of zero).
static SMALL_ORDER_R: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    let mut encodings = Vec::with_capacity(10);
    for point in EIGHT_TORSION {
        let encoding = point.compress().to_bytes();
        encodings.push(encoding);
        if point == -point {
            let mut negative_zero = encoding;
            negative_zero[31] |= 0x80;
            encodings.push(negative_zero);
        }
    }
    encodings
});

/// Whether the R half of `signature` can be left to the batch equation: strict verification
/// compares R's bytes with the canonical encoding it computes and refuses small-order R, while
/// the batch equation decodes R leniently. R failing this is refused by the single check.
fn r_is_batchable(signature: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    y_is_canonical(&r) && !SMALL_ORDER_R.contains(&r)
}

/// Whether the little-endian y (the low 255 bits) is below p = 2^255 - 19. The only
/// non-canonical values are p..2^255 - 1: top byte 0x7f, middle bytes 0xff, low byte ≥ 0xed.
fn y_is_canonical(encoding: &[u8; 32]) -> bool {
    let top = encoding[31] & 0x7f;
    let middle_all_ones = encoding[1..31].iter().all(|&b| b == 0xff);
    !(top == 0x7f && middle_all_ones && encoding[0] >= 0xed)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // test fixtures; the code under test is checked
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::ids::{AccountId, IntentId};
    use crate::intent::{Action, Intent, signed_message};
    use crate::keys::{PublicKey, Signature};
    use crate::unit::UnitCode;
    use ed25519_dalek::SigningKey;
    use sha2::{Digest as _, Sha512};

    const NOW_MS: TimestampMs = 1_900_000_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn payment(key: &SigningKey, minor: i64, not_after: i64) -> SignedIntent {
        let intent = Intent {
            intent_id: IntentId::new(),
            not_after,
            signer: PublicKey::of(key),
            action: Action::Payment {
                from: AccountId::new(),
                to: AccountId::new(),
                unit: UnitCode::new("PGI-EUR").unwrap(),
                amount_minor: Amount::from_minor(minor).unwrap(),
                memo: String::new(),
                request: None,
            },
        };
        SignedIntent::sign(intent, key).unwrap()
    }

    fn valid_batch(n: usize) -> Vec<SignedIntent> {
        (0..n)
            .map(|i| payment(&key((i % 7) as u8 + 1), 100 + i as i64, 2_000_000_000))
            .collect()
    }

    fn at_now(intents: &[SignedIntent]) -> Vec<(SignedIntent, TimestampMs)> {
        intents.iter().map(|i| (i.clone(), NOW_MS)).collect()
    }

    #[test]
    fn valid_batch_verifies_like_single_verification() {
        let intents = valid_batch(20);
        let batched = verify_batch(at_now(&intents));
        let single: Vec<_> = intents.into_iter().map(|i| i.verify(NOW_MS)).collect();
        assert_eq!(batched, single);
        assert!(batched.iter().all(Result::is_ok));
    }

    /// `intent` with its amount changed after signing.
    fn tampered(intent: &SignedIntent, from: &str, to: &str) -> SignedIntent {
        let json = intent.to_json().replace(from, to);
        assert_ne!(json, intent.to_json(), "nothing was changed");
        SignedIntent::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn signers_keys_are_kept_once_they_verified_and_judge_as_before() {
        let keys = SignerKeys::new(100);
        let (alice, bob, mallory) = (key(1), key(2), key(3));
        let first = vec![
            payment(&alice, 100, 2_000_000_000),
            payment(&bob, 101, 2_000_000_000),
            payment(&alice, 102, 2_000_000_000),
        ];
        assert!(
            verify_batch_with(at_now(&first), &keys)
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(keys.len(), 2, "one per signer");
        // The batch's signers are looked up before any is kept: alice's second intent too.
        assert_eq!(keys.hits(), 0);
        // A signature that does not verify teaches nothing, alone or in a batch.
        let forged = tampered(
            &payment(&mallory, 100, 2_000_000_000),
            "\"amount_minor\":100",
            "\"amount_minor\":900",
        );
        let results = verify_batch_with(at_now(std::slice::from_ref(&forged)), &keys);
        assert!(matches!(results[0], Err(IntentError::BadSignature { .. })));
        assert_eq!(keys.len(), 2);
        // With keys kept, a batch is judged exactly as without: a kept signer's tampered
        // intent is refused and the rest pass.
        let second = vec![
            payment(&alice, 103, 2_000_000_000),
            tampered(
                &payment(&bob, 104, 2_000_000_000),
                "\"amount_minor\":104",
                "\"amount_minor\":5",
            ),
            forged,
            payment(&mallory, 105, 2_000_000_000),
        ];
        let with_kept = verify_batch_with(at_now(&second), &keys);
        assert_eq!(with_kept, verify_batch(at_now(&second)));
        let refused: Vec<bool> = with_kept.iter().map(Result::is_err).collect();
        assert_eq!(refused, [false, true, true, false]);
        assert_eq!(keys.len(), 3, "mallory's honest intent verified");
        assert_eq!(keys.hits(), 2, "alice's and bob's kept keys were used");
    }

    #[test]
    fn a_lone_intent_is_judged_as_verify_would_and_its_signer_kept() {
        let keys = SignerKeys::new(100);
        let alice = key(1);
        let lone = payment(&alice, 100, 2_000_000_000);
        let results = verify_batch_with(at_now(std::slice::from_ref(&lone)), &keys);
        assert_eq!(results, vec![lone.verify(NOW_MS)]);
        assert!(results[0].is_ok());
        assert_eq!(keys.len(), 1, "a key that verified alone is kept too");
    }

    /// The ed25519 challenge H(R || A || M) of `intent` signed by `key` with the given R, for
    /// crafting signatures by hand.
    fn challenge(
        r: &[u8; 32],
        key: &SigningKey,
        intent: &SignedIntent,
    ) -> curve25519_dalek::Scalar {
        let mut hasher = Sha512::new();
        hasher.update(r);
        hasher.update(PublicKey::of(key).0);
        hasher.update(signed_message(intent.canonical.as_bytes()));
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&hasher.finalize());
        curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide)
    }

    /// A holder can sign with R' = rB + T, T of order 2, and s = r + h·a: the strict check
    /// computes rB and refuses it, while a batch equation cancels T whenever its random
    /// coefficient is even. Alone, an intent gets the strict check every time (with a
    /// batch equation of one, twenty such intents would all be refused 1 time in 2^20).
    #[test]
    fn a_lone_intent_with_a_torsion_component_is_always_refused() {
        let keys = SignerKeys::new(100);
        let k = key(6);
        let order_two = EIGHT_TORSION[4];
        let identity = curve25519_dalek::EdwardsPoint::default();
        assert!(order_two != identity && order_two + order_two == identity);
        for n in 0..20u64 {
            let mut crafted = payment(&k, 300 + n as i64, 2_000_000_000);
            let r = curve25519_dalek::Scalar::from(1_000 + n);
            let big_r = (curve25519_dalek::EdwardsPoint::mul_base(&r) + order_two)
                .compress()
                .to_bytes();
            let h = challenge(&big_r, &k, &crafted);
            let s = r + h * k.to_scalar();
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&big_r);
            signature[32..].copy_from_slice(s.as_bytes());
            crafted.signature = Signature(signature);
            assert!(
                r_is_batchable(&signature),
                "the batch equation would judge it"
            );
            let results = verify_batch_with(at_now(std::slice::from_ref(&crafted)), &keys);
            assert!(
                matches!(results[0], Err(IntentError::BadSignature { .. })),
                "{n}: {results:?}"
            );
        }
    }

    #[test]
    fn batch_with_one_tampered_intent_refuses_exactly_that_one() {
        let mut intents = valid_batch(10);
        intents[4] = tampered(&intents[4], "\"amount_minor\":104", "\"amount_minor\":999");
        let results = verify_batch(at_now(&intents));
        for (i, result) in results.iter().enumerate() {
            if i == 4 {
                assert!(
                    matches!(result, Err(IntentError::BadSignature { .. })),
                    "{result:?}"
                );
            } else {
                assert_eq!(result.as_ref().unwrap().signed(), &intents[i]);
            }
        }
    }

    #[test]
    fn expired_intent_in_a_batch_gets_the_expired_error() {
        let mut intents = valid_batch(5);
        intents[2] = payment(&key(9), 100, 1_800_000_000);
        let results = verify_batch(at_now(&intents));
        assert_eq!(
            results[2],
            Err(IntentError::Expired {
                not_after: 1_800_000_000,
                now: NOW_MS / 1000
            })
        );
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
    }

    #[test]
    fn each_intent_is_checked_against_its_own_time() {
        let intents = valid_batch(2);
        let late = 2_000_000_001_000;
        let results = verify_batch(vec![
            (intents[0].clone(), NOW_MS),
            (intents[1].clone(), late),
        ]);
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(IntentError::Expired { .. })));
    }

    #[test]
    fn batches_larger_than_the_maximum_are_split_and_keep_their_order() {
        let n = MAX_VERIFY_BATCH + 3;
        let mut intents = valid_batch(n);
        intents[MAX_VERIFY_BATCH + 1] = payment(&key(9), 100, 1_800_000_000);
        let results = verify_batch(at_now(&intents));
        assert_eq!(results.len(), n);
        for (i, (result, intent)) in results.iter().zip(&intents).enumerate() {
            match result {
                Ok(verified) => assert_eq!(verified.signed(), intent),
                Err(_) => assert_eq!(i, MAX_VERIFY_BATCH + 1),
            }
        }
        assert!(verify_batch(Vec::new()).is_empty());
    }

    /// A key's owner can sign with R = the identity point: s = h·a makes the batch equation
    /// hold, and only strict verification's small-order check refuses it. The batch must too.
    #[test]
    fn identity_r_signature_is_refused_as_strict_verification_refuses_it() {
        let k = key(5);
        let honest = payment(&k, 100, 2_000_000_000);
        let mut crafted = payment(&k, 200, 2_000_000_000);
        let mut r = [0u8; 32];
        r[0] = 1; // y = 1, x = 0: the identity
        let message = signed_message(crafted.canonical.as_bytes());
        let h = challenge(&r, &k, &crafted);
        let s = h * k.to_scalar();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r);
        signature[32..].copy_from_slice(s.as_bytes());
        crafted.signature = Signature(signature);
        let key = VerifyingKey::from_bytes(&PublicKey::of(&k).0).unwrap();
        let dalek_signature = ed25519_dalek::Signature::from_bytes(&signature);
        assert!(
            ed25519_dalek::verify_batch(&[message.as_slice()], &[dalek_signature], &[key]).is_ok(),
            "the raw batch equation accepts it; this is what the R check is for"
        );
        let results = verify_batch(at_now(&[honest.clone(), crafted.clone()]));
        assert_eq!(results[0].as_ref().unwrap().signed(), &honest);
        assert_eq!(
            results[1].clone().map(|_| ()),
            crafted.verify(NOW_MS).map(|_| ())
        );
        assert!(matches!(results[1], Err(IntentError::BadSignature { .. })));
    }

    #[test]
    fn small_order_and_non_canonical_r_are_left_to_the_single_check() {
        assert_eq!(SMALL_ORDER_R.len(), 10);
        for encoding in SMALL_ORDER_R.iter() {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(encoding);
            assert!(!r_is_batchable(&signature));
        }
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(!y_is_canonical(&non_canonical));
        non_canonical[0] = 0xec; // p - 1
        assert!(y_is_canonical(&non_canonical));
        let honest = payment(&key(1), 100, 2_000_000_000);
        assert!(r_is_batchable(&honest.signature.0));
    }
}
