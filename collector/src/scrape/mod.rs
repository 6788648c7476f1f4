//! How a producer is scraped: the protocol, apart from the schedule.
//!
//! A [`Scraper`] speaks one producer's protocol. Its producer's task (in [`producer_task`](crate::producer_task))
//! owns everything else: when to scrape, the deadline of each scrape, the counters, and handing samples to the
//! sink. Each kind of producer has its scraper in a module of its own here; the task picks it from the assigned
//! producer in one place ([`TaskHandle::start`](crate::producer_task::TaskHandle::start)).
//!
//! | kind | scraper |
//! |---|---|
//! | `roster.v1.Producer` over gRPC | [`grpc::GrpcScraper`] |
//! | Prometheus HTTP target (text 0.0.4, OpenMetrics 1.0) | [`prometheus::PrometheusScraper`] |
//!
//! A scrape has two halves. [`Scraper::scrape`] asks and reads the answer; the task drops its future when the
//! deadline passes, so it changes no state that outlives the scrape. [`Scraper::conclude`] then turns the outcome,
//! success or failure, into what is written: a Prometheus target writes `up` = 0 and staleness markers for a
//! failed scrape too, and keeps the series it saw for the next one. That state changes only there, whatever
//! happened to the future.

pub(crate) mod grpc;
pub(crate) mod prometheus;

use std::{future::Future, time::Duration};

use roster::error_chain::status_line;

use self::prometheus::staleness::Tracker;
use crate::sample::Sample;

/// Scrapes one producer; its task calls [`Scraper::scrape`] once per due tick, never two at a time, and
/// [`Scraper::conclude`] after each.
pub(crate) trait Scraper: Send + 'static {
    /// What one successful scrape brings, before [`Scraper::conclude`] makes samples of it.
    type Scraped: Send + 'static;

    /// One scrape at `at_ms` (the wall clock at the tick, taken before asking: the time of every sample that
    /// carries none of its own). The task bounds it by its deadline (dropping the future when it passes), so a
    /// scraper needs no timeout of its own.
    fn scrape(&mut self, at_ms: u64) -> impl Future<Output = Result<Self::Scraped, ScrapeError>> + Send;

    /// What the scrape at `at_ms`, which took `took` and ended with `outcome` (a timeout included), writes.
    fn conclude(&mut self, at_ms: u64, took: Duration, outcome: Result<Self::Scraped, &ScrapeError>) -> Vec<Sample>;

    /// Whether [`Scraper::retire`] would write anything now: a producer with no series to end stops at once when
    /// it leaves the assignment, instead of waiting two ticks for nothing.
    fn has_series_to_end(&self) -> bool;

    /// What is written at `at_ms` once the producer has left the assignment (the ends of its series).
    fn retire(&mut self, at_ms: u64) -> Vec<Sample>;

    /// The series this scraper has written and not ended, for the scraper that replaces it when its producer's
    /// entry changes (C6), as a Prometheus reload hands its scrape cache to the new loop: the new scraper ends
    /// those it no longer writes, and no other.
    fn hand_over(self) -> Option<Tracker>;
}

/// Why a scrape brought no samples. Shown to operators as the producer's `last_error`; [`ScrapeError::reason`]
/// names its kind in a word.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScrapeError {
    /// The producer's address cannot be dialled by its protocol; the task collects nothing from it.
    #[error("bad address")]
    BadAddress(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The producer answered with an error, or the call failed (connection refused, reset).
    #[error("{}", status_line(.0))]
    Failed(tonic::Status),
    /// No answer within the scrape's deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP request failed (connection refused or reset, a malformed answer).
    #[error("the request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The target answered with another status than 200 (redirects are not followed).
    #[error("server returned HTTP status {0}")]
    Status(http::StatusCode),
    /// The body could not be read to its end.
    #[error("reading the body failed")]
    Body(#[source] hyper::Error),
    /// The body reached the size limit (counted after gzip is undone); nothing of it is kept.
    #[error("body size limit exceeded ({0} bytes)")]
    BodyTooLarge(usize),
    /// The body says it is gzip, but is not.
    #[error("the gzip body is corrupt")]
    Gzip(#[source] std::io::Error),
    /// The body is of a format roster does not parse.
    #[error(transparent)]
    ContentType(crate::exposition::UnsupportedContentType),
    /// The body is not valid exposition text.
    #[error("invalid exposition")]
    Parse(#[source] crate::exposition::ParseError),
    /// A sample's own timestamp is before 1970 (the text format has none; OpenMetrics can).
    #[error("negative timestamp {0} ms")]
    NegativeTimestamp(i64),
    /// The same series twice in one body.
    #[error("duplicate series {0}")]
    DuplicateSeries(String),
}

impl ScrapeError {
    /// The kind of failure, in a word (for logs and counters).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadAddress(_) => "bad_address",
            Self::Failed(_) => "failed",
            Self::Timeout(_) => "timeout",
            Self::Request(_) => "request",
            Self::Status(_) => "http_status",
            Self::Body(_) => "body",
            Self::BodyTooLarge(_) => "body_size_limit",
            Self::Gzip(_) => "gzip",
            Self::ContentType(_) => "content_type",
            Self::Parse(_) | Self::NegativeTimestamp(_) => "parse",
            Self::DuplicateSeries(_) => "duplicate_series",
        }
    }
}
