//! `coledger serve`: the service.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wallet_api::http::{AppState, router};

use crate::config::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<()> {
    let (db, committer, task) = crate::open_ledger(&args.database.database_url).await?;
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
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    // The router (and its committer handles) is gone: the writer drains and stops.
    task.join().await;
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
