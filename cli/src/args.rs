//! The CLI's arguments: every command, subcommand and flag as clap types, and the defaults they show in `--help`.
//!
//! Each default is a constant here, written once and used by clap (and by the messages that cite it), so the help
//! text, the behaviour and the error messages cannot drift apart. What a command does with its arguments lives in
//! [`crate::commands`].

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use roster::{
    auth::Role,
    domain::{
        CollectorId, MAX_INTERVAL, ProducerId, ProducerKind, labels_from_flags, parse_duration_within,
        parse_interval_flag as interval, parse_label_flag, parse_lease_flag as lease,
    },
    endpoint::{self, ServerUrl},
    metrics_http::MetricsListen,
};

use roster_collector::Destination;

use crate::output::Format;

/// The address `roster up` serves the control plane on, as roster-server does by default.
pub(crate) const DEFAULT_SERVER_LISTEN: &str = endpoint::DEFAULT_SERVER_LISTEN;
/// The roster-server the CLI calls unless `--server` or `ROSTER_SERVER` says otherwise.
pub(crate) const DEFAULT_SERVER: &str = endpoint::DEFAULT_SERVER_URL;
/// The address of a collector's status API, as roster-collector's `--listen` and `roster up` default to.
pub(crate) const DEFAULT_COLLECTOR_LISTEN: &str = endpoint::DEFAULT_COLLECTOR_LISTEN;
/// Where `roster up` serves the control plane's metrics, as roster-server does by default.
pub(crate) const DEFAULT_SERVER_METRICS_LISTEN: &str = roster_server::DEFAULT_METRICS_LISTEN;
/// Where `roster up` serves the collector's metrics, as roster-collector does by default.
pub(crate) const DEFAULT_COLLECTOR_METRICS_LISTEN: &str = roster_collector::defaults::METRICS_LISTEN;
/// Time limit of each attempt of a call (`--timeout`).
pub(crate) const DEFAULT_TIMEOUT: &str = "5s";
/// The longest `--timeout`: an attempt unanswered for an hour is stuck, not slow, and a far longer one cannot even be
/// sent (gRPC's deadline header holds at most 8 digits of hours).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most attempts per call (`--max-attempts`).
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The highest `--max-attempts` accepted: beyond it a call would retry long past any outage worth riding out.
pub(crate) const MAX_ATTEMPTS_LIMIT: i64 = 10;
/// Collection interval of `roster producers register`.
pub(crate) const DEFAULT_REGISTER_INTERVAL: &str = "15s";
/// Where `roster demo-producer` serves (port 0: a free one).
pub(crate) const DEFAULT_DEMO_LISTEN: &str = "127.0.0.1:0";
/// Collection interval of demo producers (`roster demo-producer`, `roster up`).
pub(crate) const DEFAULT_DEMO_INTERVAL: &str = "1s";
/// Lease of `roster demo-producer`.
pub(crate) const DEFAULT_DEMO_LEASE: &str = "60s";
/// Where `roster up` keeps its data.
pub(crate) const DEFAULT_UP_DATA_DIR: &str = "./roster-data";
/// How many demo producers `roster up` runs.
pub(crate) const DEFAULT_UP_PRODUCERS: u16 = 3;
/// The most demo producers `roster up` runs.
pub(crate) const MAX_UP_PRODUCERS: i64 = 100;

/// Operate a roster control plane: producers, collectors, assignments, feeds, and `roster up`.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// roster-server URL, as http://host:port, or https://host:port for TLS (with --tls-ca). Replicas sharing a
    /// PostgreSQL store: their URLs, comma-separated; a call goes to one, and its retry to the next when that one
    /// is down or cannot reach the store.
    #[arg(
        long,
        global = true,
        env = "ROSTER_SERVER",
        default_value = DEFAULT_SERVER,
        value_delimiter = ',',
        value_parser = ServerUrl::from_str
    )]
    pub(crate) server: Vec<ServerUrl>,
    /// Time limit of each attempt of a call (more than zero, at most 1h).
    #[arg(long, global = true, default_value = DEFAULT_TIMEOUT, value_parser = timeout)]
    pub(crate) timeout: Duration,
    /// Most attempts per call (transient failures only are retried); for `roster watch`, most failed attempts in a
    /// row to open its stream.
    #[arg(
        long,
        global = true,
        default_value_t = DEFAULT_MAX_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=MAX_ATTEMPTS_LIMIT)
    )]
    pub(crate) max_attempts: u32,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// File holding the bearer token sent with every call to the server (re-read when it changes); needed when the
    /// server runs with --auth-tokens. `roster auth token` makes one.
    #[arg(long, global = true, env = "ROSTER_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Log each attempt (request id, attempt n of max, delay, cause) on stderr; twice for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// CA bundle (PEM) that the server's certificate is verified against, for an https:// --server (and
    /// --collector of `roster status`).
    #[arg(long, global = true, env = "ROSTER_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) presented for mutual TLS; needs --tls-key and --tls-ca.
    #[arg(long, global = true, env = "ROSTER_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "ROSTER_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Exits with a usage error (code 2, as clap's own, naming the flag) for flags each valid alone but refused
    /// together, which clap cannot see flag by flag:
    /// - the URL called and `--tls-ca` disagree: an `https://` URL without a CA to verify the server, or a CA given
    ///   for an `http://` URL (`--collector` for `roster status`, `--server` for the commands that call the server);
    /// - a `--label` name given twice, or more labels than a producer may have;
    /// - `--scheme`, `--path` or `--scrape-timeout` for a producer that is not `--kind prometheus`.
    pub(crate) fn check(&self) {
        use clap::error::ErrorKind::{ArgumentConflict, ValueValidation};
        let has_ca = self.tls_ca.is_some();
        let server = || {
            ServerUrl::check_tls_all(&self.server, has_ca, "--tls-ca")
                .err()
                .map(|e| (ValueValidation, format!("--server: {}", e.0)))
        };
        let labels = |label: &[(String, String)]| {
            labels_from_flags("--label", label.to_vec()).err().map(|e| (ValueValidation, e.to_string()))
        };
        let refused = match &self.command {
            Command::Up(_) | Command::Auth(_) => None,
            Command::Status(args) => args
                .collector
                .check_tls(has_ca, "--tls-ca")
                .err()
                .map(|e| (ValueValidation, format!("--collector: {}", e.0))),
            Command::Producers(ProducersCommand::Register(args)) => server()
                .or_else(|| labels(&args.label))
                .or_else(|| args.prometheus_flags_without_kind().map(|e| (ArgumentConflict, e))),
            Command::DemoProducer(args) => server().or_else(|| labels(&args.label)),
            _ => server(),
        };
        if let Some((kind, message)) = refused {
            Self::command().error(kind, message).exit();
        }
    }

    /// The log level `-v` asks for: errors only, then each attempt (`-v`), then everything (`-vv`).
    pub(crate) fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "error",
            1 => "info",
            _ => "debug",
        }
    }
}

const EXAMPLES: &str = "Examples:
  roster up
  roster producers list
  roster producers register --id 67e55044-10b1-426f-9247-bb680e5fe0c8 --address 127.0.0.1:9100 --label job=node
  roster producers register --id 9b2f4d1e-5c3a-4e8b-a1d2-3f4e5a6b7c8d --kind prometheus --address 127.0.0.1:9100
  roster collectors list --output json
  roster watch --collector 11111111-1111-1111-1111-111111111111
  roster status --collector 127.0.0.1:50061
  roster auth token --role producer --binding '0b9d2a1c-*'
  roster --token-file ~/.roster/token producers list
  roster --server https://127.0.0.1:50051 --tls-ca ca.pem --tls-cert operator.pem --tls-key operator-key.pem producers list";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    ///
    /// A lost stream is reconnected to with backoff, but after --max-attempts failed attempts in a row (nothing
    /// listening, a server that stays down) the watch gives up: one error line naming --server, the attempts and
    /// the last cause, exit code 1. A stream that opened starts the count again, so a watch that is following rides
    /// out a short outage.
    #[command(after_help = "Example:\n  roster watch --collector 11111111-1111-1111-1111-111111111111 --count 1")]
    Watch(WatchArgs),
    /// Show a collector's status (its roster.v1.CollectorStatus API, served on the collector's --listen).
    #[command(after_help = "Example:\n  roster status --collector 127.0.0.1:50061")]
    Status(StatusArgs),
    /// Run a demo producer: serves synthetic metrics and keeps itself registered with --server.
    #[command(
        name = "demo-producer",
        after_help = "Example:\n  roster demo-producer --listen 127.0.0.1:9100 --interval 500ms"
    )]
    DemoProducer(DemoProducerArgs),
    /// Run the whole job on this machine: a server, a collector and demo producers, until Ctrl-C.
    #[command(after_help = "Example:\n  roster up --data-dir ./roster-data --producers 3")]
    Up(UpArgs),
    /// Make credentials for a server that runs with --auth-tokens (no server is called).
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProducersCommand {
    /// Register a producer, or renew and update it (idempotent: the id is yours).
    ///
    /// A producer is of one kind: `grpc` (roster's own roster.v1.Producer service; the default) or `prometheus`
    /// (an HTTP endpoint serving the Prometheus text format or OpenMetrics, such as node_exporter). A Prometheus
    /// producer is assigned only to collectors that can scrape it; until one can, it is listed unassigned.
    #[command(
        after_help = "Examples:\n  roster producers register --id 67e55044-10b1-426f-9247-bb680e5fe0c8 --address 127.0.0.1:9100 --interval 15s --label job=node\n  roster producers register --id 9b2f4d1e-5c3a-4e8b-a1d2-3f4e5a6b7c8d --kind prometheus --address 127.0.0.1:9100 --label job=node\n  roster producers register --id 9b2f4d1e-5c3a-4e8b-a1d2-3f4e5a6b7c8d --kind prometheus --address node.example:9100 --scheme https --path /metrics --scrape-timeout 2s"
    )]
    Register(RegisterArgs),
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

/// `roster producers register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The producer's id (a UUID you choose and keep; not the nil UUID).
    #[arg(long, value_parser = ProducerId::from_str)]
    pub(crate) id: ProducerId,
    /// Where collectors reach it: host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address like `[::1]` (no %zone), the
    /// port 1-65535. The server checks it and stores it normalised (lowercase, host:080 as host:80).
    #[arg(long)]
    pub(crate) address: String,
    /// Collection interval, 100ms to 1h (as the server accepts).
    #[arg(long, default_value = DEFAULT_REGISTER_INTERVAL, value_parser = interval)]
    pub(crate) interval: Duration,
    /// A label as name=value; repeat the flag for more (--label job=node --label team=a). The value is
    /// everything after the first '=', verbatim: commas and '=' included (--label hosts=a,b).
    #[arg(long, value_parser = parse_label_flag)]
    pub(crate) label: Vec<(String, String)>,
    /// No longer here: a registration carries the registrant's own pin only; operators pin with
    /// `roster producers pin`, which touches nothing else.
    #[arg(long, hide = true, value_parser = CollectorId::from_str)]
    pub(crate) pin: Option<CollectorId>,
    /// Lease, 10s to 1day (default: the server's, 5 minutes).
    #[arg(long, value_parser = lease)]
    pub(crate) lease: Option<Duration>,
    /// How it is collected: grpc (roster.v1.Producer) or prometheus (an HTTP metrics endpoint). With prometheus,
    /// --address is a bare host:port (the scheme goes in --scheme) and label names may not start with __.
    #[arg(long, default_value = "grpc", value_parser = ProducerKind::from_str)]
    pub(crate) kind: ProducerKind,
    /// Prometheus only: http or https (default http).
    #[arg(long)]
    pub(crate) scheme: Option<String>,
    /// Prometheus only: the path scraped, starting with / (default /metrics).
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// Prometheus only: the time limit of each scrape, more than zero and below --interval (default: the
    /// collector's).
    #[arg(long, value_parser = scrape_timeout)]
    pub(crate) scrape_timeout: Option<Duration>,
}

impl RegisterArgs {
    /// Why the Prometheus-only flags cannot be taken, when they are given for another kind.
    fn prometheus_flags_without_kind(&self) -> Option<String> {
        let given = [
            ("--scheme", self.scheme.is_some()),
            ("--path", self.path.is_some()),
            ("--scrape-timeout", self.scrape_timeout.is_some()),
        ];
        let given: Vec<&str> = given.iter().filter(|(_, is)| *is).map(|(flag, _)| *flag).collect();
        (self.kind != ProducerKind::Prometheus && !given.is_empty()).then(|| {
            format!(
                "{} describe{} a Prometheus target: add --kind prometheus (a {} producer has none of them)",
                given.join(", "),
                if given.len() == 1 { "s" } else { "" },
                self.kind.as_str()
            )
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CollectorsCommand {
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
pub(crate) enum AssignmentCommand {
    /// Show a collector's current generation and producers.
    #[command(after_help = "Example:\n  roster assignment show --collector 11111111-1111-1111-1111-111111111111")]
    Show {
        /// The collector (which must be known to the server).
        #[arg(long, value_parser = CollectorId::from_str)]
        collector: CollectorId,
    },
}

/// `roster auth …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Make a new bearer token: prints the token (once: the server keeps only its hash) and the line that grants it
    /// to add to the server's --auth-tokens file. The server picks an edited file up within a second.
    ///
    /// Give the token to its holder in a file (--token-file, readable by it alone); delete the line to revoke it.
    #[command(after_help = "Examples:
  roster auth token --role operator --binding alice
  roster auth token --role collector --binding 0b9d2a1c-5e8f-4a4b-9d3e-2f6c7a8b9c0d
  roster auth token --role producer --binding '0b9d2a1c-*' --output json | jq -r .line >> /etc/roster/tokens
  roster auth token --role reader")]
    Token(TokenArgs),
}

/// `roster auth token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// What the token may do: operator, collector, producer or reader (see docs/SECURITY.md).
    #[arg(long, value_parser = |s: &str| Role::parse_field("--role", s).map_err(|e| e.problem))]
    pub(crate) role: Role,
    /// What it is bound to: a collector's id (required for collector); for producer, ids (comma-separated) or one
    /// id prefix ending in * (none: any id); for operator and reader, a name for the logs.
    #[arg(long)]
    pub(crate) binding: Option<String>,
}

/// `roster watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The collector whose feed to follow (one the server knows).
    #[arg(long, value_parser = CollectorId::from_str)]
    pub(crate) collector: CollectorId,
    /// Exit after this many applied snapshots, 1 or more (default: follow until Ctrl-C).
    #[arg(long, value_parser = count)]
    pub(crate) count: Option<u64>,
}

/// `roster status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The collector's status address (its --listen), as host:port or http://host:port.
    #[arg(long, value_parser = ServerUrl::parse_address_or_url)]
    pub(crate) collector: ServerUrl,
}

/// `roster demo-producer`.
#[derive(Debug, Args)]
pub(crate) struct DemoProducerArgs {
    /// Address to serve roster.v1.Producer on (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_DEMO_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// The producer id (default: a new one).
    #[arg(long, value_parser = ProducerId::from_str)]
    pub(crate) id: Option<ProducerId>,
    /// Collection interval, 100ms to 1h (as the server accepts).
    #[arg(long, default_value = DEFAULT_DEMO_INTERVAL, value_parser = interval)]
    pub(crate) interval: Duration,
    /// Lease, 10s to 1day (renewed at a quarter of it).
    #[arg(long, default_value = DEFAULT_DEMO_LEASE, value_parser = lease)]
    pub(crate) lease: Duration,
    /// A label as name=value; repeat the flag for more (--label job=node --label team=a). The value is
    /// everything after the first '=', verbatim: commas and '=' included (--label hosts=a,b).
    #[arg(long, value_parser = parse_label_flag)]
    pub(crate) label: Vec<(String, String)>,
}

/// `roster up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Directory for all data: DIR/server, and DIR/collector with the sink (samples.jsonl).
    #[arg(long, default_value = DEFAULT_UP_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// Address of the control plane (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_SERVER_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Address of the collector's status API (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_COLLECTOR_LISTEN)]
    pub(crate) collector_listen: SocketAddr,
    /// Address of the control plane's Prometheus metrics (GET /metrics), or `off`. It is registered as a Prometheus
    /// producer (job=roster-server), so it needs a port of its own (not 0).
    #[arg(long, default_value = DEFAULT_SERVER_METRICS_LISTEN, value_parser = MetricsListen::from_str)]
    pub(crate) metrics_listen: MetricsListen,
    /// Address of the collector's Prometheus metrics (GET /metrics), or `off`. It is registered as a Prometheus
    /// producer (job=roster-collector), so it needs a port of its own (not 0).
    #[arg(long, default_value = DEFAULT_COLLECTOR_METRICS_LISTEN, value_parser = MetricsListen::from_str)]
    pub(crate) collector_metrics_listen: MetricsListen,
    /// How many demo producers to run.
    #[arg(
        long,
        default_value_t = DEFAULT_UP_PRODUCERS,
        value_parser = clap::value_parser!(u16).range(0..=MAX_UP_PRODUCERS)
    )]
    pub(crate) producers: u16,
    /// Collection interval of the demo producers and of roster's own metrics, 100ms to 1h (as the server accepts).
    #[arg(long, default_value = DEFAULT_DEMO_INTERVAL, value_parser = interval)]
    pub(crate) interval: Duration,
    /// Also send every sample to this Prometheus remote-write receiver (e.g. your Prometheus started with
    /// --web.enable-remote-write-receiver: http://127.0.0.1:9090/api/v1/write), beside the JSON-lines sink. What it
    /// does not take waits in a queue in DIR/collector/remote-write.
    #[arg(long, value_name = "URL", value_parser = remote_write_sink)]
    pub(crate) remote_write: Option<Destination>,
    /// Run secured: every gRPC connection over mutual TLS, each party named by its certificate. A local CA and the
    /// certificates of the server, the collector, the demo producers and you (the operator) are made in DIR/tls
    /// (reused on the next run while valid); how to call the pair with them is printed.
    #[arg(long)]
    pub(crate) secure: bool,
}

/// `--remote-write URL` as the collector's `--sink remote-write=URL`.
fn remote_write_sink(url: &str) -> Result<Destination, String> {
    Destination::from_str(&format!("remote-write={url}")).map_err(|e| e.to_string())
}

/// `--timeout`: a duration such as `500ms` or `5s`, more than zero (a zero time limit would fail every call at once)
/// and at most [`MAX_TIMEOUT`].
fn timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 5s, 1m)"))?;
    if duration.is_zero() {
        return Err("must be more than zero (write e.g. 500ms, 5s)".into());
    }
    if duration > MAX_TIMEOUT {
        return Err(format!(
            "{text} is too long: at most {} per attempt (write e.g. 5s, 30s, 5m)",
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(duration)
}

/// `--scrape-timeout`: at least a millisecond (the unit it is sent in), and below `--interval`, so at most the
/// longest interval (the server checks it against the interval given).
fn scrape_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::from_millis(1), MAX_INTERVAL)
}

/// `roster watch --count`: 1 or more (leaving it out is how to follow without end).
fn count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be 1 or more (leave --count out to follow until Ctrl-C)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (write a whole number, 1 or more)")),
    }
}

#[cfg(test)]
mod tests {
    use roster::domain::{MAX_LEASE, MIN_INTERVAL, MIN_LEASE};

    use super::*;

    /// The bounds `--help` states are the ones checked (the help text is written out; the bounds are constants).
    #[test]
    fn the_help_states_the_bounds_that_are_checked() {
        let cli = Cli::command();
        let help = |cli: &clap::Command, path: &[&str]| {
            let mut command = cli.clone();
            for name in path {
                command = command.find_subcommand(name).cloned().unwrap_or_else(|| panic!("no {name}"));
            }
            // Whitespace normalised: the help is wrapped to the terminal's width.
            command.render_long_help().to_string().split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let bounds = |min, max| format!("{} to {}", humantime::format_duration(min), humantime::format_duration(max));
        for path in [&["up"][..], &["demo-producer"], &["producers", "register"]] {
            let text = help(&cli, path);
            assert!(
                text.contains(&format!("{} (as the server accepts)", bounds(MIN_INTERVAL, MAX_INTERVAL))),
                "{text}"
            );
        }
        for path in [&["demo-producer"][..], &["producers", "register"]] {
            assert!(help(&cli, path).contains(&format!("Lease, {}", bounds(MIN_LEASE, MAX_LEASE))));
        }
        let max = humantime::format_duration(MAX_TIMEOUT).to_string();
        assert!(help(&cli, &[]).contains(&format!("more than zero, at most {max})")));
        assert!(interval("99ms").is_err() && interval("100ms").is_ok() && interval("1h").is_ok());
        assert!(interval("1h 1ms").is_err() && interval("99999999y").is_err());
        assert!(timeout("1h").is_ok() && timeout("1h 1s").is_err() && timeout("0s").is_err());
        assert!(count("0").is_err() && count("1").is_ok());
    }
}
