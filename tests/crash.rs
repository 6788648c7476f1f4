//! Crashes, with real processes on loopback: `kill -9` of the server while idle, in the middle of a large
//! snapshot and during a burst of registrations, and `kill -9` of a collector. Every scenario checks what the
//! collectors actually collect (their sinks and status API) and what the server stores, and every wait is bounded.
//!
//! The binaries are the workspace's own, found next to this test's executable (`cargo test --workspace` and
//! `./scripts/test` build them); if one is missing the test fails and says how to build it.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{collections::BTreeSet, time::Instant};

use common::{
    Proc, RegistrationBurst, all_producers, collected_more, collectors, never_due, register_many, registry, samples,
    sink_counts, start_collector_with, start_server, status, wait_for, wait_reported, wait_status,
};
use roster_testkit::{FaultProxy, Mode};

/// Fast feed settings so faults are noticed in about a second.
const FAST: &[&str] = &["--keepalive-interval", "500ms", "--keepalive-timeout", "500ms", "--reconnect-max-delay", "1s"];

/// Demo producer processes registered with `server_url`, collected every 200 ms.
fn demo_producers(server_url: &str, count: usize) -> Vec<Proc> {
    (0..count)
        .map(|_| {
            Proc::start("roster-demo-producer", &["--server", server_url, "--interval", "200ms", "--lease", "60s"])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_idle_server_stops_no_collection_and_loses_or_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, listen) = start_server(&server_dir, None);
    let url = format!("http://{listen}");
    let (c1, status1, _) = start_collector_with(&url, &dir.path().join("c1"), FAST);
    let (c2, status2, _) = start_collector_with(&url, &dir.path().join("c2"), FAST);
    let _producers = demo_producers(&url, 4);
    let sinks = [dir.path().join("c1/samples.jsonl"), dir.path().join("c2/samples.jsonl")];

    wait_for("samples from all 4 producers", || samples(&sinks).len() == 4).await;
    let (one, two) = (sink_counts(&sinks[0]), sink_counts(&sinks[1]));
    assert!(one.keys().collect::<BTreeSet<_>>().is_disjoint(&two.keys().collect()), "each producer collected once");
    let assigned_before = all_producers(&url).await;
    assert_eq!(assigned_before.len(), 4);
    let before = [status(&status1).await, status(&status2).await];

    server.kill9();
    let killed = Instant::now();
    let at_kill = samples(&sinks);
    let detect = wait_status(&status1, "the collector sees the server gone", |s| !s.connected).await;
    eprintln!("figure: idle kill -9: collector noticed after {:?}", killed.elapsed());
    collected_more("every producer collected 10 more times with the server dead", &sinks, &at_kill, 10).await;
    assert_eq!(detect.applied_generation, before[0].applied_generation, "the set stays in force");

    let (_server, _) = start_server(&server_dir, Some(&listen));
    let restarted = Instant::now();
    for (addr, was) in [(&status1, &before[0]), (&status2, &before[1])] {
        let s = wait_status(addr, "the collector reconnects", |s| s.connected).await;
        assert_eq!(s.applied_epoch, was.applied_epoch, "same epoch after the restart");
        assert!(s.applied_generation >= was.applied_generation, "generations never go back");
        assert!(!s.discards.contains_key("epoch_settling"), "{s:?}");
    }
    eprintln!("figure: idle kill -9: both collectors back in sync {:?} after the restart", restarted.elapsed());
    assert_eq!(all_producers(&url).await, assigned_before, "no registration lost, no producer moved");

    // Generations continue from where they were: a change gives a newer one.
    registry(&url).await.register_producer(never_due()).await.unwrap();
    let known = collectors(&url).await;
    let moved_on = before.iter().any(|s| known[&s.collector_id].generation > s.applied_generation);
    assert!(moved_on, "the new producer's collector got a newer generation: {known:?}");
    let after = samples(&sinks);
    collected_more("collection goes on after the restart", &sinks, &after, 2).await;
    drop((c1, c2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_large_snapshot_keeps_the_old_set_until_the_whole_new_one_arrives() {
    const BULK: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, listen) = start_server(&server_dir, None);
    let url = format!("http://{listen}");
    let proxy = FaultProxy::start(listen.parse().unwrap()).await;
    let (_collector, status_addr, collector_id) = start_collector_with(&proxy.url(), &dir.path().join("c"), FAST);
    let _producers = demo_producers(&url, 2);
    let sinks = [dir.path().join("c/samples.jsonl")];
    wait_for("samples from both producers", || samples(&sinks).len() == 2).await;
    let old = status(&status_addr).await;

    // The collector is cut off (it stays in grace, so its assignment grows), then comes back over a slow link:
    // the 20 002-producer snapshot takes seconds to arrive, and the server dies in the middle of it.
    proxy.set(Mode::Refuse);
    wait_status(&status_addr, "the collector sees the link gone", |s| !s.connected).await;
    let bulk: BTreeSet<String> = register_many(&url, BULK).await.into_iter().collect();
    let registered = collectors(&url).await[&collector_id].generation;
    let sent_before = proxy.bytes_down.load(std::sync::atomic::Ordering::Relaxed);
    proxy.set(Mode::Trickle(256 * 1024));
    wait_for("a quarter megabyte of the new snapshot on its way", || {
        proxy.bytes_down.load(std::sync::atomic::Ordering::Relaxed) > sent_before + 256 * 1024
    })
    .await;
    let mid = status(&status_addr).await;
    assert_eq!(mid.applied_generation, old.applied_generation, "nothing applied before the snapshot is complete");
    server.kill9();

    let at_kill = samples(&sinks);
    let s = wait_status(&status_addr, "the cut snapshot discarded", |s| !s.discards.is_empty() && !s.connected).await;
    assert_eq!((s.applied_generation, s.applied_producer_count), (old.applied_generation, 2), "{s:?}");
    collected_more("both producers collected 5 more times meanwhile", &sinks, &at_kill, 5).await;

    let (_server, _) = start_server(&server_dir, Some(&listen));
    proxy.set(Mode::Forward);
    let restarted = Instant::now();
    let s = wait_status(&status_addr, "the whole snapshot applied and its tasks running", |s| {
        s.applied_producer_count == BULK as u64 + 2 && s.producers.len() == BULK + 2
    })
    .await;
    eprintln!("figure: kill -9 mid-snapshot: 20 002 producers applied {:?} after the restart", restarted.elapsed());
    assert_eq!(s.applied_epoch, old.applied_epoch, "same epoch");
    assert!(s.applied_generation >= registered, "generations continue: {} < {registered}", s.applied_generation);
    let stored = all_producers(&url).await;
    assert_eq!(stored.len(), BULK + 2, "no acknowledged registration lost");
    assert!(bulk.iter().all(|id| stored.contains_key(id)));
    let applied: BTreeSet<&str> = s.producers.iter().map(|p| p.id.as_str()).collect();
    assert!(stored.keys().all(|id| applied.contains(id.as_str())), "the collector applied exactly the stored set");
    let after = samples(&sinks);
    collected_more("the demo producers still collected", &sinks, &after, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_registration_burst_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, listen) = start_server(&server_dir, None);
    let url = format!("http://{listen}");
    let (_collector, status_addr, collector_id) = start_collector_with(&url, &dir.path().join("c"), FAST);
    let _producers = demo_producers(&url, 1);
    let sinks = [dir.path().join("c/samples.jsonl")];
    wait_for("samples from the demo producer", || samples(&sinks).len() == 1).await;

    // 16 clients register as fast as they can.
    let burst = RegistrationBurst::start(&url, 16).await;
    wait_for("2 000 acknowledged registrations", || burst.acknowledged() >= 2_000).await;
    let before = status(&status_addr).await;
    server.kill9();
    let acknowledged = burst.end().await;
    let at_kill = samples(&sinks);
    collected_more("collection goes on with the server dead", &sinks, &at_kill, 3).await;

    let (_server, _) = start_server(&server_dir, Some(&listen));
    let stored = all_producers(&url).await;
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains_key(*id)).collect();
    eprintln!(
        "figure: kill -9 mid-burst: {} acknowledged, {} stored, {} lost",
        acknowledged.len(),
        stored.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} acknowledged registrations lost, e.g. {:?}", lost.len(), lost.first());
    let server_generation = collectors(&url).await[&collector_id].generation;
    let s = wait_status(&status_addr, "the collector converges on the stored set", |s| {
        s.connected && s.applied_producer_count == stored.len() as u64
    })
    .await;
    assert_eq!(s.applied_epoch, before.applied_epoch, "same epoch");
    assert!(s.applied_generation >= server_generation && server_generation >= before.applied_generation);
    let after = samples(&sinks);
    collected_more("collection goes on after the restart", &sinks, &after, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_and_restarted_resumes_its_persisted_set_before_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, listen) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{listen}");
    let proxy = FaultProxy::start(listen.parse().unwrap()).await;
    let collector_dir = dir.path().join("c");
    let (mut collector, status_addr, collector_id) = start_collector_with(&proxy.url(), &collector_dir, FAST);
    let _producers = demo_producers(&url, 2);
    let sinks = [collector_dir.join("samples.jsonl")];
    wait_for("samples from both producers", || samples(&sinks).len() == 2).await;
    let before = wait_status(&status_addr, "both producers applied", |s| s.applied_producer_count == 2).await;
    wait_reported(&url, &collector_id, before.applied_generation).await;

    collector.kill9();
    proxy.set(Mode::Silent); // the server does not answer: connections open, nothing comes back
    let at_kill = samples(&sinks);
    let restarted = Instant::now();
    let (_collector, status_addr, _) = start_collector_with(&proxy.url(), &collector_dir, FAST);
    let resumed = status(&status_addr).await;
    assert!(!resumed.connected, "{resumed:?}");
    assert_eq!(
        (&resumed.applied_epoch, resumed.applied_generation, resumed.producers.len()),
        (&before.applied_epoch, before.applied_generation, 2),
        "the persisted set is in force before any server answered"
    );
    collected_more("both producers collected again with no server answering", &sinks, &at_kill, 3).await;
    eprintln!("figure: collector kill -9: collecting again {:?} after its restart", restarted.elapsed());
    assert!(!status(&status_addr).await.connected);

    proxy.set(Mode::Forward);
    let s = wait_status(&status_addr, "the collector reaches the server", |s| s.connected).await;
    assert_eq!(s.applied_generation, before.applied_generation, "in sync: nothing new to apply");
    assert!(s.discards.is_empty(), "{:?}", s.discards);
}
