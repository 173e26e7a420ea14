//! Service rows around the ledger: participants, operator tokens, payment requests,
//! idempotency records, and reading entries back for the API. These go through the read
//! pool, never through the committer: none of them is ledger history. The SQL is written
//! once with `$n` placeholders, which both SQLite and PostgreSQL accept.

use ledger::{
    AccountId, Amount, EntryId, IntentId, ParticipantId, PaymentRequestId, Posting, UnitCode,
};
use uuid::Uuid;

use super::{Database, DbError};

pub(super) fn corrupt(table: &'static str, reason: impl std::fmt::Display) -> DbError {
    DbError::CorruptRow {
        table,
        reason: reason.to_string(),
    }
}

/// A person or an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Id.
    pub id: ParticipantId,
    /// `person` or `organisation`.
    pub kind: String,
    /// Display name (public for listed organisations only).
    pub name: String,
    /// Scheme roles, e.g. `beneficiary`, `merchant`, `collector`, `member`.
    pub roles: Vec<String>,
    /// Merchant category code (ISO 18245), for listed merchants.
    pub category_code: Option<String>,
    /// Street address.
    pub address: Option<String>,
    /// Opening hours, free text (e.g. `Mo-Fr 09:00-14:00`).
    pub opening_hours: Option<String>,
    /// Whether the open registry publishes it.
    pub listed: bool,
    /// The area (neighbourhood, town) it serves.
    pub area: Option<String>,
    /// Whether it is a social enterprise (shown in the registry).
    pub social_enterprise: bool,
    /// Bank account for redemption payouts (IBAN, normalised); never public.
    pub iban: Option<String>,
    /// The bank's BIC, if known; never public.
    pub bic: Option<String>,
    /// The name the bank account is held in, in Latin letters, when `name` is not it (a
    /// Greek or Arabic shop name cannot go in a SEPA file); never public.
    pub account_holder: Option<String>,
    /// When it was registered (ms).
    pub created_at: i64,
}

type ParticipantRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i16,
    i64,
    Option<String>,
    i16,
    Option<String>,
    Option<String>,
    Option<String>,
);

const PARTICIPANT_COLUMNS: &str = "id, kind, name, roles, category_code, address, opening_hours, \
     listed, created_at, area, social_enterprise, iban, bic, account_holder";

fn participant(row: ParticipantRow) -> Result<Participant, DbError> {
    let (
        id,
        kind,
        name,
        roles,
        category_code,
        address,
        opening_hours,
        listed,
        created_at,
        area,
        social_enterprise,
        iban,
        bic,
        account_holder,
    ) = row;
    let roles: Vec<String> = serde_json::from_str(&roles).map_err(|e| corrupt("participant", e))?;
    Ok(Participant {
        id: ParticipantId(id),
        kind,
        name,
        roles,
        category_code,
        address,
        opening_hours,
        listed: listed != 0,
        created_at,
        area,
        social_enterprise: social_enterprise != 0,
        iban,
        bic,
        account_holder,
    })
}

/// An operator token as stored (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// Public part of the token.
    pub id: Uuid,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
    /// Role name.
    pub role: String,
    /// The participant it is scoped to.
    pub participant: Option<ParticipantId>,
    /// What it is for.
    pub label: String,
    /// When made (ms).
    pub created_at: i64,
    /// When revoked (ms), if it was.
    pub revoked_at: Option<i64>,
}

type TokenRow = (
    Uuid,
    Vec<u8>,
    String,
    Option<Uuid>,
    String,
    i64,
    Option<i64>,
);

fn token(row: TokenRow) -> Result<StoredToken, DbError> {
    let (id, hash, role, participant, label, created_at, revoked_at) = row;
    Ok(StoredToken {
        id,
        secret_hash: hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("operator_token", "secret hash is not 32 bytes"))?,
        role,
        participant: participant.map(ParticipantId),
        label,
        created_at,
        revoked_at,
    })
}

/// A merchant's request to be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Id (the reference in the QR code).
    pub id: PaymentRequestId,
    /// The account to pay.
    pub account: AccountId,
    /// Unit.
    pub unit: UnitCode,
    /// Amount asked.
    pub amount: Amount,
    /// Shown to the payer.
    pub memo: String,
    /// When made (ms).
    pub created_at: i64,
    /// Last moment it may be paid (ms); a cancellation brings it forward to its own time.
    pub expires_at: i64,
    /// When the merchant cancelled it (ms), if it did. A paid request stays paid even if
    /// this is set: the cancellation came too late.
    pub cancelled_at: Option<i64>,
}

/// The longest a payment request may stay payable (ms): 30 days (a printed invoice, say).
pub const MAX_REQUEST_EXPIRY_MS: i64 = 30 * 24 * 3600 * 1000;

impl PaymentRequest {
    /// The latest deadline any check of this request may have read (ms), which is how long
    /// the writer must remember it: `expires_at`, unless a cancellation brought that
    /// forward, in which case the original is gone and the longest any request lives
    /// bounds it.
    pub fn latest_deadline(&self) -> i64 {
        latest_deadline(self.created_at, self.expires_at, self.cancelled_at)
    }
}

/// See [`PaymentRequest::latest_deadline`]; also for the load, which reads the columns.
pub(crate) fn latest_deadline(created_at: i64, expires_at: i64, cancelled_at: Option<i64>) -> i64 {
    match cancelled_at {
        None => expires_at,
        Some(_) => created_at.saturating_add(MAX_REQUEST_EXPIRY_MS),
    }
}

type RequestRow = (Uuid, Uuid, String, i64, String, i64, i64, Option<i64>);

fn payment_request(row: RequestRow) -> Result<PaymentRequest, DbError> {
    let (id, account, unit, amount, memo, created_at, expires_at, cancelled_at) = row;
    if cancelled_at.is_some_and(|at| at < expires_at) {
        return Err(corrupt(
            "payment_request",
            format!(
                "request {id} was cancelled before its deadline, which was not brought forward"
            ),
        ));
    }
    Ok(PaymentRequest {
        id: PaymentRequestId(id),
        account: AccountId(account),
        unit: UnitCode::new(&unit).map_err(|e| corrupt("payment_request", e))?,
        amount: Amount::from_minor(amount).map_err(|e| corrupt("payment_request", e))?,
        memo,
        created_at,
        expires_at,
        cancelled_at,
    })
}

/// A committed entry read back for the API.
#[derive(Debug, Clone)]
pub struct EntryRecord {
    /// Commit position.
    pub position: i64,
    /// Id.
    pub id: EntryId,
    /// Kind name.
    pub kind: String,
    /// Memo.
    pub memo: String,
    /// Tags as stored (a JSON object).
    pub tags: String,
    /// When committed (ms).
    pub created_at: i64,
    /// The intent that authorised it.
    pub intent_id: IntentId,
    /// The canonical JSON that was signed.
    pub intent_body: String,
    /// Signer, base64url.
    pub signer: [u8; 32],
    /// Signature.
    pub signature: [u8; 64],
    /// The payment request it settled.
    pub payment_request: Option<PaymentRequestId>,
    /// Its postings, in order.
    pub postings: Vec<Posting>,
}

type EntryRow = (
    i64,
    Uuid,
    String,
    String,
    String,
    i64,
    Uuid,
    String,
    Vec<u8>,
    Vec<u8>,
    Option<Uuid>,
);
type PostingRow = (i64, String, Uuid, Uuid, i64);

const ENTRY_COLUMNS: &str = "position, id, kind, memo, tags, created_at, intent_id, intent_body, \
     signer, signature, payment_request";

/// What an idempotency record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// First use of the key: the caller now owns it and must [`Database::finish_idempotent`].
    New,
    /// The key's request is still being handled.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
    /// The original response.
    Done {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: String,
    },
}

impl Database {
    /// Replaces a participant's bank details (IBAN, BIC, account holder); false if there is
    /// no such participant.
    pub async fn set_bank_details(
        &self,
        id: ParticipantId,
        iban: Option<&str>,
        bic: Option<&str>,
        account_holder: Option<&str>,
    ) -> Result<bool, DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "update participant set iban = $2, bic = $3, account_holder = $4 where id = $1"
        )
        .bind(id.0)
        .bind(iban)
        .bind(bic)
        .bind(account_holder)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// Records whether a participant withheld consent to research use (the research export
    /// leaves out every event it takes part in); false if there is no such participant.
    pub async fn set_participant_research_opt_out(
        &self,
        id: ParticipantId,
        opt_out: bool,
    ) -> Result<bool, DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "update participant set research_opt_out = $2 where id = $1"
        )
        .bind(id.0)
        .bind(i16::from(opt_out))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// Whether a participant withheld consent to research use; `None` if there is no such
    /// participant.
    pub async fn participant_research_opt_out(
        &self,
        id: ParticipantId,
    ) -> Result<Option<bool>, DbError> {
        let found: Option<i16> = on_pool!(self, |pool| sqlx::query_scalar(
            "select cast(research_opt_out as smallint) from participant where id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(found.map(|out| out == 1))
    }

    /// Registers a participant.
    pub async fn insert_participant(&self, p: &Participant) -> Result<(), DbError> {
        let roles = serde_json::to_string(&p.roles).map_err(|e| corrupt("participant", e))?;
        let sql = format!(
            "insert into participant ({PARTICIPANT_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(p.id.0)
            .bind(&p.kind)
            .bind(&p.name)
            .bind(&roles)
            .bind(&p.category_code)
            .bind(&p.address)
            .bind(&p.opening_hours)
            .bind(i16::from(p.listed))
            .bind(p.created_at)
            .bind(&p.area)
            .bind(i16::from(p.social_enterprise))
            .bind(&p.iban)
            .bind(&p.bic)
            .bind(&p.account_holder)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// A participant.
    pub async fn participant(&self, id: ParticipantId) -> Result<Option<Participant>, DbError> {
        let sql = format!("select {PARTICIPANT_COLUMNS} from participant where id = $1");
        let row: Option<ParticipantRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_optional(pool)
            .await)?;
        row.map(participant).transpose()
    }

    /// Participants after `after` (by id, which is time-ordered), at most `limit`;
    /// `listed_only` gives the open registry.
    pub async fn participants(
        &self,
        after: Option<ParticipantId>,
        limit: i64,
        listed_only: bool,
    ) -> Result<Vec<Participant>, DbError> {
        let sql = format!(
            "select {PARTICIPANT_COLUMNS} from participant \
             where id > $1 and ($2 = 0 or listed = 1) order by id limit $3"
        );
        let rows: Vec<ParticipantRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(after.map_or(Uuid::nil(), |a| a.0))
            .bind(i16::from(listed_only))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(participant).collect()
    }

    /// Publishes (or withdraws) a participant in the open registry.
    pub async fn set_listed(&self, id: ParticipantId, listed: bool) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update participant set listed = $2 where id = $1"
        )
        .bind(id.0)
        .bind(i16::from(listed))
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Stores a new operator token.
    pub async fn insert_token(&self, t: &StoredToken) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "insert into operator_token (id, secret_hash, role, participant, label, created_at, \
             revoked_at) values ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(t.id)
        .bind(&t.secret_hash[..])
        .bind(&t.role)
        .bind(t.participant.map(|p| p.0))
        .bind(&t.label)
        .bind(t.created_at)
        .bind(t.revoked_at)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// An operator token by its public id.
    pub async fn token(&self, id: Uuid) -> Result<Option<StoredToken>, DbError> {
        let row: Option<TokenRow> = on_pool!(self, |pool| sqlx::query_as(
            "select id, secret_hash, role, participant, label, created_at, revoked_at \
             from operator_token where id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(token).transpose()
    }

    /// Every operator token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<StoredToken>, DbError> {
        let rows: Vec<TokenRow> = on_pool!(self, |pool| sqlx::query_as(
            "select id, secret_hash, role, participant, label, created_at, revoked_at \
             from operator_token order by created_at, id"
        )
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(token).collect()
    }

    /// Revokes a token; false if there is no such token or it was already revoked.
    pub async fn revoke_token(&self, id: Uuid, now_ms: i64) -> Result<bool, DbError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "update operator_token set revoked_at = $1 where id = $2 and revoked_at is null"
        )
        .bind(now_ms)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Stores a payment request.
    pub async fn insert_payment_request(&self, r: &PaymentRequest) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "insert into payment_request (id, account, unit, amount_minor, memo, created_at, \
             expires_at) values ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(r.id.0)
        .bind(r.account.0)
        .bind(r.unit.as_str())
        .bind(r.amount.minor())
        .bind(&r.memo)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// A payment request.
    pub async fn payment_request(
        &self,
        id: PaymentRequestId,
    ) -> Result<Option<PaymentRequest>, DbError> {
        let row: Option<RequestRow> = on_pool!(self, |pool| sqlx::query_as(
            "select id, account, unit, amount_minor, memo, created_at, expires_at, \
             cancelled_at from payment_request where id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        row.map(payment_request).transpose()
    }

    /// The entry that paid a request, if one did (the unique index on
    /// `entry.payment_request` finds it): for requests the read model no longer keeps.
    pub async fn request_paid_by(&self, id: PaymentRequestId) -> Result<Option<EntryId>, DbError> {
        let entry: Option<Uuid> = on_pool!(self, |pool| sqlx::query_scalar(
            "select id from entry where payment_request = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(entry.map(EntryId))
    }

    /// Records that the merchant cancelled a request at `now_ms`: the first cancellation's
    /// time is kept, and the deadline is brought forward to it (never pushed back), so every
    /// later check refuses a payment. False if there is no such request.
    pub async fn cancel_payment_request(
        &self,
        id: PaymentRequestId,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "update payment_request set cancelled_at = coalesce(cancelled_at, $2), \
             expires_at = case when expires_at > coalesce(cancelled_at, $2) \
             then coalesce(cancelled_at, $2) else expires_at end where id = $1"
        )
        .bind(id.0)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Committed entries at the given positions, in the order asked.
    pub async fn entries_at(&self, positions: &[i64]) -> Result<Vec<EntryRecord>, DbError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(positions.len());
        let sql = format!("select {ENTRY_COLUMNS} from entry where position in ({list})");
        let psql = format!(
            "select entry_position, unit, debit, credit, amount_minor from posting \
             where entry_position in ({list}) order by entry_position, idx"
        );
        let (rows, postings): (Vec<EntryRow>, Vec<PostingRow>) = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(&sql);
            let mut pq = sqlx::query_as(&psql);
            for p in positions {
                q = q.bind(*p);
                pq = pq.bind(*p);
            }
            match (q.fetch_all(pool).await, pq.fetch_all(pool).await) {
                (Ok(r), Ok(p)) => Ok((r, p)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })?;
        let mut records = assemble(rows, postings)?;
        records.sort_by_key(|r| positions.iter().position(|p| *p == r.position));
        Ok(records)
    }

    /// The position of an entry, by its id.
    pub async fn entry_position(&self, id: EntryId) -> Result<Option<i64>, DbError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "select position from entry where id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?)
    }

    /// The position of the entry an intent produced.
    pub async fn intent_position(&self, id: IntentId) -> Result<Option<i64>, DbError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "select position from entry where intent_id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?)
    }

    /// The entry an intent produced and the digest of what was signed, to tell a retry of
    /// the intent from a reuse of its id.
    pub async fn intent_outcome(
        &self,
        id: IntentId,
    ) -> Result<Option<(EntryId, ledger::Digest)>, DbError> {
        let row: Option<(Uuid, Vec<u8>)> = on_pool!(self, |pool| sqlx::query_as(
            "select id, digest from entry where intent_id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        row.map(|(entry, digest)| {
            let digest: [u8; 32] = digest
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("entry", "digest is not 32 bytes"))?;
            Ok((EntryId(entry), ledger::Digest(digest)))
        })
        .transpose()
    }

    /// A committed entry with its postings, by id.
    pub async fn entry_by_id(&self, id: EntryId) -> Result<Option<EntryRecord>, DbError> {
        let Some(position) = self.entry_position(id).await? else {
            return Ok(None);
        };
        Ok(self.entries_at(&[position]).await?.pop())
    }

    /// Every committed intent with the entry it produced, in commit order (for checkers).
    pub async fn committed_intents(&self) -> Result<Vec<(IntentId, EntryId)>, DbError> {
        let rows: Vec<(Uuid, Uuid)> = on_pool!(self, |pool| sqlx::query_as(
            "select intent_id, id from entry order by position"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(intent, entry)| (IntentId(intent), EntryId(entry)))
            .collect())
    }

    /// Runs a maintenance statement (e.g. SQLite's `VACUUM INTO`) on a pooled connection.
    pub async fn execute_maintenance(&self, sql: &str) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(sql).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Whether the database has no coledger tables yet (a target for a restore).
    pub async fn is_empty(&self) -> Result<bool, DbError> {
        let sql = match self {
            Database::Sqlite { .. } => {
                "select count(*) from sqlite_master where type = 'table' and name = 'entry'"
            }
            Database::Postgres { .. } => {
                "select count(*) from information_schema.tables where table_name = 'entry'"
            }
        };
        let found: i64 = on_pool!(self, |pool| sqlx::query_scalar(sql).fetch_one(pool).await)?;
        Ok(found == 0)
    }

    /// Claims an idempotency key for `principal`, or says what it already holds.
    pub async fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        now_ms: i64,
    ) -> Result<Remembered, DbError> {
        let inserted = on_pool!(self, |pool| {
            sqlx::query(
            "insert into idempotency_key (principal, key, fingerprint, status, body, created_at) \
             values ($1, $2, $3, 0, '', $4) on conflict do nothing"
        )
        .bind(principal)
        .bind(key)
        .bind(&fingerprint[..])
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        if inserted == 1 {
            return Ok(Remembered::New);
        }
        let row: Option<(Vec<u8>, i32, String)> = on_pool!(self, |pool| sqlx::query_as(
            "select fingerprint, status, body from idempotency_key \
             where principal = $1 and key = $2"
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(pool)
        .await)?;
        Ok(match row {
            // Released between our insert and our read: the caller may simply retry.
            None => Remembered::InProgress,
            Some((stored, _, _)) if stored != fingerprint => Remembered::Mismatch,
            Some((_, 0, _)) => Remembered::InProgress,
            Some((_, status, body)) => Remembered::Done {
                status: u16::try_from(status).unwrap_or(500),
                body,
            },
        })
    }

    /// Records the response for a claimed key.
    pub async fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update idempotency_key set status = $1, body = $2 where principal = $3 and key = $4"
        )
        .bind(i32::from(status))
        .bind(body)
        .bind(principal)
        .bind(key)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Forgets idempotency records made before `before_ms`; returns how many. Clients retry
    /// within minutes; a day's window is generous and keeps the table small.
    pub async fn prune_idempotency(&self, before_ms: i64) -> Result<u64, DbError> {
        Ok(on_pool!(self, |pool| sqlx::query(
            "delete from idempotency_key where created_at < $1"
        )
        .bind(before_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Releases a claimed key whose request failed in a way worth retrying (a 5xx), so the
    /// retry runs again instead of replaying the failure.
    pub async fn release_idempotent(&self, principal: &str, key: &str) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "delete from idempotency_key where principal = $1 and key = $2 and status = 0"
        )
        .bind(principal)
        .bind(key)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }
}

/// `$1, $2, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn assemble(rows: Vec<EntryRow>, postings: Vec<PostingRow>) -> Result<Vec<EntryRecord>, DbError> {
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let (
            position,
            id,
            kind,
            memo,
            tags,
            created_at,
            intent_id,
            intent_body,
            signer,
            signature,
            request,
        ) = row;
        records.push(EntryRecord {
            position,
            id: EntryId(id),
            kind,
            memo,
            tags,
            created_at,
            intent_id: IntentId(intent_id),
            intent_body,
            signer: signer
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("entry", "signer is not 32 bytes"))?,
            signature: signature
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("entry", "signature is not 64 bytes"))?,
            payment_request: request.map(PaymentRequestId),
            postings: Vec::new(),
        });
    }
    for (position, unit, debit, credit, amount) in postings {
        let Some(record) = records.iter_mut().find(|r| r.position == position) else {
            continue;
        };
        record.postings.push(Posting {
            unit: UnitCode::new(&unit).map_err(|e| corrupt("posting", e))?,
            debit: AccountId(debit),
            credit: AccountId(credit),
            amount: Amount::from_minor(amount).map_err(|e| corrupt("posting", e))?,
        });
    }
    Ok(records)
}
