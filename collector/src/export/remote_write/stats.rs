//! What one remote-write receiver's sender has done, for the collector's status and metrics: counters the
//! sender adds to, read at any time by anyone holding the [`Arc`].

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::defaults;

/// The reason under which refusals are counted once [`defaults::REMOTE_WRITE_MAX_REASONS`] distinct ones are.
pub(crate) const OTHER_REASONS: &str = "other refusals";

/// Counters of one receiver.
#[derive(Debug, Default)]
pub(crate) struct RemoteWriteStats {
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
}

impl RemoteWriteStats {
    /// Fresh counters, healthy.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { healthy: AtomicBool::new(true), ..Self::default() })
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
        let stats = RemoteWriteStats::new();
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
        let stats = RemoteWriteStats::new();
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
}
