//! Storage faults under real roster-server and roster-collector processes: a data directory on a small tmpfs that
//! the test mounts, fills up, and makes read-only. Requests that need the disk fail with a clear error naming the
//! store; nothing already acknowledged is lost; the server recovers when the fault clears. A collector whose disk
//! is full keeps collecting the set it applied, says why it cannot save it, and saves and reports it once it can; one
//! whose data directory is read-only at start refuses to start, as the server does.
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

use common::{
    Proc, WAIT, all_producers, collectors, never_due, registry, roster, sink_counts, start_collector_with,
    start_server, status, wait_for, wait_reported, wait_status,
};
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

/// A collector that could save no snapshot (C5: the server would never have a report) or write no sample refuses
/// to start, naming the path and why. Before, it started, and then dropped every sample and failed every save.
#[tokio::test]
async fn a_collector_refuses_to_start_on_a_data_directory_or_a_samples_file_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "1m");
    let data = disk.0.join("collector");
    std::fs::create_dir_all(&data).unwrap();
    disk.remount("ro");
    let data_text = data.display().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let base = ["--server", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--id", &id];
    let mut refused = Proc::start("roster-collector", &[&base[..], &["--data-dir", &data_text]].concat());
    let exit = refused.wait_exit();
    let log = refused.stderr();
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("data directory {data_text} is not writable")) && log.contains("Read-only file system"),
        "the error names the directory and why:\n{log}"
    );

    // A samples file that is a directory.
    let writable = dir.path().join("writable");
    let sink = dir.path().join("a-directory");
    std::fs::create_dir_all(&sink).unwrap();
    let (writable_text, sink_text) = (writable.display().to_string(), sink.display().to_string());
    let flags = ["--data-dir", &writable_text, "--sink", &sink_text];
    let mut refused = Proc::start("roster-collector", &[&base[..], &flags].concat());
    let exit = refused.wait_exit();
    let log = refused.stderr();
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("--sink {sink_text}: cannot append to this samples file"))
            && log.contains("Is a directory"),
        "the error names the flag, the file and why:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_on_a_full_disk_collects_the_new_set_then_saves_and_reports_it_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, listen) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{listen}");
    let disk = Tmpfs::mount(&dir.path().join("disk"), "1m");
    let data = disk.0.join("collector");
    // The samples go elsewhere: what is checked here is the snapshot the collector keeps in its data directory.
    let sink = dir.path().join("samples.jsonl");
    let flags = ["--sink", sink.to_str().unwrap()];
    let (mut collector, status_addr, id) = start_collector_with(&url, &data, &flags);
    let _first = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms"]);
    // Reported means saved (C5).
    let first = wait_status(&status_addr, "the first producer applied", |s| s.applied_producer_count == 1).await;
    wait_reported(&url, &id, first.applied_generation).await;

    fill(&disk.0.join("filler"));
    let second = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms"]);
    let second_id = second.logged("demo producer serving", "producer.id=");
    let failing = wait_status(&status_addr, "the save of the new set fails, retried, with the reason shown", |s| {
        s.applied_producer_count == 2 && s.persist_failures >= 2 && !s.persist_error.is_empty()
    })
    .await;
    assert!(failing.persist_error.contains("No space left on device"), "{}", failing.persist_error);
    assert!(failing.persisted_generation < failing.applied_generation, "{failing:?}");
    assert!(collector.stderr().contains("cannot save the applied snapshot"), "the log says it too");
    let from = sink_counts(&sink).get(&second_id).copied().unwrap_or(0);
    wait_for("the new producer collected while its set cannot be saved", || {
        sink_counts(&sink).get(&second_id).is_some_and(|n| *n >= from + 3)
    })
    .await;
    let listed = collectors(&url).await;
    assert!(!listed[&id].converged, "an unsaved set is not reported (C5): {:?}", listed[&id]);
    eprintln!("figure: collector disk full: {} failed saves before space was freed", failing.persist_failures);

    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let freed = std::time::Instant::now();
    let saved = wait_status(&status_addr, "the new set saved once space is freed", |s| {
        s.persist_error.is_empty() && s.persisted_generation == s.applied_generation && s.applied_producer_count == 2
    })
    .await;
    eprintln!("figure: collector disk freed: new set saved after {:?}", freed.elapsed());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut cli = roster(&["--server", &url, "--output", "json", "collectors", "list"]);
        assert!(cli.wait_exit().success(), "{}", cli.stderr());
        let listed: serde_json::Value = serde_json::from_str(&cli.stdout()).unwrap();
        let me = listed["collectors"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).unwrap().clone();
        if me["converged"] == true {
            assert_eq!(me["reported_generation"], saved.applied_generation);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never converged once saved: {me}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    };
    assert_eq!(leftovers(), Vec::<String>::new(), "no temporary file is left behind");

    // Restarted while the server is down, it resumes the new set at once. A temporary file left by a save that
    // did not finish (a crash mid-save) is removed at start.
    server.kill9();
    collector.signal("-TERM");
    assert_eq!(collector.wait_exit().code(), Some(0), "{}", collector.stderr());
    std::fs::write(data.join(format!("snapshot-{id}.bin.tmp")), b"").unwrap();
    let (_collector, status_addr, _) = start_collector_with(&url, &data, &flags);
    let resumed = status(&status_addr).await;
    assert!(!resumed.connected);
    assert_eq!(
        (resumed.applied_generation, resumed.applied_producer_count),
        (saved.applied_generation, 2),
        "the new set is resumed"
    );
    assert!(resumed.producers.iter().any(|p| p.id == second_id));
    assert_eq!(leftovers(), Vec::<String>::new(), "the leftover temporary file is removed at start");
}
