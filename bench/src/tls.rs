//! What TLS costs (issue 15): the same runs against a plaintext roster-server, one serving TLS (`--tls-cert`,
//! `--tls-key`: clients verify the server, authentication stays off) and one serving mutual TLS with
//! authentication on (`--tls-ca` too: every caller is named by its client certificate, and every call is
//! authorized), side by side, so the cost of the encryption and the cost of authentication show apart.
//!
//! Each run measures durable registrations per second (16 clients, each on its own connection), propagation (a
//! registration until the assigned follower applied it, with followers watching over their own connections) and
//! server memory per idle Watch stream (each on its own connection: under TLS each holds a rustls session), beside
//! the same streams held by a bare tonic server secured the same way (`bare-idle-server`), the floor h2, hyper,
//! tonic and rustls set before roster adds anything. The
//! certificates come from a CA made for the run (`roster_testkit::tls`); the clients present an operator's
//! certificate (in the mutual run), which may do everything, so authorization never refuses and only its cost is
//! measured.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use roster::{
    domain::{CollectorId, ProducerId},
    endpoint::ServerUrl,
    follower::{Follower, FollowerConfig, FollowerEvent},
    pb::registry_client::RegistryClient,
    transport::ClientOptions,
};
use roster_testkit::TlsSetup;
use tokio_util::sync::CancellationToken;

use crate::{
    Figure, Scale, percentiles,
    scenarios::{self, LIMIT, STEADY},
    server::{BareIdleServer, ServerProcess},
};

/// The identity of the benchmark's client certificate.
const OPERATOR_URI: &str = "roster://operator/bench";

/// How the server of a run is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// Plaintext, no authentication.
    Plaintext,
    /// TLS; no client certificate, no authentication.
    Tls,
    /// Mutual TLS, every call authenticated by the client's certificate and authorized.
    MutualTlsAuth,
}

impl Security {
    /// A name for its servers' data directories.
    fn dir_name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Tls => "server",
            Self::MutualTlsAuth => "mutual",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Tls => "TLS",
            Self::MutualTlsAuth => "mutual TLS + auth",
        }
    }
}

/// The figures of one run.
struct Run {
    registrations_per_s: f64,
    applied_p50_ms: f64,
    applied_p99_ms: f64,
    kib_per_stream: f64,
    bare_kib_per_stream: f64,
}

impl Run {
    /// Each figure's median over `runs`.
    fn median(runs: &[Run]) -> Run {
        let median = |figure: fn(&Run) -> f64| percentiles(&mut runs.iter().map(figure).collect::<Vec<_>>()).0;
        Run {
            registrations_per_s: median(|r| r.registrations_per_s),
            applied_p50_ms: median(|r| r.applied_p50_ms),
            applied_p99_ms: median(|r| r.applied_p99_ms),
            kib_per_stream: median(|r| r.kib_per_stream),
            bare_kib_per_stream: median(|r| r.bare_kib_per_stream),
        }
    }
}

/// The most server memory roster may add to an idle stream over the bare stack (`bare-idle-server`), in KiB.
const ROSTER_SHARE_KIB: f64 = 8.0;

/// How many times each mode is run, in turn with the others; each figure is the median of its runs, so that a
/// burst of load elsewhere on the machine moves one round rather than the comparison.
const ROUNDS: usize = 3;

/// Runs the plaintext, the TLS and the mutual TLS run three times (`ROUNDS`) in turn, and reports the median of each,
/// and the TLS runs against the plaintext one.
///
/// # Errors
/// When a process fails, a call fails, or a wait passes [`LIMIT`].
pub async fn tls_cost(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let certs = dir.join("tls-certs");
    std::fs::create_dir_all(&certs)?;
    let setup = TlsSetup::new(&certs, OPERATOR_URI);
    let modes = [Security::Plaintext, Security::Tls, Security::MutualTlsAuth];
    let mut rounds: [Vec<Run>; 3] = Default::default();
    for round in 0..ROUNDS {
        for (security, runs) in modes.iter().zip(&mut rounds) {
            let data_dir = dir.join(format!("tls-{}-{round}", security.dir_name()));
            runs.push(run(scale, &data_dir, &setup, *security).await?);
        }
    }
    let [plain, tls_only, secure] = rounds.map(|runs| Run::median(&runs));
    let mut figures = Vec::new();
    for (security, run) in
        [(Security::Plaintext, &plain), (Security::Tls, &tls_only), (Security::MutualTlsAuth, &secure)]
    {
        let mode = security.name();
        figures.push(Figure::new(
            "tls",
            format!("durable RegisterProducer, 16 clients, {mode}"),
            run.registrations_per_s,
            "/s",
        ));
        figures.push(Figure::new("tls", format!("propagation applied p50, {mode}"), run.applied_p50_ms, "ms"));
        figures.push(Figure::new("tls", format!("propagation applied p99, {mode}"), run.applied_p99_ms, "ms"));
        figures.push(Figure::new("tls", format!("server memory per idle stream, {mode}"), run.kib_per_stream, "KiB"));
        figures.push(Figure::new(
            "tls",
            format!("bare tonic memory per idle stream, {mode}"),
            run.bare_kib_per_stream,
            "KiB",
        ));
    }
    // As ratios to plaintext (a figure is never negative): the goal is within 10 %.
    for (security, run) in [(Security::Tls, &tls_only), (Security::MutualTlsAuth, &secure)] {
        let mode = security.name();
        let registrations = run.registrations_per_s / plain.registrations_per_s;
        figures.push(
            Figure::new("tls", format!("registrations/s, {mode} / plaintext"), registrations, "×").against("≥ 0.90 ×"),
        );
        let p99 = run.applied_p99_ms / plain.applied_p99_ms;
        figures.push(Figure::new("tls", format!("applied p99, {mode} / plaintext"), p99, "×").against("≤ 1.10 ×"));
        // Issue 15's 32 KiB is below what the bare stack needs under TLS; the goal kept is roster's own share
        // (docs/DESIGN.md, "Security").
        figures.push(
            Figure::new("tls", format!("server memory per idle stream, {mode} (goal)"), run.kib_per_stream, "KiB")
                .against(format!(
                    "≤ bare + {ROSTER_SHARE_KIB} KiB = {:.1} KiB",
                    run.bare_kib_per_stream + ROSTER_SHARE_KIB
                )),
        );
    }
    Ok(figures)
}

/// One server, secured as `security` says with `setup`'s certificates, measured.
async fn run(scale: Scale, data_dir: &Path, setup: &TlsSetup, security: Security) -> anyhow::Result<Run> {
    let mut tls_flags: Vec<String> = Vec::new();
    let files = [("--tls-cert", &setup.server.cert), ("--tls-key", &setup.server.key), ("--tls-ca", &setup.ca_file)];
    let given = match security {
        Security::Plaintext => 0,
        Security::Tls => 2,
        Security::MutualTlsAuth => 3,
    };
    for (flag, path) in &files[..given] {
        tls_flags.extend([(*flag).to_owned(), path.display().to_string()]);
    }
    let tls_flags: Vec<&str> = tls_flags.iter().map(String::as_str).collect();
    let server = ServerProcess::start(data_dir, "127.0.0.1:0", &[STEADY, &tls_flags[..]].concat())?;
    let scheme = if security == Security::Plaintext { "http" } else { "https" };
    let url = ServerUrl::parse(&format!("{scheme}://{}", server.addr))?;
    let tls = match security {
        Security::Plaintext => None,
        Security::Tls => Some(setup.client_files(false).load()?),
        Security::MutualTlsAuth => Some(setup.client_files(true).load()?),
    };
    let options = ClientOptions { tls: tls.clone(), ..ClientOptions::default() };

    let registrations = scale.registrations[1];
    let took = register(&url, &options, registrations, 16).await?;
    let (applied_p50_ms, applied_p99_ms) = propagation(scale, &url, &options).await?;
    drop(server);
    // Memory on a fresh server started as the fan-out scenario starts its own: streams of collectors with nothing
    // assigned.
    let server = ServerProcess::start(&data_dir.with_extension("fresh"), "127.0.0.1:0", &tls_flags)?;
    let url = ServerUrl::parse(&format!("{scheme}://{}", server.addr))?;
    let kib_per_stream = memory_per_stream(server.pid(), &url, &options, scale.fanout[0]).await?;
    drop(server);
    // The floor: a bare tonic server with tonic's own TLS, the same streams.
    let bare = BareIdleServer::start(&tls_flags)?;
    let url = ServerUrl::parse(&format!("{scheme}://{}", bare.addr))?;
    let bare_kib_per_stream = memory_per_stream(bare.pid(), &url, &options, scale.fanout[0]).await?;
    Ok(Run {
        registrations_per_s: registrations as f64 / took.as_secs_f64(),
        applied_p50_ms,
        applied_p99_ms,
        kib_per_stream,
        bare_kib_per_stream,
    })
}

/// Registers `count` never-due producers with `clients` clients, each on its own connection (made before the
/// clock starts); returns the time the registrations took.
async fn register(url: &ServerUrl, options: &ClientOptions, count: usize, clients: usize) -> anyhow::Result<Duration> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(RegistryClient::new(options.connect(url).await?));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in connected.into_iter().enumerate() {
        let share = count / clients + usize::from(i < count % clients);
        tasks.spawn(async move {
            for _ in 0..share {
                client.register_producer(roster_testkit::never_due()).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// `scale.collectors` followers watch; `scale.changes` registrations are each timed until the follower they
/// are assigned to applied them. Returns p50 and p99, in milliseconds.
async fn propagation(scale: Scale, url: &ServerUrl, options: &ClientOptions) -> anyhow::Result<(f64, f64)> {
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let ids: Vec<CollectorId> = (0..scale.collectors).map(|_| CollectorId::new_random()).collect();
    let mut events = HashMap::new();
    let mut handles = Vec::new();
    for id in &ids {
        let mut config = FollowerConfig::new(vec![url.clone()], *id);
        config.tls.clone_from(&options.tls);
        let (follower, handle) = Follower::new(config)?;
        events.insert(id.to_string(), handle.events.subscribe());
        tokio::spawn(follower.run(stop.clone()));
        handles.push(handle);
    }
    let first = Instant::now();
    while !handles.iter().all(|h| h.applied.borrow().is_some()) {
        anyhow::ensure!(first.elapsed() < LIMIT, "followers' first snapshots: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut client = RegistryClient::new(options.connect(url).await?);
    let mut applied = Vec::with_capacity(scale.changes);
    for _ in 0..scale.changes {
        for rx in events.values_mut() {
            while !matches!(rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)) {}
        }
        let request = roster_testkit::never_due();
        let producer: ProducerId = request.producer_id.parse()?;
        let started = Instant::now();
        let info = client.register_producer(request).await?.into_inner().producer.context("a producer")?;
        let rx = events.get_mut(&info.assigned_collector_id).context("assigned to a follower of this run")?;
        loop {
            match tokio::time::timeout(LIMIT, rx.recv()).await?? {
                FollowerEvent::Applied(s) if s.targets.iter().any(|t| t.id == producer) => break,
                _ => {}
            }
        }
        applied.push(crate::ms(started.elapsed()));
    }
    let (p50, p99, _) = percentiles(&mut applied);
    Ok((p50, p99))
}

/// Opens `count` idle Watch streams, each on its own connection, and returns the resident memory they added to
/// the server with process id `pid`, per stream, in KiB: measured as the fan-out scenario measures it (the same baseline and streams,
/// [`scenarios::settled_rss`] and [`scenarios::open_streams`]).
async fn memory_per_stream(pid: u32, url: &ServerUrl, options: &ClientOptions, count: usize) -> anyhow::Result<f64> {
    let base = scenarios::settled_rss(pid, url, options).await?;
    let open = scenarios::open_streams(url, options, count).await?;
    tokio::time::sleep(scenarios::SETTLE).await;
    let rss = crate::server::memory(pid)?.0;
    drop(open);
    Ok(rss.saturating_sub(base) as f64 / count as f64 / 1024.0)
}
