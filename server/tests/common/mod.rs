//! Harness of the server's integration tests: configs with a manual clock, registration requests, and readers that
//! check every frame against the feed rules (S2, C1) as they assemble snapshots. The in-process server and the
//! bounded waits come from `roster-testkit`.

// Test helpers: a panic here is the test failing, with its message.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc, time::Duration};

use roster::pb::{
    self, assignment_feed_client::AssignmentFeedClient, registry_client::RegistryClient, watch_response::Frame,
};
use roster_server::{Config, clock::ManualClock};
use tonic::{Streaming, transport::Channel};
use uuid::Uuid;

pub use roster_testkit::{TestServer, WAIT, register_all, wait_for_some};

/// A config for a test: store in `dir`, fast sweeps, and a manual clock the test moves.
pub fn config(dir: &Path) -> (Config, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut config = Config::new(dir);
    config.clock = clock.clone();
    config.sweep_interval = Duration::from_millis(20);
    // These tests move the clock in jumps to stand for time passing while the server serves; a jump must not be
    // taken for the server's own absence (which `absence_and_clock_steps` tests on its own).
    config.absence_threshold = Duration::from_secs(365 * 86_400);
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

/// The server's metrics page, read with a bare HTTP/1.0 request.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut connection = tokio::net::TcpStream::connect(addr).await.unwrap();
    connection.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").await.unwrap();
    let mut page = String::new();
    connection.read_to_string(&mut page).await.unwrap();
    page
}
