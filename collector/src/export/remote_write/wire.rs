//! Remote-write's wire format for the collector's samples: encoding a batch as a `WriteRequest`
//! ([`roster::remote_write_pb`]), splitting encoded requests into their series again, and compressing a request
//! body as the spec requires (snappy's block format).
//!
//! - Each sample becomes one `TimeSeries` holding one `Sample`, in the batch's order (as Prometheus's own sender
//!   does). The labels are `__name__` (the sample's name) and the sample's labels, sorted by name, without empty
//!   values (an empty label is no label to Prometheus; the spec forbids sending one), and without a label named
//!   `__name__` among them (the name is the sample's).
//! - The producer id is not sent. A series' identity in Prometheus is its label set; the producer's labels (those
//!   a target's `job` and `instance` would be) are already applied to every sample, and an extra label would make
//!   every series differ from what Prometheus's agent writes for the same target.
//! - Values go bit for bit, so the staleness marker ([`crate::sample::STALE_NAN_BITS`]) stays one; timestamps are
//!   Unix milliseconds as `int64`.
//!
//! The encoder writes the protobuf directly instead of building the generated structs, which would allocate a
//! `String` per label per sample; its output decodes to exactly what the generated code would encode (tested).
//! Because a `WriteRequest` is nothing but its repeated `timeseries` field, the encodings of several requests
//! (or of some of their series) laid end to end are one request: [`Series::split`] cuts a request into its series
//! without decoding them, and the sender's shards put series back together by copying bytes.

use prost::{
    bytes::Buf as _,
    encoding::{encode_varint, encoded_len_varint},
};

use crate::sample::Sample;

/// The label that holds a series' metric name.
pub(crate) const NAME_LABEL: &str = "__name__";

/// Protobuf keys (field number << 3 | wire type): `WriteRequest.timeseries`, `TimeSeries.labels` and
/// `Label.name` are field 1, `TimeSeries.samples` and `Label.value` field 2, all length-delimited; `Sample.value` is
/// field 1, a 64-bit double; `Sample.timestamp` field 2, a varint.
const KEY_1_LEN: u8 = 1 << 3 | 2;
const KEY_2_LEN: u8 = 2 << 3 | 2;
const KEY_VALUE: u8 = 1 << 3 | 1;
const KEY_TIMESTAMP: u8 = 2 << 3;

/// A batch encoded as one `WriteRequest`.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The `WriteRequest`'s protobuf, uncompressed.
    pub(crate) payload: Vec<u8>,
    /// The earliest sample time (Unix ms); 0 for no sample.
    pub(crate) min_time_ms: i64,
    /// The latest sample time (Unix ms); 0 for no sample.
    pub(crate) max_time_ms: i64,
    /// How many samples.
    pub(crate) samples: u32,
}

/// The labels of `sample` as remote-write sends them: `__name__` merged in its sorted place, empty values and a
/// stray `__name__` left out. The one place that reads a sample's name and labels.
fn labels(sample: &Sample) -> impl Iterator<Item = (&str, &str)> {
    let mut name = Some((NAME_LABEL, sample.name.as_ref()));
    let mut rest = sample.labels.iter().filter(|(k, v)| !v.is_empty() && *k != NAME_LABEL).peekable();
    std::iter::from_fn(move || match (name, rest.peek()) {
        (Some(n), Some(next)) if next.0 < NAME_LABEL => rest.next().or(Some(n)),
        (Some(n), _) => {
            name = None;
            Some(n)
        }
        (None, _) => rest.next(),
    })
}

/// The encoded length of a `Label` (its fields, without its own key and length).
fn label_len(name: &str, value: &str) -> usize {
    field_len(name.len()) + field_len(value.len())
}

/// The encoded length of a length-delimited field holding `len` bytes, key included.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// `Sample`'s fields: the value unless its bits are all zero, the timestamp unless it is zero (proto3 leaves
/// defaults out; `-0.0` is kept).
fn sample_len(value: f64, time_ms: i64) -> usize {
    let value_len = if value.to_bits() == 0 { 0 } else { 9 };
    let time_len = if time_ms == 0 { 0 } else { 1 + encoded_len_varint(time_ms as u64) };
    value_len + time_len
}

/// A sample's time as remote-write's `int64` (no clock reaches past its end).
fn time_ms(sample: &Sample) -> i64 {
    i64::try_from(sample.time_ms).unwrap_or(i64::MAX)
}

/// Encodes `batch` as one `WriteRequest`, one series per sample, in order.
pub(crate) fn encode(batch: &[Sample]) -> Encoded {
    let mut payload = Vec::with_capacity(batch.len() * 128);
    let (mut min_time_ms, mut max_time_ms) = (i64::MAX, i64::MIN);
    for sample in batch {
        let time = time_ms(sample);
        min_time_ms = min_time_ms.min(time);
        max_time_ms = max_time_ms.max(time);
        let labels_len: usize = labels(sample).map(|(k, v)| field_len(label_len(k, v))).sum();
        let sample_len = sample_len(sample.value, time);
        let series_len = labels_len + field_len(sample_len);
        payload.reserve(field_len(series_len));
        payload.push(KEY_1_LEN);
        put_varint(&mut payload, series_len as u64);
        for (name, value) in labels(sample) {
            payload.push(KEY_1_LEN);
            put_varint(&mut payload, label_len(name, value) as u64);
            put_bytes(&mut payload, KEY_1_LEN, name.as_bytes());
            put_bytes(&mut payload, KEY_2_LEN, value.as_bytes());
        }
        payload.push(KEY_2_LEN);
        put_varint(&mut payload, sample_len as u64);
        if sample.value.to_bits() != 0 {
            payload.push(KEY_VALUE);
            payload.extend_from_slice(&sample.value.to_bits().to_le_bytes());
        }
        if time != 0 {
            payload.push(KEY_TIMESTAMP);
            put_varint(&mut payload, time as u64);
        }
    }
    let samples = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    if batch.is_empty() {
        (min_time_ms, max_time_ms) = (0, 0);
    }
    Encoded { payload, min_time_ms, max_time_ms, samples }
}

fn put_bytes(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    out.push(key);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint; the one-byte case (every label and most series) without prost's loop.
fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        encode_varint(value, out);
    }
}

/// One `timeseries` entry of an encoded `WriteRequest`, as offsets into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Series {
    /// The whole entry, its key and length included: appended to another request, it adds this series to it.
    pub(crate) entry: (usize, usize),
    /// The bytes that identify the series: its fields before its first sample (the encoder writes every label
    /// first, in sorted order, so equal label sets have equal bytes).
    pub(crate) key: (usize, usize),
    /// How many samples it holds.
    pub(crate) samples: u32,
    /// The newest timestamp of its samples (ms; 0 for none, as a sample without a timestamp field has 0).
    pub(crate) newest_ms: i64,
}

/// An encoded `WriteRequest` that does not hold what [`encode`] writes.
#[derive(Debug, thiserror::Error)]
#[error("a queued remote-write request is damaged at byte {0}")]
pub(crate) struct Damaged(usize);

impl Series {
    /// Cuts an encoded `WriteRequest` into its series, appending them to `out`; `Damaged` if it is not one.
    pub(crate) fn split(request: &[u8], out: &mut Vec<Self>) -> Result<(), Damaged> {
        let mut at = 0;
        while at < request.len() {
            let start = at;
            if request[at] != KEY_1_LEN {
                return Err(Damaged(at));
            }
            at += 1;
            let (content, end) = length_delimited(request, at)?;
            let mut key_end = end;
            let (mut samples, mut newest_ms) = (0u32, i64::MIN);
            let mut field = content;
            while field < end {
                let key = request[field];
                let (_, next) = length_delimited(request, field + 1)?;
                if next > end {
                    return Err(Damaged(field));
                }
                match key {
                    KEY_1_LEN => {}
                    KEY_2_LEN => {
                        key_end = key_end.min(field);
                        samples = samples.saturating_add(1);
                        newest_ms = newest_ms.max(sample_time(request, field + 1, next)?);
                    }
                    _ => return Err(Damaged(field)),
                }
                field = next;
            }
            let newest_ms = if samples == 0 { 0 } else { newest_ms };
            out.push(Self { entry: (start, end), key: (content, key_end), samples, newest_ms });
            at = end;
        }
        Ok(())
    }
}

/// The timestamp of the `Sample` whose length is at `at` and which ends at `end`: its `timestamp` field, or 0
/// without one (proto3's default).
fn sample_time(bytes: &[u8], at: usize, end: usize) -> Result<i64, Damaged> {
    let (mut field, _) = length_delimited(bytes, at)?;
    let mut time = 0;
    while field < end {
        match bytes[field] {
            KEY_VALUE => field += 9,
            KEY_TIMESTAMP => {
                let mut rest = bytes.get(field + 1..end).ok_or(Damaged(field))?;
                let before = rest.remaining();
                // int64 is a two's-complement varint: a negative time reads back as itself.
                time = prost::encoding::decode_varint(&mut rest).map_err(|_| Damaged(field))? as i64;
                field += 1 + before - rest.remaining();
            }
            _ => return Err(Damaged(field)),
        }
    }
    if field == end { Ok(time) } else { Err(Damaged(end)) }
}

/// Reads the varint length at `at`: where the content starts and where it ends.
fn length_delimited(bytes: &[u8], at: usize) -> Result<(usize, usize), Damaged> {
    let (len, start) = match bytes.get(at) {
        // One byte: every label and most series.
        Some(&len) if len < 0x80 => (u64::from(len), at + 1),
        _ => {
            let mut rest = bytes.get(at..).ok_or(Damaged(at))?;
            let before = rest.remaining();
            let len = prost::encoding::decode_varint(&mut rest).map_err(|_| Damaged(at))?;
            (len, at + (before - rest.remaining()))
        }
    };
    let end = usize::try_from(len).ok().and_then(|len| start.checked_add(len)).ok_or(Damaged(at))?;
    if end > bytes.len() {
        return Err(Damaged(at));
    }
    Ok((start, end))
}

/// A request body as the spec wants it: the protobuf compressed with snappy's block format (never the framed one,
/// which receivers refuse).
pub(crate) fn compress(request: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(request)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;
    use roster::remote_write_pb::{Label, Sample as PbSample, TimeSeries, WriteRequest};

    use super::*;
    use crate::sample::{STALE_NAN_BITS, stale_nan};

    /// A sample of `name` with `labels` at `time_ms`.
    pub(crate) fn sample(name: &str, labels: &[(&str, &str)], time_ms: u64, value: f64) -> Sample {
        Sample {
            time_ms,
            producer_id: "p".into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            value,
        }
    }

    /// What the generated code makes of `samples`: the reference the encoder is held to.
    fn expected(samples: &[Sample]) -> WriteRequest {
        let timeseries = samples
            .iter()
            .map(|s| {
                let mut labels: BTreeMap<&str, &str> = s.labels.iter().collect();
                labels.retain(|_, v| !v.is_empty());
                labels.insert(NAME_LABEL, s.name.as_ref());
                TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name: name.into(), value: value.into() })
                        .collect(),
                    samples: vec![PbSample { value: s.value, timestamp: s.time_ms as i64 }],
                }
            })
            .collect();
        WriteRequest { timeseries }
    }

    /// Decodes a request (uncompressed).
    pub(crate) fn decode(payload: &[u8]) -> WriteRequest {
        WriteRequest::decode(payload).unwrap()
    }

    #[test]
    fn a_batch_decodes_to_one_series_per_sample_with_sorted_labels_and_name() {
        let batch = [
            sample("up", &[("job", "node"), ("instance", "a:9100")], 1_700_000_000_123, 1.0),
            // Upper case sorts before `__name__`, lower case after; empty values and a stray `__name__` go.
            sample("x", &[("A", "1"), ("Z_", "2"), ("__name__", "wrong"), ("a", ""), ("b", "3")], 5, -2.5),
            sample("zero", &[], 0, 0.0),
            sample("neg", &[("_", "u")], 7, -0.0),
        ];
        let encoded = encode(&batch);
        assert_eq!((encoded.min_time_ms, encoded.max_time_ms, encoded.samples), (0, 1_700_000_000_123, 4));
        let decoded = decode(&encoded.payload);
        let names: Vec<Vec<&str>> =
            decoded.timeseries.iter().map(|t| t.labels.iter().map(|l| l.name.as_str()).collect()).collect();
        assert_eq!(names[0], ["__name__", "instance", "job"]);
        assert_eq!(names[1], ["A", "Z_", "__name__", "b"]);
        assert_eq!(names[3], ["_", "__name__"], "a prefix sorts first");
        assert_eq!(decoded.timeseries[1].labels[2].value, "x");
        assert_eq!(decoded.timeseries[3].samples[0].value.to_bits(), (-0.0f64).to_bits(), "-0.0 is kept");
        // Apart from -0.0 (which prost leaves out), the bytes are the generated code's.
        assert_eq!(encode(&batch[..3]).payload, expected(&batch[..3]).encode_to_vec());
        assert_eq!(decoded.timeseries[..3], expected(&batch[..3]).timeseries[..]);
    }

    #[test]
    fn the_staleness_marker_and_every_other_value_keep_their_bits() {
        let values = [stale_nan(), f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 1e300];
        let batch: Vec<_> = values.iter().map(|v| sample("m", &[], 1, *v)).collect();
        let decoded = decode(&encode(&batch).payload);
        let bits: Vec<u64> = decoded.timeseries.iter().map(|t| t.samples[0].value.to_bits()).collect();
        assert_eq!(bits, values.map(f64::to_bits));
        assert_eq!(bits[0], STALE_NAN_BITS);
    }

    #[test]
    fn split_finds_each_series_its_identity_and_concatenated_series_are_a_request() {
        let batch = [
            sample("a", &[("k", "1")], 1, 1.0),
            sample("b", &[("k", "1")], 2, 2.0),
            sample("a", &[("k", "1")], 3, 3.0),
        ];
        let payload = encode(&batch).payload;
        let mut series = Vec::new();
        Series::split(&payload, &mut series).unwrap();
        assert_eq!(series.len(), 3);
        let key = |s: &Series| &payload[s.key.0..s.key.1];
        assert_eq!(key(&series[0]), key(&series[2]), "the same labels, the same identity");
        assert_ne!(key(&series[0]), key(&series[1]));
        assert!(series.iter().all(|s| s.samples == 1));
        assert_eq!(series.iter().map(|s| s.newest_ms).collect::<Vec<_>>(), [1, 2, 3]);
        // The first and last series alone make a request of two.
        let mut joined = payload[series[0].entry.0..series[0].entry.1].to_vec();
        joined.extend_from_slice(&payload[series[2].entry.0..series[2].entry.1]);
        let decoded = decode(&joined);
        assert_eq!(
            decoded.timeseries,
            [expected(&batch).timeseries[0].clone(), expected(&batch).timeseries[2].clone()]
        );
        // A series with several samples (not what encode writes, but valid) counts them all.
        let many = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: "m".into() }],
                samples: vec![PbSample { value: 1.0, timestamp: 1 }, PbSample { value: 2.0, timestamp: 2 }],
            }],
        };
        let mut series = Vec::new();
        Series::split(&many.encode_to_vec(), &mut series).unwrap();
        assert_eq!((series[0].samples, series[0].newest_ms), (2, 2));
        // The times proto3 leaves out or writes as ten bytes: 0, and a negative one; a zero value is left out too.
        for time in [0, -5, i64::MAX] {
            let batch = [sample("z", &[], 0, 0.0)];
            let mut payload = encode(&batch).payload;
            if time != 0 {
                payload = WriteRequest {
                    timeseries: vec![TimeSeries {
                        labels: vec![Label { name: "__name__".into(), value: "z".into() }],
                        samples: vec![PbSample { value: 0.0, timestamp: time }],
                    }],
                }
                .encode_to_vec();
            }
            let mut series = Vec::new();
            Series::split(&payload, &mut series).unwrap();
            assert_eq!(series[0].newest_ms, time);
        }
    }

    #[test]
    fn split_refuses_a_damaged_request_instead_of_reading_past_it() {
        let payload = encode(&[sample("a", &[("k", "v")], 1, 1.0)]).payload;
        for cut in 1..payload.len() {
            assert!(Series::split(&payload[..cut], &mut Vec::new()).is_err(), "cut at {cut}");
        }
        let mut wrong = payload.clone();
        wrong[0] = 0x12;
        assert!(Series::split(&wrong, &mut Vec::new()).is_err());
        assert!(Series::split(&[], &mut Vec::new()).is_ok(), "an empty request holds no series");
    }

    #[test]
    fn compress_writes_snappy_blocks() {
        let payload = encode(&[sample("a", &[("k", "v")], 1, 1.0)]).payload;
        let body = compress(&payload).unwrap();
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&body).unwrap(), payload);
        assert_ne!(&body[..4], b"\xff\x06\x00\x00", "not the framed format's stream identifier");
    }
}
