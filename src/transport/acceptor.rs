//! roster's own TLS acceptor: the connections a TLS server hands to tonic, each through a handshake made with the
//! configuration in force when it connected (see [`ServerTls`]).
//!
//! tonic's own acceptor is built once with one certificate; this one takes [`ServerTls`]'s current configuration
//! per connection, so a reload applies to the next connection while existing ones keep their session. Handshakes
//! run concurrently, each bounded by [`ServerTls::handshake_timeout`]; a failed one is logged at debug and counted,
//! and never stops the server. The streams handed on are `tokio_rustls::server::TlsStream<TcpStream>`, for which
//! tonic puts `TlsConnectInfo<TcpConnectInfo>` (the peer's verified certificate chain) in every request's
//! extensions: `Request::peer_certs()` works in handlers and layers.
//!
//! A client that speaks plaintext HTTP/2 to a TLS server would otherwise see its connection dropped with no
//! reason. It gets an answer instead: every call it makes fails with `FAILED_PRECONDITION` and a message saying
//! that this server needs TLS, so the CLI and grpcurl say what is wrong at once.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::tls::ServerTls;
use crate::error_chain::chain;

/// Handshaken connections waiting for tonic to take them.
const HANDED_ON: usize = 64;
/// The pause after an `accept` error (such as too many open files), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// A TLS record of type handshake starts with this byte; a ClientHello is one.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The gRPC status code FAILED_PRECONDITION: the client must change (use TLS) before trying again.
const FAILED_PRECONDITION: &str = "9";
/// What a plaintext client is told.
const NEEDS_TLS: &str = "this server requires TLS: call it with an https:// URL and the CA that signed its \
                         certificate (roster: --tls-ca; grpcurl: -cacert instead of -plaintext)";

/// The TLS connections accepted on `listener`, until the stream is dropped. Also watches the TLS files for
/// changes ([`ServerTls::watch`]) for as long.
pub(super) fn incoming(listener: TcpListener, tls: ServerTls) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (handed_on, connections) = mpsc::channel(HANDED_ON);
    tokio::spawn(accept(listener, tls, handed_on));
    ReceiverStream::new(connections)
}

/// Accepts connections and starts a handshake for each, until the receiver of `handed_on` is gone.
async fn accept(listener: TcpListener, tls: ServerTls, handed_on: mpsc::Sender<io::Result<TlsStream<TcpStream>>>) {
    let mut handshakes = JoinSet::new();
    let reload = tls.clone().watch();
    tokio::pin!(reload);
    loop {
        let (tcp, peer) = tokio::select! {
            () = handed_on.closed() => return,
            () = &mut reload => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %chain(&e), "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        while handshakes.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let (config, counters, limit, handed_on) =
            (tls.config(), Arc::clone(tls.counters()), tls.handshake_timeout, handed_on.clone());
        handshakes.spawn(async move {
            let failure = match tokio::time::timeout(limit, handshake(tcp, peer, config)).await {
                Ok(Ok(stream)) => {
                    let _ = handed_on.send(Ok(stream)).await;
                    return;
                }
                Ok(Err(e)) => chain(&e).to_string(),
                Err(_) => format!("no handshake within {} s", limit.as_secs_f64()),
            };
            counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, error = %failure, "TLS handshake failed");
        });
    }
}

/// The TLS handshake of `tcp`; a plaintext client is answered (see the module docs) and then refused.
async fn handshake(tcp: TcpStream, peer: SocketAddr, config: Arc<ServerConfig>) -> io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a handshake"));
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        debug!(%peer, "a plaintext client called this TLS server; answering that TLS is required");
        answer_needs_tls(tcp).await;
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the client spoke plaintext, not TLS"));
    }
    TlsAcceptor::from(config).accept(tcp).await
}

/// Serves plaintext HTTP/2 on `tcp`, answering every call with [`NEEDS_TLS`], until the client closes (or the
/// caller's handshake limit ends it).
async fn answer_needs_tls(tcp: TcpStream) {
    let answer = hyper::service::service_fn(|_request| async {
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", FAILED_PRECONDITION)
            .header("grpc-message", NEEDS_TLS)
            .body(Empty::<Bytes>::new())
            .expect("the header values are valid");
        Ok::<_, Infallible>(response)
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), answer)
        .await;
}
