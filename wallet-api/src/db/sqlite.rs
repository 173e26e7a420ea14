//! SQLite: the embedded default. One file, WAL mode, `synchronous=FULL`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use ledger::journal::JournalLink;
use ledger::{Account, Unit};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{Connection as _, Row as _, Sqlite};
use uuid::Uuid;

use super::rows::{self, AccountRow, EntryRow, PostingRow};
use super::{BatchWrite, DbError, LoadSource, StoredEntries};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Row counts per multi-row INSERT, largest first. A batch of n rows is written greedily in
/// chunks of these sizes, so only a handful of distinct statements are ever prepared (and
/// cached) while large batches still cost few round trips. 7 columns x 1024 rows stays well
/// under SQLite's 32,766 bound parameters.
const CHUNK_ROWS: [usize; 6] = [1024, 256, 64, 16, 4, 1];

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
}

impl SqliteWriter {
    pub(super) async fn open(
        options: &SqliteConnectOptions,
        lease_path: &Path,
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
        let conn = SqliteConnection::connect_with(options).await?;
        Ok(Self {
            conn,
            _lease: lease,
        })
    }

    pub(super) async fn write(&mut self, batch: &BatchWrite) -> Result<(), DbError> {
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
        for account in &batch.accounts {
            insert_account(&mut tx, account, batch.now_ms).await?;
        }
        for (id, status) in &batch.statuses {
            sqlx::query("update account set status = ? where id = ?")
                .bind(status.as_str())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        let entries = &batch.entries;
        insert_rows(
            &mut tx,
            "entry (position, id, kind, memo, tags, intent_id, created_at)",
            7,
            entries,
            |q, c| {
                q.bind(c.position)
                    .bind(c.entry.id().0)
                    .bind(c.entry.kind().as_str())
                    .bind(c.entry.memo())
                    .bind(rows::tags_json(&c.entry))
                    .bind(c.entry.authorisation().intent_id.0)
                    .bind(c.entry.created_at())
            },
        )
        .await?;
        let postings = rows::postings_of(entries);
        insert_rows(
            &mut tx,
            "posting (entry_position, idx, unit, debit, credit, amount_minor)",
            6,
            &postings,
            |q, (position, idx, p)| {
                q.bind(*position)
                    .bind(*idx)
                    .bind(p.unit.as_str())
                    .bind(p.debit.0)
                    .bind(p.credit.0)
                    .bind(p.amount.minor())
            },
        )
        .await?;
        insert_rows(
            &mut tx,
            "intent (intent_id, entry_position, signer, digest, signature, body)",
            6,
            entries,
            |q, c| {
                let auth = c.entry.authorisation();
                q.bind(auth.intent_id.0)
                    .bind(c.position)
                    .bind(&auth.signer.0[..])
                    .bind(&auth.digest.0[..])
                    .bind(&auth.signature.0[..])
                    .bind(c.intent_body.as_str())
            },
        )
        .await?;
        let links = rows::links_of(entries);
        insert_rows(
            &mut tx,
            "journal (unit, seq, entry_position, hash)",
            4,
            &links,
            |q, (position, link)| {
                q.bind(link.unit.as_str())
                    .bind(rows::seq_i64(link))
                    .bind(*position)
                    .bind(&link.hash.0[..])
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_account(
    conn: &mut SqliteConnection,
    account: &Account,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "insert into account (id, unit, kind, status, lower_limit, upper_limit, authority, created_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(account.id.0)
    .bind(account.unit.as_str())
    .bind(account.kind.as_str())
    .bind(account.status.as_str())
    .bind(account.limits.lower().map(|b| b.0))
    .bind(account.limits.upper().map(|b| b.0))
    .bind(account.authority.map(|k| k.0.to_vec()))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts `rows` into `target` ("table (columns)") with multi-row INSERTs.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    target: &str,
    columns: usize,
    rows: &[T],
    bind: impl for<'q> Fn(Query<'q>, &'q T) -> Query<'q>,
) -> Result<(), sqlx::Error> {
    let tuple = format!("({})", vec!["?"; columns].join(","));
    let mut rest = rows;
    while !rest.is_empty() {
        let size = CHUNK_ROWS
            .into_iter()
            .find(|&s| s <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        let sql = format!(
            "insert into {target} values {}",
            vec![tuple.as_str(); size].join(",")
        );
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
        let found =
            sqlx::query("select code, name, scale, kind, peg from unit order by created_at, code")
                .fetch_all(&mut self.conn)
                .await?;
        found
            .iter()
            .map(|r| {
                rows::unit(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                )
            })
            .collect()
    }

    async fn accounts(&mut self) -> Result<Vec<Account>, DbError> {
        let found = sqlx::query(
            "select id, unit, kind, status, lower_limit, upper_limit, authority from account order by created_at, id",
        )
        .fetch_all(&mut self.conn)
        .await?;
        found
            .iter()
            .map(|r| {
                rows::account(AccountRow {
                    id: r.try_get(0)?,
                    unit: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    status: r.try_get(3)?,
                    lower_limit: r.try_get(4)?,
                    upper_limit: r.try_get(5)?,
                    authority: r.try_get(6)?,
                })
            })
            .collect()
    }

    async fn links(&mut self) -> Result<Vec<(i64, JournalLink)>, DbError> {
        let found = sqlx::query(
            "select entry_position, unit, seq, hash from journal order by entry_position, unit",
        )
        .fetch_all(&mut self.conn)
        .await?;
        found
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    rows::link(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)?,
                ))
            })
            .collect()
    }

    async fn max_position(&mut self) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("select coalesce(max(position), 0) from entry")
                .fetch_one(&mut self.conn)
                .await?,
        )
    }

    async fn entries(&mut self, after: i64, up_to: i64) -> Result<StoredEntries, DbError> {
        let found = sqlx::query(
            "select e.position, e.id, e.kind, e.memo, e.tags, e.created_at, \
                    i.intent_id, i.signer, i.digest, i.signature, \
                    p.idx, p.unit, p.debit, p.credit, p.amount_minor \
             from entry e join intent i on i.entry_position = e.position \
                          join posting p on p.entry_position = e.position \
             where e.position > ? and e.position <= ? order by e.position, p.idx",
        )
        .bind(after)
        .bind(up_to)
        .fetch_all(&mut self.conn)
        .await?;
        let mut joined = Vec::with_capacity(found.len());
        for r in &found {
            let id: Uuid = r.try_get(1)?;
            joined.push((
                EntryRow {
                    position: r.try_get(0)?,
                    id,
                    kind: r.try_get(2)?,
                    memo: r.try_get(3)?,
                    tags: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    intent_id: r.try_get(6)?,
                    signer: r.try_get(7)?,
                    digest: r.try_get(8)?,
                    signature: r.try_get(9)?,
                },
                PostingRow {
                    idx: r.try_get(10)?,
                    unit: r.try_get(11)?,
                    debit: r.try_get(12)?,
                    credit: r.try_get(13)?,
                    amount_minor: r.try_get(14)?,
                },
            ));
        }
        rows::group_entries(joined)
    }
}
