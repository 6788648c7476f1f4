//! `bare-idle-server`: the floor under roster-server's memory per idle Watch stream.
//!
//! A bare tonic server, nothing of roster-server's in it: `roster.v1.AssignmentFeed/Watch` answers every stream
//! with one empty complete chunk and then holds it open, with tonic's own defaults and, given certificates,
//! tonic's own TLS (`ServerTlsConfig`, rustls on ring; mutual when a CA is given). What one idle stream costs this
//! process is what h2, hyper, tonic and rustls cost before roster adds its registry and feed: the TLS scenario
//! of `roster-bench` runs it as a child process beside each roster-server it measures.
//!
//! It logs `bare-idle-server serving listen=ADDR` on stderr once it accepts connections.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, pin::Pin};

use anyhow::Context as _;
use clap::Parser;
use roster::pb::{
    self,
    assignment_feed_server::{AssignmentFeed, AssignmentFeedServer},
};
use tokio_stream::Stream;
use tonic::{
    Request, Response, Status,
    transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming},
};

/// A bare tonic AssignmentFeed whose streams stay idle after one empty complete chunk.
#[derive(Debug, Parser)]
#[command(name = "bare-idle-server", version, about, long_about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server's certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to: serves mutual TLS.
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
}

/// Every Watch: one empty complete chunk, then nothing until the client goes.
#[derive(Debug)]
struct IdleFeed;

type IdleStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AssignmentFeed for IdleFeed {
    type WatchStream = IdleStream;

    async fn watch(&self, _request: Request<pb::WatchRequest>) -> Result<Response<IdleStream>, Status> {
        let chunk = pb::SnapshotChunk { generation: 1, complete: true, ..Default::default() };
        let first = pb::WatchResponse { frame: Some(pb::watch_response::Frame::Chunk(chunk)) };
        let frames = tokio_stream::StreamExt::chain(tokio_stream::once(Ok(first)), tokio_stream::pending());
        Ok(Response::new(Box::pin(frames)))
    }

    async fn report_applied(
        &self,
        _request: Request<pb::ReportAppliedRequest>,
    ) -> Result<Response<pb::ReportAppliedResponse>, Status> {
        Ok(Response::new(pb::ReportAppliedResponse::default()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    roster::transport::tls::install_crypto_provider();
    let mut server = Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("read {}", path.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &args.tls_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        server = server.tls_config(tls).context("TLS settings")?;
    }
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // The line the benchmark waits for; this process has no logging of its own.
    writeln!(std::io::stderr(), "bare-idle-server serving listen={local}")?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server.add_service(AssignmentFeedServer::new(IdleFeed)).serve_with_incoming(incoming).await?;
    Ok(())
}
