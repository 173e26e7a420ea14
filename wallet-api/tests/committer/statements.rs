//! Statements read from storage against the obvious computation: every entry read back whole
//! and seen from each account (what the in-memory read model used to keep), then filtered and
//! paged by hand.

use std::sync::Arc;

use ledger::{AccountId, Action, EntryKind, Leg, Tags};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use wallet_api::history::{self, HistoryFilter, HistoryItem};
use wallet_api::{Committer, CommitterConfig, Database, ManualClock};

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

/// Pages through `account`'s statement below `before`, `limit` at a time.
async fn paged(
    db: &Database,
    account: AccountId,
    filter: &HistoryFilter,
    before: i64,
    limit: usize,
) -> Vec<HistoryItem> {
    let mut items: Vec<HistoryItem> = Vec::new();
    let mut below = before;
    for _ in 0..1_000 {
        let page = db
            .statement_page(account, filter, below, limit)
            .await
            .unwrap();
        assert!(page.lines.len() <= limit);
        let last = page.lines.last().map(|l| l.item.position);
        items.extend(page.lines.into_iter().map(|l| l.item));
        match (page.more, last) {
            (true, Some(last)) => {
                assert_eq!(
                    items.len() % limit,
                    0,
                    "only a full page says there is more"
                );
                below = last;
            }
            (true, None) => panic!("an empty page says there is more"),
            (false, _) => return items,
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn statement_pages_are_exactly_every_entry_filtered_newest_first() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let scheme = Scheme::new();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) =
            Committer::start(db.clone(), CommitterConfig::default(), clock.clone())
                .await
                .unwrap();
        scheme.register(&committer).await;
        for household in [scheme.alice, scheme.bob] {
            committer
                .submit(&scheme.issue(household, 500_00))
                .await
                .unwrap();
        }
        let households = [
            (scheme.alice, &scheme.alice_key),
            (scheme.bob, &scheme.bob_key),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..150 {
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
                _ => Action::Entry {
                    kind: EntryKind::Fee,
                    legs: vec![
                        Leg {
                            account: from,
                            unit: scheme.unit,
                            delta: -30,
                        },
                        Leg {
                            account: scheme.shop,
                            unit: scheme.unit,
                            delta: 20,
                        },
                        Leg {
                            account: other,
                            unit: scheme.unit,
                            delta: 10,
                        },
                    ],
                    memo: "split".into(),
                    tags: Tags::default(),
                },
            };
            committer.submit(&sign(key, action)).await.unwrap();
        }
        let last = committer.view().read().last_position();
        let accounts = [scheme.issuer, scheme.alice, scheme.bob, scheme.shop];
        let by_hand = statements_by_hand(&db, &accounts, last).await;
        let read = db.statements(&accounts, last).await.unwrap();
        for (account, expected) in accounts.iter().zip(&by_hand) {
            assert_eq!(&read[account], expected, "{}", test_db.label);
        }
        // Bounded below the end, as a reader bounds by the published position.
        let early = db.statements(&[scheme.shop], last / 2).await.unwrap();
        let shop_early: Vec<_> = by_hand[3]
            .iter()
            .filter(|i| i.position <= last / 2)
            .cloned()
            .collect();
        assert_eq!(early[&scheme.shop], shop_early);

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
        for (account, full) in accounts.iter().zip(&by_hand) {
            for filter in &filters {
                for (before, limit) in [(i64::MAX, 1), (i64::MAX, 3), (i64::MAX, 50), (last / 2, 4)]
                {
                    let expected: Vec<HistoryItem> = full
                        .iter()
                        .rev()
                        .filter(|i| i.position < before && filter.keeps(i))
                        .cloned()
                        .collect();
                    let got = paged(&db, *account, filter, before, limit).await;
                    assert_eq!(
                        got, expected,
                        "{}: {account} {filter:?} before {before} limit {limit}",
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
