//! Stored rows to domain values. Every value read back goes through the same validating
//! constructors as a value from a client, so a corrupt or hand-edited row is caught on read.

use ledger::journal::{Digest, JournalLink};
use ledger::{
    Account, AccountId, AccountKind, AccountStatus, Amount, Authorisation, EntryError, EntryId,
    EntryKind, IntentId, JournalEntry, Limits, ParticipantId, Posting, PublicKey, Signature, Tags,
    Unit, UnitCode, UnitKind,
};
use uuid::Uuid;

use super::{DbError, OwnedAccount, StoredEntries};

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

// Reading the ledger back. The SQL is the same in both dialects, and each row arrives as a
// tuple (both drivers decode tuples), so the backends only run these queries and hand the
// rows here.

/// Every unit.
pub(super) const UNITS_SQL: &str =
    "select code, name, scale, kind, peg from unit order by created_at, code";
/// `unit` columns.
pub(super) type UnitRow = (String, String, i16, String, Option<String>);

/// Every account.
pub(super) const ACCOUNTS_SQL: &str = "select id, unit, kind, status, lower_limit, upper_limit, authority, \
     participant from account order by created_at, id";
/// `account` columns.
pub(super) type AccountRow = (
    Uuid,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Uuid>,
);

/// Entries that settled a payment request still payable at `$1` (ms), with what its
/// deadline is computed from. `$2` is `$1` less the longest a request lives: a cancelled
/// request's original deadline is gone, so it is kept as long as any request could be. An
/// entry naming a request with no row (no deadline known) is always read. Older ones stay
/// in storage: past its deadline a request cannot be paid anyway.
pub(super) const PAID_REQUESTS_SQL: &str = "select e.payment_request, e.position, \
     r.created_at, r.expires_at, r.cancelled_at from entry e \
     left join payment_request r on r.id = e.payment_request \
     where e.payment_request is not null \
     and (r.id is null or r.expires_at >= $1 or (r.cancelled_at is not null and r.created_at >= $2))";
/// Request id, the position of the entry that paid it, and the request's `created_at`,
/// `expires_at` and `cancelled_at` (null without a row).
pub(super) type PaidRow = (Uuid, i64, Option<i64>, Option<i64>, Option<i64>);

/// Every rule version of every programme, with what the unit's policy needs.
pub(super) const POLICY_SQL: &str = "select p.unit, p.administrator, p.clearing_account, \
     p.fee_account, r.effective_from, r.rules from programme p \
     join programme_rules r on r.programme = p.id order by p.unit, r.version";
/// Unit, administrator key, clearing and fee accounts, effective time, rules JSON.
pub(super) type PolicyRow = (String, Vec<u8>, Uuid, Uuid, i64, String);

/// Approved merchants' accounts with their category.
pub(super) const PAYEES_SQL: &str = "select m.account, pt.category_code \
     from programme_merchant m join participant pt on pt.id = m.participant \
     where m.status = 'approved' and m.account is not null";
/// Account and category code.
pub(super) type PayeeRow = (Option<Uuid>, Option<String>);

/// Each replaced card's account and the account of the card that replaced it, oldest
/// replacement first.
pub(super) const CARD_REPLACEMENTS_SQL: &str = "select old.account, new.account \
     from card old join card new on new.number = old.replaced_by \
     order by new.issued_at, new.number";
/// The replaced card's account, its replacement's.
pub(super) type CardReplacementRow = (Uuid, Uuid);

/// Card replacement rows to (replaced card's account, its replacement's).
pub(super) fn card_replacements(
    rows: Vec<CardReplacementRow>,
) -> Vec<(ledger::AccountId, ledger::AccountId)> {
    rows.into_iter()
        .map(|(old, new)| (ledger::AccountId(old), ledger::AccountId(new)))
        .collect()
}

/// Every journal link, in entry order (within an entry [`links`] puts them in byte order).
pub(super) const LINKS_SQL: &str =
    "select entry_position, unit, seq, hash from journal order by entry_position, unit";
/// `journal` columns.
pub(super) type LinkRow = (i64, String, i64, Vec<u8>);

/// The highest entry position, 0 when empty.
pub(super) const MAX_POSITION_SQL: &str = "select coalesce(max(position), 0) from entry";
/// The lowest and highest entry positions postings name, both null when there are none (two
/// ends of the primary key's first column).
pub(super) const POSTING_POSITIONS_SQL: &str =
    "select min(entry_position), max(entry_position) from posting";

/// [`POSTING_POSITIONS_SQL`]'s row as a range.
pub(super) fn posting_positions(row: (Option<i64>, Option<i64>)) -> Option<(i64, i64)> {
    row.0.zip(row.1)
}

/// Entries with `$1 < position <= $2`, one row per posting, in order. (SQLite numbers `$1`,
/// `$2` by first appearance, which is their order here.)
pub(super) const ENTRIES_SQL: &str = "select e.position, e.id, e.kind, e.memo, e.tags, e.created_at, \
            e.intent_id, e.signer, e.digest, e.signature, \
            p.idx, p.unit, p.debit, p.credit, p.amount_minor \
     from entry e join posting p on p.entry_position = e.position \
     where e.position > $1 and e.position <= $2 order by e.position, p.idx";
/// The signed intents stored with entries `$1 < position <= $2`, in order.
pub(super) const INTENT_BODIES_SQL: &str = "select position, intent_body from entry \
     where position > $1 and position <= $2 order by position";
/// The units that have stored checkpoints.
pub(super) const CHECKPOINT_UNITS_SQL: &str = "select distinct unit from journal_checkpoint";
/// One unit's stored checkpoints below sequence `$2`, newest first, at most `$3`: sequence
/// and body.
pub(super) const CHECKPOINTS_BELOW_SQL: &str = "select seq, body from journal_checkpoint \
     where unit = $1 and seq < $2 order by seq desc limit $3";
/// Posting links with `$1 < entry_position <= $2`, in the order of [`ENTRIES_SQL`]'s rows.
pub(super) const POSTING_LINKS_SQL: &str = "select entry_position, prev_debit, prev_credit \
     from posting where entry_position > $1 and entry_position <= $2 \
     order by entry_position, idx";

/// Rows of [`POSTING_LINKS_SQL`] to links by position.
pub(super) fn posting_links(
    rows: Vec<(i64, Option<i64>, Option<i64>)>,
) -> Vec<(i64, super::PostingLinks)> {
    rows.into_iter()
        .map(|(position, prev_debit, prev_credit)| {
            (
                position,
                super::PostingLinks {
                    prev_debit,
                    prev_credit,
                },
            )
        })
        .collect()
}

/// The entry columns (with its intent) of a joined row.
type EntryColumns = (
    i64,
    Uuid,
    String,
    String,
    String,
    i64,
    Uuid,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);
/// The posting columns of a joined row.
type PostingColumns = (i16, String, Uuid, Uuid, i64);
/// A joined entry-and-posting row (sqlx decodes tuples of up to 16 columns).
pub(super) type JoinedRow = (
    i64,
    Uuid,
    String,
    String,
    String,
    i64,
    Uuid,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i16,
    String,
    Uuid,
    Uuid,
    i64,
);

/// `unit` rows to units.
pub(super) fn units(rows: Vec<UnitRow>) -> Result<Vec<Unit>, DbError> {
    rows.into_iter()
        .map(|(code, name, scale, kind, peg)| {
            let kind =
                UnitKind::parse(&kind).ok_or_else(|| corrupt("unit", format!("kind {kind:?}")))?;
            let scale =
                u8::try_from(scale).map_err(|_| corrupt("unit", format!("scale {scale}")))?;
            Unit::new(
                unit_code("unit", &code)?,
                &name,
                scale,
                kind,
                peg.as_deref(),
            )
            .map_err(|e| corrupt("unit", e))
        })
        .collect()
}

/// A paid request as the load reads it: the request, the position of the entry that paid
/// it, and how long to keep it (`None`: for ever, its deadline is unknown).
pub(super) type PaidRequest = (ledger::PaymentRequestId, i64, Option<i64>);

/// Paid-request rows to paid requests, each with the latest deadline any check of it may
/// have read.
pub(super) fn paid_requests(rows: Vec<PaidRow>) -> Vec<PaidRequest> {
    rows.into_iter()
        .map(
            |(request, position, created_at, expires_at, cancelled_at)| {
                let deadline = created_at.zip(expires_at).map(|(created, expires)| {
                    super::service::latest_deadline(created, expires, cancelled_at)
                });
                (ledger::PaymentRequestId(request), position, deadline)
            },
        )
        .collect()
}

/// `account` rows to accounts.
pub(super) fn accounts(rows: Vec<AccountRow>) -> Result<Vec<OwnedAccount>, DbError> {
    rows.into_iter()
        .map(
            |(id, unit, kind, status, lower_limit, upper_limit, authority, owner)| {
                let kind = AccountKind::parse(&kind)
                    .ok_or_else(|| corrupt("account", format!("kind {kind:?}")))?;
                let status = AccountStatus::parse(&status)
                    .ok_or_else(|| corrupt("account", format!("status {status:?}")))?;
                let limits =
                    Limits::new(lower_limit, upper_limit).map_err(|e| corrupt("account", e))?;
                let authority = match authority {
                    Some(bytes) => Some(PublicKey(fixed("account", "authority", &bytes)?)),
                    None => None,
                };
                let account = Account {
                    id: AccountId(id),
                    unit: unit_code("account", &unit)?,
                    kind,
                    status,
                    limits,
                    authority,
                };
                Ok((account, owner.map(ParticipantId)))
            },
        )
        .collect()
}

/// `journal` rows to links, with their entry positions.
pub(super) fn links(rows: Vec<LinkRow>) -> Result<Vec<(i64, JournalLink)>, DbError> {
    let mut links = rows
        .into_iter()
        .map(|(position, unit, seq, hash)| {
            let link = JournalLink {
                unit: unit_code("journal", &unit)?,
                seq: u64::try_from(seq).map_err(|_| corrupt("journal", format!("seq {seq}")))?,
                hash: Digest(fixed("journal", "hash", &hash)?),
            };
            Ok((position, link))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    // An entry's links follow its units' byte order (`Entry::units`). The query's `order by
    // unit` follows the database's collation, which on PostgreSQL may ignore punctuation and
    // put EURO before EUR-V: a false alarm of a broken chain at start. Already in order, the
    // sort is one pass.
    links.sort_by_key(|(position, link)| (*position, link.unit));
    Ok(links)
}

/// Joined rows (one per posting, ordered by position and index) to entries.
pub(super) fn entries(rows: Vec<JoinedRow>) -> Result<StoredEntries, DbError> {
    let mut out = Vec::new();
    let mut current: Option<(EntryColumns, Vec<Posting>)> = None;
    for (
        position,
        id,
        kind,
        memo,
        tags,
        created_at,
        intent_id,
        signer,
        digest,
        signature,
        idx,
        unit,
        debit,
        credit,
        amount_minor,
    ) in rows
    {
        if current.as_ref().is_some_and(|(head, _)| head.0 != position)
            && let Some((head, postings)) = current.take()
        {
            out.push(finish_entry(head, postings)?);
        }
        let head = (
            position, id, kind, memo, tags, created_at, intent_id, signer, digest, signature,
        );
        let (_, postings) = current.get_or_insert_with(|| (head, Vec::new()));
        let posting: PostingColumns = (idx, unit, debit, credit, amount_minor);
        if usize::try_from(posting.0).ok() != Some(postings.len()) {
            return Err(corrupt(
                "posting",
                format!("index {} out of order", posting.0),
            ));
        }
        postings.push(Posting {
            unit: unit_code("posting", &posting.1)?,
            debit: AccountId(posting.2),
            credit: AccountId(posting.3),
            amount: Amount::from_minor(posting.4).map_err(|e| corrupt("posting", e))?,
        });
    }
    if let Some((head, postings)) = current {
        out.push(finish_entry(head, postings)?);
    }
    Ok(out)
}

fn finish_entry(
    head: EntryColumns,
    postings: Vec<Posting>,
) -> Result<(i64, Result<JournalEntry, EntryError>), DbError> {
    let (position, id, kind, memo, tags, created_at, intent_id, signer, digest, signature) = head;
    let kind = EntryKind::parse(&kind).ok_or_else(|| corrupt("entry", format!("kind {kind:?}")))?;
    let tags: Tags = serde_json::from_str(&tags).map_err(|e| corrupt("entry", e))?;
    let authorisation = Authorisation {
        intent_id: IntentId(intent_id),
        signer: PublicKey(fixed("entry", "signer", &signer)?),
        digest: Digest(fixed("entry", "digest", &digest)?),
        signature: Signature(fixed("entry", "signature", &signature)?),
    };
    let entry = JournalEntry::new(
        EntryId(id),
        kind,
        postings,
        memo,
        tags,
        authorisation,
        created_at,
    );
    Ok((position, entry))
}

/// Flattened posting rows of a batch: (entry position, index, posting, its chain links).
pub(super) fn postings_of(
    entries: &[super::CommittedEntry],
) -> Vec<(i64, i16, &Posting, super::PostingLinks)> {
    entries
        .iter()
        .flat_map(|c| {
            // The writer links every posting it stages; a missing link would break a chain.
            assert_eq!(c.links_by_posting.len(), c.entry.postings().len());
            c.entry
                .postings()
                .iter()
                .zip(&c.links_by_posting)
                .enumerate()
                // MAX_POSTINGS (128) fits in i16.
                .map(move |(i, (p, l))| (c.position, i16::try_from(i).unwrap_or(i16::MAX), p, *l))
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

/// Programme rule rows to each unit's policy.
pub(super) fn policies(
    rows: Vec<PolicyRow>,
) -> Result<Vec<(ledger::UnitCode, ledger::UnitPolicy)>, DbError> {
    use crate::programme::{ProgrammeAccounts, ProgrammeRules};
    let mut grouped: Vec<(String, ledger::PublicKey, Vec<ledger::SpendingRules>)> = Vec::new();
    for (unit, administrator, clearing, fees, effective_from, rules) in rows {
        let rules: ProgrammeRules =
            serde_json::from_str(&rules).map_err(|e| corrupt("programme_rules", e))?;
        let accounts = ProgrammeAccounts {
            // The budget plays no part in spending rules.
            budget: ledger::AccountId(Uuid::nil()),
            clearing: ledger::AccountId(clearing),
            fees: ledger::AccountId(fees),
        };
        let spending = rules.spending(effective_from, &accounts);
        match grouped.last_mut() {
            Some((last, _, versions)) if *last == unit => versions.push(spending),
            _ => {
                let key: [u8; 32] = administrator
                    .try_into()
                    .map_err(|_| corrupt("programme", "administrator key is not 32 bytes"))?;
                grouped.push((unit, ledger::PublicKey(key), vec![spending]));
            }
        }
    }
    grouped
        .into_iter()
        .map(|(unit, key, versions)| {
            let code = ledger::UnitCode::new(&unit).map_err(|e| corrupt("programme", e))?;
            let policy = ledger::UnitPolicy::new(key, versions)
                .map_err(|e| corrupt("programme_rules", e))?;
            Ok((code, policy))
        })
        .collect()
}

/// Approved merchant rows to (account, category).
pub(super) fn payees(
    rows: Vec<PayeeRow>,
) -> Result<Vec<(ledger::AccountId, ledger::CategoryCode)>, DbError> {
    rows.into_iter()
        .filter_map(|(account, category)| Some((account?, category?)))
        .map(|(account, category)| {
            let code =
                ledger::CategoryCode::parse(&category).map_err(|e| corrupt("participant", e))?;
            Ok((ledger::AccountId(account), code))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_links_come_in_unit_byte_order_whatever_the_collation() {
        // As a collation that ignores punctuation might return them: EURO before EUR-V.
        let row = |position: i64, unit: &str| (position, unit.to_owned(), 1, vec![7u8; 32]);
        let links = links(vec![row(1, "EURO"), row(1, "EUR-V"), row(2, "AAA")]).unwrap();
        let order: Vec<(i64, String)> = links
            .iter()
            .map(|(position, link)| (*position, link.unit.to_string()))
            .collect();
        assert_eq!(
            order,
            [
                (1, "EUR-V".to_owned()),
                (1, "EURO".to_owned()),
                (2, "AAA".to_owned())
            ]
        );
    }
}
