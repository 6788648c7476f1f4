//! Tests against the real `roster-server` binary: signals, and grpcurl 1.8.6 (a gRPC peer that is not ours)
//! driving the server over reflection only, with no proto files.
//!
//! grpcurl comes from `scripts/test`, which installs it into `.tools/` and exports `ROSTER_GRPCURL`; without it
//! these tests fail with a message saying so (they never skip).

// Test helpers below panic to fail the test, with a message.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use roster::pb;
use tonic::Code;
use uuid::Uuid;

/// A `roster-server` child process on 127.0.0.1 with an OS-chosen port.
struct ServerProcess {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roster-server starts");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let line = log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server logs that it serves");
            if let Some(rest) = line.split("listen=").nth(1).filter(|_| line.contains("roster-server serving")) {
                break rest.split_whitespace().next().expect("an address").to_owned();
            }
        };
        Self { child, addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "roster-server did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines so far.
    fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_ends_a_live_watch_with_unavailable_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let channel = tonic::transport::Channel::from_shared(server.url()).unwrap().connect().await.unwrap();
    let mut feed = pb::assignment_feed_client::AssignmentFeedClient::new(channel);
    let mut stream = watch(&mut feed, Uuid::new_v4(), None).await;
    next_snapshot(&mut stream).await;

    let signalled = Instant::now();
    server.signal("-TERM");
    let status =
        tokio::time::timeout(WAIT, stream.message()).await.unwrap().expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    let code = tokio::task::spawn_blocking(move || {
        let code = server.wait_exit();
        (code, server.drain_log())
    })
    .await
    .unwrap();
    assert_eq!(code.0, 0, "exit code; log: {:#?}", code.1);
    assert!(signalled.elapsed() < Duration::from_secs(10), "exits within the drain limit");
    assert!(code.1.iter().any(|l| l.contains("SIGTERM received")), "{:#?}", code.1);
}

fn grpcurl_path() -> PathBuf {
    let path = std::env::var_os("ROSTER_GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/grpcurl"));
    assert!(
        path.is_file(),
        "grpcurl 1.8.6 is required by this test but was not found at {} — run ./scripts/test, which installs it \
         into .tools/ (or set ROSTER_GRPCURL)",
        path.display()
    );
    path
}

/// Runs `grpcurl -plaintext FLAGS ADDR WORDS` with a bound on its run time; returns stdout, or panics with stderr.
fn grpcurl(addr: &str, flags: &[&str], words: &[&str]) -> String {
    let output = Command::new(grpcurl_path())
        .args(["-plaintext", "-max-time", "20"])
        .args(flags)
        .arg(addr)
        .args(words)
        .output()
        .expect("grpcurl runs");
    let args = [flags, words].concat();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "grpcurl {args:?} failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn grpcurl_lists_checks_health_registers_lists_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let addr = server.addr.clone();

    let services = grpcurl(&addr, &[], &["list"]);
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

    let described = grpcurl(&addr, &[], &["describe", "roster.v1.Registry"]);
    assert!(described.contains("rpc RegisterProducer"), "{described}");

    let health = grpcurl(&addr, &[], &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("\"SERVING\""), "{health}");

    let producer = Uuid::new_v4();
    let body = format!(
        r#"{{"producer_id":"{producer}","address":"127.0.0.1:9100","interval_ms":1000,"labels":{{"job":"demo"}}}}"#
    );
    let registered = grpcurl(&addr, &["-d", &body], &["roster.v1.Registry/RegisterProducer"]);
    assert!(registered.contains("\"created\": true"), "{registered}");

    let listed = grpcurl(&addr, &[], &["roster.v1.Registry/ListProducers"]);
    assert!(listed.contains(&producer.to_string()) && listed.contains("\"totalCount\": \"1\""), "{listed}");

    // A bad request gets INVALID_ARGUMENT naming the field.
    let output = Command::new(grpcurl_path())
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
    let mut child = Command::new(grpcurl_path())
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
