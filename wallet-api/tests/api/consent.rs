//! Research consent of participants (time-bank members, shops) over HTTP, on SQLite and
//! PostgreSQL: who may record it, and that the research export leaves out every event of a
//! participant that withholds it.

use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use ledger::{Account, AccountId, AccountKind, ParticipantId, PublicKey};
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

/// Marta, a time-bank member: a person, unlisted.
fn member(id: ParticipantId) -> Participant {
    Participant {
        id,
        kind: "person".into(),
        name: "Marta".into(),
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
        let marta = ParticipantId::new();
        api.db.insert_participant(&member(marta)).await.unwrap();
        let marta_key = key(21);
        let account = Account::new(
            api.scheme.unit,
            AccountKind::Holder,
            Some(PublicKey::of(&marta_key)),
        );
        let marta_account = account.id;
        committer
            .open_accounts(vec![NewAccount {
                account,
                owner: Some(marta),
            }])
            .await
            .unwrap();
        let scheme = &api.scheme;
        committer
            .submit(&scheme.pay(&scheme.alice_key, scheme.alice, marta_account, 10_00))
            .await
            .unwrap();
        let (before, lines_before) = export(&api).await;
        assert_eq!(before.withheld, 0, "{label}");

        // A coordinator records that Marta withholds consent: her payment leaves the export.
        let coordinator = api.token(Role::Coordinator).await;
        let withheld = put_consent(&api, marta, &coordinator, &json!({"consent": false})).await;
        assert_eq!(withheld.0, StatusCode::OK, "{label}: {}", withheld.2);
        assert_eq!(withheld.2["research_consent"], false, "{label}");
        let (after, lines_after) = export(&api).await;
        assert_eq!(after.withheld, 1, "{label}");
        assert_eq!(after.events, before.events - 1, "{label}");
        assert_eq!(lines_after.len(), lines_before.len() - 1, "{label}");
        let admin = api.token(Role::Admin).await;
        let shown = send(
            &api.app,
            request(
                "GET",
                &format!("/v1/participants/{marta}"),
                Some(&admin),
                &Value::Null,
            ),
        )
        .await;
        assert_eq!(shown.2["research_consent"], false, "{label}: {}", shown.2);

        // Nobody else decides it: not whoever reads the export, nor a shop's token, nor
        // another holder's session.
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
        let alice = session(&api, scheme.alice, &scheme.alice_key).await;
        let refused = put_consent(&api, marta, &alice, &json!({"consent": true})).await;
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
