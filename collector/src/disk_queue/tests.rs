use std::{
    fs,
    path::Path,
    sync::{Arc, atomic::AtomicI64},
    time::Duration,
};

use proptest::{collection::vec, prelude::*};
use roster::error_chain::chain;

use super::*;

/// The clock of every test (ms since the epoch).
const NOW: i64 = 1_700_000_000_000;
/// Payload of [`fixed`] records.
const PAYLOAD: usize = 100;
/// Bytes of a [`fixed`] record on disk.
const RECORD: u64 = (HEADER_BYTES + PAYLOAD) as u64;
/// A segment that closes after exactly four [`fixed`] records.
const FOUR_RECORDS: u64 = MAGIC_BYTES + 4 * RECORD;

fn config(dir: &Path) -> QueueConfig {
    QueueConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
        segment_bytes: FOUR_RECORDS,
        fsync: FsyncPolicy::default(),
    }
}

fn open_at(config: QueueConfig) -> (QueueWriter, QueueReader, Arc<QueueStats>) {
    open_with_clock(config, Box::new(|| NOW)).expect("the queue opens")
}

/// Record `i`, of a size that depends on `i`.
fn record(i: u32) -> Record {
    Record {
        min_time_ms: NOW - 1000 + i64::from(i),
        max_time_ms: NOW + i64::from(i),
        samples: i % 7 + 1,
        payload: format!("record {i};").repeat(i as usize % 5 + 1).into_bytes(),
    }
}

/// Record `i`, of [`RECORD`] bytes on disk.
fn fixed(i: u32) -> Record {
    Record { payload: vec![i as u8; PAYLOAD], ..record(i) }
}

fn append_all(writer: &mut QueueWriter, records: &[Record]) {
    for r in records {
        writer.append(r).expect("the append succeeds");
    }
}

/// Every record the reader hands out now.
fn read_all(reader: &mut QueueReader) -> Vec<(RecordId, Record)> {
    let mut read = Vec::new();
    for _ in 0..100_000 {
        match reader.try_next().expect("the read succeeds") {
            Some(r) => read.push(r),
            None => return read,
        }
    }
    panic!("the queue never ran empty");
}

fn records_of(read: &[(RecordId, Record)]) -> Vec<Record> {
    read.iter().map(|(_, r)| r.clone()).collect()
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)
        .expect("the directory lists")
        .filter_map(|e| e.expect("an entry").file_name().to_str().and_then(parse_segment_name))
        .collect();
    seqs.sort_unstable();
    seqs
}

fn samples(records: &[Record]) -> u64 {
    records.iter().map(|r| u64::from(r.samples)).sum()
}

fn load(stat: &AtomicU64) -> u64 {
    stat.load(Ordering::Relaxed)
}

#[test]
fn records_are_read_back_in_append_order_across_segments() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut writer, mut reader, stats) = open_at(QueueConfig { segment_bytes: 512, ..config(dir.path()) });
    let records: Vec<Record> = (0..300).map(record).collect();
    append_all(&mut writer, &records);
    assert!(segments(dir.path()).len() > 10, "{:?}", segments(dir.path()));
    assert_eq!(load(&stats.records), 300);
    assert_eq!(load(&stats.samples), samples(&records));
    assert_eq!(load(&stats.appended_samples), samples(&records));
    assert_eq!(stats.oldest_sample_ms.load(Ordering::Relaxed), records[0].min_time_ms);

    let read = read_all(&mut reader);
    assert_eq!(records_of(&read), records);
    assert!(read.windows(2).all(|w| w[0].0 < w[1].0), "ids grow with the order");
    // Read is not acknowledged: everything is still queued.
    assert_eq!(load(&stats.records), 300);
}

#[test]
fn a_restart_resumes_after_the_last_ack_and_records_read_but_not_acked_come_again() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::default()] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = QueueConfig { fsync, ..config(dir.path()) };
        let records: Vec<Record> = (0..20).map(record).collect();
        {
            let (mut writer, mut reader, _) = open_at(config.clone());
            append_all(&mut writer, &records);
            let read: Vec<_> = (0..12).map(|_| reader.try_next().expect("a read").expect("a record")).collect();
            reader.ack(read[7].0).expect("the ack is written");
            // Dropped without a sync, as by `kill -9`.
        }
        let (mut writer, mut reader, stats) = open_at(config);
        assert_eq!(load(&stats.records), 12, "{fsync:?}");
        assert_eq!(load(&stats.samples), samples(&records[8..]), "{fsync:?}");
        writer.append(&record(20)).expect("the append succeeds");
        writer.sync().expect("the sync succeeds");
        let mut expected = records[8..].to_vec();
        expected.push(record(20));
        assert_eq!(records_of(&read_all(&mut reader)), expected, "{fsync:?}");
    }
}

#[test]
fn an_ack_deletes_only_segments_wholly_acknowledged() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut writer, mut reader, stats) = open_at(config(dir.path()));
    append_all(&mut writer, &(0..12).map(fixed).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()), [0, 1, 2]);
    assert_eq!(load(&stats.bytes), 3 * FOUR_RECORDS);

    let read = read_all(&mut reader);
    reader.ack(read[5].0).expect("the ack is written");
    assert_eq!(segments(dir.path()), [1, 2], "segment 1 still holds unacknowledged records");
    assert_eq!(load(&stats.bytes), 2 * FOUR_RECORDS);
    assert_eq!(load(&stats.records), 6);
    assert_eq!(stats.oldest_sample_ms.load(Ordering::Relaxed), fixed(6).min_time_ms);

    reader.ack(read[7].0).expect("the ack is written");
    assert_eq!(segments(dir.path()), [2]);

    // The segment the writer appends to stays, even when all of it is acknowledged.
    writer.append(&fixed(12)).expect("the append succeeds");
    let last = read_all(&mut reader).pop().expect("the new record");
    reader.ack(last.0).expect("the ack is written");
    assert_eq!(segments(dir.path()), [3]);
    assert_eq!(load(&stats.records), 0);
    assert_eq!(load(&stats.samples), 0);
    assert_eq!(stats.oldest_sample_ms.load(Ordering::Relaxed), 0);
    assert_eq!(load(&stats.bytes), MAGIC_BYTES + RECORD);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record_wherever_the_write_stopped() {
    let base = tempfile::tempdir().expect("a temp dir");
    let records: Vec<Record> = (0..6).map(fixed).collect();
    append_all(&mut open_at(config(base.path())).0, &records[..4]);
    // A restart: the last segment is the one written when the process died.
    append_all(&mut open_at(config(base.path())).0, &records[4..]);
    let whole = fs::read(base.path().join(segment_name(1))).expect("the last segment");
    let last_at = whole.len() - RECORD as usize;
    for cut in last_at + 1..whole.len() {
        let dir = tempfile::tempdir().expect("a temp dir");
        fs::copy(base.path().join(segment_name(0)), dir.path().join(segment_name(0))).expect("a copy");
        fs::write(dir.path().join(segment_name(1)), &whole[..cut]).expect("a torn copy");

        let (mut writer, mut reader, stats) = open_at(config(dir.path()));
        assert_eq!(load(&stats.damaged_bytes), (cut - last_at) as u64, "cut at {cut}");
        let torn_samples = if cut - last_at >= HEADER_BYTES { u64::from(records[5].samples) } else { 0 };
        assert_eq!(load(&stats.dropped_damaged), torn_samples, "cut at {cut}");
        let len = fs::metadata(dir.path().join(segment_name(1))).expect("the segment").len();
        assert_eq!(len, last_at as u64, "the file is cut at the last good record");
        writer.append(&fixed(9)).expect("appends go on");
        let mut expected = records[..5].to_vec();
        expected.push(fixed(9));
        assert_eq!(records_of(&read_all(&mut reader)), expected, "cut at {cut}");
    }
}

#[test]
fn a_flipped_bit_is_detected_wherever_it_falls() {
    let base = tempfile::tempdir().expect("a temp dir");
    let records: Vec<Record> = (0..4).map(fixed).collect();
    append_all(&mut open_at(config(base.path())).0, &records);
    let whole = fs::read(base.path().join(segment_name(0))).expect("the segment");
    let damaged_at = MAGIC.len() + 2 * RECORD as usize;
    for byte in damaged_at..damaged_at + RECORD as usize {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut bytes = whole.clone();
        bytes[byte] ^= 1 << (byte % 8);
        fs::write(dir.path().join(segment_name(0)), &bytes).expect("a damaged copy");

        let (_, mut reader, stats) = open_at(config(dir.path()));
        let read = records_of(&read_all(&mut reader));
        if byte < damaged_at + HEADER_BYTES {
            // A header that fails its check cannot be trusted for its length: the rest of the segment is cut.
            assert_eq!(read, records[..2], "bit flipped at {byte}");
            assert_eq!(load(&stats.damaged_bytes), 2 * RECORD, "bit flipped at {byte}");
        } else {
            // A payload that fails its check is skipped alone.
            assert_eq!(read, [&records[..2], &records[3..]].concat(), "bit flipped at {byte}");
            assert_eq!(load(&stats.damaged_bytes), RECORD, "bit flipped at {byte}");
            assert_eq!(load(&stats.dropped_damaged), u64::from(records[2].samples), "bit flipped at {byte}");
        }
    }
}

#[test]
fn a_payload_damaged_after_open_is_skipped_when_read() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut writer, mut reader, stats) = open_at(config(dir.path()));
    append_all(&mut writer, &(0..3).map(fixed).collect::<Vec<_>>());
    let path = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&path).expect("the segment");
    bytes[MAGIC.len() + RECORD as usize + HEADER_BYTES] ^= 0x10;
    fs::write(&path, bytes).expect("the damage");

    assert_eq!(records_of(&read_all(&mut reader)), [fixed(0), fixed(2)]);
    assert_eq!(load(&stats.dropped_damaged), u64::from(fixed(1).samples));
    assert_eq!(load(&stats.records), 2);
}

#[test]
fn the_byte_bound_drops_the_oldest_segments_and_counts_their_samples() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let max_bytes = 3 * FOUR_RECORDS;
    let (mut writer, mut reader, stats) = open_at(QueueConfig { max_bytes, ..config(dir.path()) });
    let records: Vec<Record> = (0..30).map(fixed).collect();
    append_all(&mut writer, &records[..6]);
    // The reader is in segment 0 when the bound drops it: it moves on to what is left.
    assert_eq!(records_of(&[reader.try_next().expect("a read").expect("a record")]), [fixed(0)]);
    for r in &records[6..] {
        writer.append(r).expect("the append succeeds");
        assert!(load(&stats.bytes) <= max_bytes, "{} > {max_bytes}", load(&stats.bytes));
    }
    // 30 records, 4 a segment: segments 0..=7; the bound keeps 3 of them, the last one half full.
    assert_eq!(segments(dir.path()), [5, 6, 7]);
    let kept = &records[20..];
    assert_eq!(load(&stats.dropped_full), samples(&records[..20]));
    assert_eq!(load(&stats.samples), samples(kept));
    assert_eq!(records_of(&read_all(&mut reader)), kept);

    // A record that cannot fit even in an empty queue is dropped, counted.
    let huge = Record { payload: vec![0; max_bytes as usize], ..fixed(99) };
    writer.append(&huge).expect("the drop is not an error");
    assert_eq!(load(&stats.dropped_full), samples(&records[..20]) + u64::from(huge.samples));
    assert_eq!(segments(dir.path()), [5, 6, 7]);
}

#[test]
fn the_age_bound_drops_records_too_old_and_counts_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = QueueConfig { max_age: Duration::from_secs(60), ..config(dir.path()) };
    let clock = Arc::new(AtomicI64::new(NOW));
    let clock_fn = |clock: &Arc<AtomicI64>| {
        let clock = clock.clone();
        Box::new(move || clock.load(Ordering::Relaxed))
    };
    let records: Vec<Record> = (0..10).map(|i| Record { max_time_ms: NOW + i64::from(i) * 1000, ..fixed(i) }).collect();
    {
        let (mut writer, mut reader, stats) = open_with_clock(config.clone(), clock_fn(&clock)).expect("the queue");
        append_all(&mut writer, &records);
        // Records 0..=4 have their newest sample more than 60 s before now.
        clock.store(NOW + 60_000 + 4500, Ordering::Relaxed);
        let (_, first) = reader.try_next().expect("a read").expect("a record");
        assert_eq!(first, records[5]);
        assert_eq!(load(&stats.dropped_too_old), samples(&records[..5]));
        assert_eq!(load(&stats.records), 5);
        assert_eq!(load(&stats.samples), samples(&records[5..]));
        assert_eq!(segments(dir.path()), [1, 2], "segment 0 held only dropped records");
    }
    // The drop was acknowledged: a restart does not bring the records back.
    let (_, mut reader, stats) = open_with_clock(config, clock_fn(&clock)).expect("the queue");
    assert_eq!(records_of(&read_all(&mut reader)), records[5..]);
    assert_eq!(load(&stats.dropped_too_old), 0);
}

#[test]
fn an_append_that_fails_is_an_error_naming_the_file_and_the_writer_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Every record closes its segment, so every append makes the next one.
    let (mut writer, mut reader, stats) = open_at(QueueConfig { segment_bytes: 1, ..config(dir.path()) });
    writer.append(&record(0)).expect("the append succeeds");
    // The next segment cannot be made (as on a full or failing disk; a read-only directory would not stop root).
    let in_the_way = dir.path().join(segment_name(1));
    fs::create_dir(&in_the_way).expect("a directory in the way");
    let error = writer.append(&record(1)).expect_err("the append fails");
    assert!(chain(&error).to_string().contains(&in_the_way.display().to_string()), "{}", chain(&error));
    assert_eq!(load(&stats.records), 1, "what was queued stays");

    fs::remove_dir(&in_the_way).expect("the disk recovers");
    writer.append(&record(2)).expect("the append succeeds");
    assert_eq!(records_of(&read_all(&mut reader)), [record(0), record(2)]);
    assert_eq!(load(&stats.appended_samples), samples(&[record(0), record(2)]));
}

#[test]
fn a_write_that_fails_is_an_error_naming_the_file_and_the_next_append_starts_a_new_segment() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut writer, mut reader, stats) = open_at(config(dir.path()));
    writer.append(&record(0)).expect("the append succeeds");
    // The disk fills up under the segment being appended to.
    let segment = writer.segment.as_mut().expect("a segment is being appended to");
    segment.file = OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let error = writer.append(&record(1)).expect_err("the append fails");
    let text = chain(&error).to_string();
    assert!(text.contains(&dir.path().join(segment_name(0)).display().to_string()), "{text}");
    assert!(text.contains("No space left on device"), "{text}");

    writer.append(&record(2)).expect("the append succeeds");
    assert_eq!(segments(dir.path()), [0, 1]);
    assert_eq!(records_of(&read_all(&mut reader)), [record(0), record(2)]);
    drop((writer, reader));
    let (_, mut reader, _) = open_at(config(dir.path()));
    assert_eq!(records_of(&read_all(&mut reader)), [record(0), record(2)]);
    assert_eq!(load(&stats.appended_samples), samples(&[record(0), record(2)]));
}

#[test]
fn a_reader_racing_a_writer_that_drops_segments_gets_whole_records_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = QueueConfig { max_bytes: 4 * FOUR_RECORDS, ..config(dir.path()) };
    let (mut writer, mut reader, stats) = open_at(config);
    let appender = std::thread::spawn(move || {
        for i in 0..5000 {
            writer.append(&fixed(i)).expect("the append succeeds");
        }
    });
    let mut got = Vec::new();
    // Bounded: the writer stops after 5000 records, and the last look after it finished drains the rest.
    loop {
        let finished = appender.is_finished();
        while let Some((id, r)) = reader.try_next().expect("the read succeeds") {
            got.push(r);
            reader.ack(id).expect("the ack is written");
        }
        if finished {
            break;
        }
        std::thread::yield_now();
    }
    appender.join().expect("the writer thread");
    // Whole records (the payload checksum held), a subsequence of what was appended, ending with the last one.
    // Record i has its min time at NOW - 1000 + i.
    let indexes: Vec<u32> = got.iter().map(|r| (r.min_time_ms - NOW + 1000) as u32).collect();
    assert!(got.iter().zip(&indexes).all(|(r, &i)| *r == fixed(i)), "a record came back altered");
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "records came back out of order");
    assert_eq!(got.last(), Some(&fixed(4999)));
    assert!(load(&stats.bytes) <= 4 * FOUR_RECORDS);
    assert_eq!(load(&stats.records), 0);
}

#[tokio::test(start_paused = true)]
async fn next_wakes_when_a_record_is_appended_from_another_task() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut writer, mut reader, _) = open_at(config(dir.path()));
    let read = tokio::spawn(async move { reader.next().await.map(|(_, r)| r) });
    // The reader runs first on this single-threaded runtime, finds nothing and waits.
    tokio::task::yield_now().await;
    assert!(!read.is_finished());
    tokio::spawn(async move { writer.append(&record(7)) }).await.expect("the writer task").expect("the append");
    // Paused time: if the reader never woke, the timeout would fire at once instead of hanging.
    let got = tokio::time::timeout(Duration::from_secs(10), read).await.expect("the reader woke");
    assert_eq!(got.expect("the reader task").expect("the read"), record(7));
}

#[test]
fn an_unreadable_cursor_means_every_record_is_read_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let records: Vec<Record> = (0..6).map(record).collect();
    {
        let (mut writer, mut reader, _) = open_at(config(dir.path()));
        append_all(&mut writer, &records);
        let read = read_all(&mut reader);
        reader.ack(read[2].0).expect("the ack is written");
    }
    fs::write(dir.path().join(CURSOR_FILE), "garbage").expect("a damaged cursor");
    let (_, mut reader, _) = open_at(config(dir.path()));
    assert_eq!(records_of(&read_all(&mut reader)), records);
}

#[test]
fn a_segment_torn_while_it_was_made_holds_nothing_and_goes() {
    for torn in [&b"rost"[..], &[0; 4096][..], b""] {
        let dir = tempfile::tempdir().expect("a temp dir");
        append_all(&mut open_at(config(dir.path())).0, &[record(0), record(1)]);
        fs::write(dir.path().join(segment_name(1)), torn).expect("a torn segment");
        let (mut writer, mut reader, stats) = open_at(config(dir.path()));
        assert_eq!(load(&stats.damaged_bytes), torn.len() as u64);
        assert_eq!(segments(dir.path()), [0]);
        writer.append(&record(2)).expect("the append succeeds");
        assert_eq!(segments(dir.path()), [0, 2]);
        assert_eq!(records_of(&read_all(&mut reader)), [record(0), record(1), record(2)]);
    }
}

#[test]
fn a_file_that_is_not_a_segment_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(segment_name(0));
    fs::write(&path, b"something else entirely").expect("a foreign file");
    let Err(error) = open(config(dir.path())) else { panic!("the queue opened") };
    assert!(chain(&error).to_string().contains(&path.display().to_string()), "{}", chain(&error));
}

#[test]
fn headers_round_trip_segment_names_sort_as_numbers_and_an_index_entry_takes_56_bytes() {
    let header = Header { len: 7, samples: 3, min_time_ms: -5, max_time_ms: i64::MAX, payload_crc: 0xdead_beef };
    assert_eq!(Header::decode(&header.encode()), Some(header));
    assert_eq!(segment_name(42), "00000000000000000042.seg");
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_segment_name("42.seg"), None);
    assert_eq!(parse_segment_name("cursor"), None);
    // As the module doc says of the index.
    assert_eq!(std::mem::size_of::<Entry>(), 56);
}

/// What a test does to the queue.
#[derive(Debug, Clone)]
enum Op {
    Append(u32),
    Read,
    AckLastRead,
    /// Drops both halves without a sync (as `kill -9` would) and opens the queue again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..40u32).prop_map(Op::Append),
        3 => Just(Op::Read),
        1 => Just(Op::AckLastRead),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a model (the records not acknowledged, and how many of them were read), with no bound reached:
    /// every read hands out the next record in append order, a restart reads again what was not acknowledged, and
    /// once all is acknowledged no segment is left but the one being appended to.
    #[test]
    fn reads_acks_and_restarts_follow_the_model(ops in vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = QueueConfig { segment_bytes: 300, ..config(dir.path()) };
        let (mut writer, mut reader, mut stats) = open_at(config.clone());
        let (mut unacked, mut read) = (VecDeque::new(), 0);
        let mut last_read = None;
        for op in ops {
            match op {
                Op::Append(i) => {
                    writer.append(&record(i)).expect("the append succeeds");
                    unacked.push_back(record(i));
                }
                Op::Read => {
                    let got = reader.try_next().expect("the read succeeds");
                    prop_assert_eq!(got.as_ref().map(|(_, r)| r), unacked.get(read));
                    if let Some((id, _)) = got {
                        prop_assert!(last_read < Some(id));
                        last_read = Some(id);
                        read += 1;
                    }
                }
                Op::AckLastRead => {
                    if let Some(id) = last_read {
                        reader.ack(id).expect("the ack is written");
                        unacked.drain(..read);
                        read = 0;
                    }
                }
                Op::Restart => {
                    drop((writer, reader));
                    (writer, reader, stats) = open_at(config.clone());
                    (read, last_read) = (0, None);
                }
            }
            prop_assert_eq!(load(&stats.records), unacked.len() as u64);
            prop_assert_eq!(load(&stats.samples), samples(unacked.make_contiguous()));
        }
        let rest = read_all(&mut reader);
        prop_assert_eq!(records_of(&rest), unacked.range(read..).cloned().collect::<Vec<_>>());
        if let Some(id) = rest.last().map(|(id, _)| *id).or(last_read) {
            reader.ack(id).expect("the ack is written");
        }
        prop_assert!(segments(dir.path()).len() <= 1, "{:?}", segments(dir.path()));
        prop_assert_eq!(load(&stats.records), 0);
    }
}
