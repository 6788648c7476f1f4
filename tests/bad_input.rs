//! Bad input from peers that are not ours, against the real binaries: hand-encoded protobuf from Python grpcio
//! (negative numbers where the schema says uint32, bytes that are not protobuf, unknown enum values and fields, a
//! message above the size limit), raw garbage and an HTTP/1.1 request on the gRPC port, and a damaged collector
//! state file. Each gets a clear answer, the store is unchanged, and the server stays up for everyone else.
//!
//! Field-by-field validation of every RPC (malformed UUIDs, empty and oversized strings, bad addresses, label
//! limits, page sizes and tokens) is in `server/tests/server.rs`; this file covers what a typed client cannot send.

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

use common::{Proc, all_producers, python, register_many, start_collector, start_server, wait_reported, wait_status};

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
