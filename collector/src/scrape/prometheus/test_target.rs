//! A Prometheus target for the unit tests: a listener on a free loopback port that answers each request with the
//! response set last, written raw, so a test controls every byte (status, headers, gzip, size); it keeps each
//! request's head for the test to read. It speaks plain HTTP, or HTTPS with a certificate for `localhost` from a
//! CA made for the test by `openssl` ([`Tls`]).

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

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
    /// Starts answering with `answer`, over plain HTTP.
    pub(crate) async fn start(answer: Answer) -> Self {
        Self::serve(answer, None).await
    }

    /// Starts answering with `answer`, over HTTPS with `tls`'s certificate.
    pub(crate) async fn start_tls(answer: Answer, tls: &Tls) -> Self {
        Self::serve(answer, Some(tls.acceptor())).await
    }

    async fn serve(answer: Answer, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (shared, seen) = (answer.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, heads, tls) = (shared.clone(), seen.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => respond(stream, &answer, &heads).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                respond(stream, &answer, &heads).await;
                            }
                        }
                    }
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

/// Reads one request head from `stream`, keeps it, and writes the answer set last.
async fn respond(mut stream: impl AsyncRead + AsyncWrite + Unpin, answer: &Mutex<Answer>, heads: &Mutex<Vec<String>>) {
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
}

/// A CA and a certificate it signed for `localhost`, made with `openssl` in a directory of their own.
pub(crate) struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    /// Makes the CA and the certificate.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=roster test CA"],
            ]
            .concat(),
        );
        openssl(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(dir.path().join("leaf.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
            .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
        Self { dir }
    }

    fn certificate(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// A client configuration that trusts the CA.
    pub(crate) fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(Self::certificate(&self.dir.path().join("ca.pem"))).unwrap();
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
    }

    fn acceptor(&self) -> TlsAcceptor {
        let chain = vec![Self::certificate(&self.dir.path().join("leaf.pem"))];
        let key = PrivateKeyDer::from_pem_slice(&std::fs::read(self.dir.path().join("leaf.key")).unwrap()).unwrap();
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
        TlsAcceptor::from(Arc::new(config))
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
