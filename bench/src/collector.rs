//! A collector under test: the real `roster-collector` binary as a child process, so its memory is its own, with
//! its status read over its status API.

use std::{
    path::Path,
    process::{Child, Command},
};

use roster::pb::{self, collector_status_client::CollectorStatusClient};

use crate::server::{binary, memory, spawn_until_logged};

/// A running roster-collector.
#[derive(Debug)]
pub struct CollectorProcess {
    child: Child,
    /// Its status API address.
    pub status_addr: String,
}

impl CollectorProcess {
    /// Starts a collector following `server_url` with its data in `data_dir` and `extra` arguments (`--sink …`),
    /// and waits until it runs.
    ///
    /// # Errors
    /// When it does not start or does not say where its status API listens within 60 s.
    pub fn start(server_url: &str, data_dir: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary("roster-collector", "ROSTER_COLLECTOR_BIN")?);
        command
            .args(["--server", server_url, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn,roster_collector=info");
        let (child, status_addr) = spawn_until_logged(command, "roster-collector running", "status=Some(")?;
        Ok(Self { child, status_addr })
    }

    /// Its status (the first page of producers, which the figures here do not use).
    ///
    /// # Errors
    /// When the status API does not answer.
    pub async fn status(&self) -> anyhow::Result<pb::GetStatusResponse> {
        let mut client = CollectorStatusClient::new(crate::channel(&format!("http://{}", self.status_addr)).await?);
        Ok(client.get_status(pb::GetStatusRequest::default()).await?.into_inner())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak, in bytes.
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        memory(self.child.id())
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
