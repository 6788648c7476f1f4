//! Debian's `prometheus` 2.42 as the time-series database of the end-to-end tests: a real remote-write receiver
//! (`--web.enable-remote-write-receiver`) on a free loopback port with its own data directory, stopped and started
//! again on the same port and data to make an outage, and read back through its HTTP API (`/api/v1/query`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;

use super::{Proc, WAIT, free_port, tool};

/// Debian's `prometheus` (`ROSTER_PROMETHEUS`; `./scripts/test` fetches it).
pub fn prometheus() -> PathBuf {
    tool("ROSTER_PROMETHEUS", "debian/usr/bin/prometheus")
}

/// The web config file (TLS) in a Prometheus's directory, if it has one.
const WEB_CONFIG: &str = "web.yml";

/// One series: its labels (with `__name__`), as Prometheus returns them.
pub type Labels = BTreeMap<String, String>;

/// A running Prometheus server taking remote writes.
pub struct Prometheus {
    pub proc: Proc,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts one on a free port, its config and TSDB in `dir`; returns once it is ready.
    pub fn start(dir: &Path) -> Self {
        for _ in 0..5 {
            if let Some(started) = Self::start_on(dir, &format!("127.0.0.1:{}", free_port())) {
                return started;
            }
        }
        panic!("prometheus found no free port in 5 tries");
    }

    /// Starts one serving HTTPS with the certificate and key of `identity` (its web config in `dir`).
    pub fn start_tls(dir: &Path, identity: &roster::transport::IdentityFiles) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let web = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            identity.cert.display(),
            identity.key.display()
        );
        std::fs::write(dir.join(WEB_CONFIG), web).unwrap();
        Self::start(dir)
    }

    /// Starts it again on its address and data (after [`Prometheus::stop`]), as after an outage.
    pub fn restart(&mut self) {
        let started = Self::start_on(&self.dir, &self.addr)
            .unwrap_or_else(|| panic!("prometheus could not listen on {} again", self.addr));
        *self = started;
    }

    /// Stops it (SIGTERM) and waits for it to exit: its TSDB keeps what it took.
    pub fn stop(&mut self) {
        self.proc.signal("-TERM");
        let status = self.proc.wait_exit();
        assert!(status.success(), "prometheus exited {status}:\n{}", self.proc.stderr());
    }

    /// `None` when the address was taken.
    fn start_on(dir: &Path, addr: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        // No scrape of its own: everything it holds came by remote write.
        std::fs::write(&config, "global:\n  evaluation_interval: 1h\n").unwrap();
        let mut command = Command::new(prometheus());
        command.args([
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={addr}"),
            "--web.enable-remote-write-receiver",
        ]);
        let web_config = dir.join(WEB_CONFIG);
        if web_config.exists() {
            command.arg(format!("--web.config.file={}", web_config.display()));
        }
        let mut proc = Proc::spawn("prometheus", command);
        let deadline = Instant::now() + WAIT;
        loop {
            if proc.stderr().contains("Server is ready to receive web requests") {
                return Some(Self { proc, addr: addr.to_owned(), dir: dir.to_owned() });
            }
            if proc.child.try_wait().unwrap().is_some() {
                let _ = proc.wait_exit();
                assert!(proc.stderr().contains("address already in use"), "prometheus failed:\n{}", proc.stderr());
                return None;
            }
            assert!(Instant::now() < deadline, "prometheus was not ready in time:\n{}", proc.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its remote-write endpoint (`https` when started with [`Prometheus::start_tls`]).
    pub fn write_url(&self) -> String {
        let scheme = if self.dir.join(WEB_CONFIG).exists() { "https" } else { "http" };
        format!("{scheme}://{}/api/v1/write", self.addr)
    }

    /// `GET /api/v1/query?query=…` at the current time: the `data.result` array.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        self.get("query", &[("query", promql)]).await
    }

    /// `GET /api/v1/query_range` of `promql` from `start` to `end` (Unix seconds) every `step_seconds`: for each series,
    /// its labels and its values (evaluated at each step, a stale series absent from then on).
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step_seconds: f64,
    ) -> BTreeMap<Labels, Vec<String>> {
        let (start, end, step) = (start.to_string(), end.to_string(), step_seconds.to_string());
        let results =
            self.get("query_range", &[("query", promql), ("start", &start), ("end", &end), ("step", &step)]).await;
        results
            .iter()
            .map(|r| {
                let labels: Labels = serde_json::from_value(r["metric"].clone()).unwrap();
                let values = r["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap().to_owned());
                (labels, values.collect())
            })
            .collect()
    }

    /// `GET /api/v1/<endpoint>?<params>`: the `data.result` array of a successful answer.
    async fn get(&self, endpoint: &str, params: &[(&str, &str)]) -> Vec<Value> {
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let uri = format!("http://{}/api/v1/{endpoint}?{query}", self.addr);
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let response = tokio::time::timeout(WAIT, client.get(uri.parse().unwrap()))
            .await
            .unwrap_or_else(|_| panic!("{uri}: no answer"))
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(status, 200, "{uri}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every raw sample of the series `selector` matches over the last `range` (a range selector, which returns
    /// what was written, timestamps included, and no staleness markers): time (Unix ms) → value, per series.
    pub async fn samples(&self, selector: &str, range: &str) -> BTreeMap<Labels, BTreeMap<u64, String>> {
        let mut series = BTreeMap::new();
        for result in self.query(&format!("{selector}[{range}]")).await {
            let labels: Labels = serde_json::from_value(result["metric"].clone()).unwrap();
            let values = result["values"].as_array().unwrap().iter().map(|pair| {
                let seconds = pair[0].as_f64().unwrap();
                ((seconds * 1000.0).round() as u64, pair[1].as_str().unwrap().to_owned())
            });
            series.insert(labels, values.collect());
        }
        series
    }

    /// The value of each series an instant `query` returns now.
    pub async fn instant(&self, promql: &str) -> BTreeMap<Labels, String> {
        let results = self.query(promql).await;
        results
            .iter()
            .map(|r| {
                let labels: Labels = serde_json::from_value(r["metric"].clone()).unwrap();
                (labels, r["value"][1].as_str().unwrap().to_owned())
            })
            .collect()
    }
}
