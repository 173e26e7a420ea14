//! Server-sent events, so a terminal sees a payment settle without polling.
//!
//! `GET /v1/accounts/{id}/events`: a `balance` event first, then one `entry` event per
//! committed entry touching the account. `GET /v1/payment-requests/{id}/events`: one
//! `settled`, `cancelled` or `expired` event, then the stream ends: `settled` when a payment
//! of it commits, `cancelled` when the writer has closed it after its merchant cancelled it,
//! `expired` only after its deadline plus [`EXPIRY_GRACE_MS`], once the committed state shows
//! neither (a payment the writer staged just before the deadline may still be committing).
//! Events are sent only after commit. A subscriber too slow to keep up gets a `lagged` event
//! and should re-read the statement.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use futures_util::{Stream, StreamExt as _};
use ledger::{AccountId, EntryId, PaymentRequestId};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::db::service::PaymentRequest;
use crate::view::Settled;

/// Comment lines sent on idle streams so proxies keep them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A place for one more open stream, held for as long as the stream is; a 503 when all
/// [`super::limits::ApiConfig::max_event_streams`] are taken.
fn stream_permit(state: &AppState) -> Result<OwnedSemaphorePermit, Problem> {
    Arc::clone(&state.event_streams)
        .try_acquire_owned()
        .map_err(|_| {
            tracing::warn!(
                limit = state.config.max_event_streams,
                "event stream refused: the limit of open streams is reached"
            );
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-event-streams",
                "Too many event streams",
                format!(
                    "the service has {} event streams open, its limit; retry shortly, or poll",
                    state.config.max_event_streams
                ),
            )
        })
}

fn event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

struct AccountStream {
    receiver: Receiver<Arc<[Settled]>>,
    account: AccountId,
    after: i64,
    pending: std::collections::VecDeque<Result<Event, Infallible>>,
    stopping: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    _permit: OwnedSemaphorePermit,
}

/// `GET /v1/accounts/{id}/events`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/events",
    tag = "events",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "Server-sent events: balance, then entry per committed entry; lagged if too slow", content_type = "text/event-stream"),
        (status = 404, description = "No such account, or not visible"),
        (status = 503, description = "The service's limit of open event streams is reached (`/problems/too-many-event-streams`); retry shortly"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn account(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let permit = stream_permit(&state)?;
    // Subscribe before reading the balance, so nothing committed in between is missed;
    // entries at or before the balance's position are skipped.
    let receiver = state.committer.view().subscribe();
    let (first, account, after, scale) = {
        let view = state.committer.view().read();
        let found = super::accounts::readable(&view, &principal, &id)?;
        let scale = view.unit(found.account.unit).map_or(0, |u| u.scale());
        let first = event(
            "balance",
            json!({
                "account_id": found.account.id,
                "balance_minor": found.balance.0,
                "balance": render::decimal(found.balance.0, scale),
                "as_of_position": view.last_position(),
            }),
        );
        (first, found.account.id, view.last_position(), scale)
    };
    let start = AccountStream {
        receiver,
        account,
        after,
        pending: std::iter::once(first).collect(),
        stopping: Box::pin(state.stopping()),
        _permit: permit,
    };
    let events = stream::unfold(start, move |mut s| async move {
        loop {
            if let Some(next) = s.pending.pop_front() {
                return Some((next, s));
            }
            let received = tokio::select! {
                received = s.receiver.recv() => received,
                () = &mut s.stopping => return None,
            };
            match received {
                Ok(batch) => {
                    for settled in batch.iter().filter(|e| e.position > s.after) {
                        if let Some(data) = entry_event(settled, s.account, scale) {
                            s.pending.push_back(event("entry", data));
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    s.pending
                        .push_back(event("lagged", json!({"missed_batches": missed})));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn entry_event(settled: &Settled, account: AccountId, scale: u8) -> Option<serde_json::Value> {
    if !settled.touches(account) {
        return None;
    }
    let mut delta: i64 = 0;
    let mut counterparties = Vec::new();
    for p in &settled.postings {
        if p.credit == account {
            delta = delta.saturating_add(p.amount.minor());
            counterparties.push(p.debit);
        } else if p.debit == account {
            delta = delta.saturating_sub(p.amount.minor());
            counterparties.push(p.credit);
        }
    }
    Some(json!({
        "entry_id": settled.entry_id,
        "position": settled.position,
        "kind": settled.kind.as_str(),
        "created_at_ms": settled.created_at,
        "amount_minor": delta,
        "amount": render::decimal(delta, scale),
        "counterparties": counterparties,
        "payment_request": settled.payment_request,
    }))
}

/// How long after a payment request's deadline its stream waits before it says `expired`
/// (and after its cancellation was stored before it says `cancelled`, if it missed the
/// writer's word): the writer may have staged a payment just before the deadline (or the
/// cancellation) that is still committing. A payment still in flight after that (storage
/// stalled for longer) would be reported `expired` and then commit; the request itself
/// (`GET /v1/payment-requests/{id}`) stays authoritative.
pub const EXPIRY_GRACE_MS: i64 = 3_000;

/// `GET /v1/payment-requests/{id}/events`: public, like the request itself.
#[utoipa::path(
    get,
    path = "/v1/payment-requests/{id}/events",
    tag = "events",
    params(("id" = String, Path, description = "Payment request id")),
    responses(
        (status = 200, description = "Server-sent events: one settled, cancelled or expired event, then the stream ends. settled and cancelled come as soon as they are committed; expired only after the deadline plus a short grace, once no payment committed", content_type = "text/event-stream"),
        (status = 404, description = "No such request"),
        (status = 503, description = "The service's limit of open event streams is reached (`/problems/too-many-event-streams`); retry shortly"),
    )
)]
pub(super) async fn payment_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let permit = stream_permit(&state)?;
    // Subscribe before reading the request, so nothing that settles or cancels it in between
    // is missed.
    let watch = RequestWatch {
        settlements: state.committer.view().subscribe(),
        cancellations: state.committer.view().subscribe_cancellations(),
        request: super::requests::find(&state, &id).await?,
        state: state.clone(),
    };
    let stopping = state.stopping();
    let events = stream::once(async move {
        let _permit = permit;
        tokio::select! {
            outcome = watch.outcome() => Some(outcome),
            () = stopping => None,
        }
    })
    .filter_map(std::future::ready);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One payment request's stream, waiting for how it ends.
struct RequestWatch {
    settlements: Receiver<Arc<[Settled]>>,
    cancellations: Receiver<PaymentRequestId>,
    request: PaymentRequest,
    state: AppState,
}

/// How a payment request ended, as its stream tells it.
enum Outcome {
    Settled(EntryId),
    Cancelled,
    Expired,
}

impl RequestWatch {
    /// The one event the stream sends: `settled` as soon as a payment commits, `cancelled`
    /// as soon as the writer closed the request, and otherwise, once the deadline (or a
    /// stored cancellation the stream was not told of) and the grace have passed, whatever
    /// the committed view and storage say then.
    async fn outcome(mut self) -> Result<Event, Infallible> {
        let id = self.request.id;
        // Storage failing here leaves it undecided: wait as for an unpaid request, and
        // decide on the recheck.
        let paid = self.paid_by().await.unwrap_or(None);
        let outcome = match paid {
            Some(entry_id) => Outcome::Settled(entry_id),
            None => {
                // A stored cancellation is final once the writer has closed the request (a
                // payment it staged first would win): announced, or known a grace later.
                let decided_at = self.request.cancelled_at.unwrap_or(self.request.expires_at);
                match self.wait(decided_at.saturating_add(EXPIRY_GRACE_MS)).await {
                    Some(outcome) => outcome,
                    None => self.recheck().await,
                }
            }
        };
        match outcome {
            Outcome::Settled(entry_id) => event(
                "settled",
                json!({"payment_request": id, "entry_id": entry_id}),
            ),
            Outcome::Cancelled => event("cancelled", json!({"payment_request": id})),
            Outcome::Expired => event(
                "expired",
                json!({"payment_request": id, "expires_at_ms": self.request.expires_at}),
            ),
        }
    }

    /// Waits for a payment or the writer's cancellation until `until_ms` (by the service's
    /// clock); None if neither came.
    async fn wait(&mut self, until_ms: i64) -> Option<Outcome> {
        let id = self.request.id;
        let mut until = self.instant(until_ms);
        let (mut settlements_open, mut cancellations_open) = (true, true);
        loop {
            tokio::select! {
                received = self.settlements.recv(), if settlements_open => match received {
                    Ok(batch) => {
                        if let Some(found) = batch.iter().find(|s| s.payment_request == Some(id)) {
                            return Some(Outcome::Settled(found.entry_id));
                        }
                    }
                    // Missed batches may have held it: the view (or storage) knows.
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(Some(entry_id)) = self.paid_by().await {
                            return Some(Outcome::Settled(entry_id));
                        }
                    }
                    Err(RecvError::Closed) => settlements_open = false,
                },
                received = self.cancellations.recv(), if cancellations_open => match received {
                    Ok(closed) if closed == id => return Some(Outcome::Cancelled),
                    Ok(_) => {}
                    // A missed cancellation is in storage: decide a grace after it.
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(Some(stored)) = self.state.db.payment_request(id).await
                            && let Some(at) = stored.cancelled_at
                        {
                            until = until.min(self.instant(at.saturating_add(EXPIRY_GRACE_MS)));
                        }
                    }
                    Err(RecvError::Closed) => cancellations_open = false,
                },
                () = tokio::time::sleep_until(until) => return None,
            }
        }
    }

    /// After the grace: anything the writer staged in time has committed by now (or failed),
    /// and a cancellation is stored.
    async fn recheck(&self) -> Outcome {
        // Past the deadline the view may have forgotten the request: then storage says.
        if let Ok(Some(entry_id)) = self.paid_by().await {
            return Outcome::Settled(entry_id);
        }
        let stored = self.state.db.payment_request(self.request.id).await;
        let latest = stored.ok().flatten();
        if latest
            .as_ref()
            .unwrap_or(&self.request)
            .cancelled_at
            .is_some()
        {
            Outcome::Cancelled
        } else {
            Outcome::Expired
        }
    }

    /// The entry that paid the request, if one has committed.
    async fn paid_by(&self) -> Result<Option<EntryId>, crate::db::DbError> {
        super::requests::paid_by(&self.state, &self.request).await
    }

    /// The moment `at_ms` (by the service's clock) on the runtime's timer.
    fn instant(&self, at_ms: i64) -> tokio::time::Instant {
        let wait_ms = at_ms.saturating_sub(self.state.clock.now_ms());
        tokio::time::Instant::now() + Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))
    }
}
