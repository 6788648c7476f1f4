//! Follows one collector's assignment feed: connects, watches, assembles, persists, reports, reconnects.
//!
//! Any Rust program can use it, not only roster-collector. Build a [`Follower`] from a [`FollowerConfig`], spawn
//! [`Follower::run`] with a shutdown token, and read the snapshot in force from the [`FollowerHandle`]'s
//! `watch` channel (it holds the persisted snapshot from the very start, before any server answers) and the
//! counters from its [`Stats`].
//!
//! Rules it follows: C1–C3 through the pure [`assembler`]; C4 and C5 (an applied snapshot is persisted before
//! it is reported: a failed save, on a full or read-only disk, is retried with capped backoff until it succeeds,
//! the latest applied snapshot superseding an older one waiting for its retry, and only then reported; a report
//! that fails after all its attempts is sent again on the next stream or heartbeat); R4 (reconnect forever,
//! capped backoff with jitter, reset once a stream delivered a frame and then stayed open for the cap, the next
//! endpoint after each failure); and HTTP/2 keepalive, so a half-open connection is dropped within interval +
//! timeout (20 s by default). When a server ends the stream saying when to come back (`grpc-retry-pushback-ms`,
//! which roster-server sends on shutdown to spread its fleet's reconnects), that delay replaces the backoff delay,
//! still under the hard cap.

pub mod assembler;
#[cfg(test)]
mod feed_vectors;
pub mod state_file;
#[cfg(test)]
mod vectors;
pub mod wire;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Code, service::interceptor::InterceptedService};
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use self::assembler::{Assembler, Discard, Encodings, Event, Snapshot};
use crate::{
    auth::CallCredentials,
    backoff::BackoffPolicy,
    client::RosterClient,
    domain::{CollectorId, SupportedKinds},
    endpoint::ServerUrl,
    error_chain::{chain, status_line},
    pb,
    transport::{ClientOptions, ClientTls, Keepalive},
};

/// The HTTP/2 keepalive ping interval of the feed connection, by default.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keepalive ping may go unanswered, by default: a half-open connection is dropped within interval +
/// timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The time limit for establishing a feed connection, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The time limit of each attempt at reporting a generation (C4), by default.
pub const DEFAULT_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a follower.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Server URLs, tried in turn (parsed where they came in, by [`ServerUrl`]).
    pub endpoints: Vec<ServerUrl>,
    /// The collector whose feed to follow.
    pub collector: CollectorId,
    /// Reconnect backoff (R4).
    pub backoff: BackoffPolicy,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Time limit for establishing a connection.
    pub connect_timeout: Duration,
    /// How `https://` endpoints are dialled (the server's CA, and a client certificate for mutual TLS). The files
    /// are read again on every (re)connection, so a rotated client certificate is presented without a restart.
    pub tls: Option<ClientTls>,
    /// Where the applied snapshot is kept (C5); `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// Whether to report applied and rejected generations (C4).
    pub report: bool,
    /// Time limit of each attempt at a report (R3: up to five attempts, transient failures only retried).
    pub report_timeout: Duration,
    /// Observe only (`WatchRequest.observe_only`): follow the feed of a known collector without marking it live
    /// or changing any assignment. For tools that watch a feed (`roster watch`); a collector leaves it false.
    pub observe_only: bool,
    /// Retries of a failed save of the applied snapshot (C5).
    pub persist_backoff: BackoffPolicy,
    /// This process's instance id, sent with every `Watch` so the server can tell two processes claiming the same
    /// collector id apart (and refuse the newer one). `None` for an observer that is not the collector.
    pub instance: Option<uuid::Uuid>,
    /// The producer kinds this collector can collect, sent with every `Watch` (`supported_kinds`): the server
    /// assigns it producers of these kinds only. A program lists a kind only once it can collect it; a snapshot
    /// entry of another kind is still read (it cannot come from a server that honours the list).
    pub supported_kinds: SupportedKinds,
    /// What every `Watch` and report carries to authenticate (a bearer token, [`crate::auth`]); none by default.
    pub credentials: CallCredentials,
}

impl FollowerConfig {
    /// The defaults: feed backoff (200 ms doubling to a hard 30 s), keepalive every 10 s with a 10 s timeout,
    /// 5 s connect timeout, no TLS, reports on (each attempt limited to 5 s), no state file, not observe-only, failed
    /// saves retried up to every 10 s, a new random instance id, gRPC producers only, and no credentials.
    pub fn new(endpoints: Vec<ServerUrl>, collector: CollectorId) -> Self {
        Self {
            endpoints,
            collector,
            backoff: BackoffPolicy::FEED,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            state_file: None,
            report: true,
            report_timeout: DEFAULT_REPORT_TIMEOUT,
            observe_only: false,
            persist_backoff: BackoffPolicy::PERSIST,
            instance: Some(uuid::Uuid::new_v4()),
            supported_kinds: SupportedKinds::GRPC_ONLY,
            credentials: CallCredentials::none(),
        }
    }
}

/// Why a follower cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// No endpoint was given (each one given is a [`ServerUrl`], checked where it came in).
    #[error("no server URL to follow the feed from: give at least one, e.g. http://127.0.0.1:50051")]
    NoEndpoint,
    /// The state file cannot be read.
    #[error(transparent)]
    StateFile(#[from] state_file::StateFileError),
}

/// The follower's counters and connection state, for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The endpoint in use, or last tried.
    pub endpoint: String,
    /// Whether a feed stream is open.
    pub connected: bool,
    /// When `connected` last changed (Unix ms).
    pub connected_changed_at_ms: u64,
    /// When the applied snapshot was applied (Unix ms; for a loaded one, when it was first applied).
    pub applied_at_ms: u64,
    /// Last frame of any kind (Unix ms).
    pub last_contact_ms: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// Discarded or refused snapshots, by reason.
    pub discards: BTreeMap<&'static str, u64>,
    /// What the applied set holds beyond the server's snapshot, if anything (producers carried from an earlier
    /// epoch while the server's new store settles).
    pub held_reason: Option<String>,
    /// Delays waited before reconnecting, most recent last (the last 64).
    pub recent_delays: Vec<Duration>,
    /// The (epoch, generation) of the snapshot last saved to the state file (or loaded from it).
    pub persisted: Option<(uuid::Uuid, u64)>,
    /// Why the applied snapshot cannot be saved, while it cannot (cleared once a save succeeds).
    pub persist_error: Option<String>,
    /// Failed saves since start.
    pub persist_failures: u64,
    /// Successful saves since start (a burst of applies coalesces into few).
    pub persisted_snapshots: u64,
    /// Reports of an applied generation that failed after all their attempts (C4). Each is sent again on the next
    /// stream, or at the next heartbeat of the open one, until the server has it.
    pub report_failures: u64,
    /// Why the server refused the last `Watch` (not a transient failure), until a stream opens: e.g. another
    /// process uses this collector id.
    pub feed_refused: Option<String>,
}

/// Shared counters of a follower.
#[derive(Debug, Default)]
pub struct Stats(Mutex<StatsSnapshot>);

impl Stats {
    /// A copy of the counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsSnapshot> {
        // A poisoned lock only means a panic elsewhere mid-update of plain counters; they are still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Something the follower did, for callers that narrate it (`roster watch`).
#[derive(Debug, Clone)]
pub enum FollowerEvent {
    /// A feed stream opened.
    Connected {
        /// The endpoint.
        endpoint: String,
    },
    /// The server answered the `Watch` call itself with an error status (a `Lost` event follows: the follower
    /// keeps trying). A tool may stop on a status that retrying cannot change, such as `NOT_FOUND`.
    WatchRefused {
        /// The status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// The stream was lost; the next attempt comes after `delay`.
    Lost {
        /// Why.
        cause: String,
        /// The wait before reconnecting.
        delay: Duration,
    },
    /// A snapshot was applied.
    Applied(Arc<Snapshot>),
    /// A snapshot was discarded or refused; the last known set stays.
    Discarded {
        /// Why (the counter name).
        reason: &'static str,
        /// Details.
        detail: String,
    },
    /// The server acknowledged a report of this generation (C4): operators see it as converged.
    Reported {
        /// The generation reported.
        generation: u64,
    },
}

/// What a caller keeps: the snapshot in force, the counters, and the events.
#[derive(Debug, Clone)]
pub struct FollowerHandle {
    /// The snapshot in force (`None` until one was applied, or loaded from the state file).
    pub applied: watch::Receiver<Option<Arc<Snapshot>>>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Events, for those who subscribe (a slow subscriber misses old ones, never slows the follower).
    pub events: tokio::sync::broadcast::Sender<FollowerEvent>,
}

/// The follower; see the module docs.
#[derive(Debug)]
pub struct Follower {
    config: FollowerConfig,
    assembler: Assembler,
    applied: watch::Sender<Option<Arc<Snapshot>>>,
    stats: Arc<Stats>,
    events: tokio::sync::broadcast::Sender<FollowerEvent>,
    /// The delay the server asked for when it last ended a stream (`grpc-retry-pushback-ms`).
    pushback: Option<Duration>,
    /// The latest applied snapshot, for the persister to save.
    to_persist: watch::Sender<Option<ToSave>>,
    /// What the persister saved last: reported once saved (C5).
    persisted: watch::Receiver<Option<(uuid::Uuid, u64)>>,
    /// Taken and spawned by [`Follower::run`].
    persister: Option<Persister>,
    /// The last (epoch, generation) reported APPLIED by this process, or being reported. `None` at start: the
    /// loaded snapshot may have been saved without being reported (saved on the way out, or after the stream was
    /// lost), so it is reported once on the first stream (idempotent, and only "current" if it still is). A report
    /// that fails after all its attempts puts it back to `None`, so that the next stream or heartbeat reports it
    /// again: otherwise the server, already at that generation, would answer "in sync" and never learn that this
    /// collector converged.
    reported: Arc<watch::Sender<Option<(uuid::Uuid, u64)>>>,
    /// The server digest of the snapshot in force (`Snapshot::server_digest`), for the `Watch` to send: computed
    /// once per snapshot, at the first reconnect after it applied.
    known_digest: Option<((uuid::Uuid, u64), u64)>,
}

/// The delay a status asks for before the next attempt: gRPC's `grpc-retry-pushback-ms` (gRFC A6), a
/// non-negative integer. Anything else is ignored; the feed then uses its own backoff.
pub fn retry_pushback(status: &tonic::Status) -> Option<Duration> {
    let value = status.metadata().get("grpc-retry-pushback-ms")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_millis)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Follower {
    /// Makes a follower, loading the state file if there is one.
    ///
    /// # Errors
    /// When there is no endpoint or the state file is damaged (see [`state_file::StateFileError`]).
    pub fn new(config: FollowerConfig) -> Result<(Self, FollowerHandle), FollowerError> {
        if config.endpoints.is_empty() {
            return Err(FollowerError::NoEndpoint);
        }
        let persisted = match &config.state_file {
            Some(path) => {
                match state_file::remove_leftover(path) {
                    Ok(true) => {
                        warn!(file = %path.display(), "removed the temporary file of a save that did not finish")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %chain(&e), "cannot remove the temporary file of a save that did not finish")
                    }
                }
                state_file::load(path)?
            }
            None => None,
        };
        let stats = Arc::new(Stats::default());
        let loaded = persisted.map(|p| {
            let mut stats = stats.lock();
            stats.applied_at_ms = p.applied_at_ms;
            stats.persisted = Some((p.snapshot.epoch, p.snapshot.generation));
            stats.held_reason = held_reason(&p.snapshot);
            info!(
                epoch = %p.snapshot.epoch,
                generation = p.snapshot.generation,
                producers = p.snapshot.targets.len(),
                "resuming the persisted snapshot"
            );
            Arc::new(p.snapshot)
        });
        let (applied, rx) = watch::channel(loaded.clone());
        let (events, _) = tokio::sync::broadcast::channel(256);
        let handle = FollowerHandle { applied: rx, stats: stats.clone(), events: events.clone() };
        let loaded_id = loaded.as_ref().map(|s| (s.epoch, s.generation));
        let (to_persist, latest) = watch::channel(None);
        let (saved, persisted) = watch::channel(loaded_id);
        let persister = Persister {
            path: config.state_file.clone(),
            policy: config.persist_backoff,
            latest,
            saved,
            stats: stats.clone(),
        };
        Ok((
            Self {
                config,
                assembler: Assembler::new(loaded),
                applied,
                stats,
                events,
                pushback: None,
                to_persist,
                persisted,
                persister: Some(persister),
                reported: Arc::new(watch::Sender::new(None)),
                known_digest: None,
            },
            handle,
        ))
    }

    /// Follows the feed until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("follower", collector.id = %self.config.collector);
        self.follow(shutdown).instrument(span).await;
    }

    async fn follow(mut self, shutdown: CancellationToken) {
        let persister =
            self.persister.take().map(|p| tokio::spawn(p.run(shutdown.clone()).instrument(info_span!("persister"))));
        let mut delays = self.config.backoff.delays();
        let mut endpoint_index = 0;
        loop {
            let url = self.config.endpoints[endpoint_index % self.config.endpoints.len()].clone();
            let endpoint = url.as_str();
            self.stats.lock().endpoint = endpoint.to_owned();
            let mut delivered = None;
            // Shutdown is watched inside, between frames, so an apply in progress (persist, then report) is
            // always finished, never cut in half.
            let Some(cause) = self.follow_once(&url, &mut delivered, &shutdown).await else { break };
            self.set_connected(false);
            if let Some(discard) = self.assembler.stream_ended() {
                self.discarded(&discard);
            }
            // R4: the backoff starts again only after a stream that delivered a frame and then stayed up, here for
            // as long as the cap. A server or proxy that drops every stream right after its first frame (a crash
            // loop, a broken middlebox) then still sees the fleet's delays grow to the cap, not a reconnect every
            // 200 ms from each collector.
            if delivered.is_some_and(|at: tokio::time::Instant| at.elapsed() >= self.config.backoff.cap) {
                delays.reset();
            }
            endpoint_index += 1;
            // A server that ends streams on shutdown says when to come back (spreading its fleet's reconnects);
            // it replaces the backoff delay, still under the hard cap.
            let delay = match self.pushback.take() {
                Some(pushback) => pushback.min(self.config.backoff.cap),
                None => delays.next().unwrap_or(self.config.backoff.cap),
            };
            {
                let mut stats = self.stats.lock();
                stats.reconnects += 1;
                stats.recent_delays.push(delay);
                let excess = stats.recent_delays.len().saturating_sub(64);
                stats.recent_delays.drain(..excess);
            }
            let _ = self.events.send(FollowerEvent::Lost { cause: cause.clone(), delay });
            warn!(
                endpoint,
                cause,
                attempt = delays.retries(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                next = %self.config.endpoints[endpoint_index % self.config.endpoints.len()],
                "feed stream lost; reconnecting after a delay"
            );
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        if let Some(persister) = persister {
            let _ = persister.await;
        }
        info!("follower stopped");
    }

    /// The server digest of the snapshot in force, 0 when there is none (see `known_digest`).
    fn known_digest(&mut self) -> u64 {
        let Some(applied) = self.assembler.applied() else { return 0 };
        let id = (applied.epoch, applied.generation);
        match self.known_digest {
            Some((of, digest)) if of == id => digest,
            _ => {
                let digest = applied.server_digest();
                self.known_digest = Some((id, digest));
                digest
            }
        }
    }

    fn set_connected(&self, connected: bool) {
        let mut stats = self.stats.lock();
        if stats.connected != connected {
            stats.connected = connected;
            stats.connected_changed_at_ms = now_ms();
        }
    }

    /// One connection and stream; returns why it ended, or `None` on shutdown. `delivered` is set to when the
    /// stream delivered its first frame (R4).
    async fn follow_once(
        &mut self,
        url: &ServerUrl,
        delivered: &mut Option<tokio::time::Instant>,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let endpoint = url.as_str();
        let keepalive = Keepalive { interval: self.config.keepalive_interval, timeout: self.config.keepalive_timeout };
        let options = ClientOptions {
            connect_timeout: self.config.connect_timeout,
            keepalive: Some(keepalive),
            tls: self.config.tls.clone(),
        };
        let connected = tokio::select! {
            () = shutdown.cancelled() => return None,
            connected = options.connect(url) => connected,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => return Some(format!("connect: {}", chain(&e))),
        };
        let known = self.assembler.applied().map(|s| (s.epoch, s.generation));
        let known_digest = self.known_digest();
        let request = pb::WatchRequest {
            collector_id: self.config.collector.to_string(),
            known_epoch: known.map(|k| k.0.to_string()).unwrap_or_default(),
            known_generation: known.map_or(0, |k| k.1),
            observe_only: self.config.observe_only,
            instance_id: self.config.instance.map(|i| i.to_string()).unwrap_or_default(),
            supported_kinds: self.config.supported_kinds.to_pb(),
            known_digest,
        };
        // Reports go on the feed's connection, through the retrying client (R3: a request id, a time limit, retries).
        let reporter = RosterClient::on_channel(channel.clone(), self.config.report_timeout)
            .with_credentials(self.config.credentials.clone());
        let feed = InterceptedService::new(channel, self.config.credentials.clone());
        let watched = tokio::select! {
            () = shutdown.cancelled() => return None,
            watched = wire::watch(feed, request) => watched,
        };
        let mut stream = match watched {
            Ok(stream) => stream,
            Err(status) => {
                let _ = self
                    .events
                    .send(FollowerEvent::WatchRefused { code: status.code(), message: status.message().to_owned() });
                if matches!(
                    status.code(),
                    Code::FailedPrecondition
                        | Code::AlreadyExists
                        | Code::InvalidArgument
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                ) {
                    // Refused, not failed: say so loudly. The last known set stays in force; the feed retries with its
                    // capped backoff (the cause may go away: the other process may stop).
                    error!(
                        endpoint,
                        code = ?status.code(),
                        reason = status.message(),
                        "the server refused this collector's feed; collecting the last known set meanwhile"
                    );
                    self.stats.lock().feed_refused = Some(status_line(&status));
                }
                return Some(format!("watch: {}", status_line(&status)));
            }
        };
        self.stats.lock().feed_refused = None;
        self.set_connected(true);
        let _ = self.events.send(FollowerEvent::Connected { endpoint: endpoint.to_owned() });
        info!(endpoint, known_generation = known.map_or(0, |k| k.1), "feed stream open");
        // A snapshot saved while no stream was open is reported now.
        self.persisted.mark_changed();
        let mut persister_running = true;
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                saved = self.persisted.changed(), if persister_running => {
                    match saved {
                        Ok(()) => self.report_saved(&reporter),
                        // Only on shutdown (or if the persister panicked): nothing more will be saved.
                        Err(_) => persister_running = false,
                    }
                    continue;
                }
                message = stream.message() => message,
            };
            match message {
                Ok(Some(message)) => {
                    let Some(frame) = message.frame else { continue };
                    self.stats.lock().last_contact_ms = now_ms();
                    for event in self.assembler.on_wire_frame(frame) {
                        if !matches!(event, Event::Progress) && delivered.is_none() {
                            *delivered = Some(tokio::time::Instant::now());
                        }
                        self.handle(event, &reporter);
                    }
                }
                Ok(None) => return Some("the server ended the stream".into()),
                Err(status) => {
                    self.pushback = retry_pushback(&status);
                    return Some(status_line(&status));
                }
            }
        }
    }

    /// Reports the snapshot the persister saved last, if it is the one in force and not reported yet (C5: it is on
    /// disk). An older one saved after a newer was applied is not reported: the newer one will be, once saved.
    fn report_saved(&mut self, reporter: &RosterClient) {
        let saved = *self.persisted.borrow_and_update();
        let current = self.assembler.applied().map(|s| (s.epoch, s.generation));
        if let Some((epoch, generation)) = saved
            && saved == current
            && saved != *self.reported.borrow()
        {
            self.reported.send_replace(saved);
            self.report(reporter, epoch, generation, None);
        }
    }

    fn handle(&mut self, event: Event, reporter: &RosterClient) {
        match event {
            Event::Progress => {}
            Event::Applied(snapshot) => {
                // Collect from it at once; the persister saves it next, off the async threads (an fsync takes
                // milliseconds), retrying until it is on disk, and it is reported only then (C5). A crash in
                // between leaves the previous complete snapshot on disk, and the server, not having had the report,
                // sends this one again.
                let at = now_ms();
                {
                    let mut stats = self.stats.lock();
                    stats.applied_at_ms = at;
                    stats.held_reason = held_reason(&snapshot);
                }
                self.applied.send_replace(Some(snapshot.clone()));
                let _ = self.events.send(FollowerEvent::Applied(snapshot.clone()));
                info!(
                    epoch = %snapshot.epoch,
                    generation = snapshot.generation,
                    producers = snapshot.targets.len(),
                    carried = snapshot.carried.len(),
                    settling = snapshot.settling,
                    "snapshot applied"
                );
                let encodings = self.assembler.applied_encodings().clone();
                self.to_persist.send_replace(Some((snapshot, encodings, at)));
            }
            Event::Discarded(discard) => {
                self.discarded(&discard);
                if let Some((epoch, generation)) = discard.refused {
                    self.report(reporter, epoch, generation, Some(discard.detail));
                }
            }
            Event::AlreadyApplied | Event::InSync { .. } => debug!("in sync with the server"),
            Event::Heartbeat { generation, .. } => {
                debug!(generation, "heartbeat");
                // A report that failed after all its attempts is sent again now (see `reported`).
                self.report_saved(reporter);
            }
        }
    }

    /// Counts and logs a discarded snapshot: the last known set stays in force (C2).
    fn discarded(&self, discard: &Discard) {
        let (reason, detail) = (discard.reason.as_str(), &discard.detail);
        warn!(reason, detail, "snapshot discarded; the last known set stays in force");
        *self.stats.lock().discards.entry(reason).or_default() += 1;
        let _ = self.events.send(FollowerEvent::Discarded { reason, detail: detail.clone() });
    }

    /// Reports a generation (C4) in the background, through the retrying client (R3).
    fn report(&self, reporter: &RosterClient, epoch: uuid::Uuid, generation: u64, rejected: Option<String>) {
        if !self.config.report {
            return;
        }
        let applied = rejected.is_none().then_some((epoch, generation));
        let request = pb::ReportAppliedRequest {
            collector_id: self.config.collector.to_string(),
            epoch: epoch.to_string(),
            generation,
            outcome: if rejected.is_some() { pb::ApplyOutcome::Rejected } else { pb::ApplyOutcome::Applied }.into(),
            reason: rejected.unwrap_or_default(),
        };
        let reporter = reporter.clone();
        let events = self.events.clone();
        let (reported, stats) = (self.reported.clone(), self.stats.clone());
        tokio::spawn(
            async move {
                match reporter.report_applied(request).await {
                    Ok(_) => {
                        debug!(generation, "generation reported");
                        let _ = events.send(FollowerEvent::Reported { generation });
                    }
                    Err(e) => {
                        // Unless a newer one is already on its way, this one is reported again later.
                        if applied.is_some() {
                            reported.send_if_modified(|r| {
                                let lost = *r == applied;
                                if lost {
                                    *r = None;
                                }
                                lost
                            });
                        }
                        stats.lock().report_failures += 1;
                        warn!(
                            generation,
                            error = %chain(&e),
                            "could not report the generation; it is reported again on the next stream or heartbeat"
                        );
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// An applied snapshot to save: the snapshot, its entries as the server encoded them (`Assembler::applied_encodings`)
/// and when it was applied (Unix ms).
type ToSave = (Arc<Snapshot>, Encodings, u64);

/// Saves the latest applied snapshot to the state file (C5), off the feed's loop. A failed save (a full or
/// read-only disk) is retried with capped backoff until one succeeds; a snapshot applied meanwhile replaces the
/// one waiting, since only the latest matters. The error is kept in [`StatsSnapshot::persist_error`] and logged
/// at each attempt; what was saved is announced on `saved`, and only that is reported.
#[derive(Debug)]
struct Persister {
    /// `None`: nothing is kept on disk, and every snapshot counts as saved at once.
    path: Option<PathBuf>,
    policy: BackoffPolicy,
    latest: watch::Receiver<Option<ToSave>>,
    saved: watch::Sender<Option<(uuid::Uuid, u64)>>,
    stats: Arc<Stats>,
}

impl Persister {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut delays = self.policy.delays();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // A snapshot applied just before the shutdown is still saved (C5: a restart resumes it).
                    if self.latest.has_changed().unwrap_or(false) {
                        self.last_try().await;
                    }
                    return;
                }
                changed = self.latest.changed() => if changed.is_err() { return },
            }
            // Until the latest is on disk: each attempt takes whatever was applied last.
            loop {
                let latest = self.latest.borrow_and_update().clone();
                let Some(to_save) = latest else { break };
                if self.save(&to_save).await {
                    delays.reset();
                    break;
                }
                let delay = delays.next().unwrap_or(self.policy.cap);
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        // One last try, so that a disk that recovered meanwhile still gets the latest set.
                        self.last_try().await;
                        return;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    /// On shutdown: one attempt at saving the latest snapshot, saying so if it fails.
    async fn last_try(&mut self) {
        let latest = self.latest.borrow_and_update().clone();
        if let Some(to_save) = latest
            && !self.save(&to_save).await
        {
            error!(
                generation = to_save.0.generation,
                "stopping with the applied snapshot not saved: a restart resumes the last one saved"
            );
        }
    }

    /// One attempt; whether it succeeded. Either way the outcome is in the stats and the log.
    async fn save(&self, (snapshot, encodings, at): &ToSave) -> bool {
        let id = (snapshot.epoch, snapshot.generation);
        let result = match &self.path {
            None => Ok(()),
            Some(path) => {
                let (path, snapshot, encodings, at) = (path.clone(), snapshot.clone(), encodings.clone(), *at);
                let save = move || state_file::save_encoded(&path, &snapshot, &encodings, at);
                match tokio::task::spawn_blocking(save).await {
                    Ok(saved) => saved.map_err(|e| chain(&e).to_string()),
                    Err(e) => Err(format!("the task saving it failed: {e}")),
                }
            }
        };
        match result {
            Ok(()) => {
                let failed_before = {
                    let mut stats = self.stats.lock();
                    stats.persisted = Some(id);
                    stats.persisted_snapshots += 1;
                    stats.persist_error.take().is_some()
                };
                if failed_before {
                    info!(generation = id.1, "applied snapshot saved after failed attempts; reporting it");
                }
                self.saved.send_replace(Some(id));
                true
            }
            Err(e) => {
                let message = format!(
                    "cannot save the applied snapshot (generation {}): {e}; collecting from it anyway, retrying the save \
                     (at most {} s apart), not reporting it until it is saved",
                    id.1,
                    self.policy.cap.as_secs_f64()
                );
                error!(
                    generation = id.1,
                    error = %e,
                    "cannot save the applied snapshot; collecting from it anyway, retrying the save, not reporting it until it is saved"
                );
                let mut stats = self.stats.lock();
                stats.persist_error = Some(message);
                stats.persist_failures += 1;
                false
            }
        }
    }
}

/// What the applied set holds beyond the server's snapshot, in words, if anything (the new-epoch rule).
fn held_reason(snapshot: &Snapshot) -> Option<String> {
    (!snapshot.carried.is_empty()).then(|| {
        format!(
            "keeping {} producers of an earlier store epoch that the server's new store lacks, until it settles",
            snapshot.carried.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pushback(value: &str) -> tonic::Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("grpc-retry-pushback-ms", value.parse().unwrap());
        tonic::Status::with_metadata(Code::Unavailable, "bye", metadata)
    }

    #[test]
    fn a_pushback_is_read_only_when_it_is_a_whole_number_of_milliseconds() {
        assert_eq!(retry_pushback(&with_pushback("1500")), Some(Duration::from_millis(1500)));
        assert_eq!(retry_pushback(&with_pushback("-1")), None);
        assert_eq!(retry_pushback(&with_pushback("soon")), None);
        assert_eq!(retry_pushback(&tonic::Status::unavailable("no header")), None);
    }

    fn snapshot(generation: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            epoch: uuid::Uuid::from_u128(7),
            generation,
            targets: Vec::new(),
            settling: false,
            carried: Vec::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_save_is_retried_until_it_succeeds_and_the_latest_snapshot_is_the_one_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        // A non-empty directory where the file should be: every save fails until it is removed.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        let stats = Arc::new(Stats::default());
        let (to_persist, latest) = watch::channel(None);
        let (saved_tx, mut saved) = watch::channel(None);
        let persister = Persister {
            path: Some(path.clone()),
            policy: BackoffPolicy::PERSIST,
            latest,
            saved: saved_tx,
            stats: stats.clone(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(persister.run(shutdown.clone()));

        to_persist.send_replace(Some((snapshot(1), Encodings::default(), 1)));
        for _ in 0..10_000 {
            if stats.snapshot().persist_failures >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failing = stats.snapshot();
        assert!(failing.persist_failures >= 3, "retried: {failing:?}");
        assert!(
            failing.persist_error.as_deref().is_some_and(|e| e.contains(&path.display().to_string())),
            "{failing:?}"
        );
        assert_eq!(*saved.borrow(), None, "nothing saved, so nothing to report");

        // A newer snapshot is applied while the save is failing; then the disk recovers.
        to_persist.send_replace(Some((snapshot(2), Encodings::default(), 2)));
        std::fs::remove_dir_all(&path).unwrap();
        let id = tokio::time::timeout(
            Duration::from_secs(60),
            saved.wait_for(|s| *s == Some((uuid::Uuid::from_u128(7), 2))),
        )
        .await
        .expect("saved within the backoff cap")
        .unwrap()
        .to_owned();
        assert_eq!(id, Some((uuid::Uuid::from_u128(7), 2)));
        assert_eq!(state_file::load(&path).unwrap().unwrap().snapshot.generation, 2, "the latest is on disk");
        let recovered = stats.snapshot();
        assert_eq!((recovered.persist_error, recovered.persisted), (None, id), "the error is cleared");
        shutdown.cancel();
        task.await.unwrap();
    }
}
