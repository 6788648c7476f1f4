//! A stalled process counts as a down one (issue 11), with real processes: `SIGSTOP` freezes the server longer
//! than its producers' leases while they back off, or freezes a collector past its own keepalive; after `SIGCONT`
//! no live producer may leave any collector's set.
//!
//! The same holds when the server's wall clock steps an hour ahead (as after a resume, when NTP corrects it) or a
//! day back: the server runs under Debian's libfaketime, whose offset file the test rewrites, with its monotonic
//! clock left alone. The clock seam's own test is `absence_and_clock_steps` in `server/tests/server.rs`.
//!
//! A watcher reads the collector's status API every 20 ms for the whole test and keeps the smallest applied set it
//! saw; the collector's generation and task incarnations show any change too short for it to see.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    ffi::OsStr,
    time::{Duration, Instant},
};

use common::{
    Proc, SetWatcher, all_producers, collected_more, collectors, libfaketime, sink_counts, start_collector_with,
    start_server, status,
};

fn demo_producers(server_url: &str, count: usize, lease: &str) -> Vec<Proc> {
    (0..count)
        .map(|_| {
            Proc::start("roster-demo-producer", &["--server", server_url, "--interval", "200ms", "--lease", lease])
        })
        .collect()
}

/// The collector applied no new generation and restarted no collection task (C6): a dip of its set too short for
/// the [`SetWatcher`] to see would still show here.
fn assignment_unchanged(before: &roster::pb::GetStatusResponse, after: &roster::pb::GetStatusResponse) {
    assert_eq!(after.applied_generation, before.applied_generation, "the assignment changed: {after:?}");
    let tasks = |s: &roster::pb::GetStatusResponse| {
        s.producers.iter().map(|p| (p.id.clone(), p.task_incarnation)).collect::<Vec<_>>()
    };
    assert_eq!(tasks(after), tasks(before), "a collection task was stopped and started again");
}

/// Lets `stopped` pass while the process stays stopped, reading the collector's status meanwhile.
async fn frozen_for(stopped: Duration) {
    let start = Instant::now();
    while start.elapsed() < stopped {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_longer_than_the_leases_drops_no_live_producer() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_collector, status_addr, collector_id) = start_collector_with(&url, &dir.path().join("c"), &[]);
    // 10 s leases, renewed every 2.5 s: a 15 s stop outlives every one of them.
    let _producers = demo_producers(&url, 3, "10s");
    let sink = dir.path().join("c/samples.jsonl");
    common::wait_for("3 producers collected", || sink_counts(&sink).len() == 3).await;
    let applied_before = status(&status_addr).await;
    let watcher = SetWatcher::start(&status_addr);

    server.signal("-STOP");
    frozen_for(Duration::from_secs(15)).await;
    server.signal("-CONT");
    let resumed = Instant::now();
    // Every producer renews with the server again, and each is collected again.
    let stored = all_producers(&url).await;
    assert_eq!(stored.len(), 3, "no lease lapsed: {stored:?}");
    assert!(stored.values().all(|c| *c == collector_id), "nothing moved: {stored:?}");
    let before = sink_counts(&sink);
    collected_more("every producer collected after the resume", std::slice::from_ref(&sink), &before, 3).await;
    let (smallest, polls) = watcher.finish().await;
    eprintln!(
        "figure: collecting again {:?} after SIGCONT; smallest set seen {smallest} in {polls} polls",
        resumed.elapsed()
    );
    assert_eq!(smallest, 3, "a live producer left the collector's set");
    assignment_unchanged(&applied_before, &status(&status_addr).await);
    assert!(!server.stderr().contains("lease lapsed"), "no lease lapsed:\n{}", server.stderr());
    let known = collectors(&url).await;
    assert!(known[&collector_id].converged, "{known:?}");
    let absent_ms = server.logged("the server could not serve for a while", "absent_ms=");
    eprintln!("figure: server found itself absent for {absent_ms} ms");
    assert!(absent_ms.parse::<u64>().unwrap() >= 10_000, "the stop was measured: {absent_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_stopped_past_its_keepalive_keeps_its_set() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (collector, status_addr, collector_id) = start_collector_with(
        &url,
        &dir.path().join("c"),
        &["--keepalive-interval", "1s", "--keepalive-timeout", "2s", "--reconnect-max-delay", "2s"],
    );
    let _producers = demo_producers(&url, 3, "60s");
    let sink = dir.path().join("c/samples.jsonl");
    common::wait_for("3 producers collected", || sink_counts(&sink).len() == 3).await;
    let before = status(&status_addr).await;
    let watcher = SetWatcher::start(&status_addr);

    // Stopped three times its keepalive bound: on waking, its own keepalive may find the healthy server "dead".
    collector.signal("-STOP");
    frozen_for(Duration::from_secs(9)).await;
    collector.signal("-CONT");
    let resumed = Instant::now();
    let counts = sink_counts(&sink);
    collected_more("every producer collected after the resume", std::slice::from_ref(&sink), &counts, 3).await;
    let after = status(&status_addr).await;
    let (smallest, polls) = watcher.finish().await;
    eprintln!(
        "figure: collecting again {:?} after SIGCONT; reconnects {} -> {}; smallest set seen {smallest} in {polls} polls",
        resumed.elapsed(),
        before.reconnects,
        after.reconnects
    );
    assert_eq!(smallest, 3, "the collector's set shrank");
    assignment_unchanged(&before, &after);
    assert!(after.discards.is_empty(), "{:?}", after.discards);
    let stored = all_producers(&url).await;
    assert!(stored.values().all(|c| *c == collector_id), "nothing moved away from it: {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_wall_clock_steps_keeps_every_producer() {
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let (library, data_dir) = (libfaketime(), dir.path().join("server"));
    let server = Proc::start_with_env(
        "roster-server",
        &["--listen", "127.0.0.1:0", "--data-dir", &data_dir.display().to_string()],
        &[
            ("LD_PRELOAD", library.as_os_str()),
            ("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()),
            ("FAKETIME_NO_CACHE", OsStr::new("1")),
            ("FAKETIME_DONT_FAKE_MONOTONIC", OsStr::new("1")),
        ],
    );
    let addr = server.logged("roster-server serving", "listen=");
    let url = format!("http://{addr}");
    let (_collector, status_addr, collector_id) = start_collector_with(&url, &dir.path().join("c"), &[]);
    let _producers = demo_producers(&url, 3, "10s");
    let sink = dir.path().join("c/samples.jsonl");
    common::wait_for("3 producers collected", || sink_counts(&sink).len() == 3).await;
    let applied_before = status(&status_addr).await;
    let watcher = SetWatcher::start(&status_addr);

    // An hour ahead: every 10 s lease is an hour past its expiry on the server's clock.
    std::fs::write(&offset, "+1h\n").unwrap();
    let absent_ms = server.logged("the server could not serve for a while", "absent_ms=");
    assert_eq!(server.logged("the server could not serve for a while", "wall_clock_stepped="), "true");
    // Then a day back: leases are capped at their length from the new now, and renewals go on.
    std::fs::write(&offset, "-1d\n").unwrap();
    let stepped_back_ms = server.logged("the wall clock stepped back", "stepped_back_ms=");
    eprintln!("figure: wall clock +1h seen as {absent_ms} ms absent; -1d seen as a {stepped_back_ms} ms step back");

    let before = sink_counts(&sink);
    collected_more("every producer collected after both steps", std::slice::from_ref(&sink), &before, 3).await;
    let stored = all_producers(&url).await;
    assert_eq!(stored.len(), 3, "no lease lapsed: {stored:?}");
    assert!(stored.values().all(|c| *c == collector_id), "nothing moved: {stored:?}");
    let (smallest, polls) = watcher.finish().await;
    assert_eq!(smallest, 3, "a live producer left the collector's set ({polls} polls)");
    assignment_unchanged(&applied_before, &status(&status_addr).await);
    assert!(!server.stderr().contains("lease lapsed"), "no lease lapsed:\n{}", server.stderr());
}
