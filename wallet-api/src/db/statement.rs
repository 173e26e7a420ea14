//! Account statements from storage, through the read pool.
//!
//! Two indexes on posting, `(debit, entry_position)` and `(credit, entry_position)`
//! (migration 0006), let a page walk one account's postings backwards from its cursor on
//! each side, `limit` rows at a time, and merge the two walks here: the cost of a page
//! follows the page, not the account's whole history (a busy shop has millions of
//! postings). Filters are applied in the walk's SQL, so rows they drop are never fetched.
//!
//! Callers bound every read by a position the read model has already published, so a
//! statement never shows an entry before the balances do.

use std::fmt::Write as _;

use foldhash::HashMap;
use ledger::{AccountId, Amount, EntryId, EntryKind, Posting, UnitCode};
use uuid::Uuid;

use super::service::corrupt;
use super::{Database, DbError};
use crate::history::{self, HistoryFilter, HistoryItem};

/// Accounts whose whole statements one query reads (each is a bound parameter; both
/// databases allow far more, but a smaller list keeps each result set modest).
const STATEMENT_ACCOUNTS_PER_QUERY: usize = 256;

/// Columns of one of an account's postings with its entry.
const STATEMENT_COLUMNS: &str = "p.entry_position, p.idx, p.unit, p.debit, p.credit, \
     p.amount_minor, e.id, e.kind, e.created_at";

/// A row of [`STATEMENT_COLUMNS`].
type StatementRow = (i64, i16, String, Uuid, Uuid, i64, Uuid, String, i64);

/// A row of [`STATEMENT_COLUMNS`] followed by the entry's memo.
type StatementMemoRow = (i64, i16, String, Uuid, Uuid, i64, Uuid, String, i64, String);

/// Which column of posting names the account.
#[derive(Debug, Clone, Copy)]
enum Side {
    Debit,
    Credit,
}

impl Side {
    /// This side's column and the other side's.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            Side::Debit => ("debit", "credit"),
            Side::Credit => ("credit", "debit"),
        }
    }
}

/// One line of a statement page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The entry as seen from the account.
    pub item: HistoryItem,
    /// The entry's memo.
    pub memo: String,
}

/// A page of a statement, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPage {
    /// At most the page size.
    pub lines: Vec<StatementLine>,
    /// Whether more entries match below the last line.
    pub more: bool,
}

impl Database {
    /// Up to `limit` of `account`'s entries that pass `filter`, at positions below `before`,
    /// newest first, and whether more match further back.
    pub async fn statement_page(
        &self,
        account: AccountId,
        filter: &HistoryFilter,
        before: i64,
        limit: usize,
    ) -> Result<StatementPage, DbError> {
        // One position past the page tells whether there is more.
        let wanted = limit.saturating_add(1);
        let mut found: Vec<i64> = Vec::with_capacity(wanted);
        let mut below = before;
        // Each round settles at least one more matching position (the frontier's own), so
        // `wanted` rounds always suffice; nearly every page takes one.
        for _ in 0..wanted {
            let rows = wanted.saturating_sub(found.len());
            let (debits, credits) = tokio::try_join!(
                self.matching_positions(account, Side::Debit, filter, below, rows),
                self.matching_positions(account, Side::Credit, filter, below, rows),
            )?;
            // A side that returned all it was asked for may have more below its last row, but
            // has none missing above it: positions at or above the highest such last row are
            // complete on both sides. A side that returned fewer is exhausted.
            let frontier = [&debits, &credits]
                .into_iter()
                .filter(|side| side.len() == rows)
                .filter_map(|side| side.last().copied())
                .max();
            let mut settled: Vec<i64> = debits
                .into_iter()
                .chain(credits)
                .filter(|p| frontier.is_none_or(|f| *p >= f))
                .collect();
            // An entry with several postings on one side, or on both, is one line.
            settled.sort_unstable_by(|a, b| b.cmp(a));
            settled.dedup();
            found.extend(settled);
            match frontier {
                Some(f) if found.len() < wanted => below = f,
                _ => break,
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let lines = self.statement_lines(account, &found).await?;
        Ok(StatementPage { lines, more })
    }

    /// Positions of up to `limit` of `account`'s postings on one side that pass `filter`,
    /// below `below`, newest first (an entry with two such postings appears twice).
    async fn matching_positions(
        &self,
        account: AccountId,
        side: Side,
        filter: &HistoryFilter,
        below: i64,
        limit: usize,
    ) -> Result<Vec<i64>, DbError> {
        let (this, other) = side.columns();
        // The counterparty filter is exact on the posting itself: an entry's counterparties,
        // as seen from an account, are the other sides of exactly the postings that touch
        // it. Only the entry-level filters need the entry row.
        let by_entry =
            filter.kind.is_some() || filter.since_ms.is_some() || filter.until_ms.is_some();
        let mut sql = String::from("select p.entry_position from posting p");
        if by_entry {
            sql.push_str(" join entry e on e.position = p.entry_position");
        }
        // Writing to a String cannot fail.
        let _ = write!(sql, " where p.{this} = $1 and p.entry_position < $2");
        let mut next = 2;
        let mut param = || {
            next += 1;
            next
        };
        if filter.kind.is_some() {
            let _ = write!(sql, " and e.kind = ${}", param());
        }
        if filter.since_ms.is_some() {
            let _ = write!(sql, " and e.created_at >= ${}", param());
        }
        if filter.until_ms.is_some() {
            let _ = write!(sql, " and e.created_at < ${}", param());
        }
        if filter.counterparty.is_some() {
            let _ = write!(sql, " and p.{other} = ${}", param());
        }
        let _ = write!(sql, " order by p.entry_position desc limit ${}", param());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let positions: Vec<i64> = on_pool!(self, |pool| {
            let mut query = sqlx::query_scalar(&sql).bind(account.0).bind(below);
            if let Some(kind) = filter.kind {
                query = query.bind(kind.as_str());
            }
            if let Some(since) = filter.since_ms {
                query = query.bind(since);
            }
            if let Some(until) = filter.until_ms {
                query = query.bind(until);
            }
            if let Some(counterparty) = filter.counterparty {
                query = query.bind(counterparty.0);
            }
            query.bind(limit).fetch_all(pool).await
        })?;
        Ok(positions)
    }

    /// The lines of `account`'s statement at `positions` (newest first, as given).
    async fn statement_lines(
        &self,
        account: AccountId,
        positions: &[i64],
    ) -> Result<Vec<StatementLine>, DbError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let list = (2..positions.len().saturating_add(2))
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select {STATEMENT_COLUMNS}, e.memo from posting p \
             join entry e on e.position = p.entry_position \
             where p.entry_position in ({list}) and (p.debit = $1 or p.credit = $1) \
             order by p.entry_position desc, p.idx"
        );
        let rows: Vec<StatementMemoRow> = on_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql).bind(account.0);
            for position in positions {
                query = query.bind(*position);
            }
            query.fetch_all(pool).await
        })?;
        let mut lines = Vec::with_capacity(positions.len());
        let mut postings = Vec::new();
        let mut rows = rows.into_iter().peekable();
        while let Some((position, _, unit, debit, credit, amount, id, kind, created_at, memo)) =
            rows.next()
        {
            postings.push(posting(&unit, debit, credit, amount)?);
            if rows.peek().is_some_and(|next| next.0 == position) {
                continue;
            }
            let item = statement_item(account, position, id, &kind, created_at, &postings)?;
            postings.clear();
            lines.push(StatementLine { item, memo });
        }
        if lines.len() != positions.len() {
            // The positions were just read from the same indexes; entries are never deleted.
            return Err(corrupt(
                "posting",
                format!("account {account}: statement lines vanished between two reads"),
            ));
        }
        Ok(lines)
    }

    /// Each account's whole statement up to position `up_to`, oldest first; an account with
    /// no entries has an empty one. For computations over all of an account's entries (the
    /// lots that expire), which read a few accounts' statements at a time.
    pub async fn statements(
        &self,
        accounts: &[AccountId],
        up_to: i64,
    ) -> Result<HashMap<AccountId, Vec<HistoryItem>>, DbError> {
        let mut rows_of: HashMap<AccountId, Vec<StatementRow>> =
            accounts.iter().map(|a| (*a, Vec::new())).collect();
        for chunk in accounts.chunks(STATEMENT_ACCOUNTS_PER_QUERY) {
            for side in [Side::Debit, Side::Credit] {
                for row in self.side_rows(chunk, side, up_to).await? {
                    let account = AccountId(match side {
                        Side::Debit => row.3,
                        Side::Credit => row.4,
                    });
                    // A posting never debits and credits one account, so no row arrives
                    // twice for the same account.
                    if let Some(rows) = rows_of.get_mut(&account) {
                        rows.push(row);
                    }
                }
            }
        }
        let mut statements = HashMap::default();
        for (account, mut rows) in rows_of {
            rows.sort_unstable_by_key(|row| (row.0, row.1));
            let mut items = Vec::new();
            let mut postings = Vec::new();
            for (at, row) in rows.iter().enumerate() {
                let (position, _, unit, debit, credit, amount, id, kind, created_at) = row;
                postings.push(posting(unit, *debit, *credit, *amount)?);
                if rows
                    .get(at.saturating_add(1))
                    .is_some_and(|r| r.0 == *position)
                {
                    continue;
                }
                items.push(statement_item(
                    account,
                    *position,
                    *id,
                    kind,
                    *created_at,
                    &postings,
                )?);
                postings.clear();
            }
            statements.insert(account, items);
        }
        Ok(statements)
    }

    /// The postings of `accounts` on one side, with their entries, up to `up_to`.
    async fn side_rows(
        &self,
        accounts: &[AccountId],
        side: Side,
        up_to: i64,
    ) -> Result<Vec<StatementRow>, DbError> {
        let (this, _) = side.columns();
        let list = (2..accounts.len().saturating_add(2))
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select {STATEMENT_COLUMNS} from posting p \
             join entry e on e.position = p.entry_position \
             where p.{this} in ({list}) and p.entry_position <= $1"
        );
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql).bind(up_to);
            for account in accounts {
                query = query.bind(account.0);
            }
            query.fetch_all(pool).await
        })?)
    }
}

fn posting(unit: &str, debit: Uuid, credit: Uuid, amount: i64) -> Result<Posting, DbError> {
    Ok(Posting {
        unit: UnitCode::new(unit).map_err(|e| corrupt("posting", e))?,
        debit: AccountId(debit),
        credit: AccountId(credit),
        amount: Amount::from_minor(amount).map_err(|e| corrupt("posting", e))?,
    })
}

/// The item for `account` from its postings in one entry, checked as it is read.
fn statement_item(
    account: AccountId,
    position: i64,
    id: Uuid,
    kind: &str,
    created_at: i64,
    postings: &[Posting],
) -> Result<HistoryItem, DbError> {
    let kind = EntryKind::parse(kind)
        .ok_or_else(|| corrupt("entry", format!("unknown entry kind {kind:?}")))?;
    history::item(account, position, EntryId(id), created_at, kind, postings).ok_or_else(|| {
        corrupt(
            "posting",
            format!("entry {position} was read for account {account} but does not touch it"),
        )
    })
}
