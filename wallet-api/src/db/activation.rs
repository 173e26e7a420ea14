//! Activation-code rows (`account_activation_code`): storing a new code (superseding the
//! account's earlier unused ones), consuming one exactly once, and giving one back when the
//! key it was consumed for could not be registered. Only hashes are stored. The SQL uses `$n`
//! placeholders, which both SQLite and PostgreSQL accept.

use ledger::{Account, AccountId, ParticipantId};
use uuid::Uuid;

use super::{Database, DbError, rows};

/// Attempts at storing a code when a parallel issue for the same account got in first (the
/// live-code index refuses the second insert; the retry supersedes the winner's code).
const MAX_ISSUE_ATTEMPTS: usize = 3;

/// An activation code as stored: its hash, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredActivationCode {
    /// Id.
    pub id: Uuid,
    /// The account whose key it may register.
    pub account: AccountId,
    /// SHA-256 over the context, the account and the normalised code.
    pub code_hash: [u8; 32],
    /// When issued (ms).
    pub created_at: i64,
    /// It is refused from this moment on (ms).
    pub expires_at: i64,
    /// When it was used (ms); `None` while unused.
    pub used_at: Option<i64>,
    /// When a newer code for the account replaced it (ms), if one did.
    pub superseded_at: Option<i64>,
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

impl Database {
    /// One account as stored, with its owner; `None` if there is no such account.
    pub async fn stored_account(
        &self,
        id: AccountId,
    ) -> Result<Option<(Account, Option<ParticipantId>)>, DbError> {
        let row: Option<rows::AccountRow> = on_pool!(self, |pool| sqlx::query_as(
            "select id, unit, kind, status, lower_limit, upper_limit, authority, participant \
             from account where id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(rows::accounts(row.into_iter().collect())?.pop())
    }

    /// Stores a new code (its `used_at` and `superseded_at` are ignored: a new code is live)
    /// and, in the same transaction, supersedes the account's earlier
    /// codes that were neither used nor superseded: at most one code per account is live.
    pub async fn insert_activation_code(&self, code: &StoredActivationCode) -> Result<(), DbError> {
        let mut attempt = 1;
        loop {
            let stored = on_pool!(self, |pool| {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "update account_activation_code set superseded_at = $2 \
                     where account = $1 and used_at is null and superseded_at is null",
                )
                .bind(code.account.0)
                .bind(code.created_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into account_activation_code \
                     (id, account, code_hash, created_at, expires_at) values ($1, $2, $3, $4, $5)",
                )
                .bind(code.id)
                .bind(code.account.0)
                .bind(&code.code_hash[..])
                .bind(code.created_at)
                .bind(code.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            });
            match stored {
                Err(e) if is_unique_violation(&e) && attempt < MAX_ISSUE_ATTEMPTS => attempt += 1,
                other => return Ok(other?),
            }
        }
    }

    /// Marks the account's live code with this hash used at `now_ms`, if it is unexpired;
    /// returns its id, or `None` if no such code (wrong, expired, used or superseded). One
    /// conditional UPDATE, so of two parallel uses exactly one gets the code.
    pub async fn consume_activation_code(
        &self,
        account: AccountId,
        code_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<Uuid>, DbError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "update account_activation_code set used_at = $3 \
             where account = $1 and code_hash = $2 and used_at is null \
             and superseded_at is null and expires_at > $3 \
             returning id"
        )
        .bind(account.0)
        .bind(&code_hash[..])
        .bind(now_ms)
        .fetch_optional(pool)
        .await)?)
    }

    /// Makes a code consumed at `used_at` usable again (the key it was consumed for could not
    /// be registered). False if it was not given back: it was not used at that moment, or a
    /// newer code for the account was issued meanwhile (which then stays the live one).
    pub async fn release_activation_code(&self, id: Uuid, used_at: i64) -> Result<bool, DbError> {
        let released = on_pool!(self, |pool| sqlx::query(
            "update account_activation_code set used_at = null \
             where id = $1 and used_at = $2 and superseded_at is null"
        )
        .bind(id)
        .bind(used_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
        match released {
            Ok(n) => Ok(n == 1),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every code stored for an account, oldest first (for audits and tests).
    pub async fn activation_codes(
        &self,
        account: AccountId,
    ) -> Result<Vec<StoredActivationCode>, DbError> {
        type Row = (Uuid, Uuid, Vec<u8>, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "select id, account, code_hash, created_at, expires_at, used_at, superseded_at \
             from account_activation_code where account = $1 order by created_at, id"
        )
        .bind(account.0)
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(
                |(id, account, hash, created_at, expires_at, used_at, superseded_at)| {
                    let code_hash = hash.as_slice().try_into().map_err(|_| {
                        super::service::corrupt("account_activation_code", "hash is not 32 bytes")
                    })?;
                    Ok(StoredActivationCode {
                        id,
                        account: AccountId(account),
                        code_hash,
                        created_at,
                        expires_at,
                        used_at,
                        superseded_at,
                    })
                },
            )
            .collect()
    }
}
