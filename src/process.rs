//! What every roster binary does the same way: logging to stderr, waiting for SIGTERM or SIGINT, and saying why it
//! failed. (How each one serves and goes away is [`crate::transport`].)
//!
//! Kept here so the binaries stay thin and alike (roster-server, roster-collector, roster-demo-producer, and the
//! CLI to come).

use std::{error::Error, io::IsTerminal as _, process::ExitCode};

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

/// The exit of a binary's `main`: success, or the error and its causes on one stderr line, `program: what failed:
/// why`, printed by [`crate::error_chain::chain`] as every other error is, and exit code 1.
#[allow(clippy::print_stderr, reason = "the one line a failed program leaves, after its logs")]
pub fn exit<E: AsRef<dyn Error + 'static>>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", crate::error_chain::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
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
