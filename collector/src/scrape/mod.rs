//! How a producer is scraped: the protocol, apart from the schedule.
//!
//! A [`Scraper`] speaks one producer's protocol. Its producer's task (in [`producer_task`](crate::producer_task))
//! owns everything else: when to scrape, the deadline of each scrape, the counters, and handing samples to the
//! sink. Each kind of producer has its scraper in a file of its own here; the task picks it from the assigned
//! producer in one place ([`TaskHandle::start`](crate::producer_task::TaskHandle::start)).
//!
//! | kind | scraper |
//! |---|---|
//! | `roster.v1.Producer` over gRPC | [`grpc::GrpcScraper`] |

pub(crate) mod grpc;

use std::future::Future;

use roster::error_chain::status_line;

use crate::sample::Sample;

/// Scrapes one producer; its task calls [`Scraper::scrape`] once per due tick, never two at a time.
pub(crate) trait Scraper: Send + 'static {
    /// One scrape: the producer's samples with its labels applied, or why there are none. The task bounds it by
    /// its deadline (dropping the future when it passes), so a scraper needs no timeout of its own.
    fn scrape(&mut self) -> impl Future<Output = Result<Vec<Sample>, ScrapeError>> + Send;
}

/// Why a scrape brought no samples. Shown to operators as the producer's `last_error`.
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
    Timeout(std::time::Duration),
}
