//! SQLite: the embedded default. One file, WAL mode, `synchronous=FULL`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use ledger::journal::JournalLink;
use ledger::{AccountId, CategoryCode, Unit, UnitCode, UnitPolicy};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{Connection as _, Sqlite};

use super::rows;
use super::{BatchWrite, DbError, LoadSource, OwnedAccount, Previous, StoredEntries};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Row counts per multi-row INSERT, largest first. A batch of n rows is written greedily in
/// chunks of these sizes, so only a handful of distinct statements are ever prepared (and
/// cached) while large batches still cost few round trips. SQLite bounds each statement's
/// parameters (32,766); the widest, 1024 entry rows of 12 columns, binds 12,288. (A payment's
/// three INSERTs sent as one text, `insert_payment_rows`, are three statements.)
const CHUNK_ROWS: [usize; 6] = [1024, 256, 64, 16, 4, 1];

/// Page cache of the writer's connection, in KiB. The default (2 MiB) makes every index
/// insert into a large ledger a disk read; 64 MiB keeps the hot index pages in memory.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// How often the background checkpointer copies the WAL back into the database file.
///
/// Often, so that each checkpoint has little to write: a checkpoint's writes to the database
/// file are still on their way to the disk when the writer's next commit syncs the WAL, and
/// that sync waits for them (a disk flush takes everything written before it). Every 500 ms,
/// at 12,000 payments/s through the API, a commit now and then took 50–250 ms and held every
/// request in flight: p99 90 ms (median of seven runs); every 100 ms, no commit took
/// over 50 ms and p99 was 22 ms (median of five). Less often copies the hot index pages fewer times: the most
/// `bench ledger` commits with 1,024 submitters is about 8 % lower at 100 ms than at 500 ms
/// (BENCHMARKS.md, "Checkpoints small and often").
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Copies committed WAL pages into the database file, forever, without blocking the writer
/// (PASSIVE mode); stopped when the writer is dropped. A failure is retried: the WAL only
/// grows meanwhile, nothing is lost. It is logged when it starts and when it ends, not twice
/// a second for as long as it lasts (a full disk can last hours).
async fn checkpoint_forever(pool: SqlitePool) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match sqlx::query("pragma wal_checkpoint(passive)")
            .execute(&pool)
            .await
        {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints succeed again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying quietly until it works");
            }
            Err(_) => {}
        }
    }
}

pub(super) async fn ping(pool: &SqlitePool) -> Result<(), DbError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

/// The SQLite writer: an exclusive lock on the lease file plus its own connection.
#[derive(Debug)]
pub struct SqliteWriter {
    conn: SqliteConnection,
    /// Held for the writer's lifetime; the OS releases it if the process dies.
    _lease: File,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

impl SqliteWriter {
    pub(super) async fn open(
        options: &SqliteConnectOptions,
        lease_path: &Path,
        pool: &SqlitePool,
    ) -> Result<Self, DbError> {
        let io = |what: &str, source| DbError::Io {
            what: format!("{what} {}", lease_path.display()),
            source,
        };
        let lease = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lease_path)
            .map_err(|e| io("opening writer lease file", e))?;
        match lease.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DbError::LeaseHeld(lease_path.display().to_string()));
            }
            Err(TryLockError::Error(e)) => return Err(io("locking writer lease file", e)),
        }
        let mut conn = SqliteConnection::connect_with(options).await?;
        sqlx::query(&format!("pragma cache_size = -{WRITER_CACHE_KIB}"))
            .execute(&mut conn)
            .await?;
        // The writer never checkpoints (that would stall a commit while it copies pages);
        // a background task does, on another connection, without blocking writes.
        sqlx::query("pragma wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await?;
        let checkpointer = tokio::spawn(checkpoint_forever(pool.clone()));
        Ok(Self {
            conn,
            _lease: lease,
            checkpointer,
        })
    }

    /// Writes a batch in one transaction and commits it once `previous` has committed. The
    /// SQLite writer is a single lane, so `previous` has always settled by then; the shape
    /// matches PostgreSQL's two lanes.
    pub(super) async fn write_after(
        &mut self,
        batch: &BatchWrite,
        previous: Previous,
    ) -> Result<(), DbError> {
        if batch.is_empty() {
            return previous.outcome().await;
        }
        let mut tx = self.conn.begin().await?;
        for unit in &batch.units {
            sqlx::query(
                "insert into unit (code, name, scale, kind, peg, created_at) values (?, ?, ?, ?, ?, ?)",
            )
            .bind(unit.code().as_str())
            .bind(unit.name())
            .bind(i64::from(unit.scale()))
            .bind(unit.kind().as_str())
            .bind(unit.peg())
            .bind(batch.now_ms)
            .execute(&mut *tx)
            .await?;
        }
        // Many accounts at once (an enrolment) go in multi-row statements: one round trip
        // to SQLite's worker thread per chunk instead of per account.
        insert_rows(
            &mut tx,
            "account (id, unit, kind, status, lower_limit, upper_limit, authority, created_at, \
             participant)",
            9,
            &batch.accounts,
            |q, new| {
                let account = &new.account;
                q.bind(account.id.0)
                    .bind(account.unit.as_str())
                    .bind(account.kind.as_str())
                    .bind(account.status.as_str())
                    .bind(account.limits.lower().map(|b| b.0))
                    .bind(account.limits.upper().map(|b| b.0))
                    .bind(account.authority.map(|k| k.0.to_vec()))
                    .bind(batch.now_ms)
                    .bind(new.owner.map(|p| p.0))
            },
        )
        .await?;
        for (id, status) in &batch.statuses {
            sqlx::query("update account set status = ? where id = ?")
                .bind(status.as_str())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        for (id, key) in &batch.authorities {
            sqlx::query("update account set authority = ? where id = ?")
                .bind(&key.0[..])
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        let entries = &batch.entries;
        if one_row_each(entries) {
            insert_payment_rows(&mut tx, entries).await?;
        } else {
            insert_rows(&mut tx, ENTRY_ROW, ENTRY_COLUMNS, entries, bind_entry).await?;
            let postings = rows::postings_of(entries);
            insert_rows(
                &mut tx,
                POSTING_ROW,
                POSTING_COLUMNS,
                &postings,
                bind_posting,
            )
            .await?;
            let links = rows::links_of(entries);
            insert_rows(&mut tx, JOURNAL_ROW, JOURNAL_COLUMNS, &links, bind_link).await?;
        }
        if let Err(e) = previous.outcome().await {
            tx.rollback().await?;
            return Err(e);
        }
        tx.commit().await?;
        Ok(())
    }
}

const ENTRY_ROW: &str = "entry (position, id, kind, memo, tags, created_at, intent_id, signer, \
                         digest, signature, intent_body, payment_request)";
const ENTRY_COLUMNS: usize = 12;
const POSTING_ROW: &str = "posting (entry_position, idx, unit, debit, credit, amount_minor, \
                           prev_debit, prev_credit)";
const POSTING_COLUMNS: usize = 8;
const JOURNAL_ROW: &str = "journal (unit, seq, entry_position, hash)";
const JOURNAL_COLUMNS: usize = 4;

/// A posting row: (entry position, index, posting, its chain links).
type PostingRow<'a> = (i64, i16, &'a ledger::Posting, super::PostingLinks);

fn bind_entry<'q>(q: Query<'q>, c: &'q super::CommittedEntry) -> Query<'q> {
    let auth = c.entry.authorisation();
    q.bind(c.position)
        .bind(c.entry.id().0)
        .bind(c.entry.kind().as_str())
        .bind(c.entry.memo())
        .bind(c.tags_json.as_str())
        .bind(c.entry.created_at())
        .bind(&auth.intent_id.as_bytes()[..])
        .bind(&auth.signer.0[..])
        .bind(&auth.digest.0[..])
        .bind(&auth.signature.0[..])
        .bind(c.intent_body.as_str())
        .bind(c.payment_request.map(|r| r.0))
}

fn bind_posting<'q>(q: Query<'q>, row: &'q PostingRow<'_>) -> Query<'q> {
    let (position, idx, p, links) = row;
    q.bind(*position)
        .bind(*idx)
        .bind(p.unit.as_str())
        .bind(&p.debit.as_bytes()[..])
        .bind(&p.credit.as_bytes()[..])
        .bind(p.amount.minor())
        .bind(links.prev_debit)
        .bind(links.prev_credit)
}

fn bind_link<'q>(q: Query<'q>, row: &'q (i64, &JournalLink)) -> Query<'q> {
    let (position, link) = row;
    q.bind(link.unit.as_str())
        .bind(rows::seq_i64(link))
        .bind(*position)
        .bind(&link.hash.0[..])
}

/// Whether every entry is a plain payment's shape: one posting, one unit's journal link.
fn one_row_each(entries: &[super::CommittedEntry]) -> bool {
    entries
        .iter()
        .all(|c| c.entry.postings().len() == 1 && c.links.len() == 1)
}

/// Writes the entries of [`one_row_each`] shape with one statement per chunk that inserts
/// the chunk's entry, posting and journal rows together: a third of the round trips to
/// SQLite's worker thread, each a hand-off from this thread to that one and back. At 12,000
/// payments/s (commits of about twenty) that took ~1 µs a payment off the lane (BENCHMARKS.md).
async fn insert_payment_rows(
    conn: &mut SqliteConnection,
    entries: &[super::CommittedEntry],
) -> Result<(), sqlx::Error> {
    let postings = rows::postings_of(entries);
    let links = rows::links_of(entries);
    let mut done = 0;
    while done < entries.len() {
        let size = chunk_size(entries.len().saturating_sub(done));
        let chunk = done..done.saturating_add(size);
        // Parameters bind in statement order: all entry rows, then postings, then links.
        let sql = format!(
            "{}; {}; {}",
            insert_sql(ENTRY_ROW, ENTRY_COLUMNS, size),
            insert_sql(POSTING_ROW, POSTING_COLUMNS, size),
            insert_sql(JOURNAL_ROW, JOURNAL_COLUMNS, size),
        );
        let mut query = sqlx::query(&sql);
        for c in &entries[chunk.clone()] {
            query = bind_entry(query, c);
        }
        for row in &postings[chunk.clone()] {
            query = bind_posting(query, row);
        }
        for row in &links[chunk.clone()] {
            query = bind_link(query, row);
        }
        query.execute(&mut *conn).await?;
        done = chunk.end;
    }
    Ok(())
}

/// The largest of [`CHUNK_ROWS`] that `left` rows fill.
fn chunk_size(left: usize) -> usize {
    CHUNK_ROWS.into_iter().find(|&s| s <= left).unwrap_or(1)
}

/// A multi-row INSERT of `rows` rows into `target` ("table (columns)").
fn insert_sql(target: &str, columns: usize, rows: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(","));
    format!(
        "insert into {target} values {}",
        vec![tuple.as_str(); rows].join(",")
    )
}

/// Inserts `rows` into `target` ("table (columns)") with multi-row INSERTs.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    target: &str,
    columns: usize,
    rows: &[T],
    bind: impl for<'q> Fn(Query<'q>, &'q T) -> Query<'q>,
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    while !rest.is_empty() {
        let size = chunk_size(rest.len());
        let (chunk, tail) = rest.split_at(size);
        let sql = insert_sql(target, columns, size);
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut *conn).await?;
        rest = tail;
    }
    Ok(())
}

impl LoadSource for SqliteWriter {
    async fn units(&mut self) -> Result<Vec<Unit>, DbError> {
        rows::units(
            sqlx::query_as(rows::UNITS_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        )
    }

    async fn accounts(&mut self) -> Result<Vec<OwnedAccount>, DbError> {
        rows::accounts(
            sqlx::query_as(rows::ACCOUNTS_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        )
    }

    async fn links(&mut self) -> Result<Vec<(i64, JournalLink)>, DbError> {
        rows::links(
            sqlx::query_as(rows::LINKS_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        )
    }

    async fn paid_requests(&mut self, now_ms: i64) -> Result<Vec<rows::PaidRequest>, DbError> {
        Ok(rows::paid_requests(
            sqlx::query_as(rows::PAID_REQUESTS_SQL)
                .bind(now_ms)
                .bind(now_ms.saturating_sub(super::service::MAX_REQUEST_EXPIRY_MS))
                .fetch_all(&mut self.conn)
                .await?,
        ))
    }

    async fn policies(&mut self) -> Result<Vec<(UnitCode, UnitPolicy)>, DbError> {
        rows::policies(
            sqlx::query_as(rows::POLICY_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        )
    }

    async fn payees(&mut self) -> Result<Vec<(AccountId, CategoryCode)>, DbError> {
        rows::payees(
            sqlx::query_as(rows::PAYEES_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        )
    }

    async fn card_replacements(&mut self) -> Result<Vec<(AccountId, AccountId)>, DbError> {
        Ok(rows::card_replacements(
            sqlx::query_as(rows::CARD_REPLACEMENTS_SQL)
                .fetch_all(&mut self.conn)
                .await?,
        ))
    }

    async fn max_position(&mut self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar(rows::MAX_POSITION_SQL)
            .fetch_one(&mut self.conn)
            .await?)
    }

    async fn posting_positions(&mut self) -> Result<Option<(i64, i64)>, DbError> {
        Ok(rows::posting_positions(
            sqlx::query_as(rows::POSTING_POSITIONS_SQL)
                .fetch_one(&mut self.conn)
                .await?,
        ))
    }

    async fn entries(&mut self, after: i64, up_to: i64) -> Result<StoredEntries, DbError> {
        let found = sqlx::query_as(rows::ENTRIES_SQL)
            .bind(after)
            .bind(up_to)
            .fetch_all(&mut self.conn)
            .await?;
        rows::entries(found)
    }

    async fn intent_bodies(
        &mut self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        Ok(sqlx::query_as(rows::INTENT_BODIES_SQL)
            .bind(after)
            .bind(up_to)
            .fetch_all(&mut self.conn)
            .await?)
    }

    async fn checkpoint_units(&mut self) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar(rows::CHECKPOINT_UNITS_SQL)
            .fetch_all(&mut self.conn)
            .await?)
    }

    async fn checkpoints_below(
        &mut self,
        unit: &str,
        below: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        Ok(sqlx::query_as(rows::CHECKPOINTS_BELOW_SQL)
            .bind(unit)
            .bind(below)
            .bind(limit)
            .fetch_all(&mut self.conn)
            .await?)
    }

    async fn posting_links(
        &mut self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, super::PostingLinks)>, DbError> {
        let found = sqlx::query_as(rows::POSTING_LINKS_SQL)
            .bind(after)
            .bind(up_to)
            .fetch_all(&mut self.conn)
            .await?;
        Ok(rows::posting_links(found))
    }
}
