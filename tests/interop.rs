//! Interop with a gRPC peer that is not ours: a Python grpcio client, its stubs generated from `proto/` by
//! grpcio-tools at test time, follows a collector's feed by rules C1–C3 and must end up with exactly the set the
//! Rust collector applied.
//!
//! Python with grpcio and grpcurl come from `scripts/test`, which installs them into `.tools/`; without them these
//! tests fail and say so (they never skip).

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::{ServerTokens, python, run_grpcurl, start_collector, start_secured_server, start_server};
use roster::pb::{self, registry_client::RegistryClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_follower_applies_exactly_the_set_the_rust_collector_applied() {
    const N: usize = 2500; // three chunks at the default 1000 producers per chunk
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (collector, status_addr, collector_id) = start_collector(&url, &dir.path().join("collector"));

    // Producers that are never due within the test (one-hour interval): the point is the set, not the samples.
    let registry = RegistryClient::connect(url.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let mut registry = registry.clone();
        tasks.spawn(async move {
            for i in (worker..N).step_by(16) {
                let request = pb::RegisterProducerRequest {
                    producer_id: uuid::Uuid::new_v4().to_string(),
                    address: format!("127.0.0.1:{}", 10_000 + i),
                    interval_ms: 3_600_000,
                    ..Default::default()
                };
                registry.register_producer(request).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let status = common::wait_status(&status_addr, &format!("the collector applying all {N}"), |status| {
        status.applied_producer_count == N as u64 && status.producers.len() == N
    })
    .await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/follow_feed.py");
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg("--proto-root")
            .arg(proto_root)
            .args([
                "--server",
                &addr,
                "--collector",
                &collector_id,
                "--min-producers",
                &N.to_string(),
                "--timeout",
                "60",
            ])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "python follower failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let applied: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from the python follower");
    let python_ids: Vec<String> =
        applied["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let rust_ids: Vec<String> = status.producers.iter().map(|p| p.id.clone()).collect();
    assert_eq!(applied["epoch"], status.applied_epoch.as_str());
    assert_eq!(applied["generation"], status.applied_generation);
    assert_eq!(python_ids, rust_ids, "the same set, producer for producer");
    drop(collector);
}

/// grpcurl, over reflection only, reads a collector's status: the collector serves reflection and health too.
#[test]
fn grpcurl_reads_a_collectors_status_over_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let (collector, status_addr, collector_id) =
        start_collector(&format!("http://{addr}"), &dir.path().join("collector"));
    let run = |words: &[&str]| run_grpcurl(&status_addr, &[], words);
    let services = run(&["list"]);
    for service in ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "roster.v1.CollectorStatus"] {
        assert!(services.lines().any(|l| l == service), "{service} missing:\n{services}");
    }
    assert!(run(&["grpc.health.v1.Health/Check"]).contains("SERVING"));
    let status = run(&["roster.v1.CollectorStatus/GetStatus"]);
    assert!(status.contains(&collector_id), "{status}");
    drop(collector);
}

/// Runs the Python follower of `collector`'s feed at `addr`, with the token in `token_file` if given.
async fn python_follower(addr: &str, collector: &str, min_producers: usize, token_file: Option<&Path>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/follow_feed.py");
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut command = Command::new(python());
    command.arg(script).arg("--proto-root").arg(proto_root).args([
        "--server",
        addr,
        "--collector",
        collector,
        "--min-producers",
        &min_producers.to_string(),
        "--timeout",
        "60",
    ]);
    if let Some(token_file) = token_file {
        command.arg("--token-file").arg(token_file);
    }
    tokio::task::spawn_blocking(move || command.output().expect("python runs")).await.expect("the python task")
}

/// The Python grpcio client sends a bearer token as metadata: with its own collector token it follows its feed; with
/// another collector's token, or none, the server refuses it, and the registry is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_follows_its_feed_with_a_token_and_is_refused_without_its_own() {
    const COLLECTOR: &str = "c0000000-0000-4000-8000-00000000000c";
    const OTHER: &str = "d0000000-0000-4000-8000-00000000000d";
    let dir = tempfile::tempdir().unwrap();
    let tokens = ServerTokens::new(dir.path());
    let (operator, own, other) = (
        tokens.grant("operator", None),
        tokens.grant("collector", Some(COLLECTOR)),
        tokens.grant("collector", Some(OTHER)),
    );
    let (_server, addr) = start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let client = operator.client(&format!("http://{addr}"));
    let mut registered = Vec::new();
    for i in 0..3 {
        let id = uuid::Uuid::new_v4().to_string();
        let request = pb::RegisterProducerRequest {
            producer_id: id.clone(),
            address: format!("127.0.0.1:{}", 10_000 + i),
            interval_ms: 3_600_000,
            ..Default::default()
        };
        client.register_producer(request).await.unwrap();
        registered.push(id);
    }
    registered.sort();
    let before = client.list_collectors().await.unwrap().collectors;

    for (token, expected) in [(Some(other.token_file.as_path()), "PERMISSION_DENIED"), (None, "UNAUTHENTICATED")] {
        let refused = python_follower(&addr, COLLECTOR, 1, token).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(expected), "{expected}: {stderr}");
    }
    assert_eq!(client.list_collectors().await.unwrap().collectors, before, "a refused Watch makes no collector");

    let followed = python_follower(&addr, COLLECTOR, registered.len(), Some(&own.token_file)).await;
    assert!(followed.status.success(), "python follower failed:\n{}", String::from_utf8_lossy(&followed.stderr));
    let applied: serde_json::Value = serde_json::from_slice(&followed.stdout).expect("JSON from the python follower");
    let ids: Vec<&str> = applied["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ids, registered, "its only collector is assigned every producer");
}
