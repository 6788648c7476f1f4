//! What every roster binary does the same way: logging to stderr, waiting for SIGTERM or SIGINT, and telling
//! health watchers it is going away.
//!
//! Kept here so the binaries stay thin and alike (roster-server, roster-collector, roster-demo-producer, and the
//! CLI to come).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Logs to stderr at `RUST_LOG` (default `info`), in colour only on a terminal.
pub fn init_tracing() {
    init_tracing_at("info");
}

/// Logs to stderr at `RUST_LOG`, or `default` when it is unset, in colour only on a terminal.
pub fn init_tracing_at(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Completes on SIGTERM or SIGINT, and logs which.
pub async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                return;
            }
            Err(e) => tracing::error!(error = %crate::error_chain::chain(&e), "cannot listen for SIGTERM"),
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => tracing::info!("SIGINT received"),
            Err(e) => {
                tracing::error!(error = %crate::error_chain::chain(&e), "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        },
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Marks `services` NOT_SERVING, then ends every `grpc.health.v1.Health/Watch` stream on them.
///
/// Load balancers and supervisors hold a Watch open for as long as a server lives. Left open, it would hold a
/// graceful shutdown until its drain limit (or, without one, for ever). Each watcher gets NOT_SERVING first, then
/// its stream ends; a Check from then on answers NOT_FOUND.
pub async fn health_going_away(health: &mut tonic_health::server::HealthReporter, services: &[&str]) {
    for service in services {
        health.set_service_status(*service, tonic_health::ServingStatus::NotServing).await;
    }
    for service in services {
        health.clear_service_status(service).await;
    }
}
