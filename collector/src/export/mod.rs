//! Where samples go once they leave the sink's queue: the exporter interface.
//!
//! The [`sink`](crate::sink) owns the bounded queue that producer tasks hand batches to without waiting, and the
//! one writer task that drains it; an [`Exporter`] is what that task writes through. Each kind of destination has
//! its exporter in a file of its own here.
//!
//! | destination | exporter |
//! |---|---|
//! | JSON lines in a file | [`jsonl::JsonLines`] |
//! | Prometheus remote-write 1.0, through a queue on disk | [`remote_write::RemoteWrite`] |
//!
//! An exporter is called by one task, one batch at a time, so it may keep state (an open file, a connection, a
//! queue of its own) without locking. It may take its time: the queue in front of it absorbs the wait, and drops
//! (and counts) what does not fit, so collection never waits for an exporter. One whose destination is remote
//! and may be down keeps its own queue behind [`Exporter::export`], which then returns once a batch is queued
//! there, not once it is delivered.

pub(crate) mod jsonl;
#[cfg_attr(not(test), expect(dead_code, reason = "the lead's `--sink remote-write=...` wiring is its user"))]
pub(crate) mod remote_write;

use std::{fmt::Display, future::Future};

use crate::sample::Sample;

/// Writes batches of samples to one destination. Its `Display` names the destination (for logs and spans).
pub(crate) trait Exporter: Display + Send + 'static {
    /// Why a batch could not be written. Its `Display` follows roster's rule (see [`roster::error_chain`]).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Takes one batch. On an error the batch is counted as dropped; the exporter recovers by itself (reopens,
    /// reconnects) for the next one.
    fn export(&mut self, batch: Vec<Sample>) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes what was exported so far reach its destination (called whenever the queue runs empty). An error
    /// counts the last batch as dropped.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Flushes and releases the destination, once the queue is drained at shutdown.
    fn shutdown(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
