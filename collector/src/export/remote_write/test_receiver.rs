//! A remote-write receiver for the unit tests: an HTTP/1.1 server on a free loopback port that answers each
//! request with the next answer of its script; once the script is used up, 400 to a request holding a series it
//! was told to refuse (as Prometheus refuses a whole request for one sample), else 204. It keeps every request's headers
//! and decoded `WriteRequest` (snappy block format undone, protobuf decoded) with the answer it got.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use roster::remote_write_pb::WriteRequest;
use tokio::{net::TcpListener, task::JoinSet};

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// This status, these headers, this body.
    Status(u16, Vec<(&'static str, String)>, &'static str),
    /// Never answer (the connection stays open until the client gives up).
    Hang,
}

impl Answer {
    /// A status with a body and no extra header.
    pub(crate) fn status(code: u16, body: &'static str) -> Self {
        Self::Status(code, Vec::new(), body)
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Its headers.
    pub(crate) headers: HeaderMap,
    /// Its body, decoded.
    pub(crate) request: WriteRequest,
    /// The status it was answered with (`None`: it was made to hang).
    pub(crate) answered: Option<u16>,
}

/// The running receiver; dropping it stops it.
pub(crate) struct TestReceiver {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// The series names a request is refused for.
    refused: Arc<Mutex<Vec<String>>>,
    tasks: JoinSet<()>,
}

impl TestReceiver {
    /// Starts a receiver that answers with `script`, then 204.
    pub(crate) async fn start(script: impl IntoIterator<Item = Answer>) -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), script)
    }

    /// Starts a receiver on `addr` that answers 204.
    pub(crate) async fn start_on(addr: SocketAddr) -> Self {
        Self::serve(TcpListener::bind(addr).await.unwrap(), [])
    }

    fn serve(listener: TcpListener, script: impl IntoIterator<Item = Answer>) -> Self {
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let (script_, received_, refused_) = (script.clone(), received.clone(), refused.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (script, received, refused) = (script_.clone(), received_.clone(), refused_.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (script, received, refused) = (script.clone(), received.clone(), refused.clone());
                    async move { Ok::<_, Infallible>(answer(request, &script, &received, &refused).await) }
                });
                connections.spawn(async move {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, script, received, refused, tasks }
    }

    /// From now on (once the script is used up), a request holding a series named `name` is refused whole: 400
    /// "out of order sample", as Prometheus answers a request holding one sample older than its series' newest.
    pub(crate) fn refuse_series(&self, name: &str) {
        self.refused.lock().unwrap().push(name.to_owned());
    }

    /// A configuration for this receiver that retries within milliseconds.
    pub(crate) fn config(&self) -> super::config::RemoteWriteConfig {
        super::config::RemoteWriteConfig {
            backoff: roster::backoff::BackoffPolicy {
                initial: std::time::Duration::from_millis(1),
                cap: std::time::Duration::from_millis(5),
                jitter: 0.5,
                max_attempts: None,
            },
            ..super::config::RemoteWriteConfig::new(self.url())
        }
    }

    /// The URL to write to.
    pub(crate) fn url(&self) -> http::Uri {
        format!("http://{}/api/v1/write", self.addr).parse().unwrap()
    }

    /// Adds answers to the script.
    pub(crate) fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// Forgets the rest of the script: every request from now on is answered 204.
    pub(crate) fn clear_script(&self) {
        self.script.lock().unwrap().clear();
    }

    /// Every request so far, in the order they arrived.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The `(name, timestamp, value bits)` of every sample of every request answered 2xx, in arrival order.
    pub(crate) fn delivered(&self) -> Vec<(String, i64, u64)> {
        let mut out = Vec::new();
        for received in self.received().iter().filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s))) {
            for series in &received.request.timeseries {
                let name = series.labels.iter().find(|l| l.name == "__name__").map(|l| l.value.clone());
                for sample in &series.samples {
                    out.push((name.clone().unwrap_or_default(), sample.timestamp, sample.value.to_bits()));
                }
            }
        }
        out
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn answer(
    request: Request<Incoming>,
    script: &Mutex<VecDeque<Answer>>,
    received: &Mutex<Vec<Received>>,
    refused: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let protobuf = snap::raw::Decoder::new().decompress_vec(&body).expect("a snappy block");
    let request = WriteRequest::decode(protobuf.as_slice()).expect("a WriteRequest");
    let holds_refused = {
        let refused = refused.lock().unwrap();
        request.timeseries.iter().flat_map(|s| &s.labels).any(|l| l.name == "__name__" && refused.contains(&l.value))
    };
    let otherwise = if holds_refused { Answer::status(400, "out of order sample") } else { Answer::status(204, "") };
    let next = script.lock().unwrap().pop_front().unwrap_or(otherwise);
    let answered = match &next {
        Answer::Status(code, _, _) => Some(*code),
        Answer::Hang => None,
    };
    received.lock().unwrap().push(Received { headers: head.headers, request, answered });
    match next {
        Answer::Status(code, headers, body) => {
            let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Answer::Hang => std::future::pending().await,
    }
}
