//! The applied snapshot on disk (C5), so a follower that restarts while the control plane is down resumes its
//! last known set at once.
//!
//! Format: the 16-byte magic `ROSTER-SNAPSHOT1`, the XXH3-64 of the payload (8 bytes, little-endian), then the
//! payload: a `roster.v1.PersistedSnapshot` protobuf. Writes go to a temporary file that is fsynced and renamed
//! over the old one (and the directory fsynced), so a crash leaves either the old file or the new one, never a
//! mix; a failed save removes its temporary file, and one left by a crash is removed at start
//! ([`remove_leftover`]). A missing file means "no snapshot yet"; a damaged one is an error naming the file and the way out,
//! never a silent empty set.
//!
//! A save streams the payload: one producer is converted and encoded at a time, and the checksum is computed as
//! the bytes go out and written into its place at the end. A snapshot of 20 000 producers with the largest labels
//! is 200 MB encoded; building the whole message and its encoding in memory first cost about twice that again.
//! A follower saves the entries as they came from the server ([`save_encoded`]): they are already encoded, and a
//! follower of a busy collector saves many generations a second.

use std::{
    fs,
    io::{self, BufWriter, Seek as _, SeekFrom, Write},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use prost::Message as _;
use uuid::Uuid;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::{assembler::Snapshot, wire};
use crate::{domain::ProducerId, pb};

const MAGIC: &[u8; 16] = b"ROSTER-SNAPSHOT1";

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading or writing failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file exists but is not a valid snapshot.
    #[error(
        "{path} is damaged ({problem}). The collector will not guess what it held. To start with an empty set \
         (collecting nothing until the server sends this collector's assignment), move the file away; or restore it \
         from a backup"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// `roster.v1.PersistedSnapshot` with each producer left encoded (a message field and a `bytes` field share
/// protobuf's length-delimited wire type), so that a load reads every entry as a follower reads a snapshot's, in one
/// pass from its bytes (`wire::read_entry`). The tests check the mirror against the compiled descriptors.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredSnapshot {
    #[prost(string, tag = "1")]
    epoch: String,
    #[prost(uint64, tag = "2")]
    generation: u64,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    producers: Vec<Bytes>,
    #[prost(uint64, tag = "4")]
    applied_at_unix_ms: u64,
    #[prost(bool, tag = "5")]
    store_settling: bool,
    #[prost(string, repeated, tag = "6")]
    carried_ids: Vec<String>,
}

/// A snapshot read back from disk, with when it was applied.
#[derive(Debug, Clone)]
pub struct Persisted {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// When it was applied (Unix ms).
    pub applied_at_ms: u64,
}

/// Reads the state file; `Ok(None)` when there is none.
///
/// # Errors
/// [`StateFileError::Io`] when it cannot be read, [`StateFileError::Corrupt`] when it is damaged.
pub fn load(path: &Path) -> Result<Option<Persisted>, StateFileError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateFileError::Io { path: path.to_owned(), source }),
    };
    let corrupt = |problem: String| StateFileError::Corrupt { path: path.to_owned(), problem };
    if bytes.len() < 24 || &bytes[..16] != MAGIC {
        return Err(corrupt(format!("{} bytes, without the ROSTER-SNAPSHOT1 header", bytes.len())));
    }
    let stored = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if stored != xxh3_64(&bytes[24..]) {
        return Err(corrupt("checksum mismatch: the file was truncated or altered".into()));
    }
    let payload = Bytes::from(bytes).slice(24..);
    let message = StoredSnapshot::decode(payload).map_err(|e| corrupt(format!("cannot decode: {e}")))?;
    let epoch = Uuid::parse_str(&message.epoch).map_err(|e| corrupt(format!("epoch: {e}")))?;
    let targets = message
        .producers
        .iter()
        .map(|p| wire::read_entry(p).map(|(target, _)| target).map_err(|e| corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Persisted {
        snapshot: Snapshot {
            epoch,
            generation: message.generation,
            targets,
            settling: message.store_settling,
            carried: message
                .carried_ids
                .iter()
                .map(|id| Uuid::parse_str(id).map(ProducerId).map_err(|e| corrupt(format!("carried id {id:?}: {e}"))))
                .collect::<Result<_, _>>()?,
        },
        applied_at_ms: message.applied_at_unix_ms,
    }))
}

/// The temporary file a save writes before renaming it over `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Removes the temporary file a save left behind when the process died mid-save; returns whether there was one.
/// The state file itself is never touched: it holds the last complete save.
///
/// # Errors
/// [`StateFileError::Io`] when the temporary file exists and cannot be removed.
pub fn remove_leftover(path: &Path) -> Result<bool, StateFileError> {
    let tmp = tmp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StateFileError::Io { path: tmp, source }),
    }
}

/// Writes the state file atomically: temp file, fsync, rename, fsync of the directory.
///
/// # Errors
/// [`StateFileError::Io`] when any step fails; the previous file is then left as it was, and the temporary file
/// is removed (a full disk leaves no empty file behind).
pub fn save(path: &Path, snapshot: &Snapshot, applied_at_ms: u64) -> Result<(), StateFileError> {
    save_encoded(path, snapshot, &[], applied_at_ms)
}

/// As [`save`], given the encoding of each target as the server sent it, index for index (`None`, or a slice
/// shorter than the targets, where there is none): those bytes are written as they are, the others encoded.
///
/// # Errors
/// As [`save`].
pub fn save_encoded(
    path: &Path,
    snapshot: &Snapshot,
    encoded: &[Option<Bytes>],
    applied_at_ms: u64,
) -> Result<(), StateFileError> {
    let tmp = tmp_path(path);
    let written = write_tmp(&tmp, snapshot, encoded, applied_at_ms).and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = written {
        // Best effort: the save already failed, and a leftover is removed at the next start anyway.
        let _ = fs::remove_file(&tmp);
        return Err(StateFileError::Io { path: path.to_owned(), source });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StateFileError::Io { path: path.to_owned(), source })?;
    }
    Ok(())
}

/// The key of `PersistedSnapshot.producers` (field 3, length-delimited): `3 << 3 | 2`, one byte since the field
/// number is below 16. Guarded by `a_streamed_payload_decodes_as_the_whole_message`.
const PRODUCERS_KEY: u8 = 3 << 3 | 2;

fn write_tmp(tmp: &Path, snapshot: &Snapshot, encoded: &[Option<Bytes>], applied_at_ms: u64) -> io::Result<()> {
    let mut file = fs::File::create(tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&[0; 8])?; // The checksum, written into its place once the payload is out.
    // Hashed below the buffer, so the checksum takes the payload in large runs, not entry by entry.
    let mut payload = BufWriter::with_capacity(1 << 20, Hashed { out: file, hash: Xxh3::new() });
    write_payload(&mut payload, snapshot, encoded, applied_at_ms)?;
    let Hashed { out: mut file, hash } = payload.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.seek(SeekFrom::Start(MAGIC.len() as u64))?;
    file.write_all(&hash.digest().to_le_bytes())?;
    file.sync_all()
}

/// The payload, a `PersistedSnapshot`, as a concatenation (which protobuf decodes as one message): the message
/// without its producers, then each producer as its own field-3 record.
fn write_payload(
    out: &mut impl Write,
    snapshot: &Snapshot,
    encoded: &[Option<Bytes>],
    applied_at_ms: u64,
) -> io::Result<()> {
    let head = pb::PersistedSnapshot {
        epoch: snapshot.epoch.to_string(),
        generation: snapshot.generation,
        producers: Vec::new(),
        applied_at_unix_ms: applied_at_ms,
        store_settling: snapshot.settling,
        carried_ids: snapshot.carried.iter().map(ToString::to_string).collect(),
    };
    out.write_all(&head.encode_to_vec())?;
    let mut buf = Vec::new();
    for (i, target) in snapshot.targets.iter().enumerate() {
        buf.clear();
        buf.push(PRODUCERS_KEY);
        match encoded.get(i) {
            Some(Some(bytes)) => {
                prost::encoding::encode_varint(bytes.len() as u64, &mut buf);
                out.write_all(&buf)?;
                out.write_all(bytes)?;
            }
            _ => {
                pb::AssignedProducer::from(target).encode_length_delimited(&mut buf).map_err(io::Error::other)?;
                out.write_all(&buf)?;
            }
        }
    }
    Ok(())
}

/// A writer that hashes what goes through it.
struct Hashed<W> {
    out: W,
    hash: Xxh3,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Collection, Labels, ProducerAddress, ProducerId, PrometheusTarget, Scheme, Target};

    fn snapshot() -> Snapshot {
        Snapshot {
            epoch: Uuid::new_v4(),
            generation: 7,
            targets: vec![Target {
                id: ProducerId::new_random(),
                address: ProducerAddress::parse_field("a", "127.0.0.1:9").unwrap(),
                interval: std::time::Duration::from_secs(1),
                labels: Labels::default(),
                collection: Collection::Grpc,
            }],
            settling: false,
            carried: Vec::new(),
        }
    }

    #[test]
    fn the_mirror_has_every_field_of_the_contract() {
        use prost_types::FileDescriptorSet;
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("the compiled descriptors decode");
        let message = set
            .file
            .iter()
            .filter(|f| f.package() == "roster.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "PersistedSnapshot")
            .expect("PersistedSnapshot");
        let fields: Vec<_> = message.field.iter().map(|f| (f.number(), f.name())).collect();
        let mirrored =
            ["epoch", "generation", "producers", "applied_at_unix_ms", "store_settling", "carried_ids"].into_iter();
        assert_eq!(fields, (1..).zip(mirrored).collect::<Vec<_>>(), "PersistedSnapshot changed: mirror it");
        let whole = pb::PersistedSnapshot {
            epoch: "e".into(),
            generation: 7,
            producers: snapshot().targets.iter().map(pb::AssignedProducer::from).collect(),
            applied_at_unix_ms: 42,
            store_settling: true,
            carried_ids: vec!["c".into()],
        };
        let encoded = whole.encode_to_vec();
        let read = StoredSnapshot::decode(encoded.as_slice()).expect("decodes");
        assert_eq!(read.producers, whole.producers.iter().map(|p| Bytes::from(p.encode_to_vec())).collect::<Vec<_>>());
        assert_eq!(read.encode_to_vec(), encoded, "and nothing is lost");
    }

    #[test]
    fn a_streamed_payload_decodes_as_the_whole_message() {
        let mut s = snapshot();
        let mut labelled = s.targets[0].clone();
        labelled.id = ProducerId::new_random();
        labelled.labels = Labels::parse_field("labels", [("zone".to_owned(), "a".repeat(256))].into()).unwrap();
        // A Prometheus target keeps its kind and target through a save and a load.
        labelled.collection = Collection::Prometheus(PrometheusTarget {
            scheme: Scheme::Https,
            scrape_timeout: Some(std::time::Duration::from_millis(750)),
            ..PrometheusTarget::default()
        });
        s.targets.push(labelled.clone());
        s.targets.sort_by_key(|t| t.id);
        s.carried = vec![labelled.id];
        s.settling = true;
        let mut streamed = Vec::new();
        write_payload(&mut streamed, &s, &[], 42).unwrap();
        let whole = pb::PersistedSnapshot {
            epoch: s.epoch.to_string(),
            generation: s.generation,
            producers: s.targets.iter().map(pb::AssignedProducer::from).collect(),
            applied_at_unix_ms: 42,
            store_settling: true,
            carried_ids: vec![labelled.id.to_string()],
        };
        assert_eq!(pb::PersistedSnapshot::decode(streamed.as_slice()).unwrap(), whole);
        assert_eq!(streamed.len(), whole.encoded_len(), "the same fields, in another order");
        // The file's checksum is the one of the bytes written, computed as they went out.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        save(&path, &s, 42).unwrap();
        let file = fs::read(&path).unwrap();
        assert_eq!(&file[24..], streamed.as_slice());
        assert_eq!(file[16..24], xxh3_64(&streamed).to_le_bytes());
        assert_eq!(load(&path).unwrap().unwrap().snapshot, s);
        // Given as the server sent them (one of two here), the entries are written as they came: the same file.
        let mut first = pb::AssignedProducer::from(&s.targets[0]).encode_to_vec();
        save_encoded(&path, &s, &[Some(Bytes::from(first.clone())), None], 42).unwrap();
        assert_eq!(fs::read(&path).unwrap(), file);
        // Bytes as they came, even those a re-encoding would not give (a field this build does not know): the same
        // snapshot loads back.
        prost::encoding::uint32::encode(99, &7, &mut first);
        save_encoded(&path, &s, &[Some(Bytes::from(first.clone()))], 42).unwrap();
        let with_unknown = fs::read(&path).unwrap();
        assert!(with_unknown.windows(first.len()).any(|w| w == first.as_slice()));
        assert_eq!(load(&path).unwrap().unwrap().snapshot, s);
    }

    #[test]
    fn round_trips_and_reports_damage_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        assert!(load(&path).unwrap().is_none(), "a missing file is no snapshot");
        let s = snapshot();
        save(&path, &s, 42).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.snapshot, s);
        assert_eq!(back.applied_at_ms, 42);

        let bytes = fs::read(&path).unwrap();
        for damaged in [bytes[..bytes.len() - 3].to_vec(), b"garbage".to_vec(), Vec::new()] {
            fs::write(&path, &damaged).unwrap();
            let err = load(&path).unwrap_err();
            assert!(matches!(err, StateFileError::Corrupt { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains("move the file away"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails after the temporary file was written.
        let path = dir.path().join("snapshot.bin");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        let err = save(&path, &snapshot(), 1).unwrap_err();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert!(!tmp_path(&path).exists(), "the temporary file is removed on failure");

        // A leftover from a process that died mid-save is removed; the state file is kept.
        let path = dir.path().join("other.bin");
        save(&path, &snapshot(), 2).unwrap();
        fs::write(tmp_path(&path), b"").unwrap();
        assert!(remove_leftover(&path).unwrap());
        assert!(!tmp_path(&path).exists());
        assert!(!remove_leftover(&path).unwrap(), "nothing left the second time");
        assert_eq!(load(&path).unwrap().unwrap().applied_at_ms, 2);
    }
}
