//! Resources as JSON. Amounts always appear twice: `*_minor` (the exact integer every
//! computation uses) and the decimal string in the unit's places, for display.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::{Balance, EntryId, Posting, Unit};
use serde_json::{Value, json};

use crate::db::service::{EntryRecord, Participant, PaymentRequest};
use crate::db::statement::StatementLine;
use crate::view::{AccountView, ViewState};

/// The decimal form of a signed minor amount.
pub fn decimal(minor: i64, scale: u8) -> String {
    Balance(minor).format(scale)
}

fn scale_of(view: &ViewState, unit: ledger::UnitCode) -> u8 {
    view.unit(unit).map_or(0, Unit::scale)
}

/// A unit.
pub fn unit(unit: &Unit) -> Value {
    json!({
        "code": unit.code().as_str(),
        "name": unit.name(),
        "scale": unit.scale(),
        "kind": unit.kind().as_str(),
        "peg": unit.peg(),
    })
}

/// An account with its balance.
pub fn account(a: &AccountView, view: &ViewState) -> Value {
    let scale = scale_of(view, a.account.unit);
    let limit = |l: Option<Balance>| l.map(|b| decimal(b.0, scale));
    json!({
        "id": a.account.id,
        "participant_id": a.owner,
        "unit": a.account.unit.as_str(),
        "kind": a.account.kind.as_str(),
        "status": a.account.status.as_str(),
        "lower_limit": limit(a.account.limits.lower()),
        "upper_limit": limit(a.account.limits.upper()),
        "public_key": a.account.authority.map(|k| k.to_base64url()),
        "balance_minor": a.balance.0,
        "balance": decimal(a.balance.0, scale),
        "entries": a.entries,
    })
}

/// One line of an account's statement. `refundable_minor` is set on a payment the account
/// received that can be refunded, `reverses` on a refund; both are null elsewhere.
pub fn history_item(line: &StatementLine, scale: u8) -> Value {
    let item = &line.item;
    json!({
        "entry_id": item.entry_id,
        "position": item.position,
        "created_at_ms": item.created_at,
        "kind": item.kind.as_str(),
        "amount_minor": item.delta,
        "amount": decimal(item.delta, scale),
        "counterparties": item.counterparty.accounts(),
        "memo": line.memo,
        "refundable_minor": line.refundable_minor,
        "refundable": line.refundable_minor.map(|minor| decimal(minor, scale)),
        "reverses": line.reverses,
    })
}

fn posting(p: &Posting, view: &ViewState) -> Value {
    json!({
        "unit": p.unit.as_str(),
        "debit": p.debit,
        "credit": p.credit,
        "amount_minor": p.amount.minor(),
        "amount": p.amount.format(scale_of(view, p.unit)),
    })
}

/// A committed entry with the signed intent that authorised it.
pub fn entry(e: &EntryRecord, view: &ViewState) -> Value {
    let tags: Value = serde_json::from_str(&e.tags).unwrap_or(Value::Null);
    let intent: Value = serde_json::from_str(&e.intent_body).unwrap_or(Value::Null);
    json!({
        "id": e.id,
        "position": e.position,
        "kind": e.kind,
        "memo": e.memo,
        "tags": tags,
        "created_at_ms": e.created_at,
        "postings": e.postings.iter().map(|p| posting(p, view)).collect::<Vec<_>>(),
        "payment_request": e.payment_request,
        "intent": {
            "intent_id": e.intent_id,
            "signed": intent,
            "signer": URL_SAFE_NO_PAD.encode(e.signer),
            "signature": URL_SAFE_NO_PAD.encode(e.signature),
        },
    })
}

/// A participant. `public` leaves out everything the open registry does not publish.
pub fn participant(p: &Participant, public: bool) -> Value {
    if public {
        return json!({
            "id": p.id,
            "name": p.name,
            "category_code": p.category_code,
            "address": p.address,
            "opening_hours": p.opening_hours,
            "area": p.area,
            "social_enterprise": p.social_enterprise,
        });
    }
    json!({
        "id": p.id,
        "kind": p.kind,
        "name": p.name,
        "roles": p.roles,
        "category_code": p.category_code,
        "address": p.address,
        "opening_hours": p.opening_hours,
        "listed": p.listed,
        "created_at_ms": p.created_at,
        "area": p.area,
        "social_enterprise": p.social_enterprise,
        "iban": p.iban,
        "bic": p.bic,
        "account_holder": p.account_holder,
    })
}

/// A payment request and where it stands, given the entry that paid it (if one did):
/// `paid` (which wins over a cancellation that came too late), `cancelled`, `expired` or
/// `open`.
pub fn payment_request(
    r: &PaymentRequest,
    paid_by: Option<EntryId>,
    view: &ViewState,
    now_ms: i64,
) -> Value {
    let status = match paid_by {
        Some(_) => "paid",
        None if r.cancelled_at.is_some() => "cancelled",
        None if now_ms > r.expires_at => "expired",
        None => "open",
    };
    json!({
        "id": r.id,
        "account_id": r.account,
        "unit": r.unit.as_str(),
        "amount_minor": r.amount.minor(),
        "amount": r.amount.format(scale_of(view, r.unit)),
        "memo": r.memo,
        "created_at_ms": r.created_at,
        "expires_at_ms": r.expires_at,
        "cancelled_at_ms": r.cancelled_at,
        "status": status,
        "entry_id": paid_by,
    })
}
