//! roster's own metrics, end to end: a real roster-server and roster-collector serve `GET /metrics` over HTTP in the
//! OpenMetrics text format, and the figures follow what they do: a registration is counted, a collector's
//! generation shows on both sides and converges, a snapshot cut by the network is counted as a discard, scrapes
//! are counted by kind and outcome. A metrics address that cannot be served stops the program, naming the flag.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Proc, register_many, registry, start_collector_with, start_server_with, status, wait_until};
use roster::metrics_http::CONTENT_TYPE;
use roster_testkit::{FaultProxy, Mode, never_due};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `METHOD path` on `addr`, over a connection of its own (HTTP/1.1, `Connection: close`).
async fn request(addr: &str, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("metrics at {addr}: {e}"));
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(common::WAIT, stream.read_to_string(&mut text)).await.unwrap().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-type")))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    Answer { status, content_type, body: body.to_owned() }
}

/// The value of `series` (name and labels, exactly as written) in an exposition, if listed.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Scrapes `addr` until `series` is listed with a value `done` accepts; returns the whole exposition.
async fn wait_metric(addr: &str, series: &str, done: impl Fn(f64) -> bool) -> String {
    let what = format!("{series} as expected at {addr}");
    wait_until(
        &what,
        || async { request(addr, "GET", "/metrics").await.body },
        |body: &String| value(body, series).is_some_and(&done),
    )
    .await
}

/// Checks what every metrics endpoint does, whatever it serves.
async fn check_endpoint(addr: &str) {
    let answer = request(addr, "GET", "/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.content_type, CONTENT_TYPE);
    assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    assert_eq!(request(addr, "GET", "/").await.status, 404);
    assert_eq!(request(addr, "GET", "/metricsx").await.status, 404);
    assert_eq!(request(addr, "POST", "/metrics").await.status, 405);
    assert_eq!(request(addr, "DELETE", "/metrics").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_the_collector_serve_metrics_that_follow_what_they_do() {
    let dir = tempfile::tempdir().unwrap();
    // Small chunks, so a snapshot cut 64 KiB in always leaves a partial one to discard.
    let (server, listen) = start_server_with(&dir.path().join("server"), None, &["--chunk-size", "100"]);
    let server_metrics = server.logged("roster-server serving", "metrics=");
    let url = format!("http://{listen}");
    check_endpoint(&server_metrics).await;

    // A registration is counted once committed.
    let created = r#"roster_server_registrations_total{result="created"}"#;
    let before = value(&request(&server_metrics, "GET", "/metrics").await.body, created).unwrap_or(0.0);
    registry(&url).await.register_producer(never_due()).await.unwrap();
    wait_metric(&server_metrics, created, |v| v == before + 1.0).await;
    let body = request(&server_metrics, "GET", "/metrics").await.body;
    assert!(value(&body, "roster_server_store_commit_duration_seconds_count").is_some_and(|n| n >= 1.0), "{body}");
    register_many(&url, 1500).await;

    // A collector behind a link that cuts every connection 64 KiB in: no snapshot arrives whole, each cut one is
    // discarded, and the metrics say so, as the status API does.
    let proxy = FaultProxy::start(listen.parse().unwrap()).await;
    proxy.set(Mode::CutAfter(64 * 1024));
    let flags = ["--reconnect-max-delay", "200ms"];
    let (collector, status_addr, collector_id) = start_collector_with(&proxy.url(), &dir.path().join("c"), &flags);
    let collector_metrics = collector.logged("roster-collector running", "metrics=");
    check_endpoint(&collector_metrics).await;
    let cut = r#"roster_collector_snapshot_discards_total{reason="stream_ended"}"#;
    let body = wait_metric(&collector_metrics, cut, |v| v >= 2.0).await;
    assert_eq!(value(&body, "roster_collector_applied_generation"), Some(0.0), "nothing applied: {body}");
    assert!(value(&body, "roster_collector_feed_reconnects_total").is_some_and(|n| n >= 1.0), "{body}");
    let discarded = status(&status_addr).await.discards.get("stream_ended").copied().unwrap_or(0);
    assert!(discarded >= 2, "the status API counts the same discards: {discarded}");

    // The link heals: the snapshot applies, and both sides show the same generation, converged.
    proxy.set(Mode::Forward);
    let body = wait_metric(&collector_metrics, "roster_collector_applied_producers", |n| n == 1501.0).await;
    let generation = value(&body, "roster_collector_applied_generation").unwrap();
    assert!(generation >= 1.0, "{body}");
    assert_eq!(status(&status_addr).await.applied_generation as f64, generation);
    assert_eq!(value(&body, "roster_collector_feed_connected"), Some(1.0), "{body}");
    let converged = format!(r#"roster_server_collector_converged{{collector_id="{collector_id}"}}"#);
    let body = wait_metric(&server_metrics, &converged, |v| v == 1.0).await;
    let on_server = format!(r#"roster_server_collector_generation{{collector_id="{collector_id}"}}"#);
    assert_eq!(value(&body, &on_server), Some(generation), "{body}");
    let reported = format!(r#"roster_server_collector_reported_generation{{collector_id="{collector_id}"}}"#);
    assert_eq!(value(&body, &reported), Some(generation), "{body}");
    let assigned = format!(r#"roster_server_collector_assigned_producers{{collector_id="{collector_id}"}}"#);
    assert_eq!(value(&body, &assigned), Some(1501.0), "{body}");
    assert_eq!(value(&body, r#"roster_server_collectors{state="live"}"#), Some(1.0), "{body}");
    // The streams of the cut connections end as the server notices the resets.
    wait_metric(&server_metrics, "roster_server_feed_streams_open", |n| n == 1.0).await;

    // A producer that answers: its scrapes are counted by kind and outcome, timed, and its samples written.
    let _producer = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms"]);
    let success = r#"roster_collector_scrapes_total{kind="grpc",outcome="success"}"#;
    let body = wait_metric(&collector_metrics, success, |n| n >= 3.0).await;
    let timed = r#"roster_collector_scrape_duration_seconds_count{kind="grpc"}"#;
    assert!(value(&body, timed).is_some_and(|n| n >= 3.0), "{body}");
    // Per destination: the default one, the data directory's JSON-lines file.
    let sink = format!(r#"{{kind="jsonl",destination="{}"}}"#, dir.path().join("c").join("samples.jsonl").display());
    let written = format!("roster_collector_sink_samples_written_total{sink}");
    assert!(value(&body, &written).is_some(), "{body}");
    assert_eq!(value(&body, &format!("roster_collector_sink_samples_dropped_total{sink}")), Some(0.0), "{body}");
    wait_metric(&collector_metrics, &written, |n| n >= 1.0).await;
}

#[test]
fn a_metrics_address_that_cannot_be_served_stops_the_program_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (program, marker) in
        [("roster-server", "roster-server serving"), ("roster-collector", "roster-collector running")]
    {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        // Nothing answers on port 9: the collector keeps retrying, and joins no real server.
        let base = ["--listen", "127.0.0.1:0", "--data-dir", &data, "--server", "http://127.0.0.1:9"];
        let base = if program == "roster-server" { &base[..4] } else { &base[..] };
        let start = |metrics: &str| Proc::start(program, &[base, &["--metrics-listen", metrics][..]].concat());

        let mut bad = start("localhost:9471");
        assert_eq!(bad.wait_exit().code(), Some(2), "{program}: {}", bad.stderr());
        assert!(bad.stderr().contains("--metrics-listen"), "{program}: {}", bad.stderr());
        assert!(bad.stderr().contains("expected IP:PORT"), "{program}: {}", bad.stderr());

        let mut in_use = start(&taken);
        assert_eq!(in_use.wait_exit().code(), Some(1), "{program}: {}", in_use.stderr());
        let said = format!("cannot listen on {taken} to serve metrics");
        assert!(in_use.stderr().contains(&said), "{program}: {}", in_use.stderr());
        assert!(in_use.stderr().contains("use --metrics-listen"), "{program}: {}", in_use.stderr());

        let off = start("off");
        assert_eq!(off.logged(marker, "metrics="), "off", "{program}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_up_serves_both_metrics_and_registers_them_as_prometheus_producers() {
    let dir = tempfile::tempdir().unwrap();
    // `roster up` registers its metrics ports as producers, so they are given, not chosen by the OS.
    let (server_metrics, collector_metrics) =
        (format!("127.0.0.1:{}", common::free_port()), format!("127.0.0.1:{}", common::free_port()));
    let mut up = common::start_roster_up(
        dir.path(),
        &[
            "--metrics-listen",
            &server_metrics,
            "--collector-metrics-listen",
            &collector_metrics,
            "--producers",
            "0",
            "--interval",
            "200ms",
        ],
    );
    let listen = roster_testkit::wait_for_some("roster up says where the control plane is", || {
        let said = up.stdout();
        let word = said
            .lines()
            .find_map(|l| l.trim().strip_prefix("control plane")?.split_whitespace().next().map(str::to_owned));
        std::future::ready(word)
    })
    .await;
    for (job, addr) in [("roster-server", &server_metrics), ("roster-collector", &collector_metrics)] {
        assert!(up.stdout().contains(&format!("curl http://{addr}/metrics")), "{}", up.stdout());
        check_endpoint(addr).await;
        let what = format!("{job}'s metrics registered as a Prometheus producer");
        let client = common::client(&format!("http://{listen}"));
        let producer = roster_testkit::wait_for_some(&what, || async {
            let producers = client.list_all_producers(String::new()).await.ok()?;
            producers.into_iter().find(|p| p.address == *addr)
        })
        .await;
        assert_eq!(producer.kind, roster::pb::ProducerKind::Prometheus as i32, "{producer:?}");
        assert_eq!(producer.labels.get("job").map(String::as_str), Some(job), "{producer:?}");
        assert_eq!(producer.prometheus.as_ref().map(|p| p.metrics_path.as_str()), Some("/metrics"), "{producer:?}");
    }

    up.signal("-INT");
    up.assert_ok();
}

#[test]
fn roster_up_refuses_a_metrics_port_it_could_not_register() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = common::start_roster_up(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    assert_eq!(up.wait_exit().code(), Some(1), "{}", up.stderr());
    assert!(up.stderr().contains("--metrics-listen 127.0.0.1:0: give a port"), "{}", up.stderr());
}
