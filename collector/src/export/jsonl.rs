//! The JSON-lines exporter: samples appended to a file, one sample a line, through a buffer.
//!
//! The file (and its directory) is opened at the first batch, and again at the batch after a failed write, so a
//! disk that was full or a directory that was removed is picked up again once it recovers.
//!
//! A line: `{"time_unix_ms":…,"producer_id":"…","name":"…","labels":{…},"value":…}`. A finite value is a JSON
//! number; the others, which JSON cannot hold, are strings as Prometheus's HTTP API writes them (`"NaN"`,
//! `"+Inf"`, `"-Inf"`), and the staleness marker is `"stale"`, so that it stays apart from an ordinary NaN.

use std::{fmt, io, path::PathBuf};

use tokio::{
    fs::{File, OpenOptions},
    io::{AsyncWriteExt as _, BufWriter},
};

use super::Exporter;
use crate::sample::{Sample, is_stale};

/// Appends samples to a file as JSON lines.
#[derive(Debug)]
pub(crate) struct JsonLines {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// One line, reused.
    line: Vec<u8>,
}

/// A value as JSON: a number when finite, else `"NaN"`, `"+Inf"`, `"-Inf"` or `"stale"`.
fn value_json(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::Value::from(value)
    } else if is_stale(value) {
        "stale".into()
    } else if value.is_nan() {
        "NaN".into()
    } else if value > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
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
    /// Writes to `path` (opened at the first batch).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, out: None, line: Vec::with_capacity(256) }
    }

    async fn write(&mut self, batch: &[Sample]) -> io::Result<()> {
        // Taken out while writing: a failed write leaves it closed, and the next batch opens it again.
        let mut out = match self.out.take() {
            Some(out) => out,
            None => {
                if let Some(dir) = self.path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                BufWriter::new(OpenOptions::new().create(true).append(true).open(&self.path).await?)
            }
        };
        for sample in batch {
            self.line.clear();
            let json = serde_json::json!({
                "time_unix_ms": sample.time_ms,
                "producer_id": sample.producer_id,
                "name": sample.name,
                "labels": sample.labels,
                "value": value_json(sample.value),
            });
            serde_json::to_writer(&mut self.line, &json).map_err(io::Error::other)?;
            self.line.push(b'\n');
            out.write_all(&self.line).await?;
        }
        self.out = Some(out);
        Ok(())
    }

    /// `result`, with the file closed on an error (so the next batch reopens it).
    fn closing_on_error(&mut self, result: io::Result<()>) -> Result<(), WriteError> {
        result.map_err(|source| {
            self.out = None;
            WriteError { path: self.path.clone(), source }
        })
    }
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
        let written = self.write(batch).await;
        self.closing_on_error(written)
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        let flushed = match &mut self.out {
            Some(out) => out.flush().await,
            None => Ok(()),
        };
        self.closing_on_error(flushed)
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
            labels: [("job".to_owned(), "a,b=c".to_owned())].into(),
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
        let error = exporter.export(&[sample(0.0)]).await.unwrap_err();
        assert!(chain(&error).to_string().starts_with(&format!("{}: ", path.display())), "{}", chain(&error));

        std::fs::remove_dir(&path).unwrap();
        exporter.export(&[sample(1.0), sample(2.5)]).await.unwrap();
        exporter.shutdown().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[1],
            serde_json::json!({
                "time_unix_ms": 7, "producer_id": "p1", "name": "up", "labels": {"job": "a,b=c"}, "value": 2.5
            })
        );
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
}
