//! One HTTP `GET` of a Prometheus target, asked and read as Prometheus 2.42 does (`targetScraper.scrape` in
//! prometheus/prometheus `scrape/scrape.go`).
//!
//! - The request: `Accept` prefers OpenMetrics 1.0.0, then 0.0.1, then text 0.0.4 ([`ACCEPT`], verbatim);
//!   `Accept-Encoding: gzip`; `X-Prometheus-Scrape-Timeout-Seconds` with the scrape's deadline in seconds, the
//!   shortest decimal (`10`, `1.5`); `User-Agent: roster-collector/<version>`.
//! - The answer: any status but 200 fails the scrape, redirects included (Prometheus follows up to 10; roster
//!   does not, and says so in the error). A body is decoded from gzip only when `Content-Encoding` is exactly
//!   `gzip`, and read whole before anything is parsed, up to a limit counted in decompressed bytes: a body of the
//!   limit or more fails the scrape (Prometheus's `n >= limit`), so a gzip bomb stops at the limit.
//!
//! One [`HttpClient`] serves every task of a collector: its pool keeps a connection per target between scrapes.
//! `https` targets are verified against the system's CA certificates (rustls on ring, the roots
//! `rustls-native-certs` finds, which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`); with none found, the collector
//! says so once and every https scrape fails its handshake.

use std::{io::Write as _, time::Duration};

use bytes::Bytes;
use http::{
    HeaderValue, Request, StatusCode, Uri,
    header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT},
};
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, RootCertStore};
use tracing::warn;

use crate::{defaults, scrape::ScrapeError};

/// The `Accept` header of Prometheus 2.42 (without the protobuf format, which roster does not ask for).
pub(crate) const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The header that tells a target how long it has.
pub(crate) const TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// This collector's `User-Agent`.
const AGENT: &str = concat!("roster-collector/", env!("CARGO_PKG_VERSION"));

/// The HTTP client of every Prometheus target of one collector (cheap to clone: clones share the pool).
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    body_limit: usize,
}

/// A body read whole.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The body, decompressed.
    pub(crate) body: Vec<u8>,
    /// The `Content-Type`, if any and readable.
    pub(crate) content_type: Option<String>,
}

impl HttpClient {
    /// A client whose bodies stop at `body_limit` bytes (decompressed), trusting the system's CA certificates.
    pub(crate) fn new(body_limit: usize) -> Self {
        let tls = match ClientConfig::builder().with_native_roots() {
            Ok(builder) => builder.with_no_client_auth(),
            Err(e) => {
                warn!(error = %e, "no CA certificates: scrapes of https targets will fail (set SSL_CERT_FILE)");
                ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth()
            }
        };
        Self::with_tls(body_limit, tls)
    }

    /// A client whose bodies stop at `body_limit` bytes (decompressed), speaking TLS with `tls`.
    pub(crate) fn with_tls(body_limit: usize, tls: ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(defaults::SCRAPE_CONNECT_TIMEOUT));
        http.enforce_http(false);
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(defaults::SCRAPE_IDLE_CONNECTION)
            .build(connector);
        Self { client, body_limit }
    }

    /// `GET uri`, telling the target it has `timeout`, and reads the whole body.
    ///
    /// # Errors
    /// Any failure of the request, another status than 200, a body too large or corrupt.
    pub(crate) async fn get(&self, uri: &Uri, timeout: Duration) -> Result<Fetched, ScrapeError> {
        let request = Request::get(uri.clone())
            .header(http::header::ACCEPT, HeaderValue::from_static(ACCEPT))
            .header(ACCEPT_ENCODING, HeaderValue::from_static("gzip"))
            .header(USER_AGENT, HeaderValue::from_static(AGENT))
            .header(TIMEOUT_HEADER, timeout_seconds(timeout))
            .body(Empty::new())
            .map_err(|e| ScrapeError::BadAddress(e.into()))?;
        let response = self.client.request(request).await.map_err(ScrapeError::Request)?;
        if response.status() != StatusCode::OK {
            return Err(ScrapeError::Status(response.status()));
        }
        let headers = response.headers();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let gzip = headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes() == b"gzip");
        let mut body = response.into_body();
        let mut out = Decoder::new(gzip, self.body_limit);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(ScrapeError::Body)?.into_data() {
                out.write(&data)?;
            }
        }
        Ok(Fetched { body: out.finish()?, content_type })
    }
}

/// `X-Prometheus-Scrape-Timeout-Seconds`: Go's `FormatFloat(s, 'f', -1, 64)`, the shortest decimal without an
/// exponent, which Rust's `Display` of an `f64` also prints.
fn timeout_seconds(timeout: Duration) -> HeaderValue {
    HeaderValue::try_from(timeout.as_secs_f64().to_string()).unwrap_or(HeaderValue::from_static("0"))
}

/// Where a body goes as it arrives: straight into a capped buffer, or through gzip into it.
enum Decoder {
    Plain(Capped),
    Gzip(Box<flate2::write::MultiGzDecoder<Capped>>),
}

impl Decoder {
    fn new(gzip: bool, limit: usize) -> Self {
        let capped = Capped { body: Vec::new(), limit, exceeded: false };
        if gzip { Self::Gzip(Box::new(flate2::write::MultiGzDecoder::new(capped))) } else { Self::Plain(capped) }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), ScrapeError> {
        match self {
            Self::Plain(capped) => capped.write_all(data).map_err(|_| ScrapeError::BodyTooLarge(capped.limit)),
            Self::Gzip(decoder) => decoder.write_all(data).map_err(|e| gzip_error(decoder.get_ref(), e)),
        }
    }

    fn finish(self) -> Result<Vec<u8>, ScrapeError> {
        match self {
            Self::Plain(capped) => Ok(capped.body),
            Self::Gzip(mut decoder) => match decoder.try_finish() {
                Ok(()) => decoder.finish().map(|c| c.body).map_err(ScrapeError::Gzip),
                Err(e) => Err(gzip_error(decoder.get_ref(), e)),
            },
        }
    }
}

/// The error of a failed write through gzip: the limit, if that is what stopped it, or corrupt data.
fn gzip_error(capped: &Capped, error: std::io::Error) -> ScrapeError {
    if capped.exceeded { ScrapeError::BodyTooLarge(capped.limit) } else { ScrapeError::Gzip(error) }
}

/// A buffer that refuses to reach `limit` bytes.
struct Capped {
    body: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.body.len() + data.len() >= self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("body size limit exceeded"));
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::prometheus::test_target::{Answer, TestTarget, gzip};

    fn uri(target: &TestTarget) -> Uri {
        format!("http://{}/metrics", target.addr).parse().unwrap()
    }

    #[tokio::test]
    async fn asks_as_prometheus_does_and_reads_the_body_and_its_content_type() {
        let target = TestTarget::start(Answer::text("a 1\n")).await;
        let fetched = HttpClient::new(1024).get(&uri(&target), Duration::from_millis(1500)).await.unwrap();
        assert_eq!(fetched.body, b"a 1\n");
        assert_eq!(fetched.content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
        let head = &target.heads()[0];
        assert!(head.starts_with("get /metrics http/1.1\r\n"), "{head}");
        for line in [
            format!("accept: {}", ACCEPT.to_ascii_lowercase()),
            "accept-encoding: gzip".to_owned(),
            "x-prometheus-scrape-timeout-seconds: 1.5".to_owned(),
            format!("user-agent: roster-collector/{}", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
        }
    }

    #[test]
    fn the_timeout_header_is_the_shortest_decimal_in_seconds() {
        for (ms, text) in [(10_000, "10"), (1_500, "1.5"), (250, "0.25"), (1, "0.001")] {
            assert_eq!(timeout_seconds(Duration::from_millis(ms)), text);
        }
    }

    #[tokio::test]
    async fn a_body_of_the_limit_or_more_fails_and_one_byte_less_passes() {
        let target = TestTarget::start(Answer::text(&"x".repeat(100))).await;
        let error = HttpClient::new(100).get(&uri(&target), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, ScrapeError::BodyTooLarge(100)), "{error:?}");
        assert_eq!(HttpClient::new(101).get(&uri(&target), Duration::from_secs(1)).await.unwrap().body.len(), 100);
    }

    #[tokio::test]
    async fn gzip_is_undone_only_when_the_answer_says_gzip_and_the_limit_counts_its_output() {
        let body = "a 1\n".repeat(1000);
        let packed = gzip(body.as_bytes());
        let target = TestTarget::start(Answer::with(
            "200 OK",
            &[("content-type", "text/plain"), ("content-encoding", "gzip")],
            &packed,
        ))
        .await;
        let fetched = HttpClient::new(1 << 20).get(&uri(&target), Duration::from_secs(1)).await.unwrap();
        assert_eq!(fetched.body, body.as_bytes());

        // A bomb: 64 MiB of zeros in some 64 KiB stops at the limit.
        let bomb = gzip(&vec![0; 64 << 20]);
        assert!(bomb.len() < 1 << 17, "{}", bomb.len());
        target.set(Answer::with("200 OK", &[("content-encoding", "gzip")], &bomb));
        let error = HttpClient::new(1 << 20).get(&uri(&target), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, ScrapeError::BodyTooLarge(_)), "{error:?}");

        // Another encoding is left as it is; broken gzip is an error of its own.
        target.set(Answer::with("200 OK", &[("content-encoding", "x-gzip")], &packed));
        assert_eq!(HttpClient::new(1 << 20).get(&uri(&target), Duration::from_secs(1)).await.unwrap().body, packed);
        target.set(Answer::with("200 OK", &[("content-encoding", "gzip")], b"not gzip at all"));
        let error = HttpClient::new(1 << 20).get(&uri(&target), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, ScrapeError::Gzip(_)), "{error:?}");
        target.set(Answer::with("200 OK", &[("content-encoding", "gzip")], &packed[..packed.len() / 2]));
        let error = HttpClient::new(1 << 20).get(&uri(&target), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, ScrapeError::Gzip(_)), "a cut stream: {error:?}");
    }

    #[tokio::test]
    async fn any_status_but_200_fails_redirects_included() {
        let target = TestTarget::start(Answer::with("503 Service Unavailable", &[], b"busy")).await;
        let error = HttpClient::new(1024).get(&uri(&target), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.to_string(), "server returned HTTP status 503 Service Unavailable");
        target.set(Answer::with("301 Moved Permanently", &[("location", "/elsewhere")], b""));
        let error = HttpClient::new(1024).get(&uri(&target), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.reason(), "http_status");
    }
}
