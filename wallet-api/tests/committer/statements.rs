//! Statements read from storage against the obvious computation: every entry read back whole
//! and seen from each account (what the in-memory read model used to keep), then filtered and
//! paged by hand.

use std::sync::Arc;

use ledger::{AccountId, EntryKind};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use sqlx::Executor as _;
use wallet_api::history::{self, HistoryFilter, HistoryItem};
use wallet_api::{Committer, Database, ManualClock};

use crate::support::*;

/// Every account's statement, oldest first, from whole entries.
async fn statements_by_hand(
    db: &Database,
    accounts: &[AccountId],
    up_to: i64,
) -> Vec<Vec<HistoryItem>> {
    let positions: Vec<i64> = (1..=up_to).collect();
    let mut records = Vec::new();
    // entries_at takes a bounded list of positions.
    for chunk in positions.chunks(100) {
        records.extend(db.entries_at(chunk).await.unwrap());
    }
    accounts
        .iter()
        .map(|&account| {
            records
                .iter()
                .filter_map(|r| {
                    let kind = EntryKind::parse(&r.kind).unwrap();
                    history::item(account, r.position, r.id, r.created_at, kind, &r.postings)
                })
                .collect()
        })
        .collect()
}

/// Where each account's statement starts: its latest published entry.
fn heads(committer: &Committer, accounts: &[AccountId]) -> Vec<(AccountId, Option<i64>)> {
    let view = committer.view().read();
    accounts
        .iter()
        .map(|&a| (a, view.account(a).unwrap().last_entry))
        .collect()
}

/// Pages through `account`'s statement below `before`, `limit` at a time, each page walking
/// at most `budget` entries.
async fn paged(
    db: &Database,
    account: AccountId,
    head: Option<i64>,
    filter: &HistoryFilter,
    (before, limit, budget): (i64, usize, usize),
) -> Vec<HistoryItem> {
    let mut items: Vec<HistoryItem> = Vec::new();
    let mut below = before;
    for _ in 0..1_000 {
        let page = db
            .statement_page_within(account, head, filter, below, limit, budget)
            .await
            .unwrap();
        assert!(page.lines.len() <= limit);
        let full = page.lines.len() == limit;
        let last = page.lines.last().map(|l| l.item.position);
        items.extend(page.lines.into_iter().map(|l| l.item));
        match page.next_before {
            Some(next) => {
                // A full page goes on below its last line; a short one only where its walk
                // ran out of budget, below every line it shows.
                if full {
                    assert_eq!(Some(next), last);
                } else {
                    assert!(budget < usize::MAX, "a short page without a budget ends");
                    assert!(last.is_none_or(|last| next <= last));
                }
                assert!(next < below, "paging goes backwards");
                below = next;
            }
            None => return items,
        }
    }
    panic!("paging did not end");
}

/// `entries` payments and splits between the scheme's households and shop, the clock moving
/// up to 3 s between them; the splits debit the payer twice in one entry.
async fn random_activity(
    committer: &Committer,
    scheme: &Scheme,
    clock: &ManualClock,
    entries: usize,
) {
    let households = [
        (scheme.alice, &scheme.alice_key),
        (scheme.bob, &scheme.bob_key),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..entries {
        clock.advance(rng.gen_range(0..3_000));
        let (from, key) = households[rng.gen_range(0..2)];
        let other = if from == scheme.alice {
            scheme.bob
        } else {
            scheme.alice
        };
        let action = match rng.gen_range(0..10) {
            // Mostly payments to the shop, some between the households.
            0..=5 => scheme.payment(from, scheme.shop, rng.gen_range(1..200)),
            6..=7 => scheme.payment(from, other, rng.gen_range(1..200)),
            // A split: one debit, two credits; the payer's line lists both.
            _ => scheme.split(from, other),
        };
        committer.submit(&sign(key, action)).await.unwrap();
    }
}

#[tokio::test]
async fn statement_pages_are_exactly_every_entry_filtered_newest_first() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        scheme.register(&committer).await;
        for household in [scheme.alice, scheme.bob] {
            scheme.fund(&committer, household, 500_00).await;
        }
        random_activity(&committer, &scheme, &clock, 150).await;
        let last = committer.view().read().last_position();
        let accounts = [scheme.issuer, scheme.alice, scheme.bob, scheme.shop];
        let by_hand = statements_by_hand(&db, &accounts, last).await;
        let heads = heads(&committer, &accounts);
        let items = |lines: &[wallet_api::db::statement::StatementLine]| -> Vec<_> {
            lines.iter().map(|line| line.item.clone()).collect()
        };
        let read = db.statements(&heads, last).await.unwrap();
        for (account, expected) in accounts.iter().zip(&by_hand) {
            assert_eq!(&items(&read[account]), expected, "{}", test_db.label);
        }
        // Bounded below the end, as a reader bounds by the published position.
        let early = db.statements(&heads[3..], last / 2).await.unwrap();
        let shop_early: Vec<_> = by_hand[3]
            .iter()
            .filter(|i| i.position <= last / 2)
            .cloned()
            .collect();
        assert_eq!(items(&early[&scheme.shop]), shop_early);

        let middle = NOW_MS + 150 * 1_500 / 2;
        let filters = [
            HistoryFilter::default(),
            HistoryFilter {
                counterparty: Some(scheme.bob),
                ..HistoryFilter::default()
            },
            HistoryFilter {
                counterparty: Some(scheme.shop),
                ..HistoryFilter::default()
            },
            HistoryFilter {
                kind: Some(EntryKind::Fee),
                ..HistoryFilter::default()
            },
            HistoryFilter {
                kind: Some(EntryKind::Issue),
                ..HistoryFilter::default()
            },
            HistoryFilter {
                since_ms: Some(middle - 20_000),
                until_ms: Some(middle + 20_000),
                counterparty: Some(scheme.bob),
                ..HistoryFilter::default()
            },
            HistoryFilter {
                until_ms: Some(middle),
                ..HistoryFilter::default()
            },
        ];
        for ((account, head), full) in heads.iter().zip(&by_hand) {
            for filter in &filters {
                for (before, limit, budget) in [
                    (i64::MAX, 1, usize::MAX),
                    (i64::MAX, 3, usize::MAX),
                    (i64::MAX, 50, usize::MAX),
                    (last / 2, 4, usize::MAX),
                    // A walk cut short every few entries gives the same statement, in more
                    // (some short or empty) pages.
                    (i64::MAX, 3, 2),
                    (i64::MAX, 50, 7),
                    (last / 2, 4, 1),
                ] {
                    let expected: Vec<HistoryItem> = full
                        .iter()
                        .rev()
                        .filter(|i| i.position < before && filter.keeps(i))
                        .cloned()
                        .collect();
                    let got = paged(&db, *account, *head, filter, (before, limit, budget)).await;
                    assert_eq!(
                        got, expected,
                        "{}: {account} {filter:?} before {before} limit {limit} budget {budget}",
                        test_db.label
                    );
                }
            }
        }
        // The filters above drop rows for real: the test would pass vacuously otherwise.
        let alice = &by_hand[1];
        assert!(alice.len() > 60);
        assert!(alice.iter().any(|i| i.counterparty.accounts().len() == 2));
        for filter in &filters[1..] {
            let kept = alice.iter().filter(|i| filter.keeps(i)).count();
            assert!(kept < alice.len(), "{filter:?} keeps everything");
        }
        assert_eq!(alice.iter().filter(|i| filters[4].keeps(i)).count(), 1);
        assert!(alice.iter().any(|i| filters[5].keeps(i)));
        stop(committer, task).await;
    }
}

/// Every posting row's chain links: (entry position, index, prev_debit, prev_credit).
type LinkRow = (i64, i64, Option<i64>, Option<i64>);

async fn link_rows(db: &Database) -> Vec<LinkRow> {
    let sql = "select entry_position, cast(idx as bigint), prev_debit, prev_credit \
               from posting order by entry_position, idx";
    match db {
        Database::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Database::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

async fn execute(db: &Database, sqlite_sql: &str, postgres_sql: &str) {
    match db {
        Database::Sqlite { pool, .. } => {
            pool.execute(sqlite_sql).await.unwrap();
        }
        Database::Postgres { pool, .. } => {
            pool.execute(postgres_sql).await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_migrations_backfill_links_stored_rows_exactly_as_the_writer_does() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        scheme.register(&committer).await;
        scheme.fund(&committer, scheme.alice, 500_00).await;
        scheme.fund(&committer, scheme.bob, 500_00).await;
        random_activity(&committer, &scheme, &clock, 40).await;
        stop(committer, task).await;
        // After a restart the writer links from the heads its load rebuilt.
        let (committer, task) = start_on(&db, &clock).await;
        random_activity(&committer, &scheme, &clock, 40).await;
        stop(committer, task).await;

        let written = link_rows(&db).await;
        // Not vacuous: the rows have chains, first entries of an account have none, and the
        // splits put several postings in one entry.
        assert!(written.iter().any(|r| r.2.is_some() && r.3.is_some()));
        assert!(written.iter().any(|r| r.2.is_none() || r.3.is_none()));
        assert!(written.iter().any(|r| r.1 > 0));
        execute(
            &db,
            "drop trigger posting_no_update; \
             update posting set prev_debit = null, prev_credit = null",
            "alter table posting disable trigger posting_immutable; \
             update posting set prev_debit = null, prev_credit = null",
        )
        .await;
        let cleared = link_rows(&db).await;
        assert!(cleared.iter().all(|r| r.2.is_none() && r.3.is_none()));
        execute(
            &db,
            migrations::SQLITE_POSTING_CHAINS_BACKFILL,
            migrations::POSTGRES_POSTING_CHAINS_BACKFILL,
        )
        .await;
        assert_eq!(link_rows(&db).await, written, "{}", test_db.label);
    }
}

#[tokio::test]
async fn an_entry_touching_an_account_twice_is_one_line_and_its_chain_goes_on() {
    for test_db in TestDb::all().await {
        let (db, scheme, committer, task) = started(&test_db).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        scheme.fund(&committer, scheme.bob, 100_00).await;
        let before_split = committer.view().read().last_position();
        let alice_issue = before_split - 1;
        // Alice pays the shop and Bob in one entry: two postings debit her.
        let split = scheme.split(scheme.alice, scheme.bob);
        committer
            .submit(&sign(&scheme.alice_key, split))
            .await
            .unwrap();
        let split_at = before_split + 1;
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, 5))
            .await
            .unwrap();

        let rows = link_rows(&db).await;
        let split_rows: Vec<&LinkRow> = rows.iter().filter(|r| r.0 == split_at).collect();
        assert_eq!(
            split_rows.len(),
            2,
            "{}: the split has two postings",
            test_db.label
        );
        // Both of Alice's postings link to her issue; the shop had nothing before, Bob his
        // issue.
        assert!(split_rows.iter().all(|r| r.2 == Some(alice_issue)));
        let credits: Vec<Option<i64>> = split_rows.iter().map(|r| r.3).collect();
        assert!(credits.contains(&None) && credits.contains(&Some(before_split)));
        // Her payment after it links to the split, once.
        let payment = rows.iter().find(|r| r.0 == split_at + 1).unwrap();
        assert_eq!(payment.2, Some(split_at));

        let head = committer
            .view()
            .read()
            .account(scheme.alice)
            .unwrap()
            .last_entry;
        assert_eq!(head, Some(split_at + 1));
        let lines = paged(
            &db,
            scheme.alice,
            head,
            &HistoryFilter::default(),
            (i64::MAX, 1, usize::MAX),
        )
        .await;
        let seen: Vec<(i64, i64, usize)> = lines
            .iter()
            .map(|i| (i.position, i.delta, i.counterparty.accounts().len()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (split_at + 1, -5, 1),
                (split_at, -30, 2),
                (alice_issue, 100_00, 1)
            ],
            "{}",
            test_db.label
        );
        stop(committer, task).await;
    }
}
