//! What has been refunded of payments, from storage, for statements.
//!
//! A refund is a `reversal` entry naming its payment in `tags.reverses`; migration 0008
//! indexes that expression over reversals only. The Book keeps the same totals for the
//! writer's checks, but it is the writer's (staged state, and it forgets old payments), so
//! statements ask storage: one query for a page's payments, however old they are, each a
//! primary-key lookup and an index lookup.

use foldhash::HashMap;
use ledger::EntryId;

use super::{Database, DbError};

/// The most payments one query asks about; a larger statement page takes one query per
/// this many. It matches the API's default largest page, so a page is one query.
pub const REFUND_LOOKUP_MAX: usize = 500;

/// For each `(position, payment)` of `$1`: how many postings the payment has, and what the
/// reversals naming it in `tags.reverses` at positions up to `$2` add up to. SQLite takes
/// the payments as a JSON array of `[position, "entry id"]` pairs; the reversal filter and
/// the expression are those of the partial index `entry_refund`, so it is used.
const SQLITE_REFUNDED_SQL: &str = "with payment (position, id) as ( \
         select json_extract(value, '$[0]'), json_extract(value, '$[1]') from json_each($1) \
     ) \
     select payment.position, \
            (select count(*) from posting p where p.entry_position = payment.position), \
            (select cast(coalesce(sum(p.amount_minor), 0) as bigint) \
             from entry r join posting p on p.entry_position = r.position \
             where r.kind = 'reversal' and json_extract(r.tags, '$.reverses') = payment.id \
               and r.position <= $2) \
     from payment";

/// [`SQLITE_REFUNDED_SQL`] for PostgreSQL, which takes the positions and ids as two arrays.
const POSTGRES_REFUNDED_SQL: &str = "select payment.position, \
            (select count(*) from posting p where p.entry_position = payment.position), \
            (select cast(coalesce(sum(p.amount_minor), 0) as bigint) \
             from entry r join posting p on p.entry_position = r.position \
             where r.kind = 'reversal' and ((r.tags::json) ->> 'reverses') = payment.id \
               and r.position <= $3) \
     from unnest($1::bigint[], $2::text[]) as payment (position, id)";

/// What storage holds about refunds of one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refunded {
    /// Whether the payment can be refunded at all: only a payment of one posting can (the
    /// Book's rule; every `payment` intent makes one).
    pub refundable: bool,
    /// What its refunds add up to, in minor units.
    pub refunded_minor: i64,
}

impl Database {
    /// What has been refunded of each of `payments` (`(position, entry id)` of committed
    /// `payment` entries), counting the refunds at positions up to `up_to` (the latest
    /// published position of the account that was paid, so a statement agrees with the
    /// balance it is read with), by position. A position with no entry is left out.
    pub async fn refunded(
        &self,
        payments: &[(i64, EntryId)],
        up_to: i64,
    ) -> Result<HashMap<i64, Refunded>, DbError> {
        let mut refunded = HashMap::default();
        for chunk in payments.chunks(REFUND_LOOKUP_MAX) {
            let rows: Vec<(i64, i64, i64)> = match self {
                Database::Sqlite { pool, .. } => {
                    let pairs: Vec<serde_json::Value> = chunk
                        .iter()
                        .map(|&(p, id)| serde_json::json!([p, id.to_string()]))
                        .collect();
                    let pairs = serde_json::Value::Array(pairs).to_string();
                    sqlx::query_as(SQLITE_REFUNDED_SQL)
                        .bind(pairs)
                        .bind(up_to)
                        .fetch_all(pool)
                        .await?
                }
                Database::Postgres { pool, .. } => {
                    let positions: Vec<i64> = chunk.iter().map(|&(p, _)| p).collect();
                    let ids: Vec<String> = chunk.iter().map(|(_, id)| id.to_string()).collect();
                    sqlx::query_as(POSTGRES_REFUNDED_SQL)
                        .bind(positions)
                        .bind(ids)
                        .bind(up_to)
                        .fetch_all(pool)
                        .await?
                }
            };
            for (position, postings, refunded_minor) in rows {
                // No postings: no entry at that position (a caller's mistake, not a payment).
                if postings == 0 {
                    continue;
                }
                let facts = Refunded {
                    refundable: postings == 1,
                    refunded_minor,
                };
                refunded.insert(position, facts);
            }
        }
        Ok(refunded)
    }
}
