//! `roster-bench`: runs the benchmark scenarios and prints their figures. See the library docs and
//! `BENCHMARKS.md`.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use roster_bench::{Figure, Scale, remote_write, replicas, scale, scenarios, scrape, tls};

/// Benchmarks roster on loopback: propagation latency, full sync against a bare tonic stream of the same
/// chunks, fan-out memory and CPU, reconnect storms, durable registrations per second, roster-collector
/// scraping Prometheus targets, and remote-writing them through a receiver outage, beside Prometheus 2.42's agent
/// ($ROSTER_PROMETHEUS), what TLS and mutual TLS with authentication cost beside plaintext, and replicas sharing a
/// PostgreSQL database (PostgreSQL 15's initdb and postgres on PATH or in $ROSTER_PG_BIN): registrations,
/// propagation across replicas, failover.
///
/// The fleet-scale scenarios take minutes at full size and run only when named with --only (at `smoke` size
/// they run with the rest): `renewals` (1 000 000 producers renewing while 1 000 followers watch; with `restart`
/// too, the restart reuses its store), `restart` (the server's start with 1 000 000 producers stored),
/// `store-wipe` (100 000 live producers, 100 followers, the store deleted under them), `replica-registrations`
/// (100 000 registrations five times: SQLite, one PostgreSQL replica, three in two ways, three watched) and
/// `replica-propagation` (100 000 producers registered through one replica while 100 followers follow another).
///
/// Build it optimised, with the server beside it:
///   cargo build --release -p roster-server -p roster-bench && target/release/roster-bench
#[derive(Debug, Parser)]
#[command(name = "roster-bench", version, about, long_about)]
struct Args {
    /// Sizes: `full` (100 collectors, 100 000 producers, 1 000 changes, 1 000/5 000 streams, a storm of 1 000,
    /// 1 000 Prometheus targets of 200 series, a remote-write outage of 30 s),
    /// or `smoke` (a few seconds; checks the harness works, not its speed).
    #[arg(long, value_enum, default_value = "full")]
    scale: ScaleArg,

    /// Run only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,

    /// Producers of the renewals and restart scenarios, instead of the scale's (1 000 000 at `full`): for a
    /// shorter trial of them.
    #[arg(long)]
    fleet_producers: Option<usize>,

    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScaleArg {
    Full,
    Smoke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Propagation,
    FullSyncOne,
    FanOut,
    Storm,
    Registrations,
    ChunkEncoding,
    BigSnapshot,
    ScrapeVsPrometheus,
    RemoteWriteVsPrometheus,
    Tls,
    ReplicaRegistrations,
    ReplicaPropagation,
    ReplicaFailover,
    Renewals,
    Restart,
    StoreWipe,
}

impl Scenario {
    /// Whether the scenario takes minutes at full size: it runs at `full` only when named with `--only`.
    fn is_long(self) -> bool {
        matches!(
            self,
            Self::Renewals | Self::Restart | Self::StoreWipe | Self::ReplicaRegistrations | Self::ReplicaPropagation
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scale = match args.scale {
        ScaleArg::Full => Scale::FULL,
        ScaleArg::Smoke => Scale::smoke(),
    };
    if let Some(producers) = args.fleet_producers {
        scale.fleet_producers = producers;
    }
    let full = matches!(args.scale, ScaleArg::Full);
    let dir = tempfile::tempdir().context("a temporary directory for the stores")?;
    let wanted = |s: Scenario| {
        if args.only.is_empty() { !(full && s.is_long()) } else { args.only.contains(&s) }
    };
    let mut figures: Vec<Figure> = Vec::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "| scenario | metric | value | target |\n|---|---|---|---|")?;
    for scenario in [
        Scenario::ChunkEncoding,
        Scenario::Registrations,
        Scenario::Propagation,
        Scenario::FullSyncOne,
        Scenario::FanOut,
        Scenario::Storm,
        Scenario::BigSnapshot,
        Scenario::ScrapeVsPrometheus,
        Scenario::RemoteWriteVsPrometheus,
        Scenario::Tls,
        Scenario::ReplicaRegistrations,
        Scenario::ReplicaPropagation,
        Scenario::ReplicaFailover,
        Scenario::Renewals,
        Scenario::Restart,
        Scenario::StoreWipe,
    ] {
        // The renewals scenario, when it runs, restarts the server on its own store: the restart's figures.
        if !wanted(scenario) || (scenario == Scenario::Restart && wanted(Scenario::Renewals)) {
            continue;
        }
        let result = match scenario {
            Scenario::Propagation => scenarios::propagation_and_full_sync(scale, dir.path()).await,
            Scenario::FullSyncOne => scenarios::full_sync_one_collector(scale, dir.path()).await,
            Scenario::FanOut => scenarios::fan_out(scale, dir.path()).await,
            Scenario::Storm => scenarios::reconnect_storm(scale, dir.path()).await,
            Scenario::Registrations => scenarios::registrations(scale, dir.path()).await,
            Scenario::ChunkEncoding => scenarios::chunk_encoding(scale, dir.path()),
            Scenario::BigSnapshot => scenarios::big_snapshot(scale, dir.path()).await,
            Scenario::ScrapeVsPrometheus => scrape::scrape_vs_prometheus(scale, dir.path()).await,
            Scenario::RemoteWriteVsPrometheus => remote_write::remote_write_vs_prometheus(scale, dir.path()).await,
            Scenario::Tls => tls::tls_cost(scale, dir.path()).await,
            Scenario::ReplicaRegistrations => replicas::registrations(scale, dir.path()).await,
            Scenario::ReplicaPropagation => replicas::propagation(scale, dir.path()).await,
            Scenario::ReplicaFailover => replicas::failover(scale).await,
            Scenario::Renewals => scale::renewals(scale, dir.path(), wanted(Scenario::Restart)).await,
            Scenario::Restart => scale::restart(scale, dir.path()).await,
            Scenario::StoreWipe => scale::store_wipe(scale, dir.path()).await,
        };
        for figure in result.with_context(|| format!("scenario {scenario:?}"))? {
            writeln!(
                out,
                "| {} | {} | {:.2} {} | {} |",
                figure.scenario, figure.metric, figure.value, figure.unit, figure.target
            )?;
            out.flush()?;
            figures.push(figure);
        }
    }
    if let Some(path) = args.json {
        let json: Vec<_> = figures
            .iter()
            .map(|f| {
                serde_json::json!({"scenario": f.scenario, "metric": f.metric, "value": f.value, "unit": f.unit, "target": f.target})
            })
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&json)?).with_context(|| path.display().to_string())?;
    }
    Ok(())
}
