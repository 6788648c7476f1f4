//! What every roster binary does the same way: logging to stderr, waiting for SIGTERM or SIGINT (and not dying of
//! SIGHUP), and saying why it failed. (How each one serves and goes away is [`crate::transport`].)
//!
//! Kept here so the binaries stay thin and alike (roster-server, roster-collector, roster-demo-producer, and the
//! `roster` CLI).

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

/// Completes on SIGTERM or SIGINT, and logs which: the shutdown of a daemon (roster-server, roster-collector,
/// roster-demo-producer). SIGHUP does not stop it. Daemons are sent SIGHUP to reload (`systemctl reload`, a
/// configuration tool after it changed a file), and its default action would kill the process on the spot, with no
/// drain and no flush; so it is logged, and the TLS files, when in use, are reloaded on it (`transport::tls`).
pub async fn shutdown_signal() {
    signals(false).await;
}

/// As [`shutdown_signal`], but SIGHUP (the terminal went away) stops too, cleanly: for commands run from a
/// terminal (`roster up`, `roster watch`).
pub async fn shutdown_signal_or_hangup() {
    signals(true).await;
}

async fn signals(hangup_stops: bool) {
    #[cfg(unix)]
    let (mut term, mut hangup) = {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::error!(error = %crate::error_chain::chain(&e), "cannot listen for {name}");
                None
            }
        };
        (listen(SignalKind::terminate(), "SIGTERM"), listen(SignalKind::hangup(), "SIGHUP"))
    };
    loop {
        #[cfg(unix)]
        let (term_received, hangup_received) = (
            async {
                match term.as_mut() {
                    Some(term) => term.recv().await,
                    None => std::future::pending().await,
                }
            },
            async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            },
        );
        #[cfg(not(unix))]
        let (term_received, hangup_received) =
            (std::future::pending::<Option<()>>(), std::future::pending::<Option<()>>());
        tokio::select! {
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => {
                    tracing::info!("SIGINT received");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %crate::error_chain::chain(&e), "cannot listen for SIGINT");
                    std::future::pending::<()>().await;
                }
            },
            _ = term_received => {
                tracing::info!("SIGTERM received");
                return;
            }
            _ = hangup_received => {
                if hangup_stops {
                    tracing::info!("SIGHUP received");
                    return;
                }
                tracing::info!("SIGHUP received: it reloads the TLS files, when in use, and does not stop the process");
            }
        }
    }
}
