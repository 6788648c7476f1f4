//! A reconnect storm: 200 followers (the library's own `Follower`, in this process) watch a real roster-server
//! through a counting proxy; the server is stopped and started again. The proxy records every connection attempt,
//! so the test reports the attempts per second the server's port saw and the time until all 200 are back in sync.
//! They must come back spread out: the server asks each stream it ends to come back at a random point of a window
//! sized to the fleet (`grpc-retry-pushback-ms`), so no 100 ms window may carry half of the fleet.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{register_many, start_server, wait_fleet_in_sync};
use roster::{
    domain::CollectorId,
    follower::{Follower, FollowerConfig},
};
use roster_testkit::{FaultProxy, per_window};
use tokio_util::sync::CancellationToken;

const FOLLOWERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_200_followers_is_met_by_spread_out_reconnects_and_all_converge() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (mut server, listen) = start_server(&server_dir, None);
    let url = format!("http://{listen}");
    register_many(&url, 2_000).await;
    let proxy = FaultProxy::start(listen.parse().unwrap()).await;

    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..FOLLOWERS {
        let config = FollowerConfig::new(vec![proxy.url().parse().unwrap()], CollectorId::new_random());
        let (follower, handle) = Follower::new(config).unwrap();
        tokio::spawn(follower.run(shutdown.clone()));
        handles.push(handle);
    }
    wait_fleet_in_sync(&url, FOLLOWERS, "first sync").await;
    let before = proxy.accepted_at().len();

    let stopped = Instant::now();
    server.signal("-TERM");
    tokio::task::spawn_blocking(move || server.wait_exit()).await.unwrap();
    let (_server, _) = start_server(&server_dir, Some(&listen));
    let up = Instant::now();
    let converged = wait_fleet_in_sync(&url, FOLLOWERS, "after the restart").await;

    let attempts: Vec<Instant> = proxy.accepted_at()[before..].to_vec();
    let per_second = per_window(&attempts, stopped, Duration::from_secs(1));
    let per_100ms = per_window(&attempts, stopped, Duration::from_millis(100));
    let peak_100ms = per_100ms.values().copied().max().unwrap_or(0);
    eprintln!(
        "figure: storm of {FOLLOWERS}: server down {:?}; {} attempts, per second from the stop: {:?}; \
         peak {peak_100ms} in 100 ms; all in sync {converged:?} after the restart",
        up - stopped,
        attempts.len(),
        per_second.values().collect::<Vec<_>>(),
    );
    assert!(attempts.len() >= FOLLOWERS, "every follower came back");
    assert!(peak_100ms <= FOLLOWERS / 2, "reconnects bunched: {peak_100ms} of {FOLLOWERS} in one 100 ms window");
    assert!(handles.iter().all(|h| h.applied.borrow().as_ref().is_some_and(|s| s.targets.len() < 2_000)));
    shutdown.cancel();
}
