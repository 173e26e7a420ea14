//! The tamper-evident journal: per unit, committed entries form a hash chain
//! `hash(n) = SHA-256(hash(n-1) || canonical JSON of entry n)`, starting from 32 zero bytes.
//! An entry spanning several units (a conversion) is linked into each unit's chain, in unit
//! code order, with the same canonical bytes.

pub mod audit;
pub mod checkpoint;
pub mod export;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::canonical::write_string;
use crate::entry::JournalEntry;
use crate::unit::UnitCode;

/// A SHA-256 digest; lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.push_hex(&mut out);
        // Hex digits are ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the lowercase hex to `out`, without a `String` of its own.
    fn push_hex(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.reserve(64);
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0xf)]);
        }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = text.get(i.checked_mul(2)?..i.checked_mul(2)?.checked_add(2)?)?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// The end of one unit's chain: the last sequence number and its hash (0 and zeros if empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the last entry (the first entry is 1).
    pub seq: u64,
    /// Its hash.
    pub hash: Digest,
}

/// An entry's place in one unit's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLink {
    /// The unit.
    pub unit: UnitCode,
    /// Sequence number within the unit.
    pub seq: u64,
    /// `SHA-256(previous hash || canonical entry)`.
    pub hash: Digest,
}

/// Why a stored chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A stored link's sequence is not the next one.
    #[error("unit {unit}: expected sequence {expected}, found {found}")]
    Gap {
        /// The unit.
        unit: UnitCode,
        /// The next sequence number.
        expected: u64,
        /// The stored one.
        found: u64,
    },
    /// A stored hash differs from the recomputed one: the entry or an earlier one was altered.
    #[error("unit {unit}: hash mismatch at sequence {seq}")]
    HashMismatch {
        /// The unit.
        unit: UnitCode,
        /// Where.
        seq: u64,
    },
    /// The entry's links do not name exactly its units.
    #[error("entry links name units {found:?} but its postings touch {expected:?}")]
    WrongUnits {
        /// Units of the postings.
        expected: Vec<UnitCode>,
        /// Units of the stored links.
        found: Vec<UnitCode>,
    },
}

/// Appends `bytes` as unpadded base64url to `out`, without a `String` of its own (this runs
/// for every payment).
fn push_base64url(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), false).unwrap_or(0);
    out.resize(start.saturating_add(len), 0);
    let written = out
        .get_mut(start..)
        .and_then(|tail| URL_SAFE_NO_PAD.encode_slice(bytes, tail).ok())
        .unwrap_or(0);
    out.truncate(start.saturating_add(written));
}

/// The canonical bytes of an entry: the RFC 8785 JSON of its serde form.
///
/// Written directly rather than through `serde_json::Value` (which allocates a map per
/// object and a string per key): this runs once per committed entry. Members appear in
/// RFC 8785 order (all names are ASCII, so byte order is UTF-16 order) and every number is a
/// safe integer by construction (`Amount` and `created_at` are bounded), so the result is
/// byte-for-byte what [`crate::canonical::to_canonical_bytes`] gives; a property test holds
/// the two together.
pub fn canonical_entry_bytes(entry: &JournalEntry) -> Vec<u8> {
    // A single-posting payment is ~560 bytes; start big enough that it never regrows.
    let mut out = Vec::with_capacity(1024);
    let auth = entry.authorisation();
    out.extend_from_slice(b"{\"authorisation\":{\"digest\":\"");
    auth.digest.push_hex(&mut out);
    out.extend_from_slice(b"\",\"intent_id\":");
    write_uuid(&mut out, &auth.intent_id.0);
    out.extend_from_slice(b",\"signature\":\"");
    push_base64url(&mut out, &auth.signature.0);
    out.extend_from_slice(b"\",\"signer\":\"");
    push_base64url(&mut out, &auth.signer.0);
    out.extend_from_slice(b"\"},\"created_at\":");
    out.extend_from_slice(itoa::Buffer::new().format(entry.created_at()).as_bytes());
    out.extend_from_slice(b",\"id\":");
    write_uuid(&mut out, &entry.id().0);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(entry.kind().as_str().as_bytes());
    out.extend_from_slice(b"\",\"memo\":");
    write_string(&mut out, entry.memo());
    out.extend_from_slice(b",\"postings\":[");
    for (i, posting) in entry.postings().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"amount\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(posting.amount.minor())
                .as_bytes(),
        );
        out.extend_from_slice(b",\"credit\":");
        write_uuid(&mut out, &posting.credit.0);
        out.extend_from_slice(b",\"debit\":");
        write_uuid(&mut out, &posting.debit.0);
        out.extend_from_slice(b",\"unit\":\"");
        out.extend_from_slice(posting.unit.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"],\"tags\":{");
    let tags = entry.tags();
    let present = [
        ("budget_line", &tags.budget_line),
        ("category", &tags.category),
        ("programme", &tags.programme),
    ];
    let mut first = true;
    for (name, value) in present {
        if let Some(value) = value {
            if !first {
                out.push(b',');
            }
            first = false;
            write_string(&mut out, name);
            out.push(b':');
            write_string(&mut out, value);
        }
    }
    // "reverses" sorts after every other tag name.
    if let Some(original) = tags.reverses {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"reverses\":");
        write_uuid(&mut out, &original.0);
    }
    out.extend_from_slice(b"}}");
    out
}

fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// `SHA-256(prev || canonical)`.
pub fn chain_hash(prev: &Digest, canonical: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(prev.0);
    hasher.update(canonical);
    Digest(hasher.finalize().into())
}

/// The heads of every unit's chain.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    heads: HashMap<UnitCode, ChainHead>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The head of `unit`'s chain.
    pub fn head(&self, unit: UnitCode) -> ChainHead {
        self.heads.get(&unit).copied().unwrap_or_default()
    }

    /// Every unit's head.
    pub fn heads(&self) -> &HashMap<UnitCode, ChainHead> {
        &self.heads
    }

    /// Links `entry` into the chain of each unit it touches and returns the new links.
    pub fn append(&mut self, entry: &JournalEntry) -> Vec<JournalLink> {
        self.append_canonical(&entry.units(), &canonical_entry_bytes(entry))
    }

    /// [`Journal::append`] with the canonical bytes computed beforehand, so the expensive
    /// serialisation can run on the submitting task rather than on the single writer.
    /// `units` must be `entry.units()` of the entry `canonical` encodes.
    pub fn append_canonical(&mut self, units: &[UnitCode], canonical: &[u8]) -> Vec<JournalLink> {
        let mut links = Vec::with_capacity(units.len());
        for &unit in units {
            let head = self.heads.entry(unit).or_default();
            head.seq = head.seq.saturating_add(1);
            head.hash = chain_hash(&head.hash, canonical);
            links.push(JournalLink {
                unit,
                seq: head.seq,
                hash: head.hash,
            });
        }
        links
    }

    /// Re-links a stored entry and checks that the stored links are exactly what we compute.
    pub fn verify_append(
        &mut self,
        entry: &JournalEntry,
        stored: &[JournalLink],
    ) -> Result<(), ChainError> {
        let expected_units = entry.units();
        let found_units: Vec<UnitCode> = stored.iter().map(|l| l.unit).collect();
        if expected_units != found_units {
            return Err(ChainError::WrongUnits {
                expected: expected_units,
                found: found_units,
            });
        }
        for link in stored {
            let next = self.head(link.unit).seq.saturating_add(1);
            if link.seq != next {
                return Err(ChainError::Gap {
                    unit: link.unit,
                    expected: next,
                    found: link.seq,
                });
            }
        }
        let computed = self.append(entry);
        for (ours, theirs) in computed.iter().zip(stored) {
            if ours.hash != theirs.hash {
                return Err(ChainError::HashMismatch {
                    unit: ours.unit,
                    seq: ours.seq,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::entry::tests::test_authorisation;
    use crate::entry::{EntryKind, Posting, Tags};
    use crate::ids::{AccountId, EntryId};

    #[test]
    fn base64url_and_hex_are_appended_as_the_string_forms_spell_them() {
        for len in [0usize, 1, 2, 3, 4, 31, 32, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut out = b"prefix:".to_vec();
            push_base64url(&mut out, &bytes);
            assert_eq!(
                out,
                format!("prefix:{}", URL_SAFE_NO_PAD.encode(&bytes)).into_bytes()
            );
        }
        let digest = Digest::of(b"coledger");
        let mut out = b"x".to_vec();
        digest.push_hex(&mut out);
        assert_eq!(out, format!("x{}", digest.to_hex()).into_bytes());
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
    }

    fn entry(units: &[&str]) -> JournalEntry {
        let postings = units
            .iter()
            .map(|u| Posting {
                unit: UnitCode::new(u).unwrap(),
                debit: AccountId::new(),
                credit: AccountId::new(),
                amount: Amount::from_minor(3).unwrap(),
            })
            .collect();
        JournalEntry::new(
            EntryId::new(),
            EntryKind::Convert,
            postings,
            "m".into(),
            Tags::default(),
            test_authorisation(),
            1,
        )
        .unwrap()
    }

    #[test]
    fn chain_links_each_unit_in_order() {
        let mut journal = Journal::new();
        let first = journal.append(&entry(&["PTS"]));
        let second = journal.append(&entry(&["PTS", "EUR-V"]));
        assert_eq!(first[0].seq, 1);
        assert_eq!(second.len(), 2);
        assert_eq!(second[0].unit.as_str(), "EUR-V");
        assert_eq!(second[0].seq, 1);
        assert_eq!(second[1].seq, 2);
        assert_eq!(
            journal.head(UnitCode::new("PTS").unwrap()).hash,
            second[1].hash
        );
    }

    #[test]
    fn verification_detects_tampering_and_gaps() {
        let entries = [entry(&["PTS"]), entry(&["PTS"])];
        let mut writer = Journal::new();
        let links: Vec<_> = entries.iter().map(|e| writer.append(e)).collect();

        let mut reader = Journal::new();
        reader.verify_append(&entries[0], &links[0]).unwrap();
        reader.verify_append(&entries[1], &links[1]).unwrap();

        let mut tampered_reader = Journal::new();
        let mut bad = links[0].clone();
        bad[0].hash.0[0] ^= 1;
        assert!(matches!(
            tampered_reader.verify_append(&entries[0], &bad),
            Err(ChainError::HashMismatch { seq: 1, .. })
        ));

        let mut gap_reader = Journal::new();
        assert!(matches!(
            gap_reader.verify_append(&entries[1], &links[1]),
            Err(ChainError::Gap {
                expected: 1,
                found: 2,
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn direct_canonical_bytes_equal_generic_rfc8785(
            memo in "\\PC{0,40}",
            programme in proptest::option::of("[a-z\u{600}-\u{6ff}\"\\\\]{0,10}"),
            category in proptest::option::of("\\PC{0,10}"),
            amounts in proptest::collection::vec(1..=crate::amount::MAX_MINOR, 1..4),
            created_at in 0..=crate::canonical::MAX_SAFE_INTEGER,
            kind in proptest::sample::select(EntryKind::ALL.to_vec()),
        ) {
            let postings = amounts.iter().map(|&minor| Posting {
                unit: UnitCode::new("PGI-EUR").unwrap(),
                debit: AccountId::new(),
                credit: AccountId::new(),
                amount: Amount::from_minor(minor).unwrap(),
            }).collect();
            // A link is only allowed on a single-posting reversal; give one to every such entry.
            let reverses = (kind == EntryKind::Reversal && amounts.len() == 1).then(EntryId::new);
            let tags = Tags { programme, budget_line: None, category, reverses };
            let entry = JournalEntry::new(EntryId::new(), kind, postings, memo, tags, test_authorisation(), created_at).unwrap();
            let generic = crate::canonical::to_canonical_bytes(&serde_json::to_value(&entry).unwrap()).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(canonical_entry_bytes(&entry)).unwrap(), String::from_utf8(generic).unwrap());
        }
    }

    #[test]
    fn a_refunds_link_is_in_its_canonical_bytes() {
        let original = EntryId::new();
        let posting = Posting {
            unit: UnitCode::new("PGI-EUR").unwrap(),
            debit: AccountId::new(),
            credit: AccountId::new(),
            amount: Amount::from_minor(450).unwrap(),
        };
        let tags = Tags {
            category: Some("5411".into()),
            reverses: Some(original),
            ..Tags::default()
        };
        let entry = JournalEntry::new(
            EntryId::new(),
            EntryKind::Reversal,
            vec![posting],
            String::new(),
            tags,
            test_authorisation(),
            5,
        )
        .unwrap();
        let bytes = String::from_utf8(canonical_entry_bytes(&entry)).unwrap();
        assert!(
            bytes.ends_with(&format!(
                "\"tags\":{{\"category\":\"5411\",\"reverses\":\"{original}\"}}}}"
            )),
            "{bytes}"
        );
        let generic =
            crate::canonical::to_canonical_bytes(&serde_json::to_value(&entry).unwrap()).unwrap();
        assert_eq!(bytes.as_bytes(), generic.as_slice());
    }

    #[test]
    fn digest_hex_round_trips() {
        let digest = Digest::of(b"abc");
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}
