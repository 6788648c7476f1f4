//! Where producer tasks hand their samples: a bounded queue that never blocks, in front of one [`Exporter`].
//!
//! Producer tasks hand batches to the queue without waiting (`try_send`): when the queue is full the batch is
//! dropped and counted, so a slow or failing destination never blocks collection or the feed. One writer task
//! drains the queue into the exporter, flushes it whenever the queue runs empty, and counts and logs failed
//! batches (the exporter recovers for the next one) instead of failing. On shutdown it writes what is queued and
//! shuts the exporter down.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use roster::error_chain::chain;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{Instrument as _, error, info, info_span};

use crate::{defaults, export::Exporter, sample::Sample};

/// Counters of the sink.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    /// Samples written.
    pub(crate) written: AtomicU64,
    /// Samples dropped (queue full, or a failed write).
    pub(crate) dropped: AtomicU64,
    /// The last write error, if the last write failed.
    pub(crate) last_error: Mutex<Option<String>>,
}

/// The producer tasks' side of the sink.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: mpsc::Sender<Vec<Sample>>,
    stats: Arc<SinkStats>,
}

impl Sink {
    /// Starts the writer, exporting through `exporter`. Drop every [`Sink`] clone, then await the handle, to flush
    /// and stop.
    pub(crate) fn start(exporter: impl Exporter) -> (Self, Arc<SinkStats>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(defaults::SINK_QUEUE_BATCHES);
        let stats = Arc::new(SinkStats::default());
        let span = info_span!("sink", exporter = %exporter);
        let writer = tokio::spawn(write_loop(exporter, rx, stats.clone()).instrument(span));
        (Self { tx, stats: stats.clone() }, stats, writer)
    }

    /// Queues a batch without waiting; drops (and counts) it when the queue is full.
    pub(crate) fn push(&self, batch: Vec<Sample>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn write_loop<E: Exporter>(mut exporter: E, mut rx: mpsc::Receiver<Vec<Sample>>, stats: Arc<SinkStats>) {
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let result = match exporter.export(batch).await {
            Ok(()) if rx.is_empty() => exporter.flush().await,
            exported => exported,
        };
        match result {
            Ok(()) => {
                stats.written.fetch_add(n, Ordering::Relaxed);
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = None;
                }
            }
            Err(e) => {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                let e = chain(&e).to_string();
                error!(error = %e, "sink write failed; samples dropped, trying again with the next batch");
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some(e);
                }
            }
        }
    }
    if let Err(e) = exporter.shutdown().await {
        error!(error = %chain(&e), "sink flush failed at shutdown");
    }
    info!(written = stats.written.load(Ordering::Relaxed), "sink flushed and closed");
}
