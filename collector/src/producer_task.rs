//! One collection task per producer, as a handle and an actor (after omicron's oximeter).
//!
//! The actor owns the schedule and the counters; its [`Scraper`] owns the protocol. Every interval the actor
//! scrapes with a deadline below the interval, hands the samples to the sink, and keeps per-producer counters.
//! Missed ticks are skipped, not bunched: a slow producer is collected at most once per interval. Each task has
//! its own scraper and timer, so no producer can delay another. The handle stops the actor through a oneshot; a
//! collection in flight finishes first (C6).
//!
//! A collection's deadline bounds how long a producer can take. One that ends far past it ([`OWN_STALL`] beyond)
//! means this collector was not running (stopped, paused, starved): the time is its own, so a timeout then is
//! not the producer's failure and no tick of the producer's counts as skipped. Such collections are counted apart
//! (`own_stalls`), and the next tick collects as usual.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use roster::{
    domain::{CollectorId, Target},
    error_chain::chain,
    follower::now_ms,
};
use tokio::{sync::oneshot, task::JoinHandle, time::MissedTickBehavior};
use tracing::{Instrument as _, debug, info_span, warn};

use crate::{
    defaults,
    metrics::{KindMetrics, Outcome, ScrapeMetrics},
    scrape::{ScrapeError, Scraper, grpc::GrpcScraper},
    sink::Sink,
};

/// Counters of one producer's collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStats {
    /// Successful collections.
    pub(crate) collections: u64,
    /// Failed collections.
    pub(crate) failures: u64,
    /// Last success (Unix ms).
    pub(crate) last_success_ms: u64,
    /// Last failure (Unix ms).
    pub(crate) last_failure_ms: u64,
    /// The last failure's cause.
    pub(crate) last_error: String,
    /// Ticks skipped because a collection overran its interval.
    pub(crate) skipped_ticks: u64,
    /// Collections that ended far past their deadline because this collector was not running.
    pub(crate) own_stalls: u64,
}

/// How far past its deadline a collection may end before the time is taken for this collector's own stall: a
/// running tokio timer fires within milliseconds of its deadline.
const OWN_STALL: Duration = Duration::from_secs(1);

/// Numbers the task incarnations of one collector process.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

/// The handle of a running collection task.
#[derive(Debug)]
pub(crate) struct TaskHandle {
    /// What it collects.
    pub(crate) target: Target,
    /// Which incarnation it is (changes only on restart).
    pub(crate) incarnation: u64,
    /// Its counters.
    pub(crate) stats: Arc<Mutex<ProducerStats>>,
    stop: oneshot::Sender<()>,
    join: JoinHandle<()>,
}

impl TaskHandle {
    /// Starts collecting `target` for `collector`, first after `first_delay`, with the scraper its kind calls for.
    /// This is the one place a scraper is chosen: every producer serves `roster.v1.Producer` today, and another
    /// kind of producer gets its arm here.
    /// Its scrapes are counted in `metrics`, under its kind.
    pub(crate) fn start(
        target: Target,
        collector: CollectorId,
        sink: Sink,
        first_delay: Duration,
        metrics: &ScrapeMetrics,
    ) -> Self {
        let deadline = collect_timeout(target.interval);
        let scraper = GrpcScraper::new(&target, collector, deadline);
        let metrics = metrics.for_kind(target.collection.kind());
        Self::spawn(scraper, target, sink, first_delay, metrics)
    }

    /// Spawns the actor of `target` around `scraper` (or the reason there is none).
    fn spawn<S: Scraper>(
        scraper: Result<S, ScrapeError>,
        target: Target,
        sink: Sink,
        first_delay: Duration,
        metrics: KindMetrics,
    ) -> Self {
        let stats = Arc::new(Mutex::new(ProducerStats::default()));
        let (stop, stopped) = oneshot::channel();
        let incarnation = INCARNATIONS.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("producer", producer.id = %target.id, address = %target.address);
        let actor = Actor { interval: target.interval, sink, stats: stats.clone(), metrics };
        let join = tokio::spawn(actor.run(scraper, first_delay, stopped).instrument(span));
        Self { target, incarnation, stats, stop, join }
    }

    /// Stops the task after any collection in flight, and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.join.await;
    }
}

/// The deadline of one collection: 80 % of the interval, at most [`defaults::COLLECT_TIMEOUT_MAX`].
fn collect_timeout(interval: Duration) -> Duration {
    interval.mul_f64(0.8).min(defaults::COLLECT_TIMEOUT_MAX)
}

/// The task's side: the schedule and the counters.
struct Actor {
    interval: Duration,
    sink: Sink,
    stats: Arc<Mutex<ProducerStats>>,
    metrics: KindMetrics,
}

impl Actor {
    async fn run<S: Scraper>(
        self,
        scraper: Result<S, ScrapeError>,
        first_delay: Duration,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut scraper = match scraper {
            Ok(scraper) => scraper,
            Err(e) => {
                // Nothing can be collected from it: say why once, and wait to be stopped.
                self.record_failure(&e);
                let _ = stop.await;
                return;
            }
        };
        // Each collection is bounded once, here, by `tokio::time::timeout` (which also covers connecting).
        let timeout = collect_timeout(self.interval);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first_delay, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = ticks.tick() => {}
            }
            let started = tokio::time::Instant::now();
            let result = tokio::time::timeout(timeout, scraper.scrape()).await;
            let took = started.elapsed();
            self.metrics.scraped(Outcome::of(&result, own_stall(took, timeout)), took);
            match result {
                Ok(Ok(samples)) => {
                    self.sink.push(samples);
                    if let Ok(mut stats) = self.stats.lock() {
                        stats.collections += 1;
                        stats.last_success_ms = now_ms();
                    }
                }
                Ok(Err(e)) => self.record_failure(&e),
                Err(_) if own_stall(took, timeout) => {}
                Err(_) => self.record_failure(&ScrapeError::Timeout(timeout)),
            }
            if own_stall(took, timeout) {
                warn!(
                    took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    "a collection ended far past its deadline: this collector was not running (stopped, paused or \
                     starved); not counted against the producer"
                );
                if let Ok(mut stats) = self.stats.lock() {
                    stats.own_stalls += 1;
                }
            } else if took > self.interval {
                let skipped = (took.as_nanos() / self.interval.as_nanos().max(1)) as u64;
                if let Ok(mut stats) = self.stats.lock() {
                    stats.skipped_ticks += skipped;
                }
            }
        }
        debug!("collection task stopped");
    }

    fn record_failure(&self, error: &ScrapeError) {
        let error = chain(error).to_string();
        debug!(error, "collection failed");
        if let Ok(mut stats) = self.stats.lock() {
            stats.failures += 1;
            stats.last_failure_ms = now_ms();
            stats.last_error = error;
        }
    }
}

/// Whether a collection that took `took` against a deadline of `timeout` was cut by this collector's own stall.
fn own_stall(took: Duration, timeout: Duration) -> bool {
    took > timeout + OWN_STALL
}
