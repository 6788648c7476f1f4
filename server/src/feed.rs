//! The assignment feed's server side: snapshots cut into bounded chunks (S2), and the task that serves one
//! collector's `Watch` stream (S3–S6).
//!
//! A [`Snapshot`] is built once per generation and shared (`Arc`) by every stream of that collector; chunks are
//! made from it as they are sent, so a stream holds at most the chunks in its small output channel. A slow or
//! stuck reader blocks only its own task, on its own channel; the registry never waits for it. When the task is
//! ready again it asks for the latest generation's snapshot, so intermediate generations are skipped rather
//! than queued (S4).

use std::{
    ops::Range,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use roster::{
    domain::WatchParams,
    message_limit::{self, PAGE_BYTES},
    pb::{self, watch_response::Frame},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, info};
use uuid::Uuid;

use crate::{
    registry::{Attached, RegistryHandle},
    wire::WatchFrame,
};

/// Bounds of one chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Most producers in one chunk.
    pub max_producers: usize,
    /// Most encoded bytes of producers in one chunk (kept well below gRPC's 4 MiB message limit).
    pub max_bytes: usize,
}

impl Default for ChunkLimits {
    /// 1000 producers, and the byte budget of every answer sent in parts ([`PAGE_BYTES`]).
    fn default() -> Self {
        Self { max_producers: 1000, max_bytes: PAGE_BYTES }
    }
}

/// One collector's whole assignment at one generation, ready to be sent as chunks.
#[derive(Debug)]
pub struct Snapshot {
    /// The store's epoch.
    pub epoch: Uuid,
    /// The generation.
    pub generation: u64,
    /// Whether the store was still settling when this was built.
    pub settling: bool,
    producers: Vec<pb::AssignedProducer>,
    chunks: Vec<Chunk>,
    digest: u64,
}

/// Which producers one chunk carries, and the exact size of their encoded entries.
#[derive(Debug)]
struct Chunk {
    producers: Range<usize>,
    entry_bytes: usize,
}

/// The protobuf key (field number, wire type 2: length-delimited) of a field that holds a message. Keys of fields
/// numbered below 16 take one byte (protobuf encoding spec, "Message Structure").
const fn message_key(field: u8) -> u8 {
    (field << 3) | 2
}

/// `WatchResponse.chunk` is field 1 and `SnapshotChunk.producers` field 4 of `proto/roster/v1/feed.proto`; the
/// feed's tests check that a chunk encoded with these is byte for byte prost's encoding of the same message.
const WATCH_RESPONSE_CHUNK_KEY: u8 = message_key(1);
const SNAPSHOT_CHUNK_PRODUCERS_KEY: u8 = message_key(4);

/// The encoded size of one `producers` entry: key, length, message.
fn entry_len(producer: &pb::AssignedProducer) -> usize {
    message_limit::entry_len(producer.encoded_len())
}

impl Snapshot {
    /// Cuts `producers` (ordered by id) into chunks within `limits`. An empty assignment is one empty chunk.
    pub fn build(
        epoch: Uuid,
        generation: u64,
        settling: bool,
        producers: Vec<pb::AssignedProducer>,
        limits: ChunkLimits,
    ) -> Self {
        let mut chunks = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, p) in producers.iter().enumerate() {
            let size = entry_len(p);
            if i > start && (i - start >= limits.max_producers.max(1) || bytes + size > limits.max_bytes) {
                chunks.push(Chunk { producers: start..i, entry_bytes: bytes });
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        chunks.push(Chunk { producers: start..producers.len(), entry_bytes: bytes });
        let digest = roster::snapshot::digest(&producers);
        Self { epoch, generation, settling, producers, chunks, digest }
    }

    /// How many chunks the snapshot is sent as.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The producers, in order.
    pub fn producers(&self) -> &[pb::AssignedProducer] {
        &self.producers
    }

    /// Chunk `index` without its producers: the fields around them.
    fn chunk_header(&self, index: usize) -> pb::SnapshotChunk {
        let complete = index + 1 == self.chunks.len();
        pb::SnapshotChunk {
            epoch: self.epoch.to_string(),
            generation: self.generation,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            producers: Vec::new(),
            complete,
            chunk_count: if complete { u32::try_from(self.chunks.len()).unwrap_or(u32::MAX) } else { 0 },
            producer_count: if complete { self.producers.len() as u64 } else { 0 },
            digest: if complete { self.digest } else { 0 },
            store_settling: complete && self.settling,
        }
    }

    /// Chunk `index` as a typed message (a copy of its producers).
    pub fn chunk(&self, index: usize) -> pb::SnapshotChunk {
        pb::SnapshotChunk {
            producers: self.producers[self.chunks[index].producers.clone()].to_vec(),
            ..self.chunk_header(index)
        }
    }

    /// Chunk `index` as an encoded `WatchResponse`, written straight from the shared producers: no copy of them is
    /// made, which a typed frame would need.
    ///
    /// prost writes a message's fields in field-number order, so the header is written in two halves around the
    /// producers (`epoch`, `generation`, `index` before field 4; the rest after it): the bytes are exactly what
    /// prost writes for [`Snapshot::chunk`].
    pub fn encoded_chunk(&self, index: usize) -> Bytes {
        let header = self.chunk_header(index);
        let before = pb::SnapshotChunk {
            epoch: header.epoch,
            generation: header.generation,
            index: header.index,
            ..Default::default()
        };
        let after = pb::SnapshotChunk { epoch: String::new(), generation: 0, index: 0, ..header };
        let chunk = &self.chunks[index];
        let chunk_len = before.encoded_len() + chunk.entry_bytes + after.encoded_len();
        let mut buf = BytesMut::with_capacity(1 + prost::length_delimiter_len(chunk_len) + chunk_len);
        buf.put_u8(WATCH_RESPONSE_CHUNK_KEY);
        // Writing into a BytesMut, which grows, cannot run out of room: these never fail.
        let _ = prost::encode_length_delimiter(chunk_len, &mut buf);
        let _ = before.encode(&mut buf);
        for producer in &self.producers[chunk.producers.clone()] {
            buf.put_u8(SNAPSHOT_CHUNK_PRODUCERS_KEY);
            let _ = producer.encode_length_delimited(&mut buf);
        }
        let _ = after.encode(&mut buf);
        buf.freeze()
    }
}

/// Settings of one feed stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Idle time after which a heartbeat is sent (S5).
    pub heartbeat: Duration,
    /// Cancelled when the server shuts down (S6).
    pub shutdown: CancellationToken,
    /// Feed streams open now, across the server.
    pub open: Arc<OpenStreams>,
    /// On shutdown, the collectors are asked to come back spread over a window of `open / reconnect_rate`
    /// seconds (at most [`MAX_RECONNECT_SPREAD`]), so a restart is not met by the whole fleet at once.
    pub reconnect_rate: u32,
}

/// The count of open feed streams, and the count when shutdown began.
#[derive(Debug, Default)]
pub struct OpenStreams {
    now: AtomicUsize,
    at_shutdown: OnceLock<usize>,
}

impl OpenStreams {
    /// The reconnect window for a shutdown, from the number of streams open when the first one ended: every
    /// stream gets the same window, however many have ended since.
    pub fn shutdown_window(&self, rate: u32) -> Duration {
        reconnect_spread(*self.at_shutdown.get_or_init(|| self.now.load(Ordering::Relaxed)), rate)
    }
}

/// The widest window over which collectors are asked to come back after a shutdown.
pub const MAX_RECONNECT_SPREAD: Duration = Duration::from_secs(10);

/// The window over which `open` collectors should come back, for at most `rate` reconnects per second.
pub fn reconnect_spread(open: usize, rate: u32) -> Duration {
    let seconds = open as f64 / f64::from(rate.max(1));
    Duration::from_secs_f64(seconds).min(MAX_RECONNECT_SPREAD)
}

/// Frames queued per stream: small, so a stuck reader holds little memory.
pub const STREAM_BUFFER: usize = 2;

/// Why a stream task stopped sending.
enum Stop {
    ClientGone,
    Shutdown,
}

type Out = mpsc::Sender<Result<WatchFrame, Status>>;

async fn send(out: &Out, frame: impl Into<WatchFrame>, shutdown: &CancellationToken) -> Result<(), Stop> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Stop::Shutdown),
        sent = out.send(Ok(frame.into())) => sent.map_err(|_| Stop::ClientGone),
    }
}

async fn send_snapshot(out: &Out, snapshot: &Snapshot, shutdown: &CancellationToken) -> Result<(), Stop> {
    for index in 0..snapshot.chunk_count() {
        send(out, WatchFrame::Encoded(snapshot.encoded_chunk(index)), shutdown).await?;
    }
    debug!(
        generation = snapshot.generation,
        chunks = snapshot.chunk_count(),
        producers = snapshot.producers.len(),
        "snapshot sent"
    );
    Ok(())
}

/// Serves one `Watch` stream until the client goes away or the server shuts down.
pub async fn serve(params: WatchParams, attached: Attached, registry: RegistryHandle, out: Out, config: StreamConfig) {
    let Attached { mut generations, rejected, guard } = attached;
    let _open = OpenStream::new(&config.open);
    let shutdown = &config.shutdown;
    let collector = params.collector;
    let fetch = |registry: &RegistryHandle| {
        let registry = registry.clone();
        async move { registry.snapshot(collector).await.map_err(|_| Stop::Shutdown) }
    };
    let result = async {
        generations.borrow_and_update();
        let current: Arc<Snapshot> = fetch(&registry).await?;
        let mut sent = current.generation;
        let current_id = (current.epoch, current.generation);
        if params.known == Some(current_id) {
            send(
                &out,
                Frame::InSync(pb::InSync { epoch: current.epoch.to_string(), generation: current.generation }),
                shutdown,
            )
            .await?;
        } else if rejected == Some(current.generation) && params.known.is_some() {
            // C4 holds back a rejected generation from a client that keeps another snapshot in force. A client
            // with none (a new or wiped data directory under a known id) must get the current one, or it would
            // collect nothing until the next change.
            info!(generation = current.generation, "collector rejected its current generation; not resending it (C4)");
            send(&out, heartbeat(&current), shutdown).await?;
        } else {
            send_snapshot(&out, &current, shutdown).await?;
        }
        let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + config.heartbeat, config.heartbeat);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut latest = current;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = out.closed() => return Err(Stop::ClientGone),
                changed = generations.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Shutdown);
                    }
                    generations.borrow_and_update();
                    latest = fetch(&registry).await?;
                    // The snapshot fetched may be newer than the notice; a later notice may then name it again.
                    if latest.generation > sent {
                        send_snapshot(&out, &latest, shutdown).await?;
                        sent = latest.generation;
                        idle.reset();
                    }
                }
                _ = idle.tick() => {
                    send(&out, heartbeat(&latest), shutdown).await?;
                }
            }
        }
    }
    .await;
    match result {
        Err(Stop::Shutdown) => {
            // S6: tell the collector to reconnect, and when: a random point of the spread window, in gRPC's own
            // retry pushback header, so the fleet comes back spread out rather than all at once. A small fleet's
            // window is a few milliseconds: "at once". A stuck reader may never take it; don't wait long.
            let window = config.open.shutdown_window(config.reconnect_rate);
            let pushback = rand::random_range(0..=u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-retry-pushback-ms", pushback.into());
            let status = Status::with_metadata(
                tonic::Code::Unavailable,
                format!(
                    "roster-server is shutting down; reconnect in {pushback} ms (grpc-retry-pushback-ms) to this or \
                     another server"
                ),
                metadata,
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), out.send(Err(status))).await;
            info!("feed stream ended: server shutting down");
        }
        Err(Stop::ClientGone) | Ok(()) => info!("feed stream ended: collector went away"),
    }
    drop(guard);
}

/// Counts one open stream for as long as it lives.
struct OpenStream(Arc<OpenStreams>);

impl OpenStream {
    fn new(open: &Arc<OpenStreams>) -> Self {
        open.now.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

fn heartbeat(snapshot: &Snapshot) -> Frame {
    Frame::Heartbeat(pb::Heartbeat { epoch: snapshot.epoch.to_string(), generation: snapshot.generation })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn producers(n: usize, label_bytes: usize) -> Vec<pb::AssignedProducer> {
        (0..n)
            .map(|i| pb::AssignedProducer {
                id: Uuid::from_u128(i as u128).to_string(),
                address: format!("10.0.0.1:{}", 1000 + i % 50_000),
                interval_ms: 1000,
                labels: [("big".to_string(), "x".repeat(label_bytes))].into(),
            })
            .collect()
    }

    #[test]
    fn every_stream_ended_by_a_shutdown_gets_the_window_of_the_whole_fleet() {
        let open = Arc::new(OpenStreams::default());
        let streams: Vec<_> = (0..1000).map(|_| OpenStream::new(&open)).collect();
        let mut windows = Vec::new();
        for stream in streams {
            windows.push(open.shutdown_window(200));
            drop(stream);
        }
        assert!(windows.iter().all(|w| *w == Duration::from_secs(5)), "{:?}", windows.last());
        assert_eq!(open.now.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_reconnect_window_grows_with_the_fleet_up_to_its_cap() {
        assert_eq!(reconnect_spread(0, 200), Duration::ZERO);
        assert_eq!(reconnect_spread(1, 200), Duration::from_millis(5));
        assert_eq!(reconnect_spread(1000, 200), Duration::from_secs(5));
        assert_eq!(reconnect_spread(1_000_000, 200), MAX_RECONNECT_SPREAD);
        assert_eq!(reconnect_spread(10, 0), Duration::from_secs(10), "a zero rate is taken as 1 per second");
    }

    #[test]
    fn chunks_respect_both_bounds_and_cover_everything_once() {
        for (n, label_bytes, limits) in [
            (0, 0, ChunkLimits::default()),
            (1, 0, ChunkLimits::default()),
            (2500, 0, ChunkLimits::default()),
            (3000, 250, ChunkLimits { max_producers: 1000, max_bytes: 64 * 1024 }),
        ] {
            let snapshot = Snapshot::build(Uuid::nil(), 3, false, producers(n, label_bytes), limits);
            let mut seen = 0;
            for i in 0..snapshot.chunk_count() {
                let chunk = snapshot.chunk(i);
                assert_eq!(chunk.encoded_len() - chunk_header_len(&chunk), snapshot.chunks[i].entry_bytes);
                assert_eq!(chunk.index as usize, i);
                assert!(chunk.producers.len() <= limits.max_producers);
                assert!(chunk.encoded_len() <= limits.max_bytes + 200, "chunk {i} is {} bytes", chunk.encoded_len());
                assert_eq!(chunk.complete, i + 1 == snapshot.chunk_count());
                seen += chunk.producers.len();
            }
            let last = snapshot.chunk(snapshot.chunk_count() - 1);
            assert_eq!(last.producer_count as usize, n);
            assert_eq!(last.chunk_count as usize, snapshot.chunk_count());
            assert_eq!(last.digest, roster::snapshot::digest(snapshot.producers()));
            assert_eq!(seen, n);
        }
    }

    fn chunk_header_len(chunk: &pb::SnapshotChunk) -> usize {
        pb::SnapshotChunk { producers: Vec::new(), ..chunk.clone() }.encoded_len()
    }

    fn typed_frame(chunk: pb::SnapshotChunk) -> Vec<u8> {
        pb::WatchResponse { frame: Some(Frame::Chunk(chunk)) }.encode_to_vec()
    }

    fn producer() -> impl Strategy<Value = pb::AssignedProducer> {
        (
            any::<u128>(),
            "[a-z0-9.-]{1,40}",
            any::<u16>(),
            any::<u32>(),
            prop::collection::btree_map("[a-z_]{1,8}", ".{0,300}", 0..4),
        )
            .prop_map(|(id, host, port, interval_ms, labels)| pb::AssignedProducer {
                id: Uuid::from_u128(id).to_string(),
                address: format!("{host}:{port}"),
                interval_ms,
                labels,
            })
    }

    proptest! {
        /// The encoded chunk is prost's own encoding of the typed chunk, byte for byte, whatever the producers, the
        /// chunking and the header values (zeros are omitted on the wire, so each may or may not be written).
        #[test]
        fn an_encoded_chunk_is_exactly_prosts_encoding_of_the_typed_one(
            mut entries in prop::collection::vec(producer(), 0..120),
            generation in prop_oneof![Just(0u64), any::<u64>()],
            epoch in any::<u128>(),
            settling in any::<bool>(),
            max_producers in 1usize..50,
            max_bytes in 1usize..20_000,
        ) {
            entries.sort_by(|a, b| a.id.cmp(&b.id));
            let snapshot = Snapshot::build(
                Uuid::from_u128(epoch), generation, settling, entries, ChunkLimits { max_producers, max_bytes },
            );
            for i in 0..snapshot.chunk_count() {
                let encoded = snapshot.encoded_chunk(i);
                prop_assert_eq!(&encoded[..], &typed_frame(snapshot.chunk(i))[..], "chunk {}", i);
            }
        }
    }
}
