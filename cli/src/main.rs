//! `roster`: the operator CLI of the roster control plane.
//!
//! Every call to the server goes through the library's retrying client (R1–R5): transient failures are retried
//! at most `--max-attempts` times, within 5 requests per second, riding out a 1 s outage; giving up prints one
//! line naming the call, the attempts, the time and the last cause, and exits non-zero. `-v` shows each attempt.

mod output;
mod up;

use std::{process::ExitCode, str::FromStr, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use output::Format;
use roster::{
    client::{RosterClient, StatusClient},
    domain::{CollectorId, ProducerId, labels_from_flags, parse_label_flag},
    endpoint::ServerUrl,
    follower::{Follower, FollowerConfig, FollowerEvent},
    pb,
    retry::CallError,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Operate a roster control plane: producers, collectors, assignments, feeds, and `roster up`.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// roster-server URL, as http://host:port (no TLS in this build: https:// is refused).
    #[arg(
        long,
        global = true,
        env = "ROSTER_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_parser = ServerUrl::from_str
    )]
    server: ServerUrl,
    /// Time limit of each attempt of a call (more than zero).
    #[arg(long, global = true, default_value = "5s", value_parser = positive_duration)]
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
    /// Observe only: the watch does not mark the collector live, changes no assignment and reports nothing, so it
    /// is safe against a production fleet. The collector must be known to the server (`roster collectors list`);
    /// an unknown id is refused (NOT_FOUND) rather than followed. It sends no instance id, so it is never taken
    /// for a second collector process with that id.
    #[command(after_help = "Example:\n  roster watch --collector 11111111-1111-1111-1111-111111111111 --count 1")]
    Watch {
        /// The collector whose feed to follow (one the server knows).
        #[arg(long, value_parser = CollectorId::from_str)]
        collector: CollectorId,
        /// Exit after this many applied snapshots (default: follow until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Show a collector's status (its roster.v1.CollectorStatus API, served on the collector's --listen).
    #[command(after_help = "Example:\n  roster status --collector 127.0.0.1:50061")]
    Status {
        /// The collector's status address (its --listen), as host:port or http://host:port.
        #[arg(long, value_parser = ServerUrl::parse_address_or_url)]
        collector: ServerUrl,
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
        /// A label as name=value; repeat the flag for more (--label job=node --label team=a). The value is
        /// everything after the first '=', verbatim: commas and '=' included (--label hosts=a,b).
        #[arg(long, value_parser = parse_label_flag)]
        label: Vec<(String, String)>,
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
        /// The producer's id (a UUID you choose and keep; not the nil UUID).
        #[arg(long, value_parser = ProducerId::from_str)]
        id: ProducerId,
        /// Where collectors reach it: host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address like `[::1]` (no %zone), the
        /// port 1-65535. The server checks it and stores it normalised (lowercase, host:080 as host:80).
        #[arg(long)]
        address: String,
        /// Collection interval.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// A label as name=value; repeat the flag for more (--label job=node --label team=a). The value is
        /// everything after the first '=', verbatim: commas and '=' included (--label hosts=a,b).
        #[arg(long, value_parser = parse_label_flag)]
        label: Vec<(String, String)>,
        /// No longer here: a registration carries the registrant's own pin only; operators pin with
        /// `roster producers pin`, which touches nothing else.
        #[arg(long, hide = true, value_parser = CollectorId::from_str)]
        pin: Option<CollectorId>,
        /// Lease (default: the server's, 5 minutes).
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<Duration>,
    },
    /// Pin a producer to a collector (an operator pin): it goes to that collector while the collector is eligible,
    /// and is assigned as usual otherwise. The pin is kept until `roster producers unpin`, whatever the producer's
    /// own renewals say, and changes nothing else (address, interval, labels, lease stay as registered).
    #[command(
        after_help = "Example:\n  roster producers pin 67e55044-10b1-426f-9247-bb680e5fe0c8 11111111-1111-1111-1111-111111111111"
    )]
    Pin {
        /// The producer's id (it must be registered).
        #[arg(value_parser = ProducerId::from_str)]
        producer: ProducerId,
        /// The collector's id.
        #[arg(value_parser = CollectorId::from_str)]
        collector: CollectorId,
    },
    /// Clear a producer's operator pin: it is assigned as usual again (or by its registrant's own pin, if any).
    #[command(after_help = "Example:\n  roster producers unpin 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    Unpin {
        /// The producer's id (it must be registered).
        #[arg(value_parser = ProducerId::from_str)]
        producer: ProducerId,
    },
    /// Deregister a producer (succeeds if it is already gone).
    #[command(after_help = "Example:\n  roster producers deregister 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    Deregister {
        /// The producer's id.
        #[arg(value_parser = ProducerId::from_str)]
        id: ProducerId,
    },
    /// List every producer (all pages), optionally only those of one collector.
    #[command(after_help = "Example:\n  roster producers list --collector 11111111-1111-1111-1111-111111111111")]
    List {
        /// Only producers assigned to this collector (which must be known to the server: an unknown id is an
        /// error, not an empty list).
        #[arg(long, value_parser = CollectorId::from_str)]
        collector: Option<CollectorId>,
    },
    /// Show one producer.
    #[command(after_help = "Example:\n  roster producers show 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    Show {
        /// The producer's id.
        #[arg(value_parser = ProducerId::from_str)]
        id: ProducerId,
    },
}

#[derive(Debug, Subcommand)]
enum CollectorsCommand {
    /// List every collector: state, producers, current and applied generation, converged or not.
    #[command(after_help = "Example:\n  roster collectors list --output json")]
    List,
    /// Forget a departed collector at once (the server forgets them on its own after its --forget-after, 24 h by
    /// default). Refused for a collector that is live or in grace; succeeds if it is already forgotten.
    #[command(after_help = "Example:\n  roster collectors forget 11111111-1111-1111-1111-111111111111")]
    Forget {
        /// The collector's id.
        #[arg(value_parser = CollectorId::from_str)]
        id: CollectorId,
    },
}

#[derive(Debug, Subcommand)]
enum AssignmentCommand {
    /// Show a collector's current generation and producers.
    #[command(after_help = "Example:\n  roster assignment show --collector 11111111-1111-1111-1111-111111111111")]
    Show {
        /// The collector (which must be known to the server).
        #[arg(long, value_parser = CollectorId::from_str)]
        collector: CollectorId,
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
    let server = cli.server.clone();
    match runtime.block_on(run(cli)).map_err(|e| not_a_server(e, &server)) {
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

/// Adds to a call's failure what an `UNIMPLEMENTED` answer means here: something answered at `--server`, but not
/// a roster-server (whose every RPC the CLI calls exists).
fn not_a_server(e: anyhow::Error, server: &ServerUrl) -> anyhow::Error {
    match e.downcast_ref::<CallError>() {
        Some(call) if call.status().code() == tonic::Code::Unimplemented => e.context(format!(
            "--server {server} answered, but it is not a roster-server (it does not serve roster.v1.Registry; a \
             roster-collector's status address answers so); point --server at roster-server's --listen address, \
             e.g. http://127.0.0.1:50051"
        )),
        _ => e,
    }
}

/// The CLI's message for a failed `GetStatus`. `UNIMPLEMENTED` means an address that answers gRPC but is not a
/// roster-collector's status API: the health service of what answered says whether it is a roster-server.
async fn status_failure(e: CallError, collector: &ServerUrl, channel: Channel, timeout: Duration) -> anyhow::Error {
    if e.status().code() != tonic::Code::Unimplemented {
        return e.into();
    }
    let check = tonic_health::pb::HealthCheckRequest { service: "roster.v1.Registry".into() };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let is_server = matches!(tokio::time::timeout(timeout, health.check(check)).await, Ok(Ok(_)));
    let what = if is_server {
        "it is a roster-server (it serves roster.v1.Registry)".to_owned()
    } else {
        "it does not serve roster.v1.CollectorStatus".to_owned()
    };
    // Flattened to text: this is the whole story, and `not_a_server` must not read it as a --server problem.
    anyhow::anyhow!(
        "--collector {collector} answered, but it is not a roster-collector's status API: {what}. Point --collector \
         at the collector's --listen address (127.0.0.1:50061 by default; `roster up` prints it): {e}"
    )
}

/// A duration such as `500ms` or `5s`, more than zero (a zero time limit would fail every call at once).
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 5s, 1m)"))?;
    if duration.is_zero() {
        return Err("must be more than zero (write e.g. 500ms, 5s)".into());
    }
    Ok(duration)
}

/// The server's record of `collector`, or an error saying it is not known: the one check that an id names a
/// collector before anything is listed for it, so an unknown id is never shown as an empty assignment.
async fn known_collector(client: &RosterClient, collector: CollectorId) -> anyhow::Result<pb::CollectorInfo> {
    let id = collector.to_string();
    let collectors = client.list_collectors().await?.collectors;
    collectors.into_iter().find(|c| c.id == id).with_context(|| {
        format!(
            "--collector {id}: this collector is not known to the server (it has never opened its feed); \
             `roster collectors list` shows the known ones"
        )
    })
}

fn ms(d: Duration, flag: &str) -> anyhow::Result<u32> {
    u32::try_from(d.as_millis()).with_context(|| format!("{flag} {d:?} is too long"))
}

#[allow(clippy::print_stdout, reason = "printing the answer is what the CLI is for")]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.output;
    let client = || RosterClient::connect(&cli.server, cli.timeout).with_max_attempts(cli.max_attempts);
    match cli.command {
        Command::Producers(ProducersCommand::Register { id, address, interval, label, pin, lease }) => {
            if let Some(pin) = pin {
                anyhow::bail!(
                    "--pin is no longer a registration flag (a registration replaced the whole record, so the pin was \
                     lost at the producer's next renewal): pin with `roster producers pin {id} {pin}`, which keeps the \
                     pin until `roster producers unpin {id}` and changes nothing else"
                );
            }
            let request = pb::RegisterProducerRequest {
                producer_id: id.to_string(),
                address,
                interval_ms: ms(interval, "--interval")?,
                labels: labels_from_flags("--label", label)?.into_map(),
                pinned_collector_id: String::new(),
                lease_ms: lease.map(|l| ms(l, "--lease")).transpose()?,
            };
            let reply = client().register_producer(request).await?;
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
        Command::Producers(ProducersCommand::Pin { producer, collector }) => {
            pin(&client(), format, producer, Some(collector)).await?;
        }
        Command::Producers(ProducersCommand::Unpin { producer }) => {
            pin(&client(), format, producer, None).await?;
        }
        Command::Producers(ProducersCommand::Deregister { id }) => {
            let reply = client().deregister_producer(id.to_string()).await?;
            let value = json!({"id": id.to_string(), "existed": reply.existed});
            output::print(format, &value, || {
                if reply.existed {
                    format!("deregistered {id}")
                } else {
                    format!("{id} was not registered (nothing to do)")
                }
            });
        }
        Command::Producers(ProducersCommand::List { collector }) => {
            let client = client();
            if let Some(collector) = collector {
                known_collector(&client, collector).await?;
            }
            let producers = client.list_all_producers(collector.map(|c| c.to_string()).unwrap_or_default()).await?;
            let value = json!({"producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(), "count": producers.len()});
            output::print(format, &value, || {
                format!("{}\n{} producers", output::producers_table(&producers), producers.len())
            });
        }
        Command::Producers(ProducersCommand::Show { id }) => {
            let producer = client().get_producer(id.to_string()).await?;
            output::print(format, &output::producer_json(&producer), || {
                output::producers_table(std::slice::from_ref(&producer)).to_string()
            });
        }
        Command::Collectors(CollectorsCommand::List) => {
            let collectors = client().list_collectors().await?.collectors;
            let value = json!({"collectors": collectors.iter().map(output::collector_json).collect::<Vec<_>>()});
            output::print(format, &value, || output::collectors_text(&collectors));
        }
        Command::Collectors(CollectorsCommand::Forget { id }) => {
            let reply = client().forget_collector(id.to_string()).await?;
            let value = json!({"id": id.to_string(), "existed": reply.existed});
            output::print(format, &value, || {
                if reply.existed { format!("forgot {id}") } else { format!("{id} was not known (nothing to do)") }
            });
        }
        Command::Assignment(AssignmentCommand::Show { collector }) => {
            let client = client();
            let info = known_collector(&client, collector).await?;
            let producers = client.list_all_producers(collector.to_string()).await?;
            let value = json!({
                "collector": output::collector_json(&info),
                "producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(),
            });
            output::print(format, &value, || {
                format!(
                    "{}\n\n{}",
                    output::collectors_text(std::slice::from_ref(&info)),
                    output::producers_table(&producers)
                )
            });
        }
        Command::Watch { collector, count } => watch(&cli.server, collector, count, format).await?,
        Command::Status { collector } => {
            let status = match StatusClient::connect(&collector, cli.timeout)
                .with_max_attempts(cli.max_attempts)
                .get_full_status()
                .await
            {
                Ok(status) => status,
                Err(e) => {
                    let channel = collector.endpoint().connect_timeout(cli.timeout).connect_lazy();
                    return Err(status_failure(e, &collector, channel, cli.timeout).await);
                }
            };
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
                labels: labels_from_flags("--label", label)?.into_map(),
            };
            println!("demo producer {} serving on {}", options.id, listener.local_addr()?);
            roster::producer::run_demo(listener, options, roster::process::shutdown_signal()).await?;
        }
        Command::Up(args) => up::run(args).await?,
    }
    Ok(())
}

/// `roster producers pin` and `unpin` (an empty `collector`): one `SetProducerPin`, nothing else.
async fn pin(
    client: &RosterClient,
    format: Format,
    producer: ProducerId,
    collector: Option<CollectorId>,
) -> anyhow::Result<()> {
    let reply =
        client.set_producer_pin(producer.to_string(), collector.map(|c| c.to_string()).unwrap_or_default()).await?;
    let info = reply.producer.unwrap_or_default();
    let value = json!({"changed": reply.changed, "producer": output::producer_json(&info)});
    output::print(format, &value, || {
        let what = match (collector, reply.changed) {
            (Some(c), true) => format!("pinned {} to {c}", info.id),
            (Some(c), false) => format!("{} was already pinned to {c} (nothing to do)", info.id),
            (None, true) => format!("unpinned {}", info.id),
            (None, false) => format!("{} had no operator pin (nothing to do)", info.id),
        };
        format!("{what}\n\n{}", output::producers_table(std::slice::from_ref(&info)))
    });
    Ok(())
}

#[allow(clippy::print_stdout, reason = "printing the feed is what this command is for")]
async fn watch(server: &ServerUrl, collector: CollectorId, count: Option<u64>, format: Format) -> anyhow::Result<()> {
    let mut config = FollowerConfig::new(vec![server.clone()], collector);
    config.report = false;
    config.observe_only = true;
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
            FollowerEvent::WatchRefused { code, message } => {
                // Retrying cannot change these answers: say so and stop, rather than follow nothing forever.
                if matches!(
                    code,
                    tonic::Code::NotFound
                        | tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                        | tonic::Code::Unimplemented
                ) {
                    stop.cancel();
                    let _ = task.await;
                    anyhow::bail!("Watch: {code:?}: {message}");
                }
                continue;
            }
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
