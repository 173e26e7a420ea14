//! Who is calling, and what they may see. Every route that reads or moves anything private
//! asks here; the rules are in one place so each boundary has one test.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ledger::{AccountId, ParticipantId, UnitKind};
use uuid::Uuid;

use super::AppState;
use super::problem::Problem;
use crate::auth::{self, OPERATOR_TOKEN_PREFIX, Role, SESSION_TOKEN_PREFIX};
use crate::view::{AccountView, ViewState};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator token.
    Operator {
        /// The token's id (for audit logs, idempotency and rate limits).
        token: Uuid,
        /// Its role.
        role: Role,
        /// The participant it acts for, if scoped.
        participant: Option<ParticipantId>,
    },
    /// A wallet holder's session: one account.
    Holder {
        /// The account the holder proved control of.
        account: AccountId,
    },
}

impl Principal {
    /// A stable name for per-caller bookkeeping (idempotency keys, rate limits).
    pub fn key(&self) -> String {
        match self {
            Principal::Operator { token, .. } => format!("token:{token}"),
            Principal::Holder { account } => format!("holder:{account}"),
        }
    }

    /// The operator role, if an operator.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Operator { role, .. } => Some(*role),
            Principal::Holder { .. } => None,
        }
    }

    /// Refuses unless the caller is an operator with one of `roles`.
    pub fn require(&self, roles: &[Role], doing: &str) -> Result<(), Problem> {
        match self.role() {
            Some(role) if roles.contains(&role) => Ok(()),
            Some(role) => Err(Problem::forbidden(format!(
                "a {} token may not {doing}",
                role.as_str()
            ))),
            None => Err(Problem::forbidden(format!(
                "a wallet session may not {doing}"
            ))),
        }
    }

    /// Whether the caller may see this account's balance and history.
    pub fn can_read(&self, account: &AccountView, view: &ViewState) -> bool {
        match self {
            Principal::Holder { account: own } => *own == account.account.id,
            Principal::Operator {
                role, participant, ..
            } => match role {
                Role::Admin | Role::ProgrammeManager | Role::Auditor => true,
                Role::Coordinator => is_mutual_credit(account, view),
                Role::Merchant | Role::Collector => {
                    participant.is_some() && account.owner == *participant
                }
                Role::Researcher => false,
            },
        }
    }

    /// Whether the caller may open accounts in, or register keys for, this account's unit
    /// and owner: programme managers everywhere, coordinators in mutual-credit units,
    /// merchants and collection points for their own accounts (their terminal's key).
    pub fn can_manage(&self, account: &AccountView, view: &ViewState) -> bool {
        match self {
            Principal::Holder { .. } => false,
            Principal::Operator {
                role, participant, ..
            } => match role {
                Role::Admin | Role::ProgrammeManager => true,
                Role::Coordinator => is_mutual_credit(account, view),
                Role::Merchant | Role::Collector => {
                    participant.is_some() && account.owner == *participant
                }
                Role::Auditor | Role::Researcher => false,
            },
        }
    }

    /// Whether the caller may see a participant's record.
    pub fn can_see_participant(&self, id: ParticipantId) -> bool {
        match self {
            Principal::Holder { .. } => false,
            Principal::Operator {
                role, participant, ..
            } => match role {
                Role::Admin | Role::ProgrammeManager | Role::Auditor | Role::Coordinator => true,
                Role::Merchant | Role::Collector => *participant == Some(id),
                Role::Researcher => false,
            },
        }
    }
}

fn is_mutual_credit(account: &AccountView, view: &ViewState) -> bool {
    view.unit(account.account.unit)
        .is_some_and(|u| u.kind() == UnitKind::MutualCredit)
}

/// The caller, if the request carries credentials; an error if they are not valid.
pub async fn optional(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, Problem> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::unauthenticated("the Authorization header is not ASCII"))?;
    let Some(token) = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
    else {
        return Err(Problem::unauthenticated(
            "use Authorization: Bearer <token>",
        ));
    };
    let token = token.trim();
    let now_ms = state.clock.now_ms();
    if token.starts_with(SESSION_TOKEN_PREFIX) {
        return match state.sessions.account_for(token, now_ms) {
            Some(account) => Ok(Some(Principal::Holder { account })),
            None => Err(Problem::unauthenticated(
                "the session is unknown or expired; sign a new challenge",
            )),
        };
    }
    if !token.starts_with(OPERATOR_TOKEN_PREFIX) {
        return Err(Problem::unauthenticated("not a coledger token"));
    }
    let Some((id, hash)) = auth::parse_operator_token(token) else {
        return Err(Problem::unauthenticated("malformed operator token"));
    };
    let stored = match state.db.token(id).await {
        Ok(found) => {
            match &found {
                Some(token) if token.revoked_at.is_none() => state.tokens.confirmed(token, now_ms),
                _ => state.tokens.forget(id),
            }
            found
        }
        // The database is away: a token it confirmed minutes ago still opens reads (writes
        // fail anyway until it is back).
        Err(e) if e.is_unavailable() => match state.tokens.fallback(id, now_ms) {
            Some(token) => Some(token),
            None => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    match stored {
        Some(stored) if auth::hashes_equal(&stored.secret_hash, &hash) => {
            if stored.revoked_at.is_some() {
                return Err(Problem::unauthenticated("this token has been revoked"));
            }
            let role = Role::parse(&stored.role).ok_or_else(|| {
                Problem::internal(&format!("token {id} has unknown role {}", stored.role))
            })?;
            Ok(Some(Principal::Operator {
                token: id,
                role,
                participant: stored.participant,
            }))
        }
        // Unknown id or wrong secret: the same answer, so ids cannot be probed.
        _ => Err(Problem::unauthenticated("unknown operator token")),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        optional(state, &parts.headers)
            .await?
            .ok_or_else(|| Problem::unauthenticated("this route needs a bearer token"))
    }
}
