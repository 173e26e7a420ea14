//! Server-sent events, so a terminal sees a payment settle without polling.
//!
//! `GET /v1/accounts/{id}/events`: a `balance` event first, then one `entry` event per
//! committed entry touching the account. `GET /v1/payment-requests/{id}/events`: one
//! `settled` or `expired` event, then the stream ends. Events are sent only after commit. A
//! subscriber too slow to keep up gets a `lagged` event and should re-read the statement.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use ledger::{AccountId, PaymentRequestId};
use serde_json::json;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::principal::Principal;
use super::problem::Problem;
use super::{AppState, render};
use crate::view::{LedgerView, Settled};

/// Comment lines sent on idle streams so proxies keep them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

struct AccountStream {
    receiver: Receiver<Arc<[Settled]>>,
    account: AccountId,
    after: i64,
    pending: std::collections::VecDeque<Result<Event, Infallible>>,
    stopping: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
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
    ),
    security(("bearer" = []))
)]
pub(super) async fn account(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
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

/// `GET /v1/payment-requests/{id}/events`: public, like the request itself.
#[utoipa::path(
    get,
    path = "/v1/payment-requests/{id}/events",
    tag = "events",
    params(("id" = String, Path, description = "Payment request id")),
    responses(
        (status = 200, description = "Server-sent events: one settled or expired event", content_type = "text/event-stream"),
        (status = 404, description = "No such request"),
    )
)]
pub(super) async fn payment_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let request = super::requests::find(&state, &id).await?;
    let receiver = state.committer.view().subscribe();
    let already = state.committer.view().read().paid_by(request.id);
    let now_ms = state.clock.now_ms();
    let until_expiry = Duration::from_millis(
        u64::try_from(request.expires_at.saturating_sub(now_ms)).unwrap_or(0),
    );
    let deadline = tokio::time::Instant::now() + until_expiry;
    let first = match already {
        Some(entry_id) => Some(event(
            "settled",
            json!({"payment_request": request.id, "entry_id": entry_id}),
        )),
        None if now_ms > request.expires_at => Some(event(
            "expired",
            json!({"payment_request": request.id, "expires_at_ms": request.expires_at}),
        )),
        None => None,
    };
    let view = state.committer.view().clone();
    let start = (receiver, first, false, request.id);
    let stopping = state.clone();
    let events = stream::unfold(start, move |(mut receiver, first, done, id)| {
        let view = view.clone();
        let stopping = stopping.stopping();
        async move {
            if done {
                return None;
            }
            if let Some(first) = first {
                return Some((first, (receiver, None, true, id)));
            }
            let settled = tokio::select! {
                settled = wait_for_settlement(&mut receiver, &view, id, deadline) => settled,
                () = stopping => return None,
            };
            let next = match settled {
                Some(entry_id) => event(
                    "settled",
                    json!({"payment_request": id, "entry_id": entry_id}),
                ),
                None => event("expired", json!({"payment_request": id})),
            };
            Some((next, (receiver, None, true, id)))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The entry that pays `id`, or None once the deadline passes (or the service stops).
async fn wait_for_settlement(
    receiver: &mut Receiver<Arc<[Settled]>>,
    view: &LedgerView,
    id: PaymentRequestId,
    deadline: tokio::time::Instant,
) -> Option<ledger::EntryId> {
    loop {
        let batch = tokio::select! {
            received = receiver.recv() => received,
            () = tokio::time::sleep_until(deadline) => return None,
        };
        match batch {
            Ok(batch) => {
                if let Some(found) = batch.iter().find(|s| s.payment_request == Some(id)) {
                    return Some(found.entry_id);
                }
            }
            // Missed batches may have held it: the view knows.
            Err(RecvError::Lagged(_)) => {
                if let Some(entry_id) = view.read().paid_by(id) {
                    return Some(entry_id);
                }
            }
            Err(RecvError::Closed) => return None,
        }
    }
}
