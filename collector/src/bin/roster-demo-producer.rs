//! `roster-demo-producer`: a producer serving a few synthetic metrics, registered with roster-server and kept
//! registered (renewed at a quarter of its lease, deregistered on exit). Used by tests, benchmarks and
//! `roster up`.

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use roster::{
    domain::ProducerId,
    pb::{self, registry_client::RegistryClient},
    producer::{Registration, SampleService},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};

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
    /// roster-server URL to register with.
    #[arg(long, env = "ROSTER_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The producer id (default: a new random one).
    #[arg(long, env = "ROSTER_PRODUCER_ID", value_parser = ProducerId::from_str)]
    id: Option<ProducerId>,
    /// Collection interval asked for.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Lease asked for (renewed at a quarter of it).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Labels, as name=value, comma-separated.
    #[arg(long, value_delimiter = ',')]
    label: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    roster::process::init_tracing();
    let id = args.id.unwrap_or_else(ProducerId::new_random);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let mut labels = std::collections::BTreeMap::new();
    for label in &args.label {
        let (k, v) = label.split_once('=').with_context(|| format!("--label {label:?}: write name=value"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let request = pb::RegisterProducerRequest {
        producer_id: id.to_string(),
        address: local.to_string(),
        interval_ms: u32::try_from(args.interval.as_millis()).context("--interval is too long")?,
        labels,
        pinned_collector_id: String::new(),
        lease_ms: Some(u32::try_from(args.lease.as_millis()).context("--lease is too long")?),
    };
    let channel = Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("--server {:?} is not a URL", args.server))?
        .connect_lazy();
    let stop = CancellationToken::new();
    let registration =
        Registration { request, registry: RegistryClient::new(channel), timeout: Duration::from_secs(5) };
    let keeper = tokio::spawn(registration.run(stop.clone()));

    static COLLECTIONS: AtomicU64 = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let service = SampleService::new(move |_req: &pb::CollectRequest| {
        let n = COLLECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
        let sample = |name: &str, value: f64| pb::Sample {
            name: name.into(),
            labels: Default::default(),
            value,
            timestamp_unix_ms: 0,
        };
        vec![
            sample("demo_up", 1.0),
            sample("demo_collections_total", n as f64),
            sample("demo_wave", (started.elapsed().as_secs_f64() / 10.0).sin()),
        ]
    });
    tracing::info!(producer.id = %id, listen = %local, server = %args.server, "roster-demo-producer serving");
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), roster::process::shutdown_signal())
        .await
        .context("serving roster.v1.Producer")?;
    stop.cancel();
    let _ = keeper.await;
    Ok(())
}
