//! `coledger crash-writer` (hidden): commits payments until killed, printing `ack <intent>`
//! after each durable reply. The crash tests kill it with SIGKILL mid-batch and then check
//! that every printed intent is in the database and that nothing partial is.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::config::CrashWriterArgs;
use crate::scheme::{Scheme, now_s};

const HOLDERS: usize = 100;
/// Fixed, so every restart finds the same accounts and keys.
const SEED: u64 = 99;

pub async fn run(args: CrashWriterArgs) -> Result<()> {
    let (_db, committer, _task) = crate::open_ledger(&args.database.database_url).await?;
    let scheme = Arc::new(Scheme::generate("CRASH", HOLDERS, 0, SEED)?);
    let code = scheme.code();
    if !committer.inspect(move |b| b.unit(code).is_some()).await? {
        scheme.register(&committer).await?;
        let holders: Vec<_> = scheme.holders.iter().map(|h| h.account).collect();
        for intent in scheme.issuance(&holders, 1_000_000_000, "crash test funding", now_s())? {
            committer.submit(&intent).await?;
        }
    }
    println!("ready");
    let workers: Vec<_> = (0..args.submitters)
        .map(|_| {
            let (committer, scheme) = (committer.clone(), scheme.clone());
            tokio::spawn(async move {
                let mut rng = ChaCha20Rng::from_entropy();
                loop {
                    let from = rng.gen_range(0..HOLDERS);
                    let to = (from + rng.gen_range(1..HOLDERS)) % HOLDERS;
                    let intent = scheme.payment(
                        &scheme.holders[from],
                        scheme.holders[to].account,
                        rng.gen_range(1..=100),
                        "crash",
                        now_s(),
                    )?;
                    committer.submit(&intent).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {}", intent.intent().intent_id)?;
                    out.flush()?;
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}
