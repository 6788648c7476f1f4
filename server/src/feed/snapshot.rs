//! A collector's assignment at one generation, cut into bounded chunks (S2): pure, built by the registry once
//! per generation and shared (`Arc`) by every stream of that collector.
//!
//! Chunks are made from the shared [`Snapshot`] as they are sent, and [`Snapshot::encoded_chunk`] writes one
//! straight into bytes, so a stream holds at most the chunks in its small output channel and no copy of the
//! producers is made. The last chunk carries the counts and the digest a collector checks the whole snapshot
//! against.

use std::ops::Range;

use bytes::{BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use roster::{message_limit, pb};
use uuid::Uuid;

/// Bounds of one chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Most producers in one chunk.
    pub max_producers: usize,
    /// Most encoded bytes of producers in one chunk (kept well below gRPC's 4 MiB message limit).
    pub max_bytes: usize,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use roster::{message_limit::PAGE_BYTES, pb::watch_response::Frame};

    use super::*;

    fn producers(n: usize, label_bytes: usize) -> Vec<pb::AssignedProducer> {
        (0..n)
            .map(|i| pb::AssignedProducer {
                id: Uuid::from_u128(i as u128).to_string(),
                address: format!("10.0.0.1:{}", 1000 + i % 50_000),
                interval_ms: 1000,
                labels: [("big".to_string(), "x".repeat(label_bytes))].into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn chunks_respect_both_bounds_and_cover_everything_once() {
        // The server's default bounds, and tighter ones.
        let default = ChunkLimits { max_producers: 1000, max_bytes: PAGE_BYTES };
        for (n, label_bytes, limits) in [
            (0, 0, default),
            (1, 0, default),
            (2500, 0, default),
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
            prop::option::of(("https?", "/[a-z/]{0,20}", prop::option::of(any::<u32>()))),
        )
            .prop_map(|(id, host, port, interval_ms, labels, prometheus)| pb::AssignedProducer {
                id: Uuid::from_u128(id).to_string(),
                address: format!("{host}:{port}"),
                interval_ms,
                labels,
                kind: if prometheus.is_some() { pb::ProducerKind::Prometheus as i32 } else { 0 },
                prometheus: prometheus.map(|(scheme, metrics_path, scrape_timeout_ms)| pb::PrometheusTarget {
                    scheme,
                    metrics_path,
                    scrape_timeout_ms,
                }),
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
