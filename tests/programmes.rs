//! A municipal programme end to end through the real service and CLI, on SQLite and
//! PostgreSQL: enrol from CSV (good and bad rows), merchants apply and are approved, cards
//! are issued, a run is planned and paid, a card pays at an allowed merchant with its PIN and
//! is refused at a disallowed category, three wrong PINs lock it, the merchant redeems with
//! the fee, the settlement report and the SEPA file (validated against the official
//! pain.001.001.09 XSD) come out; then, with the service stopped, the CLI disburses the next
//! month stopping half-way as a crash would, resumes without paying anyone twice, and prints
//! the cards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{Action, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags};
use serde_json::{Value, json};
use support::*;
use wallet_api::http::key_proof_bytes;

const UNIT: &str = "SEV-EUR";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The month `offset` months from the current one (UTC), `YYYY-MM`: a monthly run may be
/// paid only from the programme's first month to the month after the current one.
fn month_from_now(offset: i64) -> String {
    let months = ledger::policy::month_of(now_s() * 1000) + offset;
    format!("{:04}-{:02}", months / 12, months % 12 + 1)
}

/// Households for the CSV: `n` valid rows, then a few bad ones.
fn enrolment_csv(n: usize) -> String {
    let mut csv = String::from("household_ref;name;dependents;area;phone;language\r\n");
    for i in 0..n {
        let (area, language) = if i % 3 == 0 {
            ("Triana", "ar")
        } else {
            ("Macarena", "es")
        };
        csv.push_str(&format!(
            "SEV-{i:05};Familia {i};{};{area};+34 600 000 {:03};{language}\r\n",
            i % 4,
            i % 1000
        ));
    }
    csv.push_str("SEV-00001;Duplicate;1;Triana;;es\r\n");
    csv.push_str("SEV-BAD-1;No area;2;;;es\r\n");
    csv.push_str("SEV-BAD-2;Bad number;two;Triana;;es\r\n");
    csv.push_str("SEV-BAD-3;Unknown area;0;Atlantis;;es\r\n");
    csv
}

async fn send(address: &str, method: &str, path: &str, token: &str, body: Value) -> Reply {
    http(
        address,
        method,
        path,
        Some(token),
        &[],
        Some(&body.to_string()),
    )
    .await
}

async fn csv_post(address: &str, path: &str, token: &str, csv: &str) -> Reply {
    http(
        address,
        "POST",
        path,
        Some(token),
        &[("Content-Type", "text/csv")],
        Some(csv),
    )
    .await
}

fn coledger_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

async fn balance(address: &str, token: &str, account: &str) -> String {
    let reply = http(
        address,
        "GET",
        &format!("/v1/accounts/{account}/balance"),
        Some(token),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["balance"].as_str().unwrap().to_owned()
}

async fn apply(address: &str, name: &str, category: &str, iban: &str, programme: &str) -> String {
    let reply = http(
        address,
        "POST",
        "/v1/registry/applications",
        None,
        &[],
        Some(
            &json!({
                "name": name,
                "category_code": category,
                "area": "Triana",
                "social_enterprise": category == "5411",
                "iban": iban,
                "programmes": [programme],
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["participant"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_municipal_programme_from_enrolment_to_the_bank_file() {
    for (label, url, _dir) in databases().await {
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("secret");
        std::fs::write(
            &secret,
            "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a\n",
        )
        .unwrap();
        let secret = secret.to_str().unwrap().to_owned();
        let admin = token_cli(&url, "admin", None).await;
        let (mut server, address) = serve(&url, &["--secret-file", &secret]).await;
        let a = address.as_str();

        // The unit and the programme, with its rules and the municipality's bank account.
        let unit = send(
            a,
            "POST",
            "/v1/units",
            &admin,
            json!({
                "code": UNIT, "name": "Sevilla voucher", "scale": 2, "kind": "voucher", "peg": "EUR"
            }),
        )
        .await;
        assert_eq!(unit.status, 201, "{label}: {}", unit.body);
        let created = send(a, "POST", "/v1/programmes", &admin, json!({
            "name": "Ingreso mínimo Sevilla",
            "unit": UNIT,
            "budget": "1000000.00",
            "schedule": "monthly",
            "pay_day": 5,
            "areas": ["Macarena", "Triana"],
            "languages": ["es", "ar"],
            "rules": {
                "amount": {"base": "300.00", "per_dependent": "75.00", "cap": "450.00"},
                "allowed_categories": ["5411", "5912"],
                "daily_cap": "200.00",
                "expiry_days": 60,
                "redemption_fee_basis_points": 150
            },
            "debtor": {"name": "Ayuntamiento de Sevilla", "iban": "ES9121000418450200051332", "bic": "CAIXESBBXXX"}
        }))
        .await;
        assert_eq!(created.status, 201, "{label}: {}", created.body);
        let programme = created.json()["id"].as_str().unwrap().to_owned();
        let p = format!("/v1/programmes/{programme}");
        // A bad rule is refused, naming the field.
        let bad = send(
            a,
            "POST",
            "/v1/programmes",
            &admin,
            json!({
                "name": "x", "unit": UNIT, "budget": "1.00", "schedule": "weekly",
                "areas": ["A"], "languages": ["es"], "rules": {"amount": {"base": "1.00"}}
            }),
        )
        .await;
        assert_eq!(bad.status, 422);
        assert_eq!(bad.json()["field"], "schedule");
        let no_day = send(
            a,
            "POST",
            "/v1/programmes",
            &admin,
            json!({
                "name": "x", "unit": UNIT, "budget": "1.00", "schedule": "monthly",
                "areas": ["A"], "languages": ["es"], "rules": {"amount": {"base": "1.00"}}
            }),
        )
        .await;
        assert_eq!(
            no_day.json()["field"],
            "schedule",
            "a monthly programme needs its pay day"
        );

        // A rule change is a new version from a stated time; the past cannot be rewritten.
        let future_rules = json!({
            "amount": {"base": "320.00", "per_dependent": "75.00", "cap": "470.00"},
            "allowed_categories": ["5411", "5912"],
            "daily_cap": "200.00",
            "expiry_days": 60,
            "redemption_fee_basis_points": 100
        });
        let past = send(
            a,
            "POST",
            &format!("{p}/rules"),
            &admin,
            json!({
                "effective_from_ms": 1_000, "rules": future_rules.clone()
            }),
        )
        .await;
        assert_eq!(past.status, 422, "{}", past.body);
        assert_eq!(past.json()["field"], "effective_from");
        let next_year_ms = (now_s() + 365 * 86_400) * 1000;
        let v2 = send(
            a,
            "POST",
            &format!("{p}/rules"),
            &admin,
            json!({
                "effective_from_ms": next_year_ms, "rules": future_rules
            }),
        )
        .await;
        assert_eq!(v2.status, 201, "{}", v2.body);
        assert_eq!(v2.json()["version"], 2);
        let shown = http(a, "GET", &p, Some(&admin), &[], None).await.json();
        assert_eq!(shown["rules"].as_array().unwrap().len(), 2);
        assert_eq!(shown["current_rules_version"], 1);
        assert_eq!(shown["rules"][1]["rules"]["amount"]["base"], "320.00");

        // Nobody opens accounts in the programme's unit but the programme: another issuer
        // account would issue past the budget.
        let issuer = send(
            a,
            "POST",
            "/v1/accounts",
            &admin,
            json!({"unit": UNIT, "kind": "issuer"}),
        )
        .await;
        assert_eq!(issuer.status, 409, "{}", issuer.body);
        assert_eq!(issuer.problem_type(), "/problems/programme-unit");

        // Enrolment: all-or-nothing refuses a file with bad rows and writes nothing.
        let csv = enrolment_csv(300);
        let strict = csv_post(
            a,
            &format!("{p}/enrolments?all_or_nothing=true"),
            &admin,
            &csv,
        )
        .await;
        assert_eq!(strict.status, 422, "{}", strict.body);
        assert_eq!(strict.json()["rejected"].as_array().unwrap().len(), 4);
        let listed = http(
            a,
            "GET",
            &format!("{p}/households"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(listed.json()["items"].as_array().unwrap().len(), 0);
        // Without it: the good rows go in, each bad row is reported with why.
        let enrolled = csv_post(a, &format!("{p}/enrolments"), &admin, &csv).await;
        assert_eq!(enrolled.status, 200, "{}", enrolled.body);
        let report = enrolled.json();
        assert_eq!(report["created"], 300);
        let reasons = report["rejected"].to_string();
        for expected in [
            "already appears on line 3",
            "area is empty",
            "whole number",
            "Atlantis",
        ] {
            assert!(
                reasons.to_lowercase().contains(&expected.to_lowercase()),
                "{expected}: {reasons}"
            );
        }
        // The same file again changes nothing.
        let again = csv_post(a, &format!("{p}/enrolments"), &admin, &csv).await;
        assert_eq!(
            (
                again.json()["created"].clone(),
                again.json()["unchanged"].clone()
            ),
            (json!(0), json!(300))
        );
        let not_csv = send(a, "POST", &format!("{p}/enrolments"), &admin, json!({})).await;
        assert_eq!(not_csv.status, 415);

        // Merchants apply (public) and a programme manager approves them.
        let grocer = apply(
            a,
            "Ultramarinos Triana",
            "5411",
            "PT50000201231234567890154",
            &programme,
        )
        .await;
        let casino = apply(
            a,
            "Casino Sur",
            "7995",
            "DE89370400440532013000",
            &programme,
        )
        .await;
        // A refused application stores nothing: no programme, or one named twice, is a 422
        // (naming it twice was a 500 after the participant row was written).
        for programmes in [json!([]), json!([&programme, &programme])] {
            let refused = http(
                a,
                "POST",
                "/v1/registry/applications",
                None,
                &[],
                Some(
                    &json!({
                        "name": "Panadería Doble",
                        "category_code": "5462",
                        "iban": "PT50000201231234567890154",
                        "programmes": programmes,
                    })
                    .to_string(),
                ),
            )
            .await;
            assert_eq!(refused.status, 422, "{label}: {}", refused.body);
            assert_eq!(refused.problem_type(), "/problems/validation-failed");
        }
        // A name a SEPA file cannot spell, with an IBAN, needs the account holder's Latin name:
        // refused now, not when the month's bank file fails for every merchant.
        let arabic_name = json!({
            "name": "مخبز النور",
            "category_code": "5462",
            "iban": "PT50000201231234567890154",
            "programmes": [&programme],
        });
        let refused = http(
            a,
            "POST",
            "/v1/registry/applications",
            None,
            &[],
            Some(&arabic_name.to_string()),
        )
        .await;
        assert_eq!(refused.status, 422, "{label}: {}", refused.body);
        assert_eq!(refused.json()["field"], "name", "{}", refused.body);
        assert!(refused.body.contains("account_holder"), "{}", refused.body);
        let mut with_holder = arabic_name.clone();
        with_holder["account_holder"] = json!("Makhbaz Al Nour");
        let bakery = http(
            a,
            "POST",
            "/v1/registry/applications",
            None,
            &[],
            Some(&with_holder.to_string()),
        )
        .await;
        assert_eq!(bakery.status, 201, "{label}: {}", bakery.body);
        // Its bank details change (a new bank): checked as at registration, by operators only.
        let bank_path = format!(
            "/v1/participants/{}/bank-account",
            bakery.json()["participant"].as_str().unwrap()
        );
        let new_bank = json!({"iban": "ES91 2100 0418 4502 0005 1332"});
        let no_holder = send(a, "PUT", &bank_path, &admin, new_bank.clone()).await;
        assert_eq!(no_holder.status, 422, "{label}: {}", no_holder.body);
        assert_eq!(no_holder.json()["field"], "name", "{}", no_holder.body);
        let mut with_holder = new_bank.clone();
        with_holder["account_holder"] = json!("Makhbaz Al Nour SL");
        let changed = send(a, "PUT", &bank_path, &admin, with_holder.clone()).await;
        assert_eq!(changed.status, 200, "{label}: {}", changed.body);
        assert_eq!(changed.json()["iban"], "ES9121000418450200051332");
        assert_eq!(changed.json()["account_holder"], "Makhbaz Al Nour SL");
        // A bank in a SEPA country outside the EEA must come with its BIC.
        let mut swiss = with_holder.clone();
        swiss["iban"] = json!("CH9300762011623852957");
        let no_bic = send(a, "PUT", &bank_path, &admin, swiss.clone()).await;
        assert_eq!(no_bic.status, 422, "{label}: {}", no_bic.body);
        assert_eq!(no_bic.json()["field"], "bic", "{}", no_bic.body);
        swiss["bic"] = json!("UBSWCHZH80A");
        let with_bic = send(a, "PUT", &bank_path, &admin, swiss).await;
        assert_eq!(with_bic.status, 200, "{label}: {}", with_bic.body);
        let back = send(a, "PUT", &bank_path, &admin, with_holder.clone()).await;
        assert_eq!(back.status, 200, "{label}: {}", back.body);
        let unknown = send(
            a,
            "PUT",
            "/v1/participants/0190f5a2-0000-7000-8000-000000000000/bank-account",
            &admin,
            with_holder,
        )
        .await;
        assert_eq!(unknown.status, 404, "{label}: {}", unknown.body);
        let everyone = http(
            a,
            "GET",
            "/v1/participants?limit=500",
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(everyone.status, 200, "{}", everyone.body);
        assert!(
            !everyone.body.contains("Panadería Doble"),
            "{label}: a refused application left a participant: {}",
            everyone.body
        );

        let mut merchant_accounts = Vec::new();
        for m in [&grocer, &casino] {
            let decided = send(
                a,
                "PUT",
                &format!("{p}/merchants/{m}"),
                &admin,
                json!({"approve": true}),
            )
            .await;
            assert_eq!(decided.status, 200, "{}", decided.body);
            merchant_accounts.push(decided.json()["account"].as_str().unwrap().to_owned());
        }
        let (grocer_account, casino_account) =
            (merchant_accounts[0].clone(), merchant_accounts[1].clone());
        let registry = http(a, "GET", "/v1/registry", None, &[], None).await;
        let shops = registry.json()["items"].to_string();
        assert!(
            shops.contains("Ultramarinos Triana") && shops.contains("Ingreso mínimo Sevilla"),
            "{shops}"
        );
        assert!(
            !shops.contains("PT50000201231234567890154"),
            "bank details are not public"
        );

        // Cards for two households: one PIN chosen, one generated.
        let households = http(
            a,
            "GET",
            &format!("{p}/households?limit=2"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        let cursor = households.json()["next_cursor"]
            .as_str()
            .unwrap()
            .to_owned();
        let households = households.json()["items"].as_array().unwrap().clone();
        let (carmen, omar) = (&households[0], &households[1]);
        assert_eq!(cursor, omar["reference"].as_str().unwrap());
        // The next page follows on, by reference; the last page has no cursor.
        let next = http(
            a,
            "GET",
            &format!("{p}/households?limit=2&cursor={cursor}"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        let next = next.json();
        assert!(
            next["items"][0]["reference"].as_str().unwrap() > cursor.as_str(),
            "{next}"
        );
        let last = http(
            a,
            "GET",
            &format!("{p}/households?limit=2&cursor=SEV-00298"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(last.json()["items"].as_array().unwrap().len(), 1);
        assert!(last.json()["next_cursor"].is_null());
        let card = send(
            a,
            "POST",
            &format!("{p}/households/{}/cards", carmen["id"].as_str().unwrap()),
            &admin,
            json!({"pin": "2580"}),
        )
        .await;
        assert_eq!(card.status, 201, "{}", card.body);
        assert!(card.json()["pin"].is_null());
        let carmen_card = card.json()["number"].as_str().unwrap().to_owned();
        let card = send(
            a,
            "POST",
            &format!("{p}/households/{}/cards", omar["id"].as_str().unwrap()),
            &admin,
            json!({}),
        )
        .await;
        assert_eq!(card.json()["pin"].as_str().unwrap().len(), 6);
        let weak = send(
            a,
            "POST",
            &format!(
                "{p}/households/{}/cards",
                households[1]["id"].as_str().unwrap()
            ),
            &admin,
            json!({"pin": "1234"}),
        )
        .await;
        assert_eq!(weak.status, 409, "a household has one card: {}", weak.body);

        // A household's account answers to its card, not to a key an operator registers.
        let stranger = SigningKey::from_bytes(&[33; 32]);
        let stranger_public = PublicKey::of(&stranger);
        let proof = stranger.sign(&key_proof_bytes(
            carmen["account"].as_str().unwrap().parse().unwrap(),
            &stranger_public,
        ));
        let takeover = send(
            a,
            "PUT",
            &format!("/v1/accounts/{}/key", carmen["account"].as_str().unwrap()),
            &admin,
            json!({
                "public_key": stranger_public.to_base64url(),
                "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
            }),
        )
        .await;
        assert_eq!(takeover.status, 409, "{}", takeover.body);

        // One household withholds consent to research use.
        let withheld = &households[1];
        let consent = send(
            a,
            "PUT",
            &format!(
                "{p}/households/{}/research-consent",
                withheld["id"].as_str().unwrap()
            ),
            &admin,
            json!({"consent": false}),
        )
        .await;
        assert_eq!(consent.status, 200, "{}", consent.body);

        // Next month's run: a dry run first, then the run, then the same run again.
        let (this_month, next_month) = (month_from_now(0), month_from_now(1));
        let plan = send(
            a,
            "POST",
            &format!("{p}/runs"),
            &admin,
            json!({"period": next_month, "dry_run": true}),
        )
        .await;
        assert_eq!(plan.status, 200, "{}", plan.body);
        assert_eq!(plan.json()["households"], 300);
        assert_eq!(plan.json()["due_date"], format!("{next_month}-05"));
        // A month further on is almost surely a typed year or month: refused, even as a dry
        // run, naming the field.
        for typo in [month_from_now(2), month_from_now(12), month_from_now(-1)] {
            let refused = send(
                a,
                "POST",
                &format!("{p}/runs"),
                &admin,
                json!({"period": typo, "dry_run": true}),
            )
            .await;
            assert_eq!(refused.status, 422, "{typo}: {}", refused.body);
            assert_eq!(refused.json()["field"], "period", "{}", refused.body);
        }
        assert_eq!(
            plan.json()["exceptions"].as_array().unwrap().len(),
            298,
            "households without a card are listed"
        );
        let run = send(
            a,
            "POST",
            &format!("{p}/runs"),
            &admin,
            json!({"period": next_month}),
        )
        .await;
        assert_eq!(run.status, 200, "{}", run.body);
        assert_eq!(
            (
                run.json()["complete"].clone(),
                run.json()["committed_entries"].clone()
            ),
            (json!(true), json!(3))
        );
        let rerun = send(
            a,
            "POST",
            &format!("{p}/runs"),
            &admin,
            json!({"period": next_month}),
        )
        .await;
        assert_eq!(rerun.json()["already_committed_entries"], 3);
        assert_eq!(rerun.json()["committed_entries"], 0);
        let carmen_account = carmen["account"].as_str().unwrap();
        assert_eq!(balance(a, &admin, carmen_account).await, "300.00");
        let expiries = http(
            a,
            "GET",
            &format!("/v1/accounts/{carmen_account}/expiries"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(expiries.json()["items"][0]["amount"], "300.00");
        let sweep = send(a, "POST", &format!("{p}/expiry-sweeps"), &admin, json!({})).await;
        assert_eq!(sweep.json()["households"], 0, "nothing has expired yet");

        // At the grocer's terminal: Carmen's card and PIN pay; the casino is refused by rule.
        let grocer_token = token_cli(&url, "merchant", Some(&grocer)).await;
        // A merchant's own token cannot redirect its payouts (a stolen one would).
        let redirect = send(
            a,
            "PUT",
            &format!("/v1/participants/{grocer}/bank-account"),
            &grocer_token,
            json!({"iban": "DE89370400440532013000"}),
        )
        .await;
        assert_eq!(redirect.status, 403, "{label}: {}", redirect.body);
        let casino_token = token_cli(&url, "merchant", Some(&casino)).await;
        let pay = |to: &str, pin: &str, amount: &str| {
            json!({
                "intent_id": IntentId::new(), "pin": pin, "to": to, "amount": amount, "memo": "compra"
            })
        };
        let card_path = format!("/v1/cards/{carmen_card}/payments");
        let paid = send(
            a,
            "POST",
            &card_path,
            &grocer_token,
            pay(&grocer_account, "2580", "42.50"),
        )
        .await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        let refused = send(
            a,
            "POST",
            &card_path,
            &casino_token,
            pay(&casino_account, "2580", "5.00"),
        )
        .await;
        assert_eq!(refused.status, 422, "{}", refused.body);
        assert_eq!(refused.problem_type(), "/problems/spending-rule");
        assert_eq!(refused.json()["rule"], "merchant_category");
        let over_cap = send(
            a,
            "POST",
            &card_path,
            &grocer_token,
            pay(&grocer_account, "2580", "160.00"),
        )
        .await;
        assert_eq!(over_cap.json()["rule"], "daily_cap", "{}", over_cap.body);
        // A merchant cannot take a card payment into another merchant's account.
        let elsewhere = send(
            a,
            "POST",
            &card_path,
            &casino_token,
            pay(&grocer_account, "2580", "1.00"),
        )
        .await;
        assert!(matches!(elsewhere.status, 403 | 404), "{}", elsewhere.body);
        // Three wrong PINs lock the card; then even the right PIN is refused until unlocked.
        for left in [2, 1] {
            let wrong = send(
                a,
                "POST",
                &card_path,
                &grocer_token,
                pay(&grocer_account, "9999", "1.00"),
            )
            .await;
            assert_eq!(
                wrong.problem_type(),
                "/problems/wrong-pin",
                "{}",
                wrong.body
            );
            assert_eq!(wrong.json()["attempts_left"], left);
        }
        let locked = send(
            a,
            "POST",
            &card_path,
            &grocer_token,
            pay(&grocer_account, "9999", "1.00"),
        )
        .await;
        assert_eq!(locked.status, 423, "{}", locked.body);
        let still = send(
            a,
            "POST",
            &card_path,
            &grocer_token,
            pay(&grocer_account, "2580", "1.00"),
        )
        .await;
        assert_eq!(still.status, 423);
        // A locked card is listed in the next run's plan (still paid).
        let next = send(
            a,
            "POST",
            &format!("{p}/runs"),
            &admin,
            json!({"period": this_month, "dry_run": true}),
        )
        .await;
        let flagged = next.json()["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reference"] == carmen["reference"])
            .cloned()
            .unwrap();
        assert!(
            flagged["reason"].as_str().unwrap().contains("locked") && flagged["paid"] == true,
            "{flagged}"
        );
        let unlocked = send(
            a,
            "POST",
            &format!("/v1/cards/{carmen_card}/unlock"),
            &admin,
            json!({}),
        )
        .await;
        assert_eq!(unlocked.json()["status"], "active");
        let paid = send(
            a,
            "POST",
            &card_path,
            &grocer_token,
            pay(&grocer_account, "2580", "7.50"),
        )
        .await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        assert_eq!(balance(a, &admin, carmen_account).await, "250.00");
        assert_eq!(balance(a, &admin, &grocer_account).await, "50.00");
        // Paying a merchant's payment request by card: it must match the request.
        let asked = send(
            a,
            "POST",
            "/v1/payment-requests",
            &grocer_token,
            json!({
                "account_id": grocer_account, "amount": "5.00", "memo": "pan"
            }),
        )
        .await;
        assert_eq!(asked.status, 201, "{}", asked.body);
        let request = asked.json()["id"].as_str().unwrap().to_owned();
        let mut wrong_amount = pay(&grocer_account, "2580", "6.00");
        wrong_amount["request"] = json!(request);
        let mismatch = send(a, "POST", &card_path, &grocer_token, wrong_amount).await;
        assert_eq!(
            mismatch.problem_type(),
            "/problems/payment-request-mismatch",
            "{}",
            mismatch.body
        );
        let mut right = pay(&grocer_account, "2580", "5.00");
        right["request"] = json!(request);
        let settled = send(a, "POST", &card_path, &grocer_token, right).await;
        assert_eq!(settled.status, 201, "{}", settled.body);
        let status = http(
            a,
            "GET",
            &format!("/v1/payment-requests/{request}"),
            None,
            &[],
            None,
        )
        .await;
        assert_eq!(status.json()["status"], "paid", "{}", status.body);
        assert_eq!(balance(a, &admin, carmen_account).await, "245.00");
        let typo = send(
            a,
            "POST",
            "/v1/cards/9900011234567890/payments",
            &grocer_token,
            pay(&grocer_account, "2580", "1.00"),
        )
        .await;
        assert_eq!(typo.status, 422, "a mistyped card number: {}", typo.body);

        // The grocer redeems 40.00: the quote gives the legs, the merchant signs them.
        let grocer_key = SigningKey::from_bytes(&[21; 32]);
        let public = PublicKey::of(&grocer_key);
        let proof = grocer_key.sign(&key_proof_bytes(grocer_account.parse().unwrap(), &public));
        let key = send(
            a,
            "PUT",
            &format!("/v1/accounts/{grocer_account}/key"),
            &grocer_token,
            json!({
                "public_key": public.to_base64url(),
                "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
            }),
        )
        .await;
        assert!(key.status < 300, "{}", key.body);
        let quote = http(
            a,
            "GET",
            &format!("{p}/redemption-quote?account={grocer_account}&amount=40.00"),
            Some(&grocer_token),
            &[],
            None,
        )
        .await;
        assert_eq!(quote.status, 200, "{}", quote.body);
        assert_eq!(
            (quote.json()["fee"].clone(), quote.json()["net"].clone()),
            (json!("0.60"), json!("39.40"))
        );
        let legs: Vec<Leg> = serde_json::from_value(quote.json()["legs"].clone()).unwrap();
        let intent = Intent {
            intent_id: IntentId::new(),
            not_after: now_s() + 300,
            signer: public,
            action: Action::Entry {
                kind: EntryKind::Redeem,
                legs,
                memo: "weekly".into(),
                tags: Tags::default(),
            },
        };
        let signed = SignedIntent::sign(intent, &grocer_key).unwrap();
        let redeemed = http(
            a,
            "POST",
            "/v1/intents",
            Some(&grocer_token),
            &[],
            Some(&signed.to_json()),
        )
        .await;
        assert_eq!(redeemed.status, 201, "{}", redeemed.body);

        // The settlement report and the bank file.
        let today = {
            let days = now_s().div_euclid(86_400);
            let (y, m, d) = ledger::policy::civil_from_days(days);
            format!("{y:04}-{m:02}-{d:02}")
        };
        let period = format!("from={today}&to={today}");
        let report = http(
            a,
            "GET",
            &format!("{p}/settlement?{period}"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(report.status, 200);
        assert!(
            report.body.contains("Ultramarinos Triana,")
                && report.body.contains(",40.00,0.60,39.40,SEV-EUR"),
            "{}",
            report.body
        );
        // In JSON the report also gives each merchant's bank details, for treasurers who pay
        // by other means than a SEPA file (pilots outside SEPA).
        let json_report = http(
            a,
            "GET",
            &format!("{p}/settlement?{period}&format=json"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(json_report.status, 200, "{}", json_report.body);
        let grocer_line = json_report.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "Ultramarinos Triana")
            .cloned()
            .unwrap();
        assert_eq!(grocer_line["net"], "39.40");
        assert_eq!(grocer_line["iban"], "PT50000201231234567890154");
        // Today is not over, so no bank file pays it yet (the file's content and its XSD
        // check are in wallet-api's programme tests and tests/sepa_xsd.rs, with a clock that
        // can move past a period's end).
        let sepa = http(
            a,
            "POST",
            &format!("{p}/sepa-credit-transfer?{period}"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(sepa.status, 409, "{}", sepa.body);
        assert!(sepa.body.contains("has not ended"), "{}", sepa.body);
        // Voiding a file: admins only, and only one that was made.
        let manager = token_cli(&url, "programme_manager", None).await;
        let sepa_file = format!("{p}/sepa-credit-transfer?{period}");
        let not_yours = http(a, "DELETE", &sepa_file, Some(&manager), &[], None).await;
        assert_eq!(not_yours.status, 403, "{}", not_yours.body);
        let none = http(a, "DELETE", &sepa_file, Some(&admin), &[], None).await;
        assert_eq!(none.status, 404, "{}", none.body);
        assert!(none.body.contains("none is recorded"), "{}", none.body);
        // Making a file records its period: never on a GET, which a prefetch could send.
        let fetched = http(a, "GET", &sepa_file, Some(&admin), &[], None).await;
        assert_eq!(fetched.status, 405, "{}", fetched.body);
        stop_with_sigterm(&mut server, label).await;

        // The CLI, service stopped: this month's run stops after one entry, as a crash would,
        // then runs again to the end; nobody is paid twice.
        let common = [
            "--database-url",
            url.as_str(),
            "--secret-file",
            secret.as_str(),
            "--programme",
            programme.as_str(),
        ];
        let dry = coledger_cli(
            &[
                &["disburse"][..],
                &common,
                &["--period", &this_month, "--dry-run"],
            ]
            .concat(),
        );
        assert!(
            dry.status.success(),
            "{}",
            String::from_utf8_lossy(&dry.stderr)
        );
        assert!(String::from_utf8_lossy(&dry.stdout).contains("households paid: 300"));
        let cut = coledger_cli(
            &[
                &["disburse"][..],
                &common,
                &["--period", &this_month, "--stop-after-entries", "1"],
            ]
            .concat(),
        );
        assert!(
            cut.status.success(),
            "{}",
            String::from_utf8_lossy(&cut.stderr)
        );
        let resumed =
            coledger_cli(&[&["disburse"][..], &common, &["--period", &this_month]].concat());
        let out = String::from_utf8_lossy(&resumed.stdout).to_string();
        assert!(
            resumed.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert!(
            out.contains("2 entries committed now, 1 already committed")
                && out.contains("complete"),
            "{out}"
        );
        let bad_period =
            coledger_cli(&[&["disburse"][..], &common, &["--period", "2027-13"]].concat());
        assert!(!bad_period.status.success());
        assert!(String::from_utf8_lossy(&bad_period.stderr).contains("YYYY-MM"));
        // Arguments are checked before the ledger is loaded: no database is even opened.
        let nowhere = "sqlite:///nonexistent-dir/ledger.db";
        for (args, says) in [
            (
                ["--programme", "nope", "--period", "2026-12"],
                "is not a programme id",
            ),
            (
                ["--programme", programme.as_str(), "--period", "2026-1"],
                "YYYY-MM",
            ),
        ] {
            let early =
                coledger_cli(&[&["disburse", "--database-url", nowhere][..], &args].concat());
            let err = String::from_utf8_lossy(&early.stderr);
            assert!(!early.status.success() && err.contains(says), "{err}");
            assert!(!err.contains("database"), "checked before opening: {err}");
        }
        // Another server secret than the programme was made with is refused before anything
        // is signed (a run signed with it would fail entry by entry, and no card would open).
        let other_secret = secret_dir.path().join("other-secret");
        std::fs::write(&other_secret, format!("{}\n", "0123456789abcdef".repeat(4))).unwrap();
        let wrong = coledger_cli(&[
            "disburse",
            "--database-url",
            url.as_str(),
            "--secret-file",
            other_secret.to_str().unwrap(),
            "--programme",
            programme.as_str(),
            "--period",
            &this_month,
        ]);
        let err = String::from_utf8_lossy(&wrong.stderr);
        assert!(!wrong.status.success(), "{label}: {err}");
        assert!(
            err.contains("server secret is not the one"),
            "{label}: {err}"
        );
        // A mistyped SQLite path is an error, not a new empty ledger.
        if label == "sqlite" {
            let typo = url.replace("ledger.db", "ledgr.db");
            assert_ne!(typo, url);
            let missing = coledger_cli(
                &[
                    &["disburse", "--database-url", typo.as_str()][..],
                    &common[2..],
                    &["--period", &this_month],
                ]
                .concat(),
            );
            let err = String::from_utf8_lossy(&missing.stderr);
            assert!(
                !missing.status.success() && err.contains("no database file"),
                "{err}"
            );
            assert!(!std::path::Path::new(typo.trim_start_matches("sqlite://")).exists());
        }
        // Enrolment and expiry from the CLI: the same register changes nothing, and nothing
        // has expired yet.
        let register = secret_dir.path().join("register.csv");
        std::fs::write(&register, enrolment_csv(300)).unwrap();
        let enrol_args = [
            "enrol",
            "--database-url",
            url.as_str(),
            "--secret-file",
            secret.as_str(),
            "--programme",
            programme.as_str(),
        ];
        let enrolled = coledger_cli(&[&enrol_args[..], &[register.to_str().unwrap()]].concat());
        let out = String::from_utf8_lossy(&enrolled.stdout).to_string();
        assert!(
            enrolled.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
        assert!(
            out.contains("0 new, 0 updated, 300 unchanged, 4 rejected"),
            "{out}"
        );
        let strict = coledger_cli(
            &[
                &enrol_args[..],
                &["--all-or-nothing", register.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(!strict.status.success());
        assert!(String::from_utf8_lossy(&strict.stderr).contains("nothing enrolled"));
        let expired = coledger_cli(&[
            "expire",
            "--database-url",
            &url,
            "--secret-file",
            &secret,
            "--programme",
            &programme,
        ]);
        let out = String::from_utf8_lossy(&expired.stdout).to_string();
        assert!(
            expired.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&expired.stderr)
        );
        assert!(out.contains("expired: 0 households"), "{out}");

        // The research export: pseudonymised events the research kit measures. Two runs of
        // 300 households, less the one that withheld consent.
        let events = secret_dir.path().join("events.csv");
        let exported = coledger_cli(&[
            "export",
            "research",
            "--database-url",
            &url,
            "--secret-file",
            &secret,
            "--out",
            events.to_str().unwrap(),
        ]);
        assert!(
            exported.status.success(),
            "{}",
            String::from_utf8_lossy(&exported.stderr)
        );
        let text = std::fs::read_to_string(&events).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(",deposit,issuance,"))
                .count(),
            598,
            "{label}"
        );
        assert!(text.lines().any(|l| l.contains(",transfer,payment,")));
        assert!(
            text.lines().any(|l| l.contains(",withdraw,redemption,"))
                && text.lines().any(|l| l.contains(",withdraw,fee,"))
        );
        assert!(
            !text.contains(carmen_account) && !text.contains(&grocer_account),
            "pseudonyms only"
        );
        // An area is named only where at least five of the exported households live.
        let mut living: std::collections::HashMap<String, std::collections::HashSet<String>> =
            std::collections::HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("time,"))
        {
            let fields: Vec<&str> = line.split(',').collect();
            let (area, household) = match (fields[12], fields[4], fields[7]) {
                (area, _, "household") if !area.is_empty() => (area, fields[6]),
                (area, "household", _) if !area.is_empty() => (area, fields[3]),
                _ => continue,
            };
            living
                .entry(area.to_owned())
                .or_default()
                .insert(household.to_owned());
        }
        assert!(!living.is_empty(), "{label}: no area named at all");
        for (area, homes) in &living {
            assert!(
                homes.len() >= 5,
                "{label}: area {area} named for {} households",
                homes.len()
            );
        }
        let measured = coledger_cli(&[
            "simulate",
            "measure",
            events.to_str().unwrap(),
            "--out",
            secret_dir.path().join("measured").to_str().unwrap(),
        ]);
        let out = String::from_utf8_lossy(&measured.stdout);
        assert!(
            measured.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&measured.stderr)
        );
        // A real LM3 (deposits were made, so not "-"), within what three rounds allow.
        let lm3: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("all units: LM3 "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no LM3 figure in: {out}"));
        assert!((1.0..=3.0).contains(&lm3), "LM3 {lm3}: {out}");

        // Printable cards: a PDF, and SVG pages.
        let pdf = secret_dir.path().join("cards.pdf");
        let printed = coledger_cli(&[
            "cards",
            "print",
            "--database-url",
            &url,
            "--programme",
            &programme,
            "--out",
            pdf.to_str().unwrap(),
        ]);
        assert!(
            printed.status.success(),
            "{}",
            String::from_utf8_lossy(&printed.stderr)
        );
        assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
        let svg = secret_dir.path().join("cards.svg");
        // A page left from an earlier, longer print is named, not printed again.
        let stale = secret_dir.path().join("cards-999.svg");
        std::fs::write(&stale, "<svg/>").unwrap();
        let printed = coledger_cli(&[
            "cards",
            "print",
            "--database-url",
            &url,
            "--programme",
            &programme,
            "--format",
            "svg",
            "--out",
            svg.to_str().unwrap(),
        ]);
        assert!(
            printed.status.success(),
            "{}",
            String::from_utf8_lossy(&printed.stderr)
        );
        let page = std::fs::read_to_string(secret_dir.path().join("cards-1.svg")).unwrap();
        assert!(page.contains("Familia") && page.contains("<svg"), "{page}");
        let warned = String::from_utf8_lossy(&printed.stderr);
        assert!(
            warned.contains("cards-999.svg") && warned.contains("earlier print"),
            "{warned}"
        );
        // An unknown format is refused before the database is opened, and no PDF is replaced.
        let png = coledger_cli(&[
            "cards",
            "print",
            "--database-url",
            "sqlite:///nonexistent-dir/ledger.db",
            "--programme",
            &programme,
            "--format",
            "png",
            "--out",
            pdf.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&png.stderr);
        assert!(
            !png.status.success() && err.contains("choose pdf or svg"),
            "{err}"
        );
        assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));

        // Back up: Carmen has next month's 245.00 left plus this month's 300.00, exactly once.
        let (mut server, address) = serve(&url, &["--secret-file", &secret]).await;
        assert_eq!(
            balance(&address, &admin, carmen_account).await,
            "545.00",
            "{label}"
        );
        let runs = http(
            &address,
            "GET",
            &format!("{p}/runs"),
            Some(&admin),
            &[],
            None,
        )
        .await;
        assert_eq!(runs.json()["items"].as_array().unwrap().len(), 2);

        // The public transparency report: the programme's households and runs, the unit's
        // money by kind, no cell of one to four households shown.
        let report = http(&address, "GET", "/v1/transparency", None, &[], None).await;
        assert_eq!(report.status, 200, "{label}: {}", report.body);
        let report = report.json();
        assert_eq!(report["k"], 5);
        let shown = report["programmes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == programme.as_str())
            .cloned()
            .unwrap();
        assert_eq!(shown["households"], 300, "{shown}");
        assert_eq!(shown["runs"].as_array().unwrap().len(), 2, "{shown}");
        assert!(shown["budget_left_minor"].is_string(), "{shown}");
        let unit = report["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["unit"] == UNIT)
            .cloned()
            .unwrap();
        let issued = unit["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "issue")
            .cloned()
            .unwrap();
        assert!(issued["households"].as_u64().unwrap() >= 5, "{issued}");
        assert!(issued["amount_minor"].is_string(), "{issued}");
        assert_cells_respect_k(&report);
        stop_with_sigterm(&mut server, label).await;
    }
}

/// No household count of a transparency report is 1 to 4, and every suppressed cell has
/// its figures null (the names that say what a cell is stay).
fn assert_cells_respect_k(value: &Value) {
    const NAMES: [&str; 9] = [
        "suppressed",
        "kind",
        "by",
        "period",
        "completed",
        "runs",
        "unit",
        "name",
        "id",
    ];
    match value {
        Value::Object(members) => {
            if let Some(households) = members.get("households").and_then(Value::as_u64) {
                assert!(households == 0 || households >= 5, "{value}");
            }
            if members.get("suppressed") == Some(&Value::Bool(true)) {
                for (name, member) in members {
                    if !NAMES.contains(&name.as_str()) {
                        assert!(
                            member.is_null(),
                            "{name} shown in a suppressed cell: {value}"
                        );
                    }
                }
            }
            members.values().for_each(assert_cells_respect_k);
        }
        Value::Array(items) => items.iter().for_each(assert_cells_respect_k),
        _ => {}
    }
}
