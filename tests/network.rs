//! Network faults between a real roster-collector process and a real roster-server, through a fault proxy:
//! connection refused, reset in the middle of a snapshot, a stream cut after N bytes, silence without close
//! (half-open), and a slow byte trickle.
//!
//! Throughout, the collector's applied set (its state file, read every 10 ms) only ever takes values the server
//! held as a whole: never a part of a snapshot. Every reconnect delay it logs stays under the cap it was given, and
//! a real producer is collected through every fault.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Proc, register_many, sink_counts, start_collector_with, start_server, status, wait_for, wait_status};
use roster::follower::state_file;
use roster_testkit::{FaultProxy, Mode};

const BATCH: usize = 1500;
const CAP_MS: u64 = 2000;

/// Every distinct applied set seen in the collector's state file.
type Seen = Arc<Mutex<Vec<(u64, BTreeSet<String>)>>>;

/// Reads the state file every 10 ms until `stop`, recording each new generation's set.
fn watch_state_file(path: PathBuf, seen: Seen, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(Some(persisted)) = state_file::load(&path) {
                let mut seen = seen.lock().unwrap();
                if seen.last().is_none_or(|(generation, _)| *generation != persisted.snapshot.generation) {
                    let ids = persisted.snapshot.targets.iter().map(|t| t.id.to_string()).collect();
                    seen.push((persisted.snapshot.generation, ids));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// The proxy's bytes sent to the collector so far.
fn down(proxy: &FaultProxy) -> u64 {
    proxy.bytes_down.load(Ordering::Relaxed)
}

fn discards(s: &roster::pb::GetStatusResponse) -> u64 {
    s.discards.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_every_network_fault_only_whole_snapshots_apply_and_delays_respect_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, listen) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{listen}");
    let proxy = FaultProxy::start(listen.parse().unwrap()).await;
    let collector_dir = dir.path().join("c");
    let flags = ["--keepalive-interval", "2s", "--keepalive-timeout", "5s", "--reconnect-max-delay", "2s"];
    let (collector, status_addr, collector_id) = start_collector_with(&proxy.url(), &collector_dir, &flags);
    let demo = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms"]);
    let demo_id = demo.logged("demo producer serving", "producer.id=");
    let sink = collector_dir.join("samples.jsonl");
    let demo_samples = || sink_counts(&sink).get(&demo_id).copied().unwrap_or(0);
    let collected_on = |from: u64| move || demo_samples() >= from + 3;

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader =
        watch_state_file(collector_dir.join(format!("snapshot-{collector_id}.bin")), seen.clone(), stop.clone());

    // The server's whole sets, phase by phase: each phase adds a batch.
    let mut wholes: Vec<BTreeSet<String>> = vec![BTreeSet::from([demo_id.clone()])];
    let mut expected = wholes[0].clone();
    let applied = |n: usize| move |s: &roster::pb::GetStatusResponse| s.applied_producer_count == n as u64;

    // 0. Forward: the first batch arrives.
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    wait_status(&status_addr, "the first batch applied", applied(expected.len())).await;

    // 1. Connection refused: nothing listens; attempts are refused until it does.
    proxy.set(Mode::Refuse);
    let before = wait_status(&status_addr, "the refusal noticed", |s| !s.connected).await;
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    wait_status(&status_addr, "three refused attempts", |s| s.reconnects >= before.reconnects + 3).await;
    let from = demo_samples();
    wait_for("collection while refused", collected_on(from)).await;
    assert_eq!(status(&status_addr).await.applied_generation, before.applied_generation);
    proxy.set(Mode::Forward);
    let cleared = Instant::now();
    wait_status(&status_addr, "the refused batch applied", applied(expected.len())).await;
    eprintln!("figure: refused: converged {:?} after the port listened again", cleared.elapsed());

    // 2. Reset in the middle of a snapshot: a slow link, reset once part of the snapshot went through.
    proxy.set(Mode::Refuse);
    let before = wait_status(&status_addr, "disconnected", |s| !s.connected).await;
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    let sent = down(&proxy);
    proxy.set(Mode::Trickle(64 * 1024));
    // Past the first chunk (about 60 KiB), so the collector holds a partial snapshot when the reset comes.
    wait_for("128 KiB of the snapshot through", || down(&proxy) > sent + 128 * 1024).await;
    proxy.break_all();
    proxy.set(Mode::Forward);
    let s = wait_status(&status_addr, "the reset batch applied", applied(expected.len())).await;
    assert!(discards(&s) > discards(&before), "the cut snapshot was discarded: {:?}", s.discards);

    // 3. Cut after N bytes: every connection is cut 64 KiB in, so the snapshot never arrives whole.
    proxy.set(Mode::Refuse);
    let before = wait_status(&status_addr, "disconnected", |s| !s.connected).await;
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    proxy.set(Mode::CutAfter(64 * 1024));
    let from = demo_samples();
    let s = wait_status(&status_addr, "two cut snapshots discarded", |s| discards(s) >= discards(&before) + 2).await;
    assert_eq!(s.applied_generation, before.applied_generation, "a cut snapshot is never applied");
    wait_for("collection while cut", collected_on(from)).await;
    proxy.set(Mode::Forward);
    wait_status(&status_addr, "the cut batch applied", applied(expected.len())).await;

    // 4. Silence without close: keepalive notices the half-open connection.
    proxy.set(Mode::Silent);
    let silenced = Instant::now();
    let before = status(&status_addr).await;
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    let from = demo_samples();
    let s = wait_status(&status_addr, "the silent server noticed", |s| !s.connected).await;
    let detected = silenced.elapsed();
    eprintln!("figure: half-open: noticed after {detected:?} (keepalive 2s + timeout 5s)");
    assert_eq!(s.applied_generation, before.applied_generation);
    wait_for("collection while silent", collected_on(from)).await;
    proxy.set(Mode::Forward);
    wait_status(&status_addr, "the silent batch applied", applied(expected.len())).await;

    // 5. A slow trickle: the whole snapshot arrives slowly, and applies only once complete.
    proxy.set(Mode::Refuse);
    wait_status(&status_addr, "disconnected", |s| !s.connected).await;
    expected.extend(register_many(&url, BATCH).await);
    wholes.push(expected.clone());
    let trickled = Instant::now();
    proxy.set(Mode::Trickle(256 * 1024));
    wait_status(&status_addr, "the trickled batch applied", applied(expected.len())).await;
    eprintln!("figure: trickle at 256 KiB/s: {} producers applied after {:?}", expected.len(), trickled.elapsed());

    // The collector persists what it applied right after applying it (and before reporting it).
    wait_for("the last set on disk", || seen.lock().unwrap().last().is_some_and(|(_, set)| *set == expected)).await;
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 6, "every phase applied a new set: {}", seen.len());
    for (i, (generation, set)) in seen.iter().enumerate() {
        // The collector and the demo producer start together: if the collector's stream came first, the first set it
        // applied was the empty one the server held for it before the demo producer registered.
        let before_the_demo = i == 0 && set.is_empty();
        let whole = before_the_demo || wholes.windows(2).any(|w| w[0].is_subset(set) && set.is_subset(&w[1]));
        assert!(whole, "generation {generation}: {} producers is not a set the server held", set.len());
    }
    assert_eq!(seen.last().unwrap().1, expected, "ends with exactly the server's set");

    let log = collector.stderr();
    let delays: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("delay_ms=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    eprintln!("figure: {} reconnect delays, max {:?} ms (cap {CAP_MS})", delays.len(), delays.iter().max());
    assert!(delays.len() >= 5, "{log}");
    assert!(delays.iter().all(|d| *d <= CAP_MS), "a delay above the cap: {delays:?}");
}
