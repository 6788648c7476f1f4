//! `roster-demo-producer`: a producer serving a few synthetic metrics, registered with roster-server and kept
//! registered (renewed at a quarter of its lease, deregistered on exit). Used by tests, benchmarks and
//! `roster up` (which runs the same code, `roster::producer::run_demo`, in its own process).

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser};
use roster::{
    auth::CallCredentials,
    domain::{ProducerId, labels_from_flags, parse_interval_flag, parse_label_flag, parse_lease_flag},
    endpoint::ServerUrl,
    producer::{DemoOptions, run_demo},
    transport::{IdentityFiles, PeerTlsFiles},
};
use roster_collector::defaults;

/// A demo metrics producer for roster.
///
/// Serves roster.v1.Producer on --listen with three synthetic metrics (demo_up, demo_collections_total,
/// demo_wave) and keeps itself registered with roster-server, so a collector is assigned to collect it.
#[derive(Debug, Parser)]
#[command(name = "roster-demo-producer", version, about, long_about)]
struct Args {
    /// Address to serve roster.v1.Producer on (port 0 picks a free port).
    #[arg(long, env = "ROSTER_PRODUCER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// roster-server URL to register with, as http://host:port, or https://host:port (with --tls-ca). Replicas
    /// sharing a PostgreSQL store: their URLs, comma-separated, tried in turn.
    #[arg(
        long,
        env = "ROSTER_SERVER",
        default_value = defaults::SERVER,
        value_delimiter = ',',
        value_parser = ServerUrl::from_str
    )]
    server: Vec<ServerUrl>,
    /// The producer id (default: a new random one).
    #[arg(long, env = "ROSTER_PRODUCER_ID", value_parser = ProducerId::from_str)]
    id: Option<ProducerId>,
    /// Collection interval asked for, 100ms to 1h (as the server accepts).
    #[arg(long, default_value = "1s", value_parser = parse_interval_flag)]
    interval: Duration,
    /// Lease asked for, 10s to 1day (renewed at a quarter of it).
    #[arg(long, default_value = "60s", value_parser = parse_lease_flag)]
    lease: Duration,
    /// A label as name=value; repeat the flag for more (--label job=node --label team=a). The value is everything
    /// after the first '=', verbatim: commas and '=' included.
    #[arg(long, value_parser = parse_label_flag)]
    label: Vec<(String, String)>,
    /// File holding the bearer token sent with its registrations (a producer token; `roster auth token --role
    /// producer`). Re-read when it changes.
    #[arg(long, env = "ROSTER_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA bundle (PEM) that the server's certificate is verified against, for an https:// --server; with
    /// --tls-cert, it also verifies the client certificates of collectors calling roster.v1.Producer.
    #[arg(long, env = "ROSTER_PRODUCER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This producer's certificate chain (PEM): roster.v1.Producer is served over TLS with it (reloaded when the
    /// file changes or on SIGHUP), and it is presented to the server for mutual TLS. Needs --tls-key.
    #[arg(long, env = "ROSTER_PRODUCER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "ROSTER_PRODUCER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    roster::process::exit("roster-demo-producer", start().await)
}

async fn start() -> anyhow::Result<()> {
    roster::transport::tls::install_crypto_provider();
    let args = Args::parse();
    roster::process::init_tracing();
    // Usage errors (exit 2, as clap's own), before anything is made.
    if let Err(e) = ServerUrl::check_tls_all(&args.server, args.tls_ca.is_some(), "--tls-ca") {
        Args::command().error(clap::error::ErrorKind::ValueValidation, format!("--server: {}", e.0)).exit();
    }
    let labels = labels_from_flags("--label", args.label)
        .unwrap_or_else(|e| Args::command().error(clap::error::ErrorKind::ValueValidation, e).exit())
        .to_map();
    let files =
        PeerTlsFiles { ca: args.tls_ca.clone(), identity: IdentityFiles::from_flags(args.tls_cert, args.tls_key) };
    let tls = files.client().context("cannot use the TLS files (--tls-ca, --tls-cert, --tls-key)")?;
    let serve_tls =
        files.server().context("cannot serve roster.v1.Producer over TLS (--tls-cert, --tls-key, --tls-ca)")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let credentials = match &args.token_file {
        Some(path) => CallCredentials::from_token_file(path).context("--token-file")?,
        None => CallCredentials::none(),
    };
    let options = DemoOptions {
        servers: args.server,
        credentials,
        id: args.id.unwrap_or_else(ProducerId::new_random),
        interval: args.interval,
        lease: args.lease,
        labels,
        tls,
        serve_tls,
    };
    run_demo(listener, options, roster::process::shutdown_signal()).await?;
    Ok(())
}
