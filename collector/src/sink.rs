//! Where samples go: JSON lines appended to a file, one sample a line.
//!
//! Producer tasks hand batches to a bounded queue without waiting (`try_send`): when the queue is full the
//! batch is dropped and counted, so a slow or failing disk never blocks collection or the feed. One writer task
//! drains the queue into a buffered file, flushes whenever the queue runs empty, and counts and logs write
//! errors (reopening the file on the next batch) instead of failing. On shutdown it writes what is queued and
//! flushes.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    fs::OpenOptions,
    io::{AsyncWriteExt as _, BufWriter},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{error, info};

/// One sample, ready to write.
#[derive(Debug, Clone)]
pub struct SampleLine {
    /// When it was observed (Unix ms).
    pub time_ms: u64,
    /// The producer it came from.
    pub producer_id: String,
    /// Metric name.
    pub name: String,
    /// Labels (the producer's registered labels win over the sample's own).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Counters of the sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Samples written.
    pub written: AtomicU64,
    /// Samples dropped (queue full, or a failed write).
    pub dropped: AtomicU64,
    /// The last write error, if the last write failed.
    pub last_error: Mutex<Option<String>>,
}

/// Batches queued for the writer, at most.
pub const QUEUE_BATCHES: usize = 1024;

/// The producer tasks' side of the sink.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Vec<SampleLine>>,
    stats: Arc<SinkStats>,
}

impl Sink {
    /// Starts the writer for `path`. Drop every [`Sink`] clone, then await the handle, to flush and stop.
    pub fn start(path: PathBuf) -> (Self, Arc<SinkStats>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let stats = Arc::new(SinkStats::default());
        let writer = tokio::spawn(write_loop(path, rx, stats.clone()));
        (Self { tx, stats: stats.clone() }, stats, writer)
    }

    /// Queues a batch without waiting; drops (and counts) it when the queue is full.
    pub fn push(&self, batch: Vec<SampleLine>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn write_loop(path: PathBuf, mut rx: mpsc::Receiver<Vec<SampleLine>>, stats: Arc<SinkStats>) {
    let mut out: Option<BufWriter<tokio::fs::File>> = None;
    let mut line = Vec::with_capacity(256);
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let result = async {
            if out.is_none() {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                let file = OpenOptions::new().create(true).append(true).open(&path).await?;
                out = Some(BufWriter::new(file));
            }
            let writer = out.as_mut().expect("opened above");
            for sample in &batch {
                line.clear();
                let json = serde_json::json!({
                    "time_unix_ms": sample.time_ms,
                    "producer_id": sample.producer_id,
                    "name": sample.name,
                    "labels": sample.labels,
                    "value": sample.value,
                });
                serde_json::to_writer(&mut line, &json).map_err(std::io::Error::other)?;
                line.push(b'\n');
                writer.write_all(&line).await?;
            }
            if rx.is_empty() {
                writer.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                stats.written.fetch_add(n, Ordering::Relaxed);
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = None;
                }
            }
            Err(e) => {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                error!(path = %path.display(), error = %e, "sink write failed; samples dropped, will reopen");
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some(format!("{}: {e}", path.display()));
                }
                out = None;
            }
        }
    }
    if let Some(mut writer) = out
        && let Err(e) = writer.flush().await
    {
        error!(path = %path.display(), error = %e, "sink flush failed at shutdown");
    }
    info!(path = %path.display(), written = stats.written.load(Ordering::Relaxed), "sink flushed and closed");
}
