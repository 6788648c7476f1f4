//! A Prometheus target for the unit tests: a listener on a free loopback port that answers each request with the
//! response set last, written raw, so a test controls every byte (status, headers, gzip, size); it keeps each
//! request's head for the test to read.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    task::JoinHandle,
};

/// How a test target answers: these bytes, then it closes the connection.
#[derive(Debug, Clone)]
pub(crate) struct Answer(Vec<u8>);

impl Answer {
    /// A response with `status`, these headers and `body`.
    pub(crate) fn with(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut raw = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        Self(raw)
    }

    /// `200 OK` with this `Content-Type` and body.
    pub(crate) fn ok(content_type: &str, body: &[u8]) -> Self {
        Self::with("200 OK", &[("content-type", content_type)], body)
    }

    /// `200 OK`, text format 0.0.4, with `body`.
    pub(crate) fn text(body: &str) -> Self {
        Self::ok("text/plain; version=0.0.4; charset=utf-8", body.as_bytes())
    }
}

/// A running test target; stops when dropped.
#[derive(Debug)]
pub(crate) struct TestTarget {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TestTarget {
    /// Starts answering with `answer`.
    pub(crate) async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (shared, seen) = (answer.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (answer, heads) = (shared.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let Answer(raw) = answer.lock().unwrap().clone();
                    let _ = stream.write_all(&raw).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, answer, heads, task }
    }

    /// Answers the next requests with `answer`.
    pub(crate) fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// The heads of the requests so far, lower-cased.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().iter().map(|h| h.to_ascii_lowercase()).collect()
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `body` compressed with gzip.
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}
