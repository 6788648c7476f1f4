//! The collector never shrinks on a partial answer: fault tests with a real roster-server, real producers and a
//! real collector in this process, talking over loopback through a fault-injecting proxy. The follower's own
//! promises under faults (a report that gave up is sent again, C4; the backoff resets only after a stream that
//! stayed up, R4) are tested through a scripted feed in front of the real server.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use common::*;
use roster::{
    backoff::BackoffPolicy,
    domain::{Collection, CollectorId, Labels, ProducerAddress, ProducerId, Target},
    follower::{Follower, FollowerConfig, FollowerHandle, assembler::Snapshot, state_file},
    pb,
};
use roster_server::clock::ManualClock;
use tokio_util::sync::CancellationToken;

fn server_config(dir: &std::path::Path) -> roster_server::Config {
    let mut config = roster_server::Config::new(dir);
    config.sweep_interval = Duration::from_millis(20);
    config
}

/// Waits until every producer in `before` was collected at least twice more.
async fn collected_on(collector: &TestCollector, before: &pb::GetStatusResponse) -> pb::GetStatusResponse {
    let base = collections(before);
    collector
        .wait_until("every producer of the set collected again", |s| {
            let now = collections(s);
            base.iter().all(|(id, n)| now.get(id).is_some_and(|m| *m >= n + 2))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_cut_off_midway_is_discarded_and_the_old_set_is_still_collected() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(&dir.path().join("server"))).await;
    let producer = TestProducer::start().await;
    let proxy = FaultProxy::start(server.addr).await;
    let collector = TestCollector::start(collector_config(vec![proxy.url()], &dir.path().join("collector"))).await;

    let registry = server.registry().await;
    register_all(&registry, (0..50).map(|_| producer_at(producer.addr, 200)).collect(), 8).await;
    let old = collector
        .wait_until("the first 50 applied", |s| s.applied_producer_count == 50 && s.producers.len() == 50)
        .await;

    // The collector is cut off while 10 000 producers register, so its next snapshot is the whole 10 050 (about
    // 1 MB); from then on every feed connection is cut after 64 KiB, far into that snapshot.
    proxy.set(Mode::Reset);
    proxy.break_all();
    register_all(&registry, (0..10_000).map(|_| producer_at(producer.addr, 3_600_000)).collect(), 64).await;
    proxy.set(Mode::CutAfter(64 * 1024));
    let cut = collector
        .wait_until("several cut snapshots discarded", |s| s.discards.get("stream_ended").copied().unwrap_or(0) >= 3)
        .await;
    assert_eq!(cut.applied_generation, old.applied_generation, "the partial snapshots were not applied");
    assert_eq!(cut.applied_producer_count, 50);
    assert_eq!(cut.producers.len(), 50, "the old set's tasks all run");
    collected_on(&collector, &cut).await;

    // Once the network heals, the whole snapshot arrives and applies.
    proxy.set(Mode::Forward);
    proxy.break_all();
    collector.wait_until("the full 10 050 applied", |s| s.applied_producer_count == 10_050).await;
    collector.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_restarted_while_the_server_is_down_resumes_its_persisted_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(&dir.path().join("server"))).await;
    let producer = TestProducer::start().await;
    let config = collector_config(vec![server.url()], &dir.path().join("collector"));
    let collector = TestCollector::start(config.clone()).await;
    let registry = server.registry().await;
    register_all(&registry, (0..5).map(|_| producer_at(producer.addr, 200)).collect(), 5).await;
    let applied = collector.wait_until("5 applied", |s| s.applied_producer_count == 5).await;
    collector.stop().await;
    server.stop().await;

    // The server stays down; the collector comes back and collects what it had, at once.
    let collector = TestCollector::start(config).await;
    let resumed = collector.status().await;
    assert!(!resumed.connected);
    assert_eq!(
        (resumed.applied_epoch.clone(), resumed.applied_generation),
        (applied.applied_epoch.clone(), applied.applied_generation)
    );
    assert_eq!(resumed.producers.len(), 5);
    let later = collected_on(&collector, &resumed).await;
    assert!(!later.connected && later.reconnects > 0, "still no server: {later:?}");
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_producer_of_a_thousand_restarts_only_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(&dir.path().join("server"))).await;
    let producer = TestProducer::start().await;
    let collector = TestCollector::start(collector_config(vec![server.url()], &dir.path().join("collector"))).await;
    let registry = server.registry().await;
    let requests: Vec<_> = (0..1000).map(|_| producer_at(producer.addr, 3_600_000)).collect();
    register_all(&registry, requests.clone(), 32).await;
    let before =
        collector.wait_until("1000 applied", |s| s.applied_producer_count == 1000 && s.producers.len() == 1000).await;

    let mut changed = requests[500].clone();
    changed.labels.insert("zone".into(), "b".into());
    registry.clone().register_producer(changed.clone()).await.unwrap();
    let incarnation = |s: &pb::GetStatusResponse| -> std::collections::BTreeMap<String, u64> {
        s.producers.iter().map(|p| (p.id.clone(), p.task_incarnation)).collect()
    };
    let old = incarnation(&before);
    // Applying the change and restarting its task are two steps: wait for the second, then look at every task.
    let after = collector
        .wait_until("the changed producer's task restarted", |s| {
            s.applied_generation > before.applied_generation
                && s.producers.len() == 1000
                && incarnation(s).get(&changed.producer_id) != old.get(&changed.producer_id)
        })
        .await;
    let new = incarnation(&after);
    let restarted: Vec<_> = old.keys().filter(|id| old[*id] != new[*id]).collect();
    assert_eq!(restarted, vec![&changed.producer_id], "only the changed producer's task restarted");
    collector.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_detected_by_keepalive_and_the_next_endpoint_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(&dir.path().join("server"))).await;
    let proxy = FaultProxy::start(server.addr).await;
    let mut config = FollowerConfig::new(
        vec![proxy.url().parse().unwrap(), server.url().parse().unwrap()],
        CollectorId::new_random(),
    );
    config.keepalive_interval = Duration::from_millis(500);
    config.keepalive_timeout = Duration::from_millis(500);
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        cap: Duration::from_millis(500),
        jitter: 0.5,
        max_attempts: None,
    };
    let (follower, handle) = Follower::new(config).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(stop.clone()));
    let stats = || std::future::ready(handle.stats.snapshot());
    let proxy_url = proxy.url();
    wait_until("connected through the proxy", stats, |s| {
        s.connected && s.endpoint == proxy_url && s.last_contact_ms > 0
    })
    .await;

    proxy.set(Mode::Silent);
    let silenced = std::time::Instant::now();
    let server_url = server.url();
    wait_until("moved to the next endpoint", stats, |s| s.connected && s.endpoint == server_url).await;
    let detected = silenced.elapsed();
    assert!(detected < Duration::from_secs(10), "half-open connection detected after {detected:?}");
    assert!(handle.applied.borrow().is_some(), "a snapshot is in force");
    stop.cancel();
    task.await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_store_does_not_make_the_collector_drop_its_set() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = || {
        let mut config = server_config(&dir.path().join("server"));
        config.clock = clock.clone();
        config.lease = Duration::from_secs(40); // Renew every 10 s: the new store settles 10 s after it starts.
        config.settle = Duration::from_secs(10);
        // The clock jumps below stand for time passing while the server serves, not for its absence.
        config.absence_threshold = Duration::from_secs(365 * 86_400);
        config
    };
    let server = TestServer::start(config()).await;
    let producer = TestProducer::start().await;
    let collector = TestCollector::start(collector_config(vec![server.url()], &dir.path().join("collector"))).await;
    let requests: Vec<_> = (0..3).map(|_| producer_at(producer.addr, 200)).collect();
    register_all(&server.registry().await, requests.clone(), 3).await;
    let before = collector.wait_until("3 applied", |s| s.applied_producer_count == 3).await;

    // The store is wiped: the server comes back on the same address with a new epoch and no producers.
    let addr = server.addr;
    server.stop().await;
    std::fs::remove_dir_all(dir.path().join("server")).unwrap();
    let server = TestServer::start_on(addr, config()).await;
    let held = collector
        .wait_until("the new epoch's empty snapshot applied, carrying the old set", |s| {
            s.applied_epoch != before.applied_epoch
        })
        .await;
    assert!(held.held_reason.contains("keeping 3 producers"), "{held:?}");
    assert_eq!(held.applied_producer_count, 3, "the old set stays in force");
    assert!(held.discards.is_empty(), "{:?}", held.discards);
    collected_on(&collector, &held).await;

    // Two of the three producers re-register, and a new one registers: collected at once, the third is carried.
    let new = producer_at(producer.addr, 200);
    register_all(&server.registry().await, vec![requests[0].clone(), requests[1].clone(), new], 3).await;
    let grown = collector.wait_until("the new producer applied", |s| s.applied_producer_count == 4).await;
    assert!(grown.held_reason.contains("keeping 1 producers"), "{grown:?}");
    // Once the store settles, its word is final.
    clock.advance(Duration::from_secs(11));
    let settled = collector
        .wait_until("the settled new epoch applied", |s| s.held_reason.is_empty() && s.applied_producer_count == 3)
        .await;
    assert!(settled.held_reason.is_empty());
    collector.stop().await;
    server.stop().await;
}

/// R4 over a long outage, in paused time: the follower keeps its set, and no reconnect delay exceeds the cap.
#[tokio::test(start_paused = true)]
async fn during_a_long_outage_the_set_stays_and_delays_respect_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("snapshot.bin");
    let target = Target {
        id: ProducerId::new_random(),
        address: ProducerAddress::parse_field("address", "127.0.0.1:9").unwrap(),
        interval: Duration::from_secs(1),
        labels: Labels::default(),
        collection: Collection::Grpc,
    };
    let snapshot = Snapshot {
        epoch: uuid::Uuid::new_v4(),
        generation: 3,
        targets: vec![target],
        settling: false,
        carried: vec![],
    };
    state_file::save(&state, &snapshot, 1).unwrap();
    // Nothing listens here.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut config = FollowerConfig::new(vec![format!("http://{dead}").parse().unwrap()], CollectorId::new_random());
    config.state_file = Some(state);
    let (follower, handle) = Follower::new(config).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    let stats = handle.stats.snapshot();
    // At most 35 s per cycle (a 5 s connect timeout plus a delay of at most 30 s): at least 51 attempts.
    assert!(stats.reconnects >= 40, "kept trying for 30 minutes: {} attempts", stats.reconnects);
    assert!(stats.recent_delays.iter().all(|d| *d <= BackoffPolicy::FEED.cap), "{:?}", stats.recent_delays);
    assert!(stats.recent_delays.iter().any(|d| *d >= BackoffPolicy::FEED.cap / 2), "backoff grew to the cap");
    assert_eq!(handle.applied.borrow().as_deref(), Some(&snapshot), "the last known set is still in force");
    stop.cancel();
    task.await.unwrap();
}

/// A follower on `feed` (a scripted feed, maybe behind a proxy) with a state file in `dir` and the given backoff.
fn follow(feed: String, dir: &std::path::Path, backoff: BackoffPolicy) -> (FollowerHandle, CancellationToken) {
    let mut config = FollowerConfig::new(vec![feed.parse().unwrap()], CollectorId::new_random());
    config.state_file = Some(dir.join("snapshot.bin"));
    config.backoff = backoff;
    let (follower, handle) = Follower::new(config).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(follower.run(stop.clone()));
    (handle, stop)
}

/// What the server shows of the only collector it knows.
async fn the_collector(server: &TestServer) -> pb::CollectorInfo {
    let listed = server.registry().await.list_collectors(pb::ListCollectorsRequest::default()).await.unwrap();
    let mut collectors = listed.into_inner().collectors;
    assert_eq!(collectors.len(), 1, "{collectors:?}");
    collectors.remove(0)
}

/// C4: a report that fails after all its attempts is sent again, on the next stream (`heartbeat` long) or at the
/// next heartbeat of the open one (`heartbeat` short), so the server learns that the collector converged without
/// waiting for its next change. Before, the follower counted it as sent: the server, already at that generation,
/// answered the next `Watch` "in sync" and the collector showed unconverged until its assignment changed.
async fn a_report_that_gave_up_is_sent_again(heartbeat: Duration, new_stream: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(&dir.path().join("server"));
    config.heartbeat = heartbeat;
    let server = TestServer::start(config).await;
    let (feed, script) = ScriptedFeed::start(&server).await;
    let proxy = FaultProxy::start(feed).await;
    script.fail_reports.store(true, Ordering::SeqCst);
    let (handle, stop) = follow(proxy.url(), dir.path(), BackoffPolicy::UNARY);

    // The first snapshot (no producer yet) applies and is saved; every attempt at reporting it fails.
    wait_for("the first snapshot applied and its report given up", || {
        handle.applied.borrow().is_some() && handle.stats.snapshot().report_failures >= 1
    })
    .await;
    let generation = handle.applied.borrow().as_ref().unwrap().generation;
    let before = the_collector(&server).await;
    assert_eq!(before.generation, generation);
    assert!(!before.converged, "the server has no report yet: {before:?}");
    assert!(script.reports_failed.load(Ordering::SeqCst) >= 5, "every attempt failed");

    script.fail_reports.store(false, Ordering::SeqCst);
    if new_stream {
        // The server answers the new stream "in sync": only the follower can know the report is missing.
        proxy.break_all();
    }
    let converged =
        wait_until("the server has the report", || the_collector(&server), |c| c.reported_generation == generation)
            .await;
    assert!(converged.converged, "{converged:?}");
    assert_eq!(handle.applied.borrow().as_ref().unwrap().generation, generation, "no change was needed for it");
    stop.cancel();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_gave_up_is_sent_again_on_the_next_stream() {
    a_report_that_gave_up_is_sent_again(Duration::from_secs(3600), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_gave_up_is_sent_again_at_the_next_heartbeat() {
    a_report_that_gave_up_is_sent_again(Duration::from_millis(200), false).await;
}

/// R4: the backoff starts again only after a stream that delivered a frame and then stayed up (for the cap). A
/// feed that ends every stream right after its first frame (a crash loop, a broken proxy) sees the delays grow to
/// the cap; before, each of those streams reset them, and every collector came back every 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_after_one_frame_do_not_reset_the_backoff_and_one_that_stays_up_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(&dir.path().join("server"))).await;
    let (feed, script) = ScriptedFeed::start(&server).await;
    let proxy = FaultProxy::start(feed).await;
    script.one_frame_streams.store(true, Ordering::SeqCst);
    let policy = BackoffPolicy {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(300),
        jitter: 0.0,
        max_attempts: None,
    };
    let (handle, stop) = follow(proxy.url(), dir.path(), policy);

    let grown = wait_until(
        "the delays grown to the cap while every stream ends after its first frame",
        || async { handle.stats.snapshot() },
        |s| s.recent_delays.contains(&policy.cap),
    )
    .await;
    assert!(grown.applied_at_ms > 0, "the streams did deliver: a snapshot applied");
    assert!(grown.recent_delays.iter().all(|d| *d <= policy.cap), "{:?}", grown.recent_delays);

    // A stream that stays up, for longer than the cap, then drops: the next delay is the first one again.
    script.one_frame_streams.store(false, Ordering::SeqCst);
    let up = wait_until(
        "a stream up for twice the cap",
        || async { handle.stats.snapshot() },
        |s| s.connected && roster::follower::now_ms().saturating_sub(s.connected_changed_at_ms) > 600,
    )
    .await;
    proxy.break_all();
    let after = wait_until(
        "the reconnect after the stream that stayed up",
        || async { handle.stats.snapshot() },
        |s| s.reconnects > up.reconnects,
    )
    .await;
    assert_eq!(after.recent_delays.last(), Some(&policy.initial), "{:?}", after.recent_delays);
    stop.cancel();
    server.stop().await;
}

/// Copies the files of `from` (a stopped server's data directory) into `to`, made anew.
fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Registers a producer that is never due; returns its id.
async fn register_one(server: &TestServer) -> ProducerId {
    let request = producer_at("127.0.0.1:9".parse().unwrap(), 3_600_000);
    let id = request.producer_id.parse().unwrap();
    register_all(&server.registry().await, vec![request], 1).await;
    id
}

/// The ids of the producers in force in a follower.
fn applied_ids(handle: &FollowerHandle) -> Vec<ProducerId> {
    handle.applied.borrow().as_ref().map(|s| s.targets.iter().map(|t| t.id).collect()).unwrap_or_default()
}

/// A store restored from a backup older than the collector's snapshot, where a change then lands on the collector
/// before it comes back, makes the collector's generation again with other producers. The collector's `Watch` says
/// what it holds (`known_digest`), so the server moves it to a new generation and sends it the set, rather than
/// "in sync": before, it kept the set it had, and a producer registered since went uncollected until its next
/// change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_a_collector_holding_another_set_under_its_generation_is_sent_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backup) = (dir.path().join("server"), dir.path().join("backup"));
    let server = TestServer::start(server_config(&store)).await;
    let addr = server.addr;
    let proxy = FaultProxy::start(addr).await;
    let policy = BackoffPolicy { initial: Duration::from_millis(20), ..BackoffPolicy::FEED };
    let policy = BackoffPolicy { cap: Duration::from_millis(300), ..policy };
    let (handle, stop) = follow(proxy.url(), &dir.path().join("collector"), policy);

    let first = register_one(&server).await;
    wait_for("the first producer applied", || applied_ids(&handle) == vec![first]).await;
    server.stop().await;
    copy_store(&store, &backup);
    let server = TestServer::start_on(addr, server_config(&store)).await;
    let second = register_one(&server).await;
    wait_for("the second producer applied", || applied_ids(&handle).len() == 2).await;
    let held = handle.applied.borrow().as_ref().unwrap().generation;

    // The collector is cut off; the store is restored from the backup, and a producer registered lands on it.
    proxy.set(Mode::Refuse);
    proxy.break_all();
    server.stop().await;
    copy_store(&backup, &store);
    let server = TestServer::start_on(addr, server_config(&store)).await;
    let third = register_one(&server).await;
    assert_eq!(the_collector(&server).await.generation, held, "the restored store made the generation again");

    proxy.set(Mode::Forward);
    let mut expected = vec![first, third];
    expected.sort();
    wait_for("the restored store's set applied", || applied_ids(&handle) == expected).await;
    assert!(!applied_ids(&handle).contains(&second));
    assert!(handle.applied.borrow().as_ref().unwrap().generation > held, "a new generation");
    stop.cancel();
    server.stop().await;
}

#[tokio::test]
async fn a_damaged_state_file_stops_the_collector_with_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = CollectorId::new_random();
    let mut config = collector_config(vec!["http://127.0.0.1:9".into()], dir.path());
    config.id = Some(id);
    std::fs::write(config.state_file(id), b"ROSTER-SNAPSHOT1 but then garbage").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = roster_collector::run(listener, config.clone(), std::future::pending()).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&config.state_file(id).display().to_string()), "{message}");
    assert!(message.contains("damaged") && message.contains("move the file away"), "{message}");
}
