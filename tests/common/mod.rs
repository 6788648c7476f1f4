//! Harness for the end-to-end tests: the workspace's own binaries as child processes, with their logs.
//!
//! The binaries are found next to the test executable (`cargo test --workspace` and `./scripts/test` build them);
//! if one is missing the test fails and says how to build it.

// Test helpers: a panic here is the test failing, with its message. Each test binary uses a part of them.
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub mod prometheus;

pub use roster_testkit::{WAIT, wait_for, wait_until};

/// The path of one of the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (./scripts/test does)",
        path.display()
    );
    path
}

/// A child process whose stdout and stderr lines are collected; killed when dropped.
pub struct Proc {
    pub child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<String>>,
}

impl Proc {
    pub fn start(name: &str, args: &[&str]) -> Self {
        Self::start_with_env(name, args, &[])
    }

    /// Like [`Proc::start`], with more environment variables.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut command = Command::new(binary(name));
        // Metrics on a free port: the default ports would clash between tests run in parallel.
        command
            .env("ROSTER_SERVER_METRICS_LISTEN", "127.0.0.1:0")
            .env("ROSTER_COLLECTOR_METRICS_LISTEN", "127.0.0.1:0");
        command.envs(env.iter().copied());
        if name == "roster" {
            command.env_remove("RUST_LOG");
        } else {
            command.env("RUST_LOG", "info");
        }
        command.args(args);
        Self::spawn(name, command)
    }

    /// Starts `command` (named `name` in messages), any program, collecting its output.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let text = stdout.clone();
        let mut pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, stderr, stdout }
    }

    /// Every stderr line so far, joined.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Everything on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (bounded) for the process to exit and fails, with its output, unless it succeeded.
    pub fn assert_ok(&mut self) {
        let status = self.wait_exit();
        assert!(status.success(), "exit {status}; stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
    }

    /// Its stdout as JSON (the CLI's `--output json`); fails, with its output, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout(), self.stderr()))
    }

    /// Waits for a stderr line containing `marker` and returns the word after `key` in it.
    pub fn logged(&self, marker: &str, key: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(word) = self.stderr.lock().unwrap().iter().find(|l| l.contains(marker)).and_then(|line| {
                line.split(key)
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").trim_end_matches(')').to_owned())
            }) {
                return word;
            }
            assert!(Instant::now() < deadline, "no {marker:?} in the log:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A roster-server process on 127.0.0.1 (port chosen by the OS unless `listen` is given), and its URL.
pub fn start_server(data_dir: &Path, listen: Option<&str>) -> (Proc, String) {
    start_server_with(data_dir, listen, &[])
}

/// Like [`start_server`], with more flags (e.g. `--grace 1s`).
pub fn start_server_with(data_dir: &Path, listen: Option<&str>, extra: &[&str]) -> (Proc, String) {
    let dir = data_dir.display().to_string();
    let mut args = vec!["--listen", listen.unwrap_or("127.0.0.1:0"), "--data-dir", &dir];
    args.extend_from_slice(extra);
    let server = Proc::start("roster-server", &args);
    let addr = server.logged("roster-server serving", "listen=");
    (server, addr)
}

/// A roster-server process on `listen` with its store at `store` (`--store`: `sqlite://DIR` or a PostgreSQL URL such
/// as [`roster_testkit::TestPostgres::url`]) and `extra` flags, and the address it serves on.
pub fn start_server_on_store(store: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
    let server = Proc::start("roster-server", &[&["--listen", listen, "--store", store], extra].concat());
    let addr = server.logged("roster-server serving", "listen=");
    (server, addr)
}

/// Runs the `roster` CLI to completion (bounded) and returns it.
pub fn roster(args: &[&str]) -> Proc {
    let mut cli = Proc::start("roster", args);
    cli.wait_exit();
    cli
}

/// `roster up` with its data under `data_dir`, its control plane and collector status on OS-chosen ports, and
/// `extra` flags (its metrics ports, producers, interval); running, not waited for.
pub fn start_roster_up(data_dir: &Path, extra: &[&str]) -> Proc {
    let data = data_dir.display().to_string();
    let flags = ["up", "--data-dir", &data, "--listen", "127.0.0.1:0", "--collector-listen", "127.0.0.1:0"];
    Proc::start("roster", &[&flags[..], extra].concat())
}

/// An external test tool: `$env_var` if set, else `.tools/<path>` as installed by `./scripts/test`.
/// Fails (never skips) when it is missing.
pub fn tool(env_var: &str, path: &str) -> PathBuf {
    let name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
    let path = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools").join(path));
    assert!(
        path.is_file(),
        "{name} is required by this test but was not found at {} — run ./scripts/test, which installs it into \
         .tools/ (or set {env_var})",
        path.display()
    );
    path
}

/// grpcurl 1.8.6.
pub fn grpcurl() -> PathBuf {
    tool("ROSTER_GRPCURL", "venv/bin/grpcurl")
}

/// Debian's libfaketime (the multi-threaded variant), which moves a process's wall clock by the offset written
/// in a file while leaving its monotonic clock alone.
pub fn libfaketime() -> PathBuf {
    tool("ROSTER_LIBFAKETIME", "debian/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
}

/// Debian's node_exporter 1.5 (package `prometheus-node-exporter`).
pub fn node_exporter() -> PathBuf {
    tool("ROSTER_NODE_EXPORTER", "debian/usr/bin/prometheus-node-exporter")
}

/// A port free now on 127.0.0.1, for a process that must be told its port (see `roster_testkit::ports`).
pub use roster_testkit::free_port;

/// node_exporter on a free loopback port with three collectors only: `loadavg`, `meminfo`, and `textfile` reading
/// the `*.prom` files of `textfile_dir` at each scrape. Returns it and its address once it logs "Listening on".
/// It must be told its port (with port 0 it does not log the one it got), so a port taken between [`free_port`]
/// and its bind is retried with another, a few times.
pub fn start_node_exporter(textfile_dir: &Path) -> (Proc, String) {
    for _ in 0..5 {
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(node_exporter());
        command.args([
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.meminfo",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", textfile_dir.display()),
            &format!("--web.listen-address={address}"),
        ]);
        let mut exporter = Proc::spawn("node_exporter", command);
        let deadline = Instant::now() + WAIT;
        loop {
            if exporter.stderr().contains(&format!("msg=\"Listening on\" address={address}")) {
                return (exporter, address);
            }
            if exporter.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "node_exporter did not listen in time:\n{}", exporter.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = exporter.wait_exit();
        assert!(
            exporter.stderr().contains("address already in use"),
            "node_exporter exited {status}:\n{}",
            exporter.stderr()
        );
    }
    panic!("node_exporter found no free port in 5 tries");
}

/// Every complete line of a collector's JSON-lines sink, parsed (the last line may be half written).
pub fn sink_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Python with grpcio and grpcio-tools.
pub fn python() -> PathBuf {
    tool("ROSTER_PYTHON", "venv/bin/python")
}

/// A roster-collector process following `server_url`, with its status on an OS-chosen port; returns it, its
/// status address and its id.
pub fn start_collector(server_url: &str, data_dir: &Path) -> (Proc, String, String) {
    let dir = data_dir.display().to_string();
    let collector =
        Proc::start("roster-collector", &["--server", server_url, "--data-dir", &dir, "--listen", "127.0.0.1:0"]);
    let status_addr = collector.logged("roster-collector running", "status=Some(");
    let id = std::fs::read_to_string(data_dir.join("collector-id")).unwrap().trim().to_owned();
    (collector, status_addr, id)
}

/// Runs `grpcurl -plaintext -max-time 20 FLAGS ADDR WORDS`; returns stdout, or fails with stderr.
pub fn run_grpcurl(addr: &str, flags: &[&str], words: &[&str]) -> String {
    let output = grpcurl_output(&[&["-plaintext"], flags].concat(), addr, words);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl {flags:?} {words:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Like [`start_collector`], with more flags (e.g. `--keepalive-interval 1s`).
pub fn start_collector_with(server_url: &str, data_dir: &Path, extra: &[&str]) -> (Proc, String, String) {
    let dir = data_dir.display().to_string();
    let mut args = vec!["--server", server_url, "--data-dir", &dir, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let collector = Proc::start("roster-collector", &args);
    let status_addr = collector.logged("roster-collector running", "status=Some(");
    let id = std::fs::read_to_string(data_dir.join("collector-id")).unwrap().trim().to_owned();
    (collector, status_addr, id)
}

/// Samples per producer id in a collector's sink file (complete lines only: the last may be half written).
pub fn sink_counts(path: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return counts };
    for line in text.lines() {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(id) = value["producer_id"].as_str()
        {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// A collector's whole status (every page of its producers), read over its status API.
pub async fn status(status_addr: &str) -> roster::pb::GetStatusResponse {
    let client = roster::client::StatusClient::connect(
        &roster::endpoint::ServerUrl::parse_address_or_url(status_addr).expect("a status address"),
        Duration::from_secs(10),
    );
    client.get_full_status().await.expect("GetStatus")
}

/// Reads a collector's status until `check` holds; returns that status (bounded by [`WAIT`]).
pub async fn wait_status(
    status_addr: &str,
    what: &str,
    check: impl Fn(&roster::pb::GetStatusResponse) -> bool,
) -> roster::pb::GetStatusResponse {
    wait_until(what, || status(status_addr), check).await
}

/// A registry client for `server_url`.
pub async fn registry(server_url: &str) -> roster::pb::registry_client::RegistryClient<tonic::transport::Channel> {
    roster::pb::registry_client::RegistryClient::connect(server_url.to_owned()).await.unwrap()
}

pub use roster_testkit::{never_due, registration};

/// Registers `count` never-due producers, 16 clients at a time; returns their ids.
pub async fn register_many(server_url: &str, count: usize) -> Vec<String> {
    roster_testkit::register_many(server_url, count, 16).await.expect("bulk registration").0
}

/// The library's own retrying client of `server_url` (10 s per attempt).
pub fn client(server_url: &str) -> roster::client::RosterClient {
    roster::client::RosterClient::new(server_url, Duration::from_secs(10)).expect("an http://host:port server URL")
}

/// Every registered producer, id to assigned collector, read page by page.
pub async fn all_producers(server_url: &str) -> std::collections::BTreeMap<String, String> {
    let producers = client(server_url).list_all_producers(String::new()).await.expect("ListProducers");
    producers.into_iter().map(|p| (p.id, p.assigned_collector_id)).collect()
}

/// Every collector the server knows, by id.
pub async fn collectors(server_url: &str) -> std::collections::BTreeMap<String, roster::pb::CollectorInfo> {
    let listed = client(server_url).list_collectors().await.expect("ListCollectors");
    listed.collectors.into_iter().map(|c| (c.id.clone(), c)).collect()
}

/// Waits until the server has `collector`'s report of `generation` (or a later one): the collector reports only
/// what it has persisted (C5), so its state file holds that generation from then on.
pub async fn wait_reported(server_url: &str, collector: &str, generation: u64) {
    let what = format!("a report of generation {generation} from {collector}");
    wait_until(
        &what,
        || collectors(server_url),
        |known| known.get(collector).is_some_and(|c| c.reported_generation >= generation),
    )
    .await;
}

/// Samples per producer over several collectors' sinks.
pub fn samples(sinks: &[PathBuf]) -> std::collections::BTreeMap<String, u64> {
    let mut total = std::collections::BTreeMap::new();
    for sink in sinks {
        for (id, n) in sink_counts(sink) {
            *total.entry(id).or_default() += n;
        }
    }
    total
}

/// Waits until the server knows exactly `count` collectors, each with one stream open and converged (its last
/// report is its current generation); returns how long that took.
pub async fn wait_fleet_in_sync(server_url: &str, count: usize, what: &str) -> Duration {
    let start = Instant::now();
    let what = format!("{what}: all {count} collectors in sync");
    wait_until(
        &what,
        || collectors(server_url),
        |known| known.len() == count && known.values().all(|c| c.open_streams == 1 && c.converged),
    )
    .await;
    start.elapsed()
}

/// Waits until every producer in `before` has `more` samples beyond its count there.
pub async fn collected_more(
    what: &str,
    sinks: &[PathBuf],
    before: &std::collections::BTreeMap<String, u64>,
    more: u64,
) {
    wait_for(what, || {
        let now = samples(sinks);
        before.iter().all(|(id, n)| now.get(id).is_some_and(|m| *m >= n + more))
    })
    .await;
}

/// Clients registering new producers with one server as fast as it answers, until a call fails (the server died);
/// an id counts as acknowledged only once its call returned OK.
pub struct RegistrationBurst {
    acknowledged: Arc<Mutex<Vec<String>>>,
    clients: tokio::task::JoinSet<()>,
}

impl RegistrationBurst {
    /// Starts `clients` clients registering with `server_url`.
    pub async fn start(server_url: &str, clients: usize) -> Self {
        let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
        let client = registry(server_url).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (mut client, acknowledged) = (client.clone(), acknowledged.clone());
            tasks.spawn(async move {
                // Bounded: the server dies long before this many calls.
                for _ in 0..100_000 {
                    let request = roster_testkit::never_due();
                    let id = request.producer_id.clone();
                    if client.register_producer(request).await.is_err() {
                        return;
                    }
                    acknowledged.lock().unwrap().push(id);
                }
            });
        }
        Self { acknowledged, clients: tasks }
    }

    /// How many registrations were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until every client stopped (its server gone); returns the ids acknowledged.
    pub async fn end(mut self) -> Vec<String> {
        while self.clients.join_next().await.is_some() {}
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Reads a collector's applied set over its status API every 20 ms until [`SetWatcher::finish`]; remembers the
/// smallest count seen, so a test can say no producer ever left the set, and every time its applied generation went
/// backwards within an epoch, which must never happen (C3).
pub struct SetWatcher {
    smallest: Arc<AtomicU64>,
    backwards: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl SetWatcher {
    pub fn start(status_addr: &str) -> Self {
        let smallest = Arc::new(AtomicU64::new(u64::MAX));
        let backwards = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, seen, went_back, done) = (status_addr.to_owned(), smallest.clone(), backwards.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut polls = 0;
            let mut last: Option<(String, u64)> = None;
            // Bounded: at most 10 minutes of polls, far beyond any test here.
            while !done.load(Ordering::SeqCst) && polls < 30_000 {
                let s = status(&addr).await;
                seen.fetch_min(s.applied_producer_count, Ordering::SeqCst);
                let now = (s.applied_epoch, s.applied_generation);
                if let Some(before) = &last
                    && before.0 == now.0
                    && before.1 > now.1
                {
                    went_back.lock().unwrap().push(format!("{addr}: {before:?} then {now:?}"));
                }
                last = Some(now);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            polls
        });
        Self { smallest, backwards, stop, task: Some(task) }
    }

    /// Stops watching; returns the smallest set seen and the number of polls.
    pub async fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let polls = self.task.take().unwrap().await.unwrap();
        let backwards = self.backwards.lock().unwrap().clone();
        assert!(backwards.is_empty(), "applied generations went backwards: {backwards:?}");
        (self.smallest.load(Ordering::SeqCst), polls)
    }
}

/// A credential made by `roster auth token`: the token, a file holding it (for `--token-file`), and the line that
/// grants it in the server's token file.
pub struct Grant {
    pub token: String,
    pub token_file: PathBuf,
    pub line: String,
}

impl Grant {
    /// `authorization: Bearer <token>`, as grpcurl's `-H` takes it.
    pub fn header(&self) -> String {
        format!("authorization: Bearer {}", self.token)
    }

    /// The library's retrying client of `server_url`, sending this token (10 s per attempt, one attempt: a
    /// refusal is not retried anyway).
    pub fn client(&self, server_url: &str) -> roster::client::RosterClient {
        let credentials = roster::auth::CallCredentials::from_token_file(&self.token_file).expect("the token file");
        client(server_url).with_max_attempts(1).with_credentials(credentials)
    }
}

/// A server's token file (`--auth-tokens`) under a test's directory, and the credentials granted in it, each made
/// with the CLI (`roster auth token`), as an operator would.
pub struct ServerTokens {
    pub path: PathBuf,
    made: AtomicU64,
}

impl ServerTokens {
    /// An empty token file in `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, "# roster-server --auth-tokens\n").unwrap();
        Self { path, made: AtomicU64::new(0) }
    }

    /// Makes a token for `role` bound to `binding` with `roster auth token`, adds its line to the file, and writes
    /// the token to a file of its own.
    pub fn grant(&self, role: &str, binding: Option<&str>) -> Grant {
        let mut args = vec!["auth", "token", "--role", role, "--output", "json"];
        if let Some(binding) = binding {
            args.extend(["--binding", binding]);
        }
        let mut cli = roster(&args);
        cli.assert_ok();
        let made = cli.json();
        let (token, line) = (made["token"].as_str().unwrap().to_owned(), made["line"].as_str().unwrap().to_owned());
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let token_file = self.path.with_file_name(format!("token-{n}-{role}"));
        std::fs::write(&token_file, &token).unwrap();
        let mut text = std::fs::read_to_string(&self.path).unwrap();
        text.push_str(&line);
        text.push('\n');
        std::fs::write(&self.path, text).unwrap();
        Grant { token, token_file, line }
    }

    /// Deletes `grant`'s line from the file (the server picks the change up while running).
    pub fn revoke(&self, grant: &Grant) {
        let text = std::fs::read_to_string(&self.path).unwrap();
        let kept: String = text.lines().filter(|l| *l != grant.line).map(|l| format!("{l}\n")).collect();
        assert_ne!(kept, text, "the grant's line is in the file");
        std::fs::write(&self.path, kept).unwrap();
    }
}

/// A roster-server on 127.0.0.1 with authentication on (`--auth-tokens` of `tokens`) and `extra` flags.
pub fn start_secured_server(data_dir: &Path, tokens: &ServerTokens, extra: &[&str]) -> (Proc, String) {
    let path = tokens.path.display().to_string();
    start_server_with(data_dir, None, &[&["--auth-tokens", path.as_str()], extra].concat())
}

/// Runs `grpcurl -plaintext -max-time 20 FLAGS ADDR WORDS` expecting it to fail; returns its stderr.
pub fn grpcurl_refused(addr: &str, flags: &[&str], words: &[&str]) -> String {
    let output = grpcurl_output(&[&["-plaintext"], flags].concat(), addr, words);
    assert!(
        !output.status.success(),
        "grpcurl {flags:?} {words:?} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--tls-cert`, `--tls-key` and `--tls-ca` of a TLS server (or a collector or producer serving with a client
/// certificate that also serves) from a test's [`roster_testkit::TlsSetup`]: the server's certificate, or the
/// client's when `as_client`.
pub fn tls_flags(tls: &roster_testkit::TlsSetup, as_client: bool) -> Vec<String> {
    let identity = if as_client { &tls.client } else { &tls.server };
    [("--tls-cert", &identity.cert), ("--tls-key", &identity.key), ("--tls-ca", &tls.ca_file)]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
        .collect()
}

/// `--tls-ca` alone: a client that verifies the server and presents no certificate.
pub fn tls_ca_flag(tls: &roster_testkit::TlsSetup) -> Vec<String> {
    vec!["--tls-ca".to_owned(), tls.ca_file.display().to_string()]
}

/// Runs `grpcurl -max-time 20 -cacert CA [-cert C -key K] ADDR WORDS` over TLS (the client certificate when
/// `mutual`); returns its output, successful or not.
pub fn grpcurl_tls(addr: &str, tls: &roster_testkit::TlsSetup, mutual: bool, words: &[&str]) -> std::process::Output {
    let mut command = Command::new(grpcurl());
    command.args(["-max-time", "20", "-cacert"]).arg(&tls.ca_file);
    if mutual {
        command.arg("-cert").arg(&tls.client.cert).arg("-key").arg(&tls.client.key);
    }
    command.arg(addr).args(words).output().expect("grpcurl runs")
}

/// The serial number of the certificate the TLS server at `addr` presents to a new connection, read from a
/// handshake of its own (presenting the test's client certificate, so a server that requires one answers too).
pub async fn served_serial(addr: &str, tls: &roster_testkit::TlsSetup) -> u64 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&tls.client.cert).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&tls.client.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    cert.tbs_certificate.raw_serial().iter().fold(0u64, |serial, byte| serial << 8 | u64::from(*byte))
}

/// Runs `grpcurl -max-time 20 FLAGS ADDR WORDS` (TLS unless FLAGS say `-plaintext`); returns its output, successful
/// or not.
pub fn grpcurl_output(flags: &[&str], addr: &str, words: &[&str]) -> std::process::Output {
    Command::new(grpcurl()).args(["-max-time", "20"]).args(flags).arg(addr).args(words).output().expect("grpcurl runs")
}
