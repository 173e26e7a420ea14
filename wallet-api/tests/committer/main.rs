//! The committer against real databases: SQLite always, PostgreSQL when
//! COLEDGER_TEST_POSTGRES_URL is set (scripts/test and CI set it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod forgetting;
mod research;
mod statements;
mod support;
mod tamper;

use std::time::Duration;

use ledger::{AccountStatus, BookError, IntentId};
use support::*;
use wallet_api::{CommitError, Committer, CommitterConfig};

#[tokio::test]
async fn payments_commit_and_survive_a_restart() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task) = start(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 150_00).await;
        let paid = committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 12_50))
            .await
            .unwrap();
        assert!(!paid.duplicate);
        stop(committer, task).await;

        // A new writer loads, re-verifies and serves the same balances.
        let (committer, task) = start(&db).await;
        assert_eq!(
            balance(&committer, scheme.alice).await,
            137_50,
            "{}",
            test_db.label
        );
        assert_eq!(balance(&committer, scheme.shop).await, 12_50);
        assert_eq!(balance(&committer, scheme.issuer).await, -150_00);
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 7_50))
            .await
            .unwrap();
        assert_eq!(balance(&committer, scheme.bob).await, 7_50);
        stop(committer, task).await;
    }
}

#[tokio::test]
async fn a_refused_entry_is_refused_alone_and_the_rest_of_its_batch_commits() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        // Linger so that everything submitted together lands in one batch.
        let config = CommitterConfig {
            linger: Duration::from_millis(300),
            ..CommitterConfig::default()
        };
        let (committer, task) = start_with(&db, config).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        scheme.fund(&committer, scheme.bob, 2_000_00).await;
        committer
            .set_status(scheme.bob, AccountStatus::Frozen)
            .await
            .unwrap();

        let ghost = ledger::AccountId::new();
        let intents = vec![
            (
                "good 1",
                scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00),
            ),
            (
                "insufficient",
                scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 500_00),
            ),
            (
                "good 2",
                scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 20_00),
            ),
            (
                "frozen",
                scheme.pay(&scheme.bob_key, scheme.bob, scheme.shop, 1_00),
            ),
            (
                "not authorised",
                scheme.pay(&scheme.bob_key, scheme.alice, scheme.shop, 1_00),
            ),
            (
                "unknown account",
                scheme.pay(&scheme.alice_key, scheme.alice, ghost, 1_00),
            ),
        ];
        let batches_before = committer
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed);
        let handles: Vec<_> = intents
            .into_iter()
            .map(|(name, intent)| {
                let committer = committer.clone();
                tokio::spawn(async move { (name, committer.submit(&intent).await) })
            })
            .collect();
        for handle in handles {
            let (name, result) = handle.await.unwrap();
            match name {
                "good 1" | "good 2" => assert!(result.is_ok(), "{name}: {result:?}"),
                "insufficient" => assert!(
                    matches!(
                        result,
                        Err(CommitError::Rejected(BookError::InsufficientFunds {
                            requested: 500_00,
                            ..
                        }))
                    ),
                    "{result:?}"
                ),
                "frozen" => assert!(
                    matches!(result, Err(CommitError::Rejected(BookError::AccountFrozen(a))) if a == scheme.bob)
                ),
                "not authorised" => assert!(
                    matches!(result, Err(CommitError::Rejected(BookError::NotAuthorised(a))) if a == scheme.alice)
                ),
                "unknown account" => assert!(
                    matches!(result, Err(CommitError::Rejected(BookError::UnknownAccount(a))) if a == ghost)
                ),
                _ => unreachable!(),
            }
        }
        let batches = committer
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            - batches_before;
        assert_eq!(
            batches, 1,
            "{}: the six submissions should have shared one transaction",
            test_db.label
        );
        assert_eq!(balance(&committer, scheme.shop).await, 30_00);
        assert_eq!(balance(&committer, scheme.alice).await, 70_00);
        stop(committer, task).await;

        let (committer, task) = start(&db).await;
        assert_eq!(
            balance(&committer, scheme.shop).await,
            30_00,
            "only the good entries were stored"
        );
        stop(committer, task).await;
    }
}

#[tokio::test]
async fn over_the_merchants_ceiling_is_refused() {
    let test_db = TestDb::sqlite();
    let db = test_db.open().await;
    let scheme = Scheme::new();
    let (committer, task) = start(&db).await;
    scheme.register(&committer).await;
    scheme
        .fund(&committer, scheme.alice, SHOP_CEILING + 1)
        .await;
    let result = committer
        .submit(&scheme.pay(
            &scheme.alice_key,
            scheme.alice,
            scheme.shop,
            SHOP_CEILING + 1,
        ))
        .await;
    assert!(matches!(
        result,
        Err(CommitError::Rejected(BookError::LimitExceeded {
            limit: SHOP_CEILING,
            ..
        }))
    ));
    stop(committer, task).await;
}

#[tokio::test]
async fn a_replayed_intent_returns_its_original_result_even_after_a_restart() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task) = start(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 50_00).await;
        let payment = scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 5_00);
        let first = committer.submit(&payment).await.unwrap();
        let again = committer.submit(&payment).await.unwrap();
        assert_eq!(again.entry_id, first.entry_id);
        assert!(again.duplicate);
        stop(committer, task).await;

        let (committer, task) = start(&db).await;
        let after_restart = committer.submit(&payment).await.unwrap();
        assert_eq!(after_restart.entry_id, first.entry_id, "{}", test_db.label);
        assert!(after_restart.duplicate);
        assert_eq!(balance(&committer, scheme.shop).await, 5_00, "applied once");
        stop(committer, task).await;
    }
}

#[tokio::test]
async fn an_intent_id_reused_for_different_content_is_a_conflict() {
    let test_db = TestDb::sqlite();
    let db = test_db.open().await;
    let scheme = Scheme::new();
    let (committer, task) = start(&db).await;
    scheme.register(&committer).await;
    scheme.fund(&committer, scheme.alice, 50_00).await;
    let id = IntentId::new();
    committer
        .submit(&sign_with_id(
            &scheme.alice_key,
            scheme.payment(scheme.alice, scheme.shop, 1_00),
            id,
        ))
        .await
        .unwrap();
    let other = sign_with_id(
        &scheme.alice_key,
        scheme.payment(scheme.alice, scheme.shop, 2_00),
        id,
    );
    assert!(matches!(
        committer.submit(&other).await,
        Err(CommitError::Rejected(BookError::IntentConflict(conflicting))) if conflicting == id
    ));
    stop(committer, task).await;
}

#[tokio::test]
async fn only_one_writer_holds_the_lease() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let (first, task) = start(&db).await;
        // A second process (here: a second connection set) must not write the same ledger.
        let other = test_db.open().await;
        let refused = Committer::start(
            other.clone(),
            CommitterConfig::default(),
            std::sync::Arc::new(wallet_api::SystemClock),
        )
        .await;
        match refused {
            Err(wallet_api::db::LoadError::Db(wallet_api::db::DbError::LeaseHeld(_))) => {}
            Err(e) => panic!("{}: expected LeaseHeld, got {e}", test_db.label),
            Ok(_) => panic!("{}: a second writer started", test_db.label),
        }
        // Connected before the writer stops, so the check below runs at once after.
        let mut watcher = match test_db.label {
            "postgres" => {
                use sqlx::Connection as _;
                Some(sqlx::PgConnection::connect(&test_db.url).await.unwrap())
            }
            _ => None,
        };
        stop(first, task).await;
        if let Some(conn) = watcher.as_mut() {
            // Given back before `stop` returned, not whenever the server notices the closed
            // connection: a writer started at once (a restart, a recovery) must find it free.
            let held: i64 = sqlx::query_scalar(
                "select count(*) from pg_locks where locktype = 'advisory' \
                 and database = (select oid from pg_database where datname = current_database())",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(held, 0, "the stopped writer still holds advisory locks");
        }
        // Once the first writer is gone, the lease is free.
        let (second, task) = start(&other).await;
        stop(second, task).await;
    }
}

#[tokio::test]
async fn many_concurrent_submitters_all_commit_and_reload_identically() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = std::sync::Arc::new(Scheme::new());
        let (committer, task) = start(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 10_000_00).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (committer, scheme) = (committer.clone(), scheme.clone());
                tokio::spawn(async move {
                    for _ in 0..8 {
                        let intent = scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1_00);
                        committer.submit(&intent).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(balance(&committer, scheme.bob).await, 400_00);
        let batches = committer
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed);
        stop(committer, task).await;
        assert!(
            batches < 400,
            "{}: 400 payments took {batches} batches; batching is not happening",
            test_db.label
        );

        let (committer, task) = start(&db).await;
        assert_eq!(balance(&committer, scheme.bob).await, 400_00);
        assert_eq!(balance(&committer, scheme.alice).await, 9_600_00);
        stop(committer, task).await;
    }
}

/// A batch larger than the widest multi-row INSERT (1,024 rows on SQLite) is written in
/// several chunks of different sizes; every row must land once, so a reload (which checks
/// the hash chain and every posting) gives the same balances.
#[tokio::test]
async fn a_batch_wider_than_one_insert_reloads_identically() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = std::sync::Arc::new(Scheme::new());
        let config = CommitterConfig {
            // Long enough for every submitter below to queue behind the first.
            linger: Duration::from_millis(500),
            ..CommitterConfig::default()
        };
        let (committer, task) = start_with(&db, config).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 10_000_00).await;
        let payments = 1_500;
        let intents: Vec<_> = (0..payments)
            .map(|_| scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1))
            .collect();
        let tasks: Vec<_> = intents
            .into_iter()
            .map(|intent| {
                let committer = committer.clone();
                tokio::spawn(async move { committer.submit(&intent).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let widest = committer
            .stats()
            .max_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            widest > 1_024,
            "{}: the widest batch held {widest} entries; the test needs one over 1,024",
            test_db.label
        );
        stop(committer, task).await;

        let (committer, task) = start(&db).await;
        assert_eq!(balance(&committer, scheme.bob).await, payments);
        assert_eq!(
            balance(&committer, scheme.alice).await,
            10_000_00 - payments
        );
        stop(committer, task).await;
    }
}

/// The database drops the writer's connection mid-service (a restart, a failover, a network
/// cut). The write in flight fails with "unavailable"; the writer reconnects, retakes the
/// lease and reloads; a retry of the same intent then commits exactly once.
#[tokio::test]
async fn the_writer_recovers_after_losing_its_connection_and_retries_apply_once() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let db = test_db.open().await;
    let scheme = Scheme::new();
    let (committer, task) = start(&db).await;
    scheme.register(&committer).await;
    scheme.fund(&committer, scheme.alice, 100_00).await;

    let wallet_api::Database::Postgres { pool, .. } = &db else {
        unreachable!()
    };
    cut_writer_connection(pool).await;

    let payment = scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00);
    let mut attempts = 0;
    let committed = loop {
        attempts += 1;
        match committer.submit(&payment).await {
            Ok(committed) => break committed,
            Err(CommitError::Unavailable(reason)) if attempts < 5 => {
                eprintln!("attempt {attempts}: unavailable ({reason}); retrying");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert!(
        attempts >= 2,
        "the first attempt should have hit the dead connection"
    );
    assert!(!committed.duplicate);
    assert_eq!(
        committer.submit(&payment).await.unwrap().entry_id,
        committed.entry_id
    );
    assert_eq!(
        balance(&committer, scheme.shop).await,
        10_00,
        "applied exactly once"
    );
    stop(committer, task).await;

    let (committer, task) = start(&db).await;
    assert_eq!(balance(&committer, scheme.shop).await, 10_00);
    assert_eq!(balance(&committer, scheme.alice).await, 90_00);
    stop(committer, task).await;
}

/// Cuts the writer's connection to this test's database, as a server restart or failover
/// would.
async fn cut_writer_connection(pool: &sqlx::PgPool) {
    use sqlx::Executor as _;
    let terminate = format!(
        // Only this test's database: tests run in parallel, each on its own database.
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where application_name = '{}' and datname = current_database()",
        wallet_api::db::WRITER_APPLICATION_NAME
    );
    pool.execute(terminate.as_str()).await.unwrap();
}

/// Deletes the last entry with its rows, as if the server had never received it.
async fn drop_last_entry(pool: &sqlx::PgPool) {
    use sqlx::Executor as _;
    pool.execute(
        "alter table posting disable trigger all; alter table entry disable trigger all; \
         alter table journal disable trigger all; \
         delete from posting where entry_position = (select max(position) from entry); \
         delete from journal where entry_position = (select max(position) from entry); \
         delete from entry where position = (select max(position) from entry); \
         alter table posting enable trigger all; alter table entry enable trigger all; \
         alter table journal enable trigger all",
    )
    .await
    .unwrap();
}

/// A writer cut off from its database right after a payment was acknowledged, the database
/// now lacking that payment (as a server that never received it would).
struct CutOff {
    _test_db: TestDb,
    db: wallet_api::Database,
    scheme: Scheme,
    committer: Committer,
    task: wallet_api::CommitterTask,
    /// The payment acknowledged and then lost.
    ours: wallet_api::Committed,
}

impl CutOff {
    /// `None` without PostgreSQL (the tests need to cut a connection).
    async fn after_a_payment() -> Option<Self> {
        let test_db = TestDb::postgres().await?;
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task) = start(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let ours = committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00))
            .await
            .unwrap();
        let wallet_api::Database::Postgres { pool, .. } = &db else {
            unreachable!()
        };
        drop_last_entry(pool).await;
        cut_writer_connection(pool).await;
        Some(Self {
            _test_db: test_db,
            db,
            scheme,
            committer,
            task,
            ours,
        })
    }
}

/// Submits until the writer has noticed its lost connection and tried to recover: the first
/// attempt may fail on the dead connection itself. Returns the first other outcome.
async fn submit_after_reconnection(
    committer: &Committer,
    intent: &ledger::VerifiedIntent,
) -> Result<wallet_api::Committed, CommitError> {
    for _ in 0..5 {
        match committer.submit(intent).await {
            Err(CommitError::Unavailable(reason))
                if !reason.contains("not the database it wrote to")
                    && !reason.contains("forked") =>
            {
                eprintln!("unavailable ({reason}); retrying");
            }
            other => return other,
        }
    }
    panic!("the writer never reconnected");
}

/// After a failover the server reached may lack entries this service acknowledged (an
/// asynchronous standby promoted before it had them, or the stale old primary back up).
/// The writer refuses to go on writing there, saying why, instead of building on a history
/// without them; a new process started on purpose accepts the database as it is.
#[tokio::test]
async fn the_writer_refuses_a_database_that_lacks_entries_it_acknowledged() {
    let Some(cut) = CutOff::after_a_payment().await else {
        return;
    };
    let CutOff {
        db,
        scheme,
        committer,
        task,
        ..
    } = cut;

    let next = scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 5_00);
    for attempt in 0..2 {
        let Err(CommitError::Unavailable(reason)) =
            submit_after_reconnection(&committer, &next).await
        else {
            panic!("attempt {attempt}: wrote to a database lacking acknowledged entries");
        };
        assert!(
            reason.contains("not the database it wrote to")
                && reason.contains("restart the service to accept this database"),
            "{reason}"
        );
    }
    stop(committer, task).await;

    // Restarting is the operator's decision to accept the database without the payment.
    let (committer, task) = start(&db).await;
    assert_eq!(balance(&committer, scheme.shop).await, 0);
    committer.submit(&next).await.unwrap();
    assert_eq!(balance(&committer, scheme.shop).await, 5_00);
    stop(committer, task).await;
}

/// A fork: while this writer was cut off, another process took the lease on a server that
/// lacked this writer's last entry and wrote a different one in its place. Reconnecting
/// there, the writer finds another entry where it acknowledged its own, and refuses.
#[tokio::test]
async fn the_writer_refuses_a_database_whose_history_forked_from_what_it_acknowledged() {
    let Some(cut) = CutOff::after_a_payment().await else {
        return;
    };
    let CutOff {
        db,
        scheme,
        committer,
        task,
        ours,
        ..
    } = cut;
    // The other process writes its own payment in the same place of the chain.
    let (other, other_task) = start(&db).await;
    let theirs = other
        .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 7_00))
        .await
        .unwrap();
    assert_ne!(theirs.entry_id, ours.entry_id);
    stop(other, other_task).await;

    let next = scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 5_00);
    let Err(CommitError::Unavailable(reason)) = submit_after_reconnection(&committer, &next).await
    else {
        panic!("wrote to a database whose history forked");
    };
    assert!(reason.contains("history forked"), "{reason}");
    stop(committer, task).await;
}

#[tokio::test]
async fn bad_database_urls_are_refused_with_a_clear_message() {
    for (url, expected) in [
        (
            "mysql://localhost/ledger",
            "expected sqlite://path/to/file.db or postgres://",
        ),
        ("sqlite::memory:", "not durable"),
        ("postgres://user:s3cret@[::1", "bad database URL"),
    ] {
        let error = wallet_api::Database::connect(url)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{url}: {error}");
        assert!(
            !error.contains("s3cret"),
            "passwords never appear in messages: {error}"
        );
    }
}

#[tokio::test]
async fn an_unbalanced_operator_intent_is_invalid_and_never_reaches_storage() {
    use ledger::{Action, EntryError, EntryKind, IntentError, Leg, Tags};
    let test_db = TestDb::sqlite();
    let db = test_db.open().await;
    let scheme = Scheme::new();
    let (committer, task) = start(&db).await;
    scheme.register(&committer).await;
    let legs = vec![
        Leg {
            account: scheme.issuer,
            unit: scheme.unit,
            delta: -100_00,
        },
        Leg {
            account: scheme.alice,
            unit: scheme.unit,
            delta: 99_99,
        },
    ];
    let action = Action::Entry {
        kind: EntryKind::Issue,
        legs,
        memo: String::new(),
        tags: Tags::default(),
    };
    let result = committer.submit(&sign(&scheme.operator, action)).await;
    assert!(
        matches!(
            result,
            Err(CommitError::Invalid(IntentError::Entry(
                EntryError::Unbalanced { sum: -1, .. }
            )))
        ),
        "{result:?}"
    );
    assert_eq!(committer.inspect(|b| b.applied_count()).await.unwrap(), 0);
    stop(committer, task).await;
}

/// Split brain: writer 1 loses its lease connection (the advisory lock goes with it) and
/// writer 2 takes over. Writer 1's second connection is still open, but the epoch fence stops
/// it from committing anything, and writer 2 never sees what it tried to write.
#[tokio::test]
async fn a_writer_that_lost_its_lease_cannot_commit_on_any_connection() {
    use sqlx::Executor as _;
    use wallet_api::db::{BatchWrite, DbError, Previous};
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let db = test_db.open().await;
    let mut first = db.writer().await.unwrap();
    first.load(NOW_MS).await.unwrap();
    let mut lanes = first.into_lanes();
    assert_eq!(lanes.len(), 2, "PostgreSQL writes on two connections");

    let wallet_api::Database::Postgres { pool, .. } = &db else {
        unreachable!()
    };
    pool.execute(
        "select pg_terminate_backend(pid) from pg_locks \
         where locktype = 'advisory' and granted and mode = 'ExclusiveLock' \
         and database = (select oid from pg_database where datname = current_database())",
    )
    .await
    .unwrap();
    let mut second = loop {
        // The server releases the dead session's lock a moment after terminating it.
        match db.writer().await {
            Ok(writer) => break writer,
            Err(DbError::LeaseHeld(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };

    let unit = ledger::Unit::new(
        ledger::UnitCode::new("STALE").unwrap(),
        "Stale",
        2,
        ledger::UnitKind::Points,
        None,
    )
    .unwrap();
    let stale = BatchWrite {
        units: vec![unit],
        now_ms: NOW_MS,
        ..BatchWrite::default()
    };
    let result = lanes[1].write_after(&stale, Previous::default()).await;
    assert!(matches!(result, Err(DbError::LeaseLost)), "{result:?}");

    let loaded = second.load(NOW_MS).await.unwrap();
    assert_eq!(
        loaded.book.units().count(),
        0,
        "nothing from the stale writer was committed"
    );
}

/// Alice's payment of 1.00 to the shop, settling `request`.
fn paying(scheme: &Scheme, request: ledger::PaymentRequestId) -> ledger::VerifiedIntent {
    let mut action = scheme.payment(scheme.alice, scheme.shop, 1_00);
    if let ledger::Action::Payment { request: named, .. } = &mut action {
        *named = Some(request);
    }
    sign(&scheme.alice_key, action)
}

#[tokio::test]
async fn the_writer_orders_cancellations_and_deadlines_with_payments() {
    use ledger::PaymentRequestId;
    use wallet_api::{ManualClock, RequestClosure};
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = std::sync::Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let scheme = Scheme::new();
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let deadline = NOW_MS + 60_000;

        // Closed first: a payment staged afterwards is refused, however it was checked.
        let closed = PaymentRequestId::new();
        let closure = committer.close_request(closed, deadline).await.unwrap();
        assert_eq!(closure, RequestClosure::Closed, "{label}");
        let refused = committer
            .submit_with_deadline(&paying(&scheme, closed), Some(deadline))
            .await;
        assert!(
            matches!(refused, Err(CommitError::RequestCancelled(r)) if r == closed),
            "{label}: {refused:?}"
        );
        let again = committer.close_request(closed, deadline).await.unwrap();
        assert_eq!(
            again,
            RequestClosure::Closed,
            "{label}: closing twice is fine"
        );

        // Paid first: closing finds the entry that paid it.
        let paid = PaymentRequestId::new();
        let payment = paying(&scheme, paid);
        let committed = committer
            .submit_with_deadline(&payment, Some(deadline))
            .await
            .unwrap();
        let closure = committer.close_request(paid, deadline).await.unwrap();
        assert_eq!(
            closure,
            RequestClosure::AlreadyPaid(committed.entry_id),
            "{label}"
        );

        // Past the deadline by the writer's clock: refused, except the retry of the payment
        // that paid the request in time.
        clock.advance(60_001);
        let late = PaymentRequestId::new();
        let refused = committer
            .submit_with_deadline(&paying(&scheme, late), Some(deadline))
            .await;
        assert!(
            matches!(refused, Err(CommitError::RequestExpired { request, expires_at })
                if request == late && expires_at == deadline),
            "{label}: {refused:?}"
        );
        let retry = committer
            .submit_with_deadline(&payment, Some(deadline))
            .await
            .unwrap();
        assert!(retry.duplicate && retry.entry_id == committed.entry_id);
        // The closed request is forgotten past its deadline; the deadline refuses instead.
        let refused = committer
            .submit_with_deadline(&paying(&scheme, closed), Some(deadline))
            .await;
        assert!(
            matches!(refused, Err(CommitError::RequestExpired { .. })),
            "{label}: {refused:?}"
        );
        assert_eq!(balance(&committer, scheme.shop).await, 1_00, "{label}");
        stop(committer, task).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_payments_either_wins_or_names_the_one_payment() {
    use ledger::PaymentRequestId;
    use wallet_api::RequestClosure;
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let (committer, task) = start(&db).await;
        let scheme = Scheme::new();
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let (mut closed, mut lost) = (0, 0);
        for round in 0..20 {
            let request = PaymentRequestId::new();
            let payers: Vec<_> = (0..3)
                .map(|_| {
                    let committer = committer.clone();
                    let intent = paying(&scheme, request);
                    tokio::spawn(async move {
                        committer
                            .submit_with_deadline(&intent, Some(NOW_MS + 60_000))
                            .await
                    })
                })
                .collect();
            let closure = committer
                .close_request(request, NOW_MS + 60_000)
                .await
                .unwrap();
            let mut paid = Vec::new();
            for payer in payers {
                match payer.await.unwrap() {
                    Ok(committed) => paid.push(committed.entry_id),
                    Err(CommitError::RequestCancelled(_) | CommitError::RequestAlreadyPaid(_)) => {}
                    Err(e) => panic!("{label} round {round}: {e}"),
                }
            }
            match closure {
                RequestClosure::Closed => {
                    closed += 1;
                    assert!(paid.is_empty(), "{label} round {round}: {paid:?}");
                }
                RequestClosure::AlreadyPaid(entry) => {
                    lost += 1;
                    assert_eq!(paid, vec![entry], "{label} round {round}");
                }
            }
        }
        eprintln!("{label}: the cancel won {closed} times and lost {lost} times");
        assert_eq!(
            balance(&committer, scheme.shop).await,
            lost * 1_00,
            "{label}"
        );
        stop(committer, task).await;
    }
}

/// A payment request stored as the API makes it, to the shop, payable until `expires_at`.
async fn stored_request(
    db: &wallet_api::Database,
    scheme: &Scheme,
    expires_at: i64,
) -> ledger::PaymentRequestId {
    let request = wallet_api::db::service::PaymentRequest {
        id: ledger::PaymentRequestId::new(),
        account: scheme.shop,
        unit: scheme.unit,
        amount: ledger::Amount::from_minor(1_00).unwrap(),
        memo: String::new(),
        created_at: NOW_MS,
        expires_at,
        cancelled_at: None,
    };
    db.insert_payment_request(&request).await.unwrap();
    request.id
}

#[tokio::test]
async fn a_restart_loads_only_the_paid_requests_still_payable() {
    use std::sync::atomic::Ordering;
    use wallet_api::ManualClock;
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = std::sync::Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let scheme = Scheme::new();
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let (minute, hour) = (NOW_MS + 60_000, NOW_MS + 3_600_000);
        let short = stored_request(&db, &scheme, minute).await;
        let long = stored_request(&db, &scheme, hour).await;
        // Paid, then cancelled too late: the stored deadline is brought forward to the
        // cancellation, but a payment checked before it carries the original.
        let cancelled = stored_request(&db, &scheme, hour).await;
        for request in [short, long, cancelled] {
            let deadline = if request == short { minute } else { hour };
            committer
                .submit_with_deadline(&paying(&scheme, request), Some(deadline))
                .await
                .unwrap();
        }
        assert!(db.cancel_payment_request(cancelled, NOW_MS).await.unwrap());
        stop(committer, task).await;

        clock.advance(120_000);
        let (committer, task) = start_on(&db, &clock).await;
        assert_eq!(
            committer.view().read().paid_requests_kept(),
            2,
            "{label}: the short request's payment was left in storage"
        );
        let late = committer
            .submit_with_deadline(&paying(&scheme, short), Some(minute))
            .await;
        assert!(
            matches!(late, Err(CommitError::RequestExpired { request, .. }) if request == short),
            "{label}: {late:?}"
        );
        assert_eq!(committer.stats().requests_kept.load(Ordering::Relaxed), 2);
        for request in [long, cancelled] {
            let again = committer
                .submit_with_deadline(&paying(&scheme, request), Some(hour))
                .await;
            assert!(
                matches!(again, Err(CommitError::RequestAlreadyPaid(r)) if r == request),
                "{label}: {again:?}"
            );
        }
        assert_eq!(balance(&committer, scheme.shop).await, 3_00, "{label}");
        stop(committer, task).await;
    }
}
