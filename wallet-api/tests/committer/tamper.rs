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

// --- Signed history: the latest checkpoints vouch for what came before them, and every entry
// after them must be what its stored intent signed (DESIGN §5). ---

/// The checkpoint key of these tests' deployment.
fn checkpoint_signer() -> ed25519_dalek::SigningKey {
    key(77)
}

fn config_with_checkpoints() -> CommitterConfig {
    CommitterConfig {
        checkpoint_key: Some(ledger::PublicKey::of(&checkpoint_signer())),
        ..CommitterConfig::default()
    }
}

async fn start_error(db: &Database, config: CommitterConfig) -> LoadError {
    match Committer::start(
        db.clone(),
        config,
        std::sync::Arc::new(wallet_api::SystemClock),
    )
    .await
    {
        Ok(_) => panic!("a tampered ledger loaded"),
        Err(e) => e,
    }
}

/// Loads with `options` (a checkpoint key, signatures checked) and returns how many entries
/// were checked against their signatures.
async fn signatures_checked(db: &Database, config: &CommitterConfig) -> u64 {
    let options = wallet_api::db::LoadOptions {
        checkpoint_key: config.checkpoint_key,
        verify_signatures: true,
        ..wallet_api::db::LoadOptions::at(NOW_MS)
    };
    let mut writer = db.writer().await.unwrap();
    writer.load_with(&options).await.unwrap().signatures_checked
}

/// Stores a checkpoint of `unit` at `head` signed with `signer`, as the service would.
async fn store_checkpoint(
    db: &Database,
    signer: &ed25519_dalek::SigningKey,
    unit: ledger::UnitCode,
    head: ledger::journal::ChainHead,
) {
    let signed = ledger::journal::checkpoint::Checkpoint {
        unit,
        head,
        at_ms: NOW_MS,
        totals: Default::default(),
    }
    .sign(signer);
    assert_eq!(db.insert_checkpoints(&[signed]).await.unwrap(), [true]);
}

/// The head of `unit`'s chain as stored.
async fn stored_head(db: &Database, unit: ledger::UnitCode) -> ledger::journal::ChainHead {
    let mut writer = db.writer().await.unwrap();
    let loaded = writer.load(NOW_MS).await.unwrap();
    loaded.journal.head(unit)
}

/// Commits one more payment (Alice to the shop, 1.00) on a service held to the checkpoints.
async fn pay_once_more(db: &Database, scheme: &Scheme) {
    let (committer, task) = start_with(db, config_with_checkpoints()).await;
    committer
        .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 1_00))
        .await
        .unwrap();
    stop(committer, task).await;
}

/// Four entries, a checkpoint of them signed with this deployment's key, and one payment
/// after it (position 5).
async fn checkpointed_then_paid(test_db: &TestDb) -> (Database, Scheme) {
    let (db, scheme) = ledger_with_payments(test_db).await;
    let head = stored_head(&db, scheme.unit).await;
    store_checkpoint(&db, &checkpoint_signer(), scheme.unit, head).await;
    pay_once_more(&db, &scheme).await;
    (db, scheme)
}

/// What an insider who can write the database (but holds no one's key) would do: change the
/// amount of the entry at `position` and recompute every hash after it, so the chain is
/// whole again.
async fn forge_amount_and_rechain(test_db: &TestDb, db: &Database, position: u64, minor: i64) {
    let mut export = Vec::new();
    wallet_api::db::export::export_journal(&test_db.url, NOW_MS, &mut export, None)
        .await
        .unwrap();
    let mut journal = ledger::journal::Journal::new();
    let mut rewrites = Vec::new();
    for line in export
        .split(|&b| b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
    {
        let exported = ledger::journal::export::parse_entry(line).unwrap();
        let mut entry: ledger::JournalEntry = serde_json::from_str(&exported.entry).unwrap();
        if exported.position == position {
            let mut postings = entry.postings().to_vec();
            postings[0].amount = ledger::Amount::from_minor(minor).unwrap();
            entry = ledger::JournalEntry::new(
                entry.id(),
                entry.kind(),
                postings,
                entry.memo().to_owned(),
                entry.tags().clone(),
                *entry.authorisation(),
                entry.created_at(),
            )
            .unwrap();
        }
        let links = journal.append(&entry);
        if exported.position >= position {
            for link in links {
                rewrites.push((exported.position, link));
            }
        }
    }
    let mut sqlite = format!(
        "drop trigger posting_no_update; drop trigger journal_no_update; \
         update posting set amount_minor = {minor} where entry_position = {position};"
    );
    let mut postgres = format!(
        "alter table posting disable trigger user; alter table journal disable trigger user; \
         update posting set amount_minor = {minor} where entry_position = {position};"
    );
    for (at, link) in rewrites {
        let hex = link.hash.to_hex();
        let filter = format!("where entry_position = {at} and unit = '{}'", link.unit);
        sqlite.push_str(&format!("update journal set hash = X'{hex}' {filter};"));
        postgres.push_str(&format!(
            "update journal set hash = decode('{hex}', 'hex') {filter};"
        ));
    }
    attack(db, &sqlite, &postgres).await;
}

#[tokio::test]
async fn an_edited_intent_refuses_the_start_though_the_chain_is_whole() {
    // The signed intent is stored beside the entry and is not hashed into the chain, so only
    // checking the signature finds the change.
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        attack(
            &db,
            "drop trigger entry_no_update; \
             update entry set intent_body = replace(intent_body, '1000', '9000') where position = 3",
            "alter table entry disable trigger user; \
             update entry set intent_body = replace(intent_body, '1000', '9000') where position = 3",
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(
                error,
                LoadError::Unsigned {
                    position: 3,
                    problem: ledger::journal::audit::Problem::BadSignature { .. }
                }
            ),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("entry at position 3 is not what was signed: bad signature"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_forgery_rechained_to_a_whole_chain_is_caught_by_its_signature() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        forge_amount_and_rechain(&test_db, &db, 3, 1).await;
        // The chain alone no longer tells: without the signature check the forgery loads.
        let unchecked = CommitterConfig {
            verify_signatures: false,
            ..CommitterConfig::default()
        };
        let (committer, task) = start_with(&db, unchecked).await;
        stop(committer, task).await;
        let error = load_error(&db).await;
        assert!(
            matches!(
                error,
                LoadError::Unsigned {
                    position: 3,
                    problem: ledger::journal::audit::Problem::IntentMismatch { .. }
                }
            ),
            "{}: {error}",
            test_db.label
        );
        assert!(error.to_string().contains("postings"), "{error}");
    }
}

#[tokio::test]
async fn a_checkpoint_vouches_for_the_entries_before_it_and_catches_a_rewrite() {
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        let config = config_with_checkpoints();
        // Without a checkpoint every entry is checked; with one at the head, none is.
        assert_eq!(
            signatures_checked(&db, &config).await,
            4,
            "{}",
            test_db.label
        );
        let head = stored_head(&db, scheme.unit).await;
        assert_eq!(head.seq, 4);
        store_checkpoint(&db, &checkpoint_signer(), scheme.unit, head).await;
        assert_eq!(
            signatures_checked(&db, &config).await,
            0,
            "{}",
            test_db.label
        );

        // One more payment: only it is checked.
        pay_once_more(&db, &scheme).await;
        assert_eq!(
            signatures_checked(&db, &config).await,
            1,
            "{}",
            test_db.label
        );

        // A rewrite before the checkpoint, rechained: the checkpoint's hash no longer matches.
        forge_amount_and_rechain(&test_db, &db, 3, 1).await;
        let error = start_error(&db, config.clone()).await;
        assert!(
            matches!(error, LoadError::CheckpointDiverged { seq: 4, .. }),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("the journal was rewritten after it was signed"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_signed_with_another_key_vouches_for_nothing() {
    // A new server secret (rotated, or a restore without the old one) means a new checkpoint
    // key: the old checkpoints vouch for nothing, so every entry is checked instead, and the
    // service still starts.
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        let head = stored_head(&db, scheme.unit).await;
        store_checkpoint(&db, &key(78), scheme.unit, head).await;
        let config = config_with_checkpoints();
        assert_eq!(
            signatures_checked(&db, &config).await,
            4,
            "{}",
            test_db.label
        );
        let (committer, task) = start_with(&db, config).await;
        stop(committer, task).await;
    }
}

#[tokio::test]
async fn a_newer_checkpoint_under_another_key_cannot_stand_in_front_of_the_services_own() {
    // A row someone added, newer than the service's own checkpoint: it is passed over, and
    // the service's checkpoint still holds the history before it.
    for test_db in TestDb::all().await {
        let (db, scheme) = checkpointed_then_paid(&test_db).await;
        let config = config_with_checkpoints();
        let head = stored_head(&db, scheme.unit).await;
        store_checkpoint(&db, &key(78), scheme.unit, head).await;
        assert_eq!(
            signatures_checked(&db, &config).await,
            1,
            "{}",
            test_db.label
        );
        forge_amount_and_rechain(&test_db, &db, 3, 1).await;
        let error = start_error(&db, config).await;
        assert!(
            matches!(error, LoadError::CheckpointDiverged { seq: 4, .. }),
            "{}: {error}",
            test_db.label
        );
    }
}

#[tokio::test]
async fn the_service_stores_no_checkpoint_of_a_link_the_journal_lacks() {
    // A process whose view is ahead of the database (after a failover that lost entries)
    // must not store a checkpoint every later start would refuse.
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        let head = stored_head(&db, scheme.unit).await;
        let ahead = ledger::journal::checkpoint::Checkpoint {
            unit: scheme.unit,
            head: ledger::journal::ChainHead {
                seq: head.seq + 1,
                ..head
            },
            at_ms: NOW_MS,
            totals: Default::default(),
        }
        .sign(&checkpoint_signer());
        let other_hash = ledger::journal::checkpoint::Checkpoint {
            unit: scheme.unit,
            head: ledger::journal::ChainHead {
                seq: head.seq,
                hash: ledger::Digest([9; 32]),
            },
            at_ms: NOW_MS,
            totals: Default::default(),
        }
        .sign(&checkpoint_signer());
        assert_eq!(
            db.insert_checkpoints(&[ahead, other_hash]).await.unwrap(),
            [false, false],
            "{}",
            test_db.label
        );
        assert!(db.checkpointed_seqs().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_intent_edited_before_a_checkpoint_or_after_it_refuses_the_start() {
    for (position, expect_digest) in [(2, true), (5, false)] {
        for test_db in TestDb::all().await {
            let (db, _) = checkpointed_then_paid(&test_db).await;
            let config = config_with_checkpoints();
            let edit = format!(
                "update entry set intent_body = replace(intent_body, '\"memo\"', '\"memo \"') \
                 where position = {position}"
            );
            attack(
                &db,
                &format!("drop trigger entry_no_update; {edit}"),
                &format!("alter table entry disable trigger user; {edit}"),
            )
            .await;
            let error = start_error(&db, config).await;
            let found = match &error {
                LoadError::Unsigned {
                    position: at,
                    problem,
                } if *at == position => Some(matches!(
                    problem,
                    ledger::journal::audit::Problem::DigestMismatch { .. }
                )),
                _ => None,
            };
            // Before the checkpoint the intent no longer matches its entry's digest; after it,
            // its signature is checked and fails.
            assert_eq!(
                found,
                Some(expect_digest),
                "{} position {position}: {error}",
                test_db.label
            );
        }
    }
}

#[tokio::test]
async fn an_entry_whose_postings_were_removed_refuses_the_start() {
    for test_db in TestDb::all().await {
        let (db, _) = ledger_with_payments(&test_db).await;
        let delete = "delete from posting where entry_position = 2; \
                      delete from journal where entry_position = 2";
        attack(
            &db,
            &format!("drop trigger posting_no_delete; drop trigger journal_no_delete; {delete}"),
            &format!(
                "alter table posting disable trigger user; \
                 alter table journal disable trigger user; {delete}"
            ),
        )
        .await;
        let error = load_error(&db).await;
        assert!(
            matches!(error, LoadError::MissingEntry { position: 2 }),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error
                .to_string()
                .contains("an entry or its postings were removed"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_altered_after_signing_refuses_the_start() {
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        let head = stored_head(&db, scheme.unit).await;
        let mut altered = ledger::journal::checkpoint::Checkpoint {
            unit: scheme.unit,
            head,
            at_ms: NOW_MS,
            totals: Default::default(),
        }
        .sign(&checkpoint_signer());
        altered.checkpoint.at_ms += 1;
        assert_eq!(db.insert_checkpoints(&[altered]).await.unwrap(), [true]);
        let error = start_error(&db, config_with_checkpoints()).await;
        assert!(
            matches!(&error, LoadError::CheckpointUntrusted { unit, .. } if unit == scheme.unit.as_str()),
            "{}: {error}",
            test_db.label
        );
        assert!(error.to_string().contains("does not verify"), "{error}");
    }
}

/// Stores `body` as the checkpoint row of `unit` at `seq`, as someone with the database
/// could (the service only stores checkpoints it signed, of links the journal holds).
async fn insert_checkpoint_row(db: &Database, unit: ledger::UnitCode, seq: u64, body: &str) {
    let zeros = "00".repeat(32);
    let values = |hash: &str| {
        format!(
            "insert into journal_checkpoint (unit, seq, hash, at_ms, body) \
             values ('{unit}', {seq}, {hash}, 0, '{body}')"
        )
    };
    attack(
        db,
        &values(&format!("X'{zeros}'")),
        &values(&format!("decode('{zeros}', 'hex')")),
    )
    .await;
}

#[tokio::test]
async fn a_checkpoint_row_that_is_not_the_checkpoint_of_its_place_refuses_the_start() {
    // Not JSON at all; and a well-signed checkpoint of the sequence before, stored as this
    // one (it would vouch for a link it does not name).
    for case in ["not json", "another sequence's"] {
        for test_db in TestDb::all().await {
            let (db, scheme) = ledger_with_payments(&test_db).await;
            let head = stored_head(&db, scheme.unit).await;
            let body = match case {
                "not json" => "{\"unit\": ".to_owned(),
                _ => ledger::journal::checkpoint::Checkpoint {
                    unit: scheme.unit,
                    head: ledger::journal::ChainHead {
                        seq: head.seq - 1,
                        ..head
                    },
                    at_ms: NOW_MS,
                    totals: Default::default(),
                }
                .sign(&checkpoint_signer())
                .to_json()
                .to_string(),
            };
            insert_checkpoint_row(&db, scheme.unit, head.seq, &body).await;
            let error = start_error(&db, config_with_checkpoints()).await;
            let label = format!("{}, {case}", test_db.label);
            assert!(
                matches!(&error, LoadError::CheckpointUntrusted { unit, .. } if unit == scheme.unit.as_str()),
                "{label}: {error}"
            );
            let said = error.to_string();
            let expected = match case {
                "not json" => format!("sequence {} is not JSON", head.seq),
                _ => format!(
                    "the row of sequence {} holds a checkpoint of {} sequence {}",
                    head.seq,
                    scheme.unit,
                    head.seq - 1
                ),
            };
            assert!(said.contains(&expected), "{label}: {said}");
        }
    }
}

#[tokio::test]
async fn a_checkpoint_beyond_the_stored_journal_refuses_the_start() {
    // Entries removed from the end, journal rows and all, leave a journal that is whole but
    // shorter than what was signed.
    for test_db in TestDb::all().await {
        let (db, scheme) = ledger_with_payments(&test_db).await;
        let head = stored_head(&db, scheme.unit).await;
        let later = ledger::journal::ChainHead {
            seq: head.seq + 2,
            ..head
        };
        // The service would not store it (see above); someone with the database did.
        let body = ledger::journal::checkpoint::Checkpoint {
            unit: scheme.unit,
            head: later,
            at_ms: NOW_MS,
            totals: Default::default(),
        }
        .sign(&checkpoint_signer())
        .to_json()
        .to_string();
        let hex = later.hash.to_hex();
        let values = |hash: String| {
            format!(
                "insert into journal_checkpoint (unit, seq, hash, at_ms, body) \
                 values ('{}', 6, {hash}, {NOW_MS}, '{body}')",
                scheme.unit
            )
        };
        attack(
            &db,
            &values(format!("X'{hex}'")),
            &values(format!("decode('{hex}', 'hex')")),
        )
        .await;
        let error = start_error(&db, config_with_checkpoints()).await;
        assert!(
            matches!(
                error,
                LoadError::CheckpointBeyondJournal {
                    checkpointed: 6,
                    stored: 4,
                    ..
                }
            ),
            "{}: {error}",
            test_db.label
        );
        assert!(
            error.to_string().contains("entries were removed"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_unit_without_a_checkpoint_is_checked_from_its_first_entry() {
    // Two units whose entries interleave; only the first has a checkpoint. Everything from the
    // second unit's first entry on is checked, even entries before the first unit's checkpoint.
    for test_db in TestDb::all().await {
        let (db, first, committer, task) = started(&test_db).await;
        let second = Scheme {
            unit: ledger::UnitCode::new("PGI-PTS").unwrap(),
            issuer: ledger::AccountId::new(),
            alice: ledger::AccountId::new(),
            bob: ledger::AccountId::new(),
            shop: ledger::AccountId::new(),
            ..Scheme::new()
        };
        second.register(&committer).await;
        first.fund(&committer, first.alice, 100_00).await; // position 1
        second.fund(&committer, second.alice, 100_00).await; // 2
        for scheme in [&first, &second, &first] {
            // 3, 4, 5
            committer
                .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00))
                .await
                .unwrap();
        }
        stop(committer, task).await;
        let head = stored_head(&db, first.unit).await;
        assert_eq!(head.seq, 3);
        store_checkpoint(&db, &checkpoint_signer(), first.unit, head).await;
        let config = config_with_checkpoints();
        assert_eq!(
            signatures_checked(&db, &config).await,
            4,
            "{}",
            test_db.label
        );

        // The second unit's payment at position 4, before the first unit's checkpoint at 5.
        forge_amount_and_rechain(&test_db, &db, 4, 1).await;
        let error = start_error(&db, config).await;
        assert!(
            matches!(error, LoadError::Unsigned { position: 4, .. }),
            "{}: {error}",
            test_db.label
        );
    }
}
