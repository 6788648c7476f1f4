//! Producer kinds end to end (issue 13, item 1), against the real binaries: a producer registers as roster's own
//! gRPC `Producer` (the default, and what an unset kind means) or as a Prometheus HTTP target, through the CLI,
//! grpcurl's JSON and the typed client; a bad kind, scheme, path, timeout, an address with a scheme or a label name
//! starting `__` is INVALID_ARGUMENT naming the field, and nothing is stored; the kind survives a server restart;
//! and a collector that does not list PROMETHEUS in `WatchRequest.supported_kinds` (as none built before kinds does)
//! never receives a Prometheus producer, which goes to one that lists it, or stays unassigned while none does.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{process::Command, sync::Arc};

use common::{
    all_producers, collectors, grpcurl, never_due, registry, roster, run_grpcurl, start_server, start_server_with,
    wait_reported, wait_until,
};
use roster::{
    domain::{Collection, CollectorId, ProducerId, Scheme, SupportedKinds},
    follower::{Follower, FollowerConfig, FollowerEvent, FollowerHandle, assembler::Snapshot},
    pb,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const PROM_ID: &str = "9b2f4d1e-5c3a-4e8b-a1d2-3f4e5a6b7c8d";
const GRPC_ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

/// `roster --server URL --output json ARGS`, which must succeed; its JSON.
fn cli_json(url: &str, args: &[&str]) -> Value {
    let mut cli = roster(&[&["--server", url, "--output", "json"][..], args].concat());
    cli.assert_ok();
    cli.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_registers_through_the_cli_and_grpcurl_shows_in_lists_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), None);
    let url = format!("http://{addr}");

    // The CLI: no --kind is gRPC, as before kinds existed.
    let grpc = cli_json(&url, &["producers", "register", "--id", GRPC_ID, "--address", "127.0.0.1:9100"]);
    assert_eq!(grpc["producer"]["kind"], "grpc", "{grpc}");
    assert_eq!(grpc["producer"]["prometheus"], Value::Null);
    let prom = cli_json(
        &url,
        &[
            "producers",
            "register",
            "--id",
            PROM_ID,
            "--kind",
            "prometheus",
            "--address",
            "Node.Example:09100",
            "--scheme",
            "HTTPS",
            "--path",
            "/probe/metrics",
            "--interval",
            "5s",
            "--scrape-timeout",
            "2s",
            "--label",
            "job=node",
        ],
    );
    let shown = &prom["producer"];
    assert_eq!(shown["kind"], "prometheus", "{prom}");
    assert_eq!(shown["address"], "node.example:9100");
    assert_eq!(
        shown["prometheus"],
        serde_json::json!({"scheme": "https", "metrics_path": "/probe/metrics", "scrape_timeout_ms": 2000})
    );
    assert_eq!(shown["assigned_collector_id"], "", "no collector can scrape it yet");

    // grpcurl's JSON (proto3 JSON names): a Prometheus target with every default, and a request of today's form.
    let registered = run_grpcurl(
        &addr,
        &[
            "-d",
            r#"{"producer_id":"11111111-2222-4333-8444-555555555555","address":"127.0.0.1:9101","interval_ms":1000,"kind":"PRODUCER_KIND_PROMETHEUS","prometheus":{}}"#,
        ],
        &["roster.v1.Registry/RegisterProducer"],
    );
    let registered: Value = serde_json::from_str(&registered).unwrap();
    assert_eq!(registered["producer"]["kind"], "PRODUCER_KIND_PROMETHEUS", "{registered}");
    assert_eq!(registered["producer"]["prometheus"], serde_json::json!({"scheme": "http", "metricsPath": "/metrics"}));
    let old_form = run_grpcurl(
        &addr,
        &[
            "-d",
            r#"{"producer_id":"11111111-2222-4333-8444-666666666666","address":"127.0.0.1:9102","interval_ms":1000}"#,
        ],
        &["roster.v1.Registry/RegisterProducer"],
    );
    let old_form: Value = serde_json::from_str(&old_form).unwrap();
    assert_eq!(old_form["producer"]["kind"], "PRODUCER_KIND_GRPC", "an unset kind is gRPC: {old_form}");
    assert!(old_form["producer"].get("prometheus").is_none(), "{old_form}");

    // The table and the JSON list show the kind, and a Prometheus target by the URL scraped.
    let mut table = roster(&["--server", &url, "producers", "list"]);
    table.assert_ok();
    let text = table.stdout();
    assert!(text.contains("KIND") && text.contains("https://node.example:9100/probe/metrics"), "{text}");
    assert!(text.contains("http://127.0.0.1:9101/metrics") && text.contains("grpc"), "{text}");
    let listed = cli_json(&url, &["producers", "list"]);
    let kinds: Vec<&str> =
        listed["producers"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "prometheus").count(), 2, "{listed}");
    assert_eq!(kinds.len(), 4);

    // The store keeps the kind and the target across a restart.
    server.kill9();
    let (_server, _) = start_server(dir.path(), Some(&addr));
    let after = cli_json(&url, &["producers", "show", PROM_ID]);
    assert_eq!(after["kind"], "prometheus");
    assert_eq!(after["prometheus"], shown["prometheus"], "{after}");
    assert_eq!(after["labels"]["job"], "node");
    assert_eq!(cli_json(&url, &["producers", "show", GRPC_ID])["kind"], "grpc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_kind_scheme_path_timeout_address_or_label_is_refused_naming_the_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(dir.path(), None);
    let url = format!("http://{addr}");
    let mut client = registry(&url).await;
    let prometheus = |target: pb::PrometheusTarget| pb::RegisterProducerRequest {
        kind: pb::ProducerKind::Prometheus as i32,
        prometheus: Some(target),
        interval_ms: 2_000,
        ..never_due()
    };
    let target = |scheme: &str, path: &str, timeout: Option<u32>| pb::PrometheusTarget {
        scheme: scheme.into(),
        metrics_path: path.into(),
        scrape_timeout_ms: timeout,
    };
    let cases = [
        ("kind: ", pb::RegisterProducerRequest { kind: 3, ..never_due() }),
        ("prometheus: ", pb::RegisterProducerRequest { prometheus: Some(target("", "", None)), ..never_due() }),
        ("prometheus.scheme: ", prometheus(target("ftp", "", None))),
        ("prometheus.metrics_path: ", prometheus(target("", "metrics", None))),
        ("prometheus.metrics_path: ", prometheus(target("", "/metrics?debug=1", None))),
        ("prometheus.metrics_path: ", prometheus(target("", "/a b", None))),
        ("prometheus.scrape_timeout_ms: ", prometheus(target("", "", Some(2_000)))),
        ("prometheus.scrape_timeout_ms: ", prometheus(target("", "", Some(0)))),
        (
            "address: ",
            pb::RegisterProducerRequest { address: "https://127.0.0.1:9".into(), ..prometheus(target("", "", None)) },
        ),
        (
            "labels[\"__address__\"]: ",
            pb::RegisterProducerRequest {
                labels: [("__address__".to_owned(), "x:1".to_owned())].into(),
                ..prometheus(target("", "", None))
            },
        ),
    ];
    for (field, request) in cases {
        let status = client.register_producer(request.clone()).await.expect_err(field);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field} {status:?}");
        assert!(status.message().starts_with(field), "{field}: {}", status.message());
    }

    // grpcurl (JSON) and the CLI get the same answers.
    let refused = Command::new(grpcurl())
        .args(["-plaintext", "-max-time", "20", "-d"])
        .arg(r#"{"producer_id":"11111111-2222-4333-8444-777777777777","address":"127.0.0.1:9","interval_ms":1000,"kind":"PRODUCER_KIND_PROMETHEUS","prometheus":{"metricsPath":"metrics"}}"#)
        .args([&addr, "roster.v1.Registry/RegisterProducer"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("InvalidArgument"), "{said}");
    assert!(said.contains("prometheus.metrics_path: \"metrics\" must start with /"), "{said}");
    let register = |extra: &[&str]| {
        let args =
            [&["--server", url.as_str(), "producers", "register", "--id", PROM_ID, "--address"][..], extra].concat();
        let mut cli = roster(&args);
        (cli.wait_exit().code(), cli.stderr())
    };
    let (code, stderr) = register(&["http://127.0.0.1:9", "--kind", "prometheus"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("InvalidArgument: address: \"http://127.0.0.1:9\" has a scheme"), "{stderr}");
    let (code, stderr) =
        register(&["127.0.0.1:9", "--kind", "prometheus", "--interval", "1s", "--scrape-timeout", "1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("prometheus.scrape_timeout_ms: 1000 is not below interval_ms 1000"), "{stderr}");
    let (code, stderr) = register(&["127.0.0.1:9", "--kind", "http"]);
    assert_eq!(code, Some(2), "a kind that is not one is a usage error: {stderr}");
    assert!(stderr.contains("--kind") && stderr.contains("use grpc or prometheus"), "{stderr}");
    let (code, stderr) = register(&["127.0.0.1:9", "--scheme", "https"]);
    assert_eq!(code, Some(2), "a flag of another kind is a usage error: {stderr}");
    assert!(stderr.contains("--scheme describes a Prometheus target: add --kind prometheus"), "{stderr}");
    let (code, stderr) = register(&["127.0.0.1:9", "--path", "/m", "--scrape-timeout", "1s"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--path, --scrape-timeout describe a Prometheus target"), "{stderr}");

    assert!(all_producers(&url).await.is_empty(), "nothing was stored");
}

/// A collector in this process (the library's follower) listing `kinds`, with every event it emits kept.
struct Collector {
    id: CollectorId,
    handle: FollowerHandle,
    events: tokio::sync::broadcast::Receiver<FollowerEvent>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    fn start(url: &str, kinds: SupportedKinds) -> Self {
        let id = CollectorId::new_random();
        let mut config = FollowerConfig::new(vec![url.parse().unwrap()], id);
        config.supported_kinds = kinds;
        let (follower, handle) = Follower::new(config).unwrap();
        let events = handle.events.subscribe();
        let stop = CancellationToken::new();
        let task = tokio::spawn(follower.run(stop.clone()));
        Self { id, handle, events, stop, task }
    }

    /// Every snapshot applied and every discard so far (bounded by what the channel holds, 256 events).
    fn drain(&mut self) -> (Vec<Arc<Snapshot>>, Vec<String>) {
        let (mut applied, mut discarded) = (Vec::new(), Vec::new());
        while let Ok(event) = self.events.try_recv() {
            match event {
                FollowerEvent::Applied(snapshot) => applied.push(snapshot),
                FollowerEvent::Discarded { reason, detail } => discarded.push(format!("{reason}: {detail}")),
                _ => {}
            }
        }
        (applied, discarded)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_producer_goes_only_to_a_collector_that_lists_the_kind_or_stays_unassigned() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server_with(dir.path(), None, &["--grace", "1s"]);
    let url = format!("http://{addr}");
    // A collector that lists gRPC only, as every collector built before kinds does (it sends no list at all, which
    // the server reads the same way).
    let mut grpc_only = Collector::start(&url, SupportedKinds::GRPC_ONLY);
    let grpc_only_id = grpc_only.id.to_string();
    wait_until("the gRPC-only collector's feed open", || collectors(&url), |known| known.contains_key(&grpc_only_id))
        .await;
    let mut client = registry(&url).await;
    let grpc = client.register_producer(never_due()).await.unwrap().into_inner().producer.unwrap();
    let prom = pb::RegisterProducerRequest {
        kind: pb::ProducerKind::Prometheus as i32,
        prometheus: Some(pb::PrometheusTarget { scheme: "https".into(), ..Default::default() }),
        ..never_due()
    };
    let prom = client.register_producer(prom).await.unwrap().into_inner().producer.unwrap();
    assert_eq!(prom.assigned_collector_id, "", "no collector lists the Prometheus kind");
    let generation = collectors(&url).await[&grpc_only_id].generation;
    wait_reported(&url, &grpc_only_id, generation).await;
    let listed = cli_json(&url, &["producers", "list"]);
    let unassigned: Vec<&Value> =
        listed["producers"].as_array().unwrap().iter().filter(|p| p["assigned_collector_id"] == "").collect();
    assert_eq!(unassigned.len(), 1, "{listed}");
    assert_eq!(
        (unassigned[0]["id"].as_str(), unassigned[0]["kind"].as_str()),
        (Some(prom.id.as_str()), Some("prometheus"))
    );

    // A collector that lists PROMETHEUS takes it.
    let scraper = Collector::start(&url, SupportedKinds::ALL);
    let prom_id: ProducerId = prom.id.parse().unwrap();
    let mut applied = scraper.handle.applied.clone();
    let snapshot = tokio::time::timeout(
        common::WAIT,
        applied.wait_for(|s| s.as_ref().is_some_and(|s| s.targets.iter().any(|t| t.id == prom_id))),
    )
    .await
    .expect("the Prometheus producer reaches the collector that lists the kind")
    .unwrap()
    .clone()
    .unwrap();
    let target = snapshot.targets.iter().find(|t| t.id == prom_id).unwrap();
    let Collection::Prometheus(sent) = &target.collection else { panic!("sent as {:?}", target.collection) };
    assert_eq!((sent.scheme, sent.metrics_path.as_str(), sent.scrape_timeout), (Scheme::Https, "/metrics", None));
    let known = collectors(&url).await;
    let kinds = |id: CollectorId| SupportedKinds::from_pb(&known[&id.to_string()].supported_kinds);
    assert_eq!((kinds(grpc_only.id), kinds(scraper.id)), (SupportedKinds::GRPC_ONLY, SupportedKinds::ALL));
    let listed = cli_json(&url, &["collectors", "list"]);
    let shown: Vec<&Value> = listed["collectors"].as_array().unwrap().iter().map(|c| &c["supported_kinds"]).collect();
    assert!(
        shown.contains(&&serde_json::json!(["grpc", "prometheus"])) && shown.contains(&&serde_json::json!(["grpc"]))
    );
    assert_eq!(all_producers(&url).await[&prom.id], scraper.id.to_string());

    // The collector that could scrape it goes away: after its grace period the producer is unassigned again, not
    // handed to the one that cannot.
    scraper.stop().await;
    wait_until(
        "the Prometheus producer unassigned once its collector departed",
        || all_producers(&url),
        |producers| producers.get(&prom.id).is_some_and(String::is_empty) && !producers[&grpc.id].is_empty(),
    )
    .await;
    let generation = collectors(&url).await[&grpc_only_id].generation;
    wait_reported(&url, &grpc_only_id, generation).await;

    // The gRPC-only collector never received it, and never discarded a snapshot (an entry it could not digest
    // would have been one), whatever moved between the two.
    let (seen, discarded) = grpc_only.drain();
    assert!(!seen.is_empty());
    assert!(discarded.is_empty(), "{discarded:?}");
    assert!(seen.iter().all(|s| s.targets.iter().all(|t| t.collection == Collection::Grpc)), "{seen:?}");
    assert!(seen.last().unwrap().targets.iter().any(|t| t.id.to_string() == grpc.id), "it holds the gRPC one");
    grpc_only.stop().await;
}
