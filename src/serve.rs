//! `coledger serve`: the service.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wallet_api::http::{AppState, router};

use crate::config::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<()> {
    let (db, committer, mut task) = crate::open_ledger(&args.database.database_url).await?;
    if args.demo {
        crate::demo::seed_if_empty(&committer, crate::demo::DEFAULT_SEED).await?;
        let token =
            crate::token::issue(&db, wallet_api::auth::Role::Admin, None, "demo admin").await?;
        println!("demo admin token (shown once): {token}");
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // Tests start the service on port 0 and read this line to find it.
    println!("coledger listening on http://{address}");
    tracing::info!(%address, "serving");
    let state = AppState::new(
        db.clone(),
        committer,
        std::sync::Arc::new(wallet_api::SystemClock),
        args.api_config(),
    );
    let stopping = state.clone();
    tokio::spawn(prune_idempotency_forever(db.clone()));
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Event streams end now; in-flight requests finish, then the committer drains.
        stopping.begin_shutdown();
        drop(stopping);
    });
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        // The writer stops only when every handle is gone, so stopping now means it died
        // (a broken invariant): exit, so a supervisor restarts us and the load re-verifies.
        stopped = task.join() => anyhow::bail!("the ledger writer stopped unexpectedly: {stopped:?}"),
    }
    // The router (and its committer handles) is gone: the writer drains and stops.
    if let Err(e) = task.join().await {
        anyhow::bail!("the ledger writer failed while draining: {e}");
    }
    db.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Forgets idempotency records older than the retention window, hourly.
async fn prune_idempotency_forever(db: wallet_api::Database) {
    use wallet_api::Clock as _;
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let before = wallet_api::SystemClock
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
