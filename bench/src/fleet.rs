//! Many followers in this process (each with its own connection), and bulk registration.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;
use roster::{
    domain::CollectorId,
    follower::{Follower, FollowerConfig, FollowerHandle},
};
use tokio_util::sync::CancellationToken;

/// Followers of one server, one per collector id.
#[derive(Debug)]
pub struct Fleet {
    /// Their handles, in the order of `ids`.
    pub handles: Vec<FollowerHandle>,
    /// Their collector ids.
    pub ids: Vec<CollectorId>,
    shutdown: CancellationToken,
}

impl Fleet {
    /// Starts a follower per id on `endpoint`; with `state_dir`, each keeps a state file there (C5).
    ///
    /// # Errors
    /// When a follower cannot be made (bad endpoint, damaged state file).
    pub fn start(endpoint: &str, ids: Vec<CollectorId>, state_dir: Option<&Path>) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let mut handles = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut config = FollowerConfig::new(vec![endpoint.parse()?], *id);
            config.state_file = state_dir.map(|dir| dir.join(format!("snapshot-{id}.bin")));
            let (follower, handle) = Follower::new(config)?;
            tokio::spawn(follower.run(shutdown.clone()));
            handles.push(handle);
        }
        Ok(Self { handles, ids, shutdown })
    }

    /// New random collector ids.
    pub fn random_ids(count: usize) -> Vec<CollectorId> {
        (0..count).map(|_| CollectorId::new_random()).collect()
    }

    /// Polls every millisecond until `check` holds for the fleet; returns how long that took.
    ///
    /// # Errors
    /// When it does not hold within `limit`.
    pub async fn wait(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&[FollowerHandle]) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while !check(&self.handles) {
            if start.elapsed() > limit {
                bail!("{what}: not reached within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(start.elapsed())
    }

    /// Producers applied across the fleet.
    pub fn applied_producers(handles: &[FollowerHandle]) -> usize {
        handles.iter().map(|h| h.applied.borrow().as_ref().map_or(0, |s| s.targets.len())).sum()
    }

    /// Stops every follower.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Registers `count` never-due producers with `clients` concurrent clients, each on its own connection; returns
/// the acknowledged ids and the time the registrations took.
///
/// # Errors
/// When a client cannot connect or a registration fails.
pub async fn register_many(url: &str, count: usize, clients: usize) -> anyhow::Result<(Vec<String>, Duration)> {
    roster_testkit::register_many(url, count, clients).await.map_err(|e| anyhow::anyhow!("bulk registration: {e}"))
}
