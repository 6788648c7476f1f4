//! Samples written by a real roster-collector process to a real time-series database, Debian's Prometheus 2.42,
//! through remote write (issue 14, item 4), and read back through Prometheus's query API: series arrive with the
//! producer's labels; `up` is 0 while a target is down; a removed target's series end; a receiver outage of ten
//! minutes' worth of samples loses none, across a collector `kill -9` in the middle of it too (every sample of the
//! collector's JSON-lines sink is compared with what Prometheus holds); a receiver answering 400 gets no retries;
//! a full disk under the queue is reported and recovers; `roster up --remote-write` writes the demo and the pair's
//! own metrics there; an https receiver is trusted through the `ca-file` option, and only through it; samples
//! Prometheus refuses at ingestion (too old, out of order) are dropped, so the rest of their scrape arrives.
//!
//! Scrapes run every 100 ms, so that the outage test queues as many samples in about a minute as a 1 s interval
//! would in ten: the queue, the retries and the catch-up see the same backlog, sooner.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::{
    Proc, binary, prometheus::Labels, prometheus::Prometheus, roster, sink_lines, start_collector_with,
    start_node_exporter, start_server, status, wait_status,
};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use roster::pb;
use serde_json::Value;
use tokio::net::TcpListener;

/// The node_exporter's producer id.
const NODE: &str = "0e6f1d2c-3b4a-4c5d-8e9f-a0b1c2d3e4f5";

/// Registers node_exporter at `address`, scraped every 100 ms, as job `node`.
fn register_node_exporter(url: &str, address: &str) {
    roster(&[
        "--server",
        url,
        "producers",
        "register",
        "--id",
        NODE,
        "--kind",
        "prometheus",
        "--address",
        address,
        "--interval",
        "100ms",
        "--label",
        "job=node",
    ])
    .assert_ok();
}

fn deregister_node_exporter(url: &str) {
    roster(&["--server", url, "producers", "deregister", NODE]).assert_ok();
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The collector's remote-write destination in its status (the second `--sink` of these tests).
fn receiver(status: &pb::GetStatusResponse) -> &pb::SinkStatus {
    status.sinks.iter().find(|s| s.kind == "remote-write").expect("a remote-write sink in the status")
}

/// A value of the JSON-lines sink, unless it is a staleness marker: a number, or `"NaN"`, `"+Inf"`, `"-Inf"`.
fn sink_value(value: &Value) -> Option<Float> {
    match value {
        Value::Number(n) => Some(Float(n.as_f64().unwrap())),
        Value::String(s) if s == "stale" => None,
        Value::String(s) => Some(Float(s.parse().unwrap())),
        other => panic!("a value in the sink: {other}"),
    }
}

/// A sample's value, equal to another when both are the same number or both NaN: Prometheus prints a float with
/// Go's shortest digits and the sink with Rust's, which may differ in the last digit for the same `f64`.
#[derive(Debug, Clone, Copy)]
struct Float(f64);

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || (self.0.is_nan() && other.0.is_nan())
    }
}

/// Every sample of a JSON-lines sink except staleness markers (which Prometheus keeps but never returns from a range
/// selector), as Prometheus would hold them: series (labels with `__name__`, empty values dropped) → time → value.
fn jsonl_samples(path: &Path) -> BTreeMap<Labels, BTreeMap<u64, Float>> {
    let mut series: BTreeMap<Labels, BTreeMap<u64, Float>> = BTreeMap::new();
    for line in sink_lines(path) {
        let Some(value) = sink_value(&line["value"]) else { continue };
        let mut labels: Labels = line["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        labels.insert("__name__".into(), line["name"].as_str().unwrap().to_owned());
        series.entry(labels).or_default().insert(line["time_unix_ms"].as_u64().unwrap(), value);
    }
    series
}

/// Compares what Prometheus holds with what the JSON-lines sink holds, sample by sample, except samples within
/// `skip` (a span in which one of the two may hold what the other lacks: a `kill -9`); returns how many matched.
fn compare(
    prometheus: &BTreeMap<Labels, BTreeMap<u64, Float>>,
    jsonl: &BTreeMap<Labels, BTreeMap<u64, Float>>,
    skip: std::ops::Range<u64>,
) -> usize {
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let mut matched = 0;
    let keys: BTreeSet<&Labels> = prometheus.keys().chain(jsonl.keys()).collect();
    let none = BTreeMap::new();
    for labels in keys {
        let (held, written) = (prometheus.get(labels).unwrap_or(&none), jsonl.get(labels).unwrap_or(&none));
        for (time, value) in written.iter().filter(|(t, _)| !skip.contains(t)) {
            match held.get(time) {
                Some(v) if v == value => matched += 1,
                other => missing.push(format!("{labels:?} @{time}: wrote {value:?}, Prometheus holds {other:?}")),
            }
        }
        for (time, value) in held.iter().filter(|(t, _)| !skip.contains(t) && !written.contains_key(t)) {
            extra.push(format!("{labels:?} @{time}: {value:?}"));
        }
    }
    assert!(missing.is_empty(), "{} samples lost, e.g. {:#?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(extra.is_empty(), "{} samples never written, e.g. {:#?}", extra.len(), &extra[..extra.len().min(5)]);
    matched
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_reach_prometheus_with_their_labels_and_up_and_end_when_their_target_goes() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Prometheus::start(&dir.path().join("prometheus"));
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let remote_write = format!("remote-write={}", tsdb.write_url());
    let (_collector, status_addr, _) = start_collector_with(&url, &dir.path().join("c"), &["--sink", &remote_write]);
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    let (mut exporter, exporter_addr) = start_node_exporter(&textfiles);
    let started = unix_ms() as f64 / 1000.0;
    register_node_exporter(&url, &exporter_addr);

    let target: Labels = [("instance", exporter_addr.as_str()), ("job", "node")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let with_name = |name: &str| {
        let mut labels = target.clone();
        labels.insert("__name__".into(), name.into());
        labels
    };
    let up = common::wait_until(
        "node_exporter's samples in Prometheus, up 1",
        || tsdb.instant(r#"up{job="node"}"#),
        |up: &BTreeMap<Labels, String>| up.get(&with_name("up")).is_some_and(|v| v == "1"),
    )
    .await;
    assert_eq!(up.len(), 1, "one target: {up:?}");
    let load = tsdb.instant(r#"node_load1{job="node"}"#).await;
    assert!(load.contains_key(&with_name("node_load1")), "the target's labels on its own series: {load:?}");
    let healthy = status(&status_addr).await;
    assert!(receiver(&healthy).healthy && receiver(&healthy).samples_sent > 0, "{:?}", receiver(&healthy));

    // node_exporter stops: its scrapes fail, `up` is 0, and its series end (staleness markers).
    exporter.kill9();
    common::wait_until(
        "up 0 in Prometheus while node_exporter is down",
        || tsdb.instant(r#"up{job="node"}"#),
        |up: &BTreeMap<Labels, String>| up.get(&with_name("up")).is_some_and(|v| v == "0"),
    )
    .await;
    common::wait_until(
        "node_load1 ended in Prometheus",
        || tsdb.instant(r#"node_load1{job="node"}"#),
        BTreeMap::is_empty,
    )
    .await;

    // Deregistered: the target leaves the assignment and its report series end too.
    deregister_node_exporter(&url);
    common::wait_until("up ended in Prometheus", || tsdb.instant(r#"up{job="node"}"#), BTreeMap::is_empty).await;

    // Over the whole test, every 100 ms, as /api/v1/query_range reads it back: `up` was 1, then 0 until it ended.
    let end = unix_ms() as f64 / 1000.0;
    let history = tsdb.query_range(r#"up{job="node"}"#, started - 1.0, end, 0.1).await;
    let steps = &history[&with_name("up")];
    let first_zero = steps.iter().position(|v| v == "0").expect("up 0 while node_exporter was down");
    assert!(first_zero > 0 && steps[..first_zero].iter().all(|v| v == "1"), "{steps:?}");
    assert!(steps[first_zero..].iter().all(|v| v == "0"), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_up_remote_writes_its_demo_and_its_own_metrics_to_the_given_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Prometheus::start(&dir.path().join("prometheus"));
    let (server_metrics, collector_metrics) =
        (format!("127.0.0.1:{}", common::free_port()), format!("127.0.0.1:{}", common::free_port()));
    let write_url = tsdb.write_url();
    let mut up = common::start_roster_up(
        &dir.path().join("up"),
        &[
            "--metrics-listen",
            &server_metrics,
            "--collector-metrics-listen",
            &collector_metrics,
            "--interval",
            "200ms",
            "--remote-write",
            &write_url,
        ],
    );
    // Its demo producers' samples and the pair's own metrics, with their labels.
    let demo = common::wait_until(
        "the demo producers' samples in Prometheus",
        || tsdb.instant("demo_up"),
        |found: &BTreeMap<Labels, String>| found.len() == 3,
    )
    .await;
    assert!(demo.keys().all(|l| l.contains_key("demo")), "{demo:?}");
    for job in ["roster-server", "roster-collector"] {
        let what = format!("up 1 for {job} in Prometheus");
        let query = format!(r#"up{{job="{job}"}}"#);
        common::wait_until(
            &what,
            || tsdb.instant(&query),
            |up: &BTreeMap<Labels, String>| up.values().any(|v| v == "1"),
        )
        .await;
    }
    assert!(up.stdout().contains(&format!("and remote write to remote-write={write_url}")), "{}", up.stdout());
    up.signal("-INT");
    up.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_with_a_collector_kill_in_it_loses_no_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mut tsdb = Prometheus::start(&dir.path().join("prometheus"));
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let remote_write = format!("remote-write={}", tsdb.write_url());
    // Each collector process writes its own JSON-lines file: a line torn by the kill stays in the first.
    let (before, after) = (dir.path().join("before.jsonl"), dir.path().join("after.jsonl"));
    let sinks = |jsonl: &Path| {
        ["--sink".to_owned(), format!("jsonl={}", jsonl.display()), "--sink".into(), remote_write.clone()]
    };
    let args = sinks(&before);
    let (mut collector, status_addr, _) =
        start_collector_with(&url, &collector_dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    let (_exporter, exporter_addr) = start_node_exporter(&textfiles);
    register_node_exporter(&url, &exporter_addr);
    wait_status(&status_addr, "samples delivered", |s| receiver(s).samples_sent > 1000).await;

    // The receiver goes down. A 1 s interval would queue some 69 000 samples of this target in ten minutes: the
    // collector queues half of them, is killed, and queues the other half after its restart.
    tsdb.stop();
    let half = 35_000;
    let queued = wait_status(&status_addr, "half of the backlog queued", |s| receiver(s).queue_samples >= half).await;
    assert!(!receiver(&queued).healthy, "the receiver is down: {:?}", receiver(&queued));
    assert!(!receiver(&queued).receiver_error.is_empty());
    let killed_at = unix_ms();
    collector.kill9();
    let args = sinks(&after);
    let (_collector, status_addr, _) =
        start_collector_with(&url, &collector_dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let resumed = status(&status_addr).await;
    assert!(receiver(&resumed).queue_samples >= half, "the queue survived the kill: {:?}", receiver(&resumed));
    wait_status(&status_addr, "the whole backlog queued", |s| receiver(s).queue_samples >= 2 * half).await;

    // The receiver comes back; the target leaves (no more samples), and the queue drains.
    tsdb.restart();
    deregister_node_exporter(&url);
    let drained = wait_status(&status_addr, "the backlog delivered", |s| {
        receiver(s).queue_samples == 0 && receiver(s).healthy && s.applied_producer_count == 0
    })
    .await;
    assert!(receiver(&drained).samples_discarded.is_empty(), "nothing given up: {:?}", receiver(&drained));

    // Every sample written to the JSON-lines sinks is in Prometheus, and nothing else, except in the second before
    // the kill (which one of the two sinks may have taken without the other).
    let mut written = jsonl_samples(&before);
    for (labels, samples) in jsonl_samples(&after) {
        written.entry(labels).or_default().extend(samples);
    }
    let held: BTreeMap<Labels, BTreeMap<u64, Float>> = tsdb
        .samples(r#"{job="node"}"#, "1h")
        .await
        .into_iter()
        .map(|(labels, samples)| (labels, samples.into_iter().map(|(t, v)| (t, Float(v.parse().unwrap()))).collect()))
        .collect();
    let matched = compare(&held, &written, killed_at - 1000..killed_at + 1);
    // Not a vacuous comparison: it covered the backlog, less the second of the kill and the staleness markers.
    assert!(matched as u64 >= 2 * half - 10_000, "{matched} samples compared");
    eprintln!("{matched} samples written and held by Prometheus, across an outage of {} queued", 2 * half);
}

/// A receiver that answers every request with 400 and keeps a digest of each body it was sent.
/// A Prometheus target on 127.0.0.1 that answers every scrape with `body()` (text format 0.0.4).
async fn exposing_target(body: impl Fn() -> String + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                    let text = body();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// A target exposing a sample timestamped three hours ago, and one whose timestamp repeats with another value,
/// beside ordinary ones. Prometheus's head refuses both at ingestion, and its remote-write receiver refuses the whole
/// request that holds one (400, not retried), with every other series in it. The collector drops them as Prometheus
/// drops them when it scrapes (`Tracker::scraped`), so the target's other series and `up` arrive; before, none did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_prometheus_would_refuse_are_dropped_and_the_rest_of_the_scrape_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Prometheus::start(&dir.path().join("prometheus"));
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let remote_write = format!("remote-write={}", tsdb.write_url());
    let (collector, status_addr, _) = start_collector_with(&url, &dir.path().join("c"), &["--sink", &remote_write]);
    let three_hours_ago = unix_ms() - 3 * 3_600_000;
    let fixed = unix_ms();
    let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = scrapes.clone();
    let target = exposing_target(move || {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("old_metric 1 {three_hours_ago}\nrepeating {n} {fixed}\nfresh_metric 7\n")
    })
    .await;
    let target_text = target.to_string();
    roster(&[
        "--server",
        &url,
        "producers",
        "register",
        "--id",
        "5a1e0c3b-7d2f-4e6a-9b8c-1d2e3f4a5b6c",
        "--kind",
        "prometheus",
        "--address",
        &target_text,
        "--interval",
        "100ms",
        "--label",
        "job=odd",
    ])
    .assert_ok();

    let fresh = common::wait_until(
        "the target's fresh series and up in Prometheus",
        || tsdb.instant(r#"{job="odd",__name__=~"up|fresh_metric"}"#),
        |found: &BTreeMap<Labels, String>| found.len() == 2,
    )
    .await;
    assert!(fresh.values().all(|v| v == "1" || v == "7"), "{fresh:?}");
    // Many scrapes later, none was refused by Prometheus, and what it refuses was never sent.
    let before = scrapes.load(std::sync::atomic::Ordering::SeqCst);
    common::wait_until(
        "ten more scrapes sent",
        || status(&status_addr),
        |s| scrapes.load(std::sync::atomic::Ordering::SeqCst) >= before + 10 && receiver(s).queue_samples == 0,
    )
    .await;
    let sent = status(&status_addr).await;
    assert!(receiver(&sent).samples_discarded.is_empty(), "Prometheus refused nothing: {:?}", receiver(&sent));
    assert!(tsdb.instant(r#"old_metric{job="odd"}"#).await.is_empty(), "the old sample was not written");
    let repeating = tsdb.samples(r#"repeating{job="odd"}"#, "1h").await;
    let values: Vec<&String> = repeating.values().flat_map(BTreeMap::values).collect();
    assert_eq!(values, [&"0".to_owned()], "the repeated timestamp's first value only: {repeating:?}");
    assert!(collector.stderr().contains("samples dropped"), "the drops are logged");
}

async fn refusing_receiver() -> (SocketAddr, Arc<Mutex<Vec<u64>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        seen.lock().unwrap().push(xxhash_rust::xxh3::xxh3_64(&body));
                        let answer = Full::new(Bytes::from_static(b"out of bounds\nsecond line"));
                        Ok::<_, Infallible>(Response::builder().status(400).body(answer).unwrap())
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_400_gets_no_retries_and_its_reason_is_counted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver_addr, bodies) = refusing_receiver().await;
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let remote_write = format!("remote-write=http://{receiver_addr}/api/v1/write");
    let (collector, status_addr, _) = start_collector_with(&url, &dir.path().join("c"), &["--sink", &remote_write]);
    // roster's own gRPC producer: its samples take the same path as scraped ones.
    let _producer = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "100ms"]);

    let refused = wait_status(&status_addr, "samples refused", |s| {
        receiver(s).samples_discarded.values().sum::<u64>() >= 50 && receiver(s).queue_samples == 0
    })
    .await;
    let sink = receiver(&refused);
    let reasons: Vec<&String> = sink.samples_discarded.keys().collect();
    assert_eq!(reasons.len(), 1, "{sink:?}");
    assert!(reasons[0].contains("400") && reasons[0].contains("out of bounds"), "{reasons:?}");
    assert_eq!(sink.requests_retried, 0, "{sink:?}");
    let bodies = bodies.lock().unwrap().clone();
    let distinct: BTreeSet<u64> = bodies.iter().copied().collect();
    assert_eq!(distinct.len(), bodies.len(), "no request was sent twice");
    let logged = collector.stderr().lines().filter(|l| l.contains("out of bounds")).count();
    assert_eq!(logged, 1, "logged once, not per batch:\n{}", collector.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_queue_is_reported_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut tsdb = Prometheus::start(&dir.path().join("prometheus"));
    tsdb.stop();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    // The collector runs in a mount namespace of its own where its remote-write queues live on a 256 KiB tmpfs:
    // the disk fills while the receiver is down.
    let collector_dir = dir.path().join("c");
    let queues = collector_dir.join("remote-write");
    std::fs::create_dir_all(&queues).unwrap();
    let remote_write = format!("remote-write={}", tsdb.write_url());
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=256k roster-queue "$0" && exec "$@""#)
        .arg(&queues)
        .arg(binary("roster-collector"))
        .args(["--server", &url, "--listen", "127.0.0.1:0", "--sink", &remote_write])
        .arg("--data-dir")
        .arg(&collector_dir)
        .env("RUST_LOG", "info")
        .env("ROSTER_COLLECTOR_METRICS_LISTEN", "off");
    let collector = Proc::spawn("roster-collector in its own mount namespace", command);
    let status_addr = collector.logged("roster-collector running", "status=Some(");
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    let (_exporter, exporter_addr) = start_node_exporter(&textfiles);
    register_node_exporter(&url, &exporter_addr);

    let full = wait_status(&status_addr, "the disk full, reported", |s| {
        receiver(s).samples_dropped > 0 && receiver(s).last_error.contains("No space left on device")
    })
    .await;
    let dropped = receiver(&full).samples_dropped;
    assert!(receiver(&full).queue_samples > 0, "what fitted stays queued: {:?}", receiver(&full));

    // The receiver comes back: the queue drains, its space is freed, and samples are taken again.
    tsdb.restart();
    let recovered = wait_status(&status_addr, "the queue drained and writing again", |s| {
        let sink = receiver(s);
        sink.healthy && sink.last_error.is_empty() && sink.samples_written > 0 && sink.queue_bytes < 128 * 1024
    })
    .await;
    let written = receiver(&recovered).samples_written;
    let recovered_at = unix_ms();
    wait_status(&status_addr, "samples taken after the recovery", |s| receiver(s).samples_written > written + 100)
        .await;
    let last = status(&status_addr).await;
    assert!(receiver(&last).samples_dropped >= dropped, "the drops stay counted");
    let delivered_after = common::wait_until(
        "samples scraped after the recovery in Prometheus",
        || tsdb.query(r#"timestamp(up{job="node"}) * 1000"#),
        |found: &Vec<Value>| {
            found.iter().any(|r| {
                r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(|t| t as u64 > recovered_at)
            })
        },
    )
    .await;
    assert_eq!(delivered_after.len(), 1, "{delivered_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_trusted_through_the_ca_file_option_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = roster_testkit::TestCa::new("tsdb test CA");
    let ca_file = ca.write(dir.path());
    let identity = ca.issue(roster_testkit::Usage::Server, 1, "").write(dir.path(), "tsdb");
    let tsdb = Prometheus::start_tls(&dir.path().join("prometheus"), &identity);
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    // Two receivers, the same Prometheus by two names its certificate holds: one told the CA, one left to the
    // system's roots.
    let trusting = format!("remote-write={},ca-file={}", tsdb.write_url(), ca_file.display());
    let untrusting = format!("remote-write={}", tsdb.write_url().replace("127.0.0.1", "localhost"));
    let (_collector, status_addr, _) =
        start_collector_with(&url, &dir.path().join("c"), &["--sink", &trusting, "--sink", &untrusting]);
    let _producer = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "100ms"]);

    let seen = wait_status(&status_addr, "samples delivered over https, and refused without the CA", |s| {
        let (trusting, untrusting) = (&s.sinks[0], &s.sinks[1]);
        trusting.samples_sent > 0 && trusting.healthy && !untrusting.healthy && !untrusting.receiver_error.is_empty()
    })
    .await;
    let untrusting = &seen.sinks[1];
    assert_eq!(untrusting.samples_sent, 0, "{untrusting:?}");
    assert!(untrusting.receiver_error.to_lowercase().contains("certificate"), "{untrusting:?}");
    assert!(untrusting.queue_samples > 0, "kept for when it is trusted: {untrusting:?}");
}
