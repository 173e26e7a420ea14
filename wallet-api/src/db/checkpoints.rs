//! Signed journal checkpoints as stored (`journal_checkpoint`, migration 0011): the signed
//! JSON as served, keyed by unit and sequence. Only the writer's process adds them (see
//! [`crate::checkpoints`]); anyone reads them. The SQL uses `$n` placeholders, which both
//! SQLite and PostgreSQL accept.

use std::collections::BTreeMap;

use ledger::UnitCode;
use ledger::journal::checkpoint::SignedCheckpoint;
use serde_json::Value;

use super::{Database, DbError};

fn corrupt(reason: String) -> DbError {
    DbError::CorruptRow {
        table: "journal_checkpoint",
        reason,
    }
}

fn unit_of(text: &str) -> Result<UnitCode, DbError> {
    UnitCode::new(text).map_err(|e| corrupt(e.to_string()))
}

fn seq_of(seq: i64) -> Result<u64, DbError> {
    u64::try_from(seq).map_err(|_| corrupt(format!("negative sequence number {seq}")))
}

fn body_of(text: &str) -> Result<Value, DbError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("body is not JSON: {e}")))
}

impl Database {
    /// The sequence number of each unit's latest checkpoint of a link the journal holds (a
    /// row beyond the journal, which the service never stores, does not stop it signing).
    pub async fn checkpointed_seqs(&self) -> Result<BTreeMap<UnitCode, u64>, DbError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "select c.unit, max(c.seq) from journal_checkpoint c join journal j \
             on j.unit = c.unit and j.seq = c.seq and j.hash = c.hash group by c.unit"
        )
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|(unit, seq)| Ok((unit_of(&unit)?, seq_of(seq)?)))
            .collect()
    }

    /// Stores checkpoints; one already stored for the same unit and sequence is kept (the
    /// first signed stands), and one of a link the journal does not hold is not stored (a
    /// process whose view is ahead of this database, after a failover that lost entries,
    /// must not sign what the database will never have: every later start would refuse it).
    /// Returns whether each was stored.
    pub async fn insert_checkpoints(
        &self,
        checkpoints: &[SignedCheckpoint],
    ) -> Result<Vec<bool>, DbError> {
        if checkpoints.is_empty() {
            return Ok(Vec::new());
        }
        let stored = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut stored = Vec::with_capacity(checkpoints.len());
            for signed in checkpoints {
                let checkpoint = &signed.checkpoint;
                let done = sqlx::query(
                    "insert into journal_checkpoint (unit, seq, hash, at_ms, body) \
                     select $1, $2, $3, $4, $5 where exists \
                     (select 1 from journal where unit = $1 and seq = $2 and hash = $3) \
                     on conflict (unit, seq) do nothing",
                )
                .bind(checkpoint.unit.as_str())
                .bind(i64::try_from(checkpoint.head.seq).unwrap_or(i64::MAX))
                .bind(&checkpoint.head.hash.0[..])
                .bind(checkpoint.at_ms)
                .bind(signed.to_json().to_string())
                .execute(&mut *tx)
                .await?;
                stored.push(done.rows_affected() == 1);
            }
            tx.commit().await.map(|()| stored)
        })?;
        Ok(stored)
    }

    /// Each unit's latest checkpoint, in unit code order.
    pub async fn latest_checkpoints(&self) -> Result<Vec<Value>, DbError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "select c.unit, c.body from journal_checkpoint c \
             join (select unit, max(seq) as seq from journal_checkpoint group by unit) latest \
             on c.unit = latest.unit and c.seq = latest.seq"
        )
        .fetch_all(pool)
        .await)?;
        let mut latest = rows
            .iter()
            .map(|(unit, body)| Ok((unit_of(unit)?, body_of(body)?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        // In Rust: PostgreSQL orders text by its collation, not by the codes' bytes.
        latest.sort_by_key(|(unit, _)| *unit);
        Ok(latest.into_iter().map(|(_, body)| body).collect())
    }

    /// One unit's checkpoints after sequence `after`, oldest first, at most `limit`: each
    /// with its sequence number.
    pub async fn checkpoints_of(
        &self,
        unit: UnitCode,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Value)>, DbError> {
        let rows: Vec<(i64, String)> = on_pool!(self, |pool| sqlx::query_as(
            "select seq, body from journal_checkpoint where unit = $1 and seq > $2 \
             order by seq limit $3"
        )
        .bind(unit.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        rows.iter()
            .map(|(seq, body)| Ok((seq_of(*seq)?, body_of(body)?)))
            .collect()
    }
}
