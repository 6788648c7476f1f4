//! What one remote-write receiver's sender has done, for the collector's status and metrics: counters the
//! sender adds to, read at any time by anyone holding the [`Arc`].

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::{defaults, disk_queue::QueueStats};

/// The reason under which refusals are counted once [`defaults::REMOTE_WRITE_MAX_REASONS`] distinct ones are.
pub(crate) const OTHER_REASONS: &str = "other refusals";

/// The reasons under which the queue's drops are counted.
pub(crate) const QUEUE_FULL: &str = "queue full";
pub(crate) const TOO_OLD: &str = "too old";
pub(crate) const DAMAGED: &str = "damaged";

/// Counters of one receiver.
#[derive(Debug, Default)]
pub(crate) struct RemoteWriteStats {
    /// The receiver's disk queue: what waits (bytes, records, samples, oldest sample) and what its bounds dropped.
    pub(crate) queue: Arc<QueueStats>,
    /// Samples the receiver acknowledged (2xx).
    pub(crate) samples_sent: AtomicU64,
    /// Requests the receiver acknowledged.
    pub(crate) requests_sent: AtomicU64,
    /// Attempts that failed and were tried again (5xx, 429, network errors, timeouts).
    pub(crate) requests_retried: AtomicU64,
    /// Samples in those attempts.
    pub(crate) samples_retried: AtomicU64,
    /// Whether the last attempt succeeded (starts true: nothing has failed yet).
    healthy: AtomicBool,
    /// Samples the receiver refused for good (4xx other than 429), by its reason: `<status> <first line of its
    /// answer>`. At most [`defaults::REMOTE_WRITE_MAX_REASONS`] reasons; later new ones count under
    /// [`OTHER_REASONS`].
    refused: Mutex<BTreeMap<String, u64>>,
    /// The last failure, if the last attempt failed.
    last_error: Mutex<Option<String>>,
    /// Samples of queued records that checked out on disk but are not remote-write requests.
    damaged: AtomicU64,
}

impl RemoteWriteStats {
    /// Fresh counters, healthy, beside the queue's.
    pub(crate) fn new(queue: Arc<QueueStats>) -> Arc<Self> {
        Arc::new(Self { queue, healthy: AtomicBool::new(true), ..Self::default() })
    }

    /// Whether the last attempt succeeded (or none has been made).
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The last failure, while the receiver is unhealthy.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }

    /// Samples refused for good, by reason.
    pub(crate) fn refused(&self) -> BTreeMap<String, u64> {
        self.refused.lock().map(|refused| refused.clone()).unwrap_or_default()
    }

    /// Every sample dropped, by reason: the receiver's refusals ([`Self::refused`]) and the queue's drops,
    /// [`QUEUE_FULL`], [`TOO_OLD`] and [`DAMAGED`] (those with a count).
    pub(crate) fn dropped(&self) -> BTreeMap<String, u64> {
        let mut dropped = self.refused();
        let damaged = self.queue.dropped_damaged.load(Ordering::Relaxed) + self.damaged.load(Ordering::Relaxed);
        for (reason, count) in [
            (QUEUE_FULL, self.queue.dropped_full.load(Ordering::Relaxed)),
            (TOO_OLD, self.queue.dropped_too_old.load(Ordering::Relaxed)),
            (DAMAGED, damaged),
        ] {
            if count > 0 {
                *dropped.entry(reason.to_owned()).or_default() += count;
            }
        }
        dropped
    }

    /// A queued record of `samples` turned out not to be a remote-write request.
    pub(crate) fn damaged(&self, samples: u32) {
        self.damaged.fetch_add(u64::from(samples), Ordering::Relaxed);
    }

    /// A request of `samples` was acknowledged. True if the receiver was unhealthy until now.
    pub(crate) fn delivered(&self, samples: u32) -> bool {
        self.samples_sent.fetch_add(u64::from(samples), Ordering::Relaxed);
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        self.set_error(None)
    }

    /// A request of `samples` failed with `error` and will be tried again. True if the receiver was healthy until
    /// now.
    pub(crate) fn retrying(&self, samples: u32, error: String) -> bool {
        self.requests_retried.fetch_add(1, Ordering::Relaxed);
        self.samples_retried.fetch_add(u64::from(samples), Ordering::Relaxed);
        !self.set_error(Some(error))
    }

    /// A request of `samples` was refused for good with `reason`. True if the reason is new (to be logged once).
    /// A refusal is an answer: the receiver is up, so it counts as healthy.
    pub(crate) fn refused_for(&self, samples: u32, reason: &str) -> bool {
        self.set_error(None);
        let Ok(mut refused) = self.refused.lock() else { return false };
        if let Some(count) = refused.get_mut(reason) {
            *count += u64::from(samples);
            return false;
        }
        let full = refused.len() >= defaults::REMOTE_WRITE_MAX_REASONS;
        let key = if full { OTHER_REASONS } else { reason };
        *refused.entry(key.to_owned()).or_default() += u64::from(samples);
        !full
    }

    /// Sets the health from `error`; true if it was unhealthy before.
    fn set_error(&self, error: Option<String>) -> bool {
        let healthy = error.is_none();
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
        !self.healthy.swap(healthy, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_last_attempt_and_transitions_are_reported_once() {
        let stats = RemoteWriteStats::new(Arc::default());
        assert!(stats.healthy());
        assert!(stats.retrying(3, "503".into()), "healthy to failing");
        assert!(!stats.retrying(3, "timeout".into()), "still failing");
        assert_eq!((stats.healthy(), stats.last_error().as_deref()), (false, Some("timeout")));
        assert!(stats.delivered(3), "failing to healthy");
        assert!(!stats.delivered(1));
        assert_eq!((stats.healthy(), stats.last_error()), (true, None));
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 4);
        assert_eq!(stats.samples_retried.load(Ordering::Relaxed), 6);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn refusals_count_by_reason_each_new_one_once_and_the_reasons_are_bounded() {
        let stats = RemoteWriteStats::new(Arc::default());
        assert!(stats.refused_for(2, "400 out of order sample"));
        assert!(!stats.refused_for(3, "400 out of order sample"));
        for n in 1..defaults::REMOTE_WRITE_MAX_REASONS {
            assert!(stats.refused_for(1, &format!("400 reason {n}")));
        }
        assert!(!stats.refused_for(7, "400 one too many"), "not logged: counted with the other refusals");
        assert!(!stats.refused_for(1, "400 yet another"));
        let refused = stats.refused();
        assert_eq!(refused["400 out of order sample"], 5);
        assert_eq!(refused[OTHER_REASONS], 8);
        assert_eq!(refused.len(), defaults::REMOTE_WRITE_MAX_REASONS + 1);
    }

    #[test]
    fn dropped_adds_the_queues_drops_to_the_refusals() {
        let stats = RemoteWriteStats::new(Arc::default());
        assert!(stats.dropped().is_empty());
        stats.refused_for(2, "400 out of bounds");
        stats.queue.dropped_full.store(5, Ordering::Relaxed);
        stats.queue.dropped_damaged.store(1, Ordering::Relaxed);
        stats.damaged(3);
        let dropped = stats.dropped();
        let expected = [("400 out of bounds", 2), (DAMAGED, 4), (QUEUE_FULL, 5)];
        assert_eq!(dropped, expected.map(|(r, n)| (r.to_owned(), n)).into_iter().collect());
    }
}
