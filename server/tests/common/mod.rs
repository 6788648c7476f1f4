//! Test harness shared by the server's integration tests: a server on port 0 with its shutdown passed in, typed
//! clients, and readers that check every frame against the feed rules (S2, C1) as they assemble snapshots.

// Test helpers: a panic here is the test failing, with its message.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use roster::pb::{
    self, assignment_feed_client::AssignmentFeedClient, registry_client::RegistryClient, watch_response::Frame,
};
use roster_server::{Config, clock::ManualClock};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Streaming, transport::Channel};
use uuid::Uuid;

pub use roster_testkit::register_all;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), roster_server::ServerError>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(roster_server::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task }
    }

    /// Shuts the server down and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task).await.expect("server stops in time").unwrap().unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A registry client on its own connection.
    pub async fn registry(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel().await)
    }

    /// A feed client on its own connection (as each collector would have).
    pub async fn feed(&self) -> AssignmentFeedClient<Channel> {
        AssignmentFeedClient::new(self.channel().await)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.unwrap()
    }
}

/// A config for a test: store in `dir`, fast sweeps, and a manual clock the test moves.
pub fn config(dir: &Path) -> (Config, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut config = Config::new(dir);
    config.clock = clock.clone();
    config.sweep_interval = Duration::from_millis(20);
    (config, clock)
}

pub fn producer(id: Uuid, port: u16) -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest {
        producer_id: id.to_string(),
        address: format!("127.0.0.1:{port}"),
        interval_ms: 1000,
        ..Default::default()
    }
}

pub fn pinned(id: Uuid, port: u16, collector: Uuid) -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest { pinned_collector_id: collector.to_string(), ..producer(id, port) }
}

/// A fully assembled snapshot, checked against S2 and C1.
#[derive(Debug, Clone)]
pub struct Snap {
    pub epoch: String,
    pub generation: u64,
    pub producers: Vec<pb::AssignedProducer>,
    pub chunks: Vec<pb::SnapshotChunk>,
    pub settling: bool,
}

impl Snap {
    pub fn ids(&self) -> Vec<String> {
        self.producers.iter().map(|p| p.id.clone()).collect()
    }
}

pub async fn watch(
    feed: &mut AssignmentFeedClient<Channel>,
    collector: Uuid,
    known: Option<(&str, u64)>,
) -> Streaming<pb::WatchResponse> {
    let request = pb::WatchRequest {
        collector_id: collector.to_string(),
        known_epoch: known.map(|k| k.0.to_string()).unwrap_or_default(),
        known_generation: known.map_or(0, |k| k.1),
        ..Default::default()
    };
    feed.watch(request).await.unwrap().into_inner()
}

/// The next frame, within [`WAIT`].
pub async fn next_frame(stream: &mut Streaming<pb::WatchResponse>) -> Frame {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a frame within the wait limit")
        .expect("the stream did not fail")
        .expect("the stream did not end")
        .frame
        .expect("a frame is set")
}

/// The next complete snapshot; heartbeats are skipped, anything else that breaks the rules fails the test.
pub async fn next_snapshot(stream: &mut Streaming<pb::WatchResponse>) -> Snap {
    let mut chunks: Vec<pb::SnapshotChunk> = Vec::new();
    loop {
        match next_frame(stream).await {
            Frame::Heartbeat(_) => continue,
            Frame::InSync(s) => panic!("expected a snapshot, got in-sync {s:?}"),
            Frame::Chunk(chunk) => {
                assert_eq!(chunk.index as usize, chunks.len(), "chunk indices run 0..n-1");
                if let Some(first) = chunks.first() {
                    assert_eq!(
                        (&chunk.epoch, chunk.generation),
                        (&first.epoch, first.generation),
                        "one generation per snapshot"
                    );
                }
                let complete = chunk.complete;
                chunks.push(chunk);
                if complete {
                    let last = chunks.last().unwrap();
                    let producers: Vec<_> = chunks.iter().flat_map(|c| c.producers.clone()).collect();
                    assert_eq!(last.chunk_count as usize, chunks.len());
                    assert_eq!(last.producer_count as usize, producers.len());
                    assert_eq!(last.digest, roster::snapshot::digest(&producers), "digest matches");
                    let mut ids: Vec<_> = producers.iter().map(|p| p.id.clone()).collect();
                    let sorted = ids.clone();
                    ids.sort();
                    ids.dedup();
                    assert_eq!(ids, sorted, "producers ordered by id, no duplicates");
                    return Snap {
                        epoch: last.epoch.clone(),
                        generation: last.generation,
                        settling: last.store_settling,
                        producers,
                        chunks,
                    };
                }
            }
        }
    }
}

/// Polls `check` (every 10 ms, up to [`WAIT`]) until it returns `Some`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every producer, through every page.
pub async fn list_all(registry: &mut RegistryClient<Channel>) -> Vec<pb::ProducerInfo> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = registry
            .list_producers(pb::ListProducersRequest { page_size: Some(1000), page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.producers);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}
