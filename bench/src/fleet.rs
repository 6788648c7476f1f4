//! Many followers in this process (each with its own connection), watchers standing in for collectors that run
//! elsewhere, and bulk registration.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use roster::{
    domain::CollectorId,
    endpoint::ServerUrl,
    follower::{
        Follower, FollowerConfig, FollowerHandle,
        wire::{WireFrame, WireResponse},
    },
    pb::{self, assignment_feed_client::AssignmentFeedClient},
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
    /// Starts a follower per id on `endpoints` (comma-separated, as roster-collector's `--server`: each follower
    /// starts on the first and moves to the next when one fails); with `state_dir`, each keeps a state file there
    /// (C5).
    ///
    /// # Errors
    /// When a follower cannot be made (bad endpoint, damaged state file).
    pub fn start(endpoints: &str, ids: Vec<CollectorId>, state_dir: Option<&Path>) -> anyhow::Result<Self> {
        let endpoints: Vec<ServerUrl> = endpoints.split(',').map(str::parse).collect::<Result<_, _>>()?;
        let shutdown = CancellationToken::new();
        let mut handles = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut config = FollowerConfig::new(endpoints.clone(), *id);
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
    register_spread(&[url.to_owned()], count, clients).await
}

/// As [`register_many`], the `i`-th client connected to `urls[i % urls.len()]`: clients spread over replicas.
///
/// # Errors
/// When `urls` is empty, a client cannot connect or a registration fails.
pub async fn register_spread(urls: &[String], count: usize, clients: usize) -> anyhow::Result<(Vec<String>, Duration)> {
    roster_testkit::register_spread(urls, count, clients, roster_testkit::never_due)
        .await
        .map_err(|e| anyhow::anyhow!("bulk registration: {e}"))
}

/// Collectors watching from elsewhere, as the server sees them: one Watch stream per collector id, each on its own
/// connection, read without assembling (chunks decoded with their entries left encoded, as
/// `roster::follower::wire` reads them) and every complete snapshot reported applied. What a fleet whose
/// collectors run on other machines costs the server, without their assembly and state files on this one.
#[derive(Debug)]
pub struct RemoteWatchers {
    /// The producer count of each watcher's last complete snapshot.
    applied: Vec<Arc<AtomicUsize>>,
    shutdown: CancellationToken,
}

impl RemoteWatchers {
    /// Opens a stream per id, the `i`-th on `urls[i % urls.len()]`: spread over the replicas when there are
    /// several.
    ///
    /// # Errors
    /// When `urls` is empty, or a connection or a Watch fails.
    pub async fn start(urls: &[String], ids: &[CollectorId]) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "remote watchers need a server to watch");
        let shutdown = CancellationToken::new();
        let mut applied = Vec::with_capacity(ids.len());
        for (id, url) in ids.iter().zip(urls.iter().cycle()) {
            let channel = crate::channel(url).await?;
            let request = pb::WatchRequest { collector_id: id.to_string(), ..Default::default() };
            let mut stream = roster::follower::wire::watch(channel.clone(), request).await?;
            let mut feed = AssignmentFeedClient::new(channel);
            let (count, stop, collector_id) = (Arc::new(AtomicUsize::new(0)), shutdown.clone(), id.to_string());
            applied.push(count.clone());
            tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.message() => message,
                    };
                    let Ok(Some(WireResponse { frame: Some(WireFrame::Chunk(chunk)) })) = message else {
                        if matches!(message, Ok(Some(_))) {
                            continue;
                        }
                        return;
                    };
                    if chunk.complete {
                        count.store(usize::try_from(chunk.producer_count).unwrap_or(usize::MAX), Ordering::Relaxed);
                        let report = pb::ReportAppliedRequest {
                            collector_id: collector_id.clone(),
                            epoch: chunk.epoch,
                            generation: chunk.generation,
                            outcome: pb::ApplyOutcome::Applied.into(),
                            reason: String::new(),
                        };
                        if feed.report_applied(report).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        Ok(Self { applied, shutdown })
    }

    /// Producers in the watchers' last complete snapshots.
    pub fn applied_producers(&self) -> usize {
        self.applied.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Polls every millisecond until the watchers hold `total` producers.
    ///
    /// # Errors
    /// When they do not within `limit`.
    pub async fn wait_for(&self, total: usize, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.applied_producers() != total {
            if start.elapsed() > limit {
                bail!("remote watchers: {} of {total} producers applied after {limit:?}", self.applied_producers());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

impl Drop for RemoteWatchers {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
