//! What the scenarios beside Prometheus share ([`scrape`](crate::scrape), [`remote_write`](crate::remote_write)):
//! the Prometheus text targets both scrapers scrape, served from memory by this harness; the targets registered
//! on a roster-server for roster-collector to collect; Debian's `prometheus` 2.42 in agent mode, the peer roster is
//! measured against; and the one way each scraper's steady rate, CPU and memory are measured.
//!
//! Each target is a hyper server on its own loopback port, answering `GET /metrics` with a fixed body of
//! [`SERIES_PER_TARGET`] series shaped like node_exporter's (CPU seconds by mode, disk, network, filesystem and
//! memory families), so both scrapers see distinct `instance`s and parse real-looking bytes. Both scrape every
//! target every [`INTERVAL`].

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response,
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use roster::pb::{self, registry_client::RegistryClient};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

use crate::{
    scenarios::{LIMIT, STEADY},
    server::{ServerProcess, cpu_time, memory, spawn_until_logged},
};

/// Series in each target's body, as the issue asks.
pub const SERIES_PER_TARGET: usize = 200;
/// The scrape interval of both scrapers.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The scrape timeout of both scrapers (Prometheus requires it to be at most the interval).
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);
/// What the targets answer with: Prometheus text 0.0.4, as node_exporter does.
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The targets: one loopback hyper server per target, each serving its body from memory until dropped.
pub struct Targets {
    addrs: Vec<SocketAddr>,
    _servers: JoinSet<()>,
}

impl Targets {
    /// Starts `n` targets, each on a free loopback port.
    ///
    /// # Errors
    /// When a port cannot be bound.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let mut servers = JoinSet::new();
        let mut addrs = Vec::with_capacity(n);
        for target in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a target")?;
            addrs.push(listener.local_addr()?);
            let body = node_like_body(target);
            servers.spawn(serve(listener, body));
        }
        Ok(Self { addrs, _servers: servers })
    }

    /// Samples per second of the targets' own series when every target is scraped every [`INTERVAL`] (each
    /// scraper adds five synthetic series per target and scrape: `up` and `scrape_*`).
    pub fn series_per_sec(&self) -> f64 {
        (self.addrs.len() * SERIES_PER_TARGET) as f64 / INTERVAL.as_secs_f64()
    }

    /// A fresh roster-server (its store in `dir`) with every target registered as a Prometheus producer
    /// (`job=bench`, interval [`INTERVAL`], scrape timeout 800 ms), for a roster-collector to collect.
    ///
    /// # Errors
    /// When the server does not start or a registration fails.
    pub async fn registered_on_a_server(&self, dir: &Path) -> anyhow::Result<ServerProcess> {
        let server = ServerProcess::start(dir, "127.0.0.1:0", STEADY)?;
        let registry = RegistryClient::new(crate::channel(&server.url()).await?);
        let requests = self
            .addrs
            .iter()
            .map(|addr| pb::RegisterProducerRequest {
                address: addr.to_string(),
                interval_ms: INTERVAL.as_millis() as u32,
                labels: BTreeMap::from([("job".to_owned(), "bench".to_owned())]),
                lease_ms: Some(3_600_000),
                kind: pb::ProducerKind::Prometheus.into(),
                prometheus: Some(pb::PrometheusTarget {
                    scrape_timeout_ms: Some(SCRAPE_TIMEOUT.as_millis() as u32),
                    ..Default::default()
                }),
                ..roster_testkit::registration("", 0)
            })
            .collect();
        roster_testkit::register_all(&registry, requests, 16).await;
        Ok(server)
    }
}

/// Serves `body` as Prometheus text 0.0.4 on every connection `listener` accepts; its connections end with it.
async fn serve(listener: TcpListener, body: Bytes) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let body = body.clone();
        connections.spawn(async move {
            let service = service_fn(move |_request| {
                let mut response = Response::new(Full::new(body.clone()));
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_0_0_4));
                async move { Ok::<_, Infallible>(response) }
            });
            // A scraper hanging up mid-answer ends this connection only.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        // Finished connections are reaped as new ones come, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
}

/// A body of [`SERIES_PER_TARGET`] series in node_exporter's families and label shapes, with values that differ
/// per target.
fn node_like_body(target: usize) -> Bytes {
    let mut out = String::new();
    let mut series = 0usize;
    let mut value = || {
        series += 1;
        (target * 7_919 + series * 104_729) as f64 / 100.0
    };
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut out, "node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.");
    for cpu in 0..8 {
        for mode in ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"] {
            let _ = writeln!(out, "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}", value());
        }
    }
    for (name, help) in [
        ("node_disk_read_bytes_total", "The total number of bytes read successfully."),
        ("node_disk_written_bytes_total", "The total number of bytes written successfully."),
        ("node_disk_reads_completed_total", "The total number of reads completed successfully."),
        ("node_disk_writes_completed_total", "The total number of writes completed successfully."),
        ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads."),
        ("node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes."),
        ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os."),
        ("node_disk_discarded_sectors_total", "The total number of sectors discarded successfully."),
    ] {
        family(&mut out, name, "counter", help);
        for device in ["nvme0n1", "nvme1n1", "sda", "sdb"] {
            let _ = writeln!(out, "{name}{{device=\"{device}\"}} {}", value());
        }
    }
    for (name, help) in [
        ("node_network_receive_bytes_total", "Network device statistic receive_bytes."),
        ("node_network_transmit_bytes_total", "Network device statistic transmit_bytes."),
        ("node_network_receive_packets_total", "Network device statistic receive_packets."),
        ("node_network_transmit_packets_total", "Network device statistic transmit_packets."),
        ("node_network_receive_errs_total", "Network device statistic receive_errs."),
        ("node_network_transmit_errs_total", "Network device statistic transmit_errs."),
        ("node_network_receive_drop_total", "Network device statistic receive_drop."),
        ("node_network_transmit_drop_total", "Network device statistic transmit_drop."),
    ] {
        family(&mut out, name, "counter", help);
        for device in ["bond0", "docker0", "eth0", "eth1", "lo", "wlan0"] {
            let _ = writeln!(out, "{name}{{device=\"{device}\"}} {}", value());
        }
    }
    for (name, help) in [
        ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."),
        ("node_filesystem_free_bytes", "Filesystem free space in bytes."),
        ("node_filesystem_size_bytes", "Filesystem size in bytes."),
        ("node_filesystem_files", "Filesystem total file nodes."),
        ("node_filesystem_files_free", "Filesystem total free file nodes."),
    ] {
        family(&mut out, name, "gauge", help);
        for (device, fstype, mountpoint) in [
            ("/dev/nvme0n1p1", "ext4", "/"),
            ("/dev/nvme0n1p2", "vfat", "/boot/efi"),
            ("/dev/nvme1n1p1", "xfs", "/var/lib/data"),
            ("/dev/sda1", "ext4", "/srv"),
            ("/dev/sdb1", "ext4", "/backup"),
            ("tmpfs", "tmpfs", "/run"),
            ("tmpfs", "tmpfs", "/run/lock"),
            ("tmpfs", "tmpfs", "/run/user/1000"),
        ] {
            let _ = writeln!(
                out,
                "{name}{{device=\"{device}\",fstype=\"{fstype}\",mountpoint=\"{mountpoint}\"}} {}",
                value()
            );
        }
    }
    for field in [
        "Active",
        "Active_anon",
        "Active_file",
        "Buffers",
        "Cached",
        "Committed_AS",
        "Dirty",
        "Inactive",
        "Inactive_anon",
        "Inactive_file",
        "Mapped",
        "MemAvailable",
        "MemFree",
        "MemTotal",
        "Shmem",
        "SwapFree",
    ] {
        let name = format!("node_memory_{field}_bytes");
        family(&mut out, &name, "gauge", &format!("Memory information field {field}_bytes."));
        let _ = writeln!(out, "{name} {}", value());
    }
    debug_assert_eq!(series, SERIES_PER_TARGET);
    Bytes::from(out)
}

/// What one process did over the measured window.
pub struct Measured {
    /// Samples per second, as the counter measured counts them.
    pub samples_per_sec: f64,
    /// CPU seconds (user + system) per million of those samples.
    pub cpu_per_million: f64,
    /// Resident memory at the end of the window, in bytes (`VmRSS`).
    pub rss: u64,
    /// Peak resident memory so far, in bytes (`VmHWM`).
    pub peak: u64,
}

/// Waits (at most [`LIMIT`]) until `counter` grows by at least 90 % of `per_sec` in each of two seconds running,
/// so that every target is being scraped; then measures `pid` over `window`.
///
/// # Errors
/// When `counter` or `/proc` fails, or the rate is not reached within [`LIMIT`].
pub async fn measure<F, Fut>(pid: u32, per_sec: f64, window: Duration, mut counter: F) -> anyhow::Result<Measured>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<f64>>,
{
    let deadline = Instant::now() + LIMIT;
    let mut last = counter().await?;
    let mut steady = 0;
    while steady < 2 {
        anyhow::ensure!(Instant::now() < deadline, "{per_sec:.0} samples/s not reached within {LIMIT:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = counter().await?;
        steady = if now - last >= 0.9 * per_sec { steady + 1 } else { 0 };
        last = now;
    }
    let (samples_before, cpu_before, started) = (counter().await?, cpu_time(pid)?, Instant::now());
    tokio::time::sleep(window).await;
    let (samples, cpu, elapsed) =
        (counter().await? - samples_before, cpu_time(pid)? - cpu_before, started.elapsed().as_secs_f64());
    let (rss, peak) = memory(pid)?;
    Ok(Measured { samples_per_sec: samples / elapsed, cpu_per_million: cpu.as_secs_f64() / samples * 1e6, rss, peak })
}

/// A running `prometheus` in agent mode.
pub struct Agent {
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    /// Starts `$ROSTER_PROMETHEUS` in agent mode scraping `targets`, its config and WAL in `dir`, remote-writing
    /// to `remote_write` (with Prometheus's default queue settings) if given; returns once it serves its web API.
    ///
    /// # Errors
    /// When `$ROSTER_PROMETHEUS` is unset, or the agent does not start within 60 s.
    pub fn start(targets: &Targets, dir: &Path, remote_write: Option<&str>) -> anyhow::Result<Self> {
        let binary = prometheus_binary()?;
        std::fs::create_dir_all(dir)?;
        let list: Vec<String> = targets.addrs.iter().map(|a| format!("'{a}'")).collect();
        let mut config = format!(
            "global:\n  scrape_interval: {}ms\n  scrape_timeout: {}ms\nscrape_configs:\n  - job_name: bench\n    \
             static_configs:\n      - targets: [{}]\n",
            INTERVAL.as_millis(),
            SCRAPE_TIMEOUT.as_millis(),
            list.join(", ")
        );
        if let Some(url) = remote_write {
            let _ = write!(config, "remote_write:\n  - url: '{url}'\n");
        }
        let config_file = dir.join("agent.yml");
        std::fs::write(&config_file, config)?;
        let addr = free_addr();
        let mut command = Command::new(&binary);
        command
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.agent.path={}", dir.join("wal").display()))
            .arg(format!("--web.listen-address={addr}"));
        let (child, _) = spawn_until_logged(command, "Server is ready to receive web requests", "level=")?;
        Ok(Self { child, addr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `prometheus_agent_samples_appended_total`, summed over its `type` labels, from the agent's own `/metrics`.
    /// Before the first sample is appended the family has no series (2.42 serves only its `# HELP`): that is 0.
    ///
    /// # Errors
    /// When the agent does not answer, or answers something else than its metrics.
    pub async fn samples_appended(&self) -> anyhow::Result<f64> {
        metric_total(self.addr, "prometheus_agent_samples_appended_total").await
    }
}
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `prometheus` server taking remote writes (`--web.enable-remote-write-receiver`) into its own TSDB,
/// scraping nothing: everything its head holds came by remote write.
pub struct Tsdb {
    child: Child,
    addr: SocketAddr,
}

impl Tsdb {
    /// Starts `$ROSTER_PROMETHEUS` as a remote-write receiver, its config and TSDB in `dir`; returns once it
    /// serves its web API.
    ///
    /// # Errors
    /// When `$ROSTER_PROMETHEUS` is unset, or it does not start within 60 s.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = prometheus_binary()?;
        std::fs::create_dir_all(dir)?;
        let config_file = dir.join("prometheus.yml");
        // No scrape and no rule of its own.
        std::fs::write(&config_file, "global:\n  evaluation_interval: 1h\n")?;
        let addr = free_addr();
        let mut command = Command::new(&binary);
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver");
        let (child, _) = spawn_until_logged(command, "Server is ready to receive web requests", "level=")?;
        Ok(Self { child, addr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// `prometheus_tsdb_head_samples_appended_total`, summed over its `type` labels, from its own `/metrics`: the
    /// samples its head took, which with no scrape of its own are the remote-written samples it accepted.
    ///
    /// # Errors
    /// When it does not answer, or answers something else than its metrics.
    pub async fn samples_appended(&self) -> anyhow::Result<f64> {
        metric_total(self.addr, "prometheus_tsdb_head_samples_appended_total").await
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$ROSTER_PROMETHEUS`: Debian's `prometheus` 2.42.
fn prometheus_binary() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(std::env::var_os("ROSTER_PROMETHEUS").context(
        "ROSTER_PROMETHEUS is not set: point it at Debian's prometheus 2.42 (./scripts/test fetches it into \
         .tools/debian/usr/bin/prometheus)",
    )?))
}

/// A free loopback address: Prometheus does not report a port it was given as 0, so one is taken and handed over
/// (from outside the ephemeral range, where no outgoing connection of the run can take it first).
fn free_addr() -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, roster_testkit::free_port()))
}

/// The sum of the counter (or gauge) `name` over its series at `addr`'s `/metrics`: Prometheus's, or
/// roster-server's ([`ServerProcess::metrics_addr`]). A family with no series yet (Prometheus serves only its
/// `# HELP` before the first increment) is 0.
///
/// # Errors
/// When the page cannot be fetched or a sample of `name` has no number.
pub async fn metric_total(addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let body = http_get(addr, "/metrics").await?;
    let mut total = 0.0;
    for line in body.lines().filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' ']))) {
        let value = line.rsplit(' ').next().context("a sample line has a value")?;
        total += value.parse::<f64>().with_context(|| line.to_owned())?;
    }
    Ok(total)
}

/// The body of `GET http://addr{path}` (HTTP/1.0: the server closes the connection after answering).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .with_context(|| format!("GET {path} from {addr} within 10 s"))??;
    let answer = String::from_utf8(answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").context("an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path} from {addr}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}
