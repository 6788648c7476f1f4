//! Tests against the real `roster-server` binary: signals, its data directory's lock, and grpcurl 1.8.6 (a gRPC
//! peer that is not ours) driving the server over reflection only, with no proto files.
//!
//! grpcurl comes from `scripts/test`, which installs it into `.tools/`; without it these tests fail with a message
//! saying so (they never skip).

// Test helpers: a panic here is the test failing, with its message; figures go to stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    io::Read as _,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{Proc, WAIT, grpcurl, register_many, run_grpcurl, start_collector, start_server, wait_for, wait_status};
use roster::{pb, transport::ClientOptions};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn sigterm_ends_a_live_watch_with_unavailable_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), None);
    let channel = ClientOptions::default().connect(&format!("http://{addr}").parse().unwrap()).await.unwrap();
    let mut feed = pb::assignment_feed_client::AssignmentFeedClient::new(channel);
    let request = pb::WatchRequest { collector_id: Uuid::new_v4().to_string(), ..Default::default() };
    let mut stream = feed.watch(request).await.unwrap().into_inner();
    let first = tokio::time::timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first.frame, Some(pb::watch_response::Frame::Chunk(ref c)) if c.complete), "{first:?}");

    let signalled = Instant::now();
    server.signal("-TERM");
    let status =
        tokio::time::timeout(WAIT, stream.message()).await.unwrap().expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    let (status, log) = tokio::task::spawn_blocking(move || (server.wait_exit(), server.stderr())).await.unwrap();
    assert_eq!(status.code(), Some(0), "exit code; log:\n{log}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "exits within the drain limit");
    assert!(log.contains("SIGTERM received"), "{log}");
}

/// Load balancers and supervisors watch health: on SIGTERM it turns NOT_SERVING, then the watch ends and the
/// server exits without waiting for its drain limit.
#[tokio::test]
async fn sigterm_turns_health_not_serving_before_the_server_exits() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), None);
    let channel = ClientOptions::default().connect(&format!("http://{addr}").parse().unwrap()).await.unwrap();
    let mut health = HealthClient::new(channel);
    let request = HealthCheckRequest { service: "roster.v1.AssignmentFeed".into() };
    let mut statuses = health.watch(request).await.unwrap().into_inner();
    let first = tokio::time::timeout(WAIT, statuses.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let signalled = Instant::now();
    server.signal("-TERM");
    let next = match tokio::time::timeout(WAIT, statuses.message()).await.unwrap() {
        Ok(Some(next)) => next,
        // Say what the server did, so that a failure here can be told apart from the server dying of the signal.
        other => {
            let (exit, log) = tokio::task::spawn_blocking(move || (server.wait_exit(), server.stderr())).await.unwrap();
            panic!("a status before the stream ends, got {other:?}; the server exited with {exit}; its log:\n{log}");
        }
    };
    assert_eq!(next.status(), ServingStatus::NotServing, "{next:?}");
    // Then the watch ends, so it does not hold the shutdown until the drain limit.
    let end = tokio::time::timeout(WAIT, statuses.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "the health watch ends cleanly: {end:?}");
    let (exit, log) = tokio::task::spawn_blocking(move || (server.wait_exit(), server.stderr())).await.unwrap();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(!log.contains("drain limit reached"), "an open health watch held the shutdown:\n{log}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "exits before the drain limit: {:?}", signalled.elapsed());
}

/// SIGHUP is how daemons are reloaded (`systemctl reload`, a configuration tool after it changed a file): it stops
/// neither the server nor the collector, with TLS or without. Before, without TLS files nothing listened for it, and
/// its default action killed both on the spot, with no drain and no flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_neither_the_server_nor_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (mut collector, status_addr, _) = start_collector(&url, &dir.path().join("collector"));
    wait_status(&status_addr, "the collector follows the feed", |s| s.connected).await;

    for process in [&server, &collector] {
        process.signal("-HUP");
    }
    wait_for("both logged SIGHUP", || {
        server.stderr().contains("SIGHUP received") && collector.stderr().contains("SIGHUP received")
    })
    .await;
    // Both still serve: a producer registered now reaches the collector.
    register_many(&url, 1).await;
    wait_status(&status_addr, "the producer registered after SIGHUP applied", |s| s.applied_producer_count == 1).await;

    for process in [&mut server, &mut collector] {
        process.signal("-TERM");
        let status = process.wait_exit();
        assert!(status.success(), "exit {status} on SIGTERM after SIGHUP:\n{}", process.stderr());
    }
}

/// Two servers on one SQLite store would each decide on their own memory and overwrite the other's rows (each showed
/// the other's collectors in grace, and reported the fleet converged on sets nobody collected). The second is
/// refused at start, naming the process that holds the store and the fix; once the first is gone, it starts.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (mut first, _) = start_server(&data, None);
    let data_text = data.display().to_string();
    let mut second = Proc::start("roster-server", &["--listen", "127.0.0.1:0", "--data-dir", &data_text]);
    let status = second.wait_exit();
    let log = second.stderr();
    eprintln!("figure: a second server on the same data directory: {status}: {}", log.lines().last().unwrap_or(""));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("the store in {data_text} is in use by another roster-server")), "{log}");
    assert!(log.contains(&format!("process {} holds", first.child.id())), "names the first server: {log}");
    assert!(!log.contains("roster-server serving"), "{log}");

    first.signal("-TERM");
    assert!(first.wait_exit().success());
    let (_again, _) = start_server(&data, None);
}

#[test]
fn grpcurl_lists_checks_health_registers_lists_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(dir.path(), None);

    let services = run_grpcurl(&addr, &[], &["list"]);
    for service in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "roster.v1.AssignmentFeed",
        "roster.v1.Registry",
    ] {
        assert!(services.lines().any(|l| l == service), "{service} missing from:\n{services}");
    }
    assert!(!services.contains("roster.v1.Producer\n"), "the server does not serve Producer:\n{services}");

    let described = run_grpcurl(&addr, &[], &["describe", "roster.v1.Registry"]);
    assert!(described.contains("rpc RegisterProducer"), "{described}");

    let health = run_grpcurl(&addr, &[], &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("\"SERVING\""), "{health}");

    let producer = Uuid::new_v4();
    let body = format!(
        r#"{{"producer_id":"{producer}","address":"127.0.0.1:9100","interval_ms":1000,"labels":{{"job":"demo"}}}}"#
    );
    let registered = run_grpcurl(&addr, &["-d", &body], &["roster.v1.Registry/RegisterProducer"]);
    assert!(registered.contains("\"created\": true"), "{registered}");

    let listed = run_grpcurl(&addr, &[], &["roster.v1.Registry/ListProducers"]);
    assert!(listed.contains(&producer.to_string()) && listed.contains("\"totalCount\": \"1\""), "{listed}");

    // A bad request gets INVALID_ARGUMENT naming the field.
    let output = Command::new(grpcurl())
        .args([
            "-plaintext",
            "-max-time",
            "20",
            "-d",
            r#"{"producer_id":"nope"}"#,
            &addr,
            "roster.v1.Registry/RegisterProducer",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("InvalidArgument") && stderr.contains("producer_id"),
        "{stderr}"
    );

    // Watch: read the stream until the complete chunk, then stop grpcurl.
    let collector = Uuid::new_v4();
    let mut child = Command::new(grpcurl())
        .args(["-plaintext", "-max-time", "20", "-d"])
        .arg(format!(r#"{{"collector_id":"{collector}"}}"#))
        .args([&addr, "roster.v1.AssignmentFeed/Watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("\"complete\": true") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(WAIT).expect("grpcurl prints the snapshot");
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains(&producer.to_string()) && seen.contains("\"complete\": true"), "{seen}");
    assert!(seen.contains("\"generation\""), "{seen}");
}
