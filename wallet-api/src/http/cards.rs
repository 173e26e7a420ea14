//! Digital cards over HTTP: issue a household's card, pay with it at a merchant's terminal
//! (card number + PIN), unlock, change the PIN, replace a lost card. Also the open
//! registry's applications and a household's upcoming expiries.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Json, Response};
use ledger::{AccountId, Amount, HouseholdId, IntentId, ParticipantId, PaymentRequestId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use super::programmes::{MANAGERS, programme_id, service};
use super::{AppState, render};
use crate::auth::Role;
use crate::db::service::Participant;
use crate::programme::cards::{CardPayment, CardSummary, IssuedCard};

fn render_card(card: &CardSummary) -> Value {
    json!({
        "number": card.number.as_str(),
        "display": card.number.to_string(),
        "household": card.household,
        "account": card.account,
        "status": card.status,
        "failed_attempts": card.failed_attempts,
        "issued_at_ms": card.issued_at,
        "replaced_by": card.replaced_by,
    })
}

fn render_issued(issued: &IssuedCard) -> Value {
    let mut json = render_card(&issued.card);
    // The generated PIN is shown once, for the PIN letter, and never stored.
    json["pin"] = json!(issued.generated_pin);
    json
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueDto {
    /// The PIN; the service chooses one (returned once) when absent.
    #[serde(default)]
    pin: Option<String>,
}

/// `POST /v1/programmes/{id}/households/{household}/cards`: issues the household's card.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/households/{household}/cards",
    tag = "cards",
    params(
        ("id" = String, Path, description = "Programme id"),
        ("household" = String, Path, description = "Household id"),
    ),
    request_body = IssueDto,
    responses(
        (status = 201, description = "The card; `pin` is the generated PIN, shown only now"),
        (status = 409, description = "The household has a card already"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, household)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = async {
        state
            .limiter
            .check(&principal.key(), state.clock.now_ms())?;
        principal.require(MANAGERS, "issue cards")?;
        let programmes = service(&state)?;
        let dto: IssueDto = body::parse(&headers, &body)?;
        let programme = programme_id(&id)?;
        let household: HouseholdId = household
            .parse()
            .map_err(|_| Problem::not_found(format!("no household {household}")))?;
        let found = programmes.db().household(household).await?;
        if found.is_none_or(|h| h.programme != programme) {
            return Err(Problem::not_found(format!(
                "no household {household} in programme {programme}"
            )));
        }
        let issued = programmes.issue_card(household, dto.pin.as_deref()).await?;
        Ok::<Written, Problem>((StatusCode::CREATED, render_issued(&issued)))
    };
    // Not through the idempotency store, which keeps a hash of the request and the response:
    // both hold a PIN. Issuing twice is refused anyway (a household has one card).
    body::respond(write.await)
}

/// `GET /v1/cards/{number}` (admin, programme manager, auditor).
#[utoipa::path(
    get,
    path = "/v1/cards/{number}",
    tag = "cards",
    params(("number" = String, Path, description = "Card number")),
    responses(
        (status = 200, description = "The card's state"),
        (status = 404, description = "No such card"),
        (status = 422, description = "Not a card number of this scheme (length, check digit)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
) -> Result<Json<Value>, Problem> {
    principal.require(
        &[Role::Admin, Role::ProgrammeManager, Role::Auditor],
        "read cards",
    )?;
    let programmes = service(&state)?;
    let number = programmes.card_number(&number)?;
    Ok(Json(render_card(&programmes.card(&number).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CardPaymentDto {
    /// Chosen by the terminal; a retry with the same id pays once.
    #[schema(value_type = String)]
    intent_id: IntentId,
    pin: String,
    /// The merchant's account.
    #[schema(value_type = String)]
    to: AccountId,
    amount: String,
    #[serde(default)]
    memo: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    request: Option<PaymentRequestId>,
}

/// `POST /v1/cards/{number}/payments`: the holder typed the PIN at the merchant's terminal.
/// Wrong PINs are counted; the third in a row locks the card.
#[utoipa::path(
    post,
    path = "/v1/cards/{number}/payments",
    tag = "cards",
    params(("number" = String, Path, description = "Card number")),
    request_body = CardPaymentDto,
    responses(
        (status = 201, description = "Paid"),
        (status = 409, description = "The payment request was already paid, or the intent id names another payment (`/problems/intent-conflict`)"),
        (status = 422, description = "Wrong PIN (attempts left), refused by a spending rule, funds; the payment request unknown, mismatched, expired or cancelled"),
        (status = 423, description = "Card locked"),
        (status = 410, description = "Card replaced"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn pay(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = async {
        state
            .limiter
            .check(&principal.key(), state.clock.now_ms())?;
        let programmes = service(&state)?;
        let dto: CardPaymentDto = body::parse(&headers, &body)?;
        super::intents::refuse_derived_id(dto.intent_id)?;
        let number = programmes.card_number(&number)?;
        // Guessing is bounded per card too, whoever the callers are.
        state
            .limiter
            .check(&format!("card:{}", number.as_str()), state.clock.now_ms())?;
        let amount = {
            let view = state.committer.view().read();
            let to = super::accounts::readable(&view, &principal, &dto.to.to_string())?;
            let allowed = match principal.role() {
                Some(Role::Admin) => true,
                Some(Role::Merchant) => principal.can_manage(to, &view),
                _ => false,
            };
            if !allowed {
                return Err(Problem::forbidden(
                    "card payments are taken by the merchant owning the receiving account",
                ));
            }
            let scale = view.unit(to.account.unit).map_or(0, ledger::Unit::scale);
            let amount = Amount::parse(&dto.amount, scale)
                .map_err(|e| Problem::invalid_field("amount", format!("amount: {e}")))?;
            if amount.minor() == 0 {
                return Err(Problem::invalid_field(
                    "amount",
                    "amount must be more than zero",
                ));
            }
            amount
        };
        let mut request_expires_at = None;
        if let Some(request) = dto.request {
            let payment = super::intents::RequestedPayment {
                request,
                to: dto.to,
                unit: card_unit(&state, programmes, number).await?,
                amount,
                intent_id: dto.intent_id,
            };
            let checked =
                super::intents::check_request_matches(&state, &payment, state.clock.now_ms())
                    .await?;
            request_expires_at = Some(checked.expires_at);
        }
        let committed = programmes
            .pay_by_card(
                number,
                &dto.pin,
                CardPayment {
                    intent_id: dto.intent_id,
                    to: dto.to,
                    amount,
                    memo: dto.memo,
                    request: dto.request,
                    request_expires_at,
                },
            )
            .await?;
        let status = if committed.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok::<Written, Problem>((
            status,
            json!({
                "entry_id": committed.entry_id,
                "intent_id": dto.intent_id,
                "duplicate": committed.duplicate,
            }),
        ))
    };
    // Not through the idempotency store: the body holds the PIN, and the intent id already
    // makes a retry pay once.
    body::respond(write.await)
}

/// The unit a card pays in (its account's).
async fn card_unit(
    state: &AppState,
    programmes: &crate::programme::Programmes,
    number: crate::cards::CardNumber,
) -> Result<ledger::UnitCode, Problem> {
    let card = programmes.card(&number).await?;
    state
        .committer
        .view()
        .read()
        .account(card.account)
        .map(|a| a.account.unit)
        .ok_or_else(|| Problem::not_found(format!("no account for card {number}")))
}

/// `POST /v1/cards/{number}/unlock` (admin, programme manager).
#[utoipa::path(
    post,
    path = "/v1/cards/{number}/unlock",
    tag = "cards",
    params(("number" = String, Path, description = "Card number")),
    responses(
        (status = 200, description = "Unlocked"),
        (status = 410, description = "Card replaced"),
        (status = 422, description = "Not a card number of this scheme"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn unlock(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "unlock cards")?;
        let programmes = service(&state)?;
        let number = programmes.card_number(&number)?;
        let card = programmes.unlock_card(number).await?;
        Ok::<Written, Problem>((StatusCode::OK, render_card(&card)))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PinChangeDto {
    old_pin: String,
    new_pin: String,
}

/// `PUT /v1/cards/{number}/pin` (admin, programme manager): the holder changes the PIN at
/// the programme's office, typing the old one.
#[utoipa::path(
    put,
    path = "/v1/cards/{number}/pin",
    tag = "cards",
    params(("number" = String, Path, description = "Card number")),
    request_body = PinChangeDto,
    responses((status = 204, description = "Changed"), (status = 422, description = "Wrong old PIN, or a weak new one")),
    security(("bearer" = []))
)]
pub(super) async fn change_pin(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    state
        .limiter
        .check(&principal.key(), state.clock.now_ms())?;
    // Not merchants: a terminal sees the PIN typed, so a merchant able to change it could
    // lock the household out of its own card. PINs change at the programme's office.
    principal.require(MANAGERS, "change PINs")?;
    let programmes = service(&state)?;
    let dto: PinChangeDto = body::parse(&headers, &body)?;
    let number = programmes.card_number(&number)?;
    programmes
        .change_pin(number, &dto.old_pin, &dto.new_pin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplaceDto {
    #[serde(default)]
    pin: Option<String>,
}

/// `POST /v1/cards/{number}/replacement`: a lost card's balance moves to a new card.
#[utoipa::path(
    post,
    path = "/v1/cards/{number}/replacement",
    tag = "cards",
    params(("number" = String, Path, description = "The lost card's number")),
    request_body = ReplaceDto,
    responses((status = 201, description = "The new card; `pin` when generated")),
    security(("bearer" = []))
)]
pub(super) async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    state
        .limiter
        .check(&principal.key(), state.clock.now_ms())?;
    principal.require(MANAGERS, "replace cards")?;
    let programmes = service(&state)?;
    let dto: ReplaceDto = body::parse(&headers, &body)?;
    let number = programmes.card_number(&number)?;
    let issued = programmes.replace_card(number, dto.pin.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(render_issued(&issued))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ApplicationDto {
    name: String,
    category_code: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    opening_hours: Option<String>,
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    social_enterprise: bool,
    #[serde(default)]
    iban: Option<String>,
    #[serde(default)]
    bic: Option<String>,
    /// The name the bank account is held in, in Latin letters, if `name` is not it.
    #[serde(default)]
    account_holder: Option<String>,
    /// Programme ids the merchant wants to accept.
    programmes: Vec<String>,
}

/// `POST /v1/registry/applications` (public): a shop or social enterprise applies to accept
/// programmes' units. It is listed once a programme manager approves it.
#[utoipa::path(
    post,
    path = "/v1/registry/applications",
    tag = "participants",
    request_body = ApplicationDto,
    responses((status = 201, description = "Application recorded"), (status = 404, description = "Unknown programme")),
)]
pub(super) async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    // Public, so rate limited as one anonymous caller.
    state
        .limiter
        .check("anonymous-applications", state.clock.now_ms())?;
    let programmes = service(&state)?;
    let dto: ApplicationDto = body::parse(&headers, &body)?;
    let ids = dto
        .programmes
        .iter()
        .map(|p| programme_id(p))
        .collect::<Result<Vec<_>, _>>()?;
    let new = super::registry::NewParticipantFields {
        kind: "organisation".into(),
        name: dto.name,
        roles: vec!["merchant".into()],
        category_code: Some(dto.category_code),
        address: dto.address,
        opening_hours: dto.opening_hours,
        listed: false,
        area: dto.area,
        social_enterprise: dto.social_enterprise,
        iban: dto.iban,
        bic: dto.bic,
        account_holder: dto.account_holder,
    };
    let participant: Participant = super::registry::validate_fields(new, state.clock.now_ms())?;
    // Everything checked before the participant is stored, so a refused application leaves
    // no record behind.
    crate::programme::check_applied_programmes(&ids)?;
    for &id in &ids {
        programmes.get(id).await?;
    }
    state.db.insert_participant(&participant).await?;
    programmes.apply_merchant(participant.id, &ids).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "participant": participant.id,
            "programmes": ids,
            "status": "pending",
        })),
    ))
}

/// `GET /v1/accounts/{id}/expiries`: when the account's units expire (oldest first), for
/// warning the household ahead.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/expiries",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "Upcoming expiries"), (status = 404, description = "No such account, or not visible")),
    security(("bearer" = []))
)]
pub(super) async fn expiries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let programmes = service(&state)?;
    let (account, unit, scale) = {
        let view = state.committer.view().read();
        let account = super::accounts::readable(&view, &principal, &id)?;
        let unit = account.account.unit;
        (
            account.account.id,
            unit,
            view.unit(unit).map_or(0, ledger::Unit::scale),
        )
    };
    let programme = programmes
        .db()
        .programmes()
        .await?
        .into_iter()
        .find(|p| p.unit == unit);
    let items: Vec<Value> = match programme {
        None => Vec::new(),
        Some(p) => programmes
            .upcoming_expiries(p.id, account)
            .await?
            .iter()
            .map(|u| {
                json!({
                    "amount": render::decimal(u.amount_minor, scale),
                    "expires_at_ms": u.expires_at,
                })
            })
            .collect(),
    };
    Ok(Json(
        json!({ "account": account, "unit": unit, "items": items }),
    ))
}

/// Used by the registry to show which programmes a merchant accepts.
pub(super) async fn accepted_programmes(
    state: &AppState,
) -> Result<std::collections::HashMap<ParticipantId, Vec<Value>>, Problem> {
    let mut accepted: std::collections::HashMap<ParticipantId, Vec<Value>> = Default::default();
    let Some(programmes) = state.programmes.as_ref() else {
        return Ok(accepted);
    };
    let names: std::collections::HashMap<_, _> = programmes
        .db()
        .programmes()
        .await?
        .into_iter()
        .map(|p| (p.id, (p.name, p.unit)))
        .collect();
    for standing in programmes.db().programme_merchants(None).await? {
        if standing.status != "approved" {
            continue;
        }
        if let Some((name, unit)) = names.get(&standing.programme) {
            accepted
                .entry(standing.participant)
                .or_default()
                .push(json!({
                    "programme": standing.programme,
                    "name": name,
                    "unit": unit,
                }));
        }
    }
    Ok(accepted)
}
