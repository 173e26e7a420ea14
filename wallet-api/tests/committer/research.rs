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
            },
            "{label}"
        );
    }
}
