//! # roster-server
//!
//! The roster control plane: it keeps the registry of producers and collectors in a durable store, leases
//! producers (L1, L3), assigns them to collectors by rendezvous hashing (L2, L4), and streams each collector its
//! assignment as versioned, chunked snapshots (S1–S7).
//!
//! The binary is thin: it parses flags into a [`Config`], binds, and calls [`run`] with a shutdown future, so
//! tests can bind port 0 and shut the server down themselves.
//!
//! | module | owns |
//! |---|---|
//! | [`store`] | the SQLite file: open, load, commit one batch per transaction |
//! | [`registry`] | the actor that owns the state, batches writes, publishes snapshots |
//! | [`registry::state`] | every registry rule, as a pure state machine |
//! | [`assign`] | rendezvous hashing with pins |
//! | [`feed`] | snapshots cut into chunks, and the task serving one `Watch` stream |
//! | [`wire`] | the feed's codec: snapshot chunks encoded straight from the shared snapshot |
//! | `rpc` | the gRPC edge: request conversion and response building |
//! | [`error`] | errors and their one mapping to gRPC statuses |
//! | [`clock`] | wall-clock time, replaceable in tests |

pub mod assign;
pub mod clock;
pub mod error;
pub mod feed;
pub mod registry;
mod rpc;
pub mod store;
pub mod wire;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use roster::{
    message_limit::MAX_REQUEST_BYTES,
    pb::registry_server::RegistryServer,
    transport::{Keepalive, ServeOptions, ServerTransport},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    clock::{Clock, SystemClock},
    feed::{ChunkLimits, StreamConfig},
    registry::{Registry, RegistryConfig, state::Rules},
    rpc::{FeedService, RegistryService},
    store::{Store, StoreError},
    wire::feed_server::assignment_feed_server::AssignmentFeedServer,
};

/// Everything the server needs to run; [`Config::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the store (created if missing).
    pub data_dir: PathBuf,
    /// Lease given to registrations that ask for none (L1). Keep it within [`roster::domain::MIN_LEASE`] and
    /// [`roster::domain::MAX_LEASE`], the bounds of a lease a registrant may ask for; `roster-server --lease`
    /// refuses anything else.
    pub lease: Duration,
    /// How long a collector stays eligible after its last stream closed (L2).
    pub grace: Duration,
    /// How long a departed collector is kept (listed, with its generation) before it is forgotten.
    pub forget_after: Duration,
    /// Idle time after which a feed stream gets a heartbeat (S5).
    pub heartbeat: Duration,
    /// Bounds of a snapshot chunk (S2).
    pub chunk_limits: ChunkLimits,
    /// Longest wait for open calls to finish on shutdown (S6).
    pub drain: Duration,
    /// Reconnects per second the collectors are asked to spread to when the server shuts down (see
    /// [`feed::reconnect_spread`]).
    pub reconnect_rate: u32,
    /// HTTP/2 keepalive ping interval (S5).
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// How often leases and grace periods are checked.
    pub sweep_interval: Duration,
    /// How long a new store settles before its snapshots may shrink a collector's set (C3): serving time, which
    /// must cover the longest renewal interval in use (a quarter of the longest lease).
    pub settle: Duration,
    /// How late the registry's periodic work may run before the server counts the time as its own absence, which
    /// no lease or grace period is charged for (L3; see `registry::absence`).
    pub absence_threshold: Duration,
    /// The clocks; replaced in tests.
    pub clock: Arc<dyn Clock>,
}

impl Config {
    /// The defaults, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            lease: Duration::from_secs(300),
            grace: Duration::from_secs(60),
            forget_after: DEFAULT_FORGET_AFTER,
            heartbeat: Duration::from_secs(10),
            chunk_limits: ChunkLimits::default(),
            drain: Duration::from_secs(10),
            reconnect_rate: 200,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            settle: roster::domain::MAX_LEASE / 4,
            absence_threshold: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
        }
    }
}

/// How long a departed collector is kept before it is forgotten, unless configured otherwise: a day, so that
/// `roster collectors list` still shows a collector that went away overnight.
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store in `config.data_dir` and serves `roster.v1` (plus health and reflection) on `listener` until
/// `shutdown` completes; then ends every feed stream with `UNAVAILABLE`, drains for at most `config.drain` and
/// returns.
///
/// # Errors
/// When the store cannot be opened or loaded, or the transport fails.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let store = Store::open(&config.data_dir, config.clock.now_ms()).await?;
    let registry_config = RegistryConfig {
        rules: Rules {
            default_lease: config.lease,
            grace: config.grace,
            settle: config.settle,
            forget_after: config.forget_after,
        },
        sweep_interval: config.sweep_interval,
        absence_threshold: config.absence_threshold,
        chunk_limits: config.chunk_limits,
    };
    let (registry, handle) = Registry::start(store, config.clock.clone(), registry_config).await?;
    let epoch = registry.epoch();
    let stop = CancellationToken::new();
    let actor = tokio::spawn(registry.run(stop.clone()));

    let registry_service = RegistryService { registry: handle.clone() };
    let stream = StreamConfig {
        heartbeat: config.heartbeat,
        shutdown: stop.clone(),
        open: Arc::default(),
        reconnect_rate: config.reconnect_rate,
    };
    let feed_service = FeedService { registry: handle, stream };
    let options = ServeOptions {
        keepalive: Some(Keepalive { interval: config.keepalive_interval, timeout: config.keepalive_timeout }),
        drain: config.drain,
    };
    info!(listen = %local, data_dir = %config.data_dir.display(), %epoch, "roster-server serving");
    let served = ServerTransport::new(options)
        .add_service(RegistryServer::new(registry_service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(AssignmentFeedServer::new(feed_service).max_decoding_message_size(MAX_REQUEST_BYTES))
        // Going away ends every feed stream with UNAVAILABLE (and stops the registry's periodic work).
        .cancel_when_going_away(stop.clone())
        .serve(listener, async {
            shutdown.await;
            info!(
                drain_s = config.drain.as_secs_f64(),
                "shutting down: ending feed streams with UNAVAILABLE, draining"
            );
        })
        .await;
    stop.cancel();
    // The server, and with it the services and their registry handles, is gone; the actor then finishes its last
    // batch and closes the store.
    if tokio::time::timeout(Duration::from_secs(5), actor).await.is_err() {
        warn!("registry did not stop within 5 s");
    }
    info!("roster-server stopped");
    Ok(served?)
}
