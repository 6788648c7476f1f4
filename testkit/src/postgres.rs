//! A real PostgreSQL server for tests ([`TestPostgres`]): `initdb` into a fresh temporary directory, `postgres` on a
//! free loopback port ([`crate::ports`]), one database for the test; stopped (fast),
//! killed (`SIGKILL`) and started again on the same data and port by the test, for the faults roster must survive. Nothing is left running when it is dropped.
//!
//! The tools are PostgreSQL's own (`initdb`, `postgres`), from the directory `ROSTER_PG_BIN` names or from `PATH`
//! (`./scripts/test` sets it when it had to fetch Debian's `postgresql-15`). A missing tool fails the test, naming
//! it: the store's tests never skip.
//!
//! PostgreSQL refuses to run as root. When the test runs as root (as in CI), `initdb` and `postgres` run as an
//! unprivileged system user, [`SYSTEM_USER`], created on first use, which owns the temporary directory.
//!
//! Settings are the production ones where they matter: `fsync` stays on (a commit that returned is durable, which is
//! what roster promises), and clients reach it over TCP on 127.0.0.1 only.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::unix::{fs::chown, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection};
use tempfile::TempDir;

use crate::{
    ports::free_port,
    wait::{WAIT, wait_for_some},
};

/// The unprivileged system user PostgreSQL runs as when the test runs as root.
pub const SYSTEM_USER: &str = "roster-pg";
/// The database user (`initdb -U`): the cluster's superuser, reached without a password (trust, loopback only).
const DB_USER: &str = "roster";
/// The database each test gets, created at the first start.
const DATABASE: &str = "roster";
/// Enough for three replicas' pools and listeners, the test's own connections and PostgreSQL's reserve.
const MAX_CONNECTIONS: u32 = 100;
/// Plenty for a test's few thousand rows; small, so that parallel tests do not each take PostgreSQL's 128 MB.
const SHARED_BUFFERS: &str = "16MB";
/// How much of the server's log a failure shows.
const LOG_TAIL_LINES: usize = 30;
/// How often a stopping or killed server is checked.
const POLL: Duration = Duration::from_millis(20);
/// How long one readiness probe may wait for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many ports a first start tries when its port was taken before postgres bound it.
const PORT_ATTEMPTS: usize = 5;

/// A PostgreSQL server of the test's own; see the module doc.
#[derive(Debug)]
pub struct TestPostgres {
    /// The data directory (`data/`), the unix socket, the log (`postgres.log`).
    dir: TempDir,
    port: u16,
    /// The uid and gid to run the tools as, when the test runs as root.
    run_as: Option<(u32, u32)>,
    postgres: PathBuf,
    /// The postmaster, while it runs.
    postmaster: Option<Child>,
}

impl TestPostgres {
    /// Creates a cluster in a fresh temporary directory, starts it on a free port of 127.0.0.1, waits (bounded by
    /// [`WAIT`]) until it accepts connections, and creates the test's database.
    ///
    /// # Panics
    /// When a tool is missing, the system user cannot be created, `initdb` fails or the server does not start
    /// (with the tail of its log).
    pub async fn start() -> Self {
        let (initdb, postgres) = (tool("initdb"), tool("postgres"));
        let run_as =
            if rustix::process::getuid().is_root() { Some(*SYSTEM_USER_IDS.get_or_init(system_user)) } else { None };
        let dir = tempfile::Builder::new().prefix("roster-pg-").tempdir().expect("create a temporary directory");
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {SYSTEM_USER}: {e}", dir.path().display()));
        }
        let port = free_port();
        let mut command = Command::new(&initdb);
        command
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .args(["--username", DB_USER, "--auth", "trust", "--encoding", "UTF8", "--no-locale"])
            // initdb's own fsyncs: a test's cluster lives and dies with the test, so they only slow every start. The
            // server itself runs with fsync on (see `spawn`).
            .arg("--no-sync");
        let output = as_user(&mut command, run_as, dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", initdb.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}{}",
            initdb.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Self { dir, port, run_as, postgres, postmaster: None };
        server.spawn_on_a_free_port().await;
        let mut admin = server.connect("postgres").await;
        // DATABASE's name, literal (sqlx takes only literal SQL without binds, and CREATE DATABASE takes none).
        sqlx::raw_sql("CREATE DATABASE roster")
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("create database {DATABASE}: {e}"));
        admin.close().await.expect("close the admin connection");
        server
    }

    /// The test database's URL: `postgres://roster@127.0.0.1:PORT/roster`.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The TCP port it listens on (the same across [`TestPostgres::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with a fast shutdown (`SIGINT`: open transactions are rolled back, clients disconnected) and
    /// waits (bounded by [`WAIT`]) until it has exited. Does nothing when it is not running.
    ///
    /// # Panics
    /// When it does not exit in time (with the tail of its log).
    pub fn stop(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else { return };
        signal(&postmaster, rustix::process::Signal::INT);
        let deadline = Instant::now() + WAIT;
        while postmaster.try_wait().expect("wait for postgres").is_none() {
            assert!(Instant::now() < deadline, "postgres did not stop within {WAIT:?}; log:\n{}", self.log_tail());
            std::thread::sleep(POLL);
        }
    }

    /// Kills the postmaster with `SIGKILL`, as a crash would, and waits (bounded by [`WAIT`]) until its server
    /// processes, which notice their postmaster's death, have exited too: nothing of it runs when this returns, and
    /// [`TestPostgres::start_again`] recovers from the crash. Does nothing when it is not running.
    ///
    /// # Panics
    /// When its processes do not exit in time.
    pub fn kill(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else { return };
        let backends = children_of(postmaster.id());
        let _ = postmaster.kill();
        postmaster.wait().expect("reap postgres");
        let deadline = Instant::now() + WAIT;
        while backends.iter().any(|&pid| running(pid)) {
            assert!(
                Instant::now() < deadline,
                "postgres's server processes {backends:?} outlived their postmaster by {WAIT:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Starts the server again, on the same data directory and port, after [`TestPostgres::stop`] or
    /// [`TestPostgres::kill`] (then it recovers from its write-ahead log first), and waits until it accepts
    /// connections.
    ///
    /// # Panics
    /// When it is running, or does not start (with the tail of its log).
    pub async fn start_again(&mut self) {
        assert!(self.postmaster.is_none(), "start_again while postgres is running");
        if let Err(status) = self.spawn().await {
            panic!("postgres exited at start ({status}); log:\n{}", self.log_tail());
        }
        self.connect(DATABASE).await.close().await.expect("close the probe connection");
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://{DB_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The first start: [`TestPostgres::spawn`], on another port when something took this one between
    /// [`free_port`]'s check and postgres's bind (a few times). Later starts keep the port: the test's clients
    /// hold its URL.
    async fn spawn_on_a_free_port(&mut self) {
        for _ in 1..PORT_ATTEMPTS {
            let log_start = self.log_len();
            match self.spawn().await {
                Ok(()) => return,
                Err(_) if self.log_since(log_start).contains("Address already in use") => self.port = free_port(),
                Err(status) => panic!("postgres exited at start ({status}); log:\n{}", self.log_tail()),
            }
        }
        if let Err(status) = self.spawn().await {
            panic!("postgres exited at start ({status}), {PORT_ATTEMPTS} ports tried; log:\n{}", self.log_tail());
        }
    }

    /// Starts the postmaster and waits until it accepts connections, or returns how it exited when it exits first.
    async fn spawn(&mut self) -> Result<(), ExitStatus> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path().display()));
        let mut command = Command::new(&self.postgres);
        command.arg("-D").arg(self.dir.path().join("data")).arg("-p").arg(self.port.to_string());
        for (name, value) in [
            ("listen_addresses", Ipv4Addr::LOCALHOST.to_string()),
            ("unix_socket_directories", self.dir.path().display().to_string()),
            ("max_connections", MAX_CONNECTIONS.to_string()),
            ("shared_buffers", SHARED_BUFFERS.to_owned()),
            ("fsync", "on".to_owned()),
        ] {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        let stderr = log.try_clone().expect("clone the log's handle");
        let child = as_user(&mut command, self.run_as, self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.postgres.display()));
        self.postmaster = Some(child);
        // Connecting is the readiness check: the postmaster refuses connections while it starts or recovers.
        let url = self.url_of("postgres");
        let ready = wait_for_some("postgres to accept connections", || {
            let exited = self.postmaster.as_mut().and_then(|p| p.try_wait().expect("poll postgres"));
            let url = url.clone();
            async move {
                match exited {
                    Some(status) => Some(Err(status)),
                    // Bounded: whatever else holds the port may accept and never answer.
                    None => tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(&url)).await.ok()?.ok().map(Ok),
                }
            }
        })
        .await;
        match ready {
            Ok(conn) => {
                conn.close().await.expect("close the probe connection");
                Ok(())
            }
            Err(status) => {
                // Reaped already: nothing is left to stop.
                self.postmaster = None;
                Err(status)
            }
        }
    }

    async fn connect(&self, database: &str) -> PgConnection {
        PgConnection::connect(&self.url_of(database))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}; log:\n{}", self.url_of(database), self.log_tail()))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// What the server logged after the log was `from` bytes long.
    fn log_since(&self, from: u64) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(usize::try_from(from).unwrap_or(usize::MAX)..).unwrap_or_default()).into_owned()
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for TestPostgres {
    /// Stops the server (fast shutdown), or kills it when it does not stop in time. Never panics: it runs while a
    /// failed test unwinds, where a second panic would abort the whole test binary.
    fn drop(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else { return };
        if matches!(postmaster.try_wait(), Ok(None)) {
            // It may exit between the check and the signal: then there is nothing left to stop.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&postmaster),
                rustix::process::Signal::INT,
            );
        }
        let deadline = Instant::now() + WAIT;
        while matches!(postmaster.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = postmaster.kill();
                let _ = postmaster.wait();
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The tool `name`: in `ROSTER_PG_BIN` if set, else on `PATH`.
fn tool(name: &str) -> PathBuf {
    let install = "PostgreSQL 15's server tools (initdb, postgres) are needed: ./scripts/test installs them (Debian's \
                   postgresql-15), or set ROSTER_PG_BIN to the directory holding them";
    if let Some(dir) = std::env::var_os("ROSTER_PG_BIN") {
        let path = Path::new(&dir).join(name);
        assert!(path.is_file(), "{name} is not in ROSTER_PG_BIN={}: {install}", Path::new(&dir).display());
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: {install}"))
}

/// `command` run as `run_as` (when the test runs as root), in `dir`: `initdb` and `postgres` must be able to read
/// their working directory, and root's (`/root`, say) is closed to the system user.
fn as_user<'c>(command: &'c mut Command, run_as: Option<(u32, u32)>, dir: &Path) -> &'c mut Command {
    command.current_dir(dir);
    if let Some((uid, gid)) = run_as {
        // std also drops root's supplementary groups when it changes the uid from root.
        command.uid(uid).gid(gid);
    }
    command
}

/// [`system_user`], once per process: a test that found the user while another test's `useradd` was still
/// writing it could not run `initdb` as it yet ("could not look up effective user ID").
static SYSTEM_USER_IDS: OnceLock<(u32, u32)> = OnceLock::new();

/// The uid and gid of [`SYSTEM_USER`], created if missing. Several test binaries may race to create it: whichever
/// `useradd` loses (the user exists, or `/etc/passwd` is locked by the winner) is retried until the user is there,
/// bounded by [`WAIT`].
fn system_user() -> (u32, u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(ids) = lookup_user(SYSTEM_USER) {
            return ids;
        }
        let output = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", SYSTEM_USER])
            .output()
            .unwrap_or_else(|e| {
                panic!("run useradd to create {SYSTEM_USER}, as PostgreSQL refuses to run as root: {e}")
            });
        if output.status.success() {
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "useradd could not create the system user {SYSTEM_USER}, which PostgreSQL runs as since it refuses to run \
             as root ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(POLL);
    }
}

/// `name`'s uid and gid from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [user, _, uid, gid, ..] if *user == name => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, signal).unwrap_or_else(|e| panic!("signal postgres ({signal:?}): {e}"));
}

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| stat(child).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// Whether `pid` runs (exists and is no zombie).
fn running(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// A process's state and parent, from `/proc/PID/stat` (`pid (comm) state ppid …`; comm may hold spaces and
/// parentheses, so fields are read after its last `)`).
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(url: &str) -> i64 {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM kept").fetch_one(&mut conn).await.unwrap()
    }

    /// It starts, takes connections and a committed row; a fast stop and a start on the same port keep the row;
    /// so do a SIGKILL and a start (crash recovery); and the server settings it promises are in force.
    #[tokio::test]
    async fn postgres_starts_keeps_data_across_stop_and_kill_and_starts_again() {
        let mut pg = TestPostgres::start().await;
        let url = pg.url();
        assert_eq!(url, format!("postgres://roster@127.0.0.1:{}/roster", pg.port()));
        let mut conn = PgConnection::connect(&url).await.unwrap();
        for (setting, want) in [("fsync", "on"), ("listen_addresses", "127.0.0.1"), ("max_connections", "100")] {
            let got: String =
                sqlx::query_scalar("SELECT current_setting($1)").bind(setting).fetch_one(&mut conn).await.unwrap();
            assert_eq!(got, want, "{setting}");
        }
        sqlx::raw_sql("CREATE TABLE kept (n bigint); INSERT INTO kept VALUES (1)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();

        pg.stop();
        assert!(PgConnection::connect(&url).await.is_err(), "a stopped server refuses connections");
        pg.start_again().await;
        assert_eq!(count(&url).await, 1);

        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO kept VALUES (2)").execute(&mut conn).await.unwrap();
        pg.kill();
        assert!(PgConnection::connect(&url).await.is_err(), "a killed server refuses connections");
        assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err(), "a killed server's connections are gone");
        pg.start_again().await;
        assert_eq!(count(&url).await, 2, "a committed row survives SIGKILL");
    }

    /// A first start whose port was taken meanwhile moves to another port.
    #[tokio::test]
    async fn a_start_whose_port_was_taken_moves_to_another() {
        let mut pg = TestPostgres::start().await;
        let taken = pg.port();
        let (low, high) = crate::ports::outside_ephemeral();
        assert!((low..high).contains(&taken), "{taken} is outside the ephemeral range");
        pg.stop();
        let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, taken)).unwrap();
        pg.spawn_on_a_free_port().await;
        let moved = pg.port();
        assert_ne!(moved, taken);
        assert!(pg.log_tail().contains("Address already in use"), "the first try met the squatter");
        PgConnection::connect(&pg.url()).await.unwrap().close().await.unwrap();
        drop(squatter);
    }

    /// Dropping it leaves no process of it running.
    #[tokio::test]
    async fn dropping_postgres_leaves_nothing_running() {
        let pg = TestPostgres::start().await;
        let pid = pg.postmaster.as_ref().map(Child::id).unwrap();
        let backends = children_of(pid);
        assert!(!backends.is_empty(), "a running postgres has server processes");
        drop(pg);
        assert!(!running(pid), "the postmaster stopped");
        wait_for_some("postgres's server processes to exit", || {
            std::future::ready(backends.iter().all(|&b| !running(b)).then_some(()))
        })
        .await;
    }
}
