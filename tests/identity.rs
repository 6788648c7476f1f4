//! Two collector processes with one collector id (a copied data directory) would both collect every producer and
//! write every sample twice. The server refuses the newer process's feed with FAILED_PRECONDITION and a message
//! naming the fix, logs it, and shows it in `roster collectors list`; the refused collector says so in its log and
//! status, keeps collecting its last known set, and retries with its capped backoff, so it takes over once the
//! original is gone for good. A reconnect of the same process (its old stream not yet noticed dead) is no conflict.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{
    Proc, collectors, roster, start_collector_with, start_server, status, wait_for, wait_reported, wait_status,
    wait_until,
};
use roster::pb::{self, assignment_feed_client::AssignmentFeedClient};
use serde_json::Value;
use tonic::Code;

/// Fast feed settings: the copy retries about every second.
const FAST: &[&str] = &["--keepalive-interval", "500ms", "--keepalive-timeout", "500ms", "--reconnect-max-delay", "1s"];

fn demo_producer(server_url: &str) -> Proc {
    Proc::start("roster-demo-producer", &["--server", server_url, "--interval", "200ms"])
}

/// `roster collectors list --output json`, the entry of `id`, and the table output.
fn listed(server_url: &str, id: &str) -> (Value, String) {
    let mut json = roster(&["--server", server_url, "--output", "json", "collectors", "list"]);
    assert!(json.wait_exit().success(), "{}", json.stderr());
    let all: Value = serde_json::from_str(&json.stdout()).unwrap();
    let me = all["collectors"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    let mut table = roster(&["--server", server_url, "collectors", "list"]);
    assert!(table.wait_exit().success(), "{}", table.stderr());
    (me, table.stdout())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_data_dir_is_refused_loudly_keeps_its_set_and_takes_over_once_the_original_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, listen) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{listen}");
    let original_dir = dir.path().join("original");
    let (mut original, original_status, id) = start_collector_with(&url, &original_dir, FAST);
    let _producers: Vec<Proc> = (0..3).map(|_| demo_producer(&url)).collect();
    // Reported means saved (C5): the data directory holds the three.
    let applied = wait_status(&original_status, "three producers applied", |s| s.applied_producer_count == 3).await;
    wait_reported(&url, &id, applied.applied_generation).await;

    // The copy: the whole data directory (id and applied snapshot), as a restored backup or a cloned VM has it.
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    for name in ["collector-id".to_owned(), format!("snapshot-{id}.bin")] {
        std::fs::copy(original_dir.join(&name), copy_dir.join(&name)).unwrap();
    }
    let (copy, copy_status, copy_id) = start_collector_with(&url, &copy_dir, FAST);
    assert_eq!(copy_id, id);

    let refused = wait_status(&copy_status, "the copy's feed refused", |s| !s.feed_refused.is_empty()).await;
    let original_now = status(&original_status).await;
    assert!(
        refused.feed_refused.starts_with("FailedPrecondition")
            && refused.feed_refused.contains("collector-id")
            && refused.feed_refused.contains(&original_now.instance_id),
        "the copy is told why, which process holds the feed, and the fix: {}",
        refused.feed_refused
    );
    assert_ne!(refused.instance_id, original_now.instance_id);
    assert!(!refused.connected);
    assert_eq!(refused.applied_producer_count, 3, "the copy keeps collecting its last known set");
    assert!(copy.stderr().contains("the server refused this collector's feed"), "the copy's log says it");
    wait_for("the server's log says it", || server.stderr().contains("two collector processes use one collector id"))
        .await;

    let (me, table) = listed(&url, &id);
    assert_eq!(me["instances"], 2, "{me}");
    assert!(me["conflict"].as_str().unwrap().contains(&original_now.instance_id), "{me}");
    assert!(me["conflict"].as_str().unwrap().contains(&refused.instance_id), "{me}");
    assert!(me["conflict"].as_str().unwrap().contains("collector-id"), "{me}");
    assert_eq!((me["open_streams"].as_u64(), me["converged"].as_bool()), (Some(1), Some(true)), "{me}");
    assert!(table.contains("2 CONFLICT") && table.contains(&format!("CONFLICT {id} (2 processes)")), "{table}");

    // The original keeps its feed: a new producer reaches it, and not the copy, which keeps retrying.
    let _fourth = demo_producer(&url);
    wait_status(&original_status, "the original applies the fourth producer", |s| {
        s.connected && s.applied_producer_count == 4
    })
    .await;
    let retrying = wait_status(&copy_status, "the copy retries", |s| s.reconnects >= refused.reconnects + 2).await;
    assert_eq!((retrying.applied_producer_count, retrying.connected), (3, false), "{retrying:?}");
    eprintln!("figure: duplicate collector refused {} times so far, set kept (3 producers)", retrying.reconnects);

    // Once the original is gone for good, the copy's next attempt is accepted and it follows the feed.
    original.signal("-TERM");
    assert_eq!(original.wait_exit().code(), Some(0));
    let stopped = Instant::now();
    wait_status(&copy_status, "the copy takes over", |s| {
        s.connected && s.feed_refused.is_empty() && s.applied_producer_count == 4
    })
    .await;
    eprintln!("figure: the copy took over {:?} after the original stopped", stopped.elapsed());
    drop(copy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_instance_are_never_refused_and_another_instance_is() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, listen) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{listen}");
    let mut feed = AssignmentFeedClient::connect(url.clone()).await.unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let watch = |instance: &str| pb::WatchRequest {
        collector_id: id.clone(),
        instance_id: instance.to_owned(),
        ..Default::default()
    };
    let instance = uuid::Uuid::new_v4().to_string();
    // A process reconnecting before the server noticed its old stream dead: two open streams, one instance.
    let _old = feed.watch(watch(&instance)).await.unwrap().into_inner();
    let _new = feed.watch(watch(&instance)).await.unwrap().into_inner();
    // An observer that gives no instance id is not a process of the collector.
    let _observer = feed.watch(watch("")).await.unwrap().into_inner();
    let me = wait_until(
        "three open streams counted",
        || async { collectors(&url).await.remove(&id).unwrap() },
        |me| me.open_streams == 3,
    )
    .await;
    assert_eq!((me.instances, me.conflict.as_str()), (1, ""), "{me:?}");

    let other = uuid::Uuid::new_v4().to_string();
    let refused = feed.watch(watch(&other)).await.expect_err("a second process is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert!(refused.message().contains(&instance) && refused.message().contains(&other), "{refused}");
    let me = collectors(&url).await.remove(&id).unwrap();
    assert_eq!((me.open_streams, me.instances), (3, 2), "the refused stream changed nothing else: {me:?}");
    assert!(me.conflict_at_unix_ms > 0 && me.conflict.contains(&other), "{me:?}");
}
