//! `roster`: the operator CLI of the roster control plane.
//!
//! Every call to the server goes through the library's retrying client (R1–R5): transient failures are retried
//! at most `--max-attempts` times, within 5 requests per second, riding out a 1 s outage; giving up prints one
//! line naming the call, the attempts, the time and the last cause, and exits non-zero. `-v` shows each attempt.

mod output;
mod up;

use std::{collections::BTreeMap, process::ExitCode, str::FromStr, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use output::Format;
use roster::{
    client::{RosterClient, StatusClient},
    domain::{CollectorId, ProducerId},
    follower::{Follower, FollowerConfig, FollowerEvent},
    pb,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Operate a roster control plane: producers, collectors, assignments, feeds, and `roster up`.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// roster-server URL.
    #[arg(long, global = true, env = "ROSTER_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Time limit of each attempt of a call.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Most attempts per call (transient failures only are retried).
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10))]
    max_attempts: u32,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Log each attempt (request id, attempt n of max, delay, cause) on stderr; twice for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  roster up
  roster producers list
  roster producers register --id 67e55044-10b1-426f-9247-bb680e5fe0c8 --address 127.0.0.1:9100 --label job=node
  roster collectors list --output json
  roster watch --collector 11111111-1111-1111-1111-111111111111
  roster status --collector 127.0.0.1:50061";

#[derive(Debug, Subcommand)]
enum Command {
    /// Register, deregister, list and show producers.
    #[command(subcommand)]
    Producers(ProducersCommand),
    /// List collectors, their liveness and whether they have converged.
    #[command(subcommand)]
    Collectors(CollectorsCommand),
    /// Show what a collector is assigned.
    #[command(subcommand)]
    Assignment(AssignmentCommand),
    /// Follow a collector's assignment feed and print each applied snapshot and each discard.
    ///
    /// Note: a Watch stream marks that collector live on the server (S1), and this command does not report
    /// applied generations. Use it to observe a real collector's feed, or with an id of its own for testing. It
    /// sends no instance id, so it is never taken for a second collector process with that id.
    #[command(after_help = "Example:\n  roster watch --collector 11111111-1111-1111-1111-111111111111 --count 1")]
    Watch {
        /// The collector whose feed to follow.
        #[arg(long, value_parser = CollectorId::from_str)]
        collector: CollectorId,
        /// Exit after this many applied snapshots (default: follow until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Show a collector's status (its roster.v1.CollectorStatus API).
    #[command(after_help = "Example:\n  roster status --collector 127.0.0.1:50061")]
    Status {
        /// The collector's status address, host:port or URL.
        #[arg(long)]
        collector: String,
    },
    /// Run a demo producer: serves synthetic metrics and keeps itself registered with --server.
    #[command(
        name = "demo-producer",
        after_help = "Example:\n  roster demo-producer --listen 127.0.0.1:9100 --interval 500ms"
    )]
    DemoProducer {
        /// Address to serve roster.v1.Producer on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// The producer id (default: a new one).
        #[arg(long, value_parser = ProducerId::from_str)]
        id: Option<ProducerId>,
        /// Collection interval.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Lease (renewed at a quarter of it).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        lease: Duration,
        /// Labels as name=value, comma-separated.
        #[arg(long, value_delimiter = ',')]
        label: Vec<String>,
    },
    /// Run the whole job on this machine: a server, a collector and demo producers, until Ctrl-C.
    #[command(after_help = "Example:\n  roster up --data-dir ./roster-data --producers 3")]
    Up(up::UpArgs),
}

#[derive(Debug, Subcommand)]
enum ProducersCommand {
    /// Register a producer, or renew and update it (idempotent: the id is yours).
    #[command(
        after_help = "Example:\n  roster producers register --id 67e55044-10b1-426f-9247-bb680e5fe0c8 --address 127.0.0.1:9100 --interval 15s --label job=node"
    )]
    Register {
        /// The producer's id (a UUID you choose and keep).
        #[arg(long)]
        id: String,
        /// Where collectors reach it: host:port.
        #[arg(long)]
        address: String,
        /// Collection interval.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Labels as name=value, comma-separated.
        #[arg(long, value_delimiter = ',')]
        label: Vec<String>,
        /// Pin it to this collector while that collector is eligible.
        #[arg(long)]
        pin: Option<String>,
        /// Lease (default: the server's, 5 minutes).
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<Duration>,
    },
    /// Deregister a producer (succeeds if it is already gone).
    #[command(after_help = "Example:\n  roster producers deregister 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    Deregister {
        /// The producer's id.
        id: String,
    },
    /// List every producer (all pages), optionally only those of one collector.
    #[command(after_help = "Example:\n  roster producers list --collector 11111111-1111-1111-1111-111111111111")]
    List {
        /// Only producers assigned to this collector.
        #[arg(long)]
        collector: Option<String>,
    },
    /// Show one producer.
    #[command(after_help = "Example:\n  roster producers show 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    Show {
        /// The producer's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum CollectorsCommand {
    /// List every collector: state, producers, current and applied generation, converged or not.
    #[command(after_help = "Example:\n  roster collectors list --output json")]
    List,
}

#[derive(Debug, Subcommand)]
enum AssignmentCommand {
    /// Show a collector's current generation and producers.
    #[command(after_help = "Example:\n  roster assignment show --collector 11111111-1111-1111-1111-111111111111")]
    Show {
        /// The collector.
        #[arg(long)]
        collector: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "error",
        1 => "info",
        _ => "debug",
    };
    roster::process::init_tracing_at(default_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            report_error(&anyhow::anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr, reason = "the one-line error is the CLI's answer on failure")]
fn report_error(e: &anyhow::Error) {
    eprintln!("roster: {e:#}");
}

fn labels(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--label {p:?}: write name=value"))
        })
        .collect()
}

fn ms(d: Duration, flag: &str) -> anyhow::Result<u32> {
    u32::try_from(d.as_millis()).with_context(|| format!("{flag} {d:?} is too long"))
}

#[allow(clippy::print_stdout, reason = "printing the answer is what the CLI is for")]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.output;
    let client = || -> anyhow::Result<RosterClient> {
        Ok(RosterClient::new(&cli.server, cli.timeout)?.with_max_attempts(cli.max_attempts))
    };
    match cli.command {
        Command::Producers(ProducersCommand::Register { id, address, interval, label, pin, lease }) => {
            let request = pb::RegisterProducerRequest {
                producer_id: id,
                address,
                interval_ms: ms(interval, "--interval")?,
                labels: labels(&label)?,
                pinned_collector_id: pin.unwrap_or_default(),
                lease_ms: lease.map(|l| ms(l, "--lease")).transpose()?,
            };
            let reply = client()?.register_producer(request).await?;
            let producer = reply.producer.unwrap_or_default();
            let value = json!({"created": reply.created, "renew_interval_ms": reply.renew_interval_ms, "producer": output::producer_json(&producer)});
            output::print(format, &value, || {
                let verb = if reply.created { "registered" } else { "renewed" };
                format!(
                    "{verb} {}; renew every {} ms\n\n{}",
                    producer.id,
                    reply.renew_interval_ms,
                    output::producers_table(std::slice::from_ref(&producer))
                )
            });
        }
        Command::Producers(ProducersCommand::Deregister { id }) => {
            let reply = client()?.deregister_producer(id.clone()).await?;
            let value = json!({"id": id, "existed": reply.existed});
            output::print(format, &value, || {
                if reply.existed {
                    format!("deregistered {id}")
                } else {
                    format!("{id} was not registered (nothing to do)")
                }
            });
        }
        Command::Producers(ProducersCommand::List { collector }) => {
            let producers = client()?.list_all_producers(collector.unwrap_or_default()).await?;
            let value = json!({"producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(), "count": producers.len()});
            output::print(format, &value, || {
                format!("{}\n{} producers", output::producers_table(&producers), producers.len())
            });
        }
        Command::Producers(ProducersCommand::Show { id }) => {
            let producer = client()?.get_producer(id).await?;
            output::print(format, &output::producer_json(&producer), || {
                output::producers_table(std::slice::from_ref(&producer)).to_string()
            });
        }
        Command::Collectors(CollectorsCommand::List) => {
            let collectors = client()?.list_collectors().await?.collectors;
            let value = json!({"collectors": collectors.iter().map(output::collector_json).collect::<Vec<_>>()});
            output::print(format, &value, || output::collectors_text(&collectors));
        }
        Command::Assignment(AssignmentCommand::Show { collector }) => {
            let client = client()?;
            let collectors = client.list_collectors().await?.collectors;
            let Some(info) = collectors.iter().find(|c| c.id == collector) else {
                bail!("collector {collector} is not known to the server (it has never opened its feed)");
            };
            let producers = client.list_all_producers(collector.clone()).await?;
            let value = json!({
                "collector": output::collector_json(info),
                "producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(),
            });
            output::print(format, &value, || {
                format!(
                    "{}\n\n{}",
                    output::collectors_text(std::slice::from_ref(info)),
                    output::producers_table(&producers)
                )
            });
        }
        Command::Watch { collector, count } => watch(&cli.server, collector, count, format).await?,
        Command::Status { collector } => {
            let client = StatusClient::new(&collector, cli.timeout)
                .with_context(|| format!("--collector {collector:?} is not an address"))?
                .with_max_attempts(cli.max_attempts);
            let status = client.get_full_status().await?;
            output::print(format, &output::status_json(&status), || output::status_text(&status));
        }
        Command::DemoProducer { listen, id, interval, lease, label } => {
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            let options = roster::producer::DemoOptions {
                server: cli.server.clone(),
                id: id.unwrap_or_else(ProducerId::new_random),
                interval,
                lease,
                labels: labels(&label)?,
            };
            println!("demo producer {} serving on {}", options.id, listener.local_addr()?);
            roster::producer::run_demo(listener, options, roster::process::shutdown_signal()).await?;
        }
        Command::Up(args) => up::run(args).await?,
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "printing the feed is what this command is for")]
async fn watch(server: &str, collector: CollectorId, count: Option<u64>, format: Format) -> anyhow::Result<()> {
    let mut config = FollowerConfig::new(vec![server.to_owned()], collector);
    config.report = false;
    // An observer, not the collector: it gives no instance id, so following a running collector's feed is not
    // taken for a second process with its id.
    config.instance = None;
    let (follower, handle) = Follower::new(config)?;
    let mut events = handle.events.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(stop.clone()));
    let mut applied = 0u64;
    let signal = roster::process::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let event = tokio::select! {
            () = &mut signal => break,
            event = events.recv() => match event {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("({n} events skipped: output too slow)");
                    continue;
                }
                Err(_) => break,
            },
        };
        let (value, text) = match &event {
            FollowerEvent::Connected { endpoint } => {
                (json!({"event": "connected", "endpoint": endpoint}), format!("connected to {endpoint}"))
            }
            FollowerEvent::Lost { cause, delay } => (
                json!({"event": "lost", "cause": cause, "retry_in_ms": delay.as_millis() as u64}),
                format!("stream lost ({cause}); reconnecting in {delay:?}"),
            ),
            FollowerEvent::Discarded { reason, detail } => (
                json!({"event": "discarded", "reason": reason, "detail": detail}),
                format!("discarded ({reason}): {detail}"),
            ),
            FollowerEvent::Reported { generation } => (
                json!({"event": "reported", "generation": generation}),
                format!("generation {generation} reported to the server"),
            ),
            FollowerEvent::Applied(s) => {
                let producers: Vec<_> = s.targets.iter().map(|t| json!({"id": t.id.to_string(), "address": t.address.to_string(), "interval_ms": t.interval.as_millis() as u64, "labels": t.labels.as_map()})).collect();
                let mut text =
                    format!("applied generation {} of epoch {}: {} producers", s.generation, s.epoch, s.targets.len());
                for t in &s.targets {
                    text.push_str(&format!("\n  {}  {}  {:?}", t.id, t.address, t.interval));
                }
                (
                    json!({"event": "applied", "epoch": s.epoch.to_string(), "generation": s.generation, "producers": producers}),
                    text,
                )
            }
        };
        match format {
            Format::Json => println!("{value}"),
            Format::Table => println!("{text}"),
        }
        if matches!(event, FollowerEvent::Applied(_)) {
            applied += 1;
            if count.is_some_and(|c| applied >= c) {
                break;
            }
        }
    }
    stop.cancel();
    let _ = task.await;
    Ok(())
}
