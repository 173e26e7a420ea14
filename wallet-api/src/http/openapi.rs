//! The OpenAPI 3.1 description, generated from the handlers' annotations and request types
//! (utoipa), served at `/openapi.json`, with a self-contained reading page at `/docs`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An RFC 9457 problem, as every error is answered.
#[derive(ToSchema)]
#[allow(dead_code)] // describes responses; never built
pub struct ProblemDoc {
    /// Stable identifier of the cause, e.g. `/problems/insufficient-funds`.
    r#type: String,
    /// Short human summary of the cause.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What exactly was wrong with this request.
    detail: String,
    /// For validation failures: the field at fault.
    field: Option<String>,
}

/// A signed intent (see docs/wire-format.md): the intent as JSON and an ed25519 signature
/// over `"coledger/v1\n"` + its RFC 8785 canonical form.
#[derive(ToSchema)]
#[allow(dead_code)] // describes requests; never built
pub struct SignedIntentDoc {
    /// `{intent_id, not_after, signer, action}`; `action.type` is `payment`, `refund` or
    /// `entry`. A refund is `{type: "refund", payment, from, to, unit, amount_minor, memo?}`,
    /// signed by the key of `from` (the account that was paid).
    intent: serde_json::Value,
    /// base64url (no padding) of the 64-byte signature.
    signature: String,
}

/// A page of an account's statement (`GET /v1/accounts/{id}/entries`).
#[derive(ToSchema)]
#[allow(dead_code)] // describes responses; never built
pub struct HistoryPageDoc {
    /// The entries, newest first.
    items: Vec<HistoryItemDoc>,
    /// Pass as `cursor` for the next page; null when there is nothing more.
    next_cursor: Option<String>,
}

/// One entry as seen from the account.
#[derive(ToSchema)]
#[allow(dead_code)] // describes responses; never built
pub struct HistoryItemDoc {
    /// The entry's id.
    entry_id: String,
    /// Its commit position.
    position: i64,
    /// When it was committed, ms since the epoch.
    created_at_ms: i64,
    /// `payment`, `reversal`, `issue`, ….
    kind: String,
    /// The account's net change in minor units: negative when it paid.
    amount_minor: i64,
    /// The same in the unit's decimals.
    amount: String,
    /// The accounts on the other side.
    counterparties: Vec<String>,
    /// The entry's memo.
    memo: String,
    /// On a payment the account received, if it can be refunded (a payment of one posting,
    /// as every `payment` intent makes): what is still left to refund of it, in minor units,
    /// that is the payment less the refunds linked to it (`tags.reverses`) so far, however
    /// old the payment; 0 once it is refunded in full. Null on every other line. A `refund`
    /// intent for more is refused with `/problems/refund-exceeds-payment`.
    refundable_minor: Option<i64>,
    /// `refundable_minor` in the unit's decimals.
    refundable: Option<String>,
    /// On a refund (a `reversal` linked to its payment): the payment's entry id. Null on
    /// every other line, including a reversal without the link (an operator's correction).
    reverses: Option<String>,
}

struct BearerAuth;

/// Answers every route can give, added to each operation that does not list them already:
/// the conventions (problem+json on every error) are the same everywhere, so they are
/// stated once here rather than on each handler.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    super::problem::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemDoc")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                // Voiding a file is not rate limited: it is an admin's rare repair.
                (&mut item.delete, false),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                // Every error is a problem document, whether or not the annotation says so.
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && status.starts_with(['4', '5'])
                        && response.content.is_empty()
                    {
                        response.content = problem("").content;
                    }
                }
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                let has_body = operation.request_body.is_some();
                let has_query = operation.parameters.as_ref().is_some_and(|p| {
                    p.iter().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    })
                });
                let secured = operation.security.is_some();
                let has_path = operation.parameters.as_ref().is_some_and(|p| {
                    p.iter()
                        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path))
                });
                if has_path {
                    add("404", "No such resource, or not visible to the caller");
                }
                if has_body {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is too large");
                    add("415", "The body is not application/json");
                    add("422", "A field is missing or invalid (named in `field`)");
                }
                if has_query {
                    add("400", "Malformed query string");
                    add("422", "A query parameter is invalid (named in `field`)");
                }
                if secured {
                    add("401", "No valid bearer token or session");
                }
                if writes {
                    add("429", "Too many writes from this caller");
                }
                add(
                    "503",
                    "Storage unavailable or full, timed out, or a standby: retry",
                );
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token (colt_…, from `coledger token create`) or a \
                         wallet-holder session (cols_…, from POST /v1/sessions).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "coledger",
        description = "Ledger service for complementary currencies, benefit vouchers, \
                       incentive points and time banks. Errors are RFC 9457 problem+json; \
                       writes accept Idempotency-Key; payments are signed intents."
    ),
    paths(
        super::ops::healthz,
        super::ops::readyz,
        super::metrics::metrics,
        openapi_json,
        docs,
        super::registry::list_units,
        super::registry::create_unit,
        super::registry::get_unit,
        super::registry::list_participants,
        super::registry::create_participant,
        super::registry::get_participant,
        super::registry::set_bank_account,
        super::registry::set_research_consent,
        super::registry::registry,
        super::cards::expiries,
        super::cards::issue,
        super::cards::get,
        super::cards::pay,
        super::cards::unlock,
        super::cards::change_pin,
        super::cards::replace,
        super::cards::apply,
        super::programmes::list,
        super::programmes::create,
        super::programmes::get,
        super::programmes::change_rules,
        super::programmes::enrol,
        super::programmes::households,
        super::programmes::research_consent,
        super::programmes::run,
        super::programmes::runs,
        super::programmes::sweep,
        super::programmes::merchants,
        super::programmes::decide_merchant,
        super::programmes::settlement,
        super::programmes::sepa,
        super::programmes::void_sepa,
        super::programmes::redemption_quote,
        super::accounts::create,
        super::accounts::get,
        super::accounts::balance,
        super::accounts::history,
        super::accounts::register_key,
        super::activation::issue_code,
        super::accounts::set_status,
        super::events::account,
        super::entries::get_entry,
        super::entries::journal_heads,
        super::journal::latest_checkpoints,
        super::journal::unit_checkpoints,
        super::journal::sign_checkpoints,
        super::transparency::report,
        super::intents::submit,
        super::entries::get_intent,
        super::requests::create,
        super::requests::get,
        super::requests::cancel,
        super::events::payment_request,
        super::sessions::challenge,
        super::sessions::login,
        super::me::me,
    ),
    components(schemas(ProblemDoc, SignedIntentDoc, HistoryPageDoc, HistoryItemDoc)),
    modifiers(&BearerAuth, &CommonResponses),
)]
struct ApiDoc;

/// The description as JSON (built once).
pub fn spec_json() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// The OpenAPI 3.1 description of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses(
        (status = 200, description = "This document", content_type = "application/json"),
    ))]
pub(super) async fn openapi_json() -> Response {
    let mut response = spec_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A page for reading the API description in a browser.
#[utoipa::path(get, path = "/docs", tag = "ops",
    responses(
        (status = 200, description = "HTML", content_type = "text/html"),
    ))]
pub(super) async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
