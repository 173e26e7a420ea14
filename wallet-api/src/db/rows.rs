//! Stored rows to domain values. Every value read back goes through the same validating
//! constructors as a value from a client, so a corrupt or hand-edited row is caught on read.

use ledger::journal::{Digest, JournalLink};
use ledger::{
    Account, AccountId, AccountKind, AccountStatus, Amount, Authorisation, EntryError, EntryId,
    EntryKind, IntentId, JournalEntry, Limits, Posting, PublicKey, Signature, Tags, Unit, UnitCode,
    UnitKind,
};
use uuid::Uuid;

use super::{DbError, StoredEntries};

fn corrupt(table: &'static str, reason: impl std::fmt::Display) -> DbError {
    DbError::CorruptRow {
        table,
        reason: reason.to_string(),
    }
}

fn fixed<const N: usize>(
    table: &'static str,
    what: &str,
    bytes: &[u8],
) -> Result<[u8; N], DbError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(table, format!("{what} has {} bytes, not {N}", bytes.len())))
}

fn unit_code(table: &'static str, text: &str) -> Result<UnitCode, DbError> {
    UnitCode::new(text).map_err(|e| corrupt(table, e))
}

/// A `unit` row.
pub(super) fn unit(
    code: &str,
    name: &str,
    scale: i64,
    kind: &str,
    peg: Option<&str>,
) -> Result<Unit, DbError> {
    let kind = UnitKind::parse(kind).ok_or_else(|| corrupt("unit", format!("kind {kind:?}")))?;
    let scale = u8::try_from(scale).map_err(|_| corrupt("unit", format!("scale {scale}")))?;
    Unit::new(unit_code("unit", code)?, name, scale, kind, peg).map_err(|e| corrupt("unit", e))
}

/// The columns of an `account` row.
pub(super) struct AccountRow<'a> {
    pub id: Uuid,
    pub unit: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    pub lower_limit: Option<i64>,
    pub upper_limit: Option<i64>,
    pub authority: Option<&'a [u8]>,
}

/// An `account` row.
pub(super) fn account(row: AccountRow<'_>) -> Result<Account, DbError> {
    let kind = AccountKind::parse(row.kind)
        .ok_or_else(|| corrupt("account", format!("kind {:?}", row.kind)))?;
    let status = AccountStatus::parse(row.status)
        .ok_or_else(|| corrupt("account", format!("status {:?}", row.status)))?;
    let limits =
        Limits::new(row.lower_limit, row.upper_limit).map_err(|e| corrupt("account", e))?;
    let authority = match row.authority {
        Some(bytes) => Some(PublicKey(fixed("account", "authority", bytes)?)),
        None => None,
    };
    Ok(Account {
        id: AccountId(row.id),
        unit: unit_code("account", row.unit)?,
        kind,
        status,
        limits,
        authority,
    })
}

/// A `journal` row.
pub(super) fn link(unit: &str, seq: i64, hash: &[u8]) -> Result<JournalLink, DbError> {
    Ok(JournalLink {
        unit: unit_code("journal", unit)?,
        seq: u64::try_from(seq).map_err(|_| corrupt("journal", format!("seq {seq}")))?,
        hash: Digest(fixed("journal", "hash", hash)?),
    })
}

/// The entry and intent columns of a joined entry row.
pub(super) struct EntryRow {
    pub position: i64,
    pub id: Uuid,
    pub kind: String,
    pub memo: String,
    pub tags: String,
    pub created_at: i64,
    pub intent_id: Uuid,
    pub signer: Vec<u8>,
    pub digest: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The posting columns of a joined entry row.
pub(super) struct PostingRow {
    pub idx: i64,
    pub unit: String,
    pub debit: Uuid,
    pub credit: Uuid,
    pub amount_minor: i64,
}

/// Groups joined rows (one per posting, ordered by position and index) into entries.
pub(super) fn group_entries(rows: Vec<(EntryRow, PostingRow)>) -> Result<StoredEntries, DbError> {
    let mut out = Vec::new();
    let mut current: Option<(EntryRow, Vec<Posting>)> = None;
    for (head, posting) in rows {
        if current
            .as_ref()
            .is_some_and(|(h, _)| h.position != head.position)
            && let Some((h, postings)) = current.take()
        {
            out.push(finish_entry(h, postings)?);
        }
        let (_, postings) = current.get_or_insert_with(|| (head, Vec::new()));
        if usize::try_from(posting.idx).ok() != Some(postings.len()) {
            return Err(corrupt(
                "posting",
                format!("index {} out of order", posting.idx),
            ));
        }
        postings.push(Posting {
            unit: unit_code("posting", &posting.unit)?,
            debit: AccountId(posting.debit),
            credit: AccountId(posting.credit),
            amount: Amount::from_minor(posting.amount_minor).map_err(|e| corrupt("posting", e))?,
        });
    }
    if let Some((h, postings)) = current {
        out.push(finish_entry(h, postings)?);
    }
    Ok(out)
}

fn finish_entry(
    head: EntryRow,
    postings: Vec<Posting>,
) -> Result<(i64, Result<JournalEntry, EntryError>), DbError> {
    let kind = EntryKind::parse(&head.kind)
        .ok_or_else(|| corrupt("entry", format!("kind {:?}", head.kind)))?;
    let tags: Tags = serde_json::from_str(&head.tags).map_err(|e| corrupt("entry", e))?;
    let authorisation = Authorisation {
        intent_id: IntentId(head.intent_id),
        signer: PublicKey(fixed("intent", "signer", &head.signer)?),
        digest: Digest(fixed("intent", "digest", &head.digest)?),
        signature: Signature(fixed("intent", "signature", &head.signature)?),
    };
    let entry = JournalEntry::new(
        EntryId(head.id),
        kind,
        postings,
        head.memo,
        tags,
        authorisation,
        head.created_at,
    );
    Ok((head.position, entry))
}

/// Flattened posting rows of a batch: (entry position, index, posting).
pub(super) fn postings_of(entries: &[super::CommittedEntry]) -> Vec<(i64, i16, &Posting)> {
    entries
        .iter()
        .flat_map(|c| {
            c.entry
                .postings()
                .iter()
                .enumerate()
                // MAX_POSTINGS (128) fits in i16.
                .map(move |(i, p)| (c.position, i16::try_from(i).unwrap_or(i16::MAX), p))
        })
        .collect()
}

/// Flattened journal rows of a batch: (entry position, link).
pub(super) fn links_of(entries: &[super::CommittedEntry]) -> Vec<(i64, &JournalLink)> {
    entries
        .iter()
        .flat_map(|c| c.links.iter().map(move |l| (c.position, l)))
        .collect()
}

/// A link's sequence as stored (BIGINT).
pub(super) fn seq_i64(link: &JournalLink) -> i64 {
    i64::try_from(link.seq).unwrap_or(i64::MAX)
}

/// Tags as stored: their JSON (`{}` when there are none, the common case, without serialising).
pub fn tags_json(tags: &ledger::Tags) -> String {
    if *tags == ledger::Tags::default() {
        return "{}".to_owned();
    }
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}
