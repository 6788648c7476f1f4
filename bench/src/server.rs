//! The server under test: the real `roster-server` binary as a child process, with its memory and CPU read from
//! `/proc`; and beside it, the bare tonic floor under its memory per idle stream ([`BareIdleServer`]). [`binary`], [`memory`] and [`cpu_time`] serve the collector and Prometheus processes too.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// One of the workspace's binaries (`roster-server`, `roster-collector`): `$env_var` if set, else next to the
/// running executable (or its parent, for test executables under `deps/`).
///
/// # Errors
/// When it cannot be found; the message says how to build it.
pub fn binary(name: &str, env_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("the executable has a directory")?.to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p roster-server -p roster-collector -p \
             roster-bench` (or set {env_var})",
            path.display()
        );
    }
    Ok(path)
}

/// Resident memory of a process, now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
///
/// # Errors
/// When `/proc` cannot be read.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .with_context(|| format!("{key} in /proc/{pid}/status"))?;
        Ok(value.parse::<u64>()? * 1024)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// CPU time a process has used so far (user + system, `utime + stime` from `/proc/PID/stat`).
///
/// # Errors
/// When `/proc` cannot be read.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // Linux reports CPU time in clock ticks of 1/100 s on every architecture it runs roster on.
    Ok(Duration::from_millis(ticks * 10))
}

/// A running roster-server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves its Prometheus metrics (a new port at each start).
    pub metrics_addr: SocketAddr,
    /// Its `--store`: `sqlite://DIR` or `postgres://…`.
    store: String,
    extra: Vec<String>,
}

impl ServerProcess {
    /// Starts a server on `listen` (port 0: any) with its SQLite store in `data_dir`, and waits until it serves.
    ///
    /// # Errors
    /// When it does not start or does not say where it listens within 60 s.
    pub fn start(data_dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(&format!("sqlite://{}", data_dir.display()), listen, extra)
    }

    /// Starts a server on `listen` (port 0: any) with its store at `store` (`--store`: `sqlite://DIR`, or
    /// `postgres://…` for one of several replicas sharing a PostgreSQL database), and waits until it serves.
    ///
    /// # Errors
    /// When it does not start or does not say where it listens within 60 s.
    pub fn start_on(store: &str, listen: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let (child, addr, metrics_addr) = spawn(store, listen, &extra)?;
        Ok(Self { child, addr, metrics_addr, store: store.to_owned(), extra })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with `signal` (`-TERM` or `-KILL`) and waits for it to exit.
    ///
    /// # Errors
    /// When the signal cannot be sent or it does not exit within 60 s.
    pub fn stop(&mut self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill {signal} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("roster-server did not exit within 60 s of {signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Starts it again on the same address and store; returns when it serves.
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (child, _, metrics_addr) = spawn(&self.store, &self.addr.to_string(), &self.extra)?;
        self.child = child;
        self.metrics_addr = metrics_addr;
        Ok(())
    }

    /// Resident memory, in bytes (`VmRSS`).
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        Ok(memory(self.pid())?.0)
    }

    /// CPU time used so far (user + system).
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `bare-idle-server` (this package's second binary): the bare tonic floor under roster-server's
/// memory per idle stream.
#[derive(Debug)]
pub struct BareIdleServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BareIdleServer {
    /// Starts one on an OS-chosen port of 127.0.0.1 with `tls_flags` (roster-server's `--tls-cert`, `--tls-key`,
    /// `--tls-ca`, which it takes too), and waits until it serves.
    ///
    /// # Errors
    /// When it does not start or does not say where it listens within 60 s.
    pub fn start(tls_flags: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary("bare-idle-server", "ROSTER_BARE_IDLE_SERVER_BIN")?);
        command.args(tls_flags);
        let (child, addr) = spawn_until_logged(command, "bare-idle-server serving", "listen=")?;
        Ok(Self { child, addr: addr.parse().context("the listen address in the log")? })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareIdleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts roster-server on `listen` with its store at `store`; returns it, where it listens and where it serves its
/// metrics.
fn spawn(store: &str, listen: &str, extra: &[String]) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    let mut command = Command::new(binary("roster-server", "ROSTER_SERVER_BIN")?);
    command
        .args(["--listen", listen, "--metrics-listen", "127.0.0.1:0", "--store", store])
        .args(extra)
        // Per-request log lines cost CPU the measurement should not carry; the serving line is enough.
        .env("RUST_LOG", "warn,roster_server=info,roster_server::feed=warn");
    let (child, line) = spawn_until_line(command, "roster-server serving")?;
    let addr = |key: &str| -> anyhow::Result<SocketAddr> {
        word_after(&line, key)
            .with_context(|| format!("{key} in the serving line {line:?}"))?
            .parse()
            .with_context(|| format!("the address after {key} in the serving line {line:?}"))
    };
    Ok((child, addr("listen=")?, addr("metrics=")?))
}

/// Starts `command` with its stderr read in the background, and waits (at most 60 s) for a line holding `marker`;
/// returns the child and the word after `key` in that line (up to a space or a `)`).
///
/// # Errors
/// When it does not start or does not log that line, with `key` in it, in time.
pub fn spawn_until_logged(
    command: Command,
    marker: &'static str,
    key: &'static str,
) -> anyhow::Result<(Child, String)> {
    let (child, line) = spawn_until_line(command, marker)?;
    let word = word_after(&line, key).with_context(|| format!("{key} in the line {line:?}"))?;
    Ok((child, word))
}

/// The word after `key` in `line` (up to a space or a `)`).
fn word_after(line: &str, key: &str) -> Option<String> {
    let rest = line.split(key).nth(1)?;
    Some(rest.split([' ', ')']).next().unwrap_or_default().to_owned())
}

/// Starts `command` with its stderr read in the background, and waits (at most 60 s) for a line holding `marker`;
/// returns the child and that line.
fn spawn_until_line(mut command: Command, marker: &'static str) -> anyhow::Result<(Child, String)> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains(marker) {
                sent = tx.send(line).is_ok();
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .with_context(|| format!("{name} did not log {marker:?} within 60 s"))?;
    Ok((child, line))
}
