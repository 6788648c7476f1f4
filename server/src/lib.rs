//! # roster-server
//!
//! The roster control plane: it keeps the registry of producers and collectors in a durable store, leases
//! producers (L1, L3), assigns them to collectors by rendezvous hashing (L2, L4), and streams each collector its
//! assignment as versioned, chunked snapshots (S1–S7).
//!
//! The binary is thin: it parses flags into a [`Config`], binds, and calls [`run`] with a shutdown future, so
//! tests can bind port 0 and shut the server down themselves.
//!
//! | module | owns | uses |
//! |---|---|---|
//! | `config` | [`Config`], [`StoreLocation`] and every default ([`DEFAULT_LEASE`], …) | `feed::snapshot`, `store`, `clock` |
//! | `rpc` | the gRPC edge: request conversion, the body's authorization ([`roster::auth::Principal::may`]), response building | `feed::stream`, `registry`, `wire`, `error`, `records` |
//! | `feed::stream` | the task serving one `Watch` stream | `registry`, `wire`, `error`, `feed::snapshot` |
//! | `registry` | the actor that owns the state, batches writes, catches up with other replicas, publishes each committed generation | `registry::state`, `registry::absence`, `metrics`, `error`, `store`, `records`, `feed::snapshot`, `clock` |
//! | `metrics` | the server's own Prometheus metrics, served by [`roster::metrics_http`] | `feed::stream`, `registry::state`, `records` |
//! | `registry::state` | every registry rule, as a pure state machine; each collector's assignment with its snapshot entries | `records`, `assign`, `clock`, `feed::snapshot` |
//! | `registry::absence` | how long the server could not serve, from two clock readings | `clock` |
//! | [`wire`] | the feed's codec: snapshot chunks encoded straight from the shared snapshot | `error` |
//! | `error` | request errors and their one mapping to gRPC statuses | `store`, `records` |
//! | `store` | the `Store` interface and [`StoreError`]; `store::rows`, the rows both stores keep; `store::sqlite`, the SQLite file; `store::postgres`, a PostgreSQL database replicas share ([`PostgresUrl`]), and `store::postgres::replicas`, its write lock, catch-up, lead, heartbeats and listener | `records`, `clock` |
//! | `records` | what is persisted: the records, one load, one batch | — |
//! | [`feed::snapshot`] | a collector's assignment (a persistent map of encoded entries) and its snapshot: cut into chunks, with its digest (pure) | — |
//! | `assign` | rendezvous hashing with pins | — |
//! | [`clock`] | wall-clock and monotonic time, replaceable in tests | — |
//!
//! The table is in dependency order: a module uses only modules listed below it, so there is no cycle. Only what
//! the binary, the tests and the benchmark need is public; the rest is `pub(crate)`, so the compiler reports what
//! nothing uses.

mod assign;
pub mod clock;
mod config;
mod error;
pub mod feed;
mod metrics;
mod records;
mod registry;
mod rpc;
mod store;
pub mod wire;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use roster::{
    auth::AuthLayer,
    message_limit::MAX_REQUEST_BYTES,
    pb::registry_server::RegistryServer,
    transport::{Keepalive, ServeOptions, ServerTransport},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::{
    config::{
        Config, DEFAULT_ABSENCE_THRESHOLD, DEFAULT_CHUNK_LIMITS, DEFAULT_DATA_DIR, DEFAULT_DRAIN, DEFAULT_FORGET_AFTER,
        DEFAULT_GRACE, DEFAULT_HEARTBEAT, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_LEASE,
        DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN, DEFAULT_RECONNECT_RATE, DEFAULT_REPLICA_TIMEOUT, DEFAULT_SETTLE,
        DEFAULT_SWEEP_INTERVAL, StoreLocation, check_exposure,
    },
    store::{StoreError, postgres::PostgresUrl},
};
use crate::{
    feed::stream::{OpenStreams, StreamConfig},
    metrics::ServerMetrics,
    registry::{Registry, RegistryConfig, state::Rules},
    rpc::{FeedService, RegistryService},
    store::{Store, postgres::PostgresStore, sqlite::SqliteStore},
    wire::feed_server::assignment_feed_server::AssignmentFeedServer,
};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC transport failed.
    #[error("the gRPC transport failed")]
    Transport(#[from] tonic::transport::Error),
    /// The listener's address could not be read.
    #[error("cannot read the listener's address")]
    Io(#[from] std::io::Error),
    /// The metrics address ([`Config::metrics_listen`]) cannot be listened on.
    #[error("cannot listen on {address} to serve metrics")]
    MetricsListen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the store (`config.store`) and serves `roster.v1` (plus health and reflection) on `listener`, and its
/// metrics on `config.metrics_listen` if set, until `shutdown` completes; then stops serving metrics, ends every
/// feed stream with `UNAVAILABLE`, drains for at most `config.drain` and returns.
///
/// # Errors
/// When the metrics address cannot be listened on, the store cannot be opened or loaded, or the transport fails.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => {
            Some(TcpListener::bind(address).await.map_err(|source| ServerError::MetricsListen { address, source })?)
        }
        None => None,
    };
    let metrics_local = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let open_streams = Arc::new(OpenStreams::default());
    let (metrics, metrics_registry) = ServerMetrics::new(Arc::clone(&open_streams));
    let store: Box<dyn Store> = match &config.store {
        StoreLocation::Sqlite(dir) => Box::new(SqliteStore::open(dir, config.clock.now_ms()).await?),
        StoreLocation::Postgres(url) => {
            Box::new(PostgresStore::open(url, config.clock.now_ms(), config.replica_timeout).await?)
        }
    };
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
    let (registry, handle) = Registry::start(store, config.clock.clone(), registry_config, metrics).await?;
    let epoch = registry.epoch();
    let stop = CancellationToken::new();
    let actor = tokio::spawn(registry.run(stop.clone()));
    // An edited token file is in force within a second; a bad one is logged and the old one kept.
    if let Some(tokens) = config.auth.tokens() {
        tokio::spawn(tokens.clone().watch(stop.clone()));
    }
    // Metrics are served until shutdown begins (the token is cancelled when the server goes away).
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(roster::metrics_http::serve(listener, Arc::new(metrics_registry), stop.clone().cancelled_owned()))
    });

    let registry_service = RegistryService { registry: handle.clone() };
    let stream = StreamConfig {
        heartbeat: config.heartbeat,
        shutdown: stop.clone(),
        open: open_streams,
        reconnect_rate: config.reconnect_rate,
    };
    let feed_service = FeedService { registry: handle, stream };
    let options = ServeOptions {
        keepalive: Some(Keepalive { interval: config.keepalive_interval, timeout: config.keepalive_timeout }),
        drain: config.drain,
    };
    let metrics_at = metrics_local.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let tls = config.tls.as_ref().map_or("off", |_| "on");
    let auth = if config.auth.is_on() { "on" } else { "off" };
    info!(listen = %local, metrics = %metrics_at, tls, auth, store = %config.store, %epoch, "roster-server serving");
    let served = ServerTransport::new(options)
        .tls(config.tls.clone())
        .authenticate(AuthLayer::new(config.auth.clone()))
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
    if let Some(metrics_server) = metrics_server {
        // It drains within its own bound (`roster::metrics_http::DRAIN`), from when shutdown began.
        let _ = metrics_server.await;
    }
    info!("roster-server stopped");
    Ok(served?)
}
