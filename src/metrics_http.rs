//! roster's own metrics over HTTP: the one small server that answers `GET /metrics` with a
//! [`prometheus_client`] registry in the OpenMetrics 1.0 text format, for roster-server and roster-collector alike.
//!
//! It is hyper's HTTP/1 connection and nothing more: one path, one method. `GET /metrics` (any query) is the
//! registry with [`CONTENT_TYPE`]; another path is `404 Not Found`, another method on `/metrics` is
//! `405 Method Not Allowed` with `Allow: GET`. Connections are bounded in number ([`MAX_CONNECTIONS`]) and in how
//! long their request head may take ([`HEADER_READ_TIMEOUT`]), so a stuck or hostile client holds little. When the
//! shutdown future given to [`serve`] completes, it stops accepting, lets the scrapes in flight finish (at most
//! [`DRAIN`]) and returns; idle keep-alive connections are closed at once.
//!
//! Metric names follow Prometheus's conventions (a `roster_` prefix, base units, `_total` on counters, which
//! prometheus-client appends). Label values are escaped by prometheus-client since 0.25.2; roster still keeps its own
//! to fixed words (reasons, outcomes, states) and UUIDs, so no value ever needs escaping and any parser reads them
//! alike.

use std::{convert::Infallible, fmt, future::Future, net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    domain::{InvalidValue, clip},
    error_chain::chain,
};

/// The one path served.
pub const PATH: &str = "/metrics";

/// The answer's `Content-Type`: prometheus-client writes OpenMetrics 1.0 text (ending `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most connections served at once; a further one waits in the listen backlog until one ends.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send its request head before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// On shutdown, the longest wait for the scrapes in flight to finish.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Where a program serves its metrics: an address, or nowhere. The value of `--metrics-listen`: `host:port` with an IP
/// address (`127.0.0.1:9471`, `[::1]:9471`, port 0 for a free one), or `off` (also `none`, in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// No metrics are served.
    Off,
    /// Served on this address.
    At(SocketAddr),
}

impl MetricsListen {
    /// The address to serve on, if any.
    pub fn address(self) -> Option<SocketAddr> {
        match self {
            Self::Off => None,
            Self::At(address) => Some(address),
        }
    }
}

impl FromStr for MetricsListen {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
            return Ok(Self::Off);
        }
        s.parse().map(Self::At).map_err(|_| {
            InvalidValue(format!(
                "{:?} is not an address to listen on (expected IP:PORT, e.g. 127.0.0.1:9471 or [::1]:9471, or off)",
                clip(s)
            ))
        })
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::At(address) => address.fmt(f),
        }
    }
}

/// How long accepting pauses after the listener failed (out of file descriptors, say), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `registry` on `listener` (see the module doc) until `shutdown` completes; then stops accepting, drains
/// for at most [`DRAIN`] and returns. A failed connection is logged (at debug) and ends alone; a failure to accept
/// is logged and retried, so the process's own work never depends on its metrics.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: impl Future<Output = ()>) {
    let stop = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %chain(&e), "cannot accept a metrics connection; trying again");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let answer = respond(request.method(), request.uri().path(), &registry);
            async move { Ok::<_, Infallible>(answer) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let mut stopping = false;
            let served = loop {
                tokio::select! {
                    served = connection.as_mut() => break served,
                    () = stop.cancelled(), if !stopping => {
                        // Ends an idle connection now, a busy one after its answer.
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = served {
                debug!(error = %chain(&e), "metrics connection ended with an error");
            }
        });
    }
    stop.cancel();
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(drain_s = DRAIN.as_secs_f64(), "metrics connections still open after the drain; closing them");
    }
}

/// The answer to one request.
fn respond(method: &Method, path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    if path != PATH {
        return plain(StatusCode::NOT_FOUND, "not found: roster serves its metrics on GET /metrics\n");
    }
    if method != Method::GET {
        let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET /metrics\n");
        answer.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return answer;
    }
    let mut body = String::new();
    match encode(&mut body, registry) {
        Ok(()) => {
            let mut answer = Response::new(Full::new(Bytes::from(body)));
            answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            answer
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded\n"),
    }
}

/// A plain-text answer with `status`.
fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    answer
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use prometheus_client::metrics::counter::Counter;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_metrics_address_is_an_ip_and_port_or_off() {
        assert_eq!("127.0.0.1:9471".parse(), Ok(MetricsListen::At(SocketAddr::from(([127, 0, 0, 1], 9471)))));
        assert_eq!(
            "[::1]:0".parse::<MetricsListen>().map(MetricsListen::address),
            Ok(Some("[::1]:0".parse().unwrap()))
        );
        for off in ["off", "OFF", "none", "None"] {
            assert_eq!(off.parse(), Ok(MetricsListen::Off), "{off}");
        }
        for bad in ["", "localhost:9471", "127.0.0.1", "127.0.0.1:99999", "http://127.0.0.1:9471", "no"] {
            let error = bad.parse::<MetricsListen>().unwrap_err().to_string();
            assert!(error.contains("expected IP:PORT"), "{bad}: {error}");
        }
        assert_eq!(MetricsListen::Off.to_string(), "off");
        assert_eq!(MetricsListen::At(SocketAddr::from(([127, 0, 0, 1], 9471))).to_string(), "127.0.0.1:9471");
    }

    /// Serves a registry with one counter (at 3) on a free port until the returned sender is used or dropped.
    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let mut registry = Registry::with_prefix("roster_test");
        let counter: Counter = Counter::default();
        counter.inc_by(3);
        registry.register("things", "Things counted", counter);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, Arc::new(registry), async {
            let _ = stopped.await;
        }));
        (addr, shutdown, served)
    }

    /// One request on its own connection; the whole answer as text.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(WAIT, stream.read_to_string(&mut answer)).await.unwrap().unwrap();
        answer
    }

    #[tokio::test]
    async fn get_metrics_is_the_registry_in_openmetrics_text_and_nothing_else_is_served() {
        let (addr, shutdown, served) = start().await;

        let answer = request(addr, "GET", "/metrics?scrape=1").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains(&format!("content-type: {CONTENT_TYPE}\r\n")), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.contains("# TYPE roster_test_things counter\nroster_test_things_total 3\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        let answer = request(addr, "GET", "/").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        let answer = request(addr, "POST", "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("allow: get\r\n"), "{answer}");

        shutdown.send(()).unwrap();
        tokio::time::timeout(WAIT, served).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keep_alive_connections_at_once() {
        let (addr, shutdown, served) = start().await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut first = [0u8; 15];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200 OK");

        shutdown.send(()).unwrap();
        // Well within the drain: the idle connection is not waited for.
        tokio::time::timeout(DRAIN / 2, served).await.expect("serving ends at once").unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, idle.read_to_end(&mut rest)).await.unwrap().unwrap();
    }
}
