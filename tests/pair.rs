//! End to end with real processes: roster-server, two roster-collectors and four roster-demo-producers on
//! loopback. The server is killed with SIGKILL; every producer must keep being collected meanwhile, and after
//! the restart nothing registered is lost and no producer has moved.
//!
//! The binaries are the workspace's own, found next to this test's executable (`cargo test --workspace` and
//! `./scripts/test` build them); if one is missing the test fails and says how to build it.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use common::{Proc, WAIT};

use roster::pb::{self, collector_status_client::CollectorStatusClient, registry_client::RegistryClient};

/// Samples per producer id in a sink file.
fn sink_counts(path: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return counts };
    for line in text.lines() {
        // A line being written may be cut off; complete lines parse.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(id) = value["producer_id"].as_str()
        {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assignments(server: &str) -> BTreeMap<String, String> {
    let mut registry = RegistryClient::connect(server.to_owned()).await.unwrap();
    let page = registry.list_producers(pb::ListProducersRequest::default()).await.unwrap().into_inner();
    page.producers.into_iter().map(|p| (p.id, p.assigned_collector_id)).collect()
}

#[tokio::test]
async fn samples_keep_flowing_through_a_kill_9_of_the_server_and_nothing_is_lost_or_moved() {
    let dir = tempfile::tempdir().unwrap();
    let data = |name: &str| dir.path().join(name).display().to_string();
    let (server_dir, c1_dir, c2_dir) = (data("server"), data("c1"), data("c2"));
    let (mut server, listen) = common::start_server(Path::new(&server_dir), None);
    let url = format!("http://{listen}");

    let collectors: Vec<Proc> = [&c1_dir, &c2_dir]
        .iter()
        .map(|d| Proc::start("roster-collector", &["--server", &url, "--data-dir", d, "--listen", "127.0.0.1:0"]))
        .collect();
    let status_urls: Vec<String> =
        collectors.iter().map(|c| format!("http://{}", c.logged("roster-collector running", "status=Some("))).collect();
    let _producers: Vec<Proc> = (0..4)
        .map(|_| Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms", "--lease", "60s"]))
        .collect();

    let sinks = [Path::new(&c1_dir).join("samples.jsonl"), Path::new(&c2_dir).join("samples.jsonl")];
    let all = || -> BTreeMap<String, u64> {
        let mut total = BTreeMap::new();
        for sink in &sinks {
            for (id, n) in sink_counts(sink) {
                *total.entry(id).or_default() += n;
            }
        }
        total
    };
    wait_for("samples from all 4 producers", || all().len() == 4).await;
    // Each producer is collected by exactly one collector.
    let (one, two) = (sink_counts(&sinks[0]), sink_counts(&sinks[1]));
    assert!(one.keys().collect::<BTreeSet<_>>().is_disjoint(&two.keys().collect()), "{one:?} {two:?}");
    let assigned_before = assignments(&url).await;
    assert_eq!(assigned_before.len(), 4);
    let epoch_before = {
        let mut status = CollectorStatusClient::connect(status_urls[0].clone()).await.unwrap();
        status.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner().applied_epoch
    };

    server.kill9();
    let at_kill = all();
    wait_for("every producer collected 5 more times with the server dead", || {
        let now = all();
        at_kill.iter().all(|(id, n)| now.get(id).is_some_and(|m| *m >= n + 15))
    })
    .await;

    let (server, _) = common::start_server(Path::new(&server_dir), Some(&listen));
    for status_url in &status_urls {
        let mut status = CollectorStatusClient::connect(status_url.clone()).await.unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let s = status.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
            if s.connected {
                assert_eq!(s.applied_epoch, epoch_before, "same epoch after the restart");
                assert_eq!(s.discards.get("epoch_settling"), None);
                break;
            }
            assert!(Instant::now() < deadline, "collector did not reconnect: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(assignments(&url).await, assigned_before, "no registration lost, no producer moved");
    let after = all();
    wait_for("collection goes on after the restart", || {
        let now = all();
        after.iter().all(|(id, n)| now.get(id).is_some_and(|m| *m > *n))
    })
    .await;
    drop(server);
}
