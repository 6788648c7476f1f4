//! The registry actor: the one owner of the registry state, the store (any [`Store`]) and the feed publishers.
//!
//! RPC handlers talk to it through a cloneable [`RegistryHandle`]. The actor takes whatever commands are
//! waiting (up to [`MAX_BATCH`]), applies them to the in-memory [`State`], commits everything they changed in
//! one store transaction (group commit: concurrent registrations share one fsync), and only then answers the
//! callers and publishes new snapshots. A failed commit reloads the state from the store, so memory never holds
//! what the disk does not, and every caller of that batch gets `UNAVAILABLE`.
//!
//! Each collector's feed is a `tokio::sync::watch` channel of its latest committed generation, [`Published`]: the
//! collector's assignment as the state holds it, a persistent map, so publishing is a pointer copy whatever the
//! size of the assignment. A stream that is ready to send takes the latest one and builds its snapshot itself,
//! outside the actor, once per generation sent (shared by every stream of that collector). So a slow reader only
//! ever gets the newest snapshot (S4 coalescing), the actor never waits on any reader nor builds any snapshot, and
//! a burst of changes costs one snapshot build per generation actually sent, not one per change.
//!
//! The actor also keeps the server's metrics ([`ServerMetrics`]): it counts registrations, lease expiries and store
//! commits once their batch is committed, and copies every collector's figures there at start and after each sweep.

pub(crate) mod absence;
pub(crate) mod state;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use roster::{
    domain::{ApplyReport, CollectorId, PinChange, ProducerId, ProducerQuery, Registration, WatchParams},
    error_chain::chain,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use self::state::{Changes, CollectorView, ProducerPage, Registered, Rules, State};
use crate::{
    clock::Clock,
    error::Error,
    feed::snapshot::{ChunkLimits, Published},
    metrics::ServerMetrics,
    records::{Liveness, ProducerRecord},
    store::{Store, StoreError},
};

/// Most commands applied in one batch (one transaction).
pub(crate) const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a new feed stream gets from the registry.
#[derive(Debug)]
pub(crate) struct Attached {
    /// The collector's current generation and assignment; changes whenever a new one is committed.
    pub versions: watch::Receiver<Arc<Published>>,
    /// C4: the current generation, if the collector rejected it (it is not resent). `None` for an observer.
    pub rejected: Option<u64>,
    /// Marks the stream closed when dropped; `None` for an observe-only stream, which never marked it open.
    pub guard: Option<AttachGuard>,
}

/// Marks a collector's stream closed when dropped, so liveness is right however the stream ends.
#[derive(Debug)]
pub(crate) struct AttachGuard {
    collector: CollectorId,
    instance: Option<uuid::Uuid>,
    tx: mpsc::UnboundedSender<Command>,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        // The actor outlives every stream (it stops only when all senders, these included, are gone).
        let _ = self.tx.send(Command::Detach(self.collector, self.instance));
    }
}

#[derive(Debug)]
enum Command {
    Register(Registration, Reply<Registered>),
    Deregister(ProducerId, Reply<bool>),
    SetPin(PinChange, Reply<(ProducerRecord, bool)>),
    Forget(CollectorId, Reply<bool>),
    ListProducers(ProducerQuery, Reply<ProducerPage>),
    GetProducer(ProducerId, Reply<Option<ProducerRecord>>),
    ListCollectors(Reply<Vec<CollectorView>>),
    Attach(WatchParams, Reply<Attached>),
    Detach(CollectorId, Option<uuid::Uuid>),
    Report(ApplyReport, Reply<bool>),
    Sweep,
}

/// Who opened a feed stream.
#[derive(Debug, Clone, Copy)]
enum StreamKind {
    /// An observer (`observe_only`): it changes nothing and is not marked live.
    Observer,
    /// The collector itself, with its process's instance id if it gave one.
    Collector { instance: Option<uuid::Uuid> },
}

/// Answers computed while applying a batch, sent once the batch is committed.
enum Pending {
    Register(Reply<Registered>, Registered),
    Deregister(Reply<bool>, bool),
    SetPin(Reply<(ProducerRecord, bool)>, Result<(ProducerRecord, bool), Error>),
    ListProducers(Reply<ProducerPage>, Result<ProducerPage, Error>),
    GetProducer(Reply<Option<ProducerRecord>>, Option<ProducerRecord>),
    ListCollectors(Reply<Vec<CollectorView>>, Vec<CollectorView>),
    Forget(Reply<bool>, Result<bool, Error>),
    /// A stream of the collector, or of an observer of a known one.
    Attach(Reply<Attached>, CollectorId, StreamKind),
    Refused(Reply<Attached>, Error),
    Report(Reply<bool>, Result<bool, Error>),
}

/// A cheap, cloneable way to talk to the registry actor.
#[derive(Debug, Clone)]
pub(crate) struct RegistryHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl RegistryHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Registers or renews a producer; returns once it is on disk.
    pub(crate) async fn register(&self, registration: Registration) -> Result<Registered, Error> {
        self.call(|r| Command::Register(registration, r)).await
    }

    /// Deregisters a producer; returns whether it existed.
    pub(crate) async fn deregister(&self, id: ProducerId) -> Result<bool, Error> {
        self.call(|r| Command::Deregister(id, r)).await
    }

    /// Sets or clears a producer's operator pin; returns the record and whether the pin changed, once it is on
    /// disk. [`Error::UnknownProducer`] when the producer is not registered.
    pub(crate) async fn set_pin(&self, change: PinChange) -> Result<(ProducerRecord, bool), Error> {
        self.call(|r| Command::SetPin(change, r)).await
    }

    /// One page of producers.
    pub(crate) async fn list_producers(&self, query: ProducerQuery) -> Result<ProducerPage, Error> {
        self.call(|r| Command::ListProducers(query, r)).await
    }

    /// One producer, if registered.
    pub(crate) async fn get_producer(&self, id: ProducerId) -> Result<Option<ProducerRecord>, Error> {
        self.call(|r| Command::GetProducer(id, r)).await
    }

    /// Every known collector.
    pub(crate) async fn list_collectors(&self) -> Result<Vec<CollectorView>, Error> {
        self.call(Command::ListCollectors).await
    }

    /// Forgets a departed collector; returns whether it was known. [`Error::NotDeparted`] when it is live or in
    /// grace.
    pub(crate) async fn forget(&self, id: CollectorId) -> Result<bool, Error> {
        self.call(|r| Command::Forget(id, r)).await
    }

    /// Opens a feed stream for a collector (marks it live), or, with `params.observe`, an observer's stream of a
    /// known collector (changes nothing).
    ///
    /// # Errors
    /// [`Error::ObserveUnknown`] for an observer of an unknown collector; [`Error::DuplicateInstance`] when
    /// another process's streams of that collector are open.
    pub(crate) async fn attach(&self, params: WatchParams) -> Result<Attached, Error> {
        self.call(|r| Command::Attach(params, r)).await
    }

    /// Records a collector's report.
    pub(crate) async fn report(&self, report: ApplyReport) -> Result<bool, Error> {
        self.call(|r| Command::Report(report, r)).await
    }
}

/// Settings of the registry actor.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    /// Lease and grace rules.
    pub rules: Rules,
    /// How often leases and grace periods are checked.
    pub sweep_interval: Duration,
    /// Lateness of the periodic work that counts as the server's own absence (see [`absence`]).
    pub absence_threshold: Duration,
    /// Chunk bounds of snapshots.
    pub chunk_limits: ChunkLimits,
}

/// The actor. Build it with [`Registry::start`], run it with [`Registry::run`].
pub(crate) struct Registry {
    state: State,
    store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RegistryConfig,
    /// What the actor counts, and where it copies the collectors' figures.
    metrics: ServerMetrics,
    /// Each watched collector's latest committed generation.
    feeds: HashMap<CollectorId, watch::Sender<Arc<Published>>>,
    /// Set after a failed commit: the stored assignment must be recomputed for the live collectors.
    needs_recompute: bool,
    /// The clocks when the actor last woke, to measure the server's own absence.
    last_wake: absence::Reading,
    /// Taken (and kept only as a weak sender) when the actor runs.
    tx: Option<mpsc::UnboundedSender<Command>>,
    rx: mpsc::UnboundedReceiver<Command>,
}

impl Registry {
    /// Loads the store, applies the start-up rules (L3 lease floor, grace for known collectors) and commits
    /// them. Returns the actor and a handle to it. The actor counts into `metrics`.
    ///
    /// # Errors
    /// When the store cannot be read or the start-up changes cannot be written.
    pub(crate) async fn start(
        store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
        config: RegistryConfig,
        metrics: ServerMetrics,
    ) -> Result<(Self, RegistryHandle), StoreError> {
        let loaded = store.load().await?;
        let now = clock.now_ms();
        let (producers, collectors) = (loaded.producers.len(), loaded.collectors.len());
        let (mut state, changes) = State::from_loaded(loaded, config.rules, now);
        let (batch, _) = state.finish(changes);
        store.commit(&batch).await?;
        metrics.collectors_seen(&state.list_collectors(now));
        info!(
            epoch = %state.epoch(),
            producers,
            collectors,
            leases_extended = batch.upsert_producers.len(),
            settling = state.settling(),
            "registry loaded"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = RegistryHandle { tx: tx.clone() };
        Ok((
            Self {
                state,
                last_wake: absence::Reading { monotonic_ms: clock.monotonic_ms(), wall_ms: clock.now_ms() },
                store,
                clock,
                config,
                metrics,
                feeds: HashMap::new(),
                needs_recompute: false,
                tx: Some(tx),
                rx,
            },
            handle,
        ))
    }

    /// The store's epoch.
    pub(crate) fn epoch(&self) -> uuid::Uuid {
        self.state.epoch()
    }

    /// Runs, in a `registry` span, until every handle and stream guard is gone. Sweeps leases and grace periods
    /// every `sweep_interval` until `shutdown` is cancelled (no lease lapses while the server drains).
    ///
    /// The span has no fields: the epoch is logged where it matters ("registry loaded", "store settled"), and a
    /// batch mixes many collectors and producers, named in each event.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.serve(shutdown).instrument(info_span!("registry")).await;
    }

    async fn serve(mut self, shutdown: CancellationToken) {
        // The actor keeps only a weak sender (to make stream guards), so the channel closes, and the actor stops,
        // once the last handle and guard are gone.
        let Some(own_tx) = self.tx.take().map(|tx| tx.downgrade()) else { return };
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let first = tokio::select! {
                command = self.rx.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                _ = tick.tick(), if !shutdown.is_cancelled() => Command::Sweep,
            };
            let mut commands = vec![first];
            while commands.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            self.process(commands, &own_tx, !shutdown.is_cancelled()).await;
        }
        self.store.close().await;
        info!("registry stopped");
    }

    /// Applies one batch of commands. `sweeping` is false while the server drains: the actor then no longer
    /// wakes on its own, so a long gap between wakes is not an absence.
    async fn process(&mut self, commands: Vec<Command>, own_tx: &mpsc::WeakUnboundedSender<Command>, sweeping: bool) {
        let now = self.clock.now_ms();
        let mut changes = Changes::default();
        let wake = absence::Reading { monotonic_ms: self.clock.monotonic_ms(), wall_ms: now };
        let last_wake = std::mem::replace(&mut self.last_wake, wake);
        // Before any command (a sweep in particular): time the server could not serve is charged to no one.
        let verdict = absence::judge(last_wake, wake, self.config.sweep_interval, self.config.absence_threshold);
        if sweeping && verdict.absent_ms > 0 {
            let extended = self.state.forgive_absence(verdict.absent_ms, now, &mut changes);
            warn!(
                absent_ms = verdict.absent_ms,
                wall_clock_stepped = verdict.wall_step_forward,
                leases_extended = extended,
                settles_at_ms = self.state.settles_at_ms(),
                "the server could not serve for a while (stalled, paused or its wall clock stepped ahead); \
                 that time is not charged to any lease or grace period (L3)"
            );
        }
        if sweeping && verdict.stepped_back_ms > 0 {
            let clamped = self.state.clamp_deadlines(now, &mut changes);
            warn!(
                stepped_back_ms = verdict.stepped_back_ms,
                leases_clamped = clamped,
                "the wall clock stepped back; deadlines are capped at their length from now"
            );
        }
        if std::mem::take(&mut self.needs_recompute) {
            self.state.force_recompute(&mut changes);
        }
        let mut pending = Vec::with_capacity(commands.len());
        let mut forgotten = Vec::new();
        let (mut swept, mut lapsed_count) = (false, 0);
        for command in commands {
            match command {
                Command::Register(registration, reply) => {
                    let registered = self.state.register(registration, now, &mut changes);
                    pending.push(Pending::Register(reply, registered));
                }
                Command::Deregister(id, reply) => {
                    let existed = self.state.deregister(id, &mut changes);
                    pending.push(Pending::Deregister(reply, existed));
                }
                Command::SetPin(change, reply) => {
                    let result = self
                        .state
                        .set_operator_pin(change, &mut changes)
                        .ok_or(Error::UnknownProducer(change.producer));
                    pending.push(Pending::SetPin(reply, result));
                }
                Command::ListProducers(query, reply) => {
                    // An empty list for a collector the server does not know would be trusted as "collect nothing"
                    // (the seed's failure): it is NOT_FOUND instead.
                    let page = match query.collector {
                        Some(c) if self.state.collector(c).is_none() => Err(Error::UnknownCollector(c)),
                        _ => Ok(self.state.list_producers(&query)),
                    };
                    pending.push(Pending::ListProducers(reply, page));
                }
                Command::GetProducer(id, reply) => {
                    pending.push(Pending::GetProducer(reply, self.state.producer(id).cloned()));
                }
                Command::ListCollectors(reply) => {
                    pending.push(Pending::ListCollectors(reply, self.state.list_collectors(now)));
                }
                Command::Attach(params, reply) if params.observe => {
                    // Observing changes nothing: no liveness, no record, no assignment.
                    if self.state.collector(params.collector).is_some() {
                        pending.push(Pending::Attach(reply, params.collector, StreamKind::Observer));
                    } else {
                        pending.push(Pending::Refused(reply, Error::ObserveUnknown(params.collector)));
                    }
                }
                Command::Attach(params, reply) => {
                    let attached = self.state.attach(
                        params.collector,
                        params.known,
                        params.instance,
                        params.supported_kinds,
                        now,
                        &mut changes,
                    );
                    match attached {
                        Ok(created) => {
                            if created {
                                info!(collector.id = %params.collector, kinds = %params.supported_kinds.names(), "collector joined");
                            }
                            pending.push(Pending::Attach(
                                reply,
                                params.collector,
                                StreamKind::Collector { instance: params.instance },
                            ));
                        }
                        Err(conflict) => {
                            error!(
                                collector.id = %conflict.collector,
                                running = %conflict.running,
                                refused = %conflict.refused,
                                "two collector processes use one collector id (a copied data directory?): the newer \
                                 one's feed stream is refused; give it a new id"
                            );
                            let refused = Error::DuplicateInstance {
                                collector: conflict.collector,
                                running: conflict.running,
                                refused: conflict.refused,
                            };
                            pending.push(Pending::Refused(reply, refused));
                        }
                    }
                }
                Command::Forget(id, reply) => {
                    let result = match self.state.forget(id, &mut changes) {
                        Ok(existed) => {
                            if existed {
                                forgotten.push(id);
                            }
                            Ok(existed)
                        }
                        Err(liveness) => Err(Error::not_departed(id, liveness, now)),
                    };
                    pending.push(Pending::Forget(reply, result));
                }
                Command::Detach(id, instance) => {
                    self.state.detach(id, instance, now);
                    if self.state.collector(id).is_some_and(|c| matches!(c.liveness, Liveness::Grace { .. })) {
                        info!(collector.id = %id, grace_s = self.config.rules.grace.as_secs(), "collector's last stream closed; in grace");
                    }
                }
                Command::Report(report, reply) => {
                    let collector = report.collector;
                    let result = self.state.report(report, now, &mut changes).ok_or(Error::UnknownCollector(collector));
                    pending.push(Pending::Report(reply, result));
                }
                Command::Sweep => {
                    let was_settling = self.state.settling();
                    let (lapsed, departed) = self.state.sweep(now, &mut changes);
                    (swept, lapsed_count) = (true, lapsed_count + lapsed.len());
                    for id in lapsed {
                        info!(producer.id = %id, "producer lease lapsed; removed");
                    }
                    for id in departed {
                        info!(collector.id = %id, "collector's grace period ended; its producers move");
                    }
                    for id in self.state.forget_departed(now, &mut changes) {
                        info!(
                            collector.id = %id,
                            forget_after_s = self.config.rules.forget_after.as_secs(),
                            "collector departed longer than --forget-after; forgotten"
                        );
                        forgotten.push(id);
                    }
                    if was_settling && !self.state.settling() {
                        info!(epoch = %self.state.epoch(), "store settled: it has served one settle period since it was created; producers that did not register again are dropped");
                    }
                }
            }
        }
        let (batch, dirty) = self.state.finish(changes);
        let started = Instant::now();
        let committed = self.store.commit(&batch).await;
        if !batch.is_empty() {
            self.metrics.committed(started.elapsed(), committed.is_ok());
        }
        match &committed {
            Ok(()) => {
                self.metrics.leases_expired(lapsed_count);
                for id in forgotten {
                    // Its feed goes with it: a collector that comes back under this id is a new record starting at
                    // generation 1, and must not be served the old ones. Observers still watching it see their
                    // stream end.
                    self.feeds.remove(&id);
                }
                for id in &dirty {
                    let generation = self.state.collector(*id).map_or(0, |c| c.generation);
                    let producers = self.state.assigned_count(*id);
                    info!(collector.id = %id, generation, producers, "assignment changed; new generation");
                    if let Some(feed) = self.feeds.get(id) {
                        feed.send_replace(publish(&self.state, *id, self.config.chunk_limits));
                    }
                }
            }
            Err(e) => {
                error!(error = %chain(e), "store commit failed; the batch is dropped and the state reloaded from the store");
                match self.store.load().await {
                    Ok(loaded) => {
                        self.state.reload(loaded, now);
                        self.needs_recompute = true;
                    }
                    Err(e) => {
                        error!(error = %chain(&e), "reloading the store failed too; serving the last committed snapshots")
                    }
                }
            }
        }
        if swept {
            self.metrics.collectors_seen(&self.state.list_collectors(now));
        }
        let store_error = committed.err().map(|e| Error::Store(Arc::new(e)));
        for p in pending {
            match p {
                Pending::Register(reply, value) => {
                    if store_error.is_none() {
                        self.metrics.registered(value.created);
                    }
                    send(reply, answer(value, &store_error));
                }
                Pending::Deregister(reply, value) => send(reply, answer(value, &store_error)),
                Pending::SetPin(reply, value) => send(reply, answer(value, &store_error).and_then(|v| v)),
                Pending::ListProducers(reply, value) => send(reply, answer(value, &store_error).and_then(|v| v)),
                Pending::GetProducer(reply, value) => send(reply, answer(value, &store_error)),
                Pending::ListCollectors(reply, value) => send(reply, answer(value, &store_error)),
                Pending::Forget(reply, value) => send(reply, answer(value, &store_error).and_then(|v| v)),
                Pending::Refused(reply, error) => send(reply, Err(error)),
                Pending::Report(reply, value) => send(reply, answer(value, &store_error).and_then(|v| v)),
                Pending::Attach(reply, collector, kind) => {
                    // The caller holds a handle while it waits, so the channel is open and this upgrades.
                    let Some(tx) = own_tx.upgrade() else { continue };
                    if matches!(kind, StreamKind::Observer) && self.state.collector(collector).is_none() {
                        // Forgotten later in the same batch: nothing to observe.
                        send(reply, Err(Error::ObserveUnknown(collector)));
                        continue;
                    }
                    // Liveness is kept even when the batch failed; the state was then reloaded, so what it holds is
                    // the last committed generation.
                    let (state, limits) = (&self.state, self.config.chunk_limits);
                    let versions = self
                        .feeds
                        .entry(collector)
                        .or_insert_with(|| watch::channel(publish(state, collector, limits)).0)
                        .subscribe();
                    let attached = match kind {
                        StreamKind::Observer => Attached { versions, rejected: None, guard: None },
                        StreamKind::Collector { instance } => Attached {
                            versions,
                            rejected: self.state.rejected_current(collector),
                            guard: Some(AttachGuard { collector, instance, tx }),
                        },
                    };
                    // If the caller went away, the unsent guard is dropped here and closes the stream again.
                    let _ = reply.send(Ok(attached));
                }
            }
        }
    }
}

/// `collector`'s assignment as `state` holds it now, at its current generation, to be published: O(1), the
/// assignment is shared with the state.
fn publish(state: &State, collector: CollectorId, limits: ChunkLimits) -> Arc<Published> {
    let generation = state.collector(collector).map_or(1, |c| c.generation);
    Arc::new(Published::new(state.epoch(), generation, state.settling(), state.assignment(collector), limits))
}

/// The answer to a command of a batch: its value, or the batch's store failure.
fn answer<T>(value: T, store_error: &Option<Error>) -> Result<T, Error> {
    store_error.clone().map_or(Ok(value), Err)
}

fn send<T>(reply: Reply<T>, value: Result<T, Error>) {
    if reply.send(value).is_err() {
        warn!("a caller went away before its answer was ready");
    }
}
