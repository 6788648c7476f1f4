//! One remote-write request, and its retries as the spec orders them.
//!
//! - The request: `POST` to the receiver's URL over HTTP/1.1 with the headers the spec requires
//!   (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version:
//!   0.1.0`, `User-Agent: roster-collector/<version>`) and the configured credentials; `https` receivers are
//!   verified against the system's CA certificates or the configured CA file (rustls on ring).
//! - The answer: 2xx delivers; 5xx, 429 and every network error are tried again; a request that takes longer than
//!   the timeout (a receiver that hangs) is cut and tried again; any other status refuses the request for good,
//!   with a reason: its status and the first line of its answer. What a refused request's samples become (halves
//!   sent again, or dropped and counted by that reason) is the caller's: [`super::shards`].
//! - Retries: for as long as it takes (the disk queue bounds what waits), after capped exponential backoff with
//!   jitter (Prometheus's 30 ms to 5 s), or after what `Retry-After` asks (seconds or an HTTP date, capped), and
//!   never once the sender is shutting down.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Request, StatusCode, Uri,
    header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT},
};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use roster::{backoff::BackoffPolicy, error_chain::chain};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{config::RemoteWriteConfig, stats::RemoteWriteStats};
use crate::defaults;

/// This collector's `User-Agent`.
const AGENT: &str = concat!("roster-collector/", env!("CARGO_PKG_VERSION"));

/// The remote-write version header and its value.
pub(crate) const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
const VERSION: &str = "0.1.0";

/// The most of an answer's body read (to keep its connection for the next request, and its first line as a
/// reason); a longer body is dropped with its connection.
const ANSWER_BYTES: usize = 64 * 1024;

/// How one attempt ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// 2xx.
    Delivered,
    /// 5xx, 429, a network error or a timeout: try again, after `after` if the receiver said so.
    Retry { error: String, after: Option<Duration> },
    /// Any other status: never tried again. The reason is the status and the first line of the answer.
    Refused { reason: String, bad_request: bool },
}

/// How a request ended, when it did.
#[derive(Debug, PartialEq)]
pub(crate) enum Sent {
    /// The receiver took it (2xx).
    Delivered,
    /// The receiver refused it for good; nothing of it is counted yet ([`Receiver::refused`] counts it).
    Refused {
        /// The status and the first line of the answer.
        reason: String,
        /// 400: the receiver found something wrong in the request, which may be one sample of it (Prometheus
        /// refuses a whole request for one sample out of order, duplicate or out of bounds).
        bad_request: bool,
    },
}

/// The sender was told to stop before the request was delivered.
#[derive(Debug)]
pub(crate) struct Stopped;

/// One receiver: where requests go and how; cheap to clone (clones share the connection pool).
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    auth: Option<HeaderValue>,
    timeout: Duration,
    backoff: BackoffPolicy,
    retry_after_max: Duration,
    stats: Arc<RemoteWriteStats>,
    /// Notified at every delivery: a shard waiting out its backoff retries at once when another shard got through,
    /// so that after an outage the shards resume together instead of each at the end of its own backoff (up to its
    /// cap), which held the whole window back.
    delivered: Arc<Notify>,
}

impl Receiver {
    /// The receiver `config` names, counting into `stats`.
    pub(crate) fn new(config: &RemoteWriteConfig, stats: Arc<RemoteWriteStats>) -> Self {
        let tls = match &config.ca_file {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(ca.0.iter().cloned());
                ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
            }
            None => match ClientConfig::builder().with_native_roots() {
                Ok(builder) => builder.with_no_client_auth(),
                Err(e) => {
                    if config.url.scheme_str() == Some("https") {
                        let fix = "set SSL_CERT_FILE, or give ca-file";
                        warn!(error = %e, fix, "no CA certificates: https remote-write will fail");
                    }
                    ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth()
                }
            },
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        http.enforce_http(false);
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        // Idle connections are closed after hyper's default 90 s (the timer lets the pool see time pass).
        let client = Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(connector);
        Self {
            client,
            url: config.url.clone(),
            auth: config.auth.as_ref().map(|auth| auth.header().clone()),
            timeout: config.timeout,
            backoff: config.backoff,
            retry_after_max: config.retry_after_max,
            stats,
            delivered: Arc::default(),
        }
    }

    /// Sends `body` (a snappy-compressed `WriteRequest` of `samples`) until it is delivered or refused for good.
    /// Returns `Stopped` if `stop` fires first: the request in flight is finished, no other attempt is made.
    pub(crate) async fn send(&self, body: Bytes, samples: u32, stop: &CancellationToken) -> Result<Sent, Stopped> {
        let mut delays = self.backoff.delays();
        loop {
            if stop.is_cancelled() {
                return Err(Stopped);
            }
            // Listening from before the attempt, so that a delivery by another shard during it is not missed.
            let another_delivered = self.delivered.notified();
            tokio::pin!(another_delivered);
            another_delivered.as_mut().enable();
            let (delay, asked) = match self.attempt(body.clone()).await {
                Outcome::Delivered => {
                    self.delivered.notify_waiters();
                    if self.stats.delivered(samples) {
                        info!(receiver = %self.url, "remote-write receiver accepts requests again");
                    }
                    return Ok(Sent::Delivered);
                }
                Outcome::Refused { reason, bad_request } => return Ok(Sent::Refused { reason, bad_request }),
                Outcome::Retry { error, after } => {
                    let backoff = delays.next().unwrap_or(self.backoff.cap);
                    if self.stats.retrying(samples, error.clone()) {
                        warn!(receiver = %self.url, %error, "remote-write failed; retrying until it is taken");
                    }
                    match after {
                        Some(after) => (after.min(self.retry_after_max), true),
                        None => (backoff, false),
                    }
                }
            };
            // A backoff ends early when another shard got through; a `Retry-After` the receiver asked for does not.
            tokio::select! {
                () = stop.cancelled() => return Err(Stopped),
                () = tokio::time::sleep(delay) => {}
                () = &mut another_delivered, if !asked => {}
            }
        }
    }

    /// The `samples` of a request refused for good with `reason` are dropped: counted by reason, and logged once
    /// for each reason.
    pub(crate) fn refused(&self, samples: u32, reason: &str) {
        if self.stats.refused_for(samples, reason) {
            let note = "logged once for each reason";
            warn!(receiver = %self.url, %reason, samples, note,
                "remote-write receiver refused a request for good; its samples are dropped");
        }
    }

    /// One `POST`, cut at the timeout.
    async fn attempt(&self, body: Bytes) -> Outcome {
        let mut request = Request::post(self.url.clone())
            .header(CONTENT_ENCODING, HeaderValue::from_static("snappy"))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))
            .header(VERSION_HEADER, HeaderValue::from_static(VERSION))
            .header(USER_AGENT, HeaderValue::from_static(AGENT));
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            // The URL and every header were checked when the configuration was parsed.
            Err(e) => return Outcome::Refused { reason: format!("request not built: {e}"), bad_request: false },
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| chain(&e).to_string())?;
            let status = response.status();
            let after = retry_after(response.headers(), SystemTime::now());
            let answer = read_answer(response.into_body()).await;
            Ok::<_, String>((status, after, answer))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::Retry {
                error: format!("no answer within {}", humantime::format_duration(self.timeout)),
                after: None,
            },
            Ok(Err(error)) => Outcome::Retry { error, after: None },
            Ok(Ok((status, after, answer))) => judge(status, after, &answer),
        }
    }
}

/// What a status means for the request.
fn judge(status: StatusCode, after: Option<Duration>, answer: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = reason(status, answer);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry { error: reason, after }
    } else {
        Outcome::Refused { reason, bad_request: status == StatusCode::BAD_REQUEST }
    }
}

/// `<status code> <first line of the answer>`, the line cut to [`defaults::REMOTE_WRITE_REASON_BYTES`] (at a
/// character boundary); the status's own reason phrase if the answer is empty.
fn reason(status: StatusCode, answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("");
    let mut end = line.len().min(defaults::REMOTE_WRITE_REASON_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let line = if line.is_empty() { status.canonical_reason().unwrap_or("") } else { &line[..end] };
    format!("{} {line}", status.as_u16()).trim_end().to_owned()
}

/// The answer's body, up to [`ANSWER_BYTES`] (what follows, and a body that fails midway, is left unread).
async fn read_answer(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut answer = Vec::new();
    while answer.len() < ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    answer.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    answer
}

/// `Retry-After`: delay-seconds, or an HTTP date (a date in the past means now).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged_by_the_spec() {
        assert_eq!(judge(StatusCode::NO_CONTENT, None, b""), Outcome::Delivered);
        assert_eq!(judge(StatusCode::OK, None, b"ignored"), Outcome::Delivered);
        let retry = |code: u16| judge(StatusCode::from_u16(code).unwrap(), None, b"busy\n");
        assert_eq!(retry(503), Outcome::Retry { error: "503 busy".into(), after: None });
        assert!(matches!(retry(500), Outcome::Retry { .. }));
        assert!(matches!(retry(429), Outcome::Retry { .. }));
        for code in [400, 401, 403, 404, 409, 413] {
            let bad_request = code == 400;
            assert!(matches!(retry(code), Outcome::Refused { bad_request: b, .. } if b == bad_request), "{code}");
        }
        // Redirects are not followed: they refuse too (a misconfigured URL, to fix, not to retry).
        assert!(matches!(retry(301), Outcome::Refused { .. }));
    }

    #[test]
    fn a_reason_is_the_status_and_the_first_line_cut_at_a_character() {
        assert_eq!(reason(StatusCode::BAD_REQUEST, b"out of order sample\nmore"), "400 out of order sample");
        assert_eq!(reason(StatusCode::BAD_REQUEST, b"\n  \n  second\n"), "400 second");
        assert_eq!(reason(StatusCode::BAD_REQUEST, b""), "400 Bad Request");
        let long = "é".repeat(defaults::REMOTE_WRITE_REASON_BYTES);
        let cut = reason(StatusCode::BAD_REQUEST, long.as_bytes());
        assert_eq!(cut.len(), 4 + defaults::REMOTE_WRITE_REASON_BYTES, "{cut}");
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(header("7"), Some(Duration::from_secs(7)));
        assert_eq!(header("Sun, 06 Nov 1994 08:49:57 GMT"), Some(Duration::from_secs(20)));
        assert_eq!(header("Sun, 06 Nov 1994 08:49:00 GMT"), Some(Duration::ZERO), "in the past");
        assert_eq!(header("soon"), None);
        assert_eq!(header("-3"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
