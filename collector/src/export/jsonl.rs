//! The JSON-lines exporter: samples appended to a file, one sample a line.
//!
//! Lines are serialised in the sink's task into a buffer, and the buffer is written by one `std::fs` write on
//! tokio's blocking pool at each flush (or once it holds [`JSONL_WRITE_BYTES`] bytes): one hand-off between
//! threads per write, where `tokio::fs` behind a `BufWriter` takes one per 8 KiB and collection pays for the
//! thread switches. The file (and its directory) is opened at the first write, and again at the write after a
//! failed one, so a disk that was full or a directory that was removed is picked up again once it recovers. The
//! lines of a failed write are dropped with it: the batch it was written for is counted as dropped, and the
//! lines of batches gathered before it since the last flush are lost too, as any buffered writer loses them.
//!
//! The file is followed by name, as `tail -F` follows it: before each write the path is checked to still name the
//! open file, and when it was moved away or removed (logrotate's default `create` mode, an operator's `rm`), a new
//! file is opened at the path. Before, the samples went on into the moved file, or into a removed one that no one
//! could read any more, and were still counted as written. It costs two `stat`s per write.
//!
//! A line: `{"labels":{…},"name":"…","producer_id":"…","time_unix_ms":…,"value":…}` (keys in this order, labels
//! by name, strings escaped as `serde_json` escapes them). A finite value is a JSON number as `serde_json` writes
//! an `f64`; the others, which JSON cannot hold, are strings as Prometheus's HTTP API writes them (`"NaN"`,
//! `"+Inf"`, `"-Inf"`), and the staleness marker is `"stale"`, so that it stays apart from an ordinary NaN.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use super::Exporter;
use crate::{
    defaults::JSONL_WRITE_BYTES,
    sample::{Sample, is_stale},
};

/// Appends samples to a file as JSON lines.
#[derive(Debug)]
pub(crate) struct JsonLines {
    path: PathBuf,
    /// The open file; `None` before the first write and after a failed one. Taken out while a write runs.
    file: Option<File>,
    /// Lines serialised and not written yet; its allocation is kept from one write to the next.
    pending: Vec<u8>,
}

/// A write to the JSON-lines file failed.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
pub(crate) struct WriteError {
    /// The file.
    path: PathBuf,
    /// Why.
    #[source]
    source: io::Error,
}

impl JsonLines {
    /// Writes to `path` (opened at the first write).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None, pending: Vec::with_capacity(JSONL_WRITE_BYTES) }
    }

    /// Writes to `path`, opened now (and its directory made): a file that cannot be written (a directory there,
    /// no permission, a read-only file system) is an error at start, rather than every sample dropped later.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub(crate) fn open(path: PathBuf) -> io::Result<Self> {
        let file = append(None, &path, &[])?;
        Ok(Self { file: Some(file), ..Self::new(path) })
    }

    /// Writes the pending lines, on the blocking pool. On an error they are dropped and the file is closed (the
    /// next write opens it again).
    async fn write_pending(&mut self) -> Result<(), WriteError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (file, path, lines) = (self.file.take(), self.path.clone(), std::mem::take(&mut self.pending));
        let written = tokio::task::spawn_blocking(move || {
            let result = append(file, &path, &lines);
            (result, path, lines)
        })
        .await;
        let (result, path, mut lines) =
            written.map_err(|e| WriteError { path: self.path.clone(), source: e.into() })?;
        lines.clear();
        self.pending = lines;
        match result {
            Ok(file) => {
                self.file = Some(file);
                Ok(())
            }
            Err(source) => Err(WriteError { path, source }),
        }
    }
}

/// `lines` appended to `file`, opened at `path` (and its directory made) if `None` or if `path` no longer names it;
/// the file, to write again.
fn append(file: Option<File>, path: &Path, lines: &[u8]) -> io::Result<File> {
    let mut file = match file {
        Some(file) if still_at(&file, path) => file,
        Some(_) => {
            tracing::info!(file = %path.display(), "the samples file was moved or removed; writing to a new one there");
            OpenOptions::new().create(true).append(true).open(path)?
        }
        None => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(path)?
        }
    };
    file.write_all(lines)?;
    Ok(file)
}

/// Whether `path` still names `file`: the same device and inode. A path that cannot be read does not.
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Appends `sample` as one line to `out`.
fn write_line(out: &mut Vec<u8>, sample: &Sample) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"labels\":{");
    for (i, (name, value)) in sample.labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, value)?;
    }
    out.extend_from_slice(b"},\"name\":");
    serde_json::to_writer(&mut *out, &*sample.name)?;
    out.extend_from_slice(b",\"producer_id\":");
    serde_json::to_writer(&mut *out, &*sample.producer_id)?;
    out.extend_from_slice(b",\"time_unix_ms\":");
    serde_json::to_writer(&mut *out, &sample.time_ms)?;
    out.extend_from_slice(b",\"value\":");
    let value = sample.value;
    if value.is_finite() {
        serde_json::to_writer(&mut *out, &value)?;
    } else {
        let text: &[u8] = if is_stale(value) {
            b"\"stale\""
        } else if value.is_nan() {
            b"\"NaN\""
        } else if value > 0.0 {
            b"\"+Inf\""
        } else {
            b"\"-Inf\""
        };
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

impl fmt::Display for JsonLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl Exporter for JsonLines {
    type Error = WriteError;

    const KIND: &'static str = "jsonl";

    async fn export(&mut self, batch: &[Sample]) -> Result<(), WriteError> {
        let start = self.pending.len();
        if let Err(e) = batch.iter().try_for_each(|sample| write_line(&mut self.pending, sample)) {
            // Nothing of a batch that cannot be written whole (serde_json fails on none of these values).
            self.pending.truncate(start);
            return Err(WriteError { path: self.path.clone(), source: e.into() });
        }
        if self.pending.len() >= JSONL_WRITE_BYTES { self.write_pending().await } else { Ok(()) }
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        self.write_pending().await
    }

    async fn shutdown(mut self) -> Result<(), WriteError> {
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use roster::error_chain::chain;

    use super::*;
    use crate::sample::stale_nan;

    fn sample(value: f64) -> Sample {
        Sample {
            time_ms: 7,
            producer_id: "p1".into(),
            name: "up".into(),
            labels: [("job", "a,b=c")].into_iter().collect(),
            value,
        }
    }

    #[tokio::test]
    async fn writes_one_line_a_sample_and_reopens_the_file_after_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("samples.jsonl");
        // A directory where the file should be: writes fail until it goes.
        std::fs::create_dir_all(&path).unwrap();
        let mut exporter = JsonLines::new(path.clone());
        exporter.export(&[sample(0.0)]).await.unwrap();
        let error = exporter.flush().await.unwrap_err();
        assert!(chain(&error).to_string().starts_with(&format!("{}: ", path.display())), "{}", chain(&error));

        std::fs::remove_dir(&path).unwrap();
        exporter.export(&[sample(1.0), sample(2.5)]).await.unwrap();
        exporter.shutdown().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "the line of the failed write is dropped with it: {text}");
        assert_eq!(
            lines[1],
            serde_json::json!({
                "time_unix_ms": 7, "producer_id": "p1", "name": "up", "labels": {"job": "a,b=c"}, "value": 2.5
            })
        );
    }

    /// logrotate's `create` mode moves the file away; an operator may remove it. Either way the next write goes to
    /// a new file at the path; before, it went on into the moved file, or into the removed one, lost.
    #[tokio::test]
    async fn a_file_moved_or_removed_is_followed_by_a_new_one_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        let rotated = dir.path().join("samples.jsonl.1");
        let mut exporter = JsonLines::new(path.clone());
        let lines = |path: &Path| std::fs::read_to_string(path).unwrap().lines().count();

        exporter.export(&[sample(1.0)]).await.unwrap();
        exporter.flush().await.unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        exporter.export(&[sample(2.0), sample(3.0)]).await.unwrap();
        exporter.flush().await.unwrap();
        assert_eq!((lines(&rotated), lines(&path)), (1, 2), "the moved file keeps what it had; the new one the rest");

        std::fs::remove_file(&path).unwrap();
        exporter.export(&[sample(4.0)]).await.unwrap();
        exporter.shutdown().await.unwrap();
        assert_eq!(lines(&path), 1, "a removed file is made again");
        assert_eq!(lines(&rotated), 1);
    }

    #[tokio::test]
    async fn non_finite_values_and_the_staleness_marker_are_written_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        let mut exporter = JsonLines::new(path.clone());
        let values = [f64::NAN, stale_nan(), f64::INFINITY, f64::NEG_INFINITY, -0.5, 1e300];
        exporter.export(&values.map(sample)).await.unwrap();
        exporter.shutdown().await.unwrap();
        let written: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].clone())
            .collect();
        assert_eq!(
            written,
            [
                serde_json::json!("NaN"),
                serde_json::json!("stale"),
                serde_json::json!("+Inf"),
                serde_json::json!("-Inf"),
                serde_json::json!(-0.5),
                serde_json::json!(1e300)
            ]
        );
    }

    #[test]
    fn a_line_is_serde_json_s_rendering_of_the_sample_as_an_object_byte_for_byte() {
        let odd = Sample {
            time_ms: u64::MAX,
            producer_id: "p\"1".into(),
            name: "a\u{1}\u{7f}é\\".into(),
            labels: [("b", "\n\t\"x\u{2028}"), ("a", "")].into_iter().collect(),
            value: 0.0,
        };
        let values = [0.0, -0.0, 3.0, 0.1, -1.5e-300, 1e21, 123_456_789.125, f64::MAX, f64::NAN, stale_nan()];
        for sample in values.iter().map(|v| Sample { value: *v, ..odd.clone() }).chain(values.map(sample)) {
            let value = match sample.value {
                v if v.is_finite() => serde_json::Value::from(v),
                v if is_stale(v) => "stale".into(),
                _ => "NaN".into(),
            };
            let object = serde_json::json!({
                "time_unix_ms": sample.time_ms,
                "producer_id": sample.producer_id,
                "name": sample.name,
                "labels": sample.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "value": value,
            });
            let mut line = Vec::new();
            write_line(&mut line, &sample).unwrap();
            assert_eq!(String::from_utf8(line).unwrap(), format!("{object}\n"));
        }
    }
}
