//! Storage faults under a real roster-server process: its data directory on a small tmpfs that the test mounts,
//! fills up, and makes read-only. Requests that need the disk fail with a clear error naming the store; nothing
//! already acknowledged is lost; the server recovers when the fault clears.
//!
//! Mounting needs root (CAP_SYS_ADMIN), which `./scripts/test` and CI have; without it these tests fail and say so.
//! They never skip.
//!
//! A data directory that turns read-only *under a running server* cannot be staged here: Linux refuses to remount
//! a filesystem read-only while files on it are open for writing, and the server keeps its database open. What a
//! running server meets on a failing disk is a failed write, which is what the full disk stages; the read-only
//! case is staged at start.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use common::{Proc, all_producers, never_due, registry, start_server};
use tonic::Code;

/// A tmpfs mounted for one test; unmounted when dropped, even if the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "the storage fault tests mount a small tmpfs and need root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(path.to_owned())
    }

    fn remount(&self, options: &str) {
        let output = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.0).output().unwrap();
        assert!(output.status.success(), "remount {options}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the filesystem is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    // Bounded: the tmpfs is a few MiB.
    for _ in 0..1_000 {
        if file.write_all(&block).and_then(|()| file.sync_all()).is_err() {
            return;
        }
    }
    panic!("{} never filled up", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_loses_nothing_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "8m");
    let data = disk.0.join("server");
    let (mut server, listen) = start_server(&data, None);
    let url = format!("http://{listen}");
    let mut client = registry(&url).await;
    let mut acknowledged = Vec::new();
    for _ in 0..50 {
        let request = never_due();
        acknowledged.push(request.producer_id.clone());
        client.register_producer(request).await.unwrap();
    }

    fill(&disk.0.join("filler"));
    // Writes may still land in space SQLite already holds; go on (bounded) until one fails.
    let mut failure = None;
    for _ in 0..20_000 {
        let request = never_due();
        let id = request.producer_id.clone();
        match client.register_producer(request).await {
            Ok(_) => acknowledged.push(id),
            Err(status) => {
                failure = Some(status);
                break;
            }
        }
    }
    let status = failure.expect("a registration fails once the disk is full");
    eprintln!("figure: disk full: {} acknowledged before the first failure: {status}", acknowledged.len());
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(
        status.message().contains("could not write this change") && status.message().contains("full"),
        "the error says what happened: {status}"
    );
    assert!(status.message().contains(&data.display().to_string()), "the error names the store: {status}");
    let stored = all_producers(&url).await;
    assert!(acknowledged.iter().all(|id| stored.contains_key(id)), "reads still work and nothing was lost");
    assert_eq!(stored.len(), acknowledged.len(), "the failed registration was not stored");

    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let request = never_due();
    acknowledged.push(request.producer_id.clone());
    client.register_producer(request).await.expect("writes work again once space is freed");

    server.kill9();
    let (_server, _) = start_server(&data, Some(&listen));
    let stored = all_producers(&url).await;
    assert!(acknowledged.iter().all(|id| stored.contains_key(id)), "every acknowledged registration is on disk");
    assert_eq!(stored.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_dir_stops_the_server_with_a_clear_error_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "8m");
    let data = disk.0.join("server");
    let (server, listen) = start_server(&data, None);
    let url = format!("http://{listen}");
    let mut client = registry(&url).await;
    let mut acknowledged = Vec::new();
    for _ in 0..20 {
        let request = never_due();
        acknowledged.push(request.producer_id.clone());
        client.register_producer(request).await.unwrap();
    }
    server.signal("-TERM");
    let mut server = server;
    assert_eq!(server.wait_exit().code(), Some(0));

    disk.remount("ro");
    let dir_text = data.display().to_string();
    let mut refused = Proc::start("roster-server", &["--listen", "127.0.0.1:0", "--data-dir", &dir_text]);
    let exit = refused.wait_exit();
    let log = refused.stderr();
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("data directory {dir_text} is not writable")) && log.contains("Read-only file system"),
        "the error names the dir and why:\n{log}"
    );

    disk.remount("rw");
    let (_server, _) = start_server(&data, Some(&listen));
    let stored = all_producers(&url).await;
    assert!(acknowledged.iter().all(|id| stored.contains_key(id)), "nothing stored was lost");
}
