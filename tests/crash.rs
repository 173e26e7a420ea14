//! Killing the writer mid-batch loses no acknowledged entry and leaves no partial entry.
//!
//! `coledger crash-writer` commits payments from 32 concurrent submitters and prints
//! `ack <intent id>` after each durable reply. We SIGKILL it while batches are in flight,
//! restart it, and repeat. Then a fresh writer must load the ledger (which re-verifies every
//! entry, the hash chain and the invariants, so a partial entry refuses the start) and
//! every acknowledged intent must be in it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use ledger::IntentId;
use support::*;
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

const ROUNDS: usize = 5;
/// Acknowledgements to see before each kill; batches keep flowing meanwhile.
const ACKS_BEFORE_KILL: usize = 300;

#[tokio::test]
async fn killing_the_writer_mid_batch_loses_nothing_acknowledged_and_leaves_nothing_partial() {
    for (label, url, _dir) in databases().await {
        let mut acknowledged: HashSet<IntentId> = HashSet::new();
        for round in 0..ROUNDS {
            let (mut child, mut lines) =
                coledger(&["crash-writer", "--database-url", &url, "--submitters", "32"]);
            assert_eq!(
                next_line(&mut lines).await.as_deref(),
                Some("ready"),
                "{label} round {round}"
            );
            let mut seen = 0;
            while seen < ACKS_BEFORE_KILL {
                let line = next_line(&mut lines)
                    .await
                    .expect("crash-writer stopped early");
                acknowledged.insert(parse_ack(&line));
                seen += 1;
            }
            child.start_kill().unwrap();
            // Whatever it printed before dying was acknowledged too.
            while let Some(line) = next_line(&mut lines).await {
                acknowledged.insert(parse_ack(&line));
            }
            let status = child.wait().await.unwrap();
            assert!(
                !status.success(),
                "{label}: the writer should have died by SIGKILL"
            );
        }

        let db = Database::connect(&url).await.unwrap();
        let (committer, mut task) = Committer::start(
            db.clone(),
            CommitterConfig::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap_or_else(|e| panic!("{label}: the ledger failed verification after kills: {e}"));
        let ids: Vec<IntentId> = acknowledged.iter().copied().collect();
        let (missing, applied) = committer
            .inspect(move |book| {
                (
                    ids.iter()
                        .filter(|id| book.entry_for_intent(**id).is_none())
                        .count(),
                    book.applied_count(),
                )
            })
            .await
            .unwrap();
        assert_eq!(
            missing, 0,
            "{label}: {missing} acknowledged intents were lost"
        );
        assert!(applied >= acknowledged.len(), "{label}");
        eprintln!(
            "{label}: {} acknowledged across {ROUNDS} kills, {applied} entries stored, 0 lost",
            acknowledged.len()
        );
        drop(committer);
        task.join().await.unwrap();
    }
}

fn parse_ack(line: &str) -> IntentId {
    line.strip_prefix("ack ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {line:?}"))
}
