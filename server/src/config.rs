//! The server's settings ([`Config`], with where the store is: [`StoreLocation`]) and every default, each defined once here as a constant: [`Config::new`]
//! and the `roster-server` flags (`src/main.rs`) both take them from here, and the README's table of flags states
//! them.

use std::{
    fmt::{self, Display},
    net::SocketAddr,
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use roster::{auth::Authenticator, domain::MAX_LEASE, message_limit::PAGE_BYTES, transport::ServerTls};

use crate::{
    clock::{Clock, SystemClock},
    feed::snapshot::ChunkLimits,
    store::postgres::PostgresUrl,
};

/// Address served unless configured otherwise: loopback only, the gRPC port roster uses by convention.
pub const DEFAULT_LISTEN: &str = roster::endpoint::DEFAULT_SERVER_LISTEN;
/// Where `roster-server` serves its Prometheus metrics unless configured otherwise (`--metrics-listen`): loopback
/// only, on a port of its own, beside the collector's 9472. [`Config::new`] serves none: a server embedded in
/// another program (a test, `roster up`) opts in.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9471";
/// Directory of the store unless configured otherwise, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./roster-data/server";
/// Lease given to registrations that ask for none (L1); registrants renew at a quarter of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// How long a collector whose last feed stream closed stays eligible (L2), so a short blip moves nothing.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// How long a departed collector is kept before it is forgotten: a day, so that `roster collectors list` still
/// shows a collector that went away overnight.
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Idle time after which a feed stream gets a heartbeat (S5).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Bounds of a snapshot chunk (S2): 1000 producers, and the byte budget of every answer sent in parts
/// ([`PAGE_BYTES`]), well below gRPC's 4 MiB message limit.
pub const DEFAULT_CHUNK_LIMITS: ChunkLimits = ChunkLimits { max_producers: 1000, max_bytes: PAGE_BYTES };
/// Longest wait for open calls to finish on shutdown (S6).
pub const DEFAULT_DRAIN: Duration = roster::transport::DEFAULT_DRAIN;
/// Reconnects per second the collectors are asked to spread to when the server shuts down.
pub const DEFAULT_RECONNECT_RATE: u32 = 200;
/// HTTP/2 keepalive ping interval (S5).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keepalive ping may go unanswered before the connection is closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often leases and grace periods are checked.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long a new store settles (C3): the renewal interval (a quarter) of the longest lease allowed, so it covers
/// every registrant whatever lease it asks for.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(MAX_LEASE.as_secs() / 4);
/// How late the registry's periodic work may run before the time counts as the server's own absence (L3).
pub const DEFAULT_ABSENCE_THRESHOLD: Duration = Duration::from_secs(2);
/// For replicas sharing a PostgreSQL store: how long one may go unheard (each says it is alive at every sweep,
/// `--sweep-interval`) while the one that leads is present, before the others count its streams closed, and the
/// lease of the one that leads. Another replica leads within this plus one sweep interval of the leader's death: 4 s, inside issue
/// 18's 5 s. Short enough that collectors move on from a replica cut from the store well within their grace period.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the registry's records are kept (`--store`): parsed here, at the edge, and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An embedded SQLite file in this directory (created if missing): one server (`sqlite://PATH`, or
    /// `--data-dir PATH`).
    Sqlite(PathBuf),
    /// A PostgreSQL database that several replicas share (`postgres://…` or `postgresql://…`).
    Postgres(PostgresUrl),
}

/// The accepted forms of `--store`, as its errors show them.
const STORE_FORMS: &str = "sqlite://PATH (a directory, created if missing) or \
                           postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require] (postgresql:// too)";

impl FromStr for StoreLocation {
    type Err = String;

    /// `sqlite://PATH` or a PostgreSQL URL; the error names the flag and both forms, and never repeats a password.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(format!("--store sqlite:// needs a directory after it; use {STORE_FORMS}"));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return PostgresUrl::parse(s)
                .map(Self::Postgres)
                .map_err(|e| format!("--store is not a valid PostgreSQL URL ({e}); use {STORE_FORMS}"));
        }
        let scheme = s.split_once("://").map_or("no scheme", |(scheme, _)| scheme);
        Err(format!("--store takes a URL of sqlite or postgres (this has {scheme}); use {STORE_FORMS}"))
    }
}

impl Display for StoreLocation {
    /// As given, without a PostgreSQL URL's password or options ([`PostgresUrl`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(dir) => write!(f, "sqlite://{}", dir.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

/// Everything the server needs to run; [`Config::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store is.
    pub store: StoreLocation,
    /// Where to serve the server's Prometheus metrics (`GET /metrics`); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Lease given to registrations that ask for none (L1). Keep it within [`roster::domain::MIN_LEASE`] and
    /// [`roster::domain::MAX_LEASE`], the bounds of a lease a registrant may ask for; `roster-server --lease`
    /// refuses anything else.
    pub lease: Duration,
    /// How long a collector stays eligible after its last stream closed (L2).
    pub grace: Duration,
    /// How long a departed collector is kept (listed, with its generation) before it is forgotten.
    pub forget_after: Duration,
    /// Idle time after which a feed stream gets a heartbeat (S5). `roster-server --heartbeat` refuses less than
    /// [`Config::MIN_HEARTBEAT`]; only a test embedding the server should go below it.
    pub heartbeat: Duration,
    /// Bounds of a snapshot chunk (S2).
    pub chunk_limits: ChunkLimits,
    /// Longest wait for open calls to finish on shutdown (S6).
    pub drain: Duration,
    /// Reconnects per second the collectors are asked to spread to when the server shuts down: they come back
    /// over a window of `open streams / reconnect_rate` seconds, at most 10 s.
    pub reconnect_rate: u32,
    /// HTTP/2 keepalive ping interval (S5).
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// How often leases and grace periods are checked.
    pub sweep_interval: Duration,
    /// How long a new store settles before its snapshots may shrink a collector's set (C3): serving time, which
    /// must cover the longest renewal interval in use (a quarter of the longest lease).
    pub settle: Duration,
    /// How late the registry's periodic work may run before the server counts the time as its own absence, which
    /// no lease or grace period is charged for (L3; see `registry::absence`).
    pub absence_threshold: Duration,
    /// For replicas sharing a store: how long one may go without reaching it before its streams count as closed
    /// (see [`DEFAULT_REPLICA_TIMEOUT`]); also the leader's lease.
    pub replica_timeout: Duration,
    /// Who may call (issue 15): off by default, so a server embedded in a test or `roster up` on loopback needs
    /// no credentials; `roster-server` turns it on with `--auth-tokens` (see [`check_exposure`]).
    pub auth: Authenticator,
    /// TLS on the gRPC listener (reloaded when its files change); `None` serves plaintext.
    pub tls: Option<ServerTls>,
    /// The clocks; replaced in tests.
    pub clock: Arc<dyn Clock>,
}

impl Config {
    /// The shortest heartbeat `roster-server --heartbeat` accepts (beside [`DEFAULT_HEARTBEAT`]; an associated
    /// constant, so it comes with the re-exported [`Config`]). A heartbeat only tells an idle stream's collector
    /// that the feed is alive and prompts a report that failed to be sent again (C4): ten a second per stream is far
    /// more than that needs, yet cheap, while with `--heartbeat 1ns` one idle collector kept the server at 76% CPU.
    pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

    /// The defaults, with a SQLite store in `data_dir`, no metrics served and no TLS.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            store: StoreLocation::Sqlite(data_dir.into()),
            metrics_listen: None,
            lease: DEFAULT_LEASE,
            grace: DEFAULT_GRACE,
            forget_after: DEFAULT_FORGET_AFTER,
            heartbeat: DEFAULT_HEARTBEAT,
            chunk_limits: DEFAULT_CHUNK_LIMITS,
            drain: DEFAULT_DRAIN,
            reconnect_rate: DEFAULT_RECONNECT_RATE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            settle: DEFAULT_SETTLE,
            absence_threshold: DEFAULT_ABSENCE_THRESHOLD,
            replica_timeout: DEFAULT_REPLICA_TIMEOUT,
            auth: Authenticator::off(),
            tls: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Refuses to serve `listen` to other machines unprotected, the way Redis's protected mode does: a non-loopback
/// address needs TLS (`tls`) and authentication (`auth`), unless the operator said `insecure`. Loopback stays open,
/// for the quick start. The error says why and what to do.
///
/// # Errors
/// The reason, naming the flags that fix it.
pub fn check_exposure(listen: SocketAddr, tls: bool, auth: bool, insecure: bool) -> Result<(), String> {
    if insecure || listen.ip().is_loopback() || (tls && auth) {
        return Ok(());
    }
    let missing = match (tls, auth) {
        (false, false) => "TLS and authentication",
        (false, true) => "TLS (tokens would cross the network in the clear)",
        _ => "authentication",
    };
    Err(format!(
        "refusing to serve on {listen} without {missing}: anyone who reaches this port could deregister every \
         producer, pin them all to one collector, or read and report for any collector. Give --tls-cert and \
         --tls-key (and --tls-ca for client certificates) and --auth-tokens FILE (tokens from `roster auth \
         token`); or listen on 127.0.0.1; or, on a network you trust, pass --insecure. See docs/SECURITY.md"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_a_sqlite_directory_or_a_postgres_url_shown_without_its_password() {
        assert_eq!("sqlite:///var/lib/roster".parse(), Ok(StoreLocation::Sqlite("/var/lib/roster".into())));
        assert_eq!("sqlite://./data".parse(), Ok(StoreLocation::Sqlite("./data".into())));
        for url in [
            "postgres://roster:s3cret@db.example:5433/fleet?sslmode=require",
            "postgresql://roster:s3cret@db.example:5433/fleet",
        ] {
            let store: StoreLocation = url.parse().unwrap();
            assert_eq!(store.to_string(), "postgres://roster@db.example:5433/fleet", "{url}");
            assert!(!format!("{store:?}").contains("s3cret"), "{store:?}");
        }
        for (bad, says) in [
            ("sqlite://", "needs a directory"),
            ("/var/lib/roster", "this has no scheme"),
            ("mysql://db/roster", "this has mysql"),
            ("postgres://db:notaport/roster", "not a valid PostgreSQL URL"),
        ] {
            let e = bad.parse::<StoreLocation>().unwrap_err();
            assert!(e.starts_with("--store ") && e.contains(says), "{bad}: {e}");
            assert!(e.contains("sqlite://PATH") && e.contains("postgres://USER"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_loopback_or_a_protected_or_an_insecure_server_may_listen() {
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let e = check_exposure(any, false, false, false).unwrap_err();
        assert!(e.starts_with("refusing to serve on 0.0.0.0:50051 without TLS and authentication:"), "{e}");
        assert!(e.contains("--insecure") && e.contains("--auth-tokens") && e.contains("--tls-cert"), "{e}");
        assert!(check_exposure(any, false, true, false).unwrap_err().contains("without TLS (tokens"));
        assert!(check_exposure(any, true, false, false).unwrap_err().contains("without authentication:"));
        assert_eq!(check_exposure(any, true, true, false), Ok(()));
        assert_eq!(check_exposure(any, false, false, true), Ok(()));
        for loopback in ["127.0.0.1:50051", "[::1]:50051"] {
            assert_eq!(check_exposure(loopback.parse().unwrap(), false, false, false), Ok(()), "{loopback}");
        }
    }
}
