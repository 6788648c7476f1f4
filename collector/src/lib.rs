//! # roster-collector
//!
//! Follows this collector's assignment feed and collects every producer in it, and never lets a failure of the
//! control plane shrink what it collects: it starts collecting its persisted set before it reaches any server,
//! applies only complete snapshots (C1–C3), and keeps its last known set through any outage.
//!
//! | module | owns |
//! |---|---|
//! | [`defaults`] | every default, once |
//! | [`identity`] | the collector's UUID in its data directory (public: `roster up --secure` names it in a certificate) |
//! | `reconciler` | running tasks ↔ applied snapshot, touching only what changed (C6) |
//! | `producer_task` | one task per producer (handle/actor): the schedule and the counters |
//! | `scrape` | the producer protocols, one scraper per kind of producer (`roster.v1.Producer`, Prometheus HTTP) |
//! | `exposition` | the Prometheus text and OpenMetrics formats, parsed as Prometheus 2.42 parses them |
//! | `sample` | one collected sample, from scraper to exporter |
//! | `sink` | the bounded queue that never blocks collection, and its writer task |
//! | `disk_queue` | the durable FIFO of records on disk in front of a remote-write receiver: checksummed segments, bounded by bytes and age |
//! | `export` | the destinations behind the queue, one exporter per kind (JSON lines today) |
//! | `status` | `roster.v1.CollectorStatus` |
//! | `metrics` | the collector's own Prometheus metrics, served by [`roster::metrics_http`] |
//!
//! The feed itself (connect, assemble, persist, report, reconnect) is [`roster::follower`].

pub mod defaults;
mod disk_queue;
mod export;
mod exposition;
pub mod identity;
mod metrics;
mod producer_task;
mod reconciler;
mod sample;
mod scrape;
mod sink;
mod status;

pub use disk_queue::QueueError;
pub use export::{Destination, DestinationError};
pub use identity::IdentityError;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use roster::{
    domain::{CollectorId, SupportedKinds},
    endpoint::ServerUrl,
    follower::{Follower, FollowerConfig, FollowerError},
    message_limit::MAX_REQUEST_BYTES,
    pb::collector_status_server::CollectorStatusServer,
    transport::{ClientTls, ServeOptions, ServerTls, ServerTransport},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    export::{Kind, jsonl::JsonLines, remote_write::RemoteWrite},
    metrics::ScrapeMetrics,
    reconciler::Reconciler,
    sink::SinkBuilder,
    status::StatusService,
};

/// Settings of a collector; [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server URLs, tried in turn.
    pub servers: Vec<ServerUrl>,
    /// Data directory: id, applied snapshot, and the default sink.
    pub data_dir: PathBuf,
    /// Where to serve the collector's Prometheus metrics (`GET /metrics`); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Where samples go, each destination with its own queue; none means JSON lines in [`defaults::SINK_FILE`] in
    /// `data_dir`.
    pub sinks: Vec<Destination>,
    /// Overrides the id kept in the data directory.
    pub id: Option<CollectorId>,
    /// HTTP/2 keepalive ping interval of the feed connection.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive timeout of the feed connection.
    pub keepalive_timeout: Duration,
    /// Reconnect backoff of the feed.
    pub backoff: roster::backoff::BackoffPolicy,
    /// What the feed and its reports carry to authenticate (a collector token bound to this collector's id).
    pub credentials: roster::auth::CallCredentials,
    /// How `https://` servers are dialled: their CA and, for mutual TLS, this collector's certificate.
    pub tls: Option<ClientTls>,
    /// TLS on the status API (reloaded when its files change); `None` serves plaintext.
    pub status_tls: Option<ServerTls>,
    /// When set, every `roster.v1.Producer` is called over TLS with it; `None` calls them in plaintext.
    pub producer_tls: Option<ClientTls>,
}

impl Config {
    /// The [`defaults`], with `servers` and `data_dir`, no metrics served and no TLS.
    pub fn new(servers: Vec<ServerUrl>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            servers,
            data_dir: data_dir.into(),
            metrics_listen: None,
            sinks: Vec::new(),
            id: None,
            keepalive_interval: defaults::KEEPALIVE_INTERVAL,
            keepalive_timeout: defaults::KEEPALIVE_TIMEOUT,
            backoff: defaults::RECONNECT_BACKOFF,
            credentials: roster::auth::CallCredentials::none(),
            tls: None,
            status_tls: None,
            producer_tls: None,
        }
    }

    /// The applied snapshot's file for `id`.
    pub fn state_file(&self, id: CollectorId) -> PathBuf {
        self.data_dir.join(format!("snapshot-{id}.bin"))
    }
}

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The data directory cannot be created.
    #[error("cannot create data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The identity cannot be had.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The follower cannot start (no server URL, damaged state file).
    #[error(transparent)]
    Follower(#[from] FollowerError),
    /// The data directory cannot be written: the applied snapshot is saved there (C5), and by default the samples.
    #[error(
        "data directory {} is not writable; the collector saves its applied snapshot there: make it writable, free \
         space, or point --data-dir elsewhere",
        path.display()
    )]
    DataDirNotWritable {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON-lines file (`--sink`) cannot be opened for appending.
    #[error(
        "--sink {}: cannot append to this samples file: fix its permissions or its directory, or give another path",
        path.display()
    )]
    Sink {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The same destination was given twice (`--sink`).
    #[error("--sink {0} is given twice: give each file or receiver URL once")]
    SinkTwice(String),
    /// A remote-write receiver's disk queue cannot be opened.
    #[error("cannot open the disk queue of {receiver}")]
    Queue {
        /// The receiver (its `--sink` value, without options).
        receiver: String,
        /// Why.
        #[source]
        source: QueueError,
    },
    /// The status server failed.
    #[error("the status server failed")]
    Transport(#[from] tonic::transport::Error),
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

/// Runs the collector, serving its status on `listener` and its metrics on `config.metrics_listen` if set, until
/// `shutdown` completes; then stops serving metrics, stops every task (after collections in flight), flushes the
/// sink and returns.
///
/// # Errors
/// When the metrics address cannot be listened on, the data directory, identity or state file cannot be used, or
/// the status server fails.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let metrics_listener = match config.metrics_listen {
        Some(address) => {
            Some(TcpListener::bind(address).await.map_err(|source| CollectorError::MetricsListen { address, source })?)
        }
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| CollectorError::DataDir { path: config.data_dir.clone(), source })?;
    // Saving an applied snapshot would fail at every try, and the server would never have a report (C5): say so now.
    roster::process::check_writable(&config.data_dir)
        .map_err(|source| CollectorError::DataDirNotWritable { path: config.data_dir.clone(), source })?;
    let id = identity::load_or_create(&config.data_dir, config.id)?;
    let mut follower_config = FollowerConfig::new(config.servers.clone(), id);
    follower_config.state_file = Some(config.state_file(id));
    follower_config.keepalive_interval = config.keepalive_interval;
    follower_config.keepalive_timeout = config.keepalive_timeout;
    follower_config.backoff = config.backoff;
    follower_config.credentials = config.credentials.clone();
    follower_config.tls = config.tls.clone();
    // Every kind has its scraper here (`scrape`).
    follower_config.supported_kinds = SupportedKinds::ALL;
    let instance = follower_config.instance;
    let (follower, handle) = Follower::new(follower_config)?;

    let (sink, sinks, sink_writers) = start_sinks(&config)?;
    let scrape_metrics = ScrapeMetrics::default();
    let metrics_registry = metrics::registry(&scrape_metrics, &handle, sinks.clone());
    let reconciler = Reconciler::new(id, sink, scrape_metrics, config.producer_tls.clone());
    let views = reconciler.views();
    let stop = CancellationToken::new();
    let metrics_local = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    // Metrics are served until shutdown begins.
    let going_away = CancellationToken::new();
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(roster::metrics_http::serve(
            listener,
            Arc::new(metrics_registry),
            going_away.clone().cancelled_owned(),
        ))
    });
    let persisted = handle.applied.borrow().clone();
    // C5: collect the persisted set at once, before any server answers.
    let reconcile_task = reconciler.start(handle.applied.clone(), stop.clone()).await;
    let follower_task = tokio::spawn(follower.run(stop.clone()));

    let status = StatusService { collector: id, instance, follower: handle, tasks: views, sinks: sinks.clone() };
    let local = listener.local_addr().ok();
    info!(
        collector.id = %id,
        instance = ?instance,
        status = ?local,
        metrics = %metrics_local.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        servers = %ServerUrl::joined(&config.servers),
        data_dir = %config.data_dir.display(),
        sinks = %sinks.iter().map(|s| format!("{}={}", s.kind, s.destination)).collect::<Vec<_>>().join(","),
        resumed = persisted.as_ref().map_or(0, |s| s.targets.len()),
        "roster-collector running"
    );
    // Status calls are quick: the default drain is ample, and the collector's own shutdown goes on after it.
    let served = ServerTransport::new(ServeOptions::default())
        .tls(config.status_tls.clone())
        .add_service(CollectorStatusServer::new(status).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve(listener, async {
            shutdown.await;
            going_away.cancel();
            info!("shutting down: stopping collection tasks, flushing the sink");
        })
        .await;
    going_away.cancel();
    stop.cancel();
    let _ = follower_task.await;
    if tokio::time::timeout(defaults::STOP_TASKS_WITHIN, reconcile_task).await.is_err() {
        warn!("collection tasks did not stop within {} s", defaults::STOP_TASKS_WITHIN.as_secs());
    }
    let flushed = async {
        for writer in sink_writers {
            let _ = writer.await;
        }
    };
    if tokio::time::timeout(defaults::FLUSH_SINK_WITHIN, flushed).await.is_err() {
        warn!("the sink did not flush within {} s", defaults::FLUSH_SINK_WITHIN.as_secs());
    }
    if let Some(metrics_server) = metrics_server {
        // It drains within its own bound (`roster::metrics_http::DRAIN`), from when shutdown began.
        let _ = metrics_server.await;
    }
    info!("roster-collector stopped");
    Ok(served?)
}

/// Starts a writer for each of `config.sinks` (or for the default JSON-lines file).
fn start_sinks(config: &Config) -> Result<sink::Started, CollectorError> {
    let default = [Destination::json_lines(config.data_dir.join(defaults::SINK_FILE))];
    let destinations = if config.sinks.is_empty() { &default[..] } else { &config.sinks[..] };
    // Two remote-write sinks to one URL would share one disk queue; two JSON-lines sinks, one file.
    for (i, destination) in destinations.iter().enumerate() {
        if destinations[..i].iter().any(|earlier| earlier.to_string() == destination.to_string()) {
            return Err(CollectorError::SinkTwice(destination.to_string()));
        }
    }
    let mut builder = SinkBuilder::default();
    for destination in destinations {
        builder = match destination.kind() {
            Kind::JsonLines(path) => {
                let exporter = JsonLines::open(path.clone())
                    .map_err(|source| CollectorError::Sink { path: path.clone(), source })?;
                builder.add(exporter, None)
            }
            Kind::RemoteWrite(receiver) => {
                let (exporter, stats) = RemoteWrite::start(receiver, &config.data_dir)
                    .map_err(|source| CollectorError::Queue { receiver: receiver.to_string(), source })?;
                builder.add(exporter, Some(stats))
            }
        };
    }
    Ok(builder.build())
}
