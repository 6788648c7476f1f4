//! Producer kinds end to end (issue 13, item 1), against the real binaries: a producer registers as roster's own
//! gRPC `Producer` (the default, and what an unset kind means) or as a Prometheus HTTP target, through the CLI,
//! grpcurl's JSON and the typed client; a bad kind, scheme, path, timeout, an address with a scheme or a label name
//! starting `__` is INVALID_ARGUMENT naming the field, and nothing is stored; the kind survives a server restart;
//! and a collector that does not list PROMETHEUS in `WatchRequest.supported_kinds` (today's roster-collector)
//! never receives a Prometheus producer, which goes to one that lists it, or stays unassigned while none does.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::process::Command;

use common::{
    all_producers, collectors, grpcurl, never_due, registry, roster, run_grpcurl, start_collector, start_server,
    start_server_with, wait_reported, wait_status, wait_until,
};
use roster::{
    domain::{Collection, CollectorId, ProducerId, ProducerKind, Scheme, SupportedKinds},
    follower::{Follower, FollowerConfig},
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
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("add --kind prometheus"), "{stderr}");

    assert!(all_producers(&url).await.is_empty(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_producer_goes_only_to_a_collector_that_lists_the_kind_or_stays_unassigned() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server_with(&dir.path().join("server"), None, &["--grace", "1s"]);
    let url = format!("http://{addr}");
    // Today's roster-collector: it lists gRPC only.
    let (_collector, status_addr, grpc_only) = start_collector(&url, &dir.path().join("c"));
    let mut client = registry(&url).await;
    let grpc = client.register_producer(never_due()).await.unwrap().into_inner().producer.unwrap();
    let prom = pb::RegisterProducerRequest {
        kind: pb::ProducerKind::Prometheus as i32,
        prometheus: Some(pb::PrometheusTarget { scheme: "https".into(), ..Default::default() }),
        ..never_due()
    };
    let prom = client.register_producer(prom).await.unwrap().into_inner().producer.unwrap();
    assert_eq!(prom.assigned_collector_id, "", "no collector lists the Prometheus kind");
    let applied = wait_status(&status_addr, "the gRPC producer applied", |s| s.applied_producer_count == 1).await;
    wait_reported(&url, &grpc_only, applied.applied_generation).await;
    let listed = cli_json(&url, &["producers", "list"]);
    let unassigned: Vec<&Value> =
        listed["producers"].as_array().unwrap().iter().filter(|p| p["assigned_collector_id"] == "").collect();
    assert_eq!(unassigned.len(), 1, "{listed}");
    assert_eq!(
        (unassigned[0]["id"].as_str(), unassigned[0]["kind"].as_str()),
        (Some(prom.id.as_str()), Some("prometheus"))
    );

    // A collector that lists PROMETHEUS (the library's follower, as roster-collector will be once it scrapes).
    let scraper = CollectorId::new_random();
    let mut config = FollowerConfig::new(vec![url.parse().unwrap()], scraper);
    config.supported_kinds = SupportedKinds::ALL;
    let (follower, handle) = Follower::new(config).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(stop.clone()));
    let prom_id: ProducerId = prom.id.parse().unwrap();
    let mut applied = handle.applied.clone();
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
    let kinds = |id: &str| SupportedKinds::from_pb(&known[id].supported_kinds);
    assert_eq!((kinds(&grpc_only), kinds(&scraper.to_string())), (SupportedKinds::GRPC_ONLY, SupportedKinds::ALL));
    let listed = cli_json(&url, &["collectors", "list"]);
    assert!(
        listed["collectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["supported_kinds"] == serde_json::json!(["grpc", "prometheus"]))
    );

    // The gRPC-only collector never got it: it converged on every generation it was sent without a discard (an
    // entry it could not digest would have been one), and its set holds no Prometheus producer.
    let assigned_to = all_producers(&url).await;
    assert_eq!(assigned_to[&prom.id], scraper.to_string());
    let generation = collectors(&url).await[&grpc_only].generation;
    wait_reported(&url, &grpc_only, generation).await;
    let status = common::status(&status_addr).await;
    assert!(status.discards.is_empty(), "{:?}", status.discards);
    assert!(status.producers.iter().all(|p| p.id != prom.id), "{:?}", status.producers);
    let ids: Vec<&str> = status.producers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.contains(&grpc.id.as_str()), assigned_to[&grpc.id] == grpc_only);
    assert!(
        snapshot.targets.iter().all(|t| t.collection.kind() == ProducerKind::Prometheus || t.id.to_string() == grpc.id)
    );

    // The collector that could scrape it goes away: after its grace period the producer is unassigned again,
    // not handed to the one that cannot.
    stop.cancel();
    task.await.unwrap();
    wait_until(
        "the Prometheus producer unassigned once its collector departed",
        || all_producers(&url),
        |producers| producers.get(&prom.id).is_some_and(String::is_empty),
    )
    .await;
    let after = common::status(&status_addr).await;
    assert!(after.producers.iter().all(|p| p.id != prom.id) && after.discards.is_empty(), "{after:?}");
}
