//! What every roster binary does the same way: logging to stderr, checking at start that its data directory can be
//! written, waiting for SIGTERM or SIGINT (and not dying of SIGHUP), and saying why it failed. (How each one serves
//! and goes away is [`crate::transport`].)
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

/// Whether `dir` can be written, found by writing and removing a small file there: a program that keeps state in
/// its data directory says so at start (read-only file system, permissions, full disk) rather than failing at every
/// later write, or, as SQLite does, saying only "unable to open database file".
///
/// # Errors
/// Why the file could not be written or removed.
pub fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"roster").and_then(|()| std::fs::remove_file(&probe))
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
    let (mut term, mut hangup) = (Listener::terminate(), Listener::hangup());
    loop {
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
            () = term.recv() => {
                tracing::info!("SIGTERM received");
                return;
            }
            () = hangup.recv() => {
                if hangup_stops {
                    tracing::info!("SIGHUP received");
                    return;
                }
                tracing::info!("SIGHUP received: it reloads the TLS files, when in use, and does not stop the process");
            }
        }
    }
}

/// A signal listened for; one that cannot be (said once, in the log), or that the platform lacks, never comes.
pub(crate) struct Listener {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Listener {
    /// SIGTERM.
    pub(crate) fn terminate() -> Self {
        #[cfg(unix)]
        return Self::unix(tokio::signal::unix::SignalKind::terminate(), "SIGTERM");
        #[cfg(not(unix))]
        return Self {};
    }

    /// SIGHUP.
    pub(crate) fn hangup() -> Self {
        #[cfg(unix)]
        return Self::unix(tokio::signal::unix::SignalKind::hangup(), "SIGHUP");
        #[cfg(not(unix))]
        return Self {};
    }

    #[cfg(unix)]
    fn unix(kind: tokio::signal::unix::SignalKind, name: &str) -> Self {
        match tokio::signal::unix::signal(kind) {
            Ok(signal) => Self { signal: Some(signal) },
            Err(e) => {
                tracing::error!(error = %crate::error_chain::chain(&e), "cannot listen for {name}");
                Self { signal: None }
            }
        }
    }

    /// Completes when the signal comes next.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
