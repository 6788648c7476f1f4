//! The harness's own Prometheus remote-write receiver, held in memory: what the remote-write scenario
//! ([`remote_write`](crate::remote_write)) delivers to, so that delivery is measured without a database's cost.
//!
//! It is a hyper HTTP/1.1 server on a free loopback port. Each sender writes to a path of its own (`/roster`,
//! `/agent`), so one receiver counts both. Each `POST` is decoded as remote-write 1.0 requires (the snappy *block*
//! format undone with `snap`, then the protobuf `WriteRequest` decoded with prost, [`roster::remote_write_pb`]),
//! its samples are counted for its path, and it is answered `204 No Content`, as Prometheus answers a good write.
//! During an outage ([`Receiver::set_outage`]) every request is read and answered `503 Service Unavailable`
//! instead, undecoded and uncounted, which every sender retries. A body that does not decode is answered `400`
//! and counted apart ([`Receiver::malformed`]), so a scenario can tell a sender's mistake from a slow sender.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use roster::remote_write_pb::WriteRequest;
use tokio::{net::TcpListener, task::JoinSet};

/// What one sender's path has received.
#[derive(Debug, Default)]
struct Counts {
    /// Samples in requests answered 204.
    samples: AtomicU64,
    /// Requests answered 503 (during an outage).
    unavailable: AtomicU64,
    /// Requests answered 400: not snappy, or not a `WriteRequest`.
    malformed: AtomicU64,
}

/// What the connections share.
#[derive(Debug)]
struct Shared {
    outage: AtomicBool,
    /// The senders' paths and their counts, in the order given to [`Receiver::start`].
    senders: Vec<(&'static str, Counts)>,
}

impl Shared {
    fn counts(&self, path: &str) -> Option<&Counts> {
        self.senders.iter().find(|(p, _)| *p == path).map(|(_, c)| c)
    }
}

/// A running receiver; dropping it stops it.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: JoinSet<()>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port that accepts writes to each of `paths` (e.g. `/roster`) and
    /// answers any other path 404.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(paths: &[&'static str]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind the remote-write receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            outage: AtomicBool::new(false),
            senders: paths.iter().map(|p| (*p, Counts::default())).collect(),
        });
        let mut server = JoinSet::new();
        server.spawn(accept(listener, shared.clone()));
        Ok(Self { addr, shared, _server: server })
    }

    /// The URL a sender writes to: `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Samples received on `path` so far in requests answered 204.
    pub fn samples(&self, path: &str) -> u64 {
        self.shared.counts(path).map_or(0, |c| c.samples.load(Ordering::Relaxed))
    }

    /// Requests to `path` answered 503 so far.
    pub fn unavailable(&self, path: &str) -> u64 {
        self.shared.counts(path).map_or(0, |c| c.unavailable.load(Ordering::Relaxed))
    }

    /// Requests to `path` answered 400 so far: bodies that are not a snappy-compressed `WriteRequest`.
    pub fn malformed(&self, path: &str) -> u64 {
        self.shared.counts(path).map_or(0, |c| c.malformed.load(Ordering::Relaxed))
    }

    /// Starts (`true`) or ends an outage: while it lasts every write is answered 503.
    pub fn set_outage(&self, outage: bool) {
        self.shared.outage.store(outage, Ordering::Relaxed);
    }
}

/// Serves every connection `listener` accepts; its connections end with it.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(request, &shared).await) }
            });
            // A sender hanging up (or being stopped) ends this connection only.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        // Finished connections are reaped as new ones come, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
}

/// The answer to one request: 204 once its samples are counted, 503 during an outage, 400 for a body that does not
/// decode, 404 or 405 for a path or method no sender uses.
async fn answer(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let status = |code: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = code;
        response
    };
    let Some(counts) = shared.counts(request.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "no sender writes here\n");
    };
    if request.method() != Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED, "remote write is a POST\n");
    }
    // The body is read in full either way, as a receiver behind a proxy would, so the connection stays usable.
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST, "the body was cut short\n");
    };
    if shared.outage.load(Ordering::Relaxed) {
        counts.unavailable.fetch_add(1, Ordering::Relaxed);
        return status(StatusCode::SERVICE_UNAVAILABLE, "outage\n");
    }
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|protobuf| WriteRequest::decode(protobuf.as_slice()).ok());
    let Some(write) = decoded else {
        counts.malformed.fetch_add(1, Ordering::Relaxed);
        return status(StatusCode::BAD_REQUEST, "not a snappy-compressed WriteRequest\n");
    };
    let samples: usize = write.timeseries.iter().map(|series| series.samples.len()).sum();
    counts.samples.fetch_add(samples as u64, Ordering::Relaxed);
    status(StatusCode::NO_CONTENT, "")
}

#[cfg(test)]
mod tests {
    use roster::remote_write_pb::{Label, Sample, TimeSeries};
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::*;

    /// The status code of `POST body` to `path`, sent as HTTP/1.0 (the receiver closes the connection after it).
    async fn post(receiver: &Receiver, path: &str, body: &[u8]) -> u16 {
        let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
        let head =
            format!("POST {path} HTTP/1.0\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// The protobuf of a `WriteRequest` of two series with two samples and one.
    fn three_samples() -> Vec<u8> {
        let series = |name: &str, samples: &[i64]| TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: name.into() }],
            samples: samples.iter().map(|&timestamp| Sample { value: 1.0, timestamp }).collect(),
        };
        WriteRequest { timeseries: vec![series("a", &[1, 2]), series("b", &[1])] }.encode_to_vec()
    }

    /// `protobuf` in snappy's block format, as remote write sends it.
    fn block(protobuf: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(protobuf).unwrap()
    }

    #[tokio::test]
    async fn counts_samples_per_path_and_refuses_writes_during_an_outage() {
        let receiver = Receiver::start(&["/roster", "/agent"]).await.unwrap();
        assert_eq!(post(&receiver, "/roster", &block(&three_samples())).await, 204);
        assert_eq!((receiver.samples("/roster"), receiver.samples("/agent")), (3, 0));

        receiver.set_outage(true);
        assert_eq!(post(&receiver, "/agent", &block(&three_samples())).await, 503);
        assert_eq!((receiver.samples("/agent"), receiver.unavailable("/agent")), (0, 1));
        receiver.set_outage(false);
        assert_eq!(post(&receiver, "/agent", &block(&three_samples())).await, 204);
        assert_eq!((receiver.samples("/agent"), receiver.unavailable("/agent")), (3, 1));

        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut framed, &three_samples()).unwrap();
        let framed = framed.into_inner().unwrap();
        assert_eq!(post(&receiver, "/roster", &framed).await, 400, "the framed format is not remote write's");
        assert_eq!(post(&receiver, "/roster", &block(b"not a WriteRequest")).await, 400);
        assert_eq!((receiver.samples("/roster"), receiver.malformed("/roster")), (3, 2));
        assert_eq!(post(&receiver, "/elsewhere", &block(&three_samples())).await, 404);
    }
}
