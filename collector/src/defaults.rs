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

/// The sink flushes a destination when its queue runs empty, but at most this often: a thousand targets finishing
/// their scrapes one after another would otherwise cost a file write each (measured: some 12 % of the collector's
/// CPU at 1 000 targets × 200 series). What waits is flushed when the time is up, so a sample is at most this late
/// in the file.
pub const SINK_FLUSH_EVERY: Duration = Duration::from_millis(50);

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

/// Remote-write: parallel senders per receiver. Each series is pinned to one shard (by a hash of its labels), so
/// the samples of a series arrive in time order while the shards' requests overlap. Prometheus adjusts its shard
/// count between 1 and 50 by load; a fixed 4 keeps a receiver's round trips off the critical path on a small host.
pub const REMOTE_WRITE_SHARDS: usize = 4;

/// Remote-write: most samples in one request. Prometheus 2.42 sends 500; Prometheus raised its default to 2000 in
/// 2.44 (prometheus/prometheus PR 12203: per-request overheads spread over more samples), which roster takes.
pub const REMOTE_WRITE_MAX_SAMPLES_PER_SEND: usize = 2000;

/// Remote-write: most bytes of one request's protobuf before compression (a single series larger than this goes
/// alone). Some 1 KiB per sample at [`REMOTE_WRITE_MAX_SAMPLES_PER_SEND`] stays under it; receivers refuse bodies
/// of tens of MiB.
pub const REMOTE_WRITE_MAX_BYTES_PER_SEND: usize = 4 * 1024 * 1024;

/// Remote-write: how long one request may take before it is cut and retried (Prometheus's `remote_timeout`).
pub const REMOTE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Remote-write: the backoff between retries of a request (5xx, 429, network errors, timeouts), forever, as
/// Prometheus's `min_backoff` 30 ms and `max_backoff` 5 s, each delay shortened by up to half at random.
pub const REMOTE_WRITE_BACKOFF: BackoffPolicy =
    BackoffPolicy { initial: Duration::from_millis(30), cap: Duration::from_secs(5), jitter: 0.5, max_attempts: None };

/// Remote-write: the longest wait a receiver's `Retry-After` is taken for; a longer one is cut to this, so a
/// receiver's mistake cannot stall delivery for hours.
pub const REMOTE_WRITE_RETRY_AFTER_MAX: Duration = Duration::from_secs(5 * 60);

/// Remote-write: how many full requests per shard the sender takes from the disk queue at a time (a window, split
/// over the shards and acknowledged once all of it is delivered): several, so that a shard's requests follow each
/// other without a pause for the next window.
pub const REMOTE_WRITE_WINDOW_REQUESTS: usize = 4;

/// Remote-write: how much of a receiver's answer to a refused request is kept as the reason it gives (its first
/// line, cut at this many bytes).
pub const REMOTE_WRITE_REASON_BYTES: usize = 256;

/// Remote-write: how many distinct reasons for refused samples are counted apart; refusals for further reasons
/// are counted together, so a receiver that words every refusal differently cannot grow the collector's memory
/// or its metrics without bound.
pub const REMOTE_WRITE_MAX_REASONS: usize = 16;

/// The disk queue's default fsync policy syncs what was appended at most this long after (a power loss costs at
/// most about this much; a process crash costs nothing).
pub const QUEUE_FSYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A disk-queue segment is closed, and a new one begun, at this size. The byte bound drops whole segments, so this
/// is also how much one drop takes.
pub const QUEUE_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Remote-write: the most disk one receiver's queue takes (in its own directory under the data directory); past
/// it, the oldest queued samples are dropped, counted. At some 120 bytes a sample on disk (node_exporter-like
/// series, queued uncompressed), 1 GiB holds about nine million samples: a 10-minute outage of a collector writing
/// some 15 thousand samples a second.
pub const REMOTE_WRITE_QUEUE_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// How much older than its newest sample Prometheus's head still takes one: half a block, an hour. An older one is
/// refused ("out of bounds"), and by a remote-write receiver with the whole request that holds it.
pub const PROMETHEUS_OLDEST_SAMPLE: Duration = Duration::from_secs(60 * 60);

/// Remote-write: queued samples older than this are dropped, counted, instead of sent: Prometheus would refuse them
/// ([`PROMETHEUS_OLDEST_SAMPLE`]); sending them would only cost requests.
pub const REMOTE_WRITE_QUEUE_MAX_AGE: Duration = PROMETHEUS_OLDEST_SAMPLE;

/// How many bytes of JSON lines the JSON-lines exporter gathers before it writes them without waiting for a flush
/// (it writes whatever it holds at each flush; see [`SINK_FLUSH_EVERY`]).
pub const JSONL_WRITE_BYTES: usize = 256 * 1024;
