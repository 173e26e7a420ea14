//! `coledger serve`: the service.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wallet_api::http::{AppState, router};

use crate::config::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<()> {
    let (db, committer, mut task) = crate::open_ledger(&args.database.database_url).await?;
    if args.demo {
        crate::demo::seed_if_empty(&committer, crate::demo::DEFAULT_SEED).await?;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // Tests start the service on port 0 and read this line to find it.
    println!("coledger listening on http://{address}");
    tracing::info!(%address, "serving");
    let app = router(AppState {
        db: db.clone(),
        committer,
        clock: std::sync::Arc::new(wallet_api::SystemClock),
        verifier: wallet_api::Verifier::start(args.verifier_threads)
            .context("starting the verifier")?,
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
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
