//! Where producer tasks hand their samples: one bounded queue that never blocks per destination, each in front of
//! one [`Exporter`].
//!
//! A collector writes to one or more destinations (`--sink`, repeatable). Producer tasks hand each batch to every
//! destination's queue without waiting (`try_send`; the batch is shared, not copied): when a queue is full the
//! batch is dropped for that destination only and counted there, so a slow or failing destination never blocks
//! collection, the feed or the other destinations. One writer task per destination drains its queue into its
//! exporter, flushes it when the queue runs empty but at most every [`SINK_FLUSH_EVERY`](defaults::SINK_FLUSH_EVERY)
//! (what waits is flushed when that time is up), and counts and logs failed batches (the exporter recovers
//! for the next one) instead of failing. On shutdown each writes what is queued and shuts its exporter down.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use roster::error_chain::chain;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tracing::{Instrument as _, error, info, info_span};

use crate::{
    defaults,
    export::{Exporter, remote_write::stats::RemoteWriteStats},
    sample::Sample,
};

/// A batch of samples, shared by every destination's queue.
type Batch = Arc<Vec<Sample>>;

/// Counters of one destination.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    /// Samples the exporter took (written, or queued by an exporter with a queue of its own).
    pub(crate) written: AtomicU64,
    /// Samples dropped (queue full, or a failed write).
    pub(crate) dropped: AtomicU64,
    /// Batches in the queue now.
    pub(crate) queued: AtomicU64,
    /// The last write error, if the last write failed.
    pub(crate) last_error: Mutex<Option<String>>,
}

/// One destination, as the status API and the metrics show it.
#[derive(Debug, Clone)]
pub(crate) struct SinkView {
    /// Its kind ([`Exporter::KIND`]).
    pub(crate) kind: &'static str,
    /// Where it writes (the exporter's `Display`).
    pub(crate) destination: String,
    /// Its counters.
    pub(crate) stats: Arc<SinkStats>,
    /// A remote-write receiver's own counters, and its disk queue's.
    pub(crate) remote: Option<Arc<RemoteWriteStats>>,
}

impl SinkView {
    /// As the status API shows it.
    pub(crate) fn status(&self) -> roster::pb::SinkStatus {
        let status = roster::pb::SinkStatus {
            kind: self.kind.to_owned(),
            destination: self.destination.clone(),
            samples_written: self.stats.written.load(Ordering::Relaxed),
            samples_dropped: self.stats.dropped.load(Ordering::Relaxed),
            last_error: self.stats.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default(),
            ..Default::default()
        };
        let Some(remote) = &self.remote else { return status };
        let queue = &remote.queue;
        roster::pb::SinkStatus {
            samples_sent: remote.samples_sent.load(Ordering::Relaxed),
            requests_retried: remote.requests_retried.load(Ordering::Relaxed),
            samples_discarded: remote.dropped().into_iter().collect(),
            queue_bytes: queue.bytes.load(Ordering::Relaxed),
            queue_samples: queue.samples.load(Ordering::Relaxed),
            oldest_queued_sample_unix_ms: u64::try_from(queue.oldest_sample_ms.load(Ordering::Relaxed)).unwrap_or(0),
            healthy: remote.healthy(),
            receiver_error: remote.last_error().unwrap_or_default(),
            ..status
        }
    }
}

/// One destination's queue.
#[derive(Debug)]
struct Output {
    tx: mpsc::Sender<Batch>,
    stats: Arc<SinkStats>,
}

/// The producer tasks' side of the sink.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    outputs: Arc<[Output]>,
}

/// A started sink: the producer tasks' side, a view of each destination, and the writers.
pub(crate) type Started = (Sink, Vec<SinkView>, Vec<JoinHandle<()>>);

/// Starts the writers of a [`Sink`], one destination at a time.
#[derive(Debug, Default)]
pub(crate) struct SinkBuilder {
    outputs: Vec<Output>,
    views: Vec<SinkView>,
    writers: Vec<JoinHandle<()>>,
}

impl SinkBuilder {
    /// Starts a writer exporting through `exporter`; `remote` is a remote-write exporter's own counters.
    pub(crate) fn add<E: Exporter>(mut self, exporter: E, remote: Option<Arc<RemoteWriteStats>>) -> Self {
        let (tx, rx) = mpsc::channel(defaults::SINK_QUEUE_BATCHES);
        let stats = Arc::new(SinkStats::default());
        let destination = exporter.to_string();
        let span = info_span!("sink", exporter = %destination);
        self.writers.push(tokio::spawn(write_loop(exporter, rx, stats.clone()).instrument(span)));
        self.views.push(SinkView { kind: E::KIND, destination, stats: stats.clone(), remote });
        self.outputs.push(Output { tx, stats });
        self
    }

    /// The sink, a view of each destination in the order added, and the writers: drop every [`Sink`] clone, then
    /// await the writers, to flush and stop.
    pub(crate) fn build(self) -> Started {
        (Sink { outputs: self.outputs.into() }, self.views, self.writers)
    }
}

impl Sink {
    /// A sink with one destination, for tests (the collector uses [`SinkBuilder`]).
    #[cfg(test)]
    pub(crate) fn start(exporter: impl Exporter) -> (Self, Arc<SinkStats>, JoinHandle<()>) {
        let (sink, mut views, mut writers) = SinkBuilder::default().add(exporter, None).build();
        let (Some(view), Some(writer)) = (views.pop(), writers.pop()) else { unreachable!("one destination added") };
        (sink, view.stats, writer)
    }

    /// Queues a batch for every destination without waiting; a destination whose queue is full drops (and
    /// counts) it.
    pub(crate) fn push(&self, batch: Vec<Sample>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let batch = Arc::new(batch);
        for output in self.outputs.iter() {
            // Counted before it is sent, so the writer never takes a batch not yet counted.
            output.stats.queued.fetch_add(1, Ordering::Relaxed);
            if output.tx.try_send(batch.clone()).is_err() {
                output.stats.queued.fetch_sub(1, Ordering::Relaxed);
                output.stats.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// What the writer does next.
enum Step {
    Export(Batch),
    Flush,
    Stop,
}

async fn write_loop<E: Exporter>(mut exporter: E, mut rx: mpsc::Receiver<Batch>, stats: Arc<SinkStats>) {
    // Samples exported since the last flush: written once a flush succeeds, dropped if it fails.
    let mut unflushed = 0;
    let mut flushed_at = Instant::now().checked_sub(defaults::SINK_FLUSH_EVERY).unwrap_or_else(Instant::now);
    loop {
        let step = if unflushed == 0 {
            rx.recv().await.map_or(Step::Stop, Step::Export)
        } else {
            tokio::select! {
                batch = rx.recv() => batch.map_or(Step::Stop, Step::Export),
                () = tokio::time::sleep_until(flushed_at + defaults::SINK_FLUSH_EVERY) => Step::Flush,
            }
        };
        match step {
            Step::Export(batch) => {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                let n = batch.len() as u64;
                match exporter.export(&batch).await {
                    Ok(()) => unflushed += n,
                    Err(e) => failed(&stats, n, &e),
                }
                drop(batch);
                if unflushed > 0 && rx.is_empty() && flushed_at.elapsed() >= defaults::SINK_FLUSH_EVERY {
                    let flushed = exporter.flush().await;
                    counted(&stats, std::mem::take(&mut unflushed), flushed);
                    flushed_at = Instant::now();
                }
            }
            Step::Flush => {
                let flushed = exporter.flush().await;
                counted(&stats, std::mem::take(&mut unflushed), flushed);
                flushed_at = Instant::now();
            }
            Step::Stop => break,
        }
    }
    let flushed = exporter.shutdown().await;
    counted(&stats, unflushed, flushed);
    info!(written = stats.written.load(Ordering::Relaxed), "sink flushed and closed");
}

/// Counts the `n` samples of a flush: written (clearing the last error, if any were), or dropped with the error.
fn counted<E: std::error::Error + 'static>(stats: &SinkStats, n: u64, flushed: Result<(), E>) {
    match flushed {
        Ok(()) if n == 0 => {}
        Ok(()) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
            if let Ok(mut last) = stats.last_error.lock() {
                *last = None;
            }
        }
        Err(e) => failed(stats, n, &e),
    }
}

/// Counts `n` samples dropped by `error`, and shows it until a write succeeds.
fn failed<E: std::error::Error + 'static>(stats: &SinkStats, n: u64, error: &E) {
    stats.dropped.fetch_add(n, Ordering::Relaxed);
    let error = chain(error).to_string();
    error!(error = %error, "sink write failed; samples dropped, trying again with the next batch");
    if let Ok(mut last) = stats.last_error.lock() {
        *last = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, fmt, io, time::Duration};

    use tokio::sync::Semaphore;

    use super::*;

    /// An exporter that takes a batch only when `gate` lets it, and fails the batches `failures` says.
    #[derive(Debug)]
    struct Scripted {
        gate: Arc<Semaphore>,
        failures: VecDeque<bool>,
        exported: Arc<Mutex<Vec<usize>>>,
        shut_down: Arc<AtomicU64>,
        flushes: Arc<AtomicU64>,
    }

    impl Scripted {
        fn new(gate: &Arc<Semaphore>, failures: &[bool]) -> (Self, Arc<Mutex<Vec<usize>>>, Arc<AtomicU64>) {
            let exported = Arc::new(Mutex::new(Vec::new()));
            let shut_down = Arc::new(AtomicU64::new(0));
            let scripted = Self {
                gate: gate.clone(),
                failures: failures.iter().copied().collect(),
                exported: exported.clone(),
                shut_down: shut_down.clone(),
                flushes: Arc::default(),
            };
            (scripted, exported, shut_down)
        }
    }

    impl fmt::Display for Scripted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("scripted")
        }
    }

    impl Exporter for Scripted {
        type Error = io::Error;

        const KIND: &'static str = "scripted";

        async fn export(&mut self, batch: &[Sample]) -> io::Result<()> {
            self.gate.acquire().await.map_err(io::Error::other)?.forget();
            if self.failures.pop_front().unwrap_or(false) {
                return Err(io::Error::other("refused"));
            }
            self.exported.lock().unwrap().push(batch.len());
            Ok(())
        }

        async fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        async fn shutdown(self) -> io::Result<()> {
            self.shut_down.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn batch(n: usize) -> Vec<Sample> {
        let sample =
            Sample { time_ms: 1, producer_id: "p".into(), name: "up".into(), labels: Default::default(), value: 1.0 };
        vec![sample; n]
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_batches_without_waiting_for_the_exporter() {
        let gate = Arc::new(Semaphore::new(0));
        let (exporter, exported, shut_down) = Scripted::new(&gate, &[]);
        let (sink, stats, writer) = Sink::start(exporter);
        // The writer cannot run in between (one thread, no await): the queue takes exactly its bound.
        for _ in 0..defaults::SINK_QUEUE_BATCHES + 10 {
            sink.push(batch(2));
        }
        sink.push(Vec::new());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 20, "ten batches of two did not fit");
        assert_eq!(stats.queued.load(Ordering::Relaxed), defaults::SINK_QUEUE_BATCHES as u64, "the queue is full");
        assert_eq!(stats.written.load(Ordering::Relaxed), 0, "the exporter has taken nothing yet");

        gate.add_permits(Semaphore::MAX_PERMITS);
        drop(sink);
        writer.await.unwrap();
        assert_eq!(*exported.lock().unwrap(), vec![2; defaults::SINK_QUEUE_BATCHES], "every queued batch, in order");
        assert_eq!(stats.written.load(Ordering::Relaxed), 2 * defaults::SINK_QUEUE_BATCHES as u64);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0, "the queue drained");
        assert_eq!(shut_down.load(Ordering::Relaxed), 1, "shut down once, after the queue drained");
    }

    #[tokio::test]
    async fn a_failed_batch_is_counted_and_shown_until_a_later_one_succeeds() {
        let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        let (exporter, exported, _) = Scripted::new(&gate, &[true]);
        let (sink, stats, writer) = Sink::start(exporter);
        sink.push(batch(2));
        drop(sink);
        writer.await.unwrap();
        assert_eq!((stats.written.load(Ordering::Relaxed), stats.dropped.load(Ordering::Relaxed)), (0, 2));
        assert_eq!(stats.last_error.lock().unwrap().as_deref(), Some("refused"));
        assert!(exported.lock().unwrap().is_empty());

        let (exporter, exported, _) = Scripted::new(&gate, &[true, false]);
        let (sink, stats, writer) = Sink::start(exporter);
        sink.push(batch(2));
        sink.push(batch(3));
        drop(sink);
        writer.await.unwrap();
        assert_eq!((stats.written.load(Ordering::Relaxed), stats.dropped.load(Ordering::Relaxed)), (3, 2));
        assert_eq!(*stats.last_error.lock().unwrap(), None, "the error is cleared by the next success");
        assert_eq!(*exported.lock().unwrap(), vec![3]);
    }

    /// Lets the writer task run until it waits again (the test runtime has one thread; time is paused).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_is_flushed_when_its_queue_runs_empty_at_most_every_interval_and_when_that_time_is_up() {
        let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        let (exporter, _, _) = Scripted::new(&gate, &[]);
        let flushes = exporter.flushes.clone();
        let (sink, stats, writer) = Sink::start(exporter);
        let seen = || (flushes.load(Ordering::Relaxed), stats.written.load(Ordering::Relaxed));

        sink.push(batch(2));
        settle().await;
        assert_eq!(seen(), (1, 2), "the first batch is flushed at once, and counted written then");
        sink.push(batch(3));
        settle().await;
        assert_eq!(seen(), (1, 2), "the next one waits: the last flush was less than an interval ago");
        tokio::time::sleep(defaults::SINK_FLUSH_EVERY - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(seen(), (1, 2));
        tokio::time::sleep(Duration::from_millis(2)).await;
        settle().await;
        assert_eq!(seen(), (2, 5), "flushed when the interval was up, with nothing more arriving");

        tokio::time::sleep(defaults::SINK_FLUSH_EVERY * 3).await;
        sink.push(batch(1));
        settle().await;
        assert_eq!(seen(), (3, 6), "after a quiet interval, at once again");
        drop(sink);
        writer.await.unwrap();
        assert_eq!(seen(), (3, 6), "nothing left for the shutdown");
    }
}
