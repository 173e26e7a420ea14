//! The journal export (`coledger-journal` v1): every committed entry with what an auditor needs
//! to re-verify it without us, as JSON lines. Writing and strict reading live here together,
//! so the two cannot drift; [`super::audit`] checks what is read.
//!
//! Line 1 is a header; then one line per entry, in commit order:
//!
//! ```text
//! {"count":2,"exported_at":1795305600000,"format":"coledger-journal","heads":[{"hash":"…","seq":2,"unit":"PGI-EUR"}],"units":[{"code":"PGI-EUR","kind":"voucher","name":"…","scale":2}],"version":1}
//! {"entry":"{\"authorisation\":…}","intent":{"body":"{\"action\":…}","signature":"…","signer":"…"},"links":[{"hash":"…","seq":1,"unit":"PGI-EUR"}],"position":1}
//! ```
//!
//! - `entry` is the entry's canonical JSON *as a string*: its UTF-8 bytes are exactly what the
//!   chain hashes, `hash(n) = SHA-256(hash(n−1) ‖ entry)`.
//! - `intent.body` is the signed intent's canonical JSON as a string: the signature covers
//!   `"coledger/v1\n"` followed by its UTF-8 bytes. `signer` and `signature` are as stored
//!   (unpadded base64url).
//! - `links` are the entry's places in each unit's chain, in unit-code order, with the stored
//!   hashes (lowercase hex).
//!
//! Each line is itself RFC 8785 canonical JSON (members sorted, no whitespace). A reader
//! refuses unknown members, lines over [`MAX_LINE_BYTES`] and more than
//! [`crate::entry::MAX_POSTINGS`] links.

use serde::Deserialize;

use crate::canonical::write_string;
use crate::journal::{Digest, JournalLink};
use crate::keys::{PublicKey, Signature};
use crate::unit::{UnitCode, UnitKind};

/// The `format` member of the header.
pub const FORMAT: &str = "coledger-journal";
/// The `version` member of the header; a reader refuses any other.
pub const VERSION: u32 = 1;
/// The longest line a reader accepts, in bytes (newline excluded). The largest entry (128
/// postings, a 280-character memo) with its 16 KiB intent, both escaped inside strings, stays
/// well below it.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Why a line is not a well-formed export line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("the line is {bytes} bytes long; the most is {MAX_LINE_BYTES}")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// Not JSON, not the expected object, or an unknown member.
    #[error("{0}")]
    Json(String),
    /// The header names another format or version.
    #[error("expected format {FORMAT:?} version {VERSION}, found {format:?} version {version}")]
    UnsupportedFormat {
        /// The `format` found.
        format: String,
        /// The `version` found.
        version: u32,
    },
    /// More links than an entry can have.
    #[error("{found} links; an entry has at most {max}")]
    TooManyLinks {
        /// Links found.
        found: usize,
        /// The most allowed.
        max: usize,
    },
}

/// A unit as the header lists it (for display; the chain does not cover it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportUnit {
    /// The code.
    pub code: UnitCode,
    /// What kind of unit.
    pub kind: UnitKind,
    /// Its name.
    pub name: String,
    /// Decimal places of its minor unit.
    pub scale: u8,
}

/// The first line: what the file is and what it should hold.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Entries that follow.
    pub count: u64,
    /// When the snapshot was read, in ms since the epoch.
    pub exported_at: i64,
    /// [`FORMAT`].
    pub format: String,
    /// The last link of every unit that has one, in unit-code order: where each chain ends.
    #[serde(deserialize_with = "links")]
    pub heads: Vec<JournalLink>,
    /// Every unit, in code order.
    pub units: Vec<ExportUnit>,
    /// [`VERSION`].
    pub version: u32,
}

/// The signed intent of an exported entry, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportIntent {
    /// Its canonical JSON: the signed bytes after `"coledger/v1\n"`.
    pub body: String,
    /// The signature.
    pub signature: Signature,
    /// The signing key, as stored beside the body.
    pub signer: PublicKey,
}

/// One entry line, as read (nothing checked yet beyond its shape).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    /// The entry's canonical JSON, exactly as hashed.
    pub entry: String,
    /// The intent that authorised it.
    pub intent: ExportIntent,
    /// Its links, as stored.
    #[serde(deserialize_with = "links")]
    pub links: Vec<JournalLink>,
    /// Its global commit position, from 1.
    pub position: u64,
}

/// A link on the wire: exactly these three members.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkWire {
    hash: Digest,
    seq: u64,
    unit: UnitCode,
}

fn links<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<JournalLink>, D::Error> {
    let wire = Vec::<LinkWire>::deserialize(deserializer)?;
    Ok(wire
        .into_iter()
        .map(|l| JournalLink {
            unit: l.unit,
            seq: l.seq,
            hash: l.hash,
        })
        .collect())
}

fn parse<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong { bytes: line.len() });
    }
    serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))
}

/// Reads the header line.
pub fn parse_header(line: &[u8]) -> Result<ExportHeader, LineError> {
    let header: ExportHeader = parse(line)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(LineError::UnsupportedFormat {
            format: header.format.chars().take(40).collect(),
            version: header.version,
        });
    }
    Ok(header)
}

/// Reads an entry line.
pub fn parse_entry(line: &[u8]) -> Result<ExportedEntry, LineError> {
    let exported: ExportedEntry = parse(line)?;
    if exported.links.len() > crate::entry::MAX_POSTINGS {
        return Err(LineError::TooManyLinks {
            found: exported.links.len(),
            max: crate::entry::MAX_POSTINGS,
        });
    }
    Ok(exported)
}

fn write_links(out: &mut Vec<u8>, links: &[JournalLink]) {
    out.push(b'[');
    for (i, link) in links.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"hash\":\"");
        out.extend_from_slice(link.hash.to_hex().as_bytes());
        out.extend_from_slice(b"\",\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(link.seq).as_bytes());
        out.extend_from_slice(b",\"unit\":\"");
        out.extend_from_slice(link.unit.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
}

/// Appends the header line (with its newline) to `out`.
pub fn write_header(out: &mut Vec<u8>, header: &ExportHeader) {
    out.extend_from_slice(b"{\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(header.count).as_bytes());
    out.extend_from_slice(b",\"exported_at\":");
    out.extend_from_slice(itoa::Buffer::new().format(header.exported_at).as_bytes());
    out.extend_from_slice(b",\"format\":");
    write_string(out, &header.format);
    out.extend_from_slice(b",\"heads\":");
    write_links(out, &header.heads);
    out.extend_from_slice(b",\"units\":[");
    for (i, unit) in header.units.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"code\":\"");
        out.extend_from_slice(unit.code.as_str().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(unit.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        write_string(out, &unit.name);
        out.extend_from_slice(b",\"scale\":");
        out.extend_from_slice(itoa::Buffer::new().format(unit.scale).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"version\":");
    out.extend_from_slice(itoa::Buffer::new().format(header.version).as_bytes());
    out.extend_from_slice(b"}\n");
}

/// Appends an entry line (with its newline) to `out`: `entry` is the entry's canonical JSON
/// ([`super::canonical_entry_bytes`]), `intent` the stored signed intent.
pub fn write_entry(
    out: &mut Vec<u8>,
    position: u64,
    entry: &str,
    intent: &ExportIntent,
    links: &[JournalLink],
) {
    out.extend_from_slice(b"{\"entry\":");
    write_string(out, entry);
    out.extend_from_slice(b",\"intent\":{\"body\":");
    write_string(out, &intent.body);
    out.extend_from_slice(b",\"signature\":\"");
    out.extend_from_slice(intent.signature.to_base64url().as_bytes());
    out.extend_from_slice(b"\",\"signer\":\"");
    out.extend_from_slice(intent.signer.to_base64url().as_bytes());
    out.extend_from_slice(b"\"},\"links\":");
    write_links(out, links);
    out.extend_from_slice(b",\"position\":");
    out.extend_from_slice(itoa::Buffer::new().format(position).as_bytes());
    out.extend_from_slice(b"}\n");
}
