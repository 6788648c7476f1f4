//! A durable FIFO of opaque records in a directory: what the remote-write exporter has not yet delivered survives a
//! receiver outage, SIGTERM, `kill -9` and a restart. One [`QueueWriter`] appends, one [`QueueReader`] reads back in
//! append order and acknowledges; a record's file goes only once it is acknowledged (or dropped by a bound).
//!
//! # On disk
//!
//! - **Segments** `00000000000000000007.seg` (sequence number, 20 digits, so names sort as numbers): the magic
//!   `rosterq1`, then records. A segment is closed once it reaches `segment_bytes`; every [`open`] starts a new one
//!   at the first append, so nothing is ever appended behind bytes of an earlier run.
//! - **Record**: a 32-byte header, little-endian — payload length `u32`, samples `u32`, min and max sample time
//!   (ms) `i64` each, CRC-32C (Castagnoli, as Prometheus's WAL) of the payload `u32`, CRC-32C of the 28 header bytes
//!   before it `u32` — then the payload. The header has its own checksum so that a record whose payload is damaged
//!   still tells its length (the walk goes on past it) and its sample count (counted as dropped).
//! - **Cursor** `cursor`: `<segment> <offset>\n`, the [`RecordId`] of the last acknowledged record (the position
//!   just after it), replaced atomically (written to `cursor.tmp`, then renamed). Missing or unreadable: everything
//!   on disk is read again (at-least-once, never a loss).
//!
//! # Guarantees
//!
//! - `append` writes the record with one `write(2)` before it returns: a `kill -9` keeps it (the page cache
//!   survives the process). An append that fails (`ENOSPC`, a read-only disk) returns an error naming the file and
//!   cuts what it wrote; the segment is closed and the next append starts a new one, so the writer recovers by
//!   itself once the disk does, and nothing already queued is lost.
//! - The reader hands out records in append order; after a restart it resumes after the last acknowledged record,
//!   so records read but not acknowledged come again (at-least-once).
//! - At [`open`] every segment is walked and checked. A damaged tail (a torn write: short header, short payload,
//!   bad header checksum) is cut off at the last good record, with a warning naming the file, the offset and the
//!   bytes cut. The same holds in the middle of any segment, last or not: a header that fails its checksum cannot
//!   be trusted for its length, so the rest of *that* segment is cut (good records after it in the segment are
//!   lost, counted in bytes; later segments are untouched); a record whose header checks but whose payload does
//!   not is skipped alone (its samples counted as damaged) and the records after it are kept. A payload found
//!   damaged later, when read, is skipped the same way. A segment torn while it was made (a prefix of the magic,
//!   or zeros) holds nothing and is removed. Open never refuses to start over damage; only a segment that starts
//!   with other bytes (another layout) is an error, so that a newer queue is never destroyed.
//! - **Bounded by bytes**: an append that would take the segments past `max_bytes` first deletes the oldest
//!   segments (acknowledged or not; the reader moves on), counting their unacknowledged samples as dropped (full),
//!   with one warning per drop. A record that alone exceeds `max_bytes` is dropped the same way. Append never
//!   waits on the reader: they share only an index behind a lock held for memory work (no disk I/O under it but
//!   the unlinking of dropped segments).
//! - **Bounded by age**: a record whose newest sample is older than `max_age` is not handed out: the reader drops
//!   it, counted (too old) and logged once per run of such records.
//!
//! # fsync
//!
//! A process crash (`kill -9`, a panic) loses nothing under either policy: what `write(2)` took is in the page
//! cache. The policy is about power loss and kernel crashes.
//!
//! [`FsyncPolicy::Always`] syncs each record (`fdatasync`) before `append` returns, and the cursor and directory
//! at each `ack`: no record `append` took is lost even on power loss, at the price of a disk flush on the
//! caller's thread per append (and per ack): on the development VM's disk a flush took 0.2 to 4.5 ms, so a few
//! hundred to a few thousand appends a second, where `Interval` takes some 150 000 records of 2 KiB a second. [`FsyncPolicy::Interval`] (the default,
//! [`defaults::QUEUE_FSYNC_INTERVAL`]) never flushes on the caller's thread: the first append at least an interval
//! after the last sync hands the segment files written since, and the directory, to a short-lived thread that
//! syncs them (one at a time: a sync still running when the next is due is not doubled). While appends go on,
//! a power loss costs at most about an interval of records; after the last append, what is not yet synced is
//! left to the kernel's writeback (`vm.dirty_expire_centisecs`, 30 s by default) or to [`QueueWriter::sync`],
//! which syncs everything on the caller's thread (shutdown). The cursor is then written without a sync: a lost
//! cursor only means records are sent again.
//!
//! [`open`] reads one segment at a time into memory to check it, and keeps an index entry (56 bytes)
//! per record not yet acknowledged.

mod format;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use roster::error_chain::chain;
use tokio::sync::Notify;
use tracing::warn;

use crate::defaults;
use format::{HEADER_BYTES, Header, MAGIC, NotASegment, parse_segment_name, scan, segment_name};

/// The cursor file, in the queue's directory.
const CURSOR_FILE: &str = "cursor";
/// Where the cursor is written before it is renamed over [`CURSOR_FILE`].
const CURSOR_TMP_FILE: &str = "cursor.tmp";
/// Bytes of a segment's magic.
const MAGIC_BYTES: u64 = MAGIC.len() as u64;

/// Settings of a queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueConfig {
    /// The queue's directory; created if missing.
    pub(crate) dir: PathBuf,
    /// Bound on the bytes the segments take on disk.
    pub(crate) max_bytes: u64,
    /// A record whose newest sample is older than this is dropped (counted) instead of read.
    pub(crate) max_age: Duration,
    /// A segment is closed, and a new one begun, once it reaches this size.
    pub(crate) segment_bytes: u64,
    /// When appended records are flushed to the disk.
    pub(crate) fsync: FsyncPolicy,
}

/// When appended records are flushed to the disk (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsyncPolicy {
    /// Every record, before `append` returns.
    Always,
    /// At most this long after a record is written, by a thread of its own.
    Interval(Duration),
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Interval(defaults::QUEUE_FSYNC_INTERVAL)
    }
}

/// One record: an opaque payload, and what the bounds and counters need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Time of the oldest sample in the payload (ms since the epoch).
    pub(crate) min_time_ms: i64,
    /// Time of the newest sample in the payload (ms since the epoch): the age bound looks at this.
    pub(crate) max_time_ms: i64,
    /// Samples in the payload.
    pub(crate) samples: u32,
    /// The payload.
    pub(crate) payload: Vec<u8>,
}

/// A record's position in the queue: its segment, and the offset just after it. Later records have greater ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RecordId {
    segment: u64,
    end: u64,
}

/// Counters and gauges of a queue.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    /// Bytes the segment files take.
    pub(crate) bytes: AtomicU64,
    /// Records not yet acknowledged (read or not).
    pub(crate) records: AtomicU64,
    /// Samples in those records.
    pub(crate) samples: AtomicU64,
    /// The min time (ms) of the first record not yet acknowledged; 0 when there is none.
    pub(crate) oldest_sample_ms: AtomicI64,
    /// Samples appended since the queue was opened.
    pub(crate) appended_samples: AtomicU64,
    /// Samples dropped by the byte bound.
    pub(crate) dropped_full: AtomicU64,
    /// Samples dropped by the age bound.
    pub(crate) dropped_too_old: AtomicU64,
    /// Samples of records found damaged (their header intact, their payload not, or their payload torn).
    pub(crate) dropped_damaged: AtomicU64,
    /// Bytes found damaged: cut at open, or skipped. A record whose header is damaged cannot tell its samples, so
    /// damage is counted in bytes as well as in the samples that are known.
    pub(crate) damaged_bytes: AtomicU64,
}

/// Why the queue failed; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The directory cannot be created or listed.
    #[error("cannot use the queue directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A segment or the cursor cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A segment or the cursor cannot be written (created, appended to, cut, or synced).
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file named like a segment does not start as one.
    #[error(
        "{path} is not a segment of this queue layout (it does not start with \"rosterq1\"): move it out of the queue directory"
    )]
    NotASegment {
        /// The file.
        path: PathBuf,
    },
}

/// The queue in `config.dir`: its writer, its reader and its counters. Walks and checks every segment first (see
/// the module doc for what happens to damage).
///
/// # Errors
/// When the directory or a segment cannot be read, a damaged segment cannot be cut, or a segment is not one.
pub(crate) fn open(config: QueueConfig) -> Result<(QueueWriter, QueueReader, Arc<QueueStats>), QueueError> {
    open_with_clock(config, Box::new(system_now_ms))
}

/// [`open`], with the clock the age bound reads (ms since the epoch).
fn open_with_clock(
    config: QueueConfig,
    clock: Box<dyn Fn() -> i64 + Send>,
) -> Result<(QueueWriter, QueueReader, Arc<QueueStats>), QueueError> {
    let dir = config.dir.clone();
    let dir_error = |source| QueueError::Dir { path: dir.clone(), source };
    fs::create_dir_all(&dir).map_err(dir_error)?;
    let mut seqs = Vec::new();
    for entry in fs::read_dir(&dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let cursor = read_cursor(&dir);
    let stats = Arc::new(QueueStats::default());
    let mut state = State::default();
    let mut next_seq = cursor.map_or(0, |c| c.segment + 1);
    for seq in seqs {
        next_seq = next_seq.max(seq + 1);
        load_segment(&dir, seq, cursor, &mut state, &stats)?;
    }
    state.publish(&stats);
    let shared = Arc::new(Shared { dir, state: Mutex::new(state), notify: Notify::new(), stats: stats.clone() });
    let writer = QueueWriter {
        shared: shared.clone(),
        max_bytes: config.max_bytes,
        segment_bytes: config.segment_bytes,
        fsync: config.fsync,
        next_seq,
        segment: None,
        unsynced: Vec::new(),
        last_sync: Instant::now(),
        syncing: None,
        buf: Vec::new(),
    };
    let reader = QueueReader {
        shared,
        max_age_ms: i64::try_from(config.max_age.as_millis()).unwrap_or(i64::MAX),
        clock,
        sync_cursor: config.fsync == FsyncPolicy::Always,
        read_through: None,
        acked: cursor,
        file: None,
    };
    Ok((writer, reader, stats))
}

fn system_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The acknowledged position in the cursor file; `None` when there is none or it cannot be read (then everything
/// is read again).
fn read_cursor(dir: &Path) -> Option<RecordId> {
    let path = dir.join(CURSOR_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %path.display(), error = %chain(&e), "cannot read the queue cursor: every queued record is sent again");
            return None;
        }
    };
    let parsed = text
        .trim_end()
        .split_once(' ')
        .and_then(|(segment, end)| Some(RecordId { segment: segment.parse().ok()?, end: end.parse().ok()? }));
    if parsed.is_none() {
        warn!(file = %path.display(), "the queue cursor holds no position: every queued record is sent again");
    }
    parsed
}

/// Walks segment `seq`, cuts its damaged tail, and indexes its records after `cursor`; deletes it when it holds
/// none.
fn load_segment(
    dir: &Path,
    seq: u64,
    cursor: Option<RecordId>,
    state: &mut State,
    stats: &QueueStats,
) -> Result<(), QueueError> {
    let path = dir.join(segment_name(seq));
    let read_error = |source| QueueError::Read { path: path.clone(), source };
    let write_error = |source| QueueError::Write { path: path.clone(), source };
    if cursor.is_some_and(|c| seq < c.segment) {
        return fs::remove_file(&path).map_err(write_error);
    }
    let bytes = fs::read(&path).map_err(read_error)?;
    let found = scan(&bytes).map_err(|NotASegment| QueueError::NotASegment { path: path.clone() })?;
    let unacked = |offset: u64, header: Header| cursor.is_none_or(|c| Entry::new(seq, offset, header).id > c);
    for (offset, header) in found.bad_payloads.iter().filter(|&&(offset, header)| unacked(offset, header)) {
        let bytes = HEADER_BYTES as u64 + u64::from(header.len);
        warn!(file = %path.display(), offset, bytes, samples = header.samples, "queue record damaged (payload checksum): skipped");
        stats.dropped_damaged.fetch_add(u64::from(header.samples), Ordering::Relaxed);
        stats.damaged_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    let file_len = bytes.len() as u64;
    if found.good_end < file_len {
        let cut = file_len - found.good_end;
        warn!(file = %path.display(), offset = found.good_end, bytes = cut, samples = found.torn_samples, "queue segment damaged (torn write or bad header): cut at the last good record");
        stats.dropped_damaged.fetch_add(found.torn_samples, Ordering::Relaxed);
        stats.damaged_bytes.fetch_add(cut, Ordering::Relaxed);
        OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(found.good_end)).map_err(write_error)?;
    }
    let entries = found
        .records
        .iter()
        .filter(|&&(offset, header)| unacked(offset, header))
        .map(|&(offset, header)| Entry::new(seq, offset, header));
    let before = state.entries.len();
    state.entries.extend(entries);
    if state.entries.len() == before {
        return fs::remove_file(&path).map_err(write_error);
    }
    for e in state.entries.range(before..) {
        state.samples += u64::from(e.samples);
    }
    state.segments.insert(seq, found.good_end);
    state.bytes += found.good_end;
    Ok(())
}

/// What the writer and the reader share.
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Woken at each append.
    notify: Notify,
    stats: Arc<QueueStats>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    /// Unlinks segment files already taken out of the index.
    fn remove_segments(&self, seqs: &[u64]) {
        for &seq in seqs {
            let path = self.segment_path(seq);
            if let Err(e) = fs::remove_file(&path) {
                warn!(file = %path.display(), error = %chain(&e), "cannot delete a queue segment");
            }
        }
    }
}

/// The index: every record not yet acknowledged, and the segment files.
#[derive(Debug, Default)]
struct State {
    /// Records not yet acknowledged, in order (the reader's unread ones are a suffix).
    entries: VecDeque<Entry>,
    /// Every segment file: sequence number → bytes.
    segments: BTreeMap<u64, u64>,
    /// The segment the writer appends to, which acknowledgements never delete.
    active: Option<u64>,
    /// Sum of `segments`.
    bytes: u64,
    /// Samples in `entries`.
    samples: u64,
}

impl State {
    fn publish(&self, stats: &QueueStats) {
        stats.bytes.store(self.bytes, Ordering::Relaxed);
        stats.records.store(self.entries.len() as u64, Ordering::Relaxed);
        stats.samples.store(self.samples, Ordering::Relaxed);
        stats.oldest_sample_ms.store(self.entries.front().map_or(0, |e| e.min_time_ms), Ordering::Relaxed);
    }

    /// The index of the first entry after `after`.
    fn position_after(&self, after: Option<RecordId>) -> usize {
        self.entries.partition_point(|e| Some(e.id) <= after)
    }

    /// Takes entries `range` out of the index; returns their samples.
    fn remove_entries(&mut self, range: std::ops::Range<usize>) -> u64 {
        let samples: u64 = self.entries.drain(range).map(|e| u64::from(e.samples)).sum();
        self.samples -= samples;
        samples
    }

    /// Takes segment `seq` out of the index.
    fn remove_segment(&mut self, seq: u64) {
        if let Some(bytes) = self.segments.remove(&seq) {
            self.bytes -= bytes;
        }
        if self.active == Some(seq) {
            self.active = None;
        }
    }
}

/// A record in the index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: RecordId,
    /// Offset of the payload in the segment.
    payload_at: u64,
    len: u32,
    samples: u32,
    min_time_ms: i64,
    max_time_ms: i64,
    payload_crc: u32,
}

impl Entry {
    fn new(segment: u64, offset: u64, h: Header) -> Self {
        let payload_at = offset + HEADER_BYTES as u64;
        Self {
            id: RecordId { segment, end: payload_at + u64::from(h.len) },
            payload_at,
            len: h.len,
            samples: h.samples,
            min_time_ms: h.min_time_ms,
            max_time_ms: h.max_time_ms,
            payload_crc: h.payload_crc,
        }
    }
}

/// The segment the writer appends to.
struct ActiveSegment {
    seq: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

/// The appending half, owned by the exporter task.
pub(crate) struct QueueWriter {
    shared: Arc<Shared>,
    max_bytes: u64,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    next_seq: u64,
    segment: Option<ActiveSegment>,
    /// Segments closed since the last sync, still to be synced ([`FsyncPolicy::Interval`]).
    unsynced: Vec<PathBuf>,
    last_sync: Instant,
    /// The thread of the last interval sync.
    syncing: Option<JoinHandle<()>>,
    /// Header and payload of the record being appended.
    buf: Vec<u8>,
}

impl QueueWriter {
    /// Appends `record` with one `write(2)`, first dropping the oldest segments if the byte bound needs it; syncs
    /// by the policy. Never waits on the reader.
    ///
    /// # Errors
    /// When the record cannot be written or (policy `Always`) synced: it is then not queued, and the next append
    /// starts a new segment.
    pub(crate) fn append(&mut self, record: &Record) -> Result<(), QueueError> {
        let size = (HEADER_BYTES + record.payload.len()) as u64;
        let Some(len) = u32::try_from(record.payload.len()).ok().filter(|_| size + MAGIC_BYTES <= self.max_bytes)
        else {
            self.shared.stats.dropped_full.fetch_add(u64::from(record.samples), Ordering::Relaxed);
            warn!(
                bytes = size,
                samples = record.samples,
                max_bytes = self.max_bytes,
                "a record larger than the queue's byte bound is dropped"
            );
            return Ok(());
        };
        self.make_room(size);
        let mut segment = match self.segment.take() {
            Some(segment) => segment,
            None => self.create_segment()?,
        };
        let header = Header {
            len,
            samples: record.samples,
            min_time_ms: record.min_time_ms,
            max_time_ms: record.max_time_ms,
            payload_crc: crc32c::crc32c(&record.payload),
        };
        self.buf.clear();
        self.buf.extend_from_slice(&header.encode());
        self.buf.extend_from_slice(&record.payload);
        let written = segment.file.write_all_at(&self.buf, segment.len).and_then(|()| match self.fsync {
            FsyncPolicy::Always => segment.file.sync_data(),
            FsyncPolicy::Interval(_) => Ok(()),
        });
        if let Err(source) = written {
            // Cut what the failed write may have left, and start a new segment next time.
            if let Err(e) = segment.file.set_len(segment.len) {
                warn!(file = %segment.path.display(), error = %chain(&e), "cannot cut a failed append: the next open cuts it");
            }
            let path = segment.path.clone();
            self.close_segment(segment);
            return Err(QueueError::Write { path, source });
        }
        let offset = segment.len;
        segment.len += size;
        {
            let mut state = self.shared.lock();
            state.entries.push_back(Entry::new(segment.seq, offset, header));
            state.samples += u64::from(record.samples);
            state.segments.insert(segment.seq, segment.len);
            state.bytes += size;
            state.publish(&self.shared.stats);
        }
        self.shared.stats.appended_samples.fetch_add(u64::from(record.samples), Ordering::Relaxed);
        self.shared.notify.notify_one();
        if segment.len >= self.segment_bytes {
            self.close_segment(segment);
        } else {
            self.segment = Some(segment);
        }
        if let FsyncPolicy::Interval(interval) = self.fsync
            && self.last_sync.elapsed() >= interval
        {
            self.sync_in_background();
        }
        Ok(())
    }

    /// Syncs every segment written since the last sync, and the directory, on this thread.
    ///
    /// # Errors
    /// When a sync fails (the file is named).
    pub(crate) fn sync(&mut self) -> Result<(), QueueError> {
        if let Some(thread) = self.syncing.take() {
            // The thread logs its own failures and never panics; its result holds nothing.
            let _ = thread.join();
        }
        let files = self.take_unsynced();
        self.last_sync = Instant::now();
        files
            .into_iter()
            .try_for_each(|(path, file)| file.sync_data().map_err(|source| QueueError::Write { path, source }))
    }

    /// Deletes the oldest segments until a record of `size` bytes fits the byte bound (with a new segment's magic
    /// when there is no segment to append to).
    fn make_room(&mut self, size: u64) {
        let (mut segments, mut samples) = (Vec::new(), 0);
        {
            let mut state = self.shared.lock();
            let need = |state: &State| size + if state.active.is_some() { 0 } else { MAGIC_BYTES };
            // Bounded: each turn removes a segment.
            while state.bytes + need(&state) > self.max_bytes
                && let Some((&seq, _)) = state.segments.first_key_value()
            {
                let in_segment = state.entries.partition_point(|e| e.id.segment <= seq);
                samples += state.remove_entries(0..in_segment);
                state.remove_segment(seq);
                segments.push(seq);
            }
            if segments.is_empty() {
                return;
            }
            state.publish(&self.shared.stats);
        }
        if self.segment.as_ref().is_some_and(|s| segments.contains(&s.seq)) {
            self.segment = None;
        }
        self.shared.remove_segments(&segments);
        self.shared.stats.dropped_full.fetch_add(samples, Ordering::Relaxed);
        warn!(
            segments = segments.len(),
            samples,
            max_bytes = self.max_bytes,
            "queue full: dropped its oldest segments"
        );
    }

    fn create_segment(&mut self) -> Result<ActiveSegment, QueueError> {
        let seq = self.next_seq;
        let path = self.shared.segment_path(seq);
        let file = OpenOptions::new().write(true).create_new(true).open(&path);
        // Under `Always` the directory is synced too, so that the new file's name survives a power loss.
        let sync_dir = || match self.fsync {
            FsyncPolicy::Always => File::open(&self.shared.dir).and_then(|dir| dir.sync_all()),
            FsyncPolicy::Interval(_) => Ok(()),
        };
        let file = file.and_then(|file| file.write_all_at(MAGIC, 0).and_then(|()| sync_dir()).map(|()| file));
        let file = file.map_err(|source| {
            // A file half made is removed, so that the next attempt can make it whole.
            if source.kind() != io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(&path);
            }
            QueueError::Write { path: path.clone(), source }
        })?;
        self.next_seq += 1;
        let mut state = self.shared.lock();
        state.segments.insert(seq, MAGIC_BYTES);
        state.bytes += MAGIC_BYTES;
        state.active = Some(seq);
        state.publish(&self.shared.stats);
        Ok(ActiveSegment { seq, path, file, len: MAGIC_BYTES })
    }

    /// Stops appending to `segment`; it is synced with the next sync.
    fn close_segment(&mut self, segment: ActiveSegment) {
        let mut state = self.shared.lock();
        if state.active == Some(segment.seq) {
            state.active = None;
        }
        drop(state);
        // Only its name is kept: an open handle would hold the disk space of a segment deleted before the sync.
        if let FsyncPolicy::Interval(_) = self.fsync {
            self.unsynced.push(segment.path);
        }
    }

    /// The files a sync covers now: the closed segments not yet synced, the active one, and the directory.
    fn take_unsynced(&mut self) -> Vec<(PathBuf, File)> {
        let mut files = Vec::new();
        for path in std::mem::take(&mut self.unsynced) {
            // A segment deleted since it was closed (acknowledged, or dropped for room) needs no sync.
            match File::open(&path) {
                Ok(file) => files.push((path, file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!(file = %path.display(), error = %chain(&e), "cannot sync a queue segment"),
            }
        }
        if let Some(segment) = &self.segment {
            match segment.file.try_clone() {
                Ok(file) => files.push((segment.path.clone(), file)),
                Err(e) => warn!(file = %segment.path.display(), error = %chain(&e), "cannot sync a queue segment"),
            }
        }
        match File::open(&self.shared.dir) {
            Ok(dir) => files.push((self.shared.dir.clone(), dir)),
            Err(e) => warn!(dir = %self.shared.dir.display(), error = %chain(&e), "cannot sync the queue directory"),
        }
        files
    }

    /// Starts a thread that syncs what was written since the last sync, unless the last one is still at it.
    fn sync_in_background(&mut self) {
        if self.syncing.as_ref().is_some_and(|thread| !thread.is_finished()) {
            return;
        }
        let files = self.take_unsynced();
        self.last_sync = Instant::now();
        let sync = move || {
            for (path, file) in files {
                if let Err(e) = file.sync_data() {
                    warn!(file = %path.display(), error = %chain(&e), "cannot sync a queue file");
                }
            }
        };
        match std::thread::Builder::new().name("queue-fsync".into()).spawn(sync) {
            Ok(thread) => self.syncing = Some(thread),
            Err(e) => warn!(error = %chain(&e), "cannot start the queue's sync thread: the next append tries again"),
        }
    }
}

impl std::fmt::Debug for QueueWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWriter").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

/// The reading half, owned by the sender task.
pub(crate) struct QueueReader {
    shared: Arc<Shared>,
    max_age_ms: i64,
    clock: Box<dyn Fn() -> i64 + Send>,
    sync_cursor: bool,
    /// The last record handed out (or dropped as too old).
    read_through: Option<RecordId>,
    /// The last record acknowledged, as in the cursor file.
    acked: Option<RecordId>,
    /// The segment last read from.
    file: Option<(u64, File)>,
}

impl QueueReader {
    /// The age bound now: a sample older than this (ms since the epoch) is too old to send.
    pub(crate) fn oldest_allowed_ms(&self) -> i64 {
        (self.clock)().saturating_sub(self.max_age_ms)
    }

    /// The next record, waiting for one to be appended if there is none. Cancel-safe: a record is handed out only
    /// by the call that returns it.
    ///
    /// # Errors
    /// As [`QueueReader::try_next`].
    pub(crate) async fn next(&mut self) -> Result<(RecordId, Record), QueueError> {
        loop {
            if let Some(read) = self.try_next()? {
                return Ok(read);
            }
            // A notification sent since the last look is kept as a permit, so none is missed.
            self.shared.notify.notified().await;
        }
    }

    /// The next record, if one is queued. Records older than the age bound are dropped on the way, counted.
    ///
    /// # Errors
    /// When a segment cannot be read, or the cursor cannot be written after dropping records; a retry reads the
    /// same record again.
    pub(crate) fn try_next(&mut self) -> Result<Option<(RecordId, Record)>, QueueError> {
        // Bounded: each turn hands out a record, or takes at least one out of the index.
        loop {
            let oldest_allowed = self.oldest_allowed_ms();
            let mut state = self.shared.lock();
            let at = state.position_after(self.read_through);
            let too_old = state.entries.range(at..).take_while(|e| e.max_time_ms < oldest_allowed).count();
            if too_old > 0 {
                let last = state.entries[at + too_old - 1].id;
                let samples = state.remove_entries(at..at + too_old);
                state.publish(&self.shared.stats);
                drop(state);
                self.shared.stats.dropped_too_old.fetch_add(samples, Ordering::Relaxed);
                warn!(
                    records = too_old,
                    samples,
                    max_age_ms = self.max_age_ms,
                    "queued samples too old to send: dropped"
                );
                self.read_through = Some(last);
                // Nothing handed out is waiting for an acknowledgement: the drop can be acknowledged now.
                if at == 0 {
                    self.ack(last)?;
                }
                continue;
            }
            let Some(&entry) = state.entries.get(at) else { return Ok(None) };
            // Opened under the lock, while the index says the segment exists; read after it (an open file stays
            // readable even if the byte bound deletes the segment meanwhile).
            let path = self.shared.segment_path(entry.id.segment);
            let file = match self.file.take() {
                Some((seq, file)) if seq == entry.id.segment => file,
                _ => File::open(&path).map_err(|source| QueueError::Read { path: path.clone(), source })?,
            };
            drop(state);
            let mut payload = vec![0; entry.len as usize];
            let read = file.read_exact_at(&mut payload, entry.payload_at);
            self.file = Some((entry.id.segment, file));
            read.map_err(|source| QueueError::Read { path: path.clone(), source })?;
            let mut state = self.shared.lock();
            let Ok(at) = state.entries.binary_search_by_key(&entry.id, |e| e.id) else {
                continue; // dropped by the byte bound while it was read
            };
            if crc32c::crc32c(&payload) != entry.payload_crc {
                state.remove_entries(at..at + 1);
                state.publish(&self.shared.stats);
                drop(state);
                let bytes = HEADER_BYTES as u64 + u64::from(entry.len);
                self.shared.stats.dropped_damaged.fetch_add(u64::from(entry.samples), Ordering::Relaxed);
                self.shared.stats.damaged_bytes.fetch_add(bytes, Ordering::Relaxed);
                let offset = entry.payload_at - HEADER_BYTES as u64;
                warn!(file = %path.display(), offset, bytes, samples = entry.samples, "queue record damaged (payload checksum): skipped");
                continue;
            }
            self.read_through = Some(entry.id);
            let record = Record {
                min_time_ms: entry.min_time_ms,
                max_time_ms: entry.max_time_ms,
                samples: entry.samples,
                payload,
            };
            return Ok(Some((entry.id, record)));
        }
    }

    /// Acknowledges every record read up to and including `through` (an id past the last record read counts as
    /// that record): persists the position in the cursor file and deletes every segment no longer holding an
    /// unacknowledged record.
    ///
    /// # Errors
    /// When the cursor cannot be written: the records are then read again after a restart.
    pub(crate) fn ack(&mut self, through: RecordId) -> Result<(), QueueError> {
        let through = through.min(self.read_through.unwrap_or(through));
        if self.read_through.is_none() || self.acked >= Some(through) {
            return Ok(());
        }
        let deleted: Vec<u64> = {
            let mut state = self.shared.lock();
            let acked = state.position_after(Some(through));
            state.remove_entries(0..acked);
            let keep_from = state.entries.front().map_or(u64::MAX, |e| e.id.segment);
            let active = state.active;
            let deleted: Vec<u64> =
                state.segments.range(..keep_from).map(|(&seq, _)| seq).filter(|&seq| Some(seq) != active).collect();
            for &seq in &deleted {
                state.remove_segment(seq);
            }
            state.publish(&self.shared.stats);
            deleted
        };
        let written = self.write_cursor(through);
        self.acked = Some(through);
        self.shared.remove_segments(&deleted);
        if self.file.as_ref().is_some_and(|(seq, _)| deleted.contains(seq)) {
            self.file = None;
        }
        written
    }

    fn write_cursor(&self, through: RecordId) -> Result<(), QueueError> {
        let dir = &self.shared.dir;
        let (tmp, path) = (dir.join(CURSOR_TMP_FILE), dir.join(CURSOR_FILE));
        let tmp_error = |source| QueueError::Write { path: tmp.clone(), source };
        fs::write(&tmp, format!("{} {}\n", through.segment, through.end)).map_err(tmp_error)?;
        if self.sync_cursor {
            File::open(&tmp).and_then(|f| f.sync_data()).map_err(tmp_error)?;
        }
        fs::rename(&tmp, &path).map_err(|source| QueueError::Write { path: path.clone(), source })?;
        if self.sync_cursor {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| QueueError::Write { path: dir.clone(), source })?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for QueueReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReader").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}
