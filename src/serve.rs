//! `coledger serve`: the service.
//!
//! If another process holds the writer lease (a second service on the same PostgreSQL, or a
//! restart racing the old process), this one listens as a **standby**: `/healthz` answers,
//! `/readyz` and every API route answer 503 (so a load balancer sends traffic to the writer),
//! and it takes the lease over as soon as it is free, loading and verifying the ledger first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::ServiceExt as _;
use tokio::net::TcpListener;
use wallet_api::db::{DbError, LoadError};
use wallet_api::http::{AppState, router};
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

use crate::config::ServeArgs;
use crate::front::Front;

/// How often a standby tries to take the writer lease.
const TAKEOVER_POLL: Duration = Duration::from_millis(500);

/// How long a stop waits to sign its last checkpoint (a database that stopped answering
/// must not hold the stop up).
const LAST_CHECKPOINT_WITHIN: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> Result<()> {
    let url = &args.database.database_url;
    let redacted = wallet_api::db::redact(url);
    let db = Database::connect(url)
        .await
        .with_context(|| format!("connecting to {redacted}"))?;
    db.migrate()
        .await
        .with_context(|| format!("migrating {redacted}"))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;

    let front = Front::standby();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = front.clone().into_make_service();
    let server = tokio::spawn(async move {
        axum::serve(listener, serving)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            })
            .await
    });

    // Before the load: with a secret, the load holds storage to the checkpoints it signed.
    let secret = crate::secret::load(&args.database.database_url, &args.programmes)?;
    // Become the writer (waiting as a standby if another process is).
    let mut announced = false;
    let (committer, mut task) = loop {
        match Committer::start(
            db.clone(),
            CommitterConfig {
                linger: Duration::from_millis(args.commit_linger_ms),
                checkpoint_key: secret.as_ref().map(wallet_api::checkpoints::checkpoint_key),
                verify_signatures: args.start_check == crate::config::StartCheck::Signatures,
                ..CommitterConfig::default()
            },
            Arc::new(SystemClock),
        )
        .await
        {
            Ok(started) => break started,
            Err(LoadError::Db(DbError::LeaseHeld(holder))) => {
                if !announced {
                    println!(
                        "coledger standby on http://{address}: the writer lease is held ({holder}); \
                         taking over when it is free"
                    );
                    tracing::warn!(%holder, "standby: waiting for the writer lease");
                    announced = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(TAKEOVER_POLL) => {}
                    _ = stop_rx.changed() => {
                        server.await??;
                        db.close().await;
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                return Err(e).with_context(|| format!("loading the ledger from {redacted}"));
            }
        }
    };
    // The demo loads only into an empty database; on any other (a leftover COLEDGER_DEMO on
    // a live service) it adds nothing and prints no admin token.
    let demo = args.demo && {
        crate::demo::seed_if_empty(&committer, crate::demo::DEFAULT_SEED).await?;
        crate::demo::is_demo(&committer).await?
    };
    if args.demo && !demo {
        tracing::warn!(
            "--demo on a database that is not the demo's: nothing loaded, no token printed"
        );
    }
    if demo {
        let token =
            crate::token::reissue(&db, wallet_api::auth::Role::Admin, None, "demo admin").await?;
        println!("demo admin token (shown once): {token}");
    }
    let verifier =
        wallet_api::Verifier::start(args.verifier_threads).context("starting the verifier")?;
    let clock: Arc<dyn wallet_api::Clock> = Arc::new(SystemClock);
    let checkpointer = secret.as_ref().map(|secret| {
        wallet_api::checkpoints::Checkpointer::new(
            secret,
            db.clone(),
            committer.clone(),
            clock.clone(),
        )
    });
    let programmes = match secret {
        Some(secret) => Some(wallet_api::programme::Programmes::new(
            db.clone(),
            committer.clone(),
            clock.clone(),
            secret,
            crate::secret::card_settings(&args.programmes)?,
        )),
        None => {
            tracing::warn!(
                "no server secret (--secret-file): programmes, cards and signed journal checkpoints are off on this service"
            );
            None
        }
    };
    if let Some(programmes) = &programmes {
        programmes
            .check_secret()
            .await
            .context("checking the server secret")?;
    }
    if demo && let Some(programmes) = &programmes {
        crate::demo::seed_programme_if_none(programmes).await?;
    }
    if let Some(programmes) = &programmes {
        // Refunds that reached a replaced card just before a stop are passed on now.
        match programmes.forward_all_to_current_cards().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cards = n, "refunds to replaced cards passed on"),
            Err(e) => tracing::warn!(error = %e, "refunds to replaced cards not passed on"),
        }
    }
    let sweeper = match (&programmes, args.expiry_sweep_interval_s) {
        (Some(programmes), every_s) if every_s > 0 => Some(tokio::spawn(sweep_expired_forever(
            programmes.clone(),
            Duration::from_secs(every_s),
        ))),
        _ => None,
    };
    if let Some(checkpointer) = &checkpointer {
        // Before the API answers: what the service loaded is signed as it starts.
        checkpointer.sign_and_log().await;
    }
    let signer = match (&checkpointer, args.checkpoint_interval_s) {
        (Some(checkpointer), every_s) if every_s > 0 => Some(tokio::spawn(
            checkpointer
                .clone()
                .sign_forever(Duration::from_secs(every_s)),
        )),
        _ => None,
    };
    if args.demo {
        crate::demo_access::print(
            &db,
            &committer,
            programmes.as_ref(),
            &format!("http://{address}"),
        )
        .await?;
    }
    let mut state = AppState::new(db.clone(), committer, clock, args.api_config(), verifier);
    if let Some(programmes) = programmes {
        state = state.with_programmes(programmes);
    }
    // Kept to sign once more after the last request: a clean stop leaves nothing after the
    // latest checkpoints for the next start to check signature by signature.
    let last_signer = checkpointer.clone();
    if let Some(checkpointer) = checkpointer {
        state = state.with_checkpoints(checkpointer);
    }
    tokio::spawn(prune_idempotency_forever(db.clone()));
    let ending = state.clone();
    tokio::spawn(async move {
        let _ = stop_rx.wait_for(|stopping| *stopping).await;
        // Event streams end now; in-flight requests finish, then the committer drains.
        ending.begin_shutdown();
    });
    front.activate(app(state));
    // Printed once the ledger is loaded and the API answers: tests start the service on
    // port 0 and wait for this line.
    println!("coledger listening on http://{address}");
    tracing::info!(%address, took_over = announced, "serving");
    tokio::select! {
        served = server => served?.context("serving HTTP")?,
        // The writer stops only when every handle is gone, so stopping now means it died
        // (a broken invariant): exit, so a supervisor restarts us and the load re-verifies.
        stopped = task.join() => anyhow::bail!("the ledger writer stopped unexpectedly: {stopped:?}"),
    }
    // Stop the sweeper and the checkpoint signer and drop the router (and their committer
    // handles): the writer drains and stops.
    for task in [sweeper, signer].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    if let Some(checkpointer) = last_signer
        && tokio::time::timeout(LAST_CHECKPOINT_WITHIN, checkpointer.sign_and_log())
            .await
            .is_err()
    {
        tracing::warn!("the last checkpoint was not signed in time; the next start checks more");
    }
    front.deactivate();
    if let Err(e) = task.join().await {
        anyhow::bail!("the ledger writer failed while draining: {e}");
    }
    db.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Everything the service answers once it is the writer: the API and the pages.
pub(crate) fn app(state: AppState) -> axum::Router {
    router(state).merge(crate::pages::router())
}

/// Forgets idempotency records older than the retention window, hourly.
/// Returns expired units to every programme's budget, now and then. Only the writer runs it
/// (a standby has no committer), and a sweep expires only lots past their date, so running
/// it often is harmless.
async fn sweep_expired_forever(programmes: wallet_api::programme::Programmes, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let all = match programmes.db().programmes().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "expiry sweep: listing programmes failed");
                continue;
            }
        };
        for programme in all {
            match programmes.sweep_expired(programme.id).await {
                Ok(report) if report.households == 0 => {}
                Ok(report) => tracing::info!(
                    programme = %programme.id,
                    households = report.households,
                    total_minor = report.total_minor,
                    failed = report.failed.len(),
                    "expired units returned to the budget"
                ),
                Err(e) => {
                    tracing::warn!(programme = %programme.id, error = %e, "expiry sweep failed")
                }
            }
        }
    }
}

async fn prune_idempotency_forever(db: Database) {
    use wallet_api::Clock as _;
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let before = SystemClock
            .now_ms()
            .saturating_sub(wallet_api::http::body::IDEMPOTENCY_RETENTION_MS);
        match db.prune_idempotency(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "pruned idempotency records"),
            Err(e) => tracing::warn!(error = %e, "pruning idempotency records failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests and draining the committer");
}
