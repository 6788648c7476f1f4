//! TLS with real peers: roster-server, roster-collector, the demo producer and the CLI over TLS and mutual TLS,
//! grpcurl with `-cacert` and `-cert`/`-key`, a certificate rotated under a live Watch, bad files at start and on
//! reload, and the clear errors of a client whose scheme does not match the server's. Certificates are made by
//! each test (`roster_testkit::tls`), never checked in.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, time::Duration};

use common::{
    Proc, grpcurl_tls, roster, served_serial, start_server_with, tls_ca_flag, tls_flags, wait_for, wait_until,
};
use roster::{
    client::StatusClient,
    endpoint::ServerUrl,
    pb::{self, assignment_feed_client::AssignmentFeedClient, registry_client::RegistryClient},
    transport::ClientOptions,
};
use roster_testkit::{TlsSetup, Usage};

/// The test client certificate's identity: an operator (with --tls-ca the server authenticates callers by their
/// certificate's roster:// URI SAN, `roster::auth::certificate`).
const CLIENT_URI: &str = "roster://operator/test";

/// A roster-server serving TLS with the setup's server certificate; client certificates are verified against
/// the setup's CA, and required when `required`.
fn start_tls_server(dir: &Path, tls: &TlsSetup, required: bool) -> (Proc, String) {
    let mut flags = tls_flags(tls, false);
    if required {
        flags.push("--tls-client-cert-required".to_owned());
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_server_with(&dir.join("server"), None, &flags)
}

fn strings(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A client of `addr` over TLS, presenting the client certificate when `mutual`.
async fn tls_channel(addr: &str, tls: &TlsSetup, mutual: bool) -> tonic::transport::Channel {
    let options = ClientOptions { tls: Some(tls.client_files(mutual).load().unwrap()), ..ClientOptions::default() };
    let url = ServerUrl::parse(&format!("https://{addr}")).unwrap();
    options.connect(&url).await.unwrap()
}

#[test]
fn grpcurl_calls_a_mutual_tls_server_with_its_client_certificate_and_is_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let (_server, addr) = start_tls_server(dir.path(), &tls, true);

    let listed = grpcurl_tls(&addr, &tls, true, &["list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    for service in ["roster.v1.Registry", "roster.v1.AssignmentFeed", "grpc.health.v1.Health"] {
        assert!(String::from_utf8_lossy(&listed.stdout).lines().any(|l| l == service), "{}", text(&listed));
    }
    let called = grpcurl_tls(&addr, &tls, true, &["roster.v1.Registry/ListProducers"]);
    assert!(called.status.success(), "{}", text(&called));

    let refused = grpcurl_tls(&addr, &tls, false, &["list"]);
    assert!(!refused.status.success(), "no client certificate, no call: {}", text(&refused));
}

#[test]
fn grpcurl_reaches_reflection_and_health_over_tls_without_a_client_certificate_when_none_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    // Client certificates turn authentication on; --open-reflection lets a caller without one use reflection.
    let flags = [tls_flags(&tls, false), vec!["--open-reflection".to_owned()]].concat();
    let (_server, addr) = start_server_with(&dir.path().join("server"), None, &strings(&flags));
    let listed = grpcurl_tls(&addr, &tls, false, &["list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("roster.v1.Registry"), "{}", text(&listed));
    let health = grpcurl_tls(&addr, &tls, false, &["grpc.health.v1.Health/Check"]);
    assert!(String::from_utf8_lossy(&health.stdout).contains("SERVING"), "{}", text(&health));
    let mutual = grpcurl_tls(&addr, &tls, true, &["roster.v1.Registry/ListCollectors"]);
    assert!(mutual.status.success(), "a certificate presented is verified and accepted: {}", text(&mutual));
}

/// A collector, a demo producer and the CLI over mutual TLS, each caller named by its certificate's roster:// URI
/// SAN: the producer registers with its certificate (an operator's here) and serves `roster.v1.Producer` over TLS,
/// the collector follows its feed with its own certificate (naming its id) and calls the producer over TLS
/// (`--producer-tls`), and the CLI reads both the server and the collector's status API as the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_follows_a_tls_server_and_collects_a_tls_producer_and_the_cli_reads_both() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let (_server, addr) = start_tls_server(dir.path(), &tls, true);
    let url = format!("https://{addr}");
    let client_flags = tls_flags(&tls, true);

    let collector_dir = dir.path().join("collector");
    let collector_id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(&collector_dir).unwrap();
    std::fs::write(collector_dir.join("collector-id"), &collector_id).unwrap();
    let own = tls.ca.issue(Usage::Client, 101, &format!("roster://collector/{collector_id}")).write(dir.path(), "own");
    let collector_flags: Vec<String> = [("--tls-cert", &own.cert), ("--tls-key", &own.key), ("--tls-ca", &tls.ca_file)]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
        .chain(["--producer-tls".to_owned()])
        .collect();
    let (_collector, status_addr, _) = common::start_collector_with(&url, &collector_dir, &strings(&collector_flags));
    let producer_flags = [&["--server", url.as_str(), "--interval", "200ms"][..], &strings(&client_flags)].concat();
    let producer = Proc::start("roster-demo-producer", &producer_flags);
    assert_eq!(producer.logged("demo producer serving", "tls="), "\"on\"");

    let cli = |words: &[&str]| {
        let args = [&["--server", url.as_str()][..], &strings(&client_flags), &["--output", "json"], words].concat();
        roster(&args)
    };
    wait_for("the collector and the producer to reach the server over TLS", || {
        let collectors = cli(&["collectors", "list"]).stdout();
        let producers = cli(&["producers", "list"]).stdout();
        collectors.contains(&collector_id) && producers.contains("127.0.0.1")
    })
    .await;
    let status_url = format!("https://{status_addr}");
    let status = cli(&["status", "--collector", &status_url]);
    assert!(status.stdout().contains(&collector_id), "{}{}", status.stdout(), status.stderr());
    let sink = collector_dir.join("samples.jsonl");
    wait_for("samples in the sink", || common::sink_lines(&sink).iter().any(|l| l["name"] == "demo_up")).await;
}

/// The certificate is replaced on disk while a collector's Watch is open: a bad file first (logged, the old
/// certificate stays in force), then a good one. The open stream carries a new snapshot after both; a new
/// connection sees the new certificate's serial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_under_a_live_watch_keeps_the_stream_and_new_connections_see_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let (server, addr) = start_tls_server(dir.path(), &tls, true);
    assert_eq!(served_serial(&addr, &tls).await, 1);

    let channel = tls_channel(&addr, &tls, true).await;
    let collector = uuid::Uuid::new_v4().to_string();
    let request = pb::WatchRequest { collector_id: collector.clone(), ..Default::default() };
    let mut watch = AssignmentFeedClient::new(channel.clone()).watch(request).await.unwrap().into_inner();
    let mut registry = RegistryClient::new(channel);
    // Reads frames until a chunk of a snapshot holding `id` arrives on the open stream.
    async fn snapshot_with(watch: &mut tonic::Streaming<pb::WatchResponse>, id: &str) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let frame = watch.message().await.expect("the stream stays up").expect("the stream stays open");
                if let Some(pb::watch_response::Frame::Chunk(chunk)) = frame.frame
                    && chunk.producers.iter().any(|p| p.id == id)
                {
                    return;
                }
            }
        })
        .await
        .expect("a snapshot with the new producer on the open stream");
    }
    let register = |id: &str| pb::RegisterProducerRequest {
        producer_id: id.to_owned(),
        address: "127.0.0.1:9".to_owned(),
        interval_ms: 3_600_000,
        ..Default::default()
    };

    // A bad file: logged, and the old certificate stays in force.
    std::fs::write(&tls.server.cert, "not a certificate").unwrap();
    wait_for("the refused reload to be logged", || server.stderr().contains("TLS files not reloaded")).await;
    assert!(server.stderr().contains(&tls.server.cert.display().to_string()), "the log names the file");
    assert_eq!(served_serial(&addr, &tls).await, 1, "the old certificate stays in force");
    let first = uuid::Uuid::new_v4().to_string();
    registry.register_producer(register(&first)).await.unwrap();
    snapshot_with(&mut watch, &first).await;

    // A good one: in force for new connections, and the open stream goes on.
    tls.ca.issue(Usage::Server, 2, "").write(dir.path(), "server");
    wait_until("new connections to see serial 2", || served_serial(&addr, &tls), |serial| *serial == 2).await;
    assert!(server.stderr().contains("TLS certificate reloaded"), "{}", server.stderr());
    let second = uuid::Uuid::new_v4().to_string();
    registry.register_producer(register(&second)).await.unwrap();
    snapshot_with(&mut watch, &second).await;

    // SIGHUP reloads too (the files unchanged: the same serial, one more reload logged).
    let reloads = || server.stderr().matches("TLS certificate reloaded").count();
    let before = reloads();
    server.signal("-HUP");
    wait_for("SIGHUP to reload", || reloads() > before).await;
    assert_eq!(served_serial(&addr, &tls).await, 2);
}

/// A collector's client certificate is rotated on disk while its Watch is open, and its connection is then cut
/// (a proxy in between): first a bad file (logged once, naming it; the collector reconnects with the last good
/// certificate), then a certificate of a new CA that the server, reloading its client CA, now trusts alone. The
/// collector reconnects with it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_presents_its_rotated_client_certificate_when_it_reconnects_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    // The server's client CA in a file of its own, so that it can change alone.
    let clients_ca = dir.path().join("clients-ca.pem");
    std::fs::write(&clients_ca, &tls.ca.cert_pem).unwrap();
    let server_flags: Vec<String> =
        [("--tls-cert", &tls.server.cert), ("--tls-key", &tls.server.key), ("--tls-ca", &clients_ca)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .chain(["--tls-client-cert-required".to_owned()])
            .collect();
    let (server, addr) = start_server_with(&dir.path().join("server"), None, &strings(&server_flags));
    let proxy = roster_testkit::FaultProxy::start(addr.parse().unwrap()).await;

    let collector_dir = dir.path().join("collector");
    let collector_id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(&collector_dir).unwrap();
    std::fs::write(collector_dir.join("collector-id"), &collector_id).unwrap();
    let uri = format!("roster://collector/{collector_id}");
    let own = tls.ca.issue(Usage::Client, 101, &uri).write(dir.path(), "own");
    let collector_flags: Vec<String> = [("--tls-cert", &own.cert), ("--tls-key", &own.key), ("--tls-ca", &tls.ca_file)]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
        .collect();
    let url = format!("https://{}", proxy.addr);
    let (collector, _, _) = common::start_collector_with(&url, &collector_dir, &strings(&collector_flags));
    let opened = || collector.stderr().matches("feed stream open").count();
    wait_for("the collector's first Watch", || opened() == 1).await;

    // A bad certificate file: each reconnect keeps the last good files, and says so once.
    std::fs::write(&own.cert, "not a certificate").unwrap();
    let refused = || collector.stderr().matches("client TLS files not reloaded").count();
    for _ in 0..2 {
        let before = opened();
        proxy.break_all();
        wait_for("the collector back with its last good certificate", || opened() > before).await;
    }
    assert_eq!(refused(), 1, "logged once: {}", collector.stderr());
    assert!(collector.stderr().contains(&own.cert.display().to_string()), "the log names the file");

    // A certificate of a new CA, which the server now trusts alone: only a collector that reads it again gets in.
    let rotated = roster_testkit::TestCa::new("rotated CA");
    rotated.issue(Usage::Client, 102, &uri).write(dir.path(), "own");
    std::fs::write(&clients_ca, &rotated.cert_pem).unwrap();
    wait_for("the server to trust the new CA", || server.stderr().contains("TLS certificate reloaded")).await;
    let before = opened();
    proxy.break_all();
    wait_for("the collector back with its rotated certificate", || opened() > before).await;
    assert_eq!(refused(), 1, "the files load again: {}", collector.stderr());
    assert!(collector.stderr().contains("client TLS files usable again"), "{}", collector.stderr());
}

#[test]
fn a_server_with_an_expired_mismatched_or_missing_file_does_not_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let expired = tls.ca.issue_valid(Usage::Server, 3, "", Some((2000, 2001))).write(dir.path(), "expired");
    let other = tls.ca.issue(Usage::Server, 4, "").write(dir.path(), "other");
    let missing = dir.path().join("missing.pem");
    let server_dir = dir.path().join("server").display().to_string();
    for (cert, key, expected) in [
        (&expired.cert, &expired.key, format!("the certificate in {} expired on", expired.cert.display())),
        (
            &tls.server.cert,
            &other.key,
            format!("the private key in {} does not match the certificate in", other.key.display()),
        ),
        (&missing, &tls.server.key, format!("cannot read {}", missing.display())),
    ] {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let args = ["--listen", "127.0.0.1:0", "--data-dir", &server_dir, "--tls-cert", &cert, "--tls-key", &key];
        let mut server = Proc::start("roster-server", &args);
        assert!(!server.wait_exit().success());
        assert!(server.stderr().contains(&expected), "{expected:?} in:\n{}", server.stderr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_scheme_does_not_match_the_server_gets_a_clear_error_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let (_tls_server, tls_addr) = start_tls_server(dir.path(), &tls, false);
    let (_plain_server, plain_addr) = start_server_with(&dir.path().join("plain"), None, &[]);
    let ca = tls_ca_flag(&tls);

    let started = std::time::Instant::now();
    let mut plaintext_to_tls = roster(&["--server", &format!("http://{tls_addr}"), "producers", "list"]);
    assert!(!plaintext_to_tls.wait_exit().success());
    assert!(plaintext_to_tls.stderr().contains("this server requires TLS"), "{}", plaintext_to_tls.stderr());
    assert!(plaintext_to_tls.stderr().contains("--tls-ca"), "{}", plaintext_to_tls.stderr());

    let mut tls_to_plaintext =
        roster(&[&["--server", &format!("https://{plain_addr}")][..], &strings(&ca), &["producers", "list"]].concat());
    assert!(!tls_to_plaintext.wait_exit().success());
    assert!(tls_to_plaintext.stderr().contains("answered in plaintext, not TLS"), "{}", tls_to_plaintext.stderr());
    assert!(started.elapsed() < Duration::from_secs(10), "both fail at once: {:?}", started.elapsed());

    let no_ca = roster(&["--server", &format!("https://{tls_addr}"), "producers", "list"]);
    assert!(no_ca.stderr().contains("give --tls-ca"), "{}", no_ca.stderr());
    let ca_for_http =
        roster(&[&["--server", &format!("http://{tls_addr}")][..], &strings(&ca), &["producers", "list"]].concat());
    assert!(ca_for_http.stderr().contains("use https://"), "{}", ca_for_http.stderr());

    let grpcurl_plaintext = std::process::Command::new(common::grpcurl())
        .args(["-plaintext", "-max-time", "20", &tls_addr, "roster.v1.Registry/ListProducers"])
        .output()
        .unwrap();
    assert!(text(&grpcurl_plaintext).contains("this server requires TLS"), "{}", text(&grpcurl_plaintext));
}

/// A gRPC peer that is not ours, Python grpcio with `ssl_channel_credentials`, follows a collector's feed over
/// mutual TLS and applies the same set as the Rust collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_follower_applies_the_collectors_set_over_mutual_tls() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), CLIENT_URI);
    let (_server, addr) = start_tls_server(dir.path(), &tls, true);
    let url = format!("https://{addr}");
    let (_collector, status_addr, collector_id) =
        common::start_collector_with(&url, &dir.path().join("collector"), &strings(&tls_flags(&tls, true)));
    let mut registry = RegistryClient::new(tls_channel(&addr, &tls, true).await);
    for i in 0..N {
        let request = pb::RegisterProducerRequest {
            producer_id: uuid::Uuid::new_v4().to_string(),
            address: format!("127.0.0.1:{}", 10_000 + i),
            interval_ms: 3_600_000,
            ..Default::default()
        };
        registry.register_producer(request).await.unwrap();
    }
    let status_url = format!("https://{status_addr}");
    let status = wait_until(
        &format!("the collector applying all {N}"),
        || {
            let url = ServerUrl::parse(&status_url).unwrap();
            let tls = Some(tls.client_files(true).load().unwrap());
            async move { StatusClient::connect_tls(&url, Duration::from_secs(10), tls).get_full_status().await }
        },
        |status| status.as_ref().is_ok_and(|s| s.applied_producer_count == N as u64 && s.producers.len() == N),
    )
    .await
    .unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/follow_feed.py");
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let (ca, cert, key) = (tls.ca_file.clone(), tls.client.cert.clone(), tls.client.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::python())
            .arg(script)
            .arg("--proto-root")
            .arg(proto_root)
            .args(["--server", &addr, "--collector", &collector_id, "--min-producers", &N.to_string()])
            .args(["--timeout", "60", "--ca"])
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "python follower failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let applied: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from the python follower");
    let python_ids: Vec<&str> = applied["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let rust_ids: Vec<&str> = status.producers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(python_ids, rust_ids, "the same set, producer for producer");
}

/// `roster up --secure`: the pair, the demo producers and the printed CLI and grpcurl commands all over mutual
/// TLS with certificates of a local CA made in the data directory, and reused by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_up_secure_runs_over_mutual_tls_prints_working_commands_and_reuses_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--secure", "--metrics-listen", "off", "--collector-metrics-listen", "off", "--producers", "2"];
    for (run, expected) in [(1, "local CA made now"), (2, "local CA reused")] {
        let mut up = common::start_roster_up(dir.path(), &[&flags[..], &["--interval", "200ms"]].concat());
        wait_for("roster up to print its commands", || up.stdout().contains("Ctrl-C stops everything")).await;
        let printed = up.stdout();
        assert!(printed.contains(expected), "run {run}: {printed}");
        let command = |needle: &str| -> Vec<String> {
            let line = printed.lines().find(|l| l.contains(needle) && !l.contains("(mutual TLS"));
            let line = line.unwrap_or_else(|| panic!("{needle}: {printed}"));
            line.split_whitespace().skip(1).map(str::to_owned).collect()
        };
        // The demo producers register in the background: `roster up` prints before they are done.
        wait_for("the listing to show both demo producers", || {
            roster(&strings(&command("producers list"))).stdout().contains("2 producers")
        })
        .await;
        let mut status = roster(&strings(&command("status --collector")));
        assert!(status.wait_exit().success(), "{}{}", status.stdout(), status.stderr());
        let grpcurl = std::process::Command::new(common::grpcurl()).args(command("grpcurl -cacert")).output().unwrap();
        assert!(String::from_utf8_lossy(&grpcurl.stdout).contains("roster.v1.Registry"), "{}", text(&grpcurl));
        let sink = dir.path().join("collector/samples.jsonl");
        wait_for("samples from the producers over TLS", || common::sink_lines(&sink).len() > 10).await;
        up.signal("-INT");
        assert!(up.wait_exit().success(), "{}", up.stderr());
    }
}

/// In process, roster's acceptor counts what it refuses and keeps serving: a plaintext client (answered that TLS is
/// required), a client that never starts its handshake (dropped at the handshake limit), and a reload of a file
/// that cannot be used (the certificate in force stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptor_counts_failed_handshakes_and_refused_reloads_and_keeps_serving() {
    use std::sync::{Arc, atomic::Ordering::Relaxed};

    use tokio::io::AsyncReadExt as _;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    let setup = TlsSetup::new(dir.path(), CLIENT_URI);
    let mut tls = roster::transport::ServerTls::load(setup.server_files(false)).unwrap();
    tls.handshake_timeout = Duration::from_millis(200);
    tls.reload_poll = Duration::from_millis(50);
    let counters = Arc::clone(tls.counters());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = roster::transport::ServerTransport::new(roster::transport::ServeOptions::default()).tls(Some(tls));
    let served = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let plain = ClientOptions::default().connect(&ServerUrl::parse(&format!("http://{addr}")).unwrap()).await.unwrap();
    let refused = HealthClient::new(plain).check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("this server requires TLS"), "{refused:?}");
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let read = tokio::time::timeout(roster_testkit::WAIT, silent.read(&mut [0u8; 1])).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "a silent client is dropped at the handshake limit: {read:?}");
    wait_for("both failures counted", || counters.handshake_failures.load(Relaxed) >= 2).await;

    std::fs::write(&setup.server.key, "not a key").unwrap();
    wait_for("the refused reload counted", || counters.reload_failures.load(Relaxed) == 1).await;
    assert_eq!(counters.reloads.load(Relaxed), 0);
    let mut health = HealthClient::new(tls_channel(&addr, &setup, false).await);
    let answer = health.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving, "still serving, with the certificate in force");

    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}
