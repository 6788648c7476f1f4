//! `roster up`: the whole job on one machine, in this one process: a roster-server, one roster-collector and a
//! few demo producers on loopback, with data under one directory. The server's and the collector's own metrics
//! endpoints are registered as Prometheus producers, so the pair collects itself. Ctrl-C (or SIGTERM) stops every
//! part in order (producers deregister, then the collector flushes, then the server drains) and exits 0.
//!
//! With `--secure`, every gRPC connection is mutual TLS and the server authenticates each caller by its
//! certificate (`roster::auth`): the certificates come from a local CA in `DATA_DIR/tls` ([`super::local_ca`]).

use std::time::Duration;

use anyhow::Context as _;
use roster::{
    auth::{Authenticator, CallCredentials, Reflection},
    client::RosterClient,
    domain::CollectorId,
    domain::ProducerId,
    pb,
    producer::{DemoOptions, Registration, run_demo},
    transport::{ClientTls, ClientTlsFiles, IdentityFiles, ServerTls, ServerTlsFiles},
};
use roster_collector::Destination;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::local_ca::{self, LocalCa};
use crate::args::UpArgs;

/// Lease of the metrics endpoints' registrations, as the demo producers'.
const OWN_METRICS_LEASE: Duration = Duration::from_secs(60);

/// Time limit of each registration call, as the demo producers'.
const REGISTRATION_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[allow(clippy::print_stdout, reason = "telling the user what runs where is the point")]
pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Each metrics endpoint is registered as a producer, so its address must be known before it is bound.
    let own_metrics: Vec<_> = [
        ("roster-server", "--metrics-listen", args.metrics_listen.address()),
        ("roster-collector", "--collector-metrics-listen", args.collector_metrics_listen.address()),
    ]
    .into_iter()
    .filter_map(|(job, flag, address)| address.map(|a| (job, flag, a)))
    .collect();
    // The server and the collector bind their metrics addresses themselves, inside `run`, and their configs take
    // an address, not a listener. So each address is bound here, before anything is started or printed, and held
    // until just before the server starts: a busy one (or both flags naming one address) stops `roster up` as a
    // busy --listen does, rather than after "roster is up". A race remains between dropping these and the server's
    // and collector's own binds, but it does not matter: it is microseconds long on a port chosen by the user, and
    // losing it fails as before (exit 1, "cannot listen on", after the banner), never anything worse.
    let mut metrics_probes = Vec::new();
    for (_, flag, address) in &own_metrics {
        anyhow::ensure!(
            address.port() != 0,
            "{flag} {address}: give a port (roster up registers its metrics as a producer at that address), or off"
        );
        metrics_probes.push(
            TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address} (use {flag})"))?,
        );
    }
    let server_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --listen)", args.listen))?;
    let server_addr = server_listener.local_addr()?;
    let scheme = if args.secure { "https" } else { "http" };
    let server_url: roster::endpoint::ServerUrl = format!("{scheme}://{server_addr}").parse()?;
    let collector_listener = TcpListener::bind(args.collector_listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --collector-listen)", args.collector_listen))?;
    let collector_addr = collector_listener.local_addr()?;

    let stop_server = CancellationToken::new();
    let stop_collector = CancellationToken::new();
    let stop_producers = CancellationToken::new();
    let server_dir = args.data_dir.join("server");
    let collector_dir = args.data_dir.join("collector");
    let secure = if args.secure { Some(Secure::new(&args.data_dir.join("tls"), &collector_dir)?) } else { None };
    let mut server_config = roster_server::Config::new(&server_dir);
    server_config.metrics_listen = args.metrics_listen.address();
    if let Some(secure) = &secure {
        server_config.tls = Some(secure.server.clone());
        server_config.auth = Authenticator::on(None, Reflection::Authenticated);
    }
    drop(metrics_probes);
    let server =
        tokio::spawn(roster_server::run(server_listener, server_config, stop_server.clone().cancelled_owned()));
    let mut collector_config = roster_collector::Config::new(vec![server_url.clone()], &collector_dir);
    collector_config.metrics_listen = args.collector_metrics_listen.address();
    if let Some(secure) = &secure {
        collector_config.id = Some(secure.collector_id);
        collector_config.tls = Some(secure.collector.clone());
        collector_config.status_tls = Some(secure.collector_status.clone());
        collector_config.producer_tls = Some(secure.collector.clone());
    }
    let sink = collector_dir.join("samples.jsonl");
    if let Some(remote_write) = &args.remote_write {
        collector_config.sinks = vec![Destination::json_lines(&sink), remote_write.clone()];
    }
    let collector = tokio::spawn(roster_collector::run(
        collector_listener,
        collector_config,
        stop_collector.clone().cancelled_owned(),
    ));
    let mut producers = Vec::new();
    for i in 1..=args.producers {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let options = DemoOptions {
            servers: vec![server_url.clone()],
            credentials: CallCredentials::none(),
            id: ProducerId::new_random(),
            interval: args.interval,
            lease: Duration::from_secs(60),
            labels: [("demo".to_owned(), i.to_string())].into(),
            tls: secure.as_ref().map(|s| s.producer.clone()),
            serve_tls: secure.as_ref().map(|s| s.producer_serving.clone()),
        };
        producers.push((addr, tokio::spawn(run_demo(listener, options, stop_producers.clone().cancelled_owned()))));
    }
    let registrations: Vec<_> = own_metrics
        .iter()
        .map(|(job, _, address)| {
            let request = pb::RegisterProducerRequest {
                producer_id: ProducerId::new_random().to_string(),
                address: address.to_string(),
                interval_ms: u32::try_from(args.interval.as_millis()).unwrap_or(u32::MAX),
                labels: [("job".to_owned(), (*job).to_owned())].into(),
                lease_ms: Some(u32::try_from(OWN_METRICS_LEASE.as_millis()).unwrap_or(u32::MAX)),
                kind: pb::ProducerKind::Prometheus as i32,
                prometheus: Some(pb::PrometheusTarget::default()),
                ..Default::default()
            };
            let tls = secure.as_ref().map(|s| s.producer.clone());
            let client = RosterClient::connect_tls(&server_url, REGISTRATION_CALL_TIMEOUT, tls);
            tokio::spawn(Registration { request, client }.run(stop_producers.clone()))
        })
        .collect();

    println!("roster is up:");
    println!("  control plane    {server_addr}    store: {}", server_dir.display());
    println!("  collector        {collector_addr}    sink: {}", sink.display());
    if let Some(remote_write) = &args.remote_write {
        println!("                   and remote write to {remote_write}");
    }
    for (addr, _) in &producers {
        println!("  demo producer    {addr}");
    }
    println!();
    println!("Look around:");
    match &secure {
        None => {
            println!("  roster --server {server_url} producers list");
            println!("  roster --server {server_url} collectors list");
            println!("  roster status --collector {collector_addr}");
            println!("  grpcurl -plaintext {server_addr} list");
            println!("  grpcurl -plaintext {collector_addr} roster.v1.CollectorStatus/GetStatus");
        }
        Some(secure) => {
            let (ca, cert, key) =
                (secure.files.ca.display(), secure.files.operator.cert.display(), secure.files.operator.key.display());
            let made = if secure.files.made { "made now" } else { "reused" };
            println!("  (mutual TLS: local CA {made} in {}; you are roster://operator/local)", secure.dir.display());
            let tls = format!("--tls-ca {ca} --tls-cert {cert} --tls-key {key}");
            println!("  roster --server {server_url} {tls} producers list");
            println!("  roster --server {server_url} {tls} collectors list");
            println!("  roster {tls} status --collector https://{collector_addr}");
            let grpcurl = format!("grpcurl -cacert {ca} -cert {cert} -key {key}");
            println!("  {grpcurl} {server_addr} list");
            println!("  {grpcurl} {collector_addr} roster.v1.CollectorStatus/GetStatus");
        }
    }
    println!("  tail -f {}", sink.display());
    for (job, _, address) in &own_metrics {
        println!("  curl http://{address}/metrics    # {job}'s own metrics, also collected into the sink (job={job})");
    }
    println!("Ctrl-C stops everything.");

    let (mut server, mut collector) = (server, collector);
    tokio::select! {
        () = roster::process::shutdown_signal_or_hangup() => {}
        result = &mut server => {
            stop_producers.cancel();
            stop_collector.cancel();
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped on its own")),
                Ok(Err(e)) => Err(e).context("server"),
                Err(e) => Err(e).context("server panicked"),
            };
        }
        result = &mut collector => {
            stop_producers.cancel();
            stop_server.cancel();
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the collector stopped on its own")),
                Ok(Err(e)) => Err(e).context("collector"),
                Err(e) => Err(e).context("collector panicked"),
            };
        }
    }
    println!("stopping: producers deregister, the collector flushes its sink, the server drains");
    stop_producers.cancel();
    for (_, producer) in producers {
        producer.await.context("demo producer panicked")?.context("demo producer")?;
    }
    for registration in registrations {
        registration.await.context("a metrics registration panicked")?;
    }
    stop_collector.cancel();
    collector.await.context("collector panicked")?.context("collector")?;
    stop_server.cancel();
    server.await.context("server panicked")?.context("server")?;
    println!("stopped");
    Ok(())
}

/// What `--secure` runs with: the local CA's files, loaded for each party.
struct Secure {
    dir: std::path::PathBuf,
    files: LocalCa,
    collector_id: CollectorId,
    server: ServerTls,
    collector: ClientTls,
    collector_status: ServerTls,
    producer: ClientTls,
    producer_serving: ServerTls,
}

impl Secure {
    /// The local CA in `dir` (made or reused) for the collector whose data directory is `collector_dir`, loaded.
    fn new(dir: &std::path::Path, collector_dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(collector_dir).with_context(|| format!("cannot create {}", collector_dir.display()))?;
        let collector_id = roster_collector::identity::load_or_create(collector_dir, None)?;
        let files = local_ca::ensure(dir, collector_id)?;
        let serving = |identity: &IdentityFiles| {
            ServerTls::load(ServerTlsFiles {
                identity: identity.clone(),
                client_ca: Some(files.ca.clone()),
                client_cert_required: false,
            })
        };
        let client =
            |identity: &IdentityFiles| ClientTlsFiles { ca: files.ca.clone(), identity: Some(identity.clone()) }.load();
        Ok(Self {
            dir: dir.to_owned(),
            collector_id,
            server: serving(&files.server)?,
            collector: client(&files.collector)?,
            collector_status: serving(&files.collector)?,
            producer: client(&files.producer)?,
            producer_serving: serving(&files.producer)?,
            files,
        })
    }
}
