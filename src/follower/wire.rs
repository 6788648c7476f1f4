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

use std::{collections::BTreeMap, fmt};

use bytes::Bytes;
use prost::{
    DecodeError,
    encoding::{
        DecodeContext, WireType, btree_map, check_wire_type, decode_key, decode_varint, encoded_len_varint, int32,
        key_len, message, skip_field, string, uint32,
    },
};
use tonic::{
    IntoRequest as _, Status,
    client::{Grpc, GrpcService},
    codec::Streaming,
};

use crate::{
    domain::{
        Collection, FieldError, Labels, MAX_INTERVAL, MIN_INTERVAL, ProducerAddress, ProducerId, Target, ms_in_range,
    },
    pb,
};

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

/// Why an entry was not read: it does not decode as an `AssignedProducer`, or a field is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryError {
    /// Not a protobuf `AssignedProducer`: prost's error, word for word what `AssignedProducer::decode` says.
    Decode(DecodeError),
    /// A field breaks a rule.
    Invalid(FieldError),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "an entry does not decode: {e}"),
            Self::Invalid(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// A string field as prost's `string::merge` reads it (the same checks; the last occurrence wins), borrowed from
/// the entry's bytes rather than copied into a `String`. The wire type, length and UTF-8 are checked with prost's
/// own functions; a field that fails one is read again by `string::merge`, so that the error is prost's, word for
/// word.
fn merge_str<'a>(
    wire_type: WireType,
    value: &mut &'a str,
    buf: &mut &'a [u8],
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let field = *buf;
    let text = check_wire_type(WireType::LengthDelimited, wire_type)
        .and_then(|()| decode_varint(buf))
        .ok()
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| buf.split_at_checked(len))
        .and_then(|(text, rest)| Some((std::str::from_utf8(text).ok()?, rest)));
    if let Some((text, rest)) = text {
        (*value, *buf) = (text, rest);
        return Ok(());
    }
    Err(string::merge(wire_type, &mut String::new(), &mut &field[..], ctx)
        .expect_err("prost refuses what its own checks refused"))
}

/// The length of a string field's encoding, as prost's `string::encoded_len` gives it for a `String`.
fn str_encoded_len(tag: u32, text: &&str) -> usize {
    key_len(tag) + encoded_len_varint(text.len() as u64) + text.len()
}

/// Reads one encoded `AssignedProducer` into a validated [`Target`], in one pass over its bytes: the fields are
/// decoded as prost decodes the message (prost's own `encoding` functions, field by field: the same accepted
/// encodings, the same errors, the last occurrence of a field winning), the strings kept as slices of `entry`
/// rather than copied, then validated in the order and by the rules the follower always applied. Returns the
/// target and the length of the entry's deterministic encoding (what `AssignedProducer::encoded_len` gives for
/// it): an entry longer than that held fields this build does not know, or was not encoded deterministically.
///
/// The id and address are read as data a server accepted ([`ProducerId::parse_accepted`],
/// [`ProducerAddress::parse_accepted`]), so a collector keeps working with a server, store or state file from
/// before a rule was made stricter. A kind this build does not know is an invalid entry (a server sends one only
/// to collectors that listed it).
///
/// Why not `AssignedProducer::decode` and then validation: that builds a string per id, address, label name and
/// value, and a map, only to read them into the target and drop them; in a full sync that was half a follower's
/// cost per entry (issue 17).
///
/// # Errors
/// [`EntryError::Decode`] with prost's error, or [`EntryError::Invalid`] naming the field (`producers.id`, …).
pub(crate) fn read_entry(entry: &[u8]) -> Result<(Target, usize), EntryError> {
    let (mut id, mut address, mut interval_ms, mut kind) = ("", "", 0u32, 0i32);
    let mut labels = BTreeMap::<&str, &str>::new();
    let mut prometheus: Option<pb::PrometheusTarget> = None;
    let (mut buf, ctx) = (entry, DecodeContext::default());
    let in_field = |field: &'static str| {
        move |mut e: DecodeError| {
            e.push("AssignedProducer", field);
            EntryError::Decode(e)
        }
    };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(EntryError::Decode)?;
        let ctx = ctx.clone();
        match tag {
            1 => merge_str(wire_type, &mut id, &mut buf, ctx).map_err(in_field("id"))?,
            2 => merge_str(wire_type, &mut address, &mut buf, ctx).map_err(in_field("address"))?,
            3 => uint32::merge(wire_type, &mut interval_ms, &mut buf, ctx).map_err(in_field("interval_ms"))?,
            4 => btree_map::merge(merge_str, merge_str, &mut labels, &mut buf, ctx).map_err(in_field("labels"))?,
            5 => int32::merge(wire_type, &mut kind, &mut buf, ctx).map_err(in_field("kind"))?,
            6 => message::merge(wire_type, prometheus.get_or_insert_with(Default::default), &mut buf, ctx)
                .map_err(in_field("prometheus"))?,
            _ => skip_field(wire_type, tag, &mut buf, ctx).map_err(EntryError::Decode)?,
        }
    }
    // As prost's derived `encoded_len`: a field at its default value is not encoded.
    let encoded_len = [(1, &id), (2, &address)]
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(tag, text)| str_encoded_len(tag, text))
        .sum::<usize>()
        + if interval_ms == 0 { 0 } else { uint32::encoded_len(3, &interval_ms) }
        + btree_map::encoded_len(str_encoded_len, str_encoded_len, 4, &labels)
        + if kind == 0 { 0 } else { int32::encoded_len(5, &kind) }
        + prometheus.as_ref().map_or(0, |p| message::encoded_len(6, p));
    let interval =
        ms_in_range("producers.interval_ms", interval_ms, MIN_INTERVAL, MAX_INTERVAL).map_err(EntryError::Invalid)?;
    let target = Target {
        id: ProducerId::parse_accepted("producers.id", id).map_err(EntryError::Invalid)?,
        address: ProducerAddress::parse_accepted("producers.address", address).map_err(EntryError::Invalid)?,
        interval,
        labels: Labels::parse_sorted("producers.labels", labels.iter().map(|(name, value)| (*name, *value)))
            .map_err(EntryError::Invalid)?,
        collection: Collection::parse_fields("producers.", kind, prometheus, interval).map_err(EntryError::Invalid)?,
    };
    Ok((target, encoded_len))
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

/// [`read_entry`] against the way entries were read before it, kept here as its oracle: prost's decoding into the
/// message, then the validation `Target::try_from(AssignedProducer)` applied, word for word.
#[cfg(test)]
mod read_entry_oracle {
    use proptest::{prelude::*, strategy::ValueTree as _};
    use prost::Message as _;
    use uuid::Uuid;

    use super::*;
    use crate::domain::address_fast_path::host_name;

    fn decoded_then_validated(entry: &[u8]) -> Result<(Target, usize), EntryError> {
        let p = pb::AssignedProducer::decode(entry).map_err(EntryError::Decode)?;
        let encoded_len = p.encoded_len();
        let valid = || -> Result<Target, FieldError> {
            let interval = ms_in_range("producers.interval_ms", p.interval_ms, MIN_INTERVAL, MAX_INTERVAL)?;
            Ok(Target {
                id: ProducerId::parse_accepted("producers.id", &p.id)?,
                address: ProducerAddress::parse_accepted("producers.address", p.address.clone())?,
                interval,
                labels: Labels::parse_field("producers.labels", p.labels.clone())?,
                collection: Collection::parse_fields("producers.", p.kind, p.prometheus.clone(), interval)?,
            })
        };
        valid().map(|target| (target, encoded_len)).map_err(EntryError::Invalid)
    }

    /// Ids: UUIDs in the forms `Uuid::parse_str` takes (and the nil one), and strings that are not UUIDs.
    fn id() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
            1 => any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string().to_uppercase()),
            1 => Just(Uuid::nil().to_string()),
            1 => "[0-9a-f-]{0,40}",
        ]
    }

    /// Addresses: names and IPv4 addresses with ports, in and out of normal form, and what the address fast
    /// path's own property test tries.
    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (host_name(), 0u32..70_000).prop_map(|(host, port)| format!("{host}:{port}")),
            6 => (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip))),
            1 => "[a-zA-Z0-9.:%_\\[\\]-]{0,12}:[0-9]{0,6}",
            1 => "(http://|https://)?[a-z]{1,6}:[0-9]{1,4}/?",
        ]
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        let name = prop_oneof![8 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}", 1 => "[0-9 -]{0,2}", 1 => "[a-z]{60,70}"];
        let value = prop_oneof![8 => ".{0,8}", 1 => "[a-z]{250,260}"];
        prop_oneof![
            8 => prop::collection::btree_map(name.clone(), value.clone(), 0..4),
            1 => prop::collection::btree_map(name, value, 30..36),
        ]
    }

    fn prometheus() -> impl Strategy<Value = Option<pb::PrometheusTarget>> {
        let scheme = prop_oneof![Just(""), Just("http"), Just("HTTPS"), Just("ftp")].prop_map(str::to_owned);
        let path = prop_oneof![Just(""), Just("/metrics"), Just("x"), Just("/a?b")].prop_map(str::to_owned);
        let target =
            (scheme, path, prop::option::of(0u32..3_000)).prop_map(|(scheme, metrics_path, scrape_timeout_ms)| {
                pb::PrometheusTarget { scheme, metrics_path, scrape_timeout_ms }
            });
        prop::option::weighted(0.2, target)
    }

    fn entry() -> impl Strategy<Value = pb::AssignedProducer> {
        let interval = prop_oneof![12 => 100u32..=3_600_000, 1 => 0u32..200, 1 => any::<u32>()];
        let kind = prop_oneof![12 => Just(0), 1 => Just(1), 2 => Just(2), 1 => any::<i32>()];
        (id(), address(), interval, labels(), kind, prometheus()).prop_map(
            |(id, address, interval_ms, labels, kind, prometheus)| pb::AssignedProducer {
                id,
                address,
                interval_ms,
                labels,
                kind,
                prometheus,
            },
        )
    }

    /// What is done to an encoded entry before it is read.
    #[derive(Debug, Clone)]
    enum Corruption {
        None,
        /// Cut at this position (modulo the length).
        Truncate(usize),
        /// This byte replaced (both modulo).
        Replace(usize, u8),
        /// These bytes inserted at this position.
        Insert(usize, Vec<u8>),
        /// Followed by another entry: every field twice, the last occurrence winning, the maps merged.
        Twice(pb::AssignedProducer),
        /// A field of this build's numbers, or one it does not know, with any wire type, appended.
        Field(u32, u8, Vec<u8>),
    }

    fn corruption() -> impl Strategy<Value = Corruption> {
        prop_oneof![
            16 => Just(Corruption::None),
            2 => any::<usize>().prop_map(Corruption::Truncate),
            3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Corruption::Replace(at, byte)),
            2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(at, b)| Corruption::Insert(at, b)),
            2 => entry().prop_map(Corruption::Twice),
            2 => (1u32..10, 0u8..8, prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(t, w, b)| Corruption::Field(t, w, b)),
        ]
    }

    fn corrupt(mut bytes: Vec<u8>, corruption: Corruption) -> Vec<u8> {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match corruption {
            Corruption::None => {}
            Corruption::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Corruption::Replace(i, byte) => {
                let i = at(i, bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b = byte;
                }
            }
            Corruption::Insert(i, inserted) => {
                let i = at(i, bytes.len() + 1);
                bytes.splice(i..i, inserted);
            }
            Corruption::Twice(other) => bytes.extend(other.encode_to_vec()),
            Corruption::Field(tag, wire_type, payload) => {
                prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire_type)), &mut bytes);
                bytes.extend(payload);
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever the bytes, reading them in one pass gives what decoding and then validating gave: the same
        /// target and encoded length, or the same error (prost's, or the field's).
        #[test]
        fn reading_an_entry_is_decoding_then_validating(entry in entry(), corruption in corruption()) {
            let bytes = corrupt(entry.encode_to_vec(), corruption);
            prop_assert_eq!(read_entry(&bytes), decoded_then_validated(&bytes));
        }
    }

    #[test]
    fn the_generated_entries_reach_every_outcome() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut valid, mut invalid, mut undecodable) = (0, 0, 0);
        for _ in 0..2_000 {
            let entry = entry().new_tree(&mut runner).expect("a value").current();
            let corruption = corruption().new_tree(&mut runner).expect("a value").current();
            match read_entry(&corrupt(entry.encode_to_vec(), corruption)) {
                Ok(_) => valid += 1,
                Err(EntryError::Invalid(_)) => invalid += 1,
                Err(EntryError::Decode(_)) => undecodable += 1,
            }
        }
        assert!(valid > 300 && invalid > 300 && undecodable > 300, "{valid} valid, {invalid} invalid, {undecodable}");
    }
}
