//! Unary calls with bounded retries (R2, R3, R5).
//!
//! [`call`] runs one logical call as up to `policy.max_attempts` attempts. Every attempt carries the same
//! `x-request-id` and, from the second on, `grpc-previous-rpc-attempts`, and is a tracing event with the request
//! id, method, attempt number, the delay before the next attempt and the cause. Only transient failures are
//! retried: `UNAVAILABLE`, an attempt that ran out of time, and transport failures that tonic reports as
//! `UNKNOWN` (a server that accepts and closes at once), recognised by their source error rather than by code.
//! Everything else (`INVALID_ARGUMENT`, `NOT_FOUND`, …) is returned at once.

use std::{
    future::Future,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use backon::Retryable as _;
use tonic::{Code, Request, Status, metadata::MetadataValue};
use tracing::{debug, info, warn};

use crate::{backoff::BackoffPolicy, error_chain::status_line, rpc_trace};

/// A call that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with a non-transient error.
    #[error("{method}: {}", status_line(.status))]
    Rejected {
        /// The method.
        method: &'static str,
        /// The answer.
        status: Status,
    },
    /// Every attempt failed transiently.
    #[error("{method}: gave up after {} over {:.1} s; last error: {}", attempts_text(*.attempts), .elapsed.as_secs_f64(), status_line(.last))]
    GaveUp {
        /// The method.
        method: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's failure.
        last: Status,
    },
}

/// `1 attempt`, `5 attempts`: how every final error of a retrying call counts its attempts.
pub fn attempts_text(n: u32) -> String {
    if n == 1 { "1 attempt".to_owned() } else { format!("{n} attempts") }
}

impl CallError {
    /// The last status seen.
    pub fn status(&self) -> &Status {
        match self {
            Self::Rejected { status, .. } => status,
            Self::GaveUp { last, .. } => last,
        }
    }
}

/// Whether a failure is worth another attempt (R2).
pub fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        // tonic reports a connection that was accepted and then closed as UNKNOWN with a transport source.
        Code::Unknown => {
            std::error::Error::source(status).is_some()
                || status.message().contains("transport error")
                || status.message().contains("connection")
        }
        _ => false,
    }
}

/// Runs `attempt` with retries, driven by backon with `policy` (our hard-capped [`BackoffPolicy`]). `attempt` gets
/// a request already carrying the request-id and attempt headers (and a per-attempt deadline, `timeout`) and
/// performs one call with it.
///
/// # Errors
/// [`CallError::Rejected`] on a non-transient failure, [`CallError::GaveUp`] when every attempt failed.
pub async fn call<Req, Resp, F, Fut>(
    method: &'static str,
    policy: BackoffPolicy,
    timeout: Duration,
    request: Req,
    mut attempt: F,
) -> Result<Resp, CallError>
where
    Req: Clone,
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let max = policy.max_attempts.unwrap_or(u32::MAX).max(1);
    let started = Instant::now();
    let attempts = AtomicU32::new(0);
    let one = || {
        let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let mut req = Request::new(request.clone());
        req.set_timeout(timeout);
        let metadata = req.metadata_mut();
        if let Ok(id) = MetadataValue::try_from(request_id.as_str()) {
            metadata.insert(rpc_trace::REQUEST_ID_HEADER, id);
        }
        if n > 1 {
            metadata.insert(rpc_trace::PREVIOUS_ATTEMPTS_HEADER, MetadataValue::from(n - 1));
        }
        debug!(request.id = %request_id, method, attempt = n, max, "attempt");
        let call = attempt(req);
        async move {
            tokio::time::timeout(timeout, call)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded(format!("attempt timed out after {timeout:?}"))))
        }
    };
    let result = one
        .retry(policy)
        .sleep(tokio::time::sleep)
        .when(is_transient)
        .notify(|status: &Status, delay: Duration| {
            warn!(
                request.id = %request_id,
                method,
                attempt = attempts.load(Ordering::Relaxed),
                max,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                cause = %status_line(status),
                "attempt failed; retrying"
            );
        })
        .await;
    let n = attempts.load(Ordering::Relaxed);
    match result {
        Ok(response) => {
            if n > 1 {
                info!(request.id = %request_id, method, attempt = n, max, "call succeeded after retries");
            }
            Ok(response.into_inner())
        }
        Err(status) if is_transient(&status) => {
            warn!(request.id = %request_id, method, attempt = n, max, cause = %status_line(&status), "attempt failed; giving up");
            Err(CallError::GaveUp { method, attempts: n, elapsed: started.elapsed(), last: status })
        }
        Err(status) => {
            info!(request.id = %request_id, method, attempt = n, max, cause = %status_line(&status), "call rejected; not retried");
            Err(CallError::Rejected { method, status })
        }
    }
}
