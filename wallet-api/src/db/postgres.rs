//! PostgreSQL: production. A batch's ledger rows are written with one binary `COPY` per table
//! and its accounts with one `INSERT ... SELECT FROM unnest(...)`, so a batch of any size
//! costs the same few round trips.

use ledger::journal::JournalLink;
use ledger::{AccountId, CategoryCode, Unit, UnitCode, UnitPolicy};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};

use super::copy::BinaryRows;
use super::rows;
use super::{BatchWrite, DbError, LoadSource, NewAccount, OwnedAccount, Previous, StoredEntries};

/// `application_name` of the writer's connection.
pub const WRITER_APPLICATION_NAME: &str = "coledger-writer";

/// How long a stopping lane waits for the server to take its locks back.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

/// The PostgreSQL writer: a connection holding the session advisory lock that is the lease,
/// and a second connection so that two batches can be in flight at once (see
/// [`super::Lane`]). Both are fenced by the lease epoch. Every batch transaction takes the
/// fence advisory lock *shared* and checks the epoch; a writer taking over takes the fence
/// *exclusively* (waiting for batches in flight), bumps the epoch and lets go. So once a
/// takeover has happened, none of the old writer's connections can commit again. Advisory
/// locks live in memory: unlike `FOR SHARE` on the lease row, they write nothing per batch.
#[derive(Debug)]
pub struct PgWriter {
    conn: PgConnection,
    second: PgConnection,
    epoch: i64,
    fence: i64,
}

/// One of the writer's connections, writing batches.
#[derive(Debug)]
pub struct PgLane {
    conn: PgConnection,
    epoch: i64,
    fence: i64,
}

impl PgWriter {
    /// Takes the lease on `conn`, a connection to the primary made with `options`.
    pub(super) async fn open(
        mut conn: PgConnection,
        options: &PgConnectOptions,
        lease_key: i64,
    ) -> Result<Self, DbError> {
        // Named, so an operator (or a test) can find the writer in pg_stat_activity.
        let options = options.clone().application_name(WRITER_APPLICATION_NAME);
        let acquired: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(lease_key)
            .fetch_one(&mut conn)
            .await?;
        if !acquired {
            let database = options.get_database().unwrap_or("postgres").to_owned();
            return Err(DbError::LeaseHeld(format!(
                "database {database} on {}:{}",
                options.get_host(),
                options.get_port()
            )));
        }
        let fence = lease_key.wrapping_add(1);
        sqlx::query("select pg_advisory_lock($1)")
            .bind(fence)
            .execute(&mut conn)
            .await?;
        let epoch: i64 = sqlx::query_scalar(
            "update writer_lease set epoch = epoch + 1 where id = 1 returning epoch",
        )
        .fetch_one(&mut conn)
        .await?;
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(fence)
            .execute(&mut conn)
            .await?;
        let second = PgConnection::connect_with(&options).await?;
        Ok(Self {
            conn,
            second,
            epoch,
            fence,
        })
    }

    pub(super) fn into_lanes(self) -> Vec<PgLane> {
        vec![
            PgLane {
                conn: self.conn,
                epoch: self.epoch,
                fence: self.fence,
            },
            PgLane {
                conn: self.second,
                epoch: self.epoch,
                fence: self.fence,
            },
        ]
    }
}

impl PgLane {
    pub(super) async fn write_after(
        &mut self,
        batch: &BatchWrite,
        previous: Previous,
    ) -> Result<(), DbError> {
        if batch.is_empty() {
            return previous.outcome().await;
        }
        let mut tx = self.conn.begin().await?;
        let epoch: Option<i64> = sqlx::query_scalar(
            "with fence as (select pg_advisory_xact_lock_shared($1)) \
             select epoch from writer_lease, fence where id = 1",
        )
        .bind(self.fence)
        .fetch_optional(&mut *tx)
        .await?;
        if epoch != Some(self.epoch) {
            return Err(DbError::LeaseLost);
        }
        for unit in &batch.units {
            sqlx::query(
                "insert into unit (code, name, scale, kind, peg, created_at) values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(unit.code().as_str())
            .bind(unit.name())
            .bind(i16::from(unit.scale()))
            .bind(unit.kind().as_str())
            .bind(unit.peg())
            .bind(batch.now_ms)
            .execute(&mut *tx)
            .await?;
        }
        insert_accounts(&mut tx, &batch.accounts, batch.now_ms).await?;
        for (id, status) in &batch.statuses {
            sqlx::query("update account set status = $1 where id = $2")
                .bind(status.as_str())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        for (id, key) in &batch.authorities {
            sqlx::query("update account set authority = $1 where id = $2")
                .bind(&key.0[..])
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        if !batch.entries.is_empty() {
            write_entries(&mut tx, batch).await?;
        }
        // Commits land in batch order: ours only after the previous batch's.
        if let Err(e) = previous.outcome().await {
            tx.rollback().await?;
            return Err(e);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives back the locks this connection holds (on the first lane, the writer's lease),
    /// then closes it. Errors are left: a connection that fails here is gone, and its locks
    /// with it. A server that does not answer (the lane may be closing because the server
    /// became unreachable) is given [`CLOSE_WITHIN`], then the connection is dropped as
    /// before, so recovery never waits on it.
    pub(super) async fn close(mut self) {
        let unlock_and_close = async move {
            let _ = sqlx::query("select pg_advisory_unlock_all()")
                .execute(&mut self.conn)
                .await;
            let _ = self.conn.close().await;
        };
        let _ = tokio::time::timeout(CLOSE_WITHIN, unlock_and_close).await;
    }
}

/// Every new account of a batch in one statement (an enrolment opens thousands).
async fn insert_accounts(
    conn: &mut PgConnection,
    accounts: &[NewAccount],
    now_ms: i64,
) -> Result<(), DbError> {
    if accounts.is_empty() {
        return Ok(());
    }
    let all = || accounts.iter().map(|n| &n.account);
    sqlx::query(
        "insert into account (id, unit, kind, status, lower_limit, upper_limit, authority, \
                              created_at, participant) \
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                              $6::int8[], $7::bytea[], $8::int8[], $9::uuid[])",
    )
    .bind(all().map(|a| a.id.0).collect::<Vec<_>>())
    .bind(all().map(|a| a.unit.as_str()).collect::<Vec<_>>())
    .bind(all().map(|a| a.kind.as_str()).collect::<Vec<_>>())
    .bind(all().map(|a| a.status.as_str()).collect::<Vec<_>>())
    .bind(
        all()
            .map(|a| a.limits.lower().map(|b| b.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        all()
            .map(|a| a.limits.upper().map(|b| b.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        all()
            .map(|a| a.authority.map(|k| k.0.to_vec()))
            .collect::<Vec<_>>(),
    )
    .bind(vec![now_ms; accounts.len()])
    .bind(
        accounts
            .iter()
            .map(|n| n.owner.map(|p| p.0))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the batch's entries, postings and journal links, each table with one binary `COPY`
/// (see [`super::copy`]): the server's bulk insert path, a third less server time per payment
/// than `INSERT ... SELECT FROM unnest(...)` (BENCHMARKS.md).
async fn write_entries(conn: &mut PgConnection, batch: &BatchWrite) -> Result<(), DbError> {
    let entries = &batch.entries;
    // Columns, in the order of each COPY statement below; row sizes only size the buffers.
    let mut data = BinaryRows::new(12, entries.len(), 700);
    for c in entries {
        let auth = c.entry.authorisation();
        data.row()
            .int8(c.position)
            .uuid(c.entry.id().0)
            .text(c.entry.kind().as_str())?
            .text(c.entry.memo())?
            .text(&c.tags_json)?
            .int8(c.entry.created_at())
            .uuid(auth.intent_id.0)
            .bytea(&auth.signer.0)?
            .bytea(&auth.digest.0)?
            .bytea(&auth.signature.0)?
            .text(&c.intent_body)?
            .uuid_or_null(c.payment_request.map(|r| r.0));
    }
    copy_in(
        conn,
        "copy entry (position, id, kind, memo, tags, created_at, intent_id, signer, digest, \
         signature, intent_body, payment_request) from stdin (format binary)",
        data,
    )
    .await?;

    let postings = rows::postings_of(entries);
    let mut data = BinaryRows::new(8, postings.len(), 120);
    for (position, idx, posting, links) in &postings {
        data.row()
            .int8(*position)
            .int2(*idx)
            .text(posting.unit.as_str())?
            .uuid(posting.debit.0)
            .uuid(posting.credit.0)
            .int8(posting.amount.minor())
            .int8_or_null(links.prev_debit)
            .int8_or_null(links.prev_credit);
    }
    copy_in(
        conn,
        "copy posting (entry_position, idx, unit, debit, credit, amount_minor, prev_debit, \
         prev_credit) from stdin (format binary)",
        data,
    )
    .await?;

    let links = rows::links_of(entries);
    let mut data = BinaryRows::new(4, links.len(), 90);
    for (position, link) in &links {
        data.row()
            .text(link.unit.as_str())?
            .int8(rows::seq_i64(link))
            .int8(*position)
            .bytea(&link.hash.0)?;
    }
    copy_in(
        conn,
        "copy journal (unit, seq, entry_position, hash) from stdin (format binary)",
        data,
    )
    .await
}

/// Runs one `COPY ... FROM STDIN` with `rows` as its data.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: BinaryRows,
) -> Result<(), DbError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data.finish()).await?;
    copy.finish().await?;
    Ok(())
}

impl LoadSource for PgWriter {
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
