//! What operators do to a running fleet, with real processes: pinning a producer (it must stick through the
//! producer's own renewals and touch nothing else), watching a collector's feed (it must not change any
//! assignment), and forgetting departed collectors.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{
    Proc, WAIT, all_producers, client, collectors, register_many, roster, start_collector, start_server,
    start_server_with, wait_status, wait_until,
};
use serde_json::Value;

/// Waits until each of `ids` has one open stream and has converged; returns their generations.
async fn converged(url: &str, ids: &[&str]) -> Vec<u64> {
    let known = wait_until(
        &format!("collectors {ids:?} converged"),
        || collectors(url),
        |known| ids.iter().all(|id| known.get(*id).is_some_and(|c| c.open_streams == 1 && c.converged)),
    )
    .await;
    ids.iter().map(|id| known[*id].generation).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pin_holds_through_the_producers_renewals_touches_nothing_else_and_unpin_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_a, a_status, a) = start_collector(&url, &dir.path().join("a"));
    let (_b, b_status, b) = start_collector(&url, &dir.path().join("b"));
    converged(&url, &[&a, &b]).await;

    // The producer keeps itself registered, renewing every 2.5 s (a quarter of its 10 s lease), with no pin of
    // its own.
    let producer = Proc::start(
        "roster-demo-producer",
        &["--server", &url, "--lease", "10s", "--interval", "200ms", "--label", "job=demo"],
    );
    let id = producer.logged("demo producer serving", "producer.id=");
    let api = client(&url);
    let deadline = Instant::now() + WAIT;
    let before = loop {
        if let Ok(p) = api.get_producer(id.clone()).await
            && !p.assigned_collector_id.is_empty()
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the producer did not register:\n{}", producer.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rendezvous = before.assigned_collector_id.clone();
    let (target, target_status) = if rendezvous == a { (b.clone(), b_status) } else { (a.clone(), a_status) };
    let ids = [rendezvous.as_str(), target.as_str()];
    let generations = converged(&url, &ids).await;

    let mut pin = roster(&["--server", &url, "--output", "json", "producers", "pin", &id, &target]);
    pin.assert_ok();
    let pinned = pin.json();
    assert_eq!(pinned["changed"], true, "{pinned}");
    assert_eq!(pinned["producer"]["operator_pinned_collector_id"], target.as_str(), "{pinned}");
    assert_eq!(pinned["producer"]["assigned_collector_id"], target.as_str(), "moved at once: {pinned}");

    // Three renewals by the producer itself (each moves its lease expiry on); the pin holds through every one.
    let mut expiries = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    let renewals_started = Instant::now();
    while expiries.len() < 4 {
        let now = api.get_producer(id.clone()).await.unwrap();
        assert_eq!(
            (now.assigned_collector_id.as_str(), now.operator_pinned_collector_id.as_str()),
            (target.as_str(), target.as_str()),
            "the pin was lost at the producer's renewal number {}: {now:?}\nserver log:\n{}",
            expiries.len(),
            server.stderr()
        );
        // Setting the pin touched nothing else: not the interval, lease or labels the producer registered.
        assert_eq!((now.interval_ms, now.lease_ms, &now.labels), (200, 10_000, &before.labels), "{now:?}");
        assert_eq!(now.labels.get("job").map(String::as_str), Some("demo"));
        expiries.insert(now.lease_expires_at_unix_ms);
        assert!(Instant::now() < deadline, "the producer did not renew three times: {expiries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("figure: pin held through 3 renewals over {:?}", renewals_started.elapsed());
    // Moved exactly once: one new generation for the collector it left and one for the one it joined, and none
    // for the renewals.
    let after = converged(&url, &ids).await;
    assert_eq!(after, vec![generations[0] + 1, generations[1] + 1], "generations of {ids:?}");
    // And the pinned collector collects it.
    wait_status(&target_status, "the pinned collector collects the producer", |s| {
        s.producers.iter().any(|p| p.id == id && p.collections > 0)
    })
    .await;

    // The pin is in the store: a restarted server still has it, and moves nothing.
    server.signal("-TERM");
    assert!(server.wait_exit().success(), "{}", server.stderr());
    let (_server, _) = start_server(&dir.path().join("server"), Some(&addr));
    let restarted = api.get_producer(id.clone()).await.unwrap();
    assert_eq!(
        (restarted.operator_pinned_collector_id.as_str(), restarted.assigned_collector_id.as_str()),
        (target.as_str(), target.as_str())
    );
    assert_eq!(converged(&url, &ids).await, vec![generations[0] + 1, generations[1] + 1]);

    let mut unpin = roster(&["--server", &url, "--output", "json", "producers", "unpin", &id]);
    unpin.assert_ok();
    let unpinned = unpin.json();
    assert_eq!(unpinned["changed"], true, "{unpinned}");
    assert_eq!(unpinned["producer"]["operator_pinned_collector_id"], "", "{unpinned}");
    assert_eq!(unpinned["producer"]["assigned_collector_id"], rendezvous.as_str(), "back by rendezvous: {unpinned}");
    assert_eq!(converged(&url, &ids).await, vec![generations[0] + 2, generations[1] + 2]);

    // An unknown producer is NOT_FOUND, named; a bad collector id is INVALID_ARGUMENT, naming the field.
    let unknown = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let mut missing = roster(&["--server", &url, "producers", "pin", unknown, &target]);
    assert!(!missing.wait_exit().success());
    assert!(missing.stderr().contains("NotFound") && missing.stderr().contains(unknown), "{}", missing.stderr());
    // The CLI checks the id at its flag, before any call (the server's own check is in server/tests/server.rs).
    let mut bad = roster(&["--server", &url, "producers", "pin", &id, "not-a-uuid"]);
    assert_eq!(bad.wait_exit().code(), Some(2));
    assert!(bad.stderr().contains("\"not-a-uuid\" is not a UUID"), "{}", bad.stderr());
    // The old way to pin, a registration with --pin that replaced interval, lease and labels too, now says
    // what to use instead, and registers nothing.
    let mut old_way =
        roster(&["--server", &url, "producers", "register", "--id", &id, "--address", "127.0.0.1:1", "--pin", &target]);
    assert!(!old_way.wait_exit().success());
    assert!(old_way.stderr().contains(&format!("roster producers pin {id} {target}")), "{}", old_way.stderr());
    assert_eq!(api.get_producer(id.clone()).await.unwrap().interval_ms, 200, "the registration was not sent");
}

/// Waits until the server lists `collector` as departed; returns its info.
async fn departed(url: &str, collector: &str) -> roster::pb::CollectorInfo {
    let mut known = wait_until(
        &format!("{collector} departed"),
        || collectors(url),
        |known| known.get(collector).is_some_and(|c| c.state() == roster::pb::CollectorState::Departed),
    )
    .await;
    known.remove(collector).expect("listed, as waited for")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_feed_changes_no_assignment_and_an_unknown_collector_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server_with(&dir.path().join("server"), None, &["--grace", "1s"]);
    let url = format!("http://{addr}");
    let (_live, _, live) = start_collector(&url, &dir.path().join("live"));
    let (mut gone, _, gone_id) = start_collector(&url, &dir.path().join("gone"));
    converged(&url, &[&live, &gone_id]).await;
    gone.kill9();
    departed(&url, &gone_id).await;
    let producers = register_many(&url, 20).await;
    let generations = converged(&url, &[&live]).await;
    let everything_on_live = |all: &std::collections::BTreeMap<String, String>| {
        all.len() == producers.len() && all.values().all(|c| *c == live)
    };
    assert!(everything_on_live(&all_producers(&url).await));

    // A new id: refused, named, and nothing is created.
    let phantom = "22222222-2222-2222-2222-222222222222";
    let started = Instant::now();
    let mut watch = roster(&["--server", &url, "watch", "--collector", phantom, "--count", "1"]);
    assert!(!watch.wait_exit().success(), "stdout:\n{}", watch.stdout());
    assert!(watch.stderr().contains("NotFound") && watch.stderr().contains(phantom), "{}", watch.stderr());
    eprintln!("figure: watch of an unknown collector refused in {:?}", started.elapsed());

    // A departed collector and a live one: their feeds are shown, and neither watch moves anything.
    for (who, count) in [(&gone_id, 0), (&live, producers.len())] {
        let mut watch = roster(&["--server", &url, "--output", "json", "watch", "--collector", who, "--count", "1"]);
        watch.assert_ok();
        let applied: Value = watch
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "applied")
            .unwrap_or_else(|| panic!("no snapshot shown:\n{}", watch.stdout()));
        assert_eq!(applied["producers"].as_array().map(Vec::len), Some(count), "{who}: {applied}");
    }

    let known = collectors(&url).await;
    assert_eq!(known.keys().collect::<Vec<_>>(), {
        let mut ids = vec![&live, &gone_id];
        ids.sort();
        ids
    });
    assert_eq!(known[&gone_id].state(), roster::pb::CollectorState::Departed, "{known:#?}");
    assert_eq!((known[&gone_id].assigned_count, known[&live].open_streams), (0, 1), "{known:#?}");
    assert!(everything_on_live(&all_producers(&url).await), "a watch moved producers");
    assert_eq!(converged(&url, &[&live]).await, generations, "a watch made a new generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_collector_is_forgotten_after_forget_after_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--grace", "1s", "--forget-after", "4s"];
    let (mut server, addr) = start_server_with(&dir.path().join("server"), None, &flags);
    let url = format!("http://{addr}");
    let (mut collector, _, id) = start_collector(&url, &dir.path().join("c"));
    converged(&url, &[&id]).await;
    collector.kill9();
    let gone = departed(&url, &id).await;
    assert_eq!(gone.forget_at_unix_ms, gone.departed_at_unix_ms + 4_000, "{gone:?}");

    // The departure time is in the store: a restart does not start the count again.
    server.signal("-TERM");
    assert!(server.wait_exit().success(), "{}", server.stderr());
    let (server, _) = start_server_with(&dir.path().join("server"), Some(&addr), &flags);
    let restored = collectors(&url).await;
    assert_eq!(restored.get(&id).map(|c| c.departed_at_unix_ms), Some(gone.departed_at_unix_ms), "{restored:#?}");

    let deadline = Instant::now() + WAIT;
    while collectors(&url).await.contains_key(&id) {
        assert!(Instant::now() < deadline, "{id} was never forgotten:\n{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let forgotten_at = roster::follower::now_ms();
    eprintln!("figure: forgotten {} ms after departing (--forget-after 4s)", forgotten_at - gone.departed_at_unix_ms);
    assert!(
        forgotten_at >= gone.forget_at_unix_ms,
        "forgotten early: at {forgotten_at}, due {}",
        gone.forget_at_unix_ms
    );
    assert!(server.stderr().contains("forgotten"), "{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_collectors_forget_refuses_a_live_or_grace_collector_and_forgets_a_departed_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server_with(&dir.path().join("server"), None, &["--grace", "3s"]);
    let url = format!("http://{addr}");
    let (mut collector, _, id) = start_collector(&url, &dir.path().join("c"));
    converged(&url, &[&id]).await;
    let forget = |output: &str| roster(&["--server", &url, "--output", output, "collectors", "forget", &id]);

    let mut live = forget("table");
    assert!(!live.wait_exit().success());
    let line = live.stderr();
    assert!(line.contains("FailedPrecondition") && line.contains(&id) && line.contains("is live"), "{line}");

    collector.kill9();
    wait_until(
        &format!("{id} in grace"),
        || collectors(&url),
        |known| known[&id].state() == roster::pb::CollectorState::Grace,
    )
    .await;
    let mut grace = forget("table");
    assert!(!grace.wait_exit().success());
    assert!(grace.stderr().contains("FailedPrecondition") && grace.stderr().contains("in grace"), "{}", grace.stderr());
    assert!(collectors(&url).await.contains_key(&id), "a refused forget removed it");

    departed(&url, &id).await;
    let mut forgotten = forget("json");
    forgotten.assert_ok();
    assert_eq!(forgotten.json()["existed"], true);
    assert!(!collectors(&url).await.contains_key(&id));
    let mut again = forget("table");
    again.assert_ok();
    assert!(again.stdout().contains("was not known"), "{}", again.stdout());
}
