//! The checker: after the run, the database is opened directly and everything the clients
//! were told is compared with what the journal holds.
//!
//! - every acknowledged payment is in the journal exactly once, under the entry id given;
//! - no refused payment is in it, and nothing is in it that no client asked for;
//! - loading re-verifies the hash chain and every invariant (per-unit sum zero, limits);
//! - each balance equals the opening balance plus the payments the journal holds, computed
//!   from what the clients *signed* (so a payment applied with other terms would show);
//! - the API, restarted, serves those same balances.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use ledger::{AccountId, IntentId};
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

use super::workload::{Attempt, Bank, OPENING_MINOR, Outcome};

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Payments attempted.
    pub attempted: usize,
    /// Acknowledged (201 or 200 duplicate).
    pub acknowledged: usize,
    /// Refused by the rules.
    pub refused: usize,
    /// Never learned (given up at the end).
    pub unknown: usize,
    /// Of the unknown, how many the journal holds.
    pub unknown_applied: usize,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Acknowledged but missing from the journal, or under another entry id.
    pub lost: usize,
    /// Intents in the journal more than once.
    pub duplicated: usize,
    /// Entries nobody asked for, or refused payments that were applied anyway.
    pub created: usize,
    /// Balances that differ from the clients' model.
    pub balance_mismatches: usize,
    /// Balances the restarted API serves that differ from the journal's.
    pub api_mismatches: usize,
    /// Answers that should never happen.
    pub anomalies: Vec<String>,
    /// Entries in the journal.
    pub journal_entries: usize,
}

impl Verdict {
    /// Whether everything held.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.created == 0
            && self.balance_mismatches == 0
            && self.api_mismatches == 0
            && self.anomalies.is_empty()
    }
}

/// Loads the ledger (which verifies chain and invariants, or fails) and checks the run.
pub async fn check(
    database_url: &str,
    bank: &Bank,
    attempts: &[Attempt],
) -> Result<(Verdict, HashMap<AccountId, i64>)> {
    let db = Database::connect(database_url).await?;
    let (committer, mut task) = Committer::start(
        db.clone(),
        CommitterConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .context("the ledger does not load and verify")?;
    let mut ids: Vec<AccountId> = bank.accounts.iter().map(|(id, _)| *id).collect();
    ids.push(bank.issuer);
    let balances: HashMap<AccountId, i64> = committer
        .inspect(move |book| {
            ids.iter()
                .map(|id| (*id, book.balance(*id).map_or(i64::MIN, |b| b.0)))
                .collect()
        })
        .await?;
    drop(committer);
    task.join().await.map_err(anyhow::Error::msg)?;
    let journal = db.committed_intents().await?;
    db.close().await;
    let verdict = judge(&journal, &balances, bank, attempts)?;
    Ok((verdict, balances))
}

/// Compares what the clients were told with the journal and the loaded balances.
pub fn judge(
    journal: &[(IntentId, ledger::EntryId)],
    balances: &HashMap<AccountId, i64>,
    bank: &Bank,
    attempts: &[Attempt],
) -> Result<Verdict> {
    let mut verdict = Verdict {
        attempted: attempts.len(),
        journal_entries: journal.len(),
        ..Verdict::default()
    };
    let mut in_journal: HashMap<IntentId, String> = HashMap::with_capacity(journal.len());
    for (intent, entry) in journal {
        if in_journal.insert(*intent, entry.to_string()).is_some() {
            verdict.duplicated += 1;
        }
    }
    let mut model: Vec<i64> = vec![OPENING_MINOR; bank.accounts.len()];
    let mut explained = bank.funding.len();
    verdict.lost += bank
        .funding
        .iter()
        .filter(|f| !in_journal.contains_key(f))
        .count();
    for attempt in attempts {
        verdict.requests += u64::from(attempt.tries);
        let applied = in_journal.get(&attempt.intent_id);
        match (&attempt.outcome, applied) {
            (Outcome::Acknowledged(entry), Some(found)) if entry == found => {
                verdict.acknowledged += 1
            }
            (Outcome::Acknowledged(_), _) => {
                verdict.acknowledged += 1;
                verdict.lost += 1;
            }
            (Outcome::Refused(_), Some(_)) => {
                verdict.refused += 1;
                verdict.created += 1;
            }
            (Outcome::Refused(_), None) => verdict.refused += 1,
            (Outcome::Unknown, found) => {
                verdict.unknown += 1;
                verdict.unknown_applied += usize::from(found.is_some());
            }
            (Outcome::Anomaly(what), _) => verdict.anomalies.push(what.clone()),
        }
        if applied.is_some() {
            explained += 1;
            model[attempt.from] -= attempt.amount;
            model[attempt.to] += attempt.amount;
        }
    }
    // Every journal entry must be one somebody asked for.
    verdict.created += in_journal.len().saturating_sub(explained);
    for (index, (account, _)) in bank.accounts.iter().enumerate() {
        if balances.get(account) != Some(&model[index]) {
            verdict.balance_mismatches += 1;
        }
    }
    // Payments only move money: what was issued is all there is.
    let issued = OPENING_MINOR.saturating_mul(i64::try_from(bank.accounts.len())?);
    if balances.get(&bank.issuer) != Some(&issued.saturating_neg())
        || model.iter().sum::<i64>() != issued
    {
        verdict.created += 1;
    }
    Ok(verdict)
}

/// Compares the balances a restarted API serves with the journal's.
pub async fn api_balances_match(
    address: &str,
    token: &str,
    balances: &HashMap<AccountId, i64>,
) -> Result<usize> {
    let mut mismatches = 0;
    for (account, expected) in balances {
        let answer = crate::http_client::request(
            address,
            "GET",
            &format!("/v1/accounts/{account}/balance"),
            Some(token),
            None,
            std::time::Duration::from_secs(10),
        )
        .await?;
        if answer.json()["balance_minor"].as_i64() != Some(*expected) {
            mismatches += 1;
        }
    }
    Ok(mismatches)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::SigningKey;
    use ledger::EntryId;

    use super::*;

    fn bank() -> Bank {
        Bank {
            accounts: (1..=2u8)
                .map(|s| (AccountId::new(), SigningKey::from_bytes(&[s; 32])))
                .collect(),
            issuer: AccountId::new(),
            funding: vec![IntentId::new()],
        }
    }

    fn attempt(amount: i64, outcome: Outcome) -> Attempt {
        Attempt {
            intent_id: IntentId::new(),
            from: 0,
            to: 1,
            amount,
            outcome,
            tries: 1,
        }
    }

    /// A journal and balances consistent with `applied`.
    fn ledger_after(
        bank: &Bank,
        applied: &[&Attempt],
    ) -> (Vec<(IntentId, EntryId)>, HashMap<AccountId, i64>) {
        let mut journal = vec![(bank.funding[0], EntryId::new())];
        let mut balances: HashMap<AccountId, i64> = bank
            .accounts
            .iter()
            .map(|(id, _)| (*id, OPENING_MINOR))
            .collect();
        balances.insert(bank.issuer, -2 * OPENING_MINOR);
        for a in applied {
            let entry = match &a.outcome {
                Outcome::Acknowledged(e) => e.parse().unwrap(),
                _ => EntryId::new(),
            };
            journal.push((a.intent_id, entry));
            *balances.get_mut(&bank.accounts[a.from].0).unwrap() -= a.amount;
            *balances.get_mut(&bank.accounts[a.to].0).unwrap() += a.amount;
        }
        (journal, balances)
    }

    #[test]
    fn a_consistent_run_passes() {
        let bank = bank();
        let acked = attempt(5, Outcome::Acknowledged(EntryId::new().to_string()));
        let unknown = attempt(7, Outcome::Unknown);
        let refused = attempt(9, Outcome::Refused("/problems/insufficient-funds".into()));
        let (journal, balances) = ledger_after(&bank, &[&acked, &unknown]);
        let verdict = judge(&journal, &balances, &bank, &[acked, unknown, refused]).unwrap();
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(
            (
                verdict.acknowledged,
                verdict.unknown_applied,
                verdict.refused
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn the_checker_catches_loss_duplication_creation_and_wrong_balances() {
        let bank = bank();
        let acked = attempt(5, Outcome::Acknowledged(EntryId::new().to_string()));
        let (_, balances) = ledger_after(&bank, &[&acked]);
        // Acknowledged but not in the journal: lost (and the balances no longer add up).
        let (journal, _) = ledger_after(&bank, &[]);
        let verdict = judge(&journal, &balances, &bank, std::slice::from_ref(&acked)).unwrap();
        assert_eq!(verdict.lost, 1);
        // In the journal twice.
        let (mut journal, balances) = ledger_after(&bank, &[&acked]);
        journal.push(journal[1]);
        assert_eq!(
            judge(&journal, &balances, &bank, std::slice::from_ref(&acked))
                .unwrap()
                .duplicated,
            1
        );
        // Refused but applied, and an entry nobody asked for.
        let refused = attempt(5, Outcome::Refused("/problems/insufficient-funds".into()));
        let (mut journal, balances) = ledger_after(&bank, &[&refused]);
        journal.push((IntentId::new(), EntryId::new()));
        assert_eq!(
            judge(&journal, &balances, &bank, &[refused])
                .unwrap()
                .created,
            2
        );
        // A balance that is not what the signed payments add up to.
        let (journal, mut balances) = ledger_after(&bank, &[&acked]);
        *balances.get_mut(&bank.accounts[1].0).unwrap() += 1;
        let verdict = judge(&journal, &balances, &bank, &[acked]).unwrap();
        assert_eq!(verdict.balance_mismatches, 1);
        assert!(!verdict.passed());
    }
}
