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
//!
//! Replicas sharing a store (docs/DESIGN.md, H1–H6) run this same actor. Each batch begins with the store's write
//! lock and what other replicas committed since (`Store::begin`), which the actor writes into its state and
//! publishes before it decides the batch; between batches it catches up whenever another replica announces a commit
//! (`Store::follow`). Only the replica that leads, as its tick learns under the lock, applies the rules of time.
//! Its own streams are counted in the store per replica, brought back to the streams open here at each tick.

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

use self::state::{CaughtUp, Changes, CollectorView, ProducerPage, Registered, Rules, State};
use crate::{
    clock::Clock,
    error::Error,
    feed::snapshot::{ChunkLimits, Published},
    metrics::ServerMetrics,
    records::{Liveness, ProducerRecord},
    store::{CatchUp, Store, StoreError},
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
    /// The periodic work: leases and grace periods (on the replica that leads), and for replicas the check that
    /// catches up with changes whose notification was lost.
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

/// How long a replica that cannot reach the store it shares keeps its feed streams, as a share of the grace period
/// (L2): a quarter, 15 s by default. A database restart shorter than this ends no stream (nothing can change while
/// no replica reaches the store, so what the streams hold stays true); past it, the replica may be the only one cut
/// off, its snapshots may be stale, and it ends its streams so that their collectors move to a replica that can
/// vouch for its feed, well within the grace period in which nothing moves away from them.
const STORE_OUTAGE_SERVED_SHARE_OF_GRACE: u32 = 4;

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
    /// Feed streams of each collector open on this server, counted as their guards come and go: the truth that the
    /// store's count of this replica's streams is brought back to at each tick, whatever writes failed meanwhile.
    local_streams: HashMap<CollectorId, u32>,
    /// For a store shared by replicas, the revisions other replicas announce; `None` for a store of one server.
    notified: Option<watch::Receiver<u64>>,
    /// When the store last answered (a shared store): see [`STORE_OUTAGE_SERVED_SHARE_OF_GRACE`].
    store_answered: Instant,
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
        let notified = store.follow();
        let (mut state, mut changes) = if notified.is_some() {
            // Replicas share the store: what a single server decides at its start is the leader's (see `State::join`).
            (State::join(loaded, config.rules, now), Changes::default())
        } else {
            State::from_loaded(loaded, config.rules, now)
        };
        // A tick at once: a replica says it is alive before it holds any stream, and if it leads from now, it does
        // at once what a leader does on taking the lead.
        let begun = store.begin(state.replica(), state.revision(), true).await?;
        if let Some(catch_up) = begun.catch_up {
            apply_catch_up(&mut state, catch_up, now);
        }
        if let Some(lead) = begun.lead {
            state.keep_holders(&lead.alive, now, &mut changes);
            if let Some(leaderless_ms) = lead.leaderless_ms {
                state.forgive_absence(leaderless_ms, now, &mut changes);
            }
        }
        let (batch, _) = state.finish(changes);
        let revision = begun.txn.commit(&batch).await?;
        state.set_revision(revision);
        metrics.collectors_seen(&state.list_collectors(now));
        info!(
            epoch = %state.epoch(),
            replica = %state.replica(),
            revision = state.revision(),
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
                local_streams: HashMap::new(),
                notified,
                store_answered: Instant::now(),
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
            // In this order: the tick (once a sweep, so it is never starved), calls, and only then another replica's
            // announcement, since every batch of calls catches up first anyway: a replica busy with calls does not
            // spend its turns on separate catch-ups.
            let first = tokio::select! {
                biased;
                _ = tick.tick(), if !shutdown.is_cancelled() => Command::Sweep,
                command = self.rx.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                () = announced(&mut self.notified) => {
                    self.follow().await;
                    continue;
                }
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
        self.store.close(self.state.replica()).await;
        info!("registry stopped");
    }

    /// Applies one batch of commands. `sweeping` is false while the server drains: the actor then no longer
    /// wakes on its own, so a long gap between wakes is not an absence.
    async fn process(
        &mut self,
        mut commands: Vec<Command>,
        own_tx: &mpsc::WeakUnboundedSender<Command>,
        sweeping: bool,
    ) {
        let now = self.clock.now_ms();
        let mut changes = Changes::default();
        let wake = absence::Reading { monotonic_ms: self.clock.monotonic_ms(), wall_ms: now };
        let tick = commands.iter().any(|c| matches!(c, Command::Sweep));
        // The store's write lock, and what other replicas committed meanwhile: every command below is decided on the
        // store's latest state.
        let begun = match self.store.begin(self.state.replica(), self.state.revision(), tick).await {
            Ok(begun) => begun,
            Err(e) => {
                self.unreachable(commands, e, now);
                return;
            }
        };
        self.store_answered = Instant::now();
        // Calls that came while this replica waited for the store's write lock join the batch: when replicas contend
        // for the lock, a transaction then carries every call waiting, not only those that were waiting when it
        // asked. (The periodic work never comes this way: it is only ever the first command of a batch.)
        while commands.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
        }
        // What other replicas committed is written into the state before anything is decided, and published only
        // once this write's commit returned: a store shared by replicas makes it durable by then (`Txn::commit`).
        let caught_up = begun.catch_up.map(|catch_up| apply_catch_up(&mut self.state, catch_up, now));
        if begun.evicted {
            warn!(
                streams = self.local_streams.values().sum::<u32>(),
                "the other replicas took this one for gone (it could not reach the store in time) and closed its \
                 collectors' streams; ending them here too, so that their collectors come back"
            );
            self.feeds.clear();
        }
        // Only the replica that leads applies the rules of time, and only within this write (see `Begun::lead`).
        let knows_lead = begun.lead.is_some() || tick;
        if knows_lead {
            self.metrics.leads(begun.lead.is_some());
        }
        let lead = begun.lead.filter(|_| sweeping);
        if tick {
            self.state.own_streams(&self.local_streams, now, &mut changes);
        }
        if let Some(lead) = lead.as_ref().filter(|_| tick) {
            for id in self.state.keep_holders(&lead.alive, now, &mut changes) {
                info!(collector.id = %id, "the replica holding this collector's streams is gone; in grace");
            }
            if let Some(leaderless_ms) = lead.leaderless_ms {
                let extended = self.state.forgive_absence(leaderless_ms, now, &mut changes);
                warn!(
                    leaderless_ms,
                    leases_extended = extended,
                    "this replica leads now, after a time when none did; that time is not charged to any lease or \
                     grace period (L3)"
                );
            }
        }
        // Before any command (a sweep in particular): time the server could not serve is charged to no one. The time
        // is judged between the batches that know whether this server leads (every batch of a single server, the
        // ticks of a replica), so that none of it goes unjudged.
        let mut verdict = absence::Verdict::default();
        if knows_lead {
            let last_wake = std::mem::replace(&mut self.last_wake, wake);
            verdict = absence::judge(last_wake, wake, self.config.sweep_interval, self.config.absence_threshold);
        }
        if lead.is_some() && verdict.absent_ms > 0 {
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
        if lead.is_some() && verdict.stepped_back_ms > 0 {
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
                            self.check_known_set(&params, &mut changes);
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
                    self.stream_closed(id);
                    self.state.detach(id, instance, now, &mut changes);
                    if self.state.collector(id).is_some_and(|c| matches!(c.liveness, Liveness::Grace { .. })) {
                        info!(collector.id = %id, grace_s = self.config.rules.grace.as_secs(), "collector's last stream closed; in grace");
                    }
                }
                Command::Report(report, reply) => {
                    let collector = report.collector;
                    let result = self.state.report(report, now, &mut changes).ok_or(Error::UnknownCollector(collector));
                    pending.push(Pending::Report(reply, result));
                }
                // A replica that does not lead leaves the rules of time to the one that does; its figures are
                // still copied to the metrics.
                Command::Sweep if lead.is_none() => swept = true,
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
        // A single server serves a collector that comes back to a feed it already published, and that this batch
        // does not change, before the commit: the stream sends a committed generation either way, and the commit
        // only records the stream, which a single server keeps in memory even when a commit fails (below). So a
        // reconnecting fleet is served without waiting for the disk. A replica must wait: the others learn of the
        // stream from the store.
        if self.notified.is_none() {
            let waiting = std::mem::take(&mut pending);
            for p in waiting {
                match p {
                    Pending::Attach(reply, collector, kind)
                        if self.feeds.contains_key(&collector)
                            && !dirty.contains(&collector)
                            && !forgotten.contains(&collector) =>
                    {
                        self.answer_attach(reply, collector, kind, own_tx);
                    }
                    p => pending.push(p),
                }
            }
        }
        let started = Instant::now();
        let committed = begun.txn.commit(&batch).await;
        if !batch.is_empty() {
            self.metrics.committed(started.elapsed(), committed.is_ok());
        }
        match &committed {
            Ok(revision) => {
                self.state.set_revision(*revision);
                if let Some(caught_up) = caught_up {
                    self.publish_changes(caught_up);
                }
                self.metrics.store_revision(self.state.revision());
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
                        // What the store holds now, other replicas' commits included, is what the feeds serve.
                        let dirty = self
                            .feeds
                            .iter()
                            .filter(|(id, feed)| {
                                self.state.collector(**id).is_some_and(|c| c.generation != feed.borrow().generation)
                            })
                            .map(|(id, _)| *id)
                            .collect();
                        self.publish_changes(CaughtUp { dirty, forgotten: Vec::new() });
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
                    // A single server keeps liveness even when the batch failed (the state was then reloaded, so what
                    // it holds is the last committed generation). A replica must not: the others would not know of
                    // the stream, and it cannot vouch for what it would serve; the collector tries another replica.
                    if self.notified.is_some()
                        && let Some(e) = &store_error
                    {
                        // No stream opens, so none will close: the process's place is given back now, or another
                        // process of this collector (its restart) would be refused here as a conflict with it.
                        if let StreamKind::Collector { instance: Some(instance) } = kind {
                            self.state.release_instance(collector, instance);
                        }
                        send(reply, Err(e.clone()));
                        continue;
                    }
                    self.answer_attach(reply, collector, kind, own_tx);
                }
            }
        }
    }

    /// A collector that claims the current generation with another set than it holds now (its digest differs: the
    /// store was restored from a backup older than the collector's snapshot, and a change landed on it since, making
    /// its generation again) is moved to a new generation, so that it is sent the set, not "in sync" (S3).
    fn check_known_set(&self, params: &WatchParams, changes: &mut Changes) {
        let (Some(known), Some(digest)) = (params.known, params.known_digest) else { return };
        let collector = params.collector;
        let current = self.state.collector(collector).map(|c| (self.state.epoch(), c.generation));
        // A claim that is not current gets a snapshot anyway; a collector whose set changes in this batch gets a new
        // generation anyway (and the state holds what was committed for its generation only when it does not).
        if current != Some(known) || changes.moves_generation(collector) {
            return;
        }
        // A reconnect to a running server finds its feed published at that generation: its snapshot is built once,
        // here or for a stream, and shared. Only a `Watch` with no feed yet (after a start) builds one of its own.
        let published = self.feeds.get(&collector).map(|feed| feed.borrow().clone());
        let held = match published {
            Some(published) if published.generation == known.1 => published.snapshot().digest(),
            _ => publish(&self.state, collector, self.config.chunk_limits).snapshot().digest(),
        };
        if held != digest {
            warn!(
                collector.id = %collector,
                generation = known.1,
                "the collector holds another set under its current generation (a store restored from an older \
                 backup?); moving it to a new generation"
            );
            changes.move_generation(collector);
        }
    }

    /// Opens a stream on `collector`'s feed, published now from the state if it has none yet (the state then holds
    /// what was committed: see the callers).
    fn answer_attach(
        &mut self,
        reply: Reply<Attached>,
        collector: CollectorId,
        kind: StreamKind,
        own_tx: &mpsc::WeakUnboundedSender<Command>,
    ) {
        // The caller holds a handle while it waits, so the channel is open and this upgrades.
        let Some(tx) = own_tx.upgrade() else { return };
        if matches!(kind, StreamKind::Observer) && self.state.collector(collector).is_none() {
            // Forgotten later in the same batch: nothing to observe.
            send(reply, Err(Error::ObserveUnknown(collector)));
            return;
        }
        if matches!(kind, StreamKind::Collector { .. }) {
            *self.local_streams.entry(collector).or_default() += 1;
        }
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

impl Registry {
    /// Answers a batch that could not begin because the store could not be reached: every call gets the store's
    /// error, and only what happened on this server (streams that closed) is kept, to be written when the store
    /// answers again. A replica that has not reached its store for a while ends its feed streams (see
    /// [`STORE_OUTAGE_SERVED_SHARE_OF_GRACE`]).
    fn unreachable(&mut self, commands: Vec<Command>, e: StoreError, now: u64) {
        let error = Error::Store(Arc::new(e));
        let mut ignored = Changes::default();
        for command in commands {
            match command {
                Command::Register(_, reply) => send(reply, Err(error.clone())),
                Command::Deregister(_, reply) => send(reply, Err(error.clone())),
                Command::SetPin(_, reply) => send(reply, Err(error.clone())),
                Command::Forget(_, reply) => send(reply, Err(error.clone())),
                Command::ListProducers(_, reply) => send(reply, Err(error.clone())),
                Command::GetProducer(_, reply) => send(reply, Err(error.clone())),
                Command::ListCollectors(reply) => send(reply, Err(error.clone())),
                Command::Attach(_, reply) => send(reply, Err(error.clone())),
                Command::Report(_, reply) => send(reply, Err(error.clone())),
                Command::Detach(id, instance) => {
                    self.stream_closed(id);
                    self.state.detach(id, instance, now, &mut ignored);
                }
                Command::Sweep => {}
            }
        }
        let since = self.store_answered.elapsed();
        let served = self.config.rules.grace / STORE_OUTAGE_SERVED_SHARE_OF_GRACE;
        if self.notified.is_some() && since >= served && !self.feeds.is_empty() {
            warn!(
                error = %chain(&error),
                unreachable_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
                feeds = self.feeds.len(),
                "the store has not answered for a quarter of the grace period: this replica can no longer vouch for \
                 its feed; ending its streams, so that their collectors move to a replica that can"
            );
            self.feeds.clear();
        } else {
            warn!(error = %chain(&error), "the store cannot be reached; calls answer UNAVAILABLE meanwhile");
        }
    }

    /// Catches up with the changes other replicas announced, without the store's write lock.
    async fn follow(&mut self) {
        let announced = self.notified.as_mut().map_or(0, |rx| *rx.borrow_and_update());
        if announced != 0 && announced <= self.state.revision() {
            return;
        }
        match self.store.catch_up(self.state.revision()).await {
            Ok(Some(catch_up)) => {
                self.store_answered = Instant::now();
                self.publish_caught_up(catch_up, self.clock.now_ms());
            }
            Ok(None) => self.store_answered = Instant::now(),
            // The next tick's write catches up, or finds the store gone.
            Err(e) => warn!(error = %chain(&e), "cannot read the changes other replicas announced"),
        }
    }

    /// Writes what other replicas committed into the state, and publishes the generations it brings.
    fn publish_caught_up(&mut self, catch_up: CatchUp, now: u64) {
        let caught = apply_catch_up(&mut self.state, catch_up, now);
        self.metrics.store_revision(self.state.revision());
        self.publish_changes(caught);
    }

    /// Publishes the generations the state holds for the collectors `caught` names, and ends the feeds of those
    /// it forgot.
    fn publish_changes(&mut self, caught: CaughtUp) {
        for id in caught.forgotten {
            self.feeds.remove(&id);
        }
        for id in caught.dirty {
            if let Some(feed) = self.feeds.get(&id) {
                feed.send_replace(publish(&self.state, id, self.config.chunk_limits));
            }
        }
    }

    /// One of this server's feed streams of `id` closed.
    fn stream_closed(&mut self, id: CollectorId) {
        if let Some(open) = self.local_streams.get_mut(&id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.local_streams.remove(&id);
            }
        }
    }
}

/// Writes `catch_up` into `state`. Returns what it changed; every collector whose generation changed is in `dirty`,
/// and after a full reload, every collector is.
fn apply_catch_up(state: &mut State, catch_up: CatchUp, now: u64) -> CaughtUp {
    match catch_up {
        CatchUp::Changes { revision, changes } => state.catch_up(revision, changes),
        CatchUp::Everything(loaded) => {
            let before: Vec<CollectorId> = state.collector_ids().collect();
            state.reload(loaded, now);
            let mut caught = CaughtUp::default();
            for id in before {
                if state.collector(id).is_none() {
                    caught.forgotten.push(id);
                }
            }
            caught.dirty = state.collector_ids().collect();
            caught
        }
    }
}

/// Resolves when another replica announces a new revision; never for a store of one server, or once the
/// announcements stopped (the store then catches up at every tick).
async fn announced(notified: &mut Option<watch::Receiver<u64>>) {
    match notified {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *notified = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
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
