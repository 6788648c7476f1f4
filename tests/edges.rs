//! The edges of the core promise (issue 10's red-team findings), each against the real binaries: what a hostile
//! or unlucky client sends must never leave a live producer uncollected.
//!
//! - A store wiped while a collector holds producers with long leases (10 minutes: renewed every 150 s): before
//!   the fix the new store "settled" one renewal interval of the server's *default* lease after it was created, and
//!   the collector dropped every producer that had not renewed by then. Now a new store settles after
//!   `--settle-period` of serving time (6 h by default, covering the longest lease allowed), the collector keeps
//!   the old set meanwhile and collects producers registered with the new store at once, and when the store
//!   settles the producers that never came back are dropped.
//! - A `Watch` claiming `known_generation = 2^64 - 1` for a live collector is refused; before the fix it made the
//!   server jump the collector's generation to the top and wrap to 0 on the next change, and the real collector
//!   silently ignored every later generation.
//! - A collector whose id rejected the current generation, restarted with no snapshot (a wiped data directory),
//!   gets the current snapshot; before the fix the server held it back by id alone, and the collector collected
//!   nothing until the next change.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{
    Proc, SetWatcher, never_due, register_many, registry, start_collector, start_server, wait_reported, wait_status,
};
use roster::pb::{
    ApplyOutcome, ReportAppliedRequest, WatchRequest, assignment_feed_client::AssignmentFeedClient,
    watch_response::Frame,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_claiming_the_largest_generation_is_refused_and_the_collector_keeps_following() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_collector, status_addr, collector_id) = start_collector(&url, &dir.path().join("c"));
    register_many(&url, 2).await;
    let before = wait_status(&status_addr, "2 producers applied", |s| s.applied_producer_count == 2).await;

    // A hostile client claims the collector's id with the largest generation there is.
    let mut feed = AssignmentFeedClient::connect(url.clone()).await.unwrap();
    for claim in [u64::MAX, roster::domain::MAX_GENERATION + 1] {
        let refused = feed
            .watch(WatchRequest {
                collector_id: collector_id.clone(),
                known_epoch: before.applied_epoch.clone(),
                known_generation: claim,
                observe_only: false,
                ..Default::default()
            })
            .await
            .expect_err("a claim beyond any generation a server makes is refused");
        eprintln!("figure: Watch claiming {claim}: {:?}: {}", refused.code(), refused.message());
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().starts_with("known_generation: "), "names the field: {}", refused.message());
    }
    // The largest claim that is allowed is believed (a store restored from an older backup) and leaves room to
    // count up: the real collector still applies what comes next.
    let mut stream = feed
        .watch(WatchRequest {
            collector_id: collector_id.clone(),
            known_epoch: before.applied_epoch.clone(),
            known_generation: roster::domain::MAX_GENERATION,
            observe_only: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().and_then(|m| m.frame);
    assert!(matches!(first, Some(Frame::Chunk(_))), "the jumped generation is sent: {first:?}");
    drop(stream);

    register_many(&url, 1).await;
    let after = wait_status(&status_addr, "the third producer applied", |s| s.applied_producer_count == 3).await;
    assert!(after.applied_generation > roster::domain::MAX_GENERATION, "{after:?}");
    assert!(after.discards.is_empty(), "nothing was discarded: {:?}", after.discards);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_with_no_snapshot_gets_the_current_one_even_if_its_id_rejected_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let data = dir.path().join("c");
    let (mut collector, status_addr, collector_id) = start_collector(&url, &data);
    register_many(&url, 3).await;
    let applied = wait_status(&status_addr, "3 producers applied", |s| s.applied_producer_count == 3).await;
    wait_reported(&url, &collector_id, applied.applied_generation).await;

    // The id's current generation is on record as rejected (C4), as a collector that could not take it reports.
    collector.kill9();
    let mut feed = AssignmentFeedClient::connect(url.clone()).await.unwrap();
    let current = feed
        .report_applied(ReportAppliedRequest {
            collector_id: collector_id.clone(),
            epoch: applied.applied_epoch.clone(),
            generation: applied.applied_generation,
            outcome: ApplyOutcome::Rejected.into(),
            reason: "test: rejected on purpose".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .current;
    assert!(current, "the rejection is about the current generation");
    let listed = registry(&url).await.list_collectors(roster::pb::ListCollectorsRequest {}).await.unwrap();
    let record = listed.into_inner().collectors.into_iter().find(|c| c.id == collector_id).unwrap();
    assert_eq!(record.reported_outcome, i32::from(ApplyOutcome::Rejected));

    // Its data directory loses the snapshot (the id stays): it has nothing in force and must be given the set.
    std::fs::remove_file(data.join(format!("snapshot-{collector_id}.bin"))).unwrap();
    let restarted = Instant::now();
    let (_collector, status_addr, same_id) = start_collector(&url, &data);
    assert_eq!(same_id, collector_id);
    let status = wait_status(&status_addr, "the current snapshot applied", |s| s.applied_producer_count == 3).await;
    eprintln!("figure: snapshot applied {:?} after the restart with no snapshot", restarted.elapsed());
    assert_eq!(status.applied_generation, applied.applied_generation, "the current generation, not a newer one");
}

fn server_on(dir: &std::path::Path, listen: &str, extra: &[&str]) -> Proc {
    let dir = dir.display().to_string();
    let mut args = vec!["--listen", listen, "--data-dir", &dir, "--lease", "40s"];
    args.extend_from_slice(extra);
    let server = Proc::start("roster-server", &args);
    server.logged("roster-server serving", "listen=");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_drops_no_producer_with_a_long_lease_until_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, addr) = start_server(&server_dir, None);
    let url = format!("http://{addr}");
    let (_collector, status_addr, _) = start_collector(&url, &dir.path().join("c"));
    // Two producers on 10-minute leases: they renew every 150 s, long after the old settling time.
    let long_lease = || roster::pb::RegisterProducerRequest { lease_ms: Some(600_000), ..never_due() };
    for request in [long_lease(), long_lease()] {
        registry(&url).await.register_producer(request).await.unwrap();
    }
    let before = wait_status(&status_addr, "2 producers applied", |s| s.applied_producer_count == 2).await;

    // The store is wiped; the server comes back on the same address, on its default 6 h settle period, with a
    // default lease of 40 s (the old rule settled it 10 s after it was created).
    server.kill9();
    std::fs::remove_dir_all(&server_dir).unwrap();
    let server = server_on(&server_dir, &addr, &[]);
    let restarted = Instant::now();
    registry(&url).await.register_producer(long_lease()).await.unwrap();
    let grown = wait_status(&status_addr, "the new store's producer collected with the old two", |s| {
        s.applied_epoch != before.applied_epoch && s.applied_producer_count == 3
    })
    .await;
    eprintln!("figure: new producer applied {:?} after the wipe; held: {}", restarted.elapsed(), grown.held_reason);
    assert!(grown.held_reason.contains("keeping 2 producers"), "{grown:?}");

    // Watch the set past the old settling time (10 s after the new store was created), and then some.
    let watcher = SetWatcher::start(&status_addr);
    while restarted.elapsed() < std::time::Duration::from_secs(14) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (smallest, polls) = watcher.finish().await;
    assert_eq!(smallest, 3, "a producer with a long lease was dropped before the store settled ({polls} polls)");
    assert!(!server.stderr().contains("store settled"), "{}", server.stderr());
    drop(server);

    // The bound: restarted with a 10 s settle period (the store has not settled, so it settles 10 s after this
    // start), the producers that never registered with the new store are dropped once it settles.
    let server = server_on(&server_dir, &addr, &["--settle-period", "10s"]);
    let settled = wait_status(&status_addr, "the settled store's set applied", |s| {
        s.held_reason.is_empty() && s.applied_producer_count == 1
    })
    .await;
    server.logged("store settled", "epoch=");
    assert_eq!(settled.applied_epoch, grown.applied_epoch);
    assert!(settled.discards.is_empty(), "{:?}", settled.discards);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_period_shorter_than_a_renewal_interval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().display().to_string();
    let mut server = Proc::start(
        "roster-server",
        &["--listen", "127.0.0.1:0", "--data-dir", &dir, "--lease", "5m", "--settle-period", "1m"],
    );
    assert!(!server.wait_exit().success());
    let said = server.stderr();
    assert!(said.contains("--settle-period 1m is shorter than one renewal interval of --lease 5m (1m 15s)"), "{said}");
}
