//! `roster-server`: parses flags, sets up logging, binds, and runs the control plane until SIGTERM or SIGINT.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use humantime::Duration as HumanDuration;
use roster::{
    auth::{Authenticator, Reflection, tokens::TokenFile},
    domain::parse_lease_flag,
    metrics_http::MetricsListen,
    transport::{IdentityFiles, ServerTls, ServerTlsFiles},
};
use roster_server::{
    Config, DEFAULT_CHUNK_LIMITS, DEFAULT_DATA_DIR, DEFAULT_DRAIN, DEFAULT_FORGET_AFTER, DEFAULT_GRACE,
    DEFAULT_HEARTBEAT, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_LEASE, DEFAULT_LISTEN,
    DEFAULT_METRICS_LISTEN, DEFAULT_RECONNECT_RATE, DEFAULT_SETTLE, ServerError, StoreLocation, check_exposure,
    feed::snapshot::ChunkLimits,
};

/// The roster control plane.
///
/// Keeps the registry of metric producers and collectors in a durable store, leases producers, assigns them to
/// collectors, and streams each collector its assignment as versioned, chunked snapshots (roster.v1.AssignmentFeed).
/// Also serves grpc.health.v1.Health and server reflection (v1 and v1alpha), so `grpcurl -plaintext ADDR list`
/// works without proto files, and its own Prometheus metrics on --metrics-listen (GET /metrics).
///
/// Durations take units: 500ms, 10s, 5m, 1h. Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.
/// Stops cleanly on SIGTERM or SIGINT: open feed streams end with UNAVAILABLE so collectors reconnect at once.
#[derive(Debug, Parser)]
#[command(name = "roster-server", version, about, long_about, after_help = EXAMPLES)]
struct Args {
    /// Address to serve gRPC on. Use 0.0.0.0:PORT to accept other machines.
    #[arg(long, env = "ROSTER_SERVER_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Address to serve the server's Prometheus metrics on (GET /metrics, OpenMetrics text), or `off`. Use
    /// 0.0.0.0:PORT to let another machine's Prometheus scrape it.
    #[arg(long, env = "ROSTER_SERVER_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN, value_parser = MetricsListen::from_str)]
    metrics_listen: MetricsListen,

    /// Directory of the durable store, an embedded SQLite file (created if missing). Its epoch is made once, when
    /// the store is created; deleting the directory starts a new epoch. Same as --store sqlite://DIR.
    #[arg(long, env = "ROSTER_SERVER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,

    /// Where the durable store is, instead of --data-dir: sqlite://DIR, an embedded SQLite file in DIR (the
    /// default, in --data-dir), for one server; or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (postgresql://
    /// too; add ?sslmode=require or verify-full for TLS), a PostgreSQL database several roster-server replicas
    /// share: each takes any call and serves the feed, and one leads (README, "Replicas on PostgreSQL"). The first
    /// replica to start creates the schema and the epoch; a replica older than the schema refuses to start. The
    /// password is never logged.
    #[arg(long, env = "ROSTER_SERVER_STORE", value_name = "URL")]
    store: Option<StoreLocation>,

    /// Lease given to producers that ask for none: 10s to 24h, the bounds of a lease a registrant may ask for.
    /// Registrants renew at a quarter of it; a lapsed lease removes the producer.
    #[arg(long, env = "ROSTER_SERVER_LEASE", default_value_t = HumanDuration::from(DEFAULT_LEASE), value_parser = parse_lease)]
    lease: HumanDuration,

    /// How long a new store (a first start, or a wiped data directory) settles: serving time in which every live
    /// producer registers again. Until then its snapshots never make a collector coming from an older store drop
    /// a producer; when it settles, producers that did not come back are dropped. It must cover the longest
    /// renewal interval in use (a quarter of the longest lease registrants ask for); the default covers the
    /// longest lease allowed (1 day). Lower it if your producers use short leases.
    #[arg(long, env = "ROSTER_SERVER_SETTLE_PERIOD", default_value_t = HumanDuration::from(DEFAULT_SETTLE), value_parser = parse_duration)]
    settle_period: HumanDuration,

    /// How long a collector whose feed stream closed stays eligible, so a short blip does not move its
    /// producers away and back.
    #[arg(long, env = "ROSTER_SERVER_GRACE", default_value_t = HumanDuration::from(DEFAULT_GRACE), value_parser = parse_duration)]
    grace: HumanDuration,

    /// How long a departed collector (gone for longer than --grace) is kept, listed with its generation and last
    /// report, before the server forgets it. `roster collectors forget` forgets one at once.
    #[arg(
        long,
        env = "ROSTER_SERVER_FORGET_AFTER",
        default_value_t = HumanDuration::from(DEFAULT_FORGET_AFTER),
        value_parser = parse_duration
    )]
    forget_after: HumanDuration,

    /// Heartbeat interval of idle feed streams: at least 100ms.
    #[arg(long, env = "ROSTER_SERVER_HEARTBEAT", default_value_t = HumanDuration::from(DEFAULT_HEARTBEAT), value_parser = parse_heartbeat)]
    heartbeat: HumanDuration,

    /// Most producers in one snapshot chunk.
    #[arg(long, env = "ROSTER_SERVER_CHUNK_SIZE", default_value_t = DEFAULT_CHUNK_LIMITS.max_producers as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    chunk_size: u32,

    /// Most encoded bytes of producers in one snapshot chunk (must stay well below gRPC's 4 MiB message limit).
    #[arg(long, env = "ROSTER_SERVER_CHUNK_BYTES", default_value_t = DEFAULT_CHUNK_LIMITS.max_bytes as u32, value_parser = clap::value_parser!(u32).range(4096..=3 * 1024 * 1024))]
    chunk_bytes: u32,

    /// Longest wait for open calls to finish on shutdown.
    #[arg(long, env = "ROSTER_SERVER_DRAIN", default_value_t = HumanDuration::from(DEFAULT_DRAIN), value_parser = parse_duration)]
    drain: HumanDuration,

    /// On shutdown, collectors are told when to reconnect (grpc-retry-pushback-ms), spread so that about this many
    /// come back per second (over at most 10 s): a restart is not met by the whole fleet at once.
    #[arg(long, env = "ROSTER_SERVER_RECONNECT_RATE", default_value_t = DEFAULT_RECONNECT_RATE, value_parser = clap::value_parser!(u32).range(1..))]
    reconnect_rate: u32,

    /// HTTP/2 keepalive: ping interval. A dead peer or half-open connection is dropped after interval + timeout.
    #[arg(long, env = "ROSTER_SERVER_KEEPALIVE_INTERVAL", default_value_t = HumanDuration::from(DEFAULT_KEEPALIVE_INTERVAL), value_parser = parse_duration)]
    keepalive_interval: HumanDuration,

    /// HTTP/2 keepalive: how long a ping may go unanswered.
    #[arg(long, env = "ROSTER_SERVER_KEEPALIVE_TIMEOUT", default_value_t = HumanDuration::from(DEFAULT_KEEPALIVE_TIMEOUT), value_parser = parse_duration)]
    keepalive_timeout: HumanDuration,

    /// Token file, turning authentication on: every call but health needs a token listed there (or a client
    /// certificate). One credential a line, `ROLE[:BINDING] sha256:HEX`, hashes only; `roster auth token` makes
    /// entries. Re-read when it changes; a bad new file is logged, naming the line, and the old one stays in force.
    #[arg(long, env = "ROSTER_SERVER_AUTH_TOKENS", value_name = "FILE")]
    auth_tokens: Option<PathBuf>,

    /// With authentication on, let anyone use server reflection (it shows the public roster.v1 schema, nothing of
    /// the registry). By default reflection needs a credential like every call but health.
    #[arg(long, env = "ROSTER_SERVER_OPEN_REFLECTION")]
    open_reflection: bool,

    /// Serve on a non-loopback address without TLS and authentication. Anyone who reaches the port can then change
    /// the registry: only for a network you trust. Without it, such a listen address is refused at start.
    #[arg(long, env = "ROSTER_SERVER_INSECURE")]
    insecure: bool,

    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first); needs --tls-key. Reloaded without a
    /// restart when the file changes or on SIGHUP; open streams keep their connection.
    #[arg(long, env = "ROSTER_SERVER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "ROSTER_SERVER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that client certificates are verified against (mutual TLS). A client that presents a
    /// certificate must present one this CA signed; see --tls-client-cert-required. With it, authentication is on:
    /// a client certificate's roster:// URI SAN names the caller (docs/SECURITY.md).
    #[arg(long, env = "ROSTER_SERVER_TLS_CA", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,

    /// Refuse TLS clients that present no certificate signed by --tls-ca. Without it, such a client may connect
    /// and authenticate otherwise (a bearer token).
    #[arg(long, env = "ROSTER_SERVER_TLS_CLIENT_CERT_REQUIRED", requires = "tls_ca")]
    tls_client_cert_required: bool,
}

const EXAMPLES: &str = "Examples:
  roster-server
  roster-server --listen 0.0.0.0:50051 --data-dir /var/lib/roster
  roster-server --store postgres://roster@db.internal/roster?sslmode=verify-full
  roster-server --tls-cert server.pem --tls-key server-key.pem --tls-ca ca.pem
  roster-server --metrics-listen 0.0.0.0:9471
  roster-server --listen 0.0.0.0:50051 --auth-tokens /etc/roster/tokens --tls-cert server.pem --tls-key server.key
  ROSTER_SERVER_LEASE=1m roster-server --grace 30s";

/// A default lease within the bounds a registrant's own lease must keep (`roster::domain::parse_lease_flag`, the
/// CLI's and the demo producer's): the server never gives a producer a lease it could not have asked for.
fn parse_lease(s: &str) -> Result<HumanDuration, String> {
    parse_lease_flag(s).map(HumanDuration::from)
}

/// A heartbeat of at least [`Config::MIN_HEARTBEAT`]: a shorter one only spins the server (a timer firing without
/// pause for each idle stream).
fn parse_heartbeat(s: &str) -> Result<HumanDuration, String> {
    let d = parse_duration(s)?;
    if *d < Config::MIN_HEARTBEAT {
        return Err(format!(
            "{s} is too short: use at least {} (a heartbeat only tells an idle collector the feed is alive)",
            humantime::format_duration(Config::MIN_HEARTBEAT)
        ));
    }
    Ok(d)
}

/// A duration of more than zero. Kept as [`HumanDuration`], whose display is humantime's, so a default is shown in
/// `--help` as it would be written (`5m`, `10s`).
fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 10s, 5m)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d.into())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    roster::process::exit("roster-server", start().await)
}

async fn start() -> anyhow::Result<()> {
    roster::transport::tls::install_crypto_provider();
    let args = Args::parse();
    roster::process::init_tracing();
    let mut config = Config::new(&args.data_dir);
    if let Some(store) = args.store {
        anyhow::ensure!(
            args.data_dir == Path::new(DEFAULT_DATA_DIR),
            "--store and --data-dir both say where the store is: give one (--data-dir DIR is --store sqlite://DIR)"
        );
        config.store = store;
    }
    config.metrics_listen = args.metrics_listen.address();
    let (lease, settle_period): (Duration, Duration) = (args.lease.into(), args.settle_period.into());
    config.lease = lease;
    config.grace = args.grace.into();
    anyhow::ensure!(
        settle_period >= lease / 4,
        "--settle-period {} is shorter than one renewal interval of --lease {} ({}): producers on the default lease \
         could not register again before a new store settles; raise --settle-period or lower --lease",
        args.settle_period,
        args.lease,
        humantime::format_duration(lease / 4),
    );
    config.settle = settle_period;
    config.forget_after = args.forget_after.into();
    config.heartbeat = args.heartbeat.into();
    config.chunk_limits = ChunkLimits { max_producers: args.chunk_size as usize, max_bytes: args.chunk_bytes as usize };
    config.drain = args.drain.into();
    config.reconnect_rate = args.reconnect_rate;
    config.keepalive_interval = args.keepalive_interval.into();
    config.keepalive_timeout = args.keepalive_timeout.into();
    let client_certificates = args.tls_ca.is_some();
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        let files = ServerTlsFiles {
            identity: IdentityFiles { cert, key },
            client_ca: args.tls_ca,
            client_cert_required: args.tls_client_cert_required,
        };
        config.tls = Some(ServerTls::load(files).context("cannot serve TLS (--tls-cert, --tls-key, --tls-ca)")?);
    }
    // Authentication is on with a token file, or with client certificates to read identities from.
    if args.auth_tokens.is_some() || client_certificates {
        let tokens = args.auth_tokens.as_ref().map(TokenFile::load).transpose().context("--auth-tokens")?;
        let reflection = if args.open_reflection { Reflection::Open } else { Reflection::Authenticated };
        config.auth = Authenticator::on(tokens, reflection);
    }
    check_exposure(args.listen, config.tls.is_some(), config.auth.is_on(), args.insecure)
        .map_err(anyhow::Error::msg)?;
    if args.insecure && !args.listen.ip().is_loopback() && !(config.tls.is_some() && config.auth.is_on()) {
        tracing::warn!(
            listen = %args.listen,
            tls = config.tls.is_some(),
            auth = config.auth.is_on(),
            "serving another network without TLS and authentication (--insecure): whoever reaches this port may \
             change the registry"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server running there? use --listen)", args.listen))?;
    roster_server::run(listener, config, roster::process::shutdown_signal()).await.map_err(|e| match e {
        ServerError::MetricsListen { address, source } => anyhow::Error::new(source).context(format!(
            "cannot listen on {address} to serve metrics (is another server running there? use --metrics-listen, or \
             --metrics-listen off)"
        )),
        e => e.into(),
    })
}
