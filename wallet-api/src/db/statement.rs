//! Account statements from storage, through the read pool.
//!
//! Every posting row links to the previous entry of its debit account and of its credit
//! account (migration 0006, [`super::chain`]). A statement walks one account's chain
//! backwards from its latest published entry (or from the page's cursor): one recursive query
//! per chunk of the walk, each step a primary-key lookup, which also returns the chunk's
//! postings and entries. The filters are applied here, as the walk goes, until the page is
//! full or the chain ends: the cost of a page follows the entries walked, not the account's
//! whole history (a busy shop has millions of postings), and the commit path pays for no
//! index by account.
//!
//! Callers start every walk at a position the read model has already published, so a
//! statement never shows an entry before the balances do.
//!
//! A page's payments into the account come with what is left to refund of each, from one
//! more query ([`super::refunds`]), and its refunds with the payment each gives back.

use foldhash::HashMap;
use ledger::{AccountId, Amount, EntryId, EntryKind, Posting, Tags, UnitCode};
use uuid::Uuid;

use super::service::corrupt;
use super::{Database, DbError};
use crate::history::{self, HistoryFilter, HistoryItem};

/// Entries a walk reads in its first query for a page: a page's worth plus one (to tell
/// whether there is more) is usually enough; a filter that drops entries doubles the chunk
/// each round, up to [`CHAIN_CHUNK_MAX`].
const CHAIN_CHUNK_MIN: usize = 16;

/// The most entries one query of a walk reads, bounding each result set (and the recursive
/// query's own working set).
const CHAIN_CHUNK_MAX: usize = 1024;

/// The most entries one statement page walks. A filter that matches rarely (a kind or a
/// counterparty seldom seen on a busy shop's account) would otherwise walk the account's whole
/// history for one request; past this the page ends short (even empty) with a cursor where the
/// walk stopped, and the next request goes on from there. About a dozen chunk queries.
pub const WALK_BUDGET: usize = 10_000;

/// How far `created_at` may go backwards along the journal. The writer stamps an entry just
/// before it stages it, so `created_at` is non-decreasing with position except for the skew
/// between the clock readings of entries staged around the same moment (and a clock stepped
/// back by a few seconds). A walk filtering by `since_ms` therefore stops at the first entry
/// older than `since_ms` by more than this, instead of walking the rest of the chain: nothing
/// further back can be recent enough unless the clock went back by more.
const CREATED_AT_SKEW_MS: i64 = 60_000;

/// One chunk of a walk: `account`'s entries along its chain from `$2` (inclusive), at most
/// `$3` of them, with their postings that touch the account (newest first, then by posting
/// index) and each entry's link to the account's previous entry. `union`, not `union all`: an
/// entry with several postings touching the account yields one identical chain row for each,
/// which must count once, or the walk would branch. Tags come only with reversals, where
/// they may name the payment refunded.
const CHAIN_SQL: &str = "with recursive chain (position, prev, step) as ( \
         select p.entry_position, \
                case when p.debit = $1 then p.prev_debit else p.prev_credit end, \
                cast(1 as bigint) \
         from posting p \
         where p.entry_position = $2 and (p.debit = $1 or p.credit = $1) \
         union \
         select p.entry_position, \
                case when p.debit = $1 then p.prev_debit else p.prev_credit end, \
                c.step + 1 \
         from chain c join posting p on p.entry_position = c.prev \
         where (p.debit = $1 or p.credit = $1) and c.step < $3 \
     ) \
     select c.prev, p.entry_position, p.unit, p.debit, p.credit, p.amount_minor, \
            e.id, e.kind, e.created_at, e.memo, \
            case when e.kind = 'reversal' then e.tags end \
     from chain c \
     join entry e on e.position = c.position \
     join posting p on p.entry_position = c.position and (p.debit = $1 or p.credit = $1) \
     order by p.entry_position desc, p.idx";

/// A row of [`CHAIN_SQL`].
type ChainRow = (
    Option<i64>,
    i64,
    String,
    Uuid,
    Uuid,
    i64,
    Uuid,
    String,
    i64,
    String,
    Option<String>,
);

/// One line of a statement page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The entry as seen from the account.
    pub item: HistoryItem,
    /// The entry's memo.
    pub memo: String,
    /// On a refund (a reversal linked by `tags.reverses`): the payment it gives back. `None`
    /// on every other entry, including a reversal without the link (an operator's correction).
    pub reverses: Option<EntryId>,
    /// On a payment the account received that can be refunded (one posting): what is left
    /// to refund of it, in minor units, after the refunds published with the page.
    pub refundable_minor: Option<i64>,
}

/// A page of a statement, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPage {
    /// At most the page size; fewer (even none) when the walk used its budget first.
    pub lines: Vec<StatementLine>,
    /// Where the next page starts (its `before`), if more entries may match: the last line
    /// of a full page, or the entry where a walk that ran out of budget stopped. `None`: the
    /// statement has nothing more below this page.
    pub next_before: Option<i64>,
}

/// A chunk of a walk: lines newest first, and where the walk goes on (`None`: the chain
/// ends).
struct Chunk {
    lines: Vec<StatementLine>,
    next: Option<i64>,
}

impl Database {
    /// Up to `limit` of `account`'s entries that pass `filter`, at positions below `before`,
    /// newest first, and where to go on if more may match further back. `head` is the position
    /// of the account's latest published entry (`None`: it has none); nothing after it is
    /// read. At most [`WALK_BUDGET`] entries are walked.
    pub async fn statement_page(
        &self,
        account: AccountId,
        head: Option<i64>,
        filter: &HistoryFilter,
        before: i64,
        limit: usize,
    ) -> Result<StatementPage, DbError> {
        // An unfiltered page always fills, whatever page size the operator allows.
        let budget = WALK_BUDGET.max(limit.saturating_add(1));
        self.statement_page_within(account, head, filter, before, limit, budget)
            .await
    }

    /// [`Database::statement_page`] walking at most `budget` entries (at least one).
    pub async fn statement_page_within(
        &self,
        account: AccountId,
        head: Option<i64>,
        filter: &HistoryFilter,
        before: i64,
        limit: usize,
        budget: usize,
    ) -> Result<StatementPage, DbError> {
        // One line past the page tells whether there is more.
        let wanted = limit.saturating_add(1);
        let floor = filter
            .since_ms
            .map(|since| since.saturating_sub(CREATED_AT_SKEW_MS));
        let mut lines: Vec<StatementLine> = Vec::with_capacity(wanted.min(CHAIN_CHUNK_MAX));
        let budget = budget.max(1);
        let mut size = wanted.clamp(CHAIN_CHUNK_MIN, CHAIN_CHUNK_MAX).min(budget);
        let mut walked = 0usize;
        // Set when the budget ran out before the page filled: the last entry walked.
        let mut stopped_at = None;
        let mut next = self.walk_start(account, head, before).await?;
        // Positions fall strictly along a chain (checked in `chain_chunk`), so the walk ends.
        'walk: while let Some(from) = next {
            let chunk = self.linked_chunk(account, from, size).await?;
            next = chunk.next;
            let mut chunk_lines = chunk.lines.into_iter().peekable();
            while let Some(line) = chunk_lines.next() {
                if line.item.position >= before {
                    continue;
                }
                if floor.is_some_and(|floor| line.item.created_at < floor) {
                    break 'walk;
                }
                walked += 1;
                let position = line.item.position;
                if filter.keeps(&line.item) {
                    lines.push(line);
                    if lines.len() == wanted {
                        break 'walk;
                    }
                }
                if walked >= budget {
                    // Go on from here next time, unless the chain ended right here.
                    if chunk_lines.peek().is_some() || next.is_some() {
                        stopped_at = Some(position);
                    }
                    break 'walk;
                }
            }
            size = size
                .saturating_mul(2)
                .min(CHAIN_CHUNK_MAX)
                .min(budget - walked);
        }
        let next_before = if lines.len() > limit {
            lines.truncate(limit);
            lines.last().map(|l| l.item.position)
        } else {
            stopped_at
        };
        if let Some(head) = head {
            self.add_refundable(&mut lines, head).await?;
        }
        Ok(StatementPage { lines, next_before })
    }

    /// Sets what is left to refund on the lines that are payments into the account, from
    /// one query for the page (none without such lines). Refunds after `head`, the account's
    /// latest published entry, are not counted: a refund debits the account it refunds
    /// from, so the page shows every refund it counts.
    async fn add_refundable(&self, lines: &mut [StatementLine], head: i64) -> Result<(), DbError> {
        let received =
            |line: &StatementLine| line.item.kind == EntryKind::Payment && line.item.delta > 0;
        let payments: Vec<(i64, EntryId)> = lines
            .iter()
            .filter(|line| received(line))
            .map(|line| (line.item.position, line.item.entry_id))
            .collect();
        if payments.is_empty() {
            return Ok(());
        }
        let refunded = self.refunded(&payments, head).await?;
        for line in lines.iter_mut().filter(|line| received(line)) {
            let Some(facts) = refunded.get(&line.item.position) else {
                return Err(corrupt(
                    "entry",
                    format!("entry {} of a statement is gone", line.item.position),
                ));
            };
            // The Book never lets refunds add up to more than the payment; a stored journal
            // that did would show nothing left rather than a negative amount.
            line.refundable_minor = facts
                .refundable
                .then(|| line.item.delta.saturating_sub(facts.refunded_minor).max(0));
        }
        Ok(())
    }

    /// Where a walk for entries below `before` starts. A cursor is the last line of the
    /// previous page, so an entry on the chain: the walk starts there (and skips it). A
    /// position that is not on the account's chain (a hand-made cursor) is walked to from
    /// the head, which costs the entries in between but gives the same page.
    async fn walk_start(
        &self,
        account: AccountId,
        head: Option<i64>,
        before: i64,
    ) -> Result<Option<i64>, DbError> {
        let Some(head) = head else {
            return Ok(None);
        };
        if before > head {
            return Ok(Some(head));
        }
        let on_chain = self.chain_chunk(account, before, 1).await?;
        if on_chain.lines.is_empty() {
            return Ok(Some(head));
        }
        Ok(on_chain.next)
    }

    /// Each account's whole statement up to position `up_to`, oldest first, walking its chain
    /// from `head` (its latest published entry; `None` or an account with no entries gives an
    /// empty statement). For computations over all of an account's entries (the lots that
    /// expire), which read a few accounts' statements at a time.
    pub async fn statements(
        &self,
        heads: &[(AccountId, Option<i64>)],
        up_to: i64,
    ) -> Result<HashMap<AccountId, Vec<StatementLine>>, DbError> {
        let mut statements = HashMap::default();
        for &(account, head) in heads {
            let mut items = Vec::new();
            let mut next = head;
            while let Some(from) = next {
                let chunk = self.linked_chunk(account, from, CHAIN_CHUNK_MAX).await?;
                items.extend(
                    chunk
                        .lines
                        .into_iter()
                        .filter(|line| line.item.position <= up_to),
                );
                next = chunk.next;
            }
            items.reverse();
            statements.insert(account, items);
        }
        Ok(statements)
    }

    /// [`Self::chain_chunk`] from a position known to be on the account's chain (its head,
    /// or a link), so an empty chunk means a broken chain.
    async fn linked_chunk(
        &self,
        account: AccountId,
        from: i64,
        size: usize,
    ) -> Result<Chunk, DbError> {
        let chunk = self.chain_chunk(account, from, size).await?;
        if chunk.lines.is_empty() {
            return Err(corrupt(
                "posting",
                format!(
                    "account {account}: its chain leads to entry {from}, which does not touch it"
                ),
            ));
        }
        Ok(chunk)
    }

    /// Up to `size` of `account`'s entries along its chain from `from` (inclusive), newest
    /// first; empty if the entry at `from` does not touch the account.
    async fn chain_chunk(
        &self,
        account: AccountId,
        from: i64,
        size: usize,
    ) -> Result<Chunk, DbError> {
        let steps = i64::try_from(size).unwrap_or(i64::MAX);
        let rows: Vec<ChainRow> = on_pool!(self, |pool| {
            sqlx::query_as(CHAIN_SQL)
                .bind(account.0)
                .bind(from)
                .bind(steps)
                .fetch_all(pool)
                .await
        })?;
        let mut lines = Vec::with_capacity(size.min(CHAIN_CHUNK_MAX));
        let mut postings = Vec::new();
        let mut next = None;
        let mut rows = rows.into_iter().peekable();
        while let Some((
            prev,
            position,
            unit,
            debit,
            credit,
            amount,
            id,
            kind,
            created_at,
            memo,
            tags,
        )) = rows.next()
        {
            postings.push(posting(&unit, debit, credit, amount)?);
            if rows.peek().is_some_and(|row| row.1 == position) {
                continue;
            }
            // A link must point back: a chain that did not would never end a walk.
            if prev.is_some_and(|prev| prev >= position) {
                return Err(corrupt(
                    "posting",
                    format!("account {account}: entry {position} links forward to {prev:?}"),
                ));
            }
            let item = statement_item(account, position, id, &kind, created_at, &postings)?;
            postings.clear();
            let reverses = match tags {
                Some(tags) => reversed_payment(&tags)?,
                None => None,
            };
            lines.push(StatementLine {
                item,
                memo,
                reverses,
                refundable_minor: None,
            });
            next = prev;
        }
        Ok(Chunk { lines, next })
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

/// The payment a reversal's stored tags name, if any.
fn reversed_payment(tags: &str) -> Result<Option<EntryId>, DbError> {
    let tags: Tags = serde_json::from_str(tags).map_err(|e| corrupt("entry", e))?;
    Ok(tags.reverses)
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
