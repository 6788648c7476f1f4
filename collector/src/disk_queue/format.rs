//! The bytes of a segment file: its magic, then records, each a checksummed header and its payload; and the scan
//! that finds the good records of a segment at open.

/// The first bytes of every segment file; the last one is the layout's version.
pub(super) const MAGIC: &[u8; 8] = b"rosterq1";

/// Bytes of a record header.
pub(super) const HEADER_BYTES: usize = 32;

/// A record header. On disk, little-endian: payload length `u32`, samples `u32`, min time `i64`, max time `i64`,
/// CRC-32C of the payload `u32`, CRC-32C of the 28 bytes before it `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) len: u32,
    pub(super) samples: u32,
    pub(super) min_time_ms: i64,
    pub(super) max_time_ms: i64,
    pub(super) payload_crc: u32,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0; HEADER_BYTES];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.samples.to_le_bytes());
        b[8..16].copy_from_slice(&self.min_time_ms.to_le_bytes());
        b[16..24].copy_from_slice(&self.max_time_ms.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header in `b`, or `None` when its checksum does not match.
    pub(super) fn decode(b: &[u8; HEADER_BYTES]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let i64_at = |i: usize| {
            let mut x = [0; 8];
            x.copy_from_slice(&b[i..i + 8]);
            i64::from_le_bytes(x)
        };
        (crc32c::crc32c(&b[..28]) == u32_at(28)).then(|| Self {
            len: u32_at(0),
            samples: u32_at(4),
            min_time_ms: i64_at(8),
            max_time_ms: i64_at(16),
            payload_crc: u32_at(24),
        })
    }
}

/// The file name of segment `seq`: 20 digits, so that names sort as numbers do.
pub(super) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number of a segment file name, `None` for any other name.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|c| c.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// What a segment holds, as found by [`scan`].
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// The good records: the offset of each header, and the header.
    pub(super) records: Vec<(u64, Header)>,
    /// Records skipped because their payload fails its checksum (their header is good): offset and header.
    pub(super) bad_payloads: Vec<(u64, Header)>,
    /// Where the segment's framing ends: the end of its last record with a good header and a whole payload.
    /// Everything from here on is damaged (a torn write, or a bad header whose length cannot be trusted).
    pub(super) good_end: u64,
    /// Samples of the record cut at `good_end`, when its header is good but its payload is short.
    pub(super) torn_samples: u64,
}

/// The segment's bytes do not start with [`MAGIC`]: not a segment of this layout.
#[derive(Debug)]
pub(super) struct NotASegment;

/// Walks a segment's records. A header that fails its checksum, or a record shorter than its header says, ends
/// the walk (what follows cannot be framed); a payload that fails its checksum is skipped, and the walk goes on.
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, NotASegment> {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    // A segment torn while it was created holds a prefix of the magic, or zeros (blocks allocated but never
    // written, after a power loss): it holds nothing good.
    if (head.len() < MAGIC.len() && MAGIC.starts_with(head)) || head.iter().all(|&b| b == 0) {
        return Ok(Scan::default());
    }
    if head != MAGIC {
        return Err(NotASegment);
    }
    let mut scan = Scan::default();
    let mut off = MAGIC.len();
    // Bounded: every turn moves `off` forward by at least a header.
    while let Some(header_bytes) = bytes[off..].first_chunk::<HEADER_BYTES>() {
        let Some(header) = Header::decode(header_bytes) else { break };
        let end = off + HEADER_BYTES + header.len as usize;
        let Some(payload) = bytes.get(off + HEADER_BYTES..end) else {
            scan.torn_samples = u64::from(header.samples);
            break;
        };
        if crc32c::crc32c(payload) == header.payload_crc {
            scan.records.push((off as u64, header));
        } else {
            scan.bad_payloads.push((off as u64, header));
        }
        off = end;
    }
    scan.good_end = off as u64;
    Ok(scan)
}
