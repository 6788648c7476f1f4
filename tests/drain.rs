//! SIGTERM of the server with 50 collector processes watching: the server ends every stream with UNAVAILABLE
//! and exits 0 within its drain limit; every collector keeps collecting meanwhile and is back in sync soon after
//! the server is started again.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{
    Proc, collected_more, registration, registry, samples, start_collector_with, start_server, status,
    wait_fleet_in_sync, wait_for,
};

const COLLECTORS: usize = 50;
const PRODUCERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_50_watch_streams_exits_zero_within_the_drain_and_collection_never_stops() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, listen) = start_server(&server_dir, None);
    let url = format!("http://{listen}");

    // One real producer endpoint, registered under 100 ids, each collected every 500 ms.
    let producer = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "500ms"]);
    let producer_addr = producer.logged("demo producer serving", "listen=");
    let mut client = registry(&url).await;
    for _ in 1..PRODUCERS {
        client.register_producer(registration(&producer_addr, 500)).await.unwrap();
    }

    let fast = ["--keepalive-interval", "1s", "--keepalive-timeout", "1s", "--reconnect-max-delay", "2s"];
    let mut fleet = Vec::new();
    for i in 0..COLLECTORS {
        fleet.push(start_collector_with(&url, &dir.path().join(format!("c{i}")), &fast));
    }
    let sinks: Vec<_> = (0..COLLECTORS).map(|i| dir.path().join(format!("c{i}/samples.jsonl"))).collect();
    wait_fleet_in_sync(&url, COLLECTORS, "the first sync").await;
    wait_for("samples from all 100 producers", || samples(&sinks).len() == PRODUCERS).await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for (_, addr, _) in &fleet {
            v.push(status(addr).await);
        }
        v
    };

    let signalled = Instant::now();
    server.signal("-TERM");
    let (exit, log) = tokio::task::spawn_blocking(move || (server.wait_exit(), server.stderr())).await.unwrap();
    let drained = signalled.elapsed();
    eprintln!("figure: SIGTERM with {COLLECTORS} streams: exited {exit:?} after {drained:?}");
    assert_eq!(exit.code(), Some(0), "exit code; log:\n{log}");
    assert!(drained < std::time::Duration::from_secs(10), "exits within its 10 s drain limit: {drained:?}");
    assert!(log.contains("SIGTERM received"), "{log}");

    let at_stop = samples(&sinks);
    collected_more("every producer collected 4 more times with the server gone", &sinks, &at_stop, 4).await;
    for ((_, addr, _), was) in fleet.iter().zip(&before) {
        let s = status(addr).await;
        assert!(!s.connected, "{s:?}");
        assert_eq!(
            (s.applied_generation, s.applied_producer_count),
            (was.applied_generation, was.applied_producer_count)
        );
    }

    let (_server, _) = start_server(&server_dir, Some(&listen));
    let back = wait_fleet_in_sync(&url, COLLECTORS, "after the restart").await;
    eprintln!("figure: SIGTERM with {COLLECTORS} streams: all back in sync {back:?} after the restart");
    for ((_, addr, _), was) in fleet.iter().zip(&before) {
        let s = status(addr).await;
        assert_eq!(s.applied_epoch, was.applied_epoch);
        assert_eq!(s.applied_generation, was.applied_generation, "nothing changed, nothing to apply");
        assert!(s.discards.is_empty(), "{:?}", s.discards);
    }
}

/// A collector stops promptly on SIGTERM even with a health watch open on its status API: the watcher gets
/// NOT_SERVING, then its stream ends.
#[tokio::test]
async fn a_collector_with_a_health_watch_open_stops_promptly_on_sigterm() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    let (mut collector, status_addr, _) = start_collector_with("http://127.0.0.1:1", dir.path(), &[]);
    let status_url = format!("http://{status_addr}").parse().unwrap();
    let channel = roster::transport::ClientOptions::default().connect(&status_url).await;
    let mut health = HealthClient::new(channel.unwrap());
    let mut statuses = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let first = tokio::time::timeout(common::WAIT, statuses.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let signalled = Instant::now();
    collector.signal("-TERM");
    let next = tokio::time::timeout(common::WAIT, statuses.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    let end = tokio::time::timeout(common::WAIT, statuses.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "the health watch ends cleanly: {end:?}");
    let (exit, log) = tokio::task::spawn_blocking(move || (collector.wait_exit(), collector.stderr())).await.unwrap();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(signalled.elapsed() < std::time::Duration::from_secs(10), "{:?}:\n{log}", signalled.elapsed());
    assert!(log.contains("roster-collector stopped"), "{log}");
}
