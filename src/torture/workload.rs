//! The bank workload: a scheme of funded accounts set up over HTTP, then many clients
//! sending random signed payments among them, retrying any request whose outcome they could
//! not learn (timeout, reset, 503, server down) with the same intent until they get an
//! answer, as a careful wallet would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{
    AccountId, Action, Amount, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags,
    UnitCode,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use tokio::sync::watch;

use crate::http_client::request;

/// The unit the workload pays in.
pub const UNIT: &str = "BANK-EUR";
/// Each account's opening balance, in minor units.
pub const OPENING_MINOR: i64 = 1_000_00;
/// Payments are 1..=this many minor units: large enough that some are refused.
const MAX_PAYMENT_MINOR: i64 = 400_00;
/// Accounts funded per issuance entry.
const FUNDING_GROUP: usize = 50;
/// One request's time limit; past it the outcome is unknown and the client retries.
const REQUEST_LIMIT: Duration = Duration::from_secs(3);

/// The accounts and keys of the scheme.
pub struct Bank {
    /// Holder accounts, with the keys that control them.
    pub accounts: Vec<(AccountId, SigningKey)>,
    /// The issuer account.
    pub issuer: AccountId,
    /// The intents that funded the accounts.
    pub funding: Vec<IntentId>,
}

/// What a client learned about one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (201) or committed before (200, duplicate): the entry id.
    Acknowledged(String),
    /// Refused by the ledger's rules (422), with the problem type.
    Refused(String),
    /// Never learned: gave up retrying at the end of the run.
    Unknown,
    /// An answer that should never happen (a 5xx other than 503, a 409, …).
    Anomaly(String),
}

/// One payment a client attempted.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Its intent id.
    pub intent_id: IntentId,
    /// Payer index in [`Bank::accounts`].
    pub from: usize,
    /// Payee index.
    pub to: usize,
    /// Amount in minor units.
    pub amount: i64,
    /// What came back in the end.
    pub outcome: Outcome,
    /// Requests it took.
    pub tries: u32,
}

fn now_s() -> i64 {
    crate::scheme::now_s()
}

pub fn sign(key: &SigningKey, action: Action) -> Result<SignedIntent> {
    let intent = Intent {
        intent_id: IntentId::new(),
        // Long enough to survive every kill and restart of the run.
        not_after: now_s().saturating_add(3600),
        signer: PublicKey::of(key),
        action,
    };
    Ok(SignedIntent::sign(intent, key)?)
}

async fn admin_call(
    address: &str,
    token: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let body = body.to_string();
    let answer = request(
        address,
        method,
        path,
        Some(token),
        Some(&body),
        REQUEST_LIMIT,
    )
    .await?;
    if answer.status >= 300 {
        bail!("{method} {path}: {} {}", answer.status, answer.body);
    }
    Ok(answer.json())
}

/// Creates the unit, the issuer and `count` funded accounts over HTTP.
pub async fn set_up(address: &str, token: &str, count: usize, seed: u64) -> Result<Bank> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    admin_call(
        address,
        token,
        "POST",
        "/v1/units",
        json!({"code": UNIT, "name": "Torture euro", "scale": 2, "kind": "voucher"}),
    )
    .await?;
    let mut open = async |kind: &str| -> Result<(AccountId, SigningKey)> {
        let key = SigningKey::from_bytes(&rng.r#gen::<[u8; 32]>());
        let made = admin_call(
            address,
            token,
            "POST",
            "/v1/accounts",
            json!({"unit": UNIT, "kind": kind}),
        )
        .await?;
        let id: AccountId = made["id"].as_str().context("account id")?.parse()?;
        let public = PublicKey::of(&key);
        let proof = key.sign(&wallet_api::http::key_proof_bytes(id, &public));
        admin_call(
            address,
            token,
            "PUT",
            &format!("/v1/accounts/{id}/key"),
            json!({"public_key": public.to_base64url(), "proof": ledger::Signature(proof.to_bytes()).to_base64url()}),
        )
        .await?;
        Ok((id, key))
    };
    let (issuer, issuer_key) = open("issuer").await?;
    let mut accounts = Vec::with_capacity(count);
    for _ in 0..count {
        accounts.push(open("holder").await?);
    }
    let unit = UnitCode::new(UNIT)?;
    // One issuance per group of accounts: an entry has at most 128 postings and a signed
    // intent at most 16 KiB.
    let mut funding = Vec::new();
    for group in accounts.chunks(FUNDING_GROUP) {
        let total = OPENING_MINOR.saturating_mul(i64::try_from(group.len())?);
        let mut legs = vec![Leg {
            account: issuer,
            unit,
            delta: total.saturating_neg(),
        }];
        legs.extend(group.iter().map(|(account, _)| Leg {
            account: *account,
            unit,
            delta: OPENING_MINOR,
        }));
        let issue = sign(
            &issuer_key,
            Action::Entry {
                kind: EntryKind::Issue,
                legs,
                memo: "opening balances".into(),
                tags: Tags::default(),
            },
        )?;
        let answer = request(
            address,
            "POST",
            "/v1/intents",
            None,
            Some(&issue.to_json()),
            REQUEST_LIMIT,
        )
        .await?;
        if answer.status != 201 {
            bail!("funding refused: {} {}", answer.status, answer.body);
        }
        funding.push(issue.intent().intent_id);
    }
    Ok(Bank {
        accounts,
        issuer,
        funding,
    })
}

/// Runs one client until `stop`, then finishes its last payment (retrying until `give_up`).
pub async fn client(
    bank: Arc<Bank>,
    address: watch::Receiver<Vec<String>>,
    seed: u64,
    stop: Instant,
    give_up: Instant,
) -> Result<Vec<Attempt>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let unit = UnitCode::new(UNIT)?;
    let mut attempts = Vec::new();
    let n = bank.accounts.len();
    while Instant::now() < stop {
        let from = rng.gen_range(0..n);
        let to = (from + rng.gen_range(1..n)) % n;
        let amount = rng.gen_range(1..=MAX_PAYMENT_MINOR);
        let (payer, key) = &bank.accounts[from];
        let intent = sign(
            key,
            Action::Payment {
                from: *payer,
                to: bank.accounts[to].0,
                unit,
                amount_minor: Amount::from_minor(amount)?,
                memo: String::new(),
                request: None,
            },
        )?;
        let (outcome, tries) = deliver(&intent.to_json(), &address, give_up).await;
        attempts.push(Attempt {
            intent_id: intent.intent().intent_id,
            from,
            to,
            amount,
            outcome,
            tries,
        });
    }
    Ok(attempts)
}

/// Sends a signed intent until the service says what became of it, trying each known
/// service process in turn (a standby answers 503 and the next one is asked).
pub async fn deliver(
    body: &str,
    address: &watch::Receiver<Vec<String>>,
    give_up: Instant,
) -> (Outcome, u32) {
    let mut tries = 0u32;
    let mut turn = 0usize;
    while Instant::now() < give_up {
        tries = tries.saturating_add(1);
        let targets = address.borrow().clone();
        let Some(target) = targets.get(turn % targets.len().max(1)).cloned() else {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        };
        match request(
            &target,
            "POST",
            "/v1/intents",
            None,
            Some(body),
            REQUEST_LIMIT,
        )
        .await
        {
            Ok(answer) if answer.status == 201 || answer.status == 200 => {
                let entry = answer.json()["entry_id"].as_str().unwrap_or("").to_owned();
                return (Outcome::Acknowledged(entry), tries);
            }
            Ok(answer) if answer.status == 422 => {
                let kind = answer.json()["type"].as_str().unwrap_or("").to_owned();
                return (Outcome::Refused(kind), tries);
            }
            // A standby, storage unavailable, or stopping: ask the next process (same intent).
            Ok(answer) if answer.status == 503 => turn = turn.wrapping_add(1),
            Ok(answer) => {
                return (
                    Outcome::Anomaly(format!("{} {}", answer.status, answer.body)),
                    tries,
                );
            }
            // Down, reset, timed out: ask again (the same intent, so at most once).
            Err(_) => turn = turn.wrapping_add(1),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (Outcome::Unknown, tries)
}
