//! Programme rows: programmes and their rule versions, enrolled households, cards,
//! disbursement runs with their stored plans, and the merchants each programme accepts.
//! Like the other service rows they go through the read pool; ledger effects go through the
//! committer. The SQL uses `$n` placeholders, which both SQLite and PostgreSQL accept.

use std::collections::HashSet;

use ledger::{
    AccountId, EntryId, HouseholdId, ParticipantId, ProgrammeId, PublicKey, RunId, Tags, UnitCode,
};
use uuid::Uuid;

use super::service::corrupt;
use super::{Database, DbError};
use crate::programme::{
    BankAccount, Programme, ProgrammeAccounts, ProgrammeRules, RuleVersion, Schedule,
};

/// One posting as the research export reads it, with its entry's id, kind and time.
#[derive(Clone, Debug)]
pub struct ResearchPosting {
    /// The entry it belongs to.
    pub entry: EntryId,
    /// The entry's kind, as stored (`payment`, `reversal`, …).
    pub kind: String,
    /// The entry's time, ms since the epoch.
    pub created_at: i64,
    /// The posting's unit.
    pub unit: UnitCode,
    /// The account debited.
    pub debit: AccountId,
    /// The account credited.
    pub credit: AccountId,
    /// The amount, in minor units.
    pub amount_minor: i64,
}

/// Rows per multi-row INSERT: 1,000 rows of up to 10 columns stay under both databases'
/// limits on bound parameters (SQLite 32,766; PostgreSQL 65,535).
const INSERT_CHUNK: usize = 1_000;

/// A household enrolled in a programme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolledHousehold {
    /// Id.
    pub id: HouseholdId,
    /// The programme.
    pub programme: ProgrammeId,
    /// The municipality's reference (unique per programme).
    pub reference: String,
    /// Name.
    pub name: String,
    /// Number of dependents.
    pub dependents: u32,
    /// Area.
    pub area: String,
    /// Phone, normalised, if given.
    pub phone: Option<String>,
    /// Language (BCP 47 primary tag).
    pub language: String,
    /// Its account in the programme's unit.
    pub account: AccountId,
    /// When enrolled (ms).
    pub enrolled_at: i64,
}

/// A stored card. The sealed key opens only with the PIN and the server secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCard {
    /// The card number (16 digits).
    pub number: String,
    /// The household.
    pub household: HouseholdId,
    /// The account it pays from.
    pub account: AccountId,
    /// The custodial key, sealed.
    pub sealed_key: Vec<u8>,
    /// Wrong PINs since the last right one.
    pub failed_attempts: u32,
    /// `active`, `locked` or `replaced`.
    pub status: String,
    /// When issued (ms).
    pub issued_at: i64,
    /// The card that replaced it.
    pub replaced_by: Option<String>,
}

/// A disbursement run as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRun {
    /// Id.
    pub id: RunId,
    /// The programme.
    pub programme: ProgrammeId,
    /// `2026-12`, or an emergency run's label.
    pub period: String,
    /// `monthly` or `emergency`.
    pub kind: String,
    /// The area an emergency run pays, if limited to one.
    pub area: Option<String>,
    /// Households paid.
    pub households: u32,
    /// Total, minor units.
    pub total_minor: i64,
    /// Chunks (entries).
    pub chunks: u32,
    /// When planned (ms).
    pub created_at: i64,
    /// When every chunk had committed (ms).
    pub completed_at: Option<i64>,
}

/// One household's line in a run's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLine {
    /// Which entry pays it.
    pub chunk: u32,
    /// The household.
    pub household: HouseholdId,
    /// Its account.
    pub account: AccountId,
    /// Amount, minor units.
    pub amount_minor: i64,
}

/// A merchant's standing with a programme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammeMerchant {
    /// The programme.
    pub programme: ProgrammeId,
    /// The merchant.
    pub participant: ParticipantId,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Its merchant account in the programme's unit, once approved.
    pub account: Option<AccountId>,
    /// When it applied (ms).
    pub applied_at: i64,
    /// When a programme manager decided (ms).
    pub decided_at: Option<i64>,
}

type ProgrammeRow = (
    Uuid,
    String,
    String,
    Uuid,
    Uuid,
    Uuid,
    Vec<u8>,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
);
const PROGRAMME_COLUMNS: &str = "id, name, unit, budget_account, clearing_account, fee_account, \
     administrator, schedule, areas, languages, created_at, debtor_name, debtor_iban, debtor_bic, \
     pay_day";

fn programme(row: ProgrammeRow) -> Result<Programme, DbError> {
    let (
        id,
        name,
        unit,
        budget,
        clearing,
        fees,
        administrator,
        schedule,
        areas,
        languages,
        at,
        debtor_name,
        debtor_iban,
        debtor_bic,
        pay_day,
    ) = row;
    let bad = |reason: String| corrupt("programme", reason);
    Ok(Programme {
        id: ProgrammeId(id),
        name,
        unit: UnitCode::new(&unit).map_err(|e| bad(e.to_string()))?,
        accounts: ProgrammeAccounts {
            budget: AccountId(budget),
            clearing: AccountId(clearing),
            fees: AccountId(fees),
        },
        administrator: PublicKey(
            administrator
                .try_into()
                .map_err(|_| bad("administrator key is not 32 bytes".into()))?,
        ),
        schedule: Schedule::parse(&schedule, pay_day.and_then(|d| u8::try_from(d).ok()))
            .ok_or_else(|| bad(format!("schedule {schedule} on day {pay_day:?}")))?,
        areas: serde_json::from_str(&areas).map_err(|e| bad(e.to_string()))?,
        languages: serde_json::from_str(&languages).map_err(|e| bad(e.to_string()))?,
        debtor: match (debtor_name, debtor_iban) {
            (Some(name), Some(iban)) => Some(BankAccount {
                name,
                iban,
                bic: debtor_bic,
            }),
            _ => None,
        },
        created_at: at,
    })
}

type RulesRow = (i32, i64, String, i64);

fn rule_version(row: RulesRow) -> Result<RuleVersion, DbError> {
    let (version, effective_from, rules, created_at) = row;
    let rules: ProgrammeRules =
        serde_json::from_str(&rules).map_err(|e| corrupt("programme_rules", e))?;
    Ok(RuleVersion {
        version: u32::try_from(version).map_err(|e| corrupt("programme_rules", e))?,
        effective_from,
        rules,
        created_at,
    })
}

type HouseholdRow = (
    Uuid,
    Uuid,
    String,
    String,
    i32,
    String,
    Option<String>,
    String,
    Uuid,
    i64,
);
const HOUSEHOLD_COLUMNS: &str =
    "id, programme, reference, name, dependents, area, phone, language, account, enrolled_at";

fn household(row: HouseholdRow) -> Result<EnrolledHousehold, DbError> {
    let (id, programme, reference, name, dependents, area, phone, language, account, at) = row;
    Ok(EnrolledHousehold {
        id: HouseholdId(id),
        programme: ProgrammeId(programme),
        reference,
        name,
        dependents: u32::try_from(dependents).map_err(|e| corrupt("household", e))?,
        area,
        phone,
        language,
        account: AccountId(account),
        enrolled_at: at,
    })
}

type CardRow = (
    String,
    Uuid,
    Uuid,
    Vec<u8>,
    i32,
    String,
    i64,
    Option<String>,
);
const CARD_COLUMNS: &str =
    "number, household, account, sealed_key, failed_attempts, status, issued_at, replaced_by";

fn card(row: CardRow) -> Result<StoredCard, DbError> {
    let (number, household, account, sealed_key, failed, status, issued_at, replaced_by) = row;
    Ok(StoredCard {
        number,
        household: HouseholdId(household),
        account: AccountId(account),
        sealed_key,
        failed_attempts: u32::try_from(failed).map_err(|e| corrupt("card", e))?,
        status,
        issued_at,
        replaced_by,
    })
}

type RunRow = (
    Uuid,
    Uuid,
    String,
    String,
    Option<String>,
    i32,
    i64,
    i32,
    i64,
    Option<i64>,
);
const RUN_COLUMNS: &str = "id, programme, period, kind, area, households, total_minor, chunks, \
     created_at, completed_at";

fn run(row: RunRow) -> Result<StoredRun, DbError> {
    let (id, programme, period, kind, area, households, total_minor, chunks, created, done) = row;
    Ok(StoredRun {
        id: RunId(id),
        programme: ProgrammeId(programme),
        period,
        kind,
        area,
        households: u32::try_from(households).map_err(|e| corrupt("disbursement_run", e))?,
        total_minor,
        chunks: u32::try_from(chunks).map_err(|e| corrupt("disbursement_run", e))?,
        created_at: created,
        completed_at: done,
    })
}

type MerchantRow = (Uuid, Uuid, String, Option<Uuid>, i64, Option<i64>);

fn merchant(row: MerchantRow) -> ProgrammeMerchant {
    let (programme, participant, status, account, applied_at, decided_at) = row;
    ProgrammeMerchant {
        programme: ProgrammeId(programme),
        participant: ParticipantId(participant),
        status,
        account: account.map(AccountId),
        applied_at,
        decided_at,
    }
}

fn to_i32(value: u32, table: &'static str) -> Result<i32, DbError> {
    i32::try_from(value).map_err(|e| corrupt(table, e))
}

/// An account as the research export sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResearchAccount {
    /// The account.
    pub account: AccountId,
    /// Its kind (`issuer`, `holder`, `merchant`, …).
    pub kind: String,
    /// Its owner's merchant category, if any.
    pub category: Option<String>,
    /// Whether its owner is a social enterprise.
    pub social_enterprise: bool,
    /// Whether its owner withheld consent to research use.
    pub withheld: bool,
}

/// A household account as the research export sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResearchHousehold {
    /// The account (the household's current one, or a card's).
    pub account: AccountId,
    /// The household.
    pub household: HouseholdId,
    /// Its programme.
    pub programme: ProgrammeId,
    /// Its area.
    pub area: String,
    /// Whether it withheld consent to research use.
    pub withheld: bool,
}

impl Database {
    fn numbered_placeholders(&self) -> bool {
        matches!(self, Database::Postgres { .. })
    }

    /// Stores a new programme with its first rule version, in one transaction.
    pub async fn insert_programme(
        &self,
        p: &Programme,
        first: &RuleVersion,
    ) -> Result<(), DbError> {
        let areas = serde_json::to_string(&p.areas).map_err(|e| corrupt("programme", e))?;
        let languages = serde_json::to_string(&p.languages).map_err(|e| corrupt("programme", e))?;
        let rules = serde_json::to_string(&first.rules).map_err(|e| corrupt("programme", e))?;
        let insert = format!(
            "insert into programme ({PROGRAMME_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&insert)
                .bind(p.id.0)
                .bind(&p.name)
                .bind(p.unit.as_str())
                .bind(p.accounts.budget.0)
                .bind(p.accounts.clearing.0)
                .bind(p.accounts.fees.0)
                .bind(&p.administrator.0[..])
                .bind(p.schedule.as_str())
                .bind(&areas)
                .bind(&languages)
                .bind(p.created_at)
                .bind(p.debtor.as_ref().map(|d| d.name.as_str()))
                .bind(p.debtor.as_ref().map(|d| d.iban.as_str()))
                .bind(p.debtor.as_ref().and_then(|d| d.bic.as_deref()))
                .bind(p.schedule.day().map(i32::from))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into programme_rules (programme, version, effective_from, rules, \
                 created_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(p.id.0)
            .bind(to_i32(first.version, "programme_rules")?)
            .bind(first.effective_from)
            .bind(&rules)
            .bind(first.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// A programme.
    pub async fn programme(&self, id: ProgrammeId) -> Result<Option<Programme>, DbError> {
        let sql = format!("select {PROGRAMME_COLUMNS} from programme where id = $1");
        let row: Option<ProgrammeRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_optional(pool)
            .await)?;
        row.map(programme).transpose()
    }

    /// Every programme, oldest first.
    pub async fn programmes(&self) -> Result<Vec<Programme>, DbError> {
        let sql = format!("select {PROGRAMME_COLUMNS} from programme order by created_at, id");
        let rows: Vec<ProgrammeRow> =
            on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?;
        rows.into_iter().map(programme).collect()
    }

    /// Every rule version of a programme, oldest first.
    pub async fn rule_versions(&self, id: ProgrammeId) -> Result<Vec<RuleVersion>, DbError> {
        let rows: Vec<RulesRow> = on_pool!(self, |pool| sqlx::query_as(
            "select version, effective_from, rules, created_at from programme_rules \
             where programme = $1 order by version"
        )
        .bind(id.0)
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(rule_version).collect()
    }

    /// Adds a rule version (the next number). Returns it.
    pub async fn add_rule_version(
        &self,
        id: ProgrammeId,
        effective_from: i64,
        rules: &ProgrammeRules,
        now_ms: i64,
    ) -> Result<RuleVersion, DbError> {
        let text = serde_json::to_string(rules).map_err(|e| corrupt("programme_rules", e))?;
        let version: i32 = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let last: Option<i32> =
                sqlx::query_scalar("select max(version) from programme_rules where programme = $1")
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await?;
            let next = last.unwrap_or(0).saturating_add(1);
            sqlx::query(
                "insert into programme_rules (programme, version, effective_from, rules, \
                 created_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(id.0)
            .bind(next)
            .bind(effective_from)
            .bind(&text)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await.map(|()| next)
        })?;
        Ok(RuleVersion {
            version: u32::try_from(version).map_err(|e| corrupt("programme_rules", e))?,
            effective_from,
            rules: rules.clone(),
            created_at: now_ms,
        })
    }

    /// Every household of a programme, in enrolment order.
    pub async fn households(&self, id: ProgrammeId) -> Result<Vec<EnrolledHousehold>, DbError> {
        let sql =
            format!("select {HOUSEHOLD_COLUMNS} from household where programme = $1 order by id");
        let rows: Vec<HouseholdRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(household).collect()
    }

    /// How many households a programme has enrolled.
    pub async fn household_count(&self, id: ProgrammeId) -> Result<u64, DbError> {
        let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(
            "select count(*) from household where programme = $1"
        )
        .bind(id.0)
        .fetch_one(pool)
        .await)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every account that is or was a household's (its current account and every card's),
    /// with the household: a household is one however many cards it has had.
    pub async fn household_accounts(&self) -> Result<Vec<(AccountId, HouseholdId)>, DbError> {
        let rows: Vec<(Uuid, Uuid)> = on_pool!(self, |pool| sqlx::query_as(
            "select account, id from household union select account, household from card"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(account, household)| (AccountId(account), HouseholdId(household)))
            .collect())
    }

    /// A household.
    pub async fn household(&self, id: HouseholdId) -> Result<Option<EnrolledHousehold>, DbError> {
        let sql = format!("select {HOUSEHOLD_COLUMNS} from household where id = $1");
        let row: Option<HouseholdRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_optional(pool)
            .await)?;
        row.map(household).transpose()
    }

    /// Stores new households and updates changed ones, in one transaction.
    pub async fn save_households(
        &self,
        new: &[EnrolledHousehold],
        changed: &[EnrolledHousehold],
    ) -> Result<(), DbError> {
        let dependents = |h: &EnrolledHousehold| to_i32(h.dependents, "household");
        let numbered = self.numbered_placeholders();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for rows in new.chunks(INSERT_CHUNK) {
                let mut sql = format!("insert into household ({HOUSEHOLD_COLUMNS}) values ");
                push_placeholders(&mut sql, rows.len(), 10, numbered);
                let mut query = sqlx::query(&sql);
                for h in rows {
                    query = query
                        .bind(h.id.0)
                        .bind(h.programme.0)
                        .bind(&h.reference)
                        .bind(&h.name)
                        .bind(dependents(h)?)
                        .bind(&h.area)
                        .bind(&h.phone)
                        .bind(&h.language)
                        .bind(h.account.0)
                        .bind(h.enrolled_at);
                }
                query.execute(&mut *tx).await?;
            }
            for h in changed {
                sqlx::query(
                    "update household set name = $2, dependents = $3, area = $4, phone = $5, \
                     language = $6 where id = $1",
                )
                .bind(h.id.0)
                .bind(&h.name)
                .bind(dependents(h)?)
                .bind(&h.area)
                .bind(&h.phone)
                .bind(&h.language)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// A lost card's replacement, in one transaction: the new card stored, the old one marked
    /// replaced by it (only if it was not already), the household pointed at the new card's
    /// account. Fails, changing nothing, if the old card was replaced meanwhile.
    pub async fn record_replacement(
        &self,
        old: &str,
        new: &StoredCard,
        household: HouseholdId,
    ) -> Result<(), DbError> {
        let insert =
            format!("insert into card ({CARD_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8)");
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(
                "update card set status = 'replaced', failed_attempts = 0, replaced_by = $2 \
                 where number = $1 and status <> 'replaced'",
            )
            .bind(old)
            .bind(&new.number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed != 1 {
                tx.rollback().await?;
                return Err(DbError::CorruptRow {
                    table: "card",
                    reason: format!("card {old} was replaced meanwhile"),
                });
            }
            sqlx::query(&insert)
                .bind(&new.number)
                .bind(new.household.0)
                .bind(new.account.0)
                .bind(&new.sealed_key)
                .bind(to_i32(new.failed_attempts, "card")?)
                .bind(&new.status)
                .bind(new.issued_at)
                .bind(&new.replaced_by)
                .execute(&mut *tx)
                .await?;
            sqlx::query("update household set account = $2 where id = $1")
                .bind(household.0)
                .bind(new.account.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Points a household at a new account (after a lost-card replacement).
    pub async fn set_household_account(
        &self,
        id: HouseholdId,
        account: AccountId,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update household set account = $2 where id = $1"
        )
        .bind(id.0)
        .bind(account.0)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Stores a new card.
    pub async fn insert_card(&self, c: &StoredCard) -> Result<(), DbError> {
        let sql =
            format!("insert into card ({CARD_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8)");
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&c.number)
            .bind(c.household.0)
            .bind(c.account.0)
            .bind(&c.sealed_key)
            .bind(to_i32(c.failed_attempts, "card")?)
            .bind(&c.status)
            .bind(c.issued_at)
            .bind(&c.replaced_by)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// A card by number.
    pub async fn card(&self, number: &str) -> Result<Option<StoredCard>, DbError> {
        let sql = format!("select {CARD_COLUMNS} from card where number = $1");
        let row: Option<CardRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(number)
            .fetch_optional(pool)
            .await)?;
        row.map(card).transpose()
    }

    /// Every replaced card (a lost card's account stays frozen behind its replacement).
    pub async fn replaced_cards(&self) -> Result<Vec<StoredCard>, DbError> {
        let sql = format!("select {CARD_COLUMNS} from card where status = 'replaced'");
        let rows: Vec<CardRow> = on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?;
        rows.into_iter().map(card).collect()
    }

    /// The replaced card whose account is `account`, if it is one.
    pub async fn replaced_card_of(
        &self,
        account: AccountId,
    ) -> Result<Option<StoredCard>, DbError> {
        let sql =
            format!("select {CARD_COLUMNS} from card where account = $1 and status = 'replaced'");
        let row: Option<CardRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(account.0)
            .fetch_optional(pool)
            .await)?;
        row.map(card).transpose()
    }

    /// The cards of a household, newest first.
    pub async fn cards_of(&self, household: HouseholdId) -> Result<Vec<StoredCard>, DbError> {
        let sql = format!(
            "select {CARD_COLUMNS} from card where household = $1 order by issued_at desc, number"
        );
        let rows: Vec<CardRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(household.0)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(card).collect()
    }

    /// A page of a programme's households by reference, after `after`, at most `limit`,
    /// each with whether it holds an active card.
    pub async fn households_page(
        &self,
        programme: ProgrammeId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(EnrolledHousehold, bool)>, DbError> {
        let columns = HOUSEHOLD_COLUMNS
            .split(", ")
            .map(|c| format!("h.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select {columns}, exists (select 1 from card c where c.household = h.id \
             and c.status = 'active') as carded from household h \
             where h.programme = $1 and h.reference > $2 order by h.reference limit $3"
        );
        type Row = (
            Uuid,
            Uuid,
            String,
            String,
            i32,
            String,
            Option<String>,
            String,
            Uuid,
            i64,
            bool,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(programme.0)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(
                |(
                    id,
                    p,
                    reference,
                    name,
                    dependents,
                    area,
                    phone,
                    language,
                    account,
                    at,
                    carded,
                )| {
                    let row = (
                        id, p, reference, name, dependents, area, phone, language, account, at,
                    );
                    Ok((household(row)?, carded))
                },
            )
            .collect()
    }

    /// Each household's current card status (`active` or `locked`; replaced cards are
    /// left out), for a programme's households that have a card.
    pub async fn card_states(
        &self,
        programme: ProgrammeId,
    ) -> Result<std::collections::HashMap<HouseholdId, String>, DbError> {
        let rows: Vec<(Uuid, String)> = on_pool!(self, |pool| sqlx::query_as(
            "select c.household, c.status from card c join household h on h.id = c.household \
             where h.programme = $1 and c.status <> 'replaced'"
        )
        .bind(programme.0)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(household, status)| (HouseholdId(household), status))
            .collect())
    }

    /// Reserves one PIN attempt before the PIN is checked: counts it as wrong until proved
    /// right, and only while fewer than `limit` are counted and the card is active. `None`
    /// when refused, so parallel guesses can never try more than `limit` PINs.
    pub async fn reserve_pin_attempt(
        &self,
        number: &str,
        limit: u32,
    ) -> Result<Option<u32>, DbError> {
        let count: Option<i32> = on_pool!(self, |pool| sqlx::query_scalar(
            "update card set failed_attempts = failed_attempts + 1 \
             where number = $1 and status = 'active' and failed_attempts < $2 \
             returning failed_attempts"
        )
        .bind(number)
        .bind(to_i32(limit, "card")?)
        .fetch_optional(pool)
        .await)?;
        count
            .map(|c| u32::try_from(c).map_err(|e| corrupt("card", e)))
            .transpose()
    }

    /// Locks an active card (its wrong PINs reached the limit).
    pub async fn lock_card(&self, number: &str) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update card set status = 'locked' where number = $1 and status = 'active'"
        )
        .bind(number)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Sets a card's status and clears its wrong-PIN count (a right PIN, an unlock).
    pub async fn set_card_state(
        &self,
        number: &str,
        status: &str,
        replaced_by: Option<&str>,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update card set status = $2, failed_attempts = 0, \
             replaced_by = coalesce($3, replaced_by) where number = $1"
        )
        .bind(number)
        .bind(status)
        .bind(replaced_by)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Clears the wrong-PIN count after a right PIN (an active card only: a card locked
    /// meanwhile by other guesses stays locked).
    pub async fn card_right_pin(&self, number: &str) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update card set failed_attempts = 0 where number = $1 and status = 'active'"
        )
        .bind(number)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Replaces a card's sealed key (a PIN change).
    pub async fn set_card_key(&self, number: &str, sealed_key: &[u8]) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update card set sealed_key = $2, failed_attempts = 0 where number = $1"
        )
        .bind(number)
        .bind(sealed_key)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// The run of a programme for a period, if planned.
    pub async fn run_for(
        &self,
        programme: ProgrammeId,
        period: &str,
    ) -> Result<Option<StoredRun>, DbError> {
        let sql = format!(
            "select {RUN_COLUMNS} from disbursement_run where programme = $1 and period = $2"
        );
        let row: Option<RunRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(programme.0)
            .bind(period)
            .fetch_optional(pool)
            .await)?;
        row.map(run).transpose()
    }

    /// Every run of a programme, newest first.
    pub async fn runs(&self, programme: ProgrammeId) -> Result<Vec<StoredRun>, DbError> {
        let sql = format!(
            "select {RUN_COLUMNS} from disbursement_run where programme = $1 \
             order by created_at desc, id"
        );
        let rows: Vec<RunRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(programme.0)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(run).collect()
    }

    /// Stores a run and its plan in one transaction. Fails with a unique violation if the
    /// (programme, period) run exists: the caller then resumes that one.
    pub async fn insert_run(&self, r: &StoredRun, lines: &[RunLine]) -> Result<(), DbError> {
        let insert = format!(
            "insert into disbursement_run ({RUN_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let numbered = self.numbered_placeholders();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&insert)
                .bind(r.id.0)
                .bind(r.programme.0)
                .bind(&r.period)
                .bind(&r.kind)
                .bind(&r.area)
                .bind(to_i32(r.households, "disbursement_run")?)
                .bind(r.total_minor)
                .bind(to_i32(r.chunks, "disbursement_run")?)
                .bind(r.created_at)
                .bind(r.completed_at)
                .execute(&mut *tx)
                .await?;
            for rows in lines.chunks(INSERT_CHUNK) {
                let mut sql = String::from(
                    "insert into disbursement_line (run, chunk, household, account, \
                     amount_minor) values ",
                );
                push_placeholders(&mut sql, rows.len(), 5, numbered);
                let mut query = sqlx::query(&sql);
                for line in rows {
                    query = query
                        .bind(r.id.0)
                        .bind(to_i32(line.chunk, "disbursement_line")?)
                        .bind(line.household.0)
                        .bind(line.account.0)
                        .bind(line.amount_minor);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// A run's plan, by chunk.
    pub async fn run_lines(&self, id: RunId) -> Result<Vec<RunLine>, DbError> {
        let rows: Vec<(i32, Uuid, Uuid, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "select chunk, household, account, amount_minor from disbursement_line \
             where run = $1 order by chunk, household"
        )
        .bind(id.0)
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|(chunk, household, account, amount_minor)| {
                Ok(RunLine {
                    chunk: u32::try_from(chunk).map_err(|e| corrupt("disbursement_line", e))?,
                    household: HouseholdId(household),
                    account: AccountId(account),
                    amount_minor,
                })
            })
            .collect()
    }

    /// Marks a run complete.
    pub async fn complete_run(&self, id: RunId, now_ms: i64) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update disbursement_run set completed_at = $2 where id = $1 and completed_at is null"
        )
        .bind(id.0)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Per redeeming account: redemption entries, units redeemed and fees, for `redeem`
    /// entries of `unit` committed in `[from_ms, to_ms)`.
    pub async fn redemption_totals(
        &self,
        unit: UnitCode,
        clearing: AccountId,
        fees: AccountId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(AccountId, i64, i64, i64)>, DbError> {
        let rows: Vec<(Uuid, i64, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "select p.debit, count(distinct e.position), \
             cast(sum(p.amount_minor) as bigint), \
             cast(sum(case when p.credit = $3 then p.amount_minor else 0 end) as bigint) \
             from entry e join posting p on p.entry_position = e.position \
             where e.kind = 'redeem' and p.unit = $1 and (p.credit = $2 or p.credit = $3) \
             and e.created_at >= $4 and e.created_at < $5 group by p.debit"
        )
        .bind(unit.as_str())
        .bind(clearing.0)
        .bind(fees.0)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(account, count, gross, fee)| (AccountId(account), count, gross, fee))
            .collect())
    }

    /// Records whether a household withheld consent to research use.
    pub async fn set_research_opt_out(
        &self,
        household: HouseholdId,
        opt_out: bool,
    ) -> Result<bool, DbError> {
        let changed: u64 = on_pool!(self, |pool| sqlx::query(
            "update household set research_opt_out = $2 where id = $1"
        )
        .bind(household.0)
        .bind(i16::from(opt_out))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// For the research export: every account with its kind, its owner's category and
    /// whether the owner is a social enterprise and whether it withheld consent.
    pub async fn research_accounts(&self) -> Result<Vec<ResearchAccount>, DbError> {
        type Row = (Uuid, String, Option<String>, Option<i16>, Option<i16>);
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "select a.id, a.kind, p.category_code, p.social_enterprise, \
                 cast(p.research_opt_out as smallint) \
                 from account a left join participant p on p.id = a.participant",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, category, social, out)| ResearchAccount {
                account: AccountId(id),
                kind,
                category,
                social_enterprise: social == Some(1),
                withheld: out == Some(1),
            })
            .collect())
    }

    /// For the research export: each household account (current and former cards') with
    /// its household, area and whether it withheld consent.
    pub async fn research_households(&self) -> Result<Vec<ResearchHousehold>, DbError> {
        let rows: Vec<(Uuid, Uuid, Uuid, String, i16)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "select h.account, h.id, h.programme, h.area, cast(h.research_opt_out as smallint) \
             from household h \
             union select c.account, h.id, h.programme, h.area, \
             cast(h.research_opt_out as smallint) \
             from card c join household h on h.id = c.household",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(account, household, programme, area, out)| ResearchHousehold {
                    account: AccountId(account),
                    household: HouseholdId(household),
                    programme: ProgrammeId(programme),
                    area,
                    withheld: out == 1,
                },
            )
            .collect())
    }

    /// Every account that took part in an entry up to position `last`.
    pub async fn accounts_with_postings(&self, last: i64) -> Result<HashSet<AccountId>, DbError> {
        let rows: Vec<(Uuid,)> = on_pool!(self, |pool| sqlx::query_as(
            "select debit from posting where entry_position <= $1 \
             union select credit from posting where entry_position <= $1"
        )
        .bind(last)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(id,)| AccountId(id)).collect())
    }

    /// The highest committed position (0 when empty).
    pub async fn max_position(&self) -> Result<i64, DbError> {
        let max: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "select max(position) from entry"
        )
        .fetch_one(pool)
        .await)?;
        Ok(max.unwrap_or(0))
    }

    /// For the research export: the postings of entries `after < position <= up_to`, in
    /// order, with their entry's id, kind and time.
    pub async fn research_postings(
        &self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<ResearchPosting>, DbError> {
        let rows: Vec<(Uuid, String, i64, String, Uuid, Uuid, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "select e.id, e.kind, e.created_at, p.unit, p.debit, p.credit, p.amount_minor \
                 from entry e join posting p on p.entry_position = e.position \
                 where e.position > $1 and e.position <= $2 order by e.position, p.idx",
            )
            .bind(after)
            .bind(up_to)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(
                |(entry, kind, created_at, unit, debit, credit, amount_minor)| {
                    Ok(ResearchPosting {
                        entry: EntryId(entry),
                        kind,
                        created_at,
                        unit: UnitCode::new(&unit).map_err(|e| corrupt("posting", e))?,
                        debit: AccountId(debit),
                        credit: AccountId(credit),
                        amount_minor,
                    })
                },
            )
            .collect()
    }

    /// For the research export: every refund (a reversal entry naming the payment it gives
    /// back in `tags.reverses`) at or before journal position `up_to`, as (refund entry,
    /// payment, amount in minor units). Refunds are few, so this stays small even for a long
    /// journal.
    pub async fn research_refunds(
        &self,
        up_to: i64,
    ) -> Result<Vec<(EntryId, EntryId, i64)>, DbError> {
        let rows: Vec<(Uuid, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "select e.id, e.tags, p.amount_minor \
                 from entry e join posting p on p.entry_position = e.position \
                 where e.kind = 'reversal' and e.position <= $1",
            )
            .bind(up_to)
            .fetch_all(pool)
            .await
        })?;
        let mut refunds = Vec::new();
        for (entry, tags, amount_minor) in rows {
            let tags: Tags = serde_json::from_str(&tags).map_err(|e| corrupt("entry", e))?;
            // A reversal that names no payment is not a refund.
            if let Some(payment) = tags.reverses {
                refunds.push((EntryId(entry), payment, amount_minor));
            }
        }
        Ok(refunds)
    }

    /// The periods (first day, last day; `YYYY-MM-DD`) SEPA files were produced for.
    pub async fn settled_periods(
        &self,
        programme: ProgrammeId,
    ) -> Result<Vec<(String, String)>, DbError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "select from_day, to_day from settlement_file \
             where programme = $1 and voided_at is null order by from_day"
        )
        .bind(programme.0)
        .fetch_all(pool)
        .await)?)
    }

    /// Records that a SEPA file was produced for a period (again is a no-op; after a void it
    /// counts again).
    pub async fn record_settled_period(
        &self,
        programme: ProgrammeId,
        from_day: &str,
        to_day: &str,
        now_ms: i64,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "insert into settlement_file (programme, from_day, to_day, created_at) \
             values ($1, $2, $3, $4) on conflict (programme, from_day, to_day) do update \
             set created_at = excluded.created_at, voided_at = null \
             where settlement_file.voided_at is not null"
        )
        .bind(programme.0)
        .bind(from_day)
        .bind(to_day)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Marks the SEPA file of a period as voided (not sent: it no longer counts as paid).
    /// False if no unvoided file of that period is recorded.
    pub async fn void_settled_period(
        &self,
        programme: ProgrammeId,
        from_day: &str,
        to_day: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let voided = on_pool!(self, |pool| sqlx::query(
            "update settlement_file set voided_at = $4 \
             where programme = $1 and from_day = $2 and to_day = $3 and voided_at is null"
        )
        .bind(programme.0)
        .bind(from_day)
        .bind(to_day)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(voided == 1)
    }

    /// Records a merchant's application to programmes (pending), in one transaction.
    pub async fn apply_merchant(
        &self,
        participant: ParticipantId,
        programmes: &[ProgrammeId],
        now_ms: i64,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for programme in programmes {
                sqlx::query(
                    "insert into programme_merchant (programme, participant, status, applied_at) \
                     values ($1, $2, 'pending', $3)",
                )
                .bind(programme.0)
                .bind(participant.0)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// A merchant's standing with a programme.
    pub async fn programme_merchant(
        &self,
        programme: ProgrammeId,
        participant: ParticipantId,
    ) -> Result<Option<ProgrammeMerchant>, DbError> {
        let row: Option<MerchantRow> = on_pool!(self, |pool| sqlx::query_as(
            "select programme, participant, status, account, applied_at, decided_at \
             from programme_merchant where programme = $1 and participant = $2"
        )
        .bind(programme.0)
        .bind(participant.0)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(merchant))
    }

    /// Every merchant standing: of one programme, or (with `None`) of all.
    pub async fn programme_merchants(
        &self,
        programme: Option<ProgrammeId>,
    ) -> Result<Vec<ProgrammeMerchant>, DbError> {
        let rows: Vec<MerchantRow> = on_pool!(self, |pool| sqlx::query_as(
            "select programme, participant, status, account, applied_at, decided_at \
             from programme_merchant where ($1 = 0 or programme = $2) \
             order by applied_at, participant"
        )
        .bind(i16::from(programme.is_some()))
        .bind(programme.map_or(Uuid::nil(), |p| p.0))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(merchant).collect())
    }

    /// Records a programme manager's decision on an application.
    pub async fn decide_merchant(
        &self,
        programme: ProgrammeId,
        participant: ParticipantId,
        status: &str,
        account: Option<AccountId>,
        now_ms: i64,
    ) -> Result<(), DbError> {
        on_pool!(self, |pool| sqlx::query(
            "update programme_merchant set status = $3, account = coalesce($4, account), \
             decided_at = $5 where programme = $1 and participant = $2"
        )
        .bind(programme.0)
        .bind(participant.0)
        .bind(status)
        .bind(account.map(|a| a.0))
        .bind(now_ms)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }
}

/// Appends `rows` tuples of `columns` placeholders: `?` for SQLite, `$1, $2, …` for
/// PostgreSQL. SQLite looks numbered parameters up by name, one linear scan each, which
/// makes a statement with thousands of `$n` quadratic; anonymous `?` need no lookup.
fn push_placeholders(sql: &mut String, rows: usize, columns: usize, numbered: bool) {
    use std::fmt::Write as _;
    let mut n = 0usize;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            n = n.saturating_add(1);
            let separator = if column == 0 { "" } else { ", " };
            if numbered {
                let _ = write!(sql, "{separator}${n}");
            } else {
                let _ = write!(sql, "{separator}?");
            }
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_then_columns() {
        let mut sql = String::new();
        push_placeholders(&mut sql, 2, 3, true);
        assert_eq!(sql, "($1, $2, $3), ($4, $5, $6)");
        let mut sql = String::new();
        push_placeholders(&mut sql, 2, 2, false);
        assert_eq!(sql, "(?, ?), (?, ?)");
    }
}
