//! `roster-collector`: parses flags, sets up logging, binds the status address, and runs until SIGTERM/SIGINT.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser};
use roster::{
    auth::CallCredentials,
    domain::CollectorId,
    endpoint::ServerUrl,
    metrics_http::MetricsListen,
    transport::{IdentityFiles, PeerTlsFiles},
};
use roster_collector::{CollectorError, Destination, defaults};

/// A roster metrics collector.
///
/// Follows its assignment feed from roster-server and collects every producer in it at the producer's interval,
/// writing samples as JSON lines to the sink: roster.v1.Producer/Collect over gRPC, or a Prometheus target
/// (text 0.0.4 or OpenMetrics over http/https) scraped as Prometheus scrapes it, with `up`, the other report
/// series and staleness markers. It never lets a failure of the
/// control plane shrink what it collects: the applied snapshot is kept in the data directory and collected
/// from at start, before any server answers; only complete snapshots are applied; through any outage the last
/// known set stays in force while the feed reconnects with capped backoff.
///
/// Its status (connection, applied generation, discards, per-producer counters) is served as
/// roster.v1.CollectorStatus on --listen, with health and reflection, so grpcurl works; its Prometheus metrics on
/// --metrics-listen.
#[derive(Debug, Parser)]
#[command(name = "roster-collector", version, about, long_about, after_help = EXAMPLES)]
struct Args {
    /// roster-server URL(s) as http://host:port (or https://host:port, with --tls-ca), comma-separated; on failure
    /// the next one is tried. A value that is not a URL so (no scheme, a port outside 1-65535, a bad host) stops the
    /// collector at start.
    #[arg(
        long,
        env = "ROSTER_COLLECTOR_SERVER",
        default_value = defaults::SERVER,
        value_delimiter = ',',
        value_parser = ServerUrl::from_str
    )]
    server: Vec<ServerUrl>,

    /// Data directory: the collector's id, its applied snapshot and (by default) its sink.
    #[arg(long, env = "ROSTER_COLLECTOR_DATA_DIR", default_value = defaults::DATA_DIR)]
    data_dir: PathBuf,

    /// Address of the status API (roster.v1.CollectorStatus).
    #[arg(long, env = "ROSTER_COLLECTOR_LISTEN", default_value = defaults::LISTEN)]
    listen: SocketAddr,

    /// Address to serve the collector's Prometheus metrics on (GET /metrics, OpenMetrics text), or `off`. Use
    /// 0.0.0.0:PORT to let another machine's Prometheus scrape it.
    #[arg(
        long,
        env = "ROSTER_COLLECTOR_METRICS_LISTEN",
        default_value = defaults::METRICS_LISTEN,
        value_parser = MetricsListen::from_str
    )]
    metrics_listen: MetricsListen,

    /// Where samples go; repeat it for several destinations, each with its own queue, so that one slow or down
    /// destination never holds back the others or collection. jsonl=PATH (or a bare PATH) appends JSON lines to a
    /// file. Default: jsonl=DATA_DIR/samples.jsonl.
    #[arg(long, env = "ROSTER_COLLECTOR_SINK", value_delimiter = ';', value_parser = Destination::from_str)]
    sink: Vec<Destination>,

    /// Use this collector id instead of the one kept in the data directory.
    #[arg(long, env = "ROSTER_COLLECTOR_ID", value_parser = CollectorId::from_str)]
    id: Option<CollectorId>,

    /// HTTP/2 keepalive ping interval on the feed connection: how often a silent server is probed.
    #[arg(
        long,
        env = "ROSTER_COLLECTOR_KEEPALIVE_INTERVAL",
        default_value_t = defaults::KEEPALIVE_INTERVAL.into(),
        value_parser = at_least_10ms
    )]
    keepalive_interval: humantime::Duration,

    /// How long a keepalive ping may go unanswered before the feed connection is dropped and the next server
    /// tried. A half-open connection is noticed within interval + timeout.
    #[arg(
        long,
        env = "ROSTER_COLLECTOR_KEEPALIVE_TIMEOUT",
        default_value_t = defaults::KEEPALIVE_TIMEOUT.into(),
        value_parser = at_least_10ms
    )]
    keepalive_timeout: humantime::Duration,

    /// Hard cap on the delay between feed reconnect attempts (they start at 200ms and double, with jitter that
    /// only shortens them). No delay ever exceeds it.
    #[arg(
        long,
        env = "ROSTER_COLLECTOR_RECONNECT_MAX_DELAY",
        default_value_t = defaults::RECONNECT_BACKOFF.cap.into(),
        value_parser = at_least_10ms
    )]
    reconnect_max_delay: humantime::Duration,

    /// File holding the bearer token sent on the feed and with every report (a collector token bound to this
    /// collector's id; `roster auth token --role collector --binding ID`). Re-read when it changes. A refused
    /// token is logged; the collector keeps collecting its last known set and retries with its backoff.
    #[arg(long, env = "ROSTER_COLLECTOR_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// CA bundle (PEM) that the server's certificate is verified against, for https:// --server URLs; it also
    /// verifies the client certificates of status API callers when --tls-cert is given.
    #[arg(long, env = "ROSTER_COLLECTOR_TLS_CA")]
    tls_ca: Option<PathBuf>,

    /// This collector's certificate chain (PEM): it serves the status API over TLS and is presented to the server
    /// for mutual TLS (so it needs both serverAuth and clientAuth usages). Needs --tls-key; reloaded for the status
    /// API when the file changes or on SIGHUP.
    #[arg(long, env = "ROSTER_COLLECTOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "ROSTER_COLLECTOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Call every gRPC producer (roster.v1.Producer) over TLS, verifying it with --tls-ca and presenting
    /// --tls-cert. Prometheus targets choose http or https each, in their registration.
    #[arg(long, env = "ROSTER_COLLECTOR_PRODUCER_TLS", requires = "tls_ca")]
    producer_tls: bool,
}

/// A duration such as `500ms` or `30s`, at least 10 ms: shorter ones would make the feed spin.
fn at_least_10ms(text: &str) -> Result<humantime::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 10s, 1m)"))?;
    if duration < Duration::from_millis(10) {
        return Err(format!("{text} is too short: use at least 10ms"));
    }
    Ok(duration.into())
}

const EXAMPLES: &str = "Examples:
  roster-collector
  roster-collector --server http://10.0.0.5:50051,http://10.0.0.6:50051 --data-dir /var/lib/roster-collector
  roster-collector --server https://roster.example:50051 --tls-ca ca.pem --tls-cert collector.pem --tls-key collector-key.pem
  grpcurl -plaintext 127.0.0.1:50061 roster.v1.CollectorStatus/GetStatus
  curl http://127.0.0.1:9472/metrics";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    roster::process::exit("roster-collector", start().await)
}

async fn start() -> anyhow::Result<()> {
    roster::transport::tls::install_crypto_provider();
    let args = Args::parse();
    roster::process::init_tracing();
    // A usage error (exit 2, as clap's own), before anything is made.
    if let Err(e) = ServerUrl::check_tls_all(&args.server, args.tls_ca.is_some(), "--tls-ca") {
        Args::command().error(clap::error::ErrorKind::ValueValidation, format!("--server: {}", e.0)).exit();
    }
    let files =
        PeerTlsFiles { ca: args.tls_ca.clone(), identity: IdentityFiles::from_flags(args.tls_cert, args.tls_key) };
    let tls = files.client().context("cannot use the TLS files (--tls-ca, --tls-cert, --tls-key)")?;
    let status_tls =
        files.server().context("cannot serve the status API over TLS (--tls-cert, --tls-key, --tls-ca)")?;
    let mut config = roster_collector::Config::new(args.server, &args.data_dir);
    config.producer_tls = if args.producer_tls { tls.clone() } else { None };
    config.tls = tls;
    config.status_tls = status_tls;
    config.metrics_listen = args.metrics_listen.address();
    config.sinks = args.sink;
    config.id = args.id;
    config.keepalive_interval = args.keepalive_interval.into();
    config.keepalive_timeout = args.keepalive_timeout.into();
    config.backoff.cap = args.reconnect_max_delay.into();
    config.backoff.initial = config.backoff.initial.min(config.backoff.cap);
    if let Some(path) = &args.token_file {
        config.credentials = CallCredentials::from_token_file(path).context("--token-file")?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("cannot listen on {} (is another collector running there? use --listen)", args.listen)
    })?;
    roster_collector::run(listener, config, roster::process::shutdown_signal()).await.map_err(|e| match e {
        CollectorError::MetricsListen { address, source } => anyhow::Error::new(source).context(format!(
            "cannot listen on {address} to serve metrics (is another collector running there? use --metrics-listen, \
             or --metrics-listen off)"
        )),
        e => e.into(),
    })
}
