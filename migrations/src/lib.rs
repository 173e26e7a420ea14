//! The SQL schema of coledger, for SQLite (the embedded default) and PostgreSQL (production),
//! compiled into the binary and exported as sqlx [`Migrator`]s.
//!
//! Invariants: a migration is never edited once it has landed (sqlx refuses to start on a
//! changed checksum); both dialects always describe the same tables; ledger rows (entries,
//! postings, journal links; each entry row carries its signed intent) have no UPDATE or DELETE
//! path, enforced by triggers.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// One migration: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

const SQLITE: &[Embedded] = &[
    (1, "ledger", include_str!("../sqlite/0001_ledger.sql")),
    (2, "service", include_str!("../sqlite/0002_service.sql")),
    (
        3,
        "programmes",
        include_str!("../sqlite/0003_programmes.sql"),
    ),
    (
        4,
        "activation codes",
        include_str!("../sqlite/0004_activation_codes.sql"),
    ),
    (
        5,
        "payment request cancel",
        include_str!("../sqlite/0005_payment_request_cancel.sql"),
    ),
    (
        6,
        "posting chains",
        concat!(
            include_str!("../sqlite/0006_posting_chains.sql"),
            include_str!("../sqlite/0006_posting_chains_backfill.sql"),
            include_str!("../sqlite/0006_posting_chains_end.sql"),
        ),
    ),
    (
        7,
        "ledger rows without foreign keys",
        include_str!("../sqlite/0007_ledger_rows_without_foreign_keys.sql"),
    ),
    (
        8,
        "refund links",
        include_str!("../sqlite/0008_refund_links.sql"),
    ),
    (
        9,
        "account holder",
        include_str!("../sqlite/0009_account_holder.sql"),
    ),
    (
        10,
        "settlement file void",
        include_str!("../sqlite/0010_settlement_file_void.sql"),
    ),
    (
        11,
        "journal checkpoints",
        include_str!("../sqlite/0011_journal_checkpoints.sql"),
    ),
    (
        12,
        "participant research consent",
        include_str!("../sqlite/0012_participant_research_consent.sql"),
    ),
];

const POSTGRES: &[Embedded] = &[
    (1, "ledger", include_str!("../postgres/0001_ledger.sql")),
    (2, "service", include_str!("../postgres/0002_service.sql")),
    (
        3,
        "programmes",
        include_str!("../postgres/0003_programmes.sql"),
    ),
    (
        4,
        "activation codes",
        include_str!("../postgres/0004_activation_codes.sql"),
    ),
    (
        5,
        "payment request cancel",
        include_str!("../postgres/0005_payment_request_cancel.sql"),
    ),
    (
        6,
        "posting chains",
        concat!(
            include_str!("../postgres/0006_posting_chains.sql"),
            include_str!("../postgres/0006_posting_chains_backfill.sql"),
            include_str!("../postgres/0006_posting_chains_end.sql"),
        ),
    ),
    (
        7,
        "ledger rows without foreign keys",
        include_str!("../postgres/0007_ledger_rows_without_foreign_keys.sql"),
    ),
    (
        8,
        "refund links",
        include_str!("../postgres/0008_refund_links.sql"),
    ),
    (
        9,
        "account holder",
        include_str!("../postgres/0009_account_holder.sql"),
    ),
    (
        10,
        "settlement file void",
        include_str!("../postgres/0010_settlement_file_void.sql"),
    ),
    (
        11,
        "journal checkpoints",
        include_str!("../postgres/0011_journal_checkpoints.sql"),
    ),
    (
        12,
        "participant research consent",
        include_str!("../postgres/0012_participant_research_consent.sql"),
    ),
];

/// Migration 0006's backfill of the posting chains on SQLite, on its own so that tests can
/// check it links stored rows exactly as the writer links new ones.
pub const SQLITE_POSTING_CHAINS_BACKFILL: &str =
    include_str!("../sqlite/0006_posting_chains_backfill.sql");

/// Migration 0006's backfill of the posting chains on PostgreSQL (see
/// [`SQLITE_POSTING_CHAINS_BACKFILL`]).
pub const POSTGRES_POSTING_CHAINS_BACKFILL: &str =
    include_str!("../postgres/0006_posting_chains_backfill.sql");

/// Migrations compiled into the binary, so the service needs no files beside it.
#[derive(Debug, Clone, Copy)]
struct EmbeddedSource(&'static [Embedded]);

impl MigrationSource<'static> for EmbeddedSource {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The SQLite migrator.
pub async fn sqlite() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(EmbeddedSource(SQLITE)).await
}

/// The PostgreSQL migrator.
pub async fn postgres() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(EmbeddedSource(POSTGRES)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_define_the_same_tables() {
        fn tables(sql: &str) -> Vec<&str> {
            sql.lines()
                .filter_map(|l| l.strip_prefix("create table "))
                .filter_map(|l| l.split_whitespace().next())
                .collect()
        }
        for (lite, pg) in SQLITE.iter().zip(POSTGRES) {
            assert_eq!(lite.0, pg.0);
            assert_eq!(tables(lite.2), tables(pg.2));
        }
        assert_eq!(SQLITE.len(), POSTGRES.len());
    }
}
