//! A writer whose Book forgets intents and payments after `remember_for` (zero here, so
//! everything is forgotten before the next batch) answers exactly as one that remembers
//! everything: storage is asked about what it forgot.

use std::sync::Arc;
use std::time::Duration;

use ledger::{BookError, EntryId, IntentId};
use wallet_api::{CommitError, Committer, CommitterConfig, CommitterTask, Database, ManualClock};

use super::support::*;

/// A writer that forgets everything older than its clock, and the clock to move.
async fn forgetful(db: &Database) -> (Committer, CommitterTask, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let config = CommitterConfig {
        remember_for: Duration::ZERO,
        ..CommitterConfig::default()
    };
    let (committer, task) = Committer::start(db.clone(), config, clock.clone())
        .await
        .unwrap();
    (committer, task, clock)
}

/// Applied intents in memory whole, and as fingerprints only.
async fn remembered(committer: &Committer) -> (usize, usize) {
    committer
        .inspect(|book| book.remembered_intents())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_old_intent_is_answered_from_storage_and_never_applied_twice() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task, clock) = forgetful(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 50_00).await;
        let id = IntentId::new();
        let payment = sign_with_id(
            &scheme.alice_key,
            scheme.payment(scheme.alice, scheme.shop, 5_00),
            id,
        );
        let first = committer.submit(&payment).await.unwrap();
        clock.advance(1);
        // A later batch forgets the payment's intent: only a fingerprint is left.
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1_00))
            .await
            .unwrap();
        clock.advance(1);
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1_00))
            .await
            .unwrap();
        let (_, fingerprints) = remembered(&committer).await;
        assert!(fingerprints >= 2, "{label}: intents were forgotten");

        let again = committer.submit(&payment).await.unwrap();
        assert_eq!(again.entry_id, first.entry_id, "{label}");
        assert!(again.duplicate, "{label}");
        let reused = sign_with_id(
            &scheme.alice_key,
            scheme.payment(scheme.alice, scheme.shop, 6_00),
            id,
        );
        assert!(
            matches!(
                committer.submit(&reused).await,
                Err(CommitError::Rejected(BookError::IntentConflict(c))) if c == id
            ),
            "{label}"
        );
        assert_eq!(balance(&committer, scheme.shop).await, 5_00, "{label}");
        assert_eq!(balance(&committer, scheme.alice).await, 43_00, "{label}");
        stop(committer, task).await;

        // After a restart the load forgets as well, and storage still answers.
        let (committer, task, clock) = forgetful(&db).await;
        clock.advance(10);
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1_00))
            .await
            .unwrap();
        let after_restart = committer.submit(&payment).await.unwrap();
        assert_eq!(after_restart.entry_id, first.entry_id, "{label}");
        assert!(after_restart.duplicate, "{label}");
        assert_eq!(balance(&committer, scheme.shop).await, 5_00, "{label}");
        stop(committer, task).await;
    }
}

#[tokio::test]
async fn a_forgotten_payment_is_refunded_from_storage_within_what_is_left() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task, clock) = forgetful(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 50_00).await;
        let sale = committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 10_00))
            .await
            .unwrap();
        clock.advance(1);
        committer
            .submit(&scheme.refund(sale.entry_id, 4_00))
            .await
            .unwrap();
        clock.advance(1);
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.bob, 1_00))
            .await
            .unwrap();
        let known = committer
            .inspect(move |book| book.knows_payment(sale.entry_id))
            .await
            .unwrap();
        assert!(!known, "{label}: the sale was forgotten");
        assert!(
            matches!(
                committer.submit(&scheme.refund(sale.entry_id, 6_01)).await,
                Err(CommitError::Rejected(BookError::RefundExceedsPayment {
                    refundable: 6_00,
                    ..
                }))
            ),
            "{label}: earlier refunds still count"
        );
        committer
            .submit(&scheme.refund(sale.entry_id, 6_00))
            .await
            .unwrap();
        assert_eq!(balance(&committer, scheme.shop).await, 0, "{label}");
        let ghost = EntryId::new();
        assert!(
            matches!(
                committer.submit(&scheme.refund(ghost, 1)).await,
                Err(CommitError::Rejected(BookError::UnknownPayment(p))) if p == ghost
            ),
            "{label}"
        );
        stop(committer, task).await;
    }
}

/// A load told what the committer will forget forgets it as the replay passes, so its memory
/// peak follows the window, not the journal, and it ends as a load that remembered everything
/// until the end: the same balances, the same journal heads, every intent still known.
#[tokio::test]
async fn a_load_forgets_as_it_goes_and_ends_as_a_full_one() {
    use wallet_api::db::LoadOptions;
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let (committer, task) = start(&db).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let mut paid = Vec::new();
        for _ in 0..40 {
            let payment = scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 1_00);
            paid.push(payment.intent().intent_id);
            committer.submit(&payment).await.unwrap();
        }
        stop(committer, task).await;

        let full = db.writer().await.unwrap().load(NOW_MS).await.unwrap();
        let options = LoadOptions {
            forget_before_ms: Some(i64::MAX),
            forget_every: 10,
            ..LoadOptions::at(NOW_MS)
        };
        let lean = db
            .writer()
            .await
            .unwrap()
            .load_with(&options)
            .await
            .unwrap();
        assert!(
            full.peak_remembered > 40,
            "{label}: {}",
            full.peak_remembered
        );
        assert!(
            lean.peak_remembered < 10,
            "{label}: {}",
            lean.peak_remembered
        );
        let balances = |loaded: &wallet_api::db::Loaded| {
            let mut all: Vec<_> = loaded
                .book
                .accounts()
                .map(|(account, balance)| (account.id, balance))
                .collect();
            all.sort_by_key(|&(id, _)| id);
            all
        };
        assert_eq!(balances(&lean), balances(&full), "{label}");
        assert_eq!(lean.journal.heads(), full.journal.heads(), "{label}");
        assert_eq!(lean.last_position, full.last_position, "{label}");
        for id in paid {
            // Not applied again: remembered whole, or (here) by fingerprint.
            assert!(
                lean.book.entry_for_intent(id).is_some() || lean.book.may_have_forgotten(id),
                "{label}: {id} forgotten without a trace"
            );
        }
        let (whole, fingerprints) = lean.book.remembered_intents();
        assert!(
            whole < 10 && fingerprints > 30,
            "{label}: {whole} / {fingerprints}"
        );
    }
}
