//! Prometheus targets scraped by a real roster-collector process, from test exporters this test serves over
//! hyper: samples with their target labels and `up` in the sink; exporters that hang, trickle, answer 50 MB, a gzip bomb,
//! invalid UTF-8, a duplicate series or an HTML page each fail alone, with the reason in the collector's status,
//! `up` 0 and their series ended by staleness markers, while a healthy target beside them is scraped on time; a
//! series that vanishes and a target that leaves the assignment are ended too; and a restarted collector scrapes
//! each target at the same phase of its interval.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::{registration, registry, sink_lines, start_collector, start_server, wait_for, wait_status};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use roster::pb;
use serde_json::Value;
use tokio::net::TcpListener;

/// How a test exporter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Its current body, text format 0.0.4.
    Good,
    /// Never.
    Hang,
    /// Its headers at once, then a byte of body every 100 ms.
    Trickle,
    /// 50 MB of valid text.
    Huge,
    /// gzip that inflates to 64 MiB.
    Bomb,
    /// A label value that is not UTF-8.
    BadUtf8,
    /// The same series twice.
    Duplicate,
    /// An HTML page.
    Html,
}

/// A test exporter: what it answers, and when each request came (Unix ms) with its headers.
#[derive(Clone)]
struct Exporter {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    body: Arc<Mutex<String>>,
    requests: Arc<Mutex<Vec<(u64, http::HeaderMap)>>>,
}

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

/// 50 MB of valid text, made once.
fn huge() -> Bytes {
    static HUGE: OnceLock<Bytes> = OnceLock::new();
    let line = "huge_series_with_a_long_name{label=\"value\"} 1\n";
    HUGE.get_or_init(|| Bytes::from(line.repeat(50_000_000 / line.len()))).clone()
}

/// gzip that inflates to 64 MiB of newlines, made once.
fn bomb() -> Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| Bytes::from(gzip(&vec![b'\n'; 64 << 20]))).clone()
}

impl Exporter {
    /// Serves `body` on a free loopback port.
    async fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let exporter = Self {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(Mode::Good)),
            body: Arc::new(Mutex::new(body.to_owned())),
            requests: Arc::default(),
        };
        let serving = exporter.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let exporter = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let exporter = exporter.clone();
                        async move { Ok::<_, Infallible>(exporter.answer(request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        exporter
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        self.requests.lock().unwrap().push((unix_ms(), request.headers().clone()));
        let mode = *self.mode.lock().unwrap();
        let text = |body: Bytes| {
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(body).boxed())
                .unwrap()
        };
        match mode {
            Mode::Good => text(Bytes::from(self.body.lock().unwrap().clone())),
            Mode::Hang => std::future::pending().await,
            Mode::Huge => text(huge()),
            Mode::Bomb => Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .header("content-encoding", "gzip")
                .body(Full::new(bomb()).boxed())
                .unwrap(),
            Mode::Trickle => {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                tokio::spawn(async move {
                    // Bounded: 1000 bytes at most, and it stops when the collector hangs up.
                    for byte in b"g 1\n".iter().cycle().take(1000) {
                        let frame = Ok(hyper::body::Frame::data(Bytes::copy_from_slice(&[*byte])));
                        if tx.send(frame).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                });
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed())
                    .unwrap()
            }
            Mode::BadUtf8 => text(Bytes::from_static(b"g{l=\"\xff\xfe\"} 1\n")),
            Mode::Duplicate => text(Bytes::from_static(b"g 1\ng 1\n")),
            Mode::Html => Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(Full::new(Bytes::from_static(b"<!DOCTYPE html>\n<html><body>Node</body></html>\n")).boxed())
                .unwrap(),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> Vec<(u64, http::HeaderMap)> {
        self.requests.lock().unwrap().clone()
    }
}

/// Registers a Prometheus target at `addr`, every `interval_ms`, with these labels; returns its id.
async fn register(url: &str, addr: SocketAddr, interval_ms: u32, labels: &[(&str, &str)]) -> String {
    let request = pb::RegisterProducerRequest {
        kind: pb::ProducerKind::Prometheus as i32,
        prometheus: Some(pb::PrometheusTarget::default()),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..registration(&addr.to_string(), interval_ms)
    };
    let id = request.producer_id.clone();
    registry(url).await.register_producer(request).await.unwrap();
    id
}

/// The samples of `producer` named `name`.
fn series<'a>(lines: &'a [Value], producer: &str, name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["producer_id"] == producer && l["name"] == name).collect()
}

/// Whether `producer` wrote `up` = 0 and, at the same time, a staleness marker for `name`.
fn failed_and_ended(lines: &[Value], producer: &str, name: &str) -> bool {
    series(lines, producer, "up").iter().filter(|up| up["value"] == 0.0).any(|up| {
        series(lines, producer, name).iter().any(|s| s["value"] == "stale" && s["time_unix_ms"] == up["time_unix_ms"])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_targets_are_scraped_with_target_labels_up_and_staleness_and_a_bad_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (_collector, status_addr, _) = start_collector(&url, &collector_dir);
    let sink_path = collector_dir.join("samples.jsonl");

    // A timestamp of its own, a minute ago: within the hour Prometheus's head (and so the collector) takes.
    let own_time = unix_ms() - 60_000;
    let healthy = Exporter::start(&format!("# TYPE g gauge\ng{{instance=\"spoofed\"}} 1\nh 2\nt 3 {own_time}\n")).await;
    let healthy_id = register(&url, healthy.addr, 500, &[("job", "node")]).await;
    let modes = [Mode::Hang, Mode::Trickle, Mode::Huge, Mode::Bomb, Mode::BadUtf8, Mode::Duplicate, Mode::Html];
    let mut bad = BTreeMap::new();
    for mode in modes {
        let exporter = Exporter::start("g 1\n").await;
        // A second apart, with a deadline of 800 ms: a bomb is decompressed to the limit well within it.
        bad.insert(register(&url, exporter.addr, 1000, &[]).await, (mode, exporter));
    }

    // Every target up, with its samples labelled.
    wait_for("every target scraped once, up", || {
        let lines = sink_lines(&sink_path);
        bad.keys().chain([&healthy_id]).all(|id| series(&lines, id, "up").iter().any(|up| up["value"] == 1.0))
    })
    .await;
    let lines = sink_lines(&sink_path);
    let g = series(&lines, &healthy_id, "g")[0];
    let instance = healthy.addr.to_string();
    assert_eq!(
        g["labels"],
        serde_json::json!({"instance": instance, "exported_instance": "spoofed", "job": "node"}),
        "{g}"
    );
    assert_eq!(series(&lines, &healthy_id, "t")[0]["time_unix_ms"], own_time, "its own time is kept");
    let up = series(&lines, &healthy_id, "up")[0];
    assert_eq!(up["labels"], serde_json::json!({"instance": instance, "job": "node"}));
    for name in ["scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling"] {
        let report = series(&lines, &healthy_id, name);
        assert!(report.iter().any(|r| r["time_unix_ms"] == up["time_unix_ms"]), "{name} beside up");
    }
    assert_eq!(series(&lines, &healthy_id, "scrape_samples_scraped")[0]["value"], 3.0);
    let (_, headers) = &healthy.requests()[0];
    assert_eq!(
        headers["accept"],
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
         text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    );
    assert_eq!(headers["x-prometheus-scrape-timeout-seconds"], "0.4", "80 % of the interval");
    assert_eq!(headers["accept-encoding"], "gzip");

    // The bad ones turn bad (their bodies made beforehand, so that only the collector's time counts); a series of
    // the healthy one vanishes.
    let (_, _) = (huge(), bomb());
    let turned = unix_ms();
    for (mode, exporter) in bad.values() {
        exporter.set(*mode);
    }
    *healthy.body.lock().unwrap() = format!("g{{instance=\"spoofed\"}} 1\nt 3 {own_time}\n");
    wait_for("every bad target failed, up 0 and its series ended; h ended", || {
        let lines = sink_lines(&sink_path);
        bad.keys().all(|id| failed_and_ended(&lines, id, "g"))
            && series(&lines, &healthy_id, "h").iter().any(|h| h["value"] == "stale")
    })
    .await;
    let status = wait_status(&status_addr, "the failures counted", |s| {
        s.producers.iter().filter(|p| bad.contains_key(&p.id)).all(|p| p.failures >= 1)
    })
    .await;
    for producer in &status.producers {
        let Some((mode, _)) = bad.get(&producer.id) else { continue };
        eprintln!("figure: {mode:?}: {} failures, last error: {}", producer.failures, producer.last_error);
        let expected = match mode {
            Mode::Hang | Mode::Trickle => "no answer within 800ms",
            Mode::Huge | Mode::Bomb => "body size limit exceeded",
            Mode::BadUtf8 | Mode::Html => "invalid exposition",
            Mode::Duplicate => "duplicate series g",
            Mode::Good => unreachable!(),
        };
        assert!(producer.last_error.contains(expected), "{mode:?}: {}", producer.last_error);
    }
    let lines = sink_lines(&sink_path);
    for id in bad.keys() {
        let written: Vec<&Value> = lines.iter().filter(|l| l["producer_id"] == id.as_str()).collect();
        assert!(written.iter().all(|l| l["name"] != "huge_series_with_a_long_name"), "nothing of a failed body");
        let markers = series(&lines, id, "g").iter().filter(|g| g["value"] == "stale").count();
        assert_eq!(markers, 1, "one marker however many failures");
    }
    assert!(series(&lines, &healthy_id, "t").iter().all(|t| t["value"] != "stale"), "t has its own time");
    // The healthy target was scraped on time throughout.
    let mut times: Vec<u64> = series(&lines, &healthy_id, "up")
        .iter()
        .map(|up| up["time_unix_ms"].as_u64().unwrap())
        .filter(|t| *t + 500 >= turned)
        .collect();
    times.sort_unstable();
    let widest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!("figure: healthy target: {} scrapes meanwhile, widest gap {widest} ms (interval 500 ms)", times.len());
    assert!(widest < 1000, "the healthy target missed a tick: a {widest} ms gap");

    // The healthy target leaves the assignment: its series end, report series included.
    let mut client = registry(&url).await;
    client.deregister_producer(pb::DeregisterProducerRequest { producer_id: healthy_id.clone() }).await.unwrap();
    wait_for("the removed target's series ended", || {
        let lines = sink_lines(&sink_path);
        ["g", "up", "scrape_duration_seconds", "scrape_series_added"]
            .iter()
            .all(|name| series(&lines, &healthy_id, name).iter().any(|s| s["value"] == "stale"))
    })
    .await;
    let lines = sink_lines(&sink_path);
    let ended = series(&lines, &healthy_id, "g").iter().find(|g| g["value"] == "stale").unwrap()["time_unix_ms"]
        .as_u64()
        .unwrap();
    let last_up = series(&lines, &healthy_id, "up").iter().filter_map(|u| u["time_unix_ms"].as_u64()).max().unwrap();
    assert_eq!(last_up, ended, "the report series end at the same time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_labels_change_ends_the_series_of_its_old_labels_and_goes_on_with_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (_collector, _, _) = start_collector(&url, &collector_dir);
    let sink_path = collector_dir.join("samples.jsonl");
    let exporter = Exporter::start("a 1\n").await;
    let id = register(&url, exporter.addr, 500, &[("zone", "1")]).await;
    let in_zone = |lines: &[Value], name: &str, zone: &str, stale: bool| {
        series(lines, &id, name).iter().any(|s| s["labels"]["zone"] == zone && (s["value"] == "stale") == stale)
    };
    wait_for("a scraped in zone 1", || in_zone(&sink_lines(&sink_path), "a", "1", false)).await;

    // The same producer, registered again with another label: a changed entry (C6).
    let request = pb::RegisterProducerRequest {
        producer_id: id.clone(),
        kind: pb::ProducerKind::Prometheus as i32,
        prometheus: Some(pb::PrometheusTarget::default()),
        labels: [("zone".to_owned(), "2".to_owned())].into(),
        ..registration(&exporter.addr.to_string(), 500)
    };
    registry(&url).await.register_producer(request).await.unwrap();
    wait_for("a and up of zone 1 ended, a scraped in zone 2", || {
        let lines = sink_lines(&sink_path);
        in_zone(&lines, "a", "1", true) && in_zone(&lines, "up", "1", true) && in_zone(&lines, "a", "2", false)
    })
    .await;
    let lines = sink_lines(&sink_path);
    let first_of_zone_2 =
        series(&lines, &id, "a").iter().find(|s| s["labels"]["zone"] == "2").unwrap()["time_unix_ms"].clone();
    let ended = series(&lines, &id, "a").iter().find(|s| s["value"] == "stale").unwrap()["time_unix_ms"].clone();
    assert_eq!(ended, first_of_zone_2, "the old series end at the new task's first scrape");
    assert!(!in_zone(&lines, "a", "2", true), "the new series go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_scrapes_each_target_at_the_same_phase_of_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (mut collector, _, _) = start_collector(&url, &collector_dir);
    let exporters = [Exporter::start("a 1\n").await, Exporter::start("a 1\n").await];
    for exporter in &exporters {
        register(&url, exporter.addr, 1000, &[]).await;
    }
    // The phase of a target: where in the second its last three requests came, the middle one of the three (so
    // that one request delayed by a busy machine does not move it), measured around the first to stay clear of
    // the wrap at 1000.
    let phases = || -> Vec<u64> {
        exporters
            .iter()
            .map(|e| {
                let requests = e.requests();
                let last: Vec<u64> = requests[requests.len() - 3..].iter().map(|(t, _)| t % 1000).collect();
                let mut around: Vec<i64> =
                    last.iter().map(|t| (*t as i64 - last[0] as i64 + 1500).rem_euclid(1000) - 500).collect();
                around.sort_unstable();
                (last[0] as i64 + around[1]).rem_euclid(1000) as u64
            })
            .collect()
    };
    wait_for("three scrapes of each", || exporters.iter().all(|e| e.requests().len() >= 3)).await;
    let before = phases();

    collector.signal("-TERM");
    collector.wait_exit();
    let seen: Vec<usize> = exporters.iter().map(|e| e.requests().len()).collect();
    let (_collector, _, _) = start_collector(&url, &collector_dir);
    wait_for("three scrapes of each after the restart", || {
        exporters.iter().zip(&seen).all(|(e, n)| e.requests().len() >= n + 3)
    })
    .await;
    let after = phases();
    eprintln!("figure: phases (ms into each second) before {before:?}, after the restart {after:?}");
    for (b, a) in before.iter().zip(&after) {
        let apart = b.abs_diff(*a).min(1000 - b.abs_diff(*a));
        assert!(apart < 150, "a phase moved by {apart} ms: before {before:?}, after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_up_collects_its_own_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // `roster up` registers its metrics ports as producers, so they are given, not chosen by the OS.
    let (server_metrics, collector_metrics) =
        (format!("127.0.0.1:{}", common::free_port()), format!("127.0.0.1:{}", common::free_port()));
    let mut up = common::start_roster_up(
        dir.path(),
        &["--metrics-listen", &server_metrics, "--collector-metrics-listen", &collector_metrics, "--producers", "0"],
    );
    let sink_path = dir.path().join("collector/samples.jsonl");
    let scraped = |lines: &[Value], job: &str, name: &str| {
        lines.iter().any(|l| l["labels"]["job"] == job && l["name"] == name && l["value"] != 0.0)
    };
    wait_for("both metrics endpoints scraped, up 1, with roster's own series", || {
        let lines = sink_lines(&sink_path);
        ["roster-server", "roster-collector"].iter().all(|job| scraped(&lines, job, "up"))
            && scraped(&lines, "roster-server", "roster_server_registrations_total")
            && lines.iter().any(|l| {
                l["labels"]["job"] == "roster-collector"
                    && l["name"].as_str().is_some_and(|n| n.starts_with("roster_collector_"))
            })
    })
    .await;
    let lines = sink_lines(&sink_path);
    let up_of = |job: &str| lines.iter().filter(|l| l["labels"]["job"] == job && l["name"] == "up").count();
    eprintln!(
        "figure: roster up scraped itself: {} server and {} collector scrapes",
        up_of("roster-server"),
        up_of("roster-collector")
    );
    assert!(
        lines.iter().all(|l| l["name"] != "up" || l["value"] == 1.0),
        "every scrape of roster's own metrics succeeded"
    );
    up.signal("-INT");
    up.assert_ok();
}
