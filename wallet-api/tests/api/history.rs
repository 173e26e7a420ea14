//! Statements as a shop's terminal reads them: each sale says what is left to refund of it,
//! each refund names its sale, and an operator's correction names none.

use axum::http::StatusCode;
use ledger::{Action, EntryKind, Leg, Tags};
use serde_json::Value;
use wallet_api::auth::Role;
use wallet_api::http::limits::ApiConfig;

use super::{Api, api_on};
use crate::support::*;

impl Api {
    /// `account`'s statement (one page), read as an auditor.
    async fn statement(&self, account: ledger::AccountId) -> Vec<Value> {
        let auditor = self.token(Role::Auditor).await;
        let path = format!("/v1/accounts/{account}/entries?limit=50");
        let (status, _, page) = self
            .call("GET", &path, &auditor, "application/json", "")
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"].as_array().unwrap().clone()
    }

    /// `minor` of `payment` refunded to Alice.
    async fn refunded(&self, payment: &Value, minor: i64) -> Value {
        let (status, _, body) = self.post_intent(&self.refund(payment, minor)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["entry_id"].clone()
    }

    /// An entry of `kind` moving `legs` (account, delta), signed by `signer`.
    async fn entry(&self, signer: u8, kind: EntryKind, legs: &[(ledger::AccountId, i64)]) -> Value {
        let legs = legs
            .iter()
            .map(|&(account, delta)| Leg {
                account,
                unit: self.scheme.unit,
                delta,
            })
            .collect();
        let action = Action::Entry {
            kind,
            legs,
            memo: String::new(),
            tags: Tags::default(),
        };
        let (status, _, body) = self
            .post_intent(&sign(&key(signer), action).signed().to_json())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["entry_id"].clone()
    }
}

/// The line of `entry` in `items`.
fn line<'a>(items: &'a [Value], entry: &Value) -> &'a Value {
    items
        .iter()
        .find(|item| item["entry_id"] == *entry)
        .unwrap_or_else(|| panic!("no line for {entry} in {items:?}"))
}

#[tokio::test]
async fn a_sale_shows_what_is_left_to_refund_as_refunds_are_made() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let api = api_on(test_db, NOW_MS, ApiConfig::default()).await;
        let (shop, alice) = (api.scheme.shop, api.scheme.alice);
        let sale = api.paid(10_00).await;
        let items = api.statement(shop).await;
        let fresh = line(&items, &sale);
        assert_eq!(fresh["refundable_minor"], 10_00, "{label}: {fresh}");
        assert_eq!(fresh["refundable"], "10.00", "{label}: {fresh}");
        assert!(fresh["reverses"].is_null(), "{label}: {fresh}");

        // A payment of several legs is not one a refund can give back; an operator's
        // correction (a reversal without the link) is no refund of anything.
        let split = api
            .entry(
                1,
                EntryKind::Payment,
                &[(alice, -3_00), (shop, 2_00), (api.scheme.bob, 1_00)],
            )
            .await;
        let correction = api
            .entry(3, EntryKind::Reversal, &[(shop, -1_00), (alice, 1_00)])
            .await;

        let first = api.refunded(&sale, 4_00).await;
        let items = api.statement(shop).await;
        let partly = line(&items, &sale);
        assert_eq!(partly["refundable_minor"], 6_00, "{label}: {partly}");
        assert_eq!(partly["refundable"], "6.00", "{label}: {partly}");
        assert_eq!(partly["amount_minor"], 10_00, "{label}: {partly}");
        let refund = line(&items, &first);
        assert_eq!(refund["kind"], "reversal", "{label}: {refund}");
        assert_eq!(refund["amount_minor"], -4_00, "{label}: {refund}");
        assert_eq!(refund["reverses"], sale, "{label}: {refund}");
        assert!(refund["refundable_minor"].is_null(), "{label}: {refund}");
        let split_line = line(&items, &split);
        assert_eq!(split_line["amount_minor"], 2_00, "{label}: {split_line}");
        assert!(
            split_line["refundable_minor"].is_null(),
            "{label}: {split_line}"
        );
        let correction_line = line(&items, &correction);
        assert_eq!(correction_line["kind"], "reversal", "{label}");
        assert!(
            correction_line["reverses"].is_null(),
            "{label}: {correction_line}"
        );
        // The payer's side of the sale is no sale of hers to refund.
        let paid = api.statement(alice).await;
        assert!(line(&paid, &sale)["refundable_minor"].is_null(), "{label}");

        // What the statement offers is exactly what a refund may take: one unit more is
        // refused with the same amount, the rest is accepted.
        let over = api.post_intent(&api.refund(&sale, 6_01)).await;
        assert_eq!(over.2["refundable_minor"], 6_00, "{label}: {}", over.2);
        api.refunded(&sale, 6_00).await;
        let items = api.statement(shop).await;
        let done = line(&items, &sale);
        assert_eq!(done["refundable_minor"], 0, "{label}: {done}");
        assert_eq!(done["refundable"], "0.00", "{label}: {done}");
    }
}

#[tokio::test]
async fn what_is_left_to_refund_is_in_the_openapi_description() {
    let api = api_on(TestDb::sqlite(), NOW_MS, ApiConfig::default()).await;
    let request = axum::http::Request::get("/openapi.json")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _, spec) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let history = &spec["paths"]["/v1/accounts/{id}/entries"]["get"]["responses"]["200"];
    assert_eq!(
        history["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/HistoryPageDoc",
        "{history}"
    );
    let item = &spec["components"]["schemas"]["HistoryItemDoc"]["properties"];
    for field in ["refundable_minor", "refundable", "reverses"] {
        assert!(item[field].is_object(), "{field} is not described: {item}");
    }
}
