//! The snapshot digest (S2): a checksum over a whole assignment that both the server and any follower compute,
//! so a follower can tell that the set it assembled from chunks is byte for byte the set the server meant.
//!
//! Definition (also in `feed.proto`): XXH3-64 with seed 0 over the deterministic protobuf encoding of every
//! `AssignedProducer` of the snapshot, in order, each prefixed by its length as a varint. Map fields are
//! `BTreeMap`s in the generated code, so the encoding is deterministic.

use prost::Message as _;
use xxhash_rust::xxh3::Xxh3;

use crate::pb::AssignedProducer;

/// Computes the digest of a snapshot's producers, in the order they were (or will be) sent.
pub fn digest<'a>(producers: impl IntoIterator<Item = &'a AssignedProducer>) -> u64 {
    let mut digest = Digest::default();
    for producer in producers {
        digest.update(producer);
    }
    digest.finish()
}

/// How many bytes [`Digest`] gathers before it hashes them: XXH3's streaming update copies every input shorter than
/// its 256-byte block into an internal buffer, call by call, so entries of some 60 bytes hashed one at a time cost
/// several times what the same bytes cost in one run (the server's profile under issue 17's load had that copying
/// at a sixth of its time). Gathered, they are hashed in runs of this size; the result is the same, since the
/// digest is one hash over the concatenation.
const GATHER_BYTES: usize = 32 * 1024;

/// The digest computed piece by piece, as chunks arrive.
#[derive(Clone, Default)]
pub struct Digest {
    hasher: Xxh3,
    /// Bytes added and not hashed yet, fewer than [`GATHER_BYTES`] after each call.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").field("so_far", &self.finish()).finish()
    }
}

impl Digest {
    /// Adds the next producer.
    pub fn update(&mut self, producer: &AssignedProducer) {
        producer
            .encode_length_delimited(&mut self.pending)
            .expect("a Vec<u8> grows as needed, so encoding cannot run out of room");
        self.gathered();
    }

    /// Adds the next producer, given as its encoding prefixed by its length (what [`Self::update`] encodes): a
    /// server that keeps its entries encoded digests them without encoding them again.
    pub fn update_encoded(&mut self, length_delimited: &[u8]) {
        self.pending.extend_from_slice(length_delimited);
        self.gathered();
    }

    /// Adds the next producer, given as its encoding *without* the length prefix, as it came off the wire. The
    /// same as [`Self::update`] when those bytes are the deterministic encoding, as a roster server's are.
    pub fn update_wire(&mut self, encoded: &[u8]) {
        prost::encoding::encode_varint(encoded.len() as u64, &mut self.pending);
        self.pending.extend_from_slice(encoded);
        self.gathered();
    }

    fn gathered(&mut self) {
        if self.pending.len() >= GATHER_BYTES {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }

    /// The digest of everything added.
    pub fn finish(&self) -> u64 {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, labels: &[(&str, &str)]) -> AssignedProducer {
        AssignedProducer {
            id: id.into(),
            address: "127.0.0.1:9100".into(),
            interval_ms: 1000,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    /// `AssignedProducer` as a collector from before producer kinds knows it: fields 1-4 only.
    #[derive(Clone, PartialEq, prost::Message)]
    struct BeforeKinds {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(string, tag = "2")]
        address: String,
        #[prost(uint32, tag = "3")]
        interval_ms: u32,
        #[prost(btree_map = "string, string", tag = "4")]
        labels: std::collections::BTreeMap<String, String>,
    }

    /// What such a collector computes for an entry: it decodes the entry, dropping fields it does not know, and
    /// digests its own re-encoding.
    fn digest_before_kinds(entry: &AssignedProducer) -> u64 {
        let seen = BeforeKinds::decode(entry.encode_to_vec().as_slice()).expect("decodes");
        let mut buf = Vec::new();
        seen.encode_length_delimited(&mut buf).expect("encodes");
        xxhash_rust::xxh3::xxh3_64(&buf)
    }

    #[test]
    fn a_grpc_entry_digests_the_same_for_a_collector_from_before_kinds() {
        let grpc = entry("a", &[("job", "x")]);
        assert_eq!(digest([&grpc]), digest_before_kinds(&grpc), "a gRPC entry is byte for byte what it was");
        // A Prometheus entry is not: such a collector would discard the snapshot (digest_mismatch), which is why
        // the server sends these only to collectors that list the kind (WatchRequest.supported_kinds).
        let prometheus = AssignedProducer {
            kind: crate::pb::ProducerKind::Prometheus as i32,
            prometheus: Some(crate::pb::PrometheusTarget {
                scheme: "http".into(),
                metrics_path: "/metrics".into(),
                scrape_timeout_ms: None,
            }),
            ..grpc
        };
        assert_ne!(digest([&prometheus]), digest_before_kinds(&prometheus));
    }

    #[test]
    fn digest_depends_on_content_and_order_not_on_label_insertion_order() {
        let a = entry("a", &[("x", "1"), ("y", "2")]);
        let a_again = entry("a", &[("y", "2"), ("x", "1")]);
        let b = entry("b", &[]);
        assert_eq!(digest([&a, &b]), digest([&a_again, &b]));
        assert_ne!(digest([&a, &b]), digest([&b, &a]));
        assert_ne!(digest([&a]), digest([&a, &b]));
        // Length prefixes keep concatenations apart: [a, b] is not [ab].
        assert_ne!(digest(Vec::<&AssignedProducer>::new()), digest([&entry("", &[])]));
    }

    #[test]
    fn every_way_of_adding_is_one_xxh3_over_the_length_prefixed_encodings_however_many_bytes() {
        // Enough entries to be hashed in several gathered runs, and a partial one at the end.
        let entries: Vec<_> = (0..3_000).map(|i| entry(&format!("producer-{i}"), &[("i", &i.to_string())])).collect();
        let mut concatenated = Vec::new();
        let (mut encoded, mut wire) = (Digest::default(), Digest::default());
        for e in &entries {
            let length_delimited = e.encode_length_delimited_to_vec();
            concatenated.extend_from_slice(&length_delimited);
            encoded.update_encoded(&length_delimited);
            wire.update_wire(&e.encode_to_vec());
        }
        assert!(concatenated.len() > 2 * GATHER_BYTES);
        let want = xxhash_rust::xxh3::xxh3_64(&concatenated);
        assert_eq!(digest(&entries), want);
        assert_eq!(encoded.finish(), want);
        assert_eq!(wire.finish(), want);
        assert_eq!(wire.finish(), want, "finishing does not consume");
    }
}
