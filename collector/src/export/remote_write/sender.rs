//! The sender task of one receiver: reads the disk queue in order, a window at a time, has the shards deliver
//! each window, and acknowledges the window in the queue once every shard has delivered (or had refused) its part.
//!
//! It stops when told to, after the requests in flight; what it has not acknowledged stays in the queue for the
//! next start. Failures of the queue itself (a segment that cannot be read, a cursor that cannot be written on a
//! full disk) never stop it: it says so once, waits, and goes on.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use roster::{
    backoff::{BackoffPolicy, Delays},
    error_chain::chain,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    client::Receiver,
    shards::{Limits, Window},
    stats::RemoteWriteStats,
};
use crate::{
    defaults,
    disk_queue::{QueueError, QueueReader, Record},
};

/// What the task needs.
pub(crate) struct Sender {
    pub(crate) reader: QueueReader,
    pub(crate) receiver: Receiver,
    pub(crate) limits: Limits,
    /// Samples taken from the queue per window, at least (a window holds whole records).
    pub(crate) window_samples: usize,
    /// How long to wait after a failure of the queue.
    pub(crate) backoff: BackoffPolicy,
    pub(crate) stats: Arc<RemoteWriteStats>,
    pub(crate) stop: CancellationToken,
}

impl Sender {
    /// Runs until `stop` fires.
    pub(crate) async fn run(mut self) {
        let mut window = Window::new(self.limits);
        // Reading and acknowledging fail and recover apart (a full disk fails the cursor, not the reads).
        let mut reading = Failing { what: "read", delays: self.backoff.delays(), times: 0 };
        let mut acking = Failing { what: "acknowledge", delays: self.backoff.delays(), times: 0 };
        loop {
            let read = tokio::select! {
                () = self.stop.cancelled() => break,
                read = self.reader.next() => read,
            };
            let mut through = match read {
                Ok((id, record)) => {
                    reading.ok();
                    self.take(&mut window, &record);
                    id
                }
                Err(e) => {
                    let delay = reading.failed(&e);
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            while window.samples() < self.window_samples {
                match self.reader.try_next() {
                    Ok(Some((id, record))) => {
                        self.take(&mut window, &record);
                        through = id;
                    }
                    Ok(None) => break,
                    // Sent with what it has; the record that failed is read again next time.
                    Err(e) => {
                        let _ = reading.failed(&e);
                        break;
                    }
                }
            }
            if window.send(&self.receiver, &self.stop).await.is_err() {
                break;
            }
            // A failed acknowledgement is made good by the next one, which covers this window too.
            match self.reader.ack(through) {
                Ok(()) => acking.ok(),
                Err(e) => {
                    let _ = acking.failed(&e);
                }
            }
        }
        info!("remote-write sender stopped; what is not acknowledged stays queued");
    }

    /// Adds a record's series to the window, but for samples older than the queue's age bound (the queue drops
    /// a record only when all of it is), which are dropped and counted as too old; a record that is not a request
    /// is dropped, counted as damaged.
    fn take(&self, window: &mut Window, record: &Record) {
        match window.push(&record.payload, self.reader.oldest_allowed_ms()) {
            Ok(0) => {}
            Ok(too_old) => {
                self.stats.queue.dropped_too_old.fetch_add(u64::from(too_old), Ordering::Relaxed);
                debug!(samples = too_old, "queued samples older than the age bound: dropped");
            }
            Err(e) => {
                self.stats.damaged(record.samples);
                warn!(error = %e, samples = record.samples, "remote-write record damaged: dropped");
            }
        }
    }
}

/// Failures of one use of the queue in a row: logged at the first and at the recovery, not in between.
#[derive(Debug)]
struct Failing {
    what: &'static str,
    delays: Delays,
    times: u32,
}

impl Failing {
    fn ok(&mut self) {
        if self.times > 0 {
            info!(failures = self.times, "remote-write queue: can {} again", self.what);
        }
        self.times = 0;
        self.delays.reset();
    }

    /// Counts a failure; how long to wait before trying again.
    fn failed(&mut self, error: &QueueError) -> Duration {
        if self.times == 0 {
            let what = self.what;
            warn!(error = %chain(error), "remote-write queue: cannot {what}; trying again (logged once till it works)");
        }
        self.times = self.times.saturating_add(1);
        self.delays.next().unwrap_or(defaults::REMOTE_WRITE_BACKOFF.cap)
    }
}
