//! The research export nets refunds into the payments they give back.

use wallet_api::cards::ServerSecret;
use wallet_api::research::{ExportOptions, ExportReport, export};

use super::support::*;

/// The `amount_minor` of every `transfer,payment` row.
fn payment_amounts(csv: &str) -> Vec<i64> {
    let mut amounts: Vec<i64> = csv
        .lines()
        .filter(|line| line.contains(",transfer,payment,"))
        .map(|line| line.split(',').nth(9).unwrap().parse().unwrap())
        .collect();
    amounts.sort_unstable();
    amounts
}

#[tokio::test]
async fn refunds_are_netted_into_their_payments() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let (db, scheme, committer, task) = started(&test_db).await;
        scheme.fund(&committer, scheme.alice, 100_00).await;
        let pay = |minor| scheme.pay(&scheme.alice_key, scheme.alice, scheme.shop, minor);
        let given_back = committer.submit(&pay(10_00)).await.unwrap().entry_id;
        let partly = committer.submit(&pay(20_00)).await.unwrap().entry_id;
        committer.submit(&pay(30_00)).await.unwrap();
        for refund in [
            scheme.refund(given_back, 4_00),
            scheme.refund(given_back, 6_00),
            scheme.refund(partly, 5_00),
        ] {
            committer.submit(&refund).await.unwrap();
        }
        stop(committer, task).await;

        let mut secret = [5u8; 32];
        secret[0] = 1;
        let mut csv = Vec::new();
        let report = export(
            &db,
            &ServerSecret::from_bytes(secret).unwrap(),
            ExportOptions { grain_s: 1 },
            &mut csv,
        )
        .await
        .unwrap();
        let csv = String::from_utf8(csv).unwrap();
        // Kept of each payment: nothing, 15.00 and 30.00. No refund is a shop's spending.
        assert_eq!(payment_amounts(&csv), vec![15_00, 30_00], "{label}: {csv}");
        let shop_spending = |line: &&str| {
            let fields: Vec<&str> = line.split(',').collect();
            fields.get(1) == Some(&"transfer") && fields.get(4) == Some(&"merchant")
        };
        assert!(
            !csv.lines().any(|line| shop_spending(&line)),
            "{label}: {csv}"
        );
        assert_eq!(
            report,
            ExportReport {
                events: 3,
                withheld: 0,
                skipped: 0,
                // Three refunds, and the payment refunded in full.
                refunded: 4,
                small_areas: 0,
            },
            "{label}"
        );
    }
}

/// Waste-separation rewards are deposits and demurrage is a withdrawal: left out, the stream
/// saw reward points spent that never arrived and a stock that never shrank.
#[tokio::test]
async fn rewards_and_demurrage_are_deposits_and_withdrawals() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let (db, scheme, committer, task) = started(&test_db).await;
        let leg = |account, delta| ledger::Leg {
            account,
            unit: scheme.unit,
            delta,
        };
        let entry = |kind, legs| ledger::Action::Entry {
            kind,
            legs,
            memo: String::new(),
            tags: ledger::Tags::default(),
        };
        let reward = entry(
            ledger::EntryKind::WasteReward,
            vec![leg(scheme.issuer, -3_00), leg(scheme.alice, 3_00)],
        );
        committer
            .submit(&sign(&scheme.operator, reward))
            .await
            .unwrap();
        let demurrage = entry(
            ledger::EntryKind::Demurrage,
            vec![leg(scheme.alice, -1_00), leg(scheme.issuer, 1_00)],
        );
        committer
            .submit(&sign(&scheme.alice_key, demurrage))
            .await
            .unwrap();
        stop(committer, task).await;

        let mut csv = Vec::new();
        let report = export(
            &db,
            &ServerSecret::from_bytes(core::array::from_fn(|i| i as u8 + 1)).unwrap(),
            ExportOptions { grain_s: 60 },
            &mut csv,
        )
        .await
        .unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let rows: Vec<(String, String, String)> = csv
            .lines()
            .skip(2)
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                (f[1].to_owned(), f[2].to_owned(), f[9].to_owned())
            })
            .collect();
        let row = |event: &str, reason: &str, amount: &str| {
            (event.to_owned(), reason.to_owned(), amount.to_owned())
        };
        assert_eq!(
            rows,
            [
                row("deposit", "reward", "300"),
                row("withdraw", "demurrage", "100")
            ],
            "{label}: {csv}"
        );
        assert_eq!(report.skipped, 0, "{label}");
    }
}
