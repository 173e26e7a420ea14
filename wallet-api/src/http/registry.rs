//! Units and participants: the scheme's reference data. Units and the open registry of
//! listed merchants are public; participants' full records are for operators.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Json, Response};
use ledger::{ParticipantId, Unit, UnitCode, UnitKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::auth::Role;
use crate::db::service::Participant;

/// `GET /v1/units`: every unit (public).
#[utoipa::path(
    get,
    path = "/v1/units",
    tag = "units",
    responses(
        (status = 200, description = "Every unit"),
    )
)]
pub(super) async fn list_units(State(state): State<AppState>) -> Json<Value> {
    let view = state.committer.view().read();
    Json(json!({"units": view.units().map(render::unit).collect::<Vec<_>>()}))
}

/// `GET /v1/units/{code}` (public).
#[utoipa::path(
    get,
    path = "/v1/units/{code}",
    tag = "units",
    params(("code" = String, Path, description = "Unit code, e.g. PGI-EUR")),
    responses(
        (status = 200, description = "The unit"),
        (status = 404, description = "No such unit"),
    )
)]
pub(super) async fn get_unit(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<Value>, Problem> {
    let code = UnitCode::new(&code).map_err(|e| Problem::not_found(e.to_string()))?;
    let view = state.committer.view().read();
    let unit = view
        .unit(code)
        .ok_or_else(|| Problem::not_found(format!("no unit {code}")))?;
    Ok(Json(render::unit(unit)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUnit {
    code: String,
    name: String,
    scale: u8,
    kind: String,
    #[serde(default)]
    peg: Option<String>,
}

/// `POST /v1/units` (admin, programme manager).
#[utoipa::path(
    post,
    path = "/v1/units",
    tag = "units",
    request_body = NewUnit,
    responses(
        (status = 201, description = "Created"),
        (status = 403, description = "Not an admin or programme manager"),
        (status = 409, description = "The code exists"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_unit(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(&[Role::Admin, Role::ProgrammeManager], "create units")?;
        let new: NewUnit = body::parse(&headers, &body)?;
        let code =
            UnitCode::new(&new.code).map_err(|e| Problem::invalid_field("code", e.to_string()))?;
        let kind = UnitKind::parse(&new.kind).ok_or_else(|| {
            Problem::invalid_field("kind", "kind must be voucher, points or mutual_credit")
        })?;
        let unit =
            Unit::new(code, &new.name, new.scale, kind, new.peg.as_deref()).map_err(|e| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-failed",
                    "Validation failed",
                    e.to_string(),
                )
            })?;
        let json = render::unit(&unit);
        state.committer.add_unit(unit).await?;
        Ok::<Written, Problem>((StatusCode::CREATED, json))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewParticipantFields {
    pub(super) kind: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) category_code: Option<String>,
    #[serde(default)]
    pub(super) address: Option<String>,
    #[serde(default)]
    pub(super) opening_hours: Option<String>,
    #[serde(default)]
    pub(super) listed: bool,
    #[serde(default)]
    pub(super) area: Option<String>,
    #[serde(default)]
    pub(super) social_enterprise: bool,
    #[serde(default)]
    pub(super) iban: Option<String>,
    #[serde(default)]
    pub(super) bic: Option<String>,
    /// The name the bank account is held in, in Latin letters, if `name` is not it (a SEPA
    /// file carries only Latin letters); never public.
    #[serde(default)]
    pub(super) account_holder: Option<String>,
}

/// Scheme roles a participant may have.
const PARTICIPANT_ROLES: [&str; 5] = ["beneficiary", "merchant", "collector", "member", "issuer"];
/// Longest name, address or opening-hours text.
const MAX_TEXT_CHARS: usize = 200;

fn check_text(field: &str, text: &str) -> Result<(), Problem> {
    if text.chars().count() > MAX_TEXT_CHARS
        || text.chars().any(|c| c.is_control() || is_bidi_override(c))
    {
        return Err(Problem::invalid_field(
            field,
            format!(
                "{field} must be at most {MAX_TEXT_CHARS} characters, without control characters \
                 or bidirectional overrides"
            ),
        ));
    }
    Ok(())
}

/// Embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): in a shop's name they
/// could make it display as another shop's on a wallet's confirm screen. The marks that
/// Arabic text needs (U+200E, U+200F, U+061C) are not among them.
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

pub(super) fn validate_fields(
    new: NewParticipantFields,
    now_ms: i64,
) -> Result<Participant, Problem> {
    if !matches!(new.kind.as_str(), "person" | "organisation") {
        return Err(Problem::invalid_field(
            "kind",
            "kind must be person or organisation",
        ));
    }
    if new.name.trim().is_empty() {
        return Err(Problem::invalid_field("name", "name must not be empty"));
    }
    check_text("name", &new.name)?;
    for (field, text) in [
        ("address", &new.address),
        ("opening_hours", &new.opening_hours),
        ("area", &new.area),
    ] {
        if let Some(text) = text {
            check_text(field, text)?;
        }
    }
    if let Some(role) = new
        .roles
        .iter()
        .find(|r| !PARTICIPANT_ROLES.contains(&r.as_str()))
    {
        return Err(Problem::invalid_field(
            "roles",
            format!(
                "unknown role {role:?}; roles are {}",
                PARTICIPANT_ROLES.join(", ")
            ),
        ));
    }
    if let Some(code) = &new.category_code
        && !(code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Problem::invalid_field(
            "category_code",
            "category_code is a 4-digit merchant category code (ISO 18245)",
        ));
    }
    if new.listed && new.kind == "person" {
        // A household must never appear in the public registry.
        return Err(Problem::invalid_field(
            "listed",
            "only organisations can be listed in the public registry",
        ));
    }
    let bank = BankDetails::check(
        new.iban.as_deref(),
        new.bic.as_deref(),
        new.account_holder,
        &new.name,
    )?;
    Ok(Participant {
        id: ParticipantId::new(),
        kind: new.kind,
        name: new.name,
        roles: new.roles,
        category_code: new.category_code,
        address: new.address,
        opening_hours: new.opening_hours,
        listed: new.listed,
        created_at: now_ms,
        area: new.area,
        social_enterprise: new.social_enterprise,
        iban: bank.iban,
        bic: bank.bic,
        account_holder: bank.account_holder,
    })
}

/// A participant's bank details, checked and normalised.
pub(super) struct BankDetails {
    iban: Option<String>,
    bic: Option<String>,
    account_holder: Option<String>,
}

impl BankDetails {
    /// Checks an IBAN (any country with IBANs), a BIC and the account holder's name, for a
    /// participant registered as `name`.
    fn check(
        iban: Option<&str>,
        bic: Option<&str>,
        account_holder: Option<String>,
        name: &str,
    ) -> Result<Self, Problem> {
        use crate::redemption::pain001::{normalise_bic, normalise_iban, require_sepa};
        let iban = iban
            .map(normalise_iban)
            .transpose()
            .map_err(|e| Problem::invalid_field("iban", format!("iban: {e}")))?;
        if let Some(holder) = &account_holder {
            if holder.trim().is_empty() {
                return Err(Problem::invalid_field(
                    "account_holder",
                    "account_holder must not be empty; leave it out if the name is the holder's",
                ));
            }
            check_text("account_holder", holder)?;
        }
        // A payout to a SEPA account goes in a SEPA file, which spells names in Latin letters
        // only: find out now, while the merchant is at hand, not when the month's file for
        // every merchant fails.
        if iban.as_deref().is_some_and(|i| require_sepa(i).is_ok()) {
            let (field, bank_name) = match &account_holder {
                Some(holder) => ("account_holder", holder.as_str()),
                None => ("name", name),
            };
            if let Err(e) = crate::redemption::sepa_name(field, bank_name) {
                let hint = if field == "name" {
                    "; keep this name for the registry and send account_holder: the name the \
                     bank account is held in, in Latin letters"
                } else {
                    ""
                };
                return Err(Problem::invalid_field(field, format!("{e}{hint}")));
            }
        }
        let bic = match bic {
            None => None,
            Some(text) => Some(normalise_bic(text).ok_or_else(|| {
                Problem::invalid_field("bic", "bic must be 8 or 11 characters (ISO 9362)")
            })?),
        };
        // Likewise a SEPA transfer to a bank outside the EEA must name the bank.
        if let Some(country) = iban
            .as_deref()
            .filter(|i| bic.is_none() && crate::redemption::pain001::needs_bic(i))
            .and_then(|i| i.get(..2))
        {
            return Err(Problem::invalid_field(
                "bic",
                format!(
                    "a bank in {country} is in SEPA but outside the EEA, so SEPA transfers to \
                     it must name its BIC: send bic as well"
                ),
            ));
        }
        Ok(Self {
            iban,
            bic,
            account_holder,
        })
    }
}

/// `POST /v1/participants` (admin, programme manager, coordinator).
#[utoipa::path(
    post,
    path = "/v1/participants",
    tag = "participants",
    request_body = NewParticipantFields,
    responses(
        (status = 201, description = "Registered"),
        (status = 403, description = "Role may not register participants"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_participant(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(
            &[Role::Admin, Role::ProgrammeManager, Role::Coordinator],
            "register participants",
        )?;
        let new: NewParticipantFields = body::parse(&headers, &body)?;
        let participant = validate_fields(new, state.clock.now_ms())?;
        state.db.insert_participant(&participant).await?;
        Ok::<Written, Problem>((
            StatusCode::CREATED,
            render::participant(&participant, false),
        ))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// A participant's bank details, as `PUT /v1/participants/{id}/bank-account` takes them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BankAccountFields {
    /// The IBAN payouts go to.
    iban: String,
    /// The bank's BIC, if known.
    #[serde(default)]
    bic: Option<String>,
    /// The name the account is held in, in Latin letters, if the participant's name is not it.
    #[serde(default)]
    account_holder: Option<String>,
}

/// `PUT /v1/participants/{id}/bank-account` (admin, programme manager): replaces where a
/// participant's payouts go, checked as at registration. Not the merchant's own token: a
/// stolen one must not be able to redirect payouts.
#[utoipa::path(
    put,
    path = "/v1/participants/{id}/bank-account",
    tag = "participants",
    params(("id" = String, Path, description = "Participant id")),
    request_body = BankAccountFields,
    responses(
        (status = 200, description = "The participant, with its new bank details"),
        (status = 403, description = "Role may not change bank details"),
        (status = 404, description = "No such participant"),
        (status = 422, description = "A field is invalid (named in `field`)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_bank_account(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(
            &[Role::Admin, Role::ProgrammeManager],
            "change participants' bank details",
        )?;
        let missing = || Problem::not_found("no such participant");
        let id: ParticipantId = id.parse().map_err(|_| missing())?;
        let fields: BankAccountFields = body::parse(&headers, &body)?;
        let mut participant = state.db.participant(id).await?.ok_or_else(missing)?;
        let bank = BankDetails::check(
            Some(&fields.iban),
            fields.bic.as_deref(),
            fields.account_holder,
            &participant.name,
        )?;
        let found = state
            .db
            .set_bank_details(
                id,
                bank.iban.as_deref(),
                bank.bic.as_deref(),
                bank.account_holder.as_deref(),
            )
            .await?;
        if !found {
            return Err(missing());
        }
        tracing::warn!(participant = %id, "bank details changed");
        participant.iban = bank.iban;
        participant.bic = bank.bic;
        participant.account_holder = bank.account_holder;
        Ok::<Written, Problem>((StatusCode::OK, render::participant(&participant, false)))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResearchConsent {
    /// Whether the participant's payments may go, pseudonymised, into the research export.
    consent: bool,
}

/// Operators who may record a participant's research consent: those who enrol members and
/// households. Not a researcher (who reads the export must not choose who is in it), nor a
/// shop's or collection point's token.
const CONSENT_RECORDERS: &[Role] = &[Role::Admin, Role::ProgrammeManager, Role::Coordinator];

/// `PUT /v1/participants/{id}/research-consent`: a participant (a time-bank member, a shop)
/// gives or withholds consent to research use; the research export leaves out every event of
/// one that withholds it. Recorded by an operator who enrols participants (a coordinator for
/// time-bank members only), or by the participant itself through a wallet session of one of
/// its accounts: the one write a session may make.
#[utoipa::path(
    put,
    path = "/v1/participants/{id}/research-consent",
    tag = "participants",
    params(("id" = String, Path, description = "Participant id")),
    request_body = ResearchConsent,
    responses(
        (status = 200, description = "Recorded"),
        (status = 403, description = "Neither an operator who enrols participants nor a session of the participant's own account"),
        (status = 404, description = "No such participant"),
        (status = 422, description = "The body is not `{\"consent\": true|false}`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_research_consent(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        if let Principal::Operator { .. } = principal {
            principal.require(CONSENT_RECORDERS, "record research consent")?;
        }
        let missing = || Problem::not_found("no such participant");
        let id: ParticipantId = id.parse().map_err(|_| missing())?;
        let in_scope = {
            let view = state.committer.view().read();
            match &principal {
                Principal::Holder { account } => view
                    .account(*account)
                    .is_some_and(|held| held.owner == Some(id)),
                // A time-bank coordinator speaks for time-bank members only: participants
                // whose accounts are all in mutual-credit units (as for opening accounts).
                Principal::Operator { .. } => view
                    .accounts_of(id)
                    .all(|held| principal.can_manage(held, &view)),
            }
        };
        if !in_scope {
            return Err(Problem::forbidden(match principal {
                Principal::Holder { .. } => {
                    "a wallet session may record research consent only for its own account's \
                     participant"
                }
                Principal::Operator { .. } => {
                    "a coordinator may record research consent only for time-bank members \
                     (participants whose accounts are all in mutual-credit units)"
                }
            }));
        }
        let fields: ResearchConsent = body::parse(&headers, &body)?;
        if !state
            .db
            .set_participant_research_opt_out(id, !fields.consent)
            .await?
        {
            return Err(missing());
        }
        tracing::info!(
            participant = %id,
            consent = fields.consent,
            by = %principal.key(),
            "research consent recorded"
        );
        let recorded = json!({"participant_id": id, "research_consent": fields.consent});
        Ok::<Written, Problem>((StatusCode::OK, recorded))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// `GET /v1/participants/{id}`.
#[utoipa::path(
    get,
    path = "/v1/participants/{id}",
    tag = "participants",
    params(("id" = String, Path, description = "Participant id")),
    responses(
        (status = 200, description = "The participant with its accounts"),
        (status = 404, description = "No such participant, or not visible to this token"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_participant(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id: ParticipantId = id
        .parse()
        .map_err(|_| Problem::not_found("no such participant"))?;
    if !principal.can_see_participant(id) {
        return Err(Problem::not_found("no such participant"));
    }
    let found = state
        .db
        .participant(id)
        .await?
        .ok_or_else(|| Problem::not_found("no such participant"))?;
    let accounts: Vec<Value> = {
        let view = state.committer.view().read();
        view.accounts_of(id)
            .map(|a| render::account(a, &view))
            .collect()
    };
    let opted_out = state.db.participant_research_opt_out(id).await?;
    let mut json = render::participant(&found, false);
    json["accounts"] = Value::Array(accounts);
    // Given unless withheld (the column's default), should the row have gone meanwhile.
    json["research_consent"] = json!(opted_out != Some(true));
    Ok(Json(json))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn participant_page(
    state: &AppState,
    raw: Option<String>,
    listed_only: bool,
) -> Result<Json<Value>, Problem> {
    let page: Page = body::query(raw.as_deref())?;
    let limit = state.config.page_limit(page.limit)?;
    let after = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<ParticipantId>()
                .map_err(|_| Problem::invalid_field("cursor", "cursor is not one we issued"))?,
        ),
    };
    let found = state
        .db
        .participants(after, i64::from(limit).saturating_add(1), listed_only)
        .await?;
    let more = found.len() > limit as usize;
    let shown = &found[..found.len().min(limit as usize)];
    let next = more
        .then(|| shown.last().map(|p| p.id.to_string()))
        .flatten();
    let accepted = if listed_only {
        super::cards::accepted_programmes(state).await?
    } else {
        Default::default()
    };
    let items: Vec<Value> = shown
        .iter()
        .map(|p| {
            let mut json = render::participant(p, listed_only);
            if listed_only {
                json["programmes"] = json!(accepted.get(&p.id).cloned().unwrap_or_default());
            }
            json
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

/// `GET /v1/participants` (operators who see everyone).
#[utoipa::path(
    get,
    path = "/v1/participants",
    tag = "participants",
    params(Page),
    responses(
        (status = 200, description = "A page of participants"),
        (status = 403, description = "Role may not list participants"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_participants(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    principal.require(
        &[
            Role::Admin,
            Role::ProgrammeManager,
            Role::Auditor,
            Role::Coordinator,
        ],
        "list participants",
    )?;
    participant_page(&state, raw, false).await
}

/// `GET /v1/registry`: the open registry of listed shops and social enterprises (public).
#[utoipa::path(
    get,
    path = "/v1/registry",
    tag = "participants",
    params(Page),
    responses(
        (status = 200, description = "A page of listed shops and social enterprises (public fields only)"),
    )
)]
pub(super) async fn registry(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    participant_page(&state, raw, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_refuse_control_characters_and_bidi_overrides() {
        for good in ["Panadería Núñez", "مخبز النور", "مخبز\u{200F} 7", "Φούρνος"]
        {
            assert!(check_text("name", good).is_ok(), "{good:?}");
        }
        for bad in [
            "Shop\u{0}",
            "Shop\nTwo",
            "\u{202E}pohS",
            "a\u{2066}b\u{2069}",
        ] {
            assert!(check_text("name", bad).is_err(), "{bad:?}");
        }
        assert!(check_text("name", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    fn shop(name: &str, iban: Option<&str>, holder: Option<&str>) -> NewParticipantFields {
        NewParticipantFields {
            kind: "organisation".into(),
            name: name.into(),
            roles: vec!["merchant".into()],
            category_code: Some("5411".into()),
            address: None,
            opening_hours: None,
            listed: false,
            area: None,
            social_enterprise: false,
            iban: iban.map(str::to_owned),
            bic: None,
            account_holder: holder.map(str::to_owned),
        }
    }

    #[test]
    fn a_merchant_paid_by_sepa_has_a_latin_account_holder() {
        const IBAN: &str = "GR16 0110 1250 0000 0001 2300 695";
        let refused_field = |new| {
            let problem = validate_fields(new, 0).unwrap_err();
            let body = problem.body();
            (body["field"].clone(), body["detail"].to_string())
        };
        // A Greek name with an IBAN: the registry keeps it, the bank cannot take it.
        let (field, detail) = refused_field(shop("Φούρνος Καλαμαριά", Some(IBAN), None));
        assert_eq!(field, "name");
        assert!(
            detail.contains("no SEPA Latin spelling") && detail.contains("account_holder"),
            "{detail}"
        );
        // With the holder's Latin name it is accepted and both are kept.
        let kept = validate_fields(
            shop(
                "Φούρνος Καλαμαριά",
                Some(IBAN),
                Some("Fournos Kalamaria IKE"),
            ),
            0,
        )
        .unwrap();
        assert_eq!(kept.name, "Φούρνος Καλαμαριά");
        assert_eq!(
            kept.account_holder.as_deref(),
            Some("Fournos Kalamaria IKE")
        );
        // Without an IBAN nothing goes to a bank, so any script is fine.
        assert!(validate_fields(shop("مخبز النور", None, None), 0).is_ok());
        // A holder's name must itself be spellable, and not blank.
        let (field, _) = refused_field(shop("مخبز النور", Some(IBAN), Some("مخبز النور")));
        assert_eq!(field, "account_holder");
        let (field, _) = refused_field(shop("Shop", Some(IBAN), Some("  ")));
        assert_eq!(field, "account_holder");
        // IBANs outside SEPA (a Tunisian pilot's shops) are kept, to be paid by other means.
        let sfax = validate_fields(
            shop("Épicerie Sfax", Some("TN59 1000 6035 1835 9847 8831"), None),
            0,
        )
        .unwrap();
        assert_eq!(sfax.iban.as_deref(), Some("TN5910006035183598478831"));
        // Outside SEPA no SEPA file carries the name, so an Arabic one needs no Latin holder.
        assert!(
            validate_fields(
                shop("بقالة صفاقس", Some("TN59 1000 6035 1835 9847 8831"), None),
                0
            )
            .is_ok()
        );
        // Latin letters with accents are spelt out, as the bank file does.
        assert!(validate_fields(shop("Panadería Núñez", Some(IBAN), None), 0).is_ok());
    }
}
