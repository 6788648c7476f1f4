//! Bad input from peers that are not ours, against the real binaries: hand-encoded protobuf from Python grpcio
//! (negative numbers where the schema says uint32, bytes that are not protobuf, unknown enum values and fields, a
//! message above the size limit), raw garbage and an HTTP/1.1 request on the gRPC port, and a damaged collector
//! state file. Each gets a clear answer, the store is unchanged, and the server stays up for everyone else.
//!
//! Field-by-field validation of every RPC (malformed UUIDs, empty and oversized strings, bad addresses, label
//! limits, page sizes and tokens) is in `server/tests/server.rs`; this file covers what a typed client cannot send,
//! and bad values given to the programs themselves (issue 10, defects 9 and 10): server URLs that are not
//! `http://host:port`, the wrong service at an address, addresses that break the host:port rules, the nil UUID as
//! an id, flags out of their bounds, label values with commas and an unknown collector. Each is refused with a
//! message naming the flag or field and what is expected, with the exit code of a usage error (2) when the
//! program refuses it at start, or 1 when the server refuses it; nothing is stored.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::Command,
    time::Duration,
};

use common::{
    Proc, all_producers, python, register_many, roster, start_collector, start_server, wait_reported, wait_status,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_encoded_garbage_and_http1_get_clear_answers_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_collector, status_addr, collector_id) = start_collector(&url, &dir.path().join("c"));
    register_many(&url, 3).await;
    let before = wait_status(&status_addr, "3 producers applied", |s| s.applied_producer_count == 3).await;
    let stored_before = all_producers(&url).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/raw_requests.py");
    let (server_addr, epoch) = (addr.clone(), before.applied_epoch.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(["--server", &server_addr, "--collector", &collector_id, "--epoch", &epoch])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "raw_requests.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let answers: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("figure: raw requests: {answers}");
    let expect = |case: &str, code: &str, needle: &str| {
        let answer = &answers[case];
        assert_eq!(answer["code"], code, "{case}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(needle), "{case}: {answer} lacks {needle:?}");
    };
    // A negative number sent where the schema says uint32 decodes as a huge one, and is rejected as such.
    expect("negative_interval", "INVALID_ARGUMENT", "interval_ms: ");
    expect("zero_interval", "INVALID_ARGUMENT", "interval_ms: ");
    // gRPC's status table gives INTERNAL for a request that does not parse; the message says so.
    expect("not_protobuf", "INTERNAL", "failed to decode");
    expect("truncated_protobuf", "INTERNAL", "failed to decode");
    expect("unknown_enum", "INVALID_ARGUMENT", "outcome: ");
    // Fields from a newer schema are ignored (proto3), so old servers keep working with newer clients.
    expect("unknown_field", "OK", "");
    expect("too_large", "RESOURCE_EXHAUSTED", "request message too large");

    // Garbage bytes and an HTTP/1.1 request on the gRPC port: the connection is closed, nothing else happens.
    for payload in [b"GET / HTTP/1.1\r\nHost: roster\r\n\r\n".to_vec(), (0..65_536u32).map(|i| (i * 7) as u8).collect()]
    {
        let mut socket = TcpStream::connect(&addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = socket.write_all(&payload);
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
    }

    let stored = all_producers(&url).await;
    assert_eq!(stored.len(), stored_before.len() + 1, "only the registration with an unknown field was stored");
    assert!(stored_before.keys().all(|id| stored.contains_key(id)));
    let after =
        wait_status(&status_addr, "the unknown-field registration applied", |s| s.applied_producer_count == 4).await;
    assert!(after.connected, "the collector's stream was not disturbed: {after:?}");
    assert_eq!(after.reconnects, before.reconnects, "no reconnect was needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_collector_state_file_stops_the_collector_naming_the_file_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (mut collector, status_addr, collector_id) = start_collector(&url, &collector_dir);
    register_many(&url, 3).await;
    let applied = wait_status(&status_addr, "3 producers applied", |s| s.applied_producer_count == 3).await;
    wait_reported(&url, &collector_id, applied.applied_generation).await;
    collector.kill9();

    let file = collector_dir.join(format!("snapshot-{collector_id}.bin"));
    let whole = std::fs::read(&file).unwrap();
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    for (damage, bytes) in [("truncated", whole[..whole.len() / 2].to_vec()), ("flipped", flipped)] {
        std::fs::write(&file, &bytes).unwrap();
        let data_dir = collector_dir.display().to_string();
        let mut restarted =
            Proc::start("roster-collector", &["--server", &url, "--data-dir", &data_dir, "--listen", "127.0.0.1:0"]);
        let exit = restarted.wait_exit();
        let log = restarted.stderr();
        assert_eq!(exit.code(), Some(1), "{damage}: {log}");
        assert!(log.contains(&file.display().to_string()), "{damage}: the error names the file:\n{log}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{damage}: the file is kept as it was, for inspection");
        eprintln!("figure: {damage} state file: {}", log.lines().find(|l| l.contains("snapshot-")).unwrap_or(""));
    }
}

/// Runs the CLI with `args`, checks it exits with `code`, and returns its stderr.
fn cli_refuses(args: &[&str], code: i32) -> String {
    let mut cli = roster(args);
    let status = cli.wait_exit();
    let stderr = cli.stderr();
    assert_eq!(status.code(), Some(code), "roster {args:?}: stdout:\n{}\nstderr:\n{stderr}", cli.stdout());
    eprintln!("figure: roster {args:?} -> exit {code}: {}", stderr.lines().next().unwrap_or(""));
    stderr
}

/// Starts a binary that must refuse its flags: it exits with `code` (clap's usage error is 2) naming what is wrong.
fn binary_refuses(name: &str, args: &[&str], code: i32) -> String {
    let mut process = Proc::start(name, args);
    let status = process.wait_exit();
    let stderr = process.stderr();
    assert_eq!(status.code(), Some(code), "{name} {args:?} did not stop at start; stderr:\n{stderr}");
    eprintln!("figure: {name} {args:?} -> exit {code}: {}", stderr.lines().next().unwrap_or(""));
    stderr
}

const PRODUCER: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// Issue 10, defect 9: a server URL that is not `http://host:port` (or `https://host:port` with the CA to verify it,
/// issue 15) is a usage error naming the flag and the expected form, refused before anything is dialled or stored;
/// never a silent plaintext downgrade, never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_urls_that_are_not_http_host_port_are_refused_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let register = |server: &str| {
        vec![
            "--server".to_owned(),
            server.to_owned(),
            "-v".to_owned(),
            "producers".to_owned(),
            "register".to_owned(),
            "--id".to_owned(),
            PRODUCER.to_owned(),
            "--address".to_owned(),
            "127.0.0.1:9100".to_owned(),
        ]
    };
    let (tls, bare, out_of_range) =
        (format!("https://{addr}"), addr.clone(), format!("http://{}:99999", addr.rsplit_once(':').unwrap().0));
    for (server, needle) in [
        (tls.as_str(), "asks for TLS (https://), but no CA is given to verify the server's certificate: give --tls-ca"),
        (bare.as_str(), "has no scheme"),
        (out_of_range.as_str(), "port 99999, which is out of range; use 1-65535"),
    ] {
        let args = register(server);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = cli_refuses(&args, 2);
        assert!(stderr.contains("--server") && stderr.contains(needle), "{server}: {stderr}");
        assert!(stderr.contains("http://"), "{server}: the expected form is named: {stderr}");
        assert!(!stderr.contains("attempt"), "{server}: nothing was dialled: {stderr}");
    }
    assert!(all_producers(&url).await.is_empty(), "nothing was stored");

    // The collector and the demo producer refuse such a --server at start, before making their data directory.
    let collector_dir = dir.path().join("collector");
    let data_dir = collector_dir.display().to_string();
    for server in [bare.as_str(), tls.as_str(), out_of_range.as_str()] {
        let stderr = binary_refuses(
            "roster-collector",
            &["--server", &format!("{url},{server}"), "--data-dir", &data_dir, "--listen", "127.0.0.1:0"],
            2,
        );
        assert!(stderr.contains("--server") && stderr.contains("http://"), "{stderr}");
        assert!(!collector_dir.exists(), "the collector made nothing: {stderr}");
        let stderr = binary_refuses(
            "roster-demo-producer",
            &["--server", server, "--listen", "127.0.0.1:0", "--id", PRODUCER],
            2,
        );
        assert!(stderr.contains("--server") && stderr.contains("http://"), "{stderr}");
    }
    assert!(all_producers(&url).await.is_empty(), "nothing was stored");
    assert!(common::collectors(&url).await.is_empty(), "no collector appeared");
}

/// Issue 10, defect 9: `roster status` pointed at a roster-server (or `--server` pointed at a collector) says that
/// the address answered but is the wrong service, and what to point the flag at; not an empty `Unimplemented:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pointed_at_the_wrong_service_says_which_it_is_and_where_to_point_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_collector, status_addr, _) = start_collector(&url, &dir.path().join("c"));

    let stderr = cli_refuses(&["status", "--collector", &addr], 1);
    let line = stderr.lines().find(|l| l.starts_with("roster: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("answered, but it is not a roster-collector's status API"), "{line}");
    assert!(line.contains("it is a roster-server"), "{line}");
    assert!(line.contains("Point --collector at the collector's --listen address"), "{line}");
    assert!(line.contains("Unimplemented"), "the cause is still given: {line}");

    let stderr = cli_refuses(&["--server", &format!("http://{status_addr}"), "producers", "list"], 1);
    let line = stderr.lines().find(|l| l.starts_with("roster: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("it is not a roster-server") && line.contains("point --server at"), "{line}");
    assert!(line.contains("ListProducers: Unimplemented"), "{line}");
}

/// Issue 10, defect 10: every bad address is refused by the server naming the field and the rule (not retried,
/// nothing stored), and `host:080` is stored normalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_producer_addresses_are_refused_with_the_rule_and_leading_zeros_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    for (address, needle) in [
        ("host:65536", "port 65536, which is out of range; use 1-65535"),
        ("a..b:80", "empty label"),
        ("-bad-:80", "starts or ends with a hyphen"),
        ("[fe80::1%eth0]:80", "zone-scoped IPv6 address"),
    ] {
        // `--address=…`: a value starting with '-' would be read as a flag otherwise.
        let flag = format!("--address={address}");
        let stderr = cli_refuses(&["--server", &url, "-v", "producers", "register", "--id", PRODUCER, &flag], 1);
        let line = stderr.lines().find(|l| l.starts_with("roster: ")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.contains("InvalidArgument: address: ") && line.contains(needle), "{address}: {line}");
        assert!(!stderr.contains("retrying"), "{address}: not retried: {stderr}");
    }
    assert!(all_producers(&url).await.is_empty(), "nothing was stored");

    let mut register = roster(&[
        "--server",
        &url,
        "--output",
        "json",
        "producers",
        "register",
        "--id",
        PRODUCER,
        "--address",
        "Host:080",
    ]);
    assert!(register.wait_exit().success(), "{}", register.stderr());
    let stored = common::client(&url).get_producer(PRODUCER.into()).await.unwrap();
    assert_eq!(stored.address, "host:80", "stored normalised");
    eprintln!("figure: Host:080 stored as {}", stored.address);
}

/// Issue 10, defect 10: the nil UUID is refused as a producer or collector id by the CLI, the collector and the
/// server, naming the field; nothing is stored and no collector appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nil_uuid_is_refused_as_an_id_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");

    for args in [
        vec!["--server", &url, "producers", "register", "--id", NIL, "--address", "127.0.0.1:9100"],
        vec!["--server", &url, "producers", "register", "--id", PRODUCER, "--address", "127.0.0.1:9100", "--pin", NIL],
        vec!["--server", &url, "watch", "--collector", NIL, "--count", "1"],
        vec!["--server", &url, "producers", "list", "--collector", NIL],
    ] {
        let stderr = cli_refuses(&args, 2);
        assert!(stderr.contains("nil UUID"), "{args:?}: {stderr}");
    }
    let collector_dir = dir.path().join("c");
    let data_dir = collector_dir.display().to_string();
    let stderr = binary_refuses(
        "roster-collector",
        &["--server", &url, "--data-dir", &data_dir, "--listen", "127.0.0.1:0", "--id", NIL],
        2,
    );
    assert!(stderr.contains("--id") && stderr.contains("nil UUID"), "{stderr}");

    // A peer that is not the CLI gets INVALID_ARGUMENT naming the field.
    let mut registry = common::registry(&url).await;
    let mut request = common::registration("127.0.0.1:9100", 1000);
    request.producer_id = NIL.into();
    let status = registry.register_producer(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("producer_id: ") && status.message().contains("nil UUID"), "{status:?}");
    request.producer_id = PRODUCER.into();
    request.pinned_collector_id = NIL.into();
    let status = registry.register_producer(request).await.unwrap_err();
    assert!(status.message().starts_with("pinned_collector_id: "), "{status:?}");
    let mut feed = roster::pb::assignment_feed_client::AssignmentFeedClient::new(
        roster::transport::ClientOptions::default().connect(&url.parse().unwrap()).await.unwrap(),
    );
    let watch = roster::pb::WatchRequest { collector_id: NIL.into(), ..Default::default() };
    let status = feed.watch(watch).await.unwrap_err();
    assert!(status.message().starts_with("collector_id: ") && status.message().contains("nil UUID"), "{status:?}");

    // An id file holding the nil UUID stops the collector, naming the file, rather than following a nil feed.
    std::fs::create_dir_all(&collector_dir).unwrap();
    let id_file = collector_dir.join("collector-id");
    std::fs::write(&id_file, format!("{NIL}\n")).unwrap();
    let stderr =
        binary_refuses("roster-collector", &["--server", &url, "--data-dir", &data_dir, "--listen", "127.0.0.1:0"], 1);
    assert!(stderr.contains(&id_file.display().to_string()) && stderr.contains("nil UUID"), "{stderr}");

    // A sink given twice (one file, or one receiver's queue, for two writers) or of no known kind stops it too.
    let other_dir = dir.path().join("c2").display().to_string();
    let start = ["--server", &url, "--data-dir", &other_dir, "--listen", "127.0.0.1:0"];
    let twice = [
        "--sink",
        "remote-write=http://127.0.0.1:9/api/v1/write",
        "--sink",
        "remote-write=http://127.0.0.1:9/api/v1/write",
    ];
    let stderr = binary_refuses("roster-collector", &[&start[..], &twice[..]].concat(), 1);
    assert!(stderr.contains("--sink remote-write=http://127.0.0.1:9/api/v1/write is given twice"), "{stderr}");
    for (sink, says) in [("kafka=broker:9092", "unknown sink kind"), ("remote-write=ftp://x/y", "remote-write")] {
        let stderr = binary_refuses("roster-collector", &[&start[..], &["--sink", sink][..]].concat(), 2);
        assert!(stderr.contains("--sink") && stderr.contains(says), "{sink}: {stderr}");
    }

    assert!(all_producers(&url).await.is_empty(), "nothing was stored");
    assert!(common::collectors(&url).await.is_empty(), "no collector appeared");
}

/// The stricter address rules apply to new registrations only: a collector whose state file holds an address an
/// older server accepted (`-bad-:9100`, before RFC 1123 was enforced) still starts and collects its set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_with_an_address_older_rules_accepted_still_resumes() {
    use roster::{
        domain::{Collection, CollectorId, Labels, ProducerAddress, ProducerId, Target},
        follower::{assembler::Snapshot, state_file},
    };
    let dir = tempfile::tempdir().unwrap();
    let collector_dir = dir.path().join("c");
    std::fs::create_dir_all(&collector_dir).unwrap();
    let id = CollectorId::new_random();
    let target = |address: &str| Target {
        id: ProducerId::new_random(),
        address: ProducerAddress::parse_accepted("address", address.to_owned()).unwrap(),
        interval: Duration::from_secs(3600),
        labels: Labels::default(),
        collection: Collection::Grpc,
    };
    assert!(ProducerAddress::parse_field("address", "-bad-:9100").is_err(), "refused for a registration");
    let mut targets = vec![target("-bad-:9100"), target("127.0.0.1:9")];
    targets.sort_by_key(|t| t.id);
    let snapshot = Snapshot { epoch: uuid::Uuid::new_v4(), generation: 7, targets, settling: false, carried: vec![] };
    state_file::save(&collector_dir.join(format!("snapshot-{id}.bin")), &snapshot, 1).unwrap();

    // No server: the collector resumes its persisted set on its own (C5).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(collector_dir.join("collector-id"), format!("{id}\n")).unwrap();
    let (_collector, status_addr, _) = start_collector(&format!("http://127.0.0.1:{port}"), &collector_dir);
    let status = wait_status(&status_addr, "the persisted set resumed", |s| s.applied_producer_count == 2).await;
    assert_eq!(status.applied_generation, 7);
    assert!(status.producers.iter().any(|p| p.address == "-bad-:9100"), "{:?}", status.producers);
}

/// Issue 10, defect 10: flags out of their bounds stop the program at start naming the flag and the bounds.
#[test]
fn server_lease_and_cli_timeout_out_of_bounds_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let data = data_dir.display().to_string();
    for lease in ["1s", "9s", "2days"] {
        let stderr =
            binary_refuses("roster-server", &["--listen", "127.0.0.1:0", "--data-dir", &data, "--lease", lease], 2);
        assert!(stderr.contains("--lease") && stderr.contains("out of range: use 10s to 1day"), "{stderr}");
        assert!(!data_dir.exists(), "no store was made");
    }
    let stderr = cli_refuses(&["--timeout", "0s", "producers", "list"], 2);
    assert!(stderr.contains("--timeout") && stderr.contains("more than zero"), "{stderr}");
}

/// Issue 10, defect 10: a label value may hold commas (one `--label` per label), a name given twice is refused
/// as a usage error (exit 2, as every refused flag), and listing the producers of an unknown collector is an error, not an empty list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_hold_commas_and_an_unknown_collector_is_an_error_not_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let register = |labels: &[&str]| {
        let mut args = vec!["--server", url.as_str(), "--output", "json", "producers", "register", "--id", PRODUCER];
        args.extend_from_slice(&["--address", "127.0.0.1:9100"]);
        for label in labels {
            args.extend_from_slice(&["--label", label]);
        }
        roster(&args)
    };
    let stderr = cli_refuses(
        &[
            "--server",
            &url,
            "producers",
            "register",
            "--id",
            PRODUCER,
            "--address",
            "127.0.0.1:9100",
            "--label",
            "a=1",
            "--label",
            "a=2",
        ],
        2,
    );
    assert!(stderr.contains("--label: label \"a\" is given twice"), "{stderr}");
    assert!(all_producers(&url).await.is_empty(), "nothing was stored");
    let stderr = cli_refuses(&["demo-producer", "--server", &url, "--label", "b=1", "--label", "b=1"], 2);
    assert!(stderr.contains("--label: label \"b\" is given twice"), "a usage error before anything runs: {stderr}");
    let demo = ["--server", url.as_str(), "--listen", "127.0.0.1:0", "--id", PRODUCER];
    let stderr =
        binary_refuses("roster-demo-producer", &[&demo[..], &["--label", "b=1", "--label", "b=2"]].concat(), 2);
    assert!(stderr.contains("--label: label \"b\" is given twice"), "{stderr}");
    for (flag, value, range) in [("--interval", "10ms", "use 100ms to 1h"), ("--lease", "1s", "use 10s to 1day")] {
        let stderr = binary_refuses("roster-demo-producer", &[&demo[..], &[flag, value]].concat(), 2);
        assert!(stderr.contains(flag) && stderr.contains(range), "the bounds the server holds it to: {stderr}");
    }

    let mut cli = register(&["hosts=a,b", "expr=x=y", "job=node"]);
    assert!(cli.wait_exit().success(), "{}", cli.stderr());
    let stored = common::client(&url).get_producer(PRODUCER.into()).await.unwrap();
    let expected: std::collections::BTreeMap<String, String> =
        [("hosts", "a,b"), ("expr", "x=y"), ("job", "node")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
    assert_eq!(stored.labels, expected);

    let unknown = "33333333-3333-4333-8333-333333333333";
    let stderr = cli_refuses(&["--server", &url, "producers", "list", "--collector", unknown], 1);
    assert!(stderr.contains(&format!("--collector {unknown}: this collector is not known to the server")), "{stderr}");
    let stderr = cli_refuses(&["--server", &url, "assignment", "show", "--collector", unknown], 1);
    assert!(stderr.contains("is not known to the server"), "the same check: {stderr}");
}

/// `roster-server --heartbeat 1ns` was taken, and one idle collector's stream then kept the server at 76% CPU: a
/// heartbeat has a floor, 100ms, and a shorter one is a usage error naming the flag and the bound.
#[test]
fn a_heartbeat_below_its_floor_is_refused_at_start_naming_the_flag_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let data = data_dir.display().to_string();
    for heartbeat in ["1ns", "99ms"] {
        let args = ["--listen", "127.0.0.1:0", "--data-dir", &data, "--heartbeat", heartbeat];
        let stderr = binary_refuses("roster-server", &args, 2);
        assert!(stderr.contains("'--heartbeat <HEARTBEAT>'") && stderr.contains("use at least 100ms"), "{stderr}");
        assert!(!data_dir.exists(), "no store was made");
    }
    let (_server, _) = common::start_server_with(&data_dir, None, &["--heartbeat", "100ms"]);
}
