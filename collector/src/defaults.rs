//! Every default of roster-collector, defined once: [`Config::new`](crate::Config::new), the flags of the
//! `roster-collector` binary and the tasks read them here.

use std::time::Duration;

use roster::{backoff::BackoffPolicy, follower};

/// The roster-server to follow (`--server`; also where `roster-demo-producer` registers).
pub const SERVER: &str = roster::endpoint::DEFAULT_SERVER_URL;

/// The data directory (`--data-dir`).
pub const DATA_DIR: &str = "./roster-data/collector";

/// The address of the status API (`--listen`).
pub const LISTEN: &str = roster::endpoint::DEFAULT_COLLECTOR_LISTEN;

/// Where `roster-collector` serves its Prometheus metrics (`--metrics-listen`): loopback only, on a port of its own,
/// beside the server's 9471. [`Config::new`](crate::Config::new) serves none: a collector embedded in another
/// program (a test, `roster up`) opts in.
pub const METRICS_LISTEN: &str = "127.0.0.1:9472";

/// The sink file, inside the data directory, unless `--sink` names another.
pub const SINK_FILE: &str = "samples.jsonl";

/// HTTP/2 keepalive ping interval of the feed connection (`--keepalive-interval`).
pub const KEEPALIVE_INTERVAL: Duration = follower::DEFAULT_KEEPALIVE_INTERVAL;

/// How long a keepalive ping may go unanswered (`--keepalive-timeout`).
pub const KEEPALIVE_TIMEOUT: Duration = follower::DEFAULT_KEEPALIVE_TIMEOUT;

/// The feed's reconnect backoff (R4); its cap is `--reconnect-max-delay`.
pub const RECONNECT_BACKOFF: BackoffPolicy = BackoffPolicy::FEED;

/// Batches the sink's queue holds, at most; a batch that finds it full is dropped and counted.
pub const SINK_QUEUE_BATCHES: usize = 1024;

/// The deadline of one collection, as a share of the producer's interval (up to [`COLLECT_TIMEOUT_MAX`]), when
/// the producer sets none of its own (a Prometheus target's scrape timeout).
pub const COLLECT_TIMEOUT_SHARE: f64 = 0.8;

/// The longest default deadline of one collection.
pub const COLLECT_TIMEOUT_MAX: Duration = Duration::from_secs(30);

/// The largest body taken from a Prometheus target, counted after gzip is undone; a body of this size or more
/// fails its scrape (Prometheus's `body_size_limit`, which is off by default there: here a target cannot make the
/// collector buffer without bound). node_exporter answers with some 100 KiB; the largest exporters with tens of
/// MiB.
pub const SCRAPE_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How long an idle HTTP connection to a Prometheus target is kept for the next scrape (Prometheus keeps them
/// 5 minutes).
pub const SCRAPE_IDLE_CONNECTION: Duration = Duration::from_secs(5 * 60);

/// How long connecting to a Prometheus target may take, at most (the scrape's own deadline is usually shorter).
pub const SCRAPE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer taken from a producer.
pub const MAX_PRODUCER_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// On shutdown, how long the collection tasks get to finish the collections in flight.
pub const STOP_TASKS_WITHIN: Duration = Duration::from_secs(30);

/// On shutdown, how long the sink gets to write what is queued.
pub const FLUSH_SINK_WITHIN: Duration = Duration::from_secs(30);

/// How many bytes of JSON lines the JSON-lines exporter gathers before it writes them without waiting for a flush
/// (it writes whatever it holds at each flush, and the sink flushes whenever its queue runs empty).
pub const JSONL_WRITE_BYTES: usize = 256 * 1024;
