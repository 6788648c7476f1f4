//! Where samples go once they leave the sink's queue: the exporter interface.
//!
//! The [`sink`](crate::sink) owns, for each destination, the bounded queue that producer tasks hand batches to
//! without waiting, and the one writer task that drains it; an [`Exporter`] is what that task writes through. Each
//! kind of destination has its exporter in a file of its own here.
//!
//! | destination (`--sink`) | exporter |
//! |---|---|
//! | JSON lines in a file (`jsonl=PATH`, or a bare path) | [`jsonl::JsonLines`] |
//! | Prometheus remote-write 1.0, through a queue on disk (`remote-write=URL,...`) | [`remote_write::RemoteWrite`] |
//!
//! An exporter is called by one task, one batch at a time, so it may keep state (an open file, a connection, a
//! queue of its own) without locking. It may take its time: the queue in front of it absorbs the wait, and drops
//! (and counts) what does not fit, so collection never waits for an exporter. One whose destination is remote
//! and may be down keeps its own queue behind [`Exporter::export`], which then returns once a batch is queued
//! there, not once it is delivered.

pub(crate) mod jsonl;
pub(crate) mod remote_write;

use std::{fmt::Display, future::Future, path::PathBuf, str::FromStr};

use crate::sample::Sample;

/// Writes batches of samples to one destination. Its `Display` names the destination (for logs and spans).
pub(crate) trait Exporter: Display + Send + 'static {
    /// Why a batch could not be written. Its `Display` follows roster's rule (see [`roster::error_chain`]).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The kind of destination, as `--sink` names it (`jsonl`, `remote-write`).
    const KIND: &'static str;

    /// Takes one batch. On an error the batch is counted as dropped; the exporter recovers by itself (reopens,
    /// reconnects) for the next one.
    fn export(&mut self, batch: &[Sample]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes what was exported so far reach its destination (called when the queue runs empty, at most every
    /// [`SINK_FLUSH_EVERY`](crate::defaults::SINK_FLUSH_EVERY), and when that time is up). An error counts the
    /// samples exported since the last flush as dropped.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Flushes and releases the destination, once the queue is drained at shutdown.
    fn shutdown(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// One destination of the samples, as `--sink` gives it: `jsonl=PATH` (or a bare `PATH`), or
/// `remote-write=URL[,bearer-token-file=PATH|,basic-auth-user=NAME,basic-auth-password-file=PATH][,ca-file=PATH]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination(Kind);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// JSON lines appended to a file.
    JsonLines(PathBuf),
    /// A Prometheus remote-write receiver, behind a disk queue in the data directory.
    RemoteWrite(Box<remote_write::config::RemoteWriteConfig>),
}

impl Destination {
    /// JSON lines appended to the file at `path`.
    pub fn json_lines(path: impl Into<PathBuf>) -> Self {
        Self(Kind::JsonLines(path.into()))
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.0
    }
}

/// The `--sink` value again, without the options (so no secret and no file of one).
impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::JsonLines(path) => write!(f, "jsonl={}", path.display()),
            Kind::RemoteWrite(config) => write!(f, "{config}"),
        }
    }
}

/// A `--sink` value that names no destination roster knows, or names one badly.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct DestinationError(String);

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(value: &str) -> Result<Self, DestinationError> {
        let looks_like_a_kind =
            |kind: &str| !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        match value.split_once('=') {
            Some(("jsonl", "")) => {
                Err(DestinationError("jsonl= needs a file path: write jsonl=/var/lib/roster/samples.jsonl".into()))
            }
            Some(("jsonl", path)) => Ok(Self::json_lines(path)),
            Some(("remote-write", _)) => match value.parse() {
                Ok(config) => Ok(Self(Kind::RemoteWrite(Box::new(config)))),
                Err(e) => Err(DestinationError(roster::error_chain::chain(&e).to_string())),
            },
            Some((kind, _)) if looks_like_a_kind(kind) => Err(DestinationError(format!(
                "unknown sink kind {kind:?}: write jsonl=PATH or remote-write=URL (a file path holding `=` is written \
                 jsonl=PATH)"
            ))),
            _ if value.is_empty() => {
                Err(DestinationError("the sink is empty: write jsonl=PATH or remote-write=URL".into()))
            }
            _ => Ok(Self::json_lines(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_values_name_their_kind_or_are_a_file_path() {
        let jsonl = |p: &str| Ok(Destination::json_lines(p));
        assert_eq!("jsonl=/tmp/a=b.jsonl".parse(), jsonl("/tmp/a=b.jsonl"));
        assert_eq!("/tmp/samples.jsonl".parse(), jsonl("/tmp/samples.jsonl"));
        assert_eq!("./out/x=1.jsonl".parse(), jsonl("./out/x=1.jsonl"), "a path whose `=` follows a non-kind");
        for bad in ["", "jsonl=", "kafka=broker:9092", "out=1.jsonl"] {
            let error = bad.parse::<Destination>().unwrap_err().to_string();
            assert!(error.contains("jsonl="), "{bad:?}: {error}");
        }
    }
}
