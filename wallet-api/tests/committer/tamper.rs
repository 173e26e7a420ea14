//! A ledger altered behind the service's back must refuse to load, with a message naming the
//! problem. These tests play the attacker, so they write SQL directly, bypassing the triggers
//! (which an attacker with database access could also drop).

use sqlx::Executor as _;
use wallet_api::db::LoadError;
use wallet_api::{Committer, CommitterConfig, Database};

use crate::support::*;

async fn ledger_with_payments(test_db: &TestDb) -> (Database, Scheme) {
    let (db, scheme, committer, task) = started(test_db).await;
    scheme.fund(&committer, scheme.alice, 100_00).await;
    for _ in 0..3 {
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00))
            .await
            .unwrap();
    }
    stop(committer, task).await;
    (db, scheme)
}

async fn attack(db: &Database, sqlite_sql: &str, postgres_sql: &str) {
    match db {
        Database::Sqlite { pool, .. } => {
            pool.execute(sqlite_sql).await.unwrap();
        }
        Database::Postgres { pool, .. } => {
            pool.execute(postgres_sql).await.unwrap();
        }
    }
}

async fn load_error(db: &Database) -> LoadError {
    match Committer::start(
        db.clone(),
        CommitterConfig::default(),
        std::sync::Arc::new(wallet_api::SystemClock),
    )
    .await
    {
        Ok(_) => panic!("a tampered ledger loaded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn an_altered_amount_breaks_the_hash_chain() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        attack(
            &db,
            "drop trigger posting_no_update; update posting set amount_minor = 1 where entry_position = 3",
            "alter table posting disable trigger user; update posting set amount_minor = 1 where entry_position = 3",
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(error, LoadError::Chain { position: 3, .. }),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("hash chain broken at entry position 3")
        );
    }
}

#[tokio::test]
async fn a_posting_without_its_chain_link_refuses_the_load() {
    // What a writer that predates migration 0006 would leave behind (or an attacker hiding a
    // payment from a statement): Alice's second payment no longer links to her first.
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        attack(
            &db,
            "drop trigger posting_no_update; update posting set prev_debit = null where entry_position = 3",
            "alter table posting disable trigger user; update posting set prev_debit = null where entry_position = 3",
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(error, LoadError::PostingLinks { position: 3, .. }),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("posting links of entry position 3")
        );
    }
}

#[tokio::test]
async fn a_deleted_entry_is_detected() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        attack(
            &db,
            "pragma foreign_keys = off; drop trigger posting_no_delete; \
             drop trigger entry_no_delete; delete from posting where entry_position = 2; \
             delete from entry where position = 2",
            "alter table posting disable trigger all; \
             alter table entry disable trigger all; delete from posting where entry_position = 2; \
             delete from entry where position = 2",
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(
                error,
                LoadError::OrphanRow {
                    table: "journal",
                    position: 2
                }
            ),
            "{}: {error}",
            test_db.label
        );
    }
}

/// PostgreSQL has no foreign key from postings and journal links to their entry (migration
/// 0007), so a row naming no entry can be written there; the load refuses it, wherever it is.
#[tokio::test]
async fn rows_that_belong_to_no_entry_refuse_the_load() {
    let posting = |position: i64| {
        format!(
            "insert into posting (entry_position, idx, unit, debit, credit, amount_minor) \
             select {position}, 7, unit, debit, credit, amount_minor from posting \
             where entry_position = 2"
        )
    };
    let journal = |position: i64| {
        format!(
            "insert into journal (unit, seq, entry_position, hash) \
             select unit, seq + 100, {position}, hash from journal where entry_position = 2"
        )
    };
    let cases = [
        // Before the first entry, and after the last one.
        (posting(0), "posting", 0),
        (posting(99), "posting", 99),
        (journal(0), "journal", 0),
        (journal(99), "journal", 99),
    ];
    for (sql, table, position) in &cases {
        for test_db in TestDb::all().await {
            let (db, _) = ledger_with_payments(&test_db).await;
            attack(&db, &format!("pragma foreign_keys = off; {sql}"), sql).await;
            let error = load_error(&db).await;
            let expected = match (*table, *position) {
                // A link past the last entry is counted as one too many.
                ("journal", 99) => matches!(error, LoadError::LinkCount { .. }),
                _ => matches!(
                    error,
                    LoadError::OrphanRow { table: t, position: p } if t == *table && p == *position
                ),
            };
            assert!(expected, "{}: {sql}: {error}", test_db.label);
        }
    }
}

/// An entry deleted from between others, with its journal links, leaves its postings naming
/// a position no entry has; the load names them rather than replaying around the gap.
#[tokio::test]
async fn postings_of_an_entry_deleted_between_others_refuse_the_load() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        let delete = "delete from journal where entry_position = 3; \
                      delete from entry where position = 3";
        attack(
            &db,
            &format!(
                "pragma foreign_keys = off; drop trigger entry_no_delete; \
                 drop trigger journal_no_delete; {delete}"
            ),
            &format!(
                "alter table entry disable trigger user; \
                 alter table journal disable trigger user; {delete}"
            ),
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(
                error,
                LoadError::OrphanRow {
                    table: "posting",
                    position: 3
                }
            ),
            "{}: {error}",
            test_db.label
        );
    }
}

#[tokio::test]
async fn a_balance_outside_its_limits_refuses_the_start() {
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        // The shop holds 30.00; an operator lowers its ceiling to 10.00 behind our back.
        let id = scheme.shop.0;
        attack(
            &db,
            &format!(
                "update account set upper_limit = 1000 where hex(id) = '{}'",
                id.simple().to_string().to_uppercase()
            ),
            &format!("update account set upper_limit = 1000 where id = '{id}'"),
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(error, LoadError::Invariant(_)),
            "{}: {error}",
            test_db.label
        );
        assert!(error.to_string().contains("outside its limits"));
    }
}

#[tokio::test]
async fn ledger_rows_cannot_be_updated_or_deleted() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        let pool_error = |sql: &'static str| {
            let db = db.clone();
            async move {
                match &db {
                    Database::Sqlite { pool, .. } => {
                        pool.execute(sql).await.unwrap_err().to_string()
                    }
                    Database::Postgres { pool, .. } => {
                        pool.execute(sql).await.unwrap_err().to_string()
                    }
                }
            }
        };
        for sql in [
            "update posting set amount_minor = 1",
            "delete from posting",
            "update entry set memo = 'x'",
            "delete from journal",
            "update entry set intent_body = '{}'",
        ] {
            let error = pool_error(sql).await;
            assert!(
                error.contains("immutable"),
                "{}: {sql}: {error}",
                test_db.label
            );
        }
    }
}

#[tokio::test]
async fn a_row_that_is_no_valid_value_refuses_the_start_and_names_the_table() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        attack(
            &db,
            "drop trigger entry_no_update; update entry set kind = 'gift' where position = 2",
            "alter table entry disable trigger user; update entry set kind = 'gift' where position = 2",
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(
                error,
                LoadError::Db(wallet_api::db::DbError::CorruptRow { table: "entry", .. })
            ),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("corrupt entry row: kind \"gift\""),
            "{error}"
        );
    }
}
