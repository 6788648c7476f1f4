//! Follows one collector's assignment feed: connects, watches, assembles, persists, reports, reconnects.
//!
//! Any Rust program can use it, not only roster-collector. Build a [`Follower`] from a [`FollowerConfig`], spawn
//! [`Follower::run`] with a shutdown token, and read the snapshot in force from the [`FollowerHandle`]'s
//! `watch` channel (it holds the persisted snapshot from the very start, before any server answers) and the
//! counters from its [`Stats`].
//!
//! Rules it follows: C1–C3 through the pure [`assembler`]; C4 and C5 (an applied snapshot is persisted before
//! it is reported); R4 (reconnect forever, capped backoff with jitter, reset once a stream delivered a frame,
//! the next endpoint after each failure); and HTTP/2 keepalive, so a half-open connection is dropped within
//! interval + timeout (20 s by default). When a server ends the stream saying when to come back
//! (`grpc-retry-pushback-ms`, which roster-server sends on shutdown to spread its fleet's reconnects), that delay
//! replaces the backoff delay, still under the hard cap.

pub mod assembler;
pub mod state_file;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use backon::Retryable as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tracing::{debug, error, info, warn};

use self::assembler::{Assembler, Event, Snapshot};
use crate::{
    backoff::BackoffPolicy,
    domain::CollectorId,
    endpoint::ServerUrl,
    pb::{self, assignment_feed_client::AssignmentFeedClient},
};

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
    /// Where the applied snapshot is kept (C5); `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// Whether to report applied and rejected generations (C4).
    pub report: bool,
    /// Observe only (`WatchRequest.observe_only`): follow the feed of a known collector without marking it live
    /// or changing any assignment. For tools that watch a feed (`roster watch`); a collector leaves it false.
    pub observe_only: bool,
}

impl FollowerConfig {
    /// The defaults: feed backoff (200 ms doubling to a hard 30 s), keepalive every 10 s with a 10 s timeout,
    /// 5 s connect timeout, reports on, no state file, not observe-only.
    pub fn new(endpoints: Vec<ServerUrl>, collector: CollectorId) -> Self {
        Self {
            endpoints,
            collector,
            backoff: BackoffPolicy::FEED,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            state_file: None,
            report: true,
            observe_only: false,
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
            Some(path) => state_file::load(path)?,
            None => None,
        };
        let stats = Arc::new(Stats::default());
        let loaded = persisted.map(|p| {
            stats.lock().applied_at_ms = p.applied_at_ms;
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
        Ok((Self { config, assembler: Assembler::new(loaded), applied, stats, events, pushback: None }, handle))
    }

    /// Follows the feed until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut delays = self.config.backoff.delays();
        let mut endpoint_index = 0;
        loop {
            let url = self.config.endpoints[endpoint_index % self.config.endpoints.len()].clone();
            let endpoint = url.as_str();
            self.stats.lock().endpoint = endpoint.to_owned();
            let mut delivered = false;
            // Shutdown is watched inside, between frames, so an apply in progress (persist, then report) is
            // always finished, never cut in half.
            let Some(cause) = self.follow_once(&url, &mut delivered, &shutdown).await else { break };
            self.set_connected(false);
            if let Some(event) = self.assembler.stream_ended() {
                self.handle(event, None).await;
            }
            if delivered {
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
        info!("follower stopped");
    }

    fn set_connected(&self, connected: bool) {
        let mut stats = self.stats.lock();
        if stats.connected != connected {
            stats.connected = connected;
            stats.connected_changed_at_ms = now_ms();
        }
    }

    /// One connection and stream; returns why it ended, or `None` on shutdown.
    async fn follow_once(
        &mut self,
        url: &ServerUrl,
        delivered: &mut bool,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let endpoint = url.as_str();
        let channel = url
            .endpoint()
            .connect_timeout(self.config.connect_timeout)
            .http2_keep_alive_interval(self.config.keepalive_interval)
            .keep_alive_timeout(self.config.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let connected = tokio::select! {
            () = shutdown.cancelled() => return None,
            connected = channel.connect() => connected,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => return Some(format!("connect: {}", error_chain(&e))),
        };
        let known = self.assembler.applied().map(|s| (s.epoch, s.generation));
        let request = pb::WatchRequest {
            collector_id: self.config.collector.to_string(),
            known_epoch: known.map(|k| k.0.to_string()).unwrap_or_default(),
            known_generation: known.map_or(0, |k| k.1),
            observe_only: self.config.observe_only,
        };
        let mut client = AssignmentFeedClient::new(channel.clone());
        let watched = tokio::select! {
            () = shutdown.cancelled() => return None,
            watched = client.watch(request) => watched,
        };
        let mut stream = match watched {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let _ = self
                    .events
                    .send(FollowerEvent::WatchRefused { code: status.code(), message: status.message().to_owned() });
                return Some(format!("watch: {}", status_text(&status)));
            }
        };
        self.set_connected(true);
        let _ = self.events.send(FollowerEvent::Connected { endpoint: endpoint.to_owned() });
        info!(endpoint, known_generation = known.map_or(0, |k| k.1), "feed stream open");
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return None,
                message = stream.message() => message,
            };
            match message {
                Ok(Some(message)) => {
                    let Some(frame) = message.frame else { continue };
                    self.stats.lock().last_contact_ms = now_ms();
                    for event in self.assembler.on_frame(frame) {
                        if !matches!(event, Event::Progress) {
                            *delivered = true;
                        }
                        self.handle(event, Some(&channel)).await;
                    }
                }
                Ok(None) => return Some("the server ended the stream".into()),
                Err(status) => {
                    self.pushback = retry_pushback(&status);
                    return Some(status_text(&status));
                }
            }
        }
    }

    async fn handle(&mut self, event: Event, channel: Option<&Channel>) {
        match event {
            Event::Progress => {}
            Event::Applied(snapshot) => {
                // Collect from it at once; persist it next, off the async threads (an fsync takes milliseconds),
                // and report it only once it is on disk (C5). A crash in between leaves the previous complete
                // snapshot on disk, and the server, not having had the report, sends this one again.
                let at = now_ms();
                {
                    let mut stats = self.stats.lock();
                    stats.applied_at_ms = at;
                    stats.held_reason = (!snapshot.carried.is_empty()).then(|| {
                        format!(
                            "keeping {} producers of an earlier store epoch that the server's new store lacks, until it settles",
                            snapshot.carried.len()
                        )
                    });
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
                let persisted = match &self.config.state_file {
                    None => true,
                    Some(path) => {
                        let (path, to_save) = (path.clone(), snapshot.clone());
                        match tokio::task::spawn_blocking(move || state_file::save(&path, &to_save, at)).await {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                error!(error = %e, "cannot persist the applied snapshot; collecting from it anyway, not reporting it");
                                false
                            }
                            Err(e) => {
                                error!(error = %e, "the task persisting the applied snapshot failed; not reporting it");
                                false
                            }
                        }
                    }
                };
                if persisted && let Some(channel) = channel {
                    self.report(channel, snapshot.epoch, snapshot.generation, None);
                }
            }
            Event::Discarded { reason, detail, refused } => {
                warn!(reason = reason.as_str(), detail, "snapshot discarded; the last known set stays in force");
                *self.stats.lock().discards.entry(reason.as_str()).or_default() += 1;
                let _ = self.events.send(FollowerEvent::Discarded { reason: reason.as_str(), detail: detail.clone() });
                if let (Some((epoch, generation)), Some(channel)) = (refused, channel) {
                    self.report(channel, epoch, generation, Some(detail));
                }
            }
            Event::AlreadyApplied | Event::InSync { .. } => debug!("in sync with the server"),
            Event::Heartbeat { generation, .. } => debug!(generation, "heartbeat"),
        }
    }

    /// Reports a generation (C4) in the background, retrying transient failures (R3).
    fn report(&self, channel: &Channel, epoch: uuid::Uuid, generation: u64, rejected: Option<String>) {
        if !self.config.report {
            return;
        }
        let request = pb::ReportAppliedRequest {
            collector_id: self.config.collector.to_string(),
            epoch: epoch.to_string(),
            generation,
            outcome: if rejected.is_some() { pb::ApplyOutcome::Rejected } else { pb::ApplyOutcome::Applied }.into(),
            reason: rejected.unwrap_or_default(),
        };
        let client = AssignmentFeedClient::new(channel.clone());
        let events = self.events.clone();
        tokio::spawn(async move {
            let call = || {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.report_applied(request).await }
            };
            match call.retry(BackoffPolicy::UNARY).when(|s| s.code() == Code::Unavailable).await {
                Ok(_) => {
                    debug!(generation, "generation reported");
                    let _ = events.send(FollowerEvent::Reported { generation });
                }
                Err(status) => warn!(generation, error = %status_text(&status), "could not report the generation"),
            }
        });
    }
}

/// A status as one line: code, message, and whatever its source errors add to the message.
pub fn status_text(status: &tonic::Status) -> String {
    with_sources(format!("{:?}: {}", status.code(), status.message()), std::error::Error::source(status))
}

/// An error and its sources, as one line (a source that repeats what is already said is left out).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    with_sources(error.to_string(), error.source())
}

fn with_sources(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
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
}
