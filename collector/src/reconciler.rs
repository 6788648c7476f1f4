//! Applies a snapshot to the running collection tasks, touching only what changed (C6).
//!
//! A producer whose entry is unchanged keeps its task, and so its timer; a changed one is restarted; a removed
//! one is stopped after any collection in flight; a new one starts at a random offset within its interval, so
//! a large snapshot does not make every producer fire at once. After the snapshot in force at start (C5: applied
//! before any server answers), its task applies each snapshot the follower applies, the latest first if several
//! came meanwhile.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::Rng as _;
use roster::{
    domain::{CollectorId, ProducerId, Target},
    follower::assembler::Snapshot,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span};

use crate::{
    metrics::ScrapeMetrics,
    producer_task::{ProducerStats, TaskHandle},
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
    sink: Sink,
    metrics: ScrapeMetrics,
    tasks: BTreeMap<ProducerId, TaskHandle>,
    views: TaskViews,
}

impl Reconciler {
    /// No tasks yet; the tasks will hand their samples to `sink` and count their scrapes in `metrics`.
    pub(crate) fn new(collector: CollectorId, sink: Sink, metrics: ScrapeMetrics) -> Self {
        Self { collector, sink, metrics, tasks: BTreeMap::new(), views: TaskViews::default() }
    }

    /// The running tasks, for the status service.
    pub(crate) fn views(&self) -> TaskViews {
        self.views.clone()
    }

    fn spawn(&self, target: Target) -> TaskHandle {
        let offset = Duration::from_nanos(rand::rng().random_range(0..=target.interval.as_nanos().max(1) as u64));
        TaskHandle::start(target, self.collector, self.sink.clone(), offset, &self.metrics)
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
        for id in self.tasks.keys().copied().filter(|id| !wanted.contains(id)).collect::<Vec<_>>() {
            if let Some(task) = self.tasks.remove(&id) {
                stopping.push(task);
                summary.stopped += 1;
            }
        }
        for target in &snapshot.targets {
            match self.tasks.get(&target.id) {
                Some(task) if task.target == *target => summary.kept += 1,
                Some(_) => {
                    if let Some(old) = self.tasks.remove(&target.id) {
                        stopping.push(old);
                    }
                    self.tasks.insert(target.id, self.spawn(target.clone()));
                    summary.restarted += 1;
                }
                None => {
                    self.tasks.insert(target.id, self.spawn(target.clone()));
                    summary.started += 1;
                }
            }
        }
        self.publish_views();
        // Stop concurrently: each waits only for its own collection in flight.
        let stops: Vec<_> = stopping.into_iter().map(|t| tokio::spawn(t.stop())).collect();
        for stop in stops {
            let _ = stop.await;
        }
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

    /// Stops every task (after collections in flight).
    async fn stop_all(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.publish_views();
        let stops: Vec<_> = tasks.into_values().map(|t| tokio::spawn(t.stop())).collect();
        for stop in stops {
            let _ = stop.await;
        }
    }
}
