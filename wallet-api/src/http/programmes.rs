//! Municipal programmes over HTTP: create one and change its rules (versioned), enrol
//! households from CSV, plan and execute disbursement runs, sweep expired units, decide on
//! merchants' applications, and download settlement reports and SEPA files. Programme
//! managers and admins write; auditors read.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use ledger::{Amount, CategoryCode, ParticipantId, ProgrammeId, UnitCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, WriteTarget, Written};
use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::auth::Role;
use crate::enrolment::parse_enrolment;
use crate::programme::disburse::{RunKind, RunOptions};
use crate::programme::settlement::parse_date;
use crate::programme::{
    AmountRule, BankAccount, HouseholdInput, NewProgramme, Programme, ProgrammeError,
    ProgrammeRules, Programmes, RuleVersion, Schedule,
};

/// Roles that run programmes.
pub(super) const MANAGERS: &[Role] = &[Role::Admin, Role::ProgrammeManager];
/// Roles that may read programmes.
const READERS: &[Role] = &[Role::Admin, Role::ProgrammeManager, Role::Auditor];

impl From<ProgrammeError> for Problem {
    fn from(error: ProgrammeError) -> Self {
        let detail = error.to_string();
        match error {
            ProgrammeError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            ProgrammeError::Invalid { field, reason } => {
                Problem::invalid_field(&field, format!("{field}: {reason}"))
            }
            ProgrammeError::Conflict(_) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflicts with the current state",
                detail,
            ),
            ProgrammeError::BudgetShort {
                needed_minor,
                available_minor,
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "budget-short",
                "The programme's budget cannot pay this run",
                detail,
            )
            .with("needed_minor", needed_minor)
            .with("available_minor", available_minor),
            ProgrammeError::WrongPin { attempts_left } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong-pin",
                "Wrong PIN",
                detail,
            )
            .with("attempts_left", attempts_left),
            ProgrammeError::CardLocked(_) => {
                Problem::new(StatusCode::LOCKED, "card-locked", "Card locked", detail)
            }
            ProgrammeError::CardReplaced(_) => {
                Problem::new(StatusCode::GONE, "card-replaced", "Card replaced", detail)
            }
            ProgrammeError::Internal(cause) => Problem::internal(&cause),
            ProgrammeError::Storage(e) => e.into(),
            ProgrammeError::Commit(e) => e.into(),
        }
    }
}

/// The programme operations, or 503 when the service runs without a server secret.
pub(super) fn service(state: &AppState) -> Result<&Programmes, Problem> {
    state.programmes.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "programmes-unavailable",
            "Programmes unavailable",
            "this service runs without a server secret, so programmes and cards are off",
        )
    })
}

pub(super) fn programme_id(text: &str) -> Result<ProgrammeId, Problem> {
    text.parse()
        .map_err(|_| Problem::not_found(format!("no programme {text}")))
}

fn scale_of(state: &AppState, unit: UnitCode) -> Result<u8, Problem> {
    state
        .committer
        .view()
        .read()
        .unit(unit)
        .map(ledger::Unit::scale)
        .ok_or_else(|| Problem::invalid_field("unit", format!("unknown unit {unit}")))
}

fn parse_amount(field: &str, text: &str, scale: u8) -> Result<i64, Problem> {
    Amount::parse(text, scale)
        .map(Amount::minor)
        .map_err(|e| Problem::invalid_field(field, format!("{field}: {e}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AmountRuleDto {
    base: String,
    #[serde(default)]
    per_dependent: Option<String>,
    #[serde(default)]
    cap: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesDto {
    amount: AmountRuleDto,
    #[serde(default)]
    allowed_categories: Option<Vec<String>>,
    #[serde(default)]
    daily_cap: Option<String>,
    #[serde(default)]
    monthly_cap: Option<String>,
    #[serde(default)]
    expiry_days: Option<u32>,
    #[serde(default)]
    redemption_fee_basis_points: Option<u32>,
}

impl RulesDto {
    fn parse(self, scale: u8) -> Result<ProgrammeRules, Problem> {
        let optional = |field: &str, text: Option<String>| {
            text.map(|t| parse_amount(field, &t, scale)).transpose()
        };
        let categories = self
            .allowed_categories
            .map(|codes| {
                codes
                    .iter()
                    .map(|c| {
                        CategoryCode::parse(c).map_err(|e| {
                            Problem::invalid_field("allowed_categories", e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(ProgrammeRules {
            amount: AmountRule {
                base_minor: parse_amount("amount.base", &self.amount.base, scale)?,
                per_dependent_minor: optional("amount.per_dependent", self.amount.per_dependent)?
                    .unwrap_or(0),
                cap_minor: optional("amount.cap", self.amount.cap)?,
            },
            allowed_categories: categories,
            daily_cap_minor: optional("daily_cap", self.daily_cap)?,
            monthly_cap_minor: optional("monthly_cap", self.monthly_cap)?,
            expiry_days: self.expiry_days,
            redemption_fee_basis_points: self.redemption_fee_basis_points,
        })
    }
}

fn render_rules(rules: &ProgrammeRules, scale: u8) -> Value {
    let money = |minor: Option<i64>| minor.map(|m| render::decimal(m, scale));
    json!({
        "amount": {
            "base": render::decimal(rules.amount.base_minor, scale),
            "per_dependent": render::decimal(rules.amount.per_dependent_minor, scale),
            "cap": money(rules.amount.cap_minor),
        },
        "allowed_categories": rules.allowed_categories,
        "daily_cap": money(rules.daily_cap_minor),
        "monthly_cap": money(rules.monthly_cap_minor),
        "expiry_days": rules.expiry_days,
        "redemption_fee_basis_points": rules.redemption_fee_basis_points,
    })
}

fn render_version(v: &RuleVersion, scale: u8) -> Value {
    json!({
        "version": v.version,
        "effective_from_ms": v.effective_from,
        "recorded_at_ms": v.created_at,
        "rules": render_rules(&v.rules, scale),
    })
}

fn render_programme(state: &AppState, p: &Programme, versions: &[RuleVersion]) -> Value {
    let view = state.committer.view().read();
    let scale = view.unit(p.unit).map_or(0, ledger::Unit::scale);
    let budget = view.account(p.accounts.budget).map(|b| {
        let floor = b.account.limits.lower().map_or(0, |l| l.0);
        json!({
            "total": render::decimal(floor.saturating_neg(), scale),
            "disbursed_net": render::decimal(b.balance.0.saturating_neg(), scale),
            "available": render::decimal(b.balance.0.saturating_sub(floor), scale),
        })
    });
    let now = state.clock.now_ms();
    let current = crate::programme::rules_at(versions, now).map(|v| v.version);
    json!({
        "id": p.id,
        "name": p.name,
        "unit": p.unit,
        "schedule": p.schedule.as_str(),
        "pay_day": p.schedule.day(),
        "areas": p.areas,
        "languages": p.languages,
        "accounts": {
            "budget": p.accounts.budget,
            "clearing": p.accounts.clearing,
            "fees": p.accounts.fees,
        },
        "administrator_key": p.administrator.to_base64url(),
        "budget": budget,
        "debtor": p.debtor,
        "current_rules_version": current,
        "rules": versions.iter().map(|v| render_version(v, scale)).collect::<Vec<_>>(),
        "created_at_ms": p.created_at,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProgrammeDto {
    name: String,
    unit: String,
    budget: String,
    schedule: String,
    #[serde(default)]
    pay_day: Option<u8>,
    areas: Vec<String>,
    languages: Vec<String>,
    rules: RulesDto,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    fee_account: Option<ledger::AccountId>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    debtor: Option<BankAccount>,
}

/// `POST /v1/programmes` (admin, programme manager).
#[utoipa::path(
    post,
    path = "/v1/programmes",
    tag = "programmes",
    request_body = NewProgrammeDto,
    responses(
        (status = 201, description = "Created, with its budget, clearing and fee accounts"),
        (status = 409, description = "The unit already belongs to a programme"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "create programmes")?;
        let programmes = service(&state)?;
        let new: NewProgrammeDto = body::parse(&headers, &body)?;
        let unit =
            UnitCode::new(&new.unit).map_err(|e| Problem::invalid_field("unit", e.to_string()))?;
        let scale = scale_of(&state, unit)?;
        let schedule = Schedule::parse(&new.schedule, new.pay_day).ok_or_else(|| {
            Problem::invalid_field(
                "schedule",
                "schedule is monthly with a pay_day from 1 to 28, or one_off without one",
            )
        })?;
        let (programme, first) = programmes
            .create(NewProgramme {
                name: new.name,
                unit,
                budget_minor: parse_amount("budget", &new.budget, scale)?,
                schedule,
                areas: new.areas,
                languages: new.languages,
                rules: new.rules.parse(scale)?,
                fee_account: new.fee_account,
                debtor: new.debtor,
            })
            .await?;
        Ok::<Written, Problem>((
            StatusCode::CREATED,
            render_programme(&state, &programme, &[first]),
        ))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// `GET /v1/programmes` (admin, programme manager, auditor).
#[utoipa::path(
    get,
    path = "/v1/programmes",
    tag = "programmes",
    responses((status = 200, description = "Every programme")),
    security(("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, Problem> {
    principal.require(READERS, "read programmes")?;
    let programmes = service(&state)?;
    let mut items = Vec::new();
    for p in programmes.db().programmes().await? {
        let versions = programmes.db().rule_versions(p.id).await?;
        items.push(render_programme(&state, &p, &versions));
    }
    Ok(Json(json!({ "items": items })))
}

/// `GET /v1/programmes/{id}`: the programme with every version of its rules.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    responses((status = 200, description = "The programme"), (status = 404, description = "No such programme")),
    security(("bearer" = []))
)]
pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    principal.require(READERS, "read programmes")?;
    let programmes = service(&state)?;
    let programme = programmes.get(programme_id(&id)?).await?;
    let versions = programmes.db().rule_versions(programme.id).await?;
    Ok(Json(render_programme(&state, &programme, &versions)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRulesDto {
    #[serde(default)]
    effective_from_ms: Option<i64>,
    rules: RulesDto,
}

/// `POST /v1/programmes/{id}/rules`: a new version of the rules, from a stated time.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/rules",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    request_body = NewRulesDto,
    responses((status = 201, description = "The new version"), (status = 404, description = "No such programme")),
    security(("bearer" = []))
)]
pub(super) async fn change_rules(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "change programme rules")?;
        let programmes = service(&state)?;
        let programme = programmes.get(programme_id(&id)?).await?;
        let new: NewRulesDto = body::parse(&headers, &body)?;
        let scale = scale_of(&state, programme.unit)?;
        let version = programmes
            .change_rules(programme.id, new.effective_from_ms, new.rules.parse(scale)?)
            .await?;
        Ok::<Written, Problem>((StatusCode::CREATED, render_version(&version, scale)))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EnrolQuery {
    /// Write nothing if any row is rejected.
    #[serde(default)]
    all_or_nothing: Option<bool>,
}

/// `POST /v1/programmes/{id}/enrolments`: a CSV of households (`text/csv`), validated row by
/// row. Re-importing the same file changes nothing.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/enrolments",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), EnrolQuery),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "What changed, and every rejected row with why"),
        (status = 422, description = "Rejected rows with all_or_nothing, or a file that cannot be read"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn enrol(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "enrol households")?;
        let programmes = service(&state)?;
        let query: EnrolQuery = body::query(raw.as_deref())?;
        let is_csv = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
        if !is_csv {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the enrolment file as text/csv",
            ));
        }
        let programme = programmes.get(programme_id(&id)?).await?;
        let report = parse_enrolment(&body, &programme.enrolment_rules()).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "enrolment-file",
                "Enrolment file cannot be read",
                e.to_string(),
            )
        })?;
        let rejected: Vec<Value> = report
            .rejected
            .iter()
            .map(|r| {
                json!({
                    "line": r.line,
                    "household_ref": r.household_ref,
                    "reasons": r.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        if query.all_or_nothing.unwrap_or(false) && !rejected.is_empty() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "enrolment-rejected",
                "Rows were rejected; nothing was enrolled",
                format!(
                    "{} of {} rows were rejected and all_or_nothing was asked for",
                    rejected.len(),
                    rejected.len().saturating_add(report.accepted.len())
                ),
            )
            .with("rejected", rejected));
        }
        let rows = report
            .accepted
            .into_iter()
            .map(HouseholdInput::from)
            .collect();
        let outcome = programmes.enrol(programme.id, rows).await?;
        Ok::<Written, Problem>((
            StatusCode::OK,
            json!({
                "created": outcome.created,
                "updated": outcome.updated,
                "unchanged": outcome.unchanged,
                "rejected": rejected,
            }),
        ))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HouseholdPage {
    /// Page size.
    #[serde(default)]
    limit: Option<u32>,
    /// The last household reference of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /v1/programmes/{id}/households`: enrolled households with balance and cards.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}/households",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), HouseholdPage),
    responses((status = 200, description = "A page of households, by reference")),
    security(("bearer" = []))
)]
pub(super) async fn households(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    principal.require(READERS, "read households")?;
    let programmes = service(&state)?;
    let page: HouseholdPage = body::query(raw.as_deref())?;
    let limit = state.config.page_limit(page.limit)? as usize;
    let programme = programmes.get(programme_id(&id)?).await?;
    // One more than a page tells whether another page follows.
    let mut shown = programmes
        .db()
        .households_page(
            programme.id,
            page.cursor.as_deref(),
            i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1),
        )
        .await?;
    let more = shown.len() > limit;
    shown.truncate(limit);
    let view = state.committer.view().read();
    let scale = view.unit(programme.unit).map_or(0, ledger::Unit::scale);
    let items: Vec<Value> = shown
        .iter()
        .map(|(h, carded)| {
            json!({
                "id": h.id,
                "reference": h.reference,
                "name": h.name,
                "dependents": h.dependents,
                "area": h.area,
                "phone": h.phone,
                "language": h.language,
                "account": h.account,
                "balance": view.account(h.account).map(|a| render::decimal(a.balance.0, scale)),
                "has_active_card": carded,
                "enrolled_at_ms": h.enrolled_at,
            })
        })
        .collect();
    let next = more
        .then(|| shown.last().map(|(h, _)| h.reference.clone()))
        .flatten();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsentDto {
    /// Whether the household's (pseudonymised) payments may be used for research.
    consent: bool,
}

/// `PUT /v1/programmes/{id}/households/{household}/research-consent`: a household gives or
/// withholds consent to research use; the research export leaves out those who withhold it.
#[utoipa::path(
    put,
    path = "/v1/programmes/{id}/households/{household}/research-consent",
    tag = "programmes",
    params(
        ("id" = String, Path, description = "Programme id"),
        ("household" = String, Path, description = "Household id"),
    ),
    request_body = ConsentDto,
    responses((status = 200, description = "Recorded")),
    security(("bearer" = []))
)]
pub(super) async fn research_consent(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, household)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    principal.require(MANAGERS, "record research consent")?;
    let programmes = service(&state)?;
    let dto: ConsentDto = body::parse(&headers, &body)?;
    let programme = programme_id(&id)?;
    let missing =
        || Problem::not_found(format!("no household {household} in programme {programme}"));
    let household: ledger::HouseholdId = household.parse().map_err(|_| missing())?;
    match programmes.db().household(household).await? {
        Some(h) if h.programme == programme => {}
        _ => return Err(missing()),
    }
    programmes
        .db()
        .set_research_opt_out(household, !dto.consent)
        .await?;
    Ok(Json(
        json!({"household": household, "research_consent": dto.consent}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunDto {
    period: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/programmes/{id}/runs`: plan (`dry_run`) or execute a disbursement run.
/// Executing the same period again pays nobody twice; it resumes a run cut short.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/runs",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    request_body = RunDto,
    responses(
        (status = 200, description = "The plan (dry run) or what the run did"),
        (status = 422, description = "Budget short, bad period, unknown area"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "run disbursements")?;
        let programmes = service(&state)?;
        let programme = programme_id(&id)?;
        let dto: RunDto = body::parse(&headers, &body)?;
        let kind = match dto.kind.as_deref() {
            None | Some("monthly") if dto.area.is_none() => RunKind::Monthly,
            None | Some("monthly") => {
                return Err(Problem::invalid_field(
                    "area",
                    "area applies to emergency runs only",
                ));
            }
            Some("emergency") => RunKind::Emergency { area: dto.area },
            Some(_) => {
                return Err(Problem::invalid_field(
                    "kind",
                    "kind is monthly or emergency",
                ));
            }
        };
        let json = if dto.dry_run {
            let plan = programmes.plan_run(programme, &dto.period, &kind).await?;
            let mut json = serde_json::to_value(&plan).map_err(|e| Problem::internal(&e))?;
            json["dry_run"] = json!(true);
            json["already_executed"] = json!(plan.existing.is_some());
            json
        } else {
            let report = programmes
                .execute_run(
                    programme,
                    &dto.period,
                    &kind,
                    RunOptions::default(),
                    &|_| {},
                )
                .await?;
            let mut json = serde_json::to_value(&report).map_err(|e| Problem::internal(&e))?;
            json["dry_run"] = json!(false);
            json
        };
        Ok::<Written, Problem>((StatusCode::OK, json))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

/// `GET /v1/programmes/{id}/runs`: every run, newest first.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}/runs",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    responses((status = 200, description = "Runs")),
    security(("bearer" = []))
)]
pub(super) async fn runs(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    principal.require(READERS, "read runs")?;
    let programmes = service(&state)?;
    let programme = programmes.get(programme_id(&id)?).await?;
    let scale = scale_of(&state, programme.unit)?;
    let items: Vec<Value> = programmes
        .db()
        .runs(programme.id)
        .await?
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "period": r.period,
                "kind": r.kind,
                "area": r.area,
                "households": r.households,
                "total": render::decimal(r.total_minor, scale),
                "entries": r.chunks,
                "created_at_ms": r.created_at,
                "completed_at_ms": r.completed_at,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/programmes/{id}/expiry-sweeps`: returns every household's expired units to the
/// budget now. A scheduler (cron) calls this daily.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/expiry-sweeps",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    responses((status = 200, description = "What expired")),
    security(("bearer" = []))
)]
pub(super) async fn sweep(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "sweep expired units")?;
        let programmes = service(&state)?;
        let report = programmes.sweep_expired(programme_id(&id)?).await?;
        let json = serde_json::to_value(&report).map_err(|e| Problem::internal(&e))?;
        Ok::<Written, Problem>((StatusCode::OK, json))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecisionDto {
    approve: bool,
}

/// `PUT /v1/programmes/{id}/merchants/{participant}`: approve or reject an application.
#[utoipa::path(
    put,
    path = "/v1/programmes/{id}/merchants/{participant}",
    tag = "programmes",
    params(
        ("id" = String, Path, description = "Programme id"),
        ("participant" = String, Path, description = "The merchant"),
    ),
    request_body = DecisionDto,
    responses((status = 200, description = "The merchant's standing"), (status = 404, description = "No such application")),
    security(("bearer" = []))
)]
pub(super) async fn decide_merchant(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, participant)): Path<(String, String)>,
    headers: HeaderMap,
    target: WriteTarget,
    body: Bytes,
) -> Response {
    let write = async {
        principal.require(MANAGERS, "approve merchants")?;
        let programmes = service(&state)?;
        let decision: DecisionDto = body::parse(&headers, &body)?;
        let participant: ParticipantId = participant
            .parse()
            .map_err(|_| Problem::not_found(format!("no participant {participant}")))?;
        let standing = programmes
            .decide_merchant(programme_id(&id)?, participant, decision.approve)
            .await?;
        if decision.approve {
            state.db.set_listed(participant, true).await?;
        }
        Ok::<Written, Problem>((StatusCode::OK, render_standing(&standing)))
    };
    body::idempotent(&state, &headers, &principal, &target, &body, write).await
}

fn render_standing(s: &crate::db::programmes::ProgrammeMerchant) -> Value {
    json!({
        "programme": s.programme,
        "participant": s.participant,
        "status": s.status,
        "account": s.account,
        "applied_at_ms": s.applied_at,
        "decided_at_ms": s.decided_at,
    })
}

/// `GET /v1/programmes/{id}/merchants`: applications and approvals.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}/merchants",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id")),
    responses((status = 200, description = "Every merchant's standing")),
    security(("bearer" = []))
)]
pub(super) async fn merchants(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    principal.require(READERS, "read merchant applications")?;
    let programmes = service(&state)?;
    let programme = programmes.get(programme_id(&id)?).await?;
    let items: Vec<Value> = programmes
        .db()
        .programme_merchants(Some(programme.id))
        .await?
        .iter()
        .map(render_standing)
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PeriodQuery {
    /// First day, `YYYY-MM-DD`.
    from: String,
    /// Last day (included), `YYYY-MM-DD`.
    to: String,
    /// `csv` (default) or `json`.
    #[serde(default)]
    format: Option<String>,
    /// For the SEPA file: the requested execution date (default today).
    #[serde(default)]
    execution_date: Option<String>,
}

/// `GET /v1/programmes/{id}/settlement`: each merchant's redemptions in a period, as CSV
/// (default) or JSON.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}/settlement",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), PeriodQuery),
    responses((status = 200, description = "The settlement report")),
    security(("bearer" = []))
)]
pub(super) async fn settlement(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    principal.require(READERS, "read settlements")?;
    let programmes = service(&state)?;
    let query: PeriodQuery = body::query(raw.as_deref())?;
    let (from, to) = (
        parse_date("from", &query.from)?,
        parse_date("to", &query.to)?,
    );
    let id = programme_id(&id)?;
    match query.format.as_deref() {
        None | Some("csv") => {
            let csv = programmes.settlement_csv(id, from, to).await?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
        }
        Some("json") => {
            let programme = programmes.get(id).await?;
            let scale = scale_of(&state, programme.unit)?;
            let items: Vec<Value> = programmes
                .settlement(id, from, to)
                .await?
                .iter()
                .map(|m| {
                    json!({
                        "merchant": m.merchant,
                        "name": m.name,
                        "redemptions": m.redemptions,
                        "gross": render::decimal(m.gross_minor, scale),
                        "fee": render::decimal(m.fee_minor, scale),
                        "net": render::decimal(m.gross_minor.saturating_sub(m.fee_minor), scale),
                        // For paying by hand where a SEPA file cannot (pilots outside SEPA).
                        "iban": m.iban,
                        "bic": m.bic,
                        "account_holder": m.account_holder,
                    })
                })
                .collect();
            Ok(Json(json!({ "items": items })).into_response())
        }
        Some(_) => Err(Problem::invalid_field("format", "format is csv or json")),
    }
}

/// `POST /v1/programmes/{id}/sepa-credit-transfer`: the pain.001.001.09 file paying every
/// merchant its net redemptions of the period. A POST, not a GET: it records the period as
/// paid, which a prefetch, a cache or a link checker must never do; asked again for the
/// same period it gives the same file.
#[utoipa::path(
    post,
    path = "/v1/programmes/{id}/sepa-credit-transfer",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), PeriodQuery),
    responses(
        (status = 200, description = "pain.001.001.09 XML"),
        (status = 204, description = "Nobody is owed anything in the period: no file; the \
            period is recorded as settled so the next one can follow"),
        (status = 409, description = "No debtor account, a merchant without an IBAN or with \
            one outside SEPA, a period not ended, overlapping a file or leaving a gap"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn sepa(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    principal.require(MANAGERS, "produce payment files")?;
    let programmes = service(&state)?;
    let query: PeriodQuery = body::query(raw.as_deref())?;
    let (from, to) = (
        parse_date("from", &query.from)?,
        parse_date("to", &query.to)?,
    );
    let execution = match query.execution_date.as_deref() {
        Some(text) => parse_date("execution_date", text)?,
        None => programmes.today()?,
    };
    let file = programmes
        .credit_transfer_file(programme_id(&id)?, from, to, execution)
        .await?;
    Ok(match file {
        Some(xml) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            xml,
        )
            .into_response(),
        // Nobody is owed anything: no file, but the period is settled.
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FileQuery {
    /// First day of the file's period, `YYYY-MM-DD`.
    from: String,
    /// Last day of the file's period (included), `YYYY-MM-DD`.
    to: String,
}

/// `DELETE /v1/programmes/{id}/sepa-credit-transfer` (admin): voids the latest SEPA file,
/// made by mistake (a mistyped period) and never sent to the bank, so that its days can be
/// paid in another file. The record stays, marked voided. A voided file that the bank did
/// get pays its merchants twice: only an admin may void one.
#[utoipa::path(
    delete,
    path = "/v1/programmes/{id}/sepa-credit-transfer",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), FileQuery),
    responses(
        (status = 200, description = "`{from, to, voided: true}`"),
        (status = 404, description = "No file of that period is recorded (or it was voided)"),
        (status = 409, description = "A later file is recorded: void that one first"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn void_sepa(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    principal.require(&[Role::Admin], "void payment files")?;
    let programmes = service(&state)?;
    let query: FileQuery = body::query(raw.as_deref())?;
    let (from, to) = (
        parse_date("from", &query.from)?,
        parse_date("to", &query.to)?,
    );
    programmes
        .void_credit_transfer_file(programme_id(&id)?, from, to)
        .await?;
    tracing::warn!(programme = %id, %from, %to, "SEPA file voided");
    Ok(Json(
        json!({ "from": from.to_string(), "to": to.to_string(), "voided": true }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct QuoteQuery {
    /// The merchant's account.
    account: String,
    /// The amount to redeem.
    amount: String,
}

/// `GET /v1/programmes/{id}/redemption-quote`: the fee and the legs of a redemption, ready
/// for the merchant to sign as an `entry` intent of kind `redeem`.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}/redemption-quote",
    tag = "programmes",
    params(("id" = String, Path, description = "Programme id"), QuoteQuery),
    responses((status = 200, description = "Fee, net and legs"), (status = 409, description = "Redemption not open")),
    security(("bearer" = []))
)]
pub(super) async fn redemption_quote(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Problem> {
    let programmes = service(&state)?;
    let query: QuoteQuery = body::query(raw.as_deref())?;
    let programme = programmes.get(programme_id(&id)?).await?;
    let versions = programmes.db().rule_versions(programme.id).await?;
    let fee_basis_points = crate::programme::rules_at(&versions, state.clock.now_ms())
        .and_then(|v| v.rules.redemption_fee_basis_points)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "redemption-closed",
                "Redemption not open",
                format!(
                    "the rules in force do not open redemption of {}",
                    programme.unit
                ),
            )
        })?;
    let rule = ledger::RedemptionRule {
        clearing_account: programme.accounts.clearing,
        fee_account: programme.accounts.fees,
        fee_basis_points,
    };
    let view = state.committer.view().read();
    let account = super::accounts::readable(&view, &principal, &query.account)?;
    if account.account.unit != programme.unit {
        return Err(Problem::invalid_field(
            "account",
            "the account holds another unit",
        ));
    }
    let scale = view.unit(programme.unit).map_or(0, ledger::Unit::scale);
    let gross = Amount::parse(&query.amount, scale)
        .map_err(|e| Problem::invalid_field("amount", format!("amount: {e}")))?;
    if gross.minor() == 0 {
        return Err(Problem::invalid_field(
            "amount",
            "amount must be more than zero",
        ));
    }
    let fee = rule.fee_for(gross).minor();
    let net = gross.minor().saturating_sub(fee);
    let mut legs = vec![
        json!({"account": account.account.id, "unit": programme.unit, "delta": gross.minor().saturating_neg()}),
    ];
    if net > 0 {
        legs.push(json!({"account": rule.clearing_account, "unit": programme.unit, "delta": net}));
    }
    if fee > 0 {
        legs.push(json!({"account": rule.fee_account, "unit": programme.unit, "delta": fee}));
    }
    Ok(Json(json!({
        "kind": "redeem",
        "gross": render::decimal(gross.minor(), scale),
        "fee": render::decimal(fee, scale),
        "net": render::decimal(net, scale),
        "fee_basis_points": fee_basis_points,
        "legs": legs,
    })))
}
