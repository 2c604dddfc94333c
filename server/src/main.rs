//! The `swarmdrop-server` binary: parses flags, starts the server, stops on Ctrl-C or SIGTERM.

use std::time::Duration;

use clap::Parser;
use swarmdrop_server::{start, Config};
use tracing_subscriber::EnvFilter;

/// The allocator: the tracker allocates and frees a few small buffers per
/// relayed message (decoded fields, encoded frames), which mimalloc does in a
/// fraction of the time glibc's malloc takes under this load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long open requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SWARMDROP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %running.addr, public_url = %running.public_url, "listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    // Long downloads would hold a graceful shutdown open: give them a while.
    match tokio::time::timeout(SHUTDOWN_GRACE, running.stop()).await {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "server failed");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            tracing::warn!("requests still open after the grace period; exiting");
            std::process::ExitCode::SUCCESS
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
