//! Research consent of participants (time-bank members, shops) over HTTP, on SQLite and
//! PostgreSQL: who may record it, and that the research export leaves out every event of a
//! participant that withholds it.

use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use ledger::{
    Account, AccountId, AccountKind, Action, Amount, Limits, ParticipantId, PublicKey, Unit,
    UnitCode, UnitKind,
};
use serde_json::{Value, json};
use wallet_api::auth::Role;
use wallet_api::cards::ServerSecret;
use wallet_api::db::NewAccount;
use wallet_api::db::service::Participant;
use wallet_api::http::limits::ApiConfig;
use wallet_api::research::{ExportOptions, ExportReport};

use super::activation::{holder_login, request, send};
use super::support::*;
use super::{Api, api_on, assert_problem};

/// A participant registered by the scheme: a person, unlisted.
fn person(id: ParticipantId, name: &str) -> Participant {
    Participant {
        id,
        kind: "person".into(),
        name: name.into(),
        roles: vec!["member".into()],
        category_code: None,
        address: None,
        opening_hours: None,
        listed: false,
        created_at: NOW_MS,
        area: Some("Exarchia".into()),
        social_enterprise: false,
        iban: None,
        bic: None,
        account_holder: None,
    }
}

/// Opens an account of `owner`'s in `unit`, debited with `key`, that may run 20.00 short (a
/// time bank's members owe the hours they received).
async fn open_account(
    committer: &wallet_api::Committer,
    unit: UnitCode,
    owner: ParticipantId,
    key: &SigningKey,
) -> AccountId {
    let account = Account::new(unit, AccountKind::Holder, Some(PublicKey::of(key)))
        .with_limits(Limits::new(Some(-20_00), None).unwrap());
    let id = account.id;
    committer
        .open_accounts(vec![NewAccount {
            account,
            owner: Some(owner),
        }])
        .await
        .unwrap();
    id
}

/// The research export's report and its lines.
async fn export(api: &Api) -> (ExportReport, Vec<String>) {
    let secret: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let mut out = Vec::new();
    let report = wallet_api::research::export(
        &api.db,
        &ServerSecret::from_bytes(secret).unwrap(),
        ExportOptions { grain_s: 60 },
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    (report, text.lines().map(str::to_owned).collect())
}

/// A wallet session's token for `account`, logged in with `key`.
async fn session(api: &Api, account: AccountId, key: &SigningKey) -> String {
    let session = holder_login(&api.app, account, key).await;
    assert_eq!(session.0, StatusCode::CREATED, "{}", session.2);
    session.2["token"].as_str().unwrap().to_owned()
}

async fn put_consent(
    api: &Api,
    participant: ParticipantId,
    token: &str,
    body: &Value,
) -> super::activation::Reply {
    let path = format!("/v1/participants/{participant}/research-consent");
    send(&api.app, request("PUT", &path, Some(token), body)).await
}

#[tokio::test]
async fn a_participant_that_withholds_research_consent_leaves_the_export() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let api = api_on(test_db, NOW_MS, ApiConfig::default()).await;
        let committer = &api._committer.0;
        // A time bank: Marta and Nikos trade hours; Kostas holds vouchers of the scheme.
        let hours = UnitCode::new("HOURS").unwrap();
        let unit = Unit::new(hours, "Time bank hours", 2, UnitKind::MutualCredit, None).unwrap();
        committer.add_unit(unit).await.unwrap();
        let (marta, nikos, kostas) = (
            ParticipantId::new(),
            ParticipantId::new(),
            ParticipantId::new(),
        );
        for (id, name) in [(marta, "Marta"), (nikos, "Nikos"), (kostas, "Kostas")] {
            api.db.insert_participant(&person(id, name)).await.unwrap();
        }
        let (marta_key, nikos_key, kostas_key) = (key(21), key(22), key(23));
        let marta_account = open_account(committer, hours, marta, &marta_key).await;
        let nikos_account = open_account(committer, hours, nikos, &nikos_key).await;
        let kostas_account = open_account(committer, api.scheme.unit, kostas, &kostas_key).await;
        let an_hour = Action::Payment {
            from: nikos_account,
            to: marta_account,
            unit: hours,
            amount_minor: Amount::from_minor(1_00).unwrap(),
            memo: "an hour of plumbing".into(),
            request: None,
        };
        committer.submit(&sign(&nikos_key, an_hour)).await.unwrap();
        let (before, lines_before) = export(&api).await;
        assert_eq!(before.withheld, 0, "{label}");
        let admin = api.token(Role::Admin).await;
        let shown = |participant: ParticipantId| {
            let path = format!("/v1/participants/{participant}");
            send(&api.app, request("GET", &path, Some(&admin), &Value::Null))
        };
        assert_eq!(
            shown(marta).await.2["research_consent"],
            true,
            "{label}: given by default"
        );

        // A coordinator records that Marta withholds consent: her hour leaves the export. A
        // retry with the same Idempotency-Key gets the same answer.
        let coordinator = api.token(Role::Coordinator).await;
        let withheld = put_consent(&api, marta, &coordinator, &json!({"consent": false})).await;
        assert_eq!(withheld.0, StatusCode::OK, "{label}: {}", withheld.2);
        assert_eq!(withheld.2["research_consent"], false, "{label}");
        let keyed = || {
            let path = format!("/v1/participants/{marta}/research-consent");
            let body = json!({"consent": false});
            let mut retry = request("PUT", &path, Some(&coordinator), &body);
            retry
                .headers_mut()
                .insert("idempotency-key", "consent-1".parse().unwrap());
            retry
        };
        let first = send(&api.app, keyed()).await;
        assert_eq!(first.0, StatusCode::OK, "{label}: {}", first.2);
        assert_eq!(send(&api.app, keyed()).await, first, "{label}");
        let (after, lines_after) = export(&api).await;
        assert_eq!(after.withheld, 1, "{label}");
        assert_eq!(after.events, before.events - 1, "{label}");
        assert_eq!(lines_after.len(), lines_before.len() - 1, "{label}");
        assert_eq!(shown(marta).await.2["research_consent"], false, "{label}");

        // Nobody else decides it: not whoever reads the export, nor a shop's token, nor a
        // coordinator for anyone outside the time bank, nor another participant's session.
        for role in [
            Role::Researcher,
            Role::Auditor,
            Role::Merchant,
            Role::Collector,
        ] {
            let token = api.token(role).await;
            let refused = put_consent(&api, marta, &token, &json!({"consent": true})).await;
            assert_problem(&refused, StatusCode::FORBIDDEN, "/problems/forbidden");
        }
        let refused = put_consent(&api, kostas, &coordinator, &json!({"consent": false})).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "/problems/forbidden");
        let theirs = session(&api, kostas_account, &kostas_key).await;
        let refused = put_consent(&api, marta, &theirs, &json!({"consent": true})).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "/problems/forbidden");
        assert_eq!(
            export(&api).await.0.withheld,
            1,
            "{label}: the refusals changed it"
        );

        // Mistakes are named.
        let nobody = put_consent(
            &api,
            ParticipantId::new(),
            &admin,
            &json!({"consent": true}),
        )
        .await;
        assert_problem(&nobody, StatusCode::NOT_FOUND, "/problems/not-found");
        let not_a_bool = put_consent(&api, marta, &admin, &json!({"consent": "no"})).await;
        assert_problem(
            &not_a_bool,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );
        let extra = put_consent(&api, marta, &admin, &json!({"consent": true, "why": "x"})).await;
        assert_problem(
            &extra,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed",
        );

        // Marta gives it back herself, through a session of her own account.
        let own = session(&api, marta_account, &marta_key).await;
        let given = put_consent(&api, marta, &own, &json!({"consent": true})).await;
        assert_eq!(given.0, StatusCode::OK, "{label}: {}", given.2);
        let (again, lines_again) = export(&api).await;
        assert_eq!(
            (again.withheld, again.events),
            (0, before.events),
            "{label}"
        );
        assert_eq!(lines_again, lines_before, "{label}");
    }
}
