//! A collector's assignment and its snapshots (S2): pure.
//!
//! The registry keeps each collector's [`Assignment`]: its producers ordered by id, each as an [`Entry`] encoded
//! once, when its producer registered or changed, and shared by reference. An assignment is a persistent map, so
//! the registry publishes a committed generation as a [`Published`] holding a clone of it, at the cost of a pointer
//! copy, and goes on with the next batch. The [`Snapshot`] of that generation is built outside the registry, by the
//! first stream that sends it, and shared (`Arc`) by every stream of that collector; a generation no stream sends
//! is never built. So the registry's time does not grow with the size of the assignments it changes.
//!
//! Chunks are written from the shared entries as they are sent, and [`Snapshot::encoded_chunk`] writes one
//! straight into bytes, so a stream holds at most the chunks in its small output channel and no copy of the
//! producers is made. The last chunk carries the counts and the digest a collector checks the whole snapshot
//! against.

use std::{
    fmt,
    ops::{Bound, Range},
    sync::{Arc, OnceLock},
};

use bytes::{BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use roster::{domain::ProducerId, pb};
use uuid::Uuid;

/// Bounds of one chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Most producers in one chunk.
    pub max_producers: usize,
    /// Most encoded bytes of producers in one chunk (kept well below gRPC's 4 MiB message limit).
    pub max_bytes: usize,
}

/// One producer's `AssignedProducer` as the feed sends it and the digest hashes it: encoded once, prefixed by its
/// length. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry(Arc<[u8]>);

impl Entry {
    /// Encodes `producer`.
    pub fn new(producer: &pb::AssignedProducer) -> Self {
        Self(producer.encode_length_delimited_to_vec().into())
    }

    /// The entry as a message again.
    ///
    /// # Errors
    /// Never for an entry made by [`Entry::new`]; prost's error otherwise.
    pub fn decode(&self) -> Result<pb::AssignedProducer, prost::DecodeError> {
        pb::AssignedProducer::decode_length_delimited(&self.0[..])
    }

    /// Its size in a chunk: the field's one-byte key, then the length and the message
    /// (`roster::message_limit::entry_len` of the message's size).
    fn chunk_len(&self) -> usize {
        1 + self.0.len()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("bytes", &self.0.len()).finish()
    }
}

/// One collector's producers, ordered by id, each with its [`Entry`]: a persistent B-tree (`imbl::OrdMap`), so a
/// clone takes O(1) and shares every node and entry, and a change copies only the nodes on its path (O(log n)).
#[derive(Clone, Default, Debug)]
pub struct Assignment(imbl::OrdMap<ProducerId, Entry>);

impl Assignment {
    /// Puts `id`'s entry in; returns the one it replaced.
    pub fn insert(&mut self, id: ProducerId, entry: Entry) -> Option<Entry> {
        self.0.insert(id, entry)
    }

    /// Takes `id` out; returns its entry.
    pub fn remove(&mut self, id: &ProducerId) -> Option<Entry> {
        self.0.remove(id)
    }

    /// `id`'s entry, if it is assigned here.
    pub fn get(&self, id: &ProducerId) -> Option<&Entry> {
        self.0.get(id)
    }

    /// How many producers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The producers' ids after `after` (or from the first), in order.
    pub fn ids_from(&self, after: Bound<ProducerId>) -> impl Iterator<Item = ProducerId> + '_ {
        self.0.range((after, Bound::Unbounded)).map(|(id, _)| *id)
    }

    /// The entries, in order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.0.values()
    }
}

impl FromIterator<(ProducerId, Entry)> for Assignment {
    fn from_iter<I: IntoIterator<Item = (ProducerId, Entry)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// One collector's assignment at one committed generation, as the registry publishes it: a clone of the
/// registry's [`Assignment`] (shared, not copied), and its [`Snapshot`], built when a stream first asks for it.
#[derive(Debug)]
pub struct Published {
    /// The store's epoch.
    pub epoch: Uuid,
    /// The generation.
    pub generation: u64,
    settling: bool,
    assignment: Assignment,
    limits: ChunkLimits,
    snapshot: OnceLock<Arc<Snapshot>>,
}

impl Published {
    /// The collector's `assignment` at `generation`, to be cut into chunks within `limits` when it is sent.
    pub fn new(epoch: Uuid, generation: u64, settling: bool, assignment: Assignment, limits: ChunkLimits) -> Self {
        Self { epoch, generation, settling, assignment, limits, snapshot: OnceLock::new() }
    }

    /// The snapshot of this generation: built by the first caller (outside the registry), shared by the others.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .get_or_init(|| {
                Arc::new(Snapshot::build(
                    self.epoch,
                    self.generation,
                    self.settling,
                    self.assignment.clone(),
                    self.limits,
                ))
            })
            .clone()
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
    assignment: Assignment,
    chunks: Vec<Chunk>,
    digest: u64,
}

/// Which producers one chunk carries, and the exact size of their encoded entries.
#[derive(Debug)]
struct Chunk {
    /// The id of its first producer (none in the one chunk of an empty snapshot).
    first: Option<ProducerId>,
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

impl Snapshot {
    /// Cuts `assignment` into chunks within `limits` and digests it: one walk over its entries, which are already
    /// encoded. An empty assignment is one empty chunk.
    pub fn build(epoch: Uuid, generation: u64, settling: bool, assignment: Assignment, limits: ChunkLimits) -> Self {
        let mut chunks = Vec::new();
        let mut digest = roster::snapshot::Digest::default();
        let (mut start, mut first, mut bytes) = (0, None, 0);
        for (i, (id, entry)) in assignment.0.iter().enumerate() {
            let size = entry.chunk_len();
            if i > start && (i - start >= limits.max_producers.max(1) || bytes + size > limits.max_bytes) {
                chunks.push(Chunk { first, producers: start..i, entry_bytes: bytes });
                (start, first, bytes) = (i, None, 0);
            }
            first = first.or(Some(*id));
            bytes += size;
            digest.update_encoded(&entry.0);
        }
        chunks.push(Chunk { first, producers: start..assignment.len(), entry_bytes: bytes });
        Self { epoch, generation, settling, assignment, chunks, digest: digest.finish() }
    }

    /// How many chunks the snapshot is sent as.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// How many producers it holds.
    pub fn producer_count(&self) -> usize {
        self.assignment.len()
    }

    /// Its digest (S2), as its complete chunk carries it.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The positions, in id order, of the producers chunk `index` carries.
    pub fn chunk_range(&self, index: usize) -> Range<usize> {
        self.chunks[index].producers.clone()
    }

    /// The entries of chunk `index`, in order.
    fn chunk_entries(&self, index: usize) -> impl Iterator<Item = &Entry> + '_ {
        let chunk = &self.chunks[index];
        let from = chunk.first.map_or(Bound::Unbounded, Bound::Included);
        self.assignment.0.range((from, Bound::Unbounded)).take(chunk.producers.len()).map(|(_, entry)| entry)
    }

    /// Chunk `index` without its producers: the fields around them.
    pub fn chunk_header(&self, index: usize) -> pb::SnapshotChunk {
        let complete = index + 1 == self.chunks.len();
        pb::SnapshotChunk {
            epoch: self.epoch.to_string(),
            generation: self.generation,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            producers: Vec::new(),
            complete,
            chunk_count: if complete { u32::try_from(self.chunks.len()).unwrap_or(u32::MAX) } else { 0 },
            producer_count: if complete { self.assignment.len() as u64 } else { 0 },
            digest: if complete { self.digest } else { 0 },
            store_settling: complete && self.settling,
        }
    }

    /// Chunk `index` as a typed message, its producers decoded from their entries.
    ///
    /// # Errors
    /// Never for entries made by [`Entry::new`]; prost's error otherwise.
    pub fn chunk(&self, index: usize) -> Result<pb::SnapshotChunk, prost::DecodeError> {
        let producers = self.chunk_entries(index).map(Entry::decode).collect::<Result<_, _>>()?;
        Ok(pb::SnapshotChunk { producers, ..self.chunk_header(index) })
    }

    /// Chunk `index` as an encoded `WatchResponse`, written straight from the shared entries: nothing is encoded
    /// again and no copy of the producers is made, which a typed frame would need.
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
        let chunk_len = before.encoded_len() + self.chunks[index].entry_bytes + after.encoded_len();
        let mut buf = BytesMut::with_capacity(1 + prost::length_delimiter_len(chunk_len) + chunk_len);
        buf.put_u8(WATCH_RESPONSE_CHUNK_KEY);
        // Writing into a BytesMut, which grows, cannot run out of room: these never fail.
        let _ = prost::encode_length_delimiter(chunk_len, &mut buf);
        let _ = before.encode(&mut buf);
        for entry in self.chunk_entries(index) {
            buf.put_u8(SNAPSHOT_CHUNK_PRODUCERS_KEY);
            buf.put_slice(&entry.0);
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

    /// The assignment holding `producers`, keyed by their ids.
    fn assignment(producers: &[pb::AssignedProducer]) -> Assignment {
        producers.iter().map(|p| (ProducerId::parse_accepted("id", &p.id).expect("a UUID"), Entry::new(p))).collect()
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
            let producers = producers(n, label_bytes);
            let snapshot = Snapshot::build(Uuid::nil(), 3, false, assignment(&producers), limits);
            let mut seen = 0;
            for i in 0..snapshot.chunk_count() {
                let chunk = snapshot.chunk(i).expect("entries decode");
                assert_eq!(chunk.producers, producers[snapshot.chunk_range(i)]);
                assert_eq!(chunk.encoded_len() - chunk_header_len(&chunk), snapshot.chunks[i].entry_bytes);
                assert_eq!(chunk.index as usize, i);
                assert!(chunk.producers.len() <= limits.max_producers);
                assert!(chunk.encoded_len() <= limits.max_bytes + 200, "chunk {i} is {} bytes", chunk.encoded_len());
                assert_eq!(chunk.complete, i + 1 == snapshot.chunk_count());
                seen += chunk.producers.len();
            }
            let last = snapshot.chunk(snapshot.chunk_count() - 1).expect("entries decode");
            assert_eq!(last.producer_count as usize, n);
            assert_eq!(last.chunk_count as usize, snapshot.chunk_count());
            assert_eq!(last.digest, roster::snapshot::digest(&producers));
            assert_eq!(snapshot.producer_count(), n);
            assert_eq!(seen, n);
        }
    }

    #[test]
    fn a_published_generation_is_built_once_and_stays_as_it_was_committed() {
        let limits = ChunkLimits { max_producers: 2, max_bytes: PAGE_BYTES };
        let all = producers(5, 10);
        let mut registry_side = assignment(&all[..3]);
        let published = Published::new(Uuid::nil(), 4, false, registry_side.clone(), limits);
        // The registry goes on changing its assignment: the published generation does not see it.
        registry_side.insert(ProducerId::parse_accepted("id", &all[4].id).expect("a UUID"), Entry::new(&all[4]));
        registry_side.remove(&ProducerId::parse_accepted("id", &all[0].id).expect("a UUID"));
        let snapshot = published.snapshot();
        assert!(Arc::ptr_eq(&snapshot, &published.snapshot()), "built once, shared by every stream");
        assert_eq!((snapshot.generation, snapshot.producer_count(), snapshot.chunk_count()), (4, 3, 2));
        let sent: Vec<_> =
            (0..snapshot.chunk_count()).flat_map(|i| snapshot.chunk(i).expect("entries decode").producers).collect();
        assert_eq!(sent, all[..3]);
        assert_eq!(registry_side.len(), 3);
        assert_eq!(Snapshot::build(Uuid::nil(), 5, false, registry_side, limits).producer_count(), 3);
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
        /// The encoded chunk is prost's own encoding of the typed chunk of the producers given, byte for byte,
        /// whatever the producers, the chunking and the header values (zeros are omitted on the wire, so each may
        /// or may not be written).
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
            entries.dedup_by(|a, b| a.id == b.id);
            let snapshot = Snapshot::build(
                Uuid::from_u128(epoch),
                generation,
                settling,
                assignment(&entries),
                ChunkLimits { max_producers, max_bytes },
            );
            prop_assert_eq!(snapshot.producer_count(), entries.len());
            for i in 0..snapshot.chunk_count() {
                let encoded = snapshot.encoded_chunk(i);
                let typed = pb::SnapshotChunk {
                    producers: entries[snapshot.chunk_range(i)].to_vec(),
                    ..snapshot.chunk_header(i)
                };
                prop_assert_eq!(&encoded[..], &typed_frame(typed)[..], "chunk {}", i);
            }
        }
    }
}
