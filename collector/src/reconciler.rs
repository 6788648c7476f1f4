//! Applies a snapshot to the running collection tasks, touching only what changed (C6).
//!
//! A producer whose entry is unchanged keeps its task, and so its timer; a changed one is restarted, its new task
//! going on from the series the old one wrote (as a Prometheus reload does: those no longer written end at the
//! new task's first collection, the others go on unbroken); a removed
//! one is retired (its task ends the producer's series in the background and then stops; a producer that comes
//! back first stops it, without markers). After the snapshot in force at start (C5: applied before any server
//! answers), its task applies each snapshot the follower applies, the latest first if several came meanwhile.
//!
//! A task starts at its producer's offset within the interval ([`first_delay`]): the producer is collected when
//! the wall clock modulo its interval reaches that offset, which a hash of the collector and the producer fixes,
//! as Prometheus fixes each target's phase. So a large snapshot does not make every producer fire at once, and a
//! restarted collector collects each producer at the same phase as before.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use roster::{
    domain::{Collection, CollectorId, ProducerId, Target},
    follower::assembler::Snapshot,
    transport::ClientTls,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span};
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    metrics::ScrapeMetrics,
    producer_task::{ProducerStats, ScrapeKit, TaskHandle},
    scrape::prometheus::staleness::Tracker,
    sink::Sink,
};

/// What a producer's status shows.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    /// What is collected.
    pub(crate) target: Target,
    /// Which task incarnation.
    pub(crate) incarnation: u64,
    /// Its counters.
    pub(crate) stats: Arc<Mutex<ProducerStats>>,
}

/// The running tasks, readable by the status service.
pub(crate) type TaskViews = Arc<Mutex<BTreeMap<ProducerId, TaskView>>>;

/// What one reconciliation did (for its log line).
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    /// Tasks kept as they were.
    kept: usize,
    /// Tasks started for new producers.
    started: usize,
    /// Tasks restarted because the entry changed.
    restarted: usize,
    /// Tasks stopped for removed producers.
    stopped: usize,
}

/// Owns the collection tasks.
#[derive(Debug)]
pub(crate) struct Reconciler {
    collector: CollectorId,
    kit: ScrapeKit,
    sink: Sink,
    metrics: ScrapeMetrics,
    tasks: BTreeMap<ProducerId, TaskHandle>,
    /// Tasks of removed producers, ending their series.
    retiring: BTreeMap<ProducerId, TaskHandle>,
    views: TaskViews,
}

impl Reconciler {
    /// No tasks yet; the tasks will hand their samples to `sink`, count their scrapes in `metrics`, and call gRPC
    /// producers over TLS with `producer_tls` when given.
    pub(crate) fn new(
        collector: CollectorId,
        sink: Sink,
        metrics: ScrapeMetrics,
        producer_tls: Option<ClientTls>,
    ) -> Self {
        Self {
            collector,
            kit: ScrapeKit::new(collector, producer_tls),
            sink,
            metrics,
            tasks: BTreeMap::new(),
            retiring: BTreeMap::new(),
            views: TaskViews::default(),
        }
    }

    /// The running tasks, for the status service.
    pub(crate) fn views(&self) -> TaskViews {
        self.views.clone()
    }

    /// Starts `target`'s task, going on from what the task it replaces `handed` over.
    fn spawn(&self, target: Target, handed: Option<Tracker>) -> TaskHandle {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let delay = first_delay(self.collector, &target, now);
        TaskHandle::start(target, &self.kit, self.sink.clone(), delay, handed, &self.metrics)
    }

    /// Applies the snapshot in force now (C5: the persisted one, before any server answers), then spawns the task
    /// that applies every later one from `applied` until `stop`, and then stops every task (after collections in
    /// flight).
    pub(crate) async fn start(
        mut self,
        mut applied: watch::Receiver<Option<Arc<Snapshot>>>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let span = info_span!("reconciler", collector.id = %self.collector);
        let now = applied.borrow_and_update().clone();
        if let Some(snapshot) = now {
            self.apply(&snapshot).instrument(span.clone()).await;
        }
        tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        changed = applied.changed() => {
                            if changed.is_err() {
                                break;
                            }
                            let snapshot = applied.borrow_and_update().clone();
                            if let Some(snapshot) = snapshot {
                                self.apply(&snapshot).await;
                            }
                        }
                    }
                }
                self.stop_all().await;
            }
            .instrument(span),
        )
    }

    /// Makes the running tasks match `snapshot`.
    async fn apply(&mut self, snapshot: &Snapshot) {
        let mut summary = Summary::default();
        let wanted: HashSet<ProducerId> = snapshot.targets.iter().map(|t| t.id).collect();
        let mut stopping = Vec::new();
        self.retiring.retain(|_, task| !task.is_finished());
        for id in self.tasks.keys().copied().filter(|id| !wanted.contains(id)).collect::<Vec<_>>() {
            if let Some(task) = self.tasks.remove(&id) {
                task.retire();
                self.retiring.insert(id, task);
                summary.stopped += 1;
            }
        }
        // A producer back before its series were ended: they go on, so they are not ended.
        for target in &snapshot.targets {
            if let Some(task) = self.retiring.remove(&target.id) {
                stopping.push(task);
            }
        }
        let mut restarting = Vec::new();
        for target in &snapshot.targets {
            match self.tasks.get(&target.id) {
                Some(task) if task.target == *target => summary.kept += 1,
                Some(_) => {
                    if let Some(old) = self.tasks.remove(&target.id) {
                        restarting.push((old, target.clone()));
                    }
                    summary.restarted += 1;
                }
                None => {
                    self.tasks.insert(target.id, self.spawn(target.clone(), None));
                    summary.started += 1;
                }
            }
        }
        self.publish_views();
        // Stop concurrently: each waits only for its own collection in flight. A changed entry's new task starts
        // once its old one has stopped, from the series the old one handed over (its first collection is at its
        // phase, whenever it starts).
        let stops: Vec<_> = stopping.into_iter().map(|t| tokio::spawn(t.stop())).collect();
        let (old, changed): (Vec<_>, Vec<_>) = restarting.into_iter().unzip();
        let handovers: Vec<_> = old.into_iter().map(|t| tokio::spawn(t.stop())).collect();
        for stop in stops {
            let _ = stop.await;
        }
        for (handover, target) in handovers.into_iter().zip(changed) {
            let handed = handover.await.ok().flatten();
            self.tasks.insert(target.id, self.spawn(target, handed));
        }
        self.publish_views();
        info!(
            generation = snapshot.generation,
            kept = summary.kept,
            started = summary.started,
            restarted = summary.restarted,
            stopped = summary.stopped,
            "collection tasks reconciled"
        );
    }

    fn publish_views(&self) {
        let views = self
            .tasks
            .iter()
            .map(|(id, t)| {
                (*id, TaskView { target: t.target.clone(), incarnation: t.incarnation, stats: t.stats.clone() })
            })
            .collect();
        if let Ok(mut shared) = self.views.lock() {
            *shared = views;
        }
    }

    /// Stops every task (after collections in flight), retiring ones included: a collector that shuts down ends
    /// no series, as Prometheus does not (it "will restart where it was").
    async fn stop_all(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        let retiring = std::mem::take(&mut self.retiring);
        self.publish_views();
        let stops: Vec<_> = tasks.into_values().chain(retiring.into_values()).map(|t| tokio::spawn(t.stop())).collect();
        for stop in stops {
            let _ = stop.await;
        }
    }
}

/// How long after `now` (since the Unix epoch) the first collection of `target` by `collector` is due: at the
/// next instant whose time modulo the interval is the target's offset, within (0, interval].
///
/// Prometheus's rule (`Target.offset` in prometheus/prometheus `scrape/target.go`), with roster's names: the
/// offset is a hash of the producer (its id and the URL collected) mixed with a hash of the collector (as Prometheus mixes
/// in its host name and external labels), so it is stable across restarts and differs between collectors.
fn first_delay(collector: CollectorId, target: &Target, now: Duration) -> Duration {
    let interval = u64::try_from(target.interval.as_nanos()).unwrap_or(u64::MAX).max(1);
    let url = match &target.collection {
        Collection::Grpc => target.address.to_uri(),
        Collection::Prometheus(prometheus) => prometheus.url(&target.address),
    };
    let mut producer = target.id.to_string().into_bytes();
    producer.push(0xff);
    producer.extend_from_slice(url.as_bytes());
    let hash = xxh3_64(&producer) ^ xxh3_64(collector.to_string().as_bytes());
    let now = u64::try_from(now.as_nanos() % u128::from(interval)).unwrap_or(0);
    let base = interval - now;
    let offset = hash % interval;
    let next = base + offset;
    Duration::from_nanos(if next > interval { next - interval } else { next })
}

#[cfg(test)]
mod tests {
    use roster::domain::{Labels, ProducerAddress};

    use super::*;

    fn target(interval: Duration) -> Target {
        Target {
            id: ProducerId::new_random(),
            address: ProducerAddress::parse_field("address", "127.0.0.1:9100").unwrap(),
            interval,
            labels: Labels::default(),
            collection: Collection::Grpc,
        }
    }

    #[test]
    fn the_first_collection_lands_on_the_same_phase_of_the_interval_whenever_the_collector_starts() {
        let collector = CollectorId::new_random();
        let producer = target(Duration::from_secs(10));
        let interval = producer.interval.as_nanos();
        let phase = |now: Duration| (now + first_delay(collector, &producer, now)).as_nanos() % interval;
        let start = Duration::from_secs(1_700_000_000);
        let first = phase(start);
        for later in [1, 999_999_999, 3_000_000_000, 9_999_999_999, 86_400_000_000_123] {
            let now = start + Duration::from_nanos(later);
            let delay = first_delay(collector, &producer, now);
            assert!(delay > Duration::ZERO && delay <= producer.interval, "{delay:?}");
            assert_eq!(phase(now), first, "a restart {later} ns later keeps the phase");
        }
        // Another collector, or another producer, lands elsewhere (a 64-bit hash: equal only by a 1e-10 chance).
        let other = first_delay(CollectorId::new_random(), &producer, start);
        assert_ne!((start + other).as_nanos() % interval, first);
        let spread: HashSet<u128> = (0..100)
            .map(|_| {
                let producer = target(Duration::from_secs(10));
                (start + first_delay(collector, &producer, start)).as_nanos() % interval
            })
            .collect();
        assert_eq!(spread.len(), 100, "producers are spread over the interval");
    }
}
