//! The limit: a bare tonic server streaming, from memory, the very chunks roster-server sent, to bare clients
//! that only decode them (no store, no registry, no assembly, no state file, no report).
//!
//! [`capture`] records what roster-server sends one collector, as encoded bytes; [`BareFeed`] serves those bytes
//! as `roster.v1.AssignmentFeed/Watch` on a port of its own, through roster-server's own feed codec, so that each
//! frame costs it one copy onto the stream and nothing else; [`read_all`] times clients reading them to the
//! complete chunk. A full sync by roster is then reported as a ratio to this.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use prost::Message as _;
use roster::pb::{self, assignment_feed_client::AssignmentFeedClient, watch_response::Frame};
use roster_server::wire::{
    WatchFrame,
    feed_server::assignment_feed_server::{AssignmentFeed, AssignmentFeedServer},
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// What roster-server sent one collector for its current snapshot, frame by frame, encoded. prost's encoding is
/// canonical, so re-encoding a received frame gives the bytes that were sent.
pub type Recording = Arc<Vec<Bytes>>;

/// Records the chunks roster-server sends `collector` from a fresh Watch, up to the complete one.
///
/// # Errors
/// When the Watch fails or ends before the complete chunk.
pub async fn capture(url: &str, collector: &str) -> anyhow::Result<Recording> {
    let mut client = AssignmentFeedClient::new(crate::channel(url).await?).max_decoding_message_size(8 << 20);
    let request = pb::WatchRequest { collector_id: collector.to_owned(), ..Default::default() };
    let mut stream = client.watch(request).await?.into_inner();
    let mut frames = Vec::new();
    while let Some(message) = stream.message().await? {
        if let Some(Frame::Chunk(chunk)) = &message.frame {
            let complete = chunk.complete;
            frames.push(Bytes::from(message.encode_to_vec()));
            if complete {
                return Ok(Arc::new(frames));
            }
        }
    }
    bail!("the Watch of {collector} ended before its complete chunk")
}

/// Encoded bytes of recordings, as they go on the wire (without gRPC framing).
pub fn bytes(recordings: &[Recording]) -> usize {
    recordings.iter().flat_map(|r| r.iter()).map(Bytes::len).sum()
}

/// Serves recordings by collector id.
#[derive(Debug, Clone, Default)]
pub struct BareFeed {
    /// The recording each collector id gets.
    pub recordings: Arc<HashMap<String, Recording>>,
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<WatchFrame, Status>> + Send>>;

#[tonic::async_trait]
impl AssignmentFeed for BareFeed {
    type WatchStream = FrameStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let recording = self.recordings.get(&request.get_ref().collector_id).cloned().unwrap_or_default();
        let frames = (0..recording.len()).map(move |i| Ok(WatchFrame::Encoded(recording[i].clone())));
        Ok(Response::new(Box::pin(tokio_stream::iter(frames))))
    }

    async fn report_applied(
        &self,
        _request: Request<pb::ReportAppliedRequest>,
    ) -> Result<Response<pb::ReportAppliedResponse>, Status> {
        Ok(Response::new(pb::ReportAppliedResponse::default()))
    }
}

/// Serves `feed` on an OS-chosen port of 127.0.0.1, in this process, until the returned task is dropped.
///
/// # Errors
/// When no port can be bound.
pub async fn serve(feed: BareFeed) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = AssignmentFeedServer::new(feed).max_encoding_message_size(8 << 20);
    let task = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
    });
    Ok((addr, task))
}

/// Bare clients, one connection each, read every collector's recording to its complete chunk, all at once;
/// returns the time until the last is done.
///
/// # Errors
/// When a client fails or a stream ends early.
pub async fn read_all(addr: SocketAddr, collectors: &[String]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for collector in collectors {
        let (url, collector) = (format!("http://{addr}"), collector.clone());
        tasks.spawn(async move {
            let channel = crate::channel(&url).await?;
            let mut client = AssignmentFeedClient::new(channel).max_decoding_message_size(8 << 20);
            let request = pb::WatchRequest { collector_id: collector, ..Default::default() };
            let mut stream = client.watch(request).await?.into_inner();
            while let Some(message) = stream.message().await? {
                if matches!(message.frame, Some(Frame::Chunk(ref c)) if c.complete) {
                    return Ok(());
                }
            }
            anyhow::bail!("a bare stream ended before its complete chunk")
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("bare client task")??;
    }
    Ok(start.elapsed())
}
