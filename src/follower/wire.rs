//! The feed as the follower reads it off the wire: `roster.v1.WatchResponse` with each chunk's producer entries
//! kept as their encoded bytes, and the Watch call that reads it so.
//!
//! Why: a new generation mostly repeats the one in force (a registration changes one entry of a thousand), and a
//! fleet's followers receive every generation of their collector. Decoding every entry into strings and maps,
//! validating it and comparing it with the applied one was most of a follower's work (the profile of issue 17's
//! propagation scenario). Kept as bytes, an entry whose bytes equal those of the applied entry of the same id *is*
//! that entry: the assembler digests the bytes and reuses the applied target, decoding nothing. Only new and
//! changed entries are decoded (`crate::follower::assembler`).
//!
//! The types mirror `feed.proto` field for field: a message field and a `bytes` field share protobuf's
//! length-delimited wire type, so `repeated AssignedProducer producers = 4` reads as `repeated bytes`, each a
//! slice of the received frame (no copy). The tests check the mirror against the compiled descriptors, so a field
//! added to `WatchResponse` or `SnapshotChunk` fails them until it is mirrored here.

use bytes::Bytes;
use tonic::{
    IntoRequest as _, Status,
    client::{Grpc, GrpcService},
    codec::Streaming,
};

use crate::pb;

/// `roster.v1.WatchResponse`, with raw entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireResponse {
    /// The frame.
    #[prost(oneof = "WireFrame", tags = "1, 2, 3")]
    pub frame: Option<WireFrame>,
}

/// `roster.v1.WatchResponse.frame`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WireFrame {
    /// A chunk of a snapshot (S2).
    #[prost(message, tag = "1")]
    Chunk(WireChunk),
    /// The collector's known generation is current (S3).
    #[prost(message, tag = "2")]
    InSync(pb::InSync),
    /// The stream is alive (S5).
    #[prost(message, tag = "3")]
    Heartbeat(pb::Heartbeat),
}

/// `roster.v1.SnapshotChunk`, each entry of `producers` left encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireChunk {
    /// The server store's epoch.
    #[prost(string, tag = "1")]
    pub epoch: String,
    /// The collector's assignment generation.
    #[prost(uint64, tag = "2")]
    pub generation: u64,
    /// The chunk's position, from 0.
    #[prost(uint32, tag = "3")]
    pub index: u32,
    /// The producers in this chunk, each an encoded `AssignedProducer` (without a length prefix).
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub producers: Vec<Bytes>,
    /// True on the last chunk only.
    #[prost(bool, tag = "5")]
    pub complete: bool,
    /// On the complete chunk: the number of chunks.
    #[prost(uint32, tag = "6")]
    pub chunk_count: u32,
    /// On the complete chunk: the number of producers.
    #[prost(uint64, tag = "7")]
    pub producer_count: u64,
    /// On the complete chunk: the snapshot's digest (`crate::snapshot`).
    #[prost(uint64, tag = "8")]
    pub digest: u64,
    /// On the complete chunk: whether the store is settling.
    #[prost(bool, tag = "9")]
    pub store_settling: bool,
}

impl From<pb::SnapshotChunk> for WireChunk {
    /// A decoded chunk as it would have come off the wire: each entry encoded again (deterministically). For tests,
    /// test vectors and programs that hold decoded frames; the follower reads [`WireChunk`]s directly.
    fn from(c: pb::SnapshotChunk) -> Self {
        use prost::Message as _;
        Self {
            epoch: c.epoch,
            generation: c.generation,
            index: c.index,
            producers: c.producers.iter().map(|p| Bytes::from(p.encode_to_vec())).collect(),
            complete: c.complete,
            chunk_count: c.chunk_count,
            producer_count: c.producer_count,
            digest: c.digest,
            store_settling: c.store_settling,
        }
    }
}

impl From<pb::watch_response::Frame> for WireFrame {
    fn from(frame: pb::watch_response::Frame) -> Self {
        match frame {
            pb::watch_response::Frame::Chunk(c) => Self::Chunk(c.into()),
            pb::watch_response::Frame::InSync(s) => Self::InSync(s),
            pb::watch_response::Frame::Heartbeat(h) => Self::Heartbeat(h),
        }
    }
}

/// The id of an encoded entry, read without decoding the rest, when the entry starts with it as a deterministic
/// encoding does (field 1 first) and it is a UUID; `None` otherwise (the entry is then decoded in full).
pub(crate) fn peek_id(entry: &[u8]) -> Option<crate::domain::ProducerId> {
    // Tag of field 1, length-delimited: (1 << 3) | 2. A UUID's text is 36 bytes, so its length is one varint byte.
    let (&tag, rest) = entry.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x0a || len >= 0x80 {
        return None;
    }
    let text = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    crate::domain::ProducerId::parse_accepted("producers.id", text).ok()
}

/// Opens `roster.v1.AssignmentFeed/Watch` on `service` and reads its responses as [`WireResponse`]s: the call the
/// generated `AssignmentFeedClient::watch` makes, with the codec that leaves entries encoded.
///
/// # Errors
/// The call's status, as the generated client returns it.
pub async fn watch<T>(service: T, request: pb::WatchRequest) -> Result<Streaming<WireResponse>, Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = Grpc::new(service);
    grpc.ready().await.map_err(|e| Status::unknown(format!("Service was not ready: {}", e.into())))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/roster.v1.AssignmentFeed/Watch");
    let mut request = request.into_request();
    request.extensions_mut().insert(tonic::GrpcMethod::new("roster.v1.AssignmentFeed", "Watch"));
    let codec = tonic_prost::ProstCodec::<pb::WatchRequest, WireResponse>::default();
    Ok(grpc.server_streaming(request, path, codec).await?.into_inner())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::{FileDescriptorSet, field_descriptor_proto::Type};

    use super::*;

    fn fields(message: &str) -> Vec<(i32, String, Type)> {
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("the compiled descriptors decode");
        let file = set.file.iter().find(|f| f.package() == "roster.v1" && f.name().ends_with("feed.proto"));
        let found = file.expect("feed.proto").message_type.iter().find(|m| m.name() == message);
        found.expect(message).field.iter().map(|f| (f.number(), f.name().to_owned(), f.r#type())).collect()
    }

    #[test]
    fn the_mirror_has_every_field_of_the_contract() {
        let chunk: Vec<_> = fields("SnapshotChunk").into_iter().map(|(n, name, _)| (n, name)).collect();
        let mirrored = [
            "epoch",
            "generation",
            "index",
            "producers",
            "complete",
            "chunk_count",
            "producer_count",
            "digest",
            "store_settling",
        ];
        let want: Vec<_> = mirrored.iter().zip(1..).map(|(name, n)| (n, (*name).to_owned())).collect();
        assert_eq!(chunk, want, "SnapshotChunk changed: mirror it in WireChunk");
        let response = fields("WatchResponse");
        let want =
            [(1, "chunk"), (2, "in_sync"), (3, "heartbeat")].map(|(n, name)| (n, name.to_owned(), Type::Message));
        assert_eq!(response, want.to_vec(), "WatchResponse changed: mirror it in WireFrame");
    }

    #[test]
    fn every_frame_reads_back_as_the_contract_encodes_it() {
        let entry = |id: &str| pb::AssignedProducer {
            id: id.into(),
            address: "127.0.0.1:9100".into(),
            interval_ms: 1000,
            labels: [("job".to_owned(), "x".to_owned())].into(),
            ..Default::default()
        };
        let chunk = pb::SnapshotChunk {
            epoch: "e".into(),
            generation: 7,
            index: 2,
            producers: vec![entry("a"), entry("b")],
            complete: true,
            chunk_count: 3,
            producer_count: 9,
            digest: 42,
            store_settling: true,
        };
        let frames = [
            pb::watch_response::Frame::Chunk(chunk),
            pb::watch_response::Frame::InSync(pb::InSync { epoch: "e".into(), generation: 3 }),
            pb::watch_response::Frame::Heartbeat(pb::Heartbeat { epoch: "e".into(), generation: 4 }),
        ];
        for frame in frames {
            let encoded = pb::WatchResponse { frame: Some(frame.clone()) }.encode_to_vec();
            let read = WireResponse::decode(encoded.as_slice()).expect("decodes");
            assert_eq!(read.frame, Some(WireFrame::from(frame)), "each entry's bytes are its encoding");
            assert_eq!(read.encode_to_vec(), encoded, "and nothing is lost");
        }
    }

    #[test]
    fn an_id_is_read_only_from_an_entry_that_starts_with_a_uuid() {
        let id = crate::domain::ProducerId::new_random();
        let entry = pb::AssignedProducer { id: id.to_string(), address: "h:1".into(), ..Default::default() };
        assert_eq!(peek_id(&entry.encode_to_vec()), Some(id));
        let not_uuid = pb::AssignedProducer { id: "a".into(), ..entry.clone() };
        assert_eq!(peek_id(&not_uuid.encode_to_vec()), None);
        let no_id = pb::AssignedProducer { id: String::new(), ..entry };
        assert_eq!(peek_id(&no_id.encode_to_vec()), None, "field 1 absent: the entry starts with the address");
        assert_eq!(peek_id(&[]), None);
        assert_eq!(peek_id(&[0x0a, 36, b'x']), None, "truncated");
    }
}
