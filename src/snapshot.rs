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

/// The digest computed piece by piece, as chunks arrive.
#[derive(Clone, Default)]
pub struct Digest {
    hasher: Xxh3,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").field("so_far", &self.hasher.digest()).finish()
    }
}

impl Digest {
    /// Adds the next producer.
    pub fn update(&mut self, producer: &AssignedProducer) {
        self.buf.clear();
        producer
            .encode_length_delimited(&mut self.buf)
            .expect("a Vec<u8> grows as needed, so encoding cannot run out of room");
        self.hasher.update(&self.buf);
    }

    /// Adds the next producer, given as its encoding prefixed by its length (what [`Self::update`] encodes): a
    /// server that keeps its entries encoded digests them without encoding them again.
    pub fn update_encoded(&mut self, length_delimited: &[u8]) {
        self.hasher.update(length_delimited);
    }

    /// Adds the next producer, given as its encoding *without* the length prefix, as it came off the wire. The
    /// same as [`Self::update`] when those bytes are the deterministic encoding, as a roster server's are.
    pub fn update_wire(&mut self, encoded: &[u8]) {
        self.buf.clear();
        prost::encoding::encode_varint(encoded.len() as u64, &mut self.buf);
        self.hasher.update(&self.buf);
        self.hasher.update(encoded);
    }

    /// The digest of everything added.
    pub fn finish(&self) -> u64 {
        self.hasher.digest()
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
}
