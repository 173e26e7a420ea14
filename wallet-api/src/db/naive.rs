//! The naive way to keep a ledger, kept only as the benchmark baseline: stored balances, and
//! per payment one database transaction that locks both rows, checks, updates and commits
//! (one fsync per payment). `coledger bench ledger` runs it beside the committer so the gain
//! from batching is a ratio measured on the same machine in the same run.

use sqlx::{Executor as _, Row as _};
use uuid::Uuid;

use super::{Database, DbError};

/// Creates the baseline's tables (in a scratch database) with every account at `opening`.
pub async fn setup(db: &Database, accounts: &[Uuid], opening: i64) -> Result<(), DbError> {
    match db {
        Database::Sqlite { pool, .. } => {
            pool.execute(
                "create table naive_account (id blob primary key, balance integer not null);
                 create table naive_payment (id integer primary key, debit blob not null,
                     credit blob not null, amount_minor integer not null);",
            )
            .await?;
            let mut tx = pool.begin().await?;
            for id in accounts {
                sqlx::query("insert into naive_account (id, balance) values (?, ?)")
                    .bind(id)
                    .bind(opening)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Database::Postgres { pool, .. } => {
            pool.execute(
                "create table naive_account (id uuid primary key, balance bigint not null);
                 create table naive_payment (id bigserial primary key, debit uuid not null,
                     credit uuid not null, amount_minor bigint not null);",
            )
            .await?;
            sqlx::query("insert into naive_account (id, balance) select unnest($1::uuid[]), $2")
                .bind(accounts)
                .bind(opening)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// One payment in its own transaction. Returns whether it was applied (false: insufficient).
pub async fn pay(db: &Database, debit: Uuid, credit: Uuid, amount: i64) -> Result<bool, DbError> {
    match db {
        Database::Sqlite { pool, .. } => {
            let mut conn = pool.acquire().await?;
            // IMMEDIATE takes the write lock up front; a deferred transaction would deadlock
            // against other writers when it upgrades.
            conn.execute("begin immediate").await?;
            let result = sqlite_pay(&mut conn, debit, credit, amount).await;
            let end = if matches!(result, Ok(true)) {
                "commit"
            } else {
                "rollback"
            };
            conn.execute(end).await?;
            result
        }
        Database::Postgres { pool, .. } => {
            let mut tx = pool.begin().await?;
            // Lock both rows in id order so concurrent payments cannot deadlock.
            let locked = sqlx::query(
                "select id, balance from naive_account where id = $1 or id = $2 order by id for update",
            )
            .bind(debit)
            .bind(credit)
            .fetch_all(&mut *tx)
            .await?;
            let mut balance = None;
            for row in &locked {
                if row.try_get::<Uuid, _>(0)? == debit {
                    balance = Some(row.try_get::<i64, _>(1)?);
                }
            }
            if balance.is_none_or(|b| b < amount) {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query("update naive_account set balance = balance - $2 where id = $1")
                .bind(debit)
                .bind(amount)
                .execute(&mut *tx)
                .await?;
            sqlx::query("update naive_account set balance = balance + $2 where id = $1")
                .bind(credit)
                .bind(amount)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into naive_payment (debit, credit, amount_minor) values ($1, $2, $3)",
            )
            .bind(debit)
            .bind(credit)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}

async fn sqlite_pay(
    conn: &mut sqlx::SqliteConnection,
    debit: Uuid,
    credit: Uuid,
    amount: i64,
) -> Result<bool, DbError> {
    let balance: Option<i64> = sqlx::query_scalar("select balance from naive_account where id = ?")
        .bind(debit)
        .fetch_optional(&mut *conn)
        .await?;
    if balance.is_none_or(|b| b < amount) {
        return Ok(false);
    }
    sqlx::query("update naive_account set balance = balance - ? where id = ?")
        .bind(amount)
        .bind(debit)
        .execute(&mut *conn)
        .await?;
    sqlx::query("update naive_account set balance = balance + ? where id = ?")
        .bind(amount)
        .bind(credit)
        .execute(&mut *conn)
        .await?;
    sqlx::query("insert into naive_payment (debit, credit, amount_minor) values (?, ?, ?)")
        .bind(debit)
        .bind(credit)
        .bind(amount)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}
