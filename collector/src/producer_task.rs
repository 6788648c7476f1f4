//! One collection task per producer, as a handle and an actor (after omicron's oximeter).
//!
//! The actor calls `roster.v1.Producer/Collect` every interval with a deadline below the interval, writes the
//! samples to the sink, and keeps per-producer counters. Missed ticks are skipped, not bunched: a slow producer
//! is collected at most once per interval. Each task has its own channel and timer, so no producer can delay
//! another. The handle stops the actor through a oneshot; a collection in flight finishes first (C6).
//!
//! A collection's deadline bounds how long a producer can take. One that ends far past it ([`OWN_STALL`] beyond)
//! means this collector was not running (stopped, paused, starved): the time is its own, so a timeout then is
//! not the producer's failure and no tick of the producer's counts as skipped. Such collections are counted apart
//! (`own_stalls`), and the next tick collects as usual.

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use roster::{
    domain::{CollectorId, Target},
    pb::{self, producer_client::ProducerClient},
    {error_chain::status_line, follower::now_ms},
};
use tokio::{sync::oneshot, task::JoinHandle, time::MissedTickBehavior};
use tonic::transport::Endpoint;
use tracing::{Instrument as _, debug, info_span, warn};

use crate::sink::{SampleLine, Sink};

/// Counters of one producer's collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Successful collections.
    pub collections: u64,
    /// Failed collections.
    pub failures: u64,
    /// Last success (Unix ms).
    pub last_success_ms: u64,
    /// Last failure (Unix ms).
    pub last_failure_ms: u64,
    /// The last failure's cause.
    pub last_error: String,
    /// Ticks skipped because a collection overran its interval.
    pub skipped_ticks: u64,
    /// Collections that ended far past their deadline because this collector was not running.
    pub own_stalls: u64,
}

/// How far past its deadline a collection may end before the time is taken for this collector's own stall: a
/// running tokio timer fires within milliseconds of its deadline.
pub const OWN_STALL: Duration = Duration::from_secs(1);

/// Numbers the task incarnations of one collector process.
pub static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

/// The handle of a running collection task.
#[derive(Debug)]
pub struct TaskHandle {
    /// What it collects.
    pub target: Target,
    /// Which incarnation it is (changes only on restart).
    pub incarnation: u64,
    /// Its counters.
    pub stats: Arc<Mutex<ProducerStats>>,
    stop: oneshot::Sender<()>,
    join: JoinHandle<()>,
}

impl TaskHandle {
    /// Starts collecting `target`, first after `first_delay`.
    pub fn spawn(target: Target, collector: CollectorId, sink: Sink, first_delay: Duration) -> Self {
        let stats = Arc::new(Mutex::new(ProducerStats::default()));
        let (stop, stopped) = oneshot::channel();
        let incarnation = INCARNATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let span = info_span!("producer", producer.id = %target.id, address = %target.address);
        let join = tokio::spawn(
            collect_loop(target.clone(), collector, sink, stats.clone(), first_delay, stopped).instrument(span),
        );
        Self { target, incarnation, stats, stop, join }
    }

    /// Stops the task after any collection in flight, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.join.await;
    }
}

/// The deadline of one collection: 80 % of the interval, at most 30 s.
pub fn collect_timeout(interval: Duration) -> Duration {
    interval.mul_f64(0.8).min(Duration::from_secs(30))
}

async fn collect_loop(
    target: Target,
    collector: CollectorId,
    sink: Sink,
    stats: Arc<Mutex<ProducerStats>>,
    first_delay: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    // Each collection is bounded once, below, by `tokio::time::timeout` (which also covers connecting).
    let timeout = collect_timeout(target.interval);
    let endpoint = match Endpoint::from_shared(target.address.to_uri()) {
        Ok(e) => e.connect_timeout(timeout).tcp_nodelay(true),
        Err(e) => {
            record_failure(&stats, format!("bad address: {e}"));
            let _ = stop.await;
            return;
        }
    };
    // The channel (a connection and its request buffer, about 10 KB before it connects) is made when the producer
    // is first due, not when the task starts: a snapshot of 20 000 producers does not allocate 20 000 idle
    // channels at once. Once made, it is kept, so every later collection reuses its connection.
    let mut client = None;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first_delay, target.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let request = pb::CollectRequest { collector_id: collector.to_string() };
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        let client = client.get_or_insert_with(|| {
            ProducerClient::new(endpoint.connect_lazy()).max_decoding_message_size(4 * 1024 * 1024)
        });
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(timeout, client.collect(request.clone())).await;
        let now = now_ms();
        match result {
            Ok(Ok(response)) => {
                let samples = response.into_inner().samples;
                let lines = samples
                    .into_iter()
                    .map(|s| {
                        let mut labels = s.labels;
                        labels.extend(target.labels.as_map().iter().map(|(k, v)| (k.clone(), v.clone())));
                        SampleLine {
                            time_ms: if s.timestamp_unix_ms == 0 { now } else { s.timestamp_unix_ms },
                            producer_id: target.id.to_string(),
                            name: s.name,
                            labels,
                            value: s.value,
                        }
                    })
                    .collect();
                sink.push(lines);
                if let Ok(mut stats) = stats.lock() {
                    stats.collections += 1;
                    stats.last_success_ms = now;
                }
            }
            Ok(Err(status)) => record_failure(&stats, status_line(&status)),
            Err(_) if own_stall(started.elapsed(), timeout) => {}
            Err(_) => record_failure(&stats, format!("no answer within {timeout:?}")),
        }
        let took = started.elapsed();
        if own_stall(took, timeout) {
            warn!(
                took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "a collection ended far past its deadline: this collector was not running (stopped, paused or \
                 starved); not counted against the producer"
            );
            if let Ok(mut stats) = stats.lock() {
                stats.own_stalls += 1;
            }
        } else if took > target.interval {
            let skipped = (took.as_nanos() / target.interval.as_nanos().max(1)) as u64;
            if let Ok(mut stats) = stats.lock() {
                stats.skipped_ticks += skipped;
            }
        }
    }
    debug!("collection task stopped");
}

/// Whether a collection that took `took` against a deadline of `timeout` was cut by this collector's own stall.
fn own_stall(took: Duration, timeout: Duration) -> bool {
    took > timeout + OWN_STALL
}

fn record_failure(stats: &Mutex<ProducerStats>, error: String) {
    debug!(error, "collection failed");
    if let Ok(mut stats) = stats.lock() {
        stats.failures += 1;
        stats.last_failure_ms = now_ms();
        stats.last_error = error;
    }
}
