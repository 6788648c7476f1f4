//! A tower layer that gives every incoming RPC a request id and a tracing span (rule R5).
//!
//! Clients send `x-request-id` (the same UUID on every attempt of one call) and `grpc-previous-rpc-attempts` on
//! retries. The layer reads both, makes a request id when the client sent none (and puts it in the request, so
//! handlers and the logs agree), runs the handler inside an `rpc` span carrying `request.id`, `rpc.method` and
//! `rpc.previous_attempts`, echoes the id in the response headers, and logs one line when the response starts.
//! It is written once, here, and every roster server adds it through [`crate::transport::ServerTransport`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::{Instrument as _, instrument::Instrumented};

/// Header carrying a request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header carrying how many attempts of this call came before (gRPC retry design).
pub const PREVIOUS_ATTEMPTS_HEADER: &str = "grpc-previous-rpc-attempts";

/// The layer, added by [`crate::transport::ServerTransport`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestTraceLayer;

impl<S> Layer<S> for RequestTraceLayer {
    type Service = RequestTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTrace { inner }
    }
}

/// The service made by [`RequestTraceLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestTrace<S> {
    inner: S,
}

/// A request id is kept as sent when it is short, visible ASCII; anything else is replaced.
fn usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

impl<S, B, ResB> Service<Request<B>> for RequestTrace<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Instrumented<ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let request_id = match req.headers().get(REQUEST_ID_HEADER) {
            Some(v) if usable_request_id(v) => v.clone(),
            _ => {
                let made = HeaderValue::try_from(uuid::Uuid::new_v4().to_string())
                    .expect("a hyphenated UUID is a valid header value");
                req.headers_mut().insert(REQUEST_ID_HEADER, made.clone());
                made
            }
        };
        let previous_attempts: u32 = req
            .headers()
            .get(PREVIOUS_ATTEMPTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let span = tracing::info_span!(
            "rpc",
            rpc.method = %req.uri().path(),
            request.id = %String::from_utf8_lossy(request_id.as_bytes()),
            rpc.previous_attempts = previous_attempts,
        );
        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture { inner, request_id, started: Instant::now() }.instrument(span)
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RequestTrace`]: adds the request id to the response and logs its start.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        request_id: HeaderValue,
        started: Instant,
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::warn!("rpc failed in transport");
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(response)) => response,
        };
        response.headers_mut().insert(REQUEST_ID_HEADER, this.request_id.clone());
        let elapsed_ms = this.started.elapsed().as_secs_f64() * 1000.0;
        // A unary error comes back "trailers-only", so its grpc-status is in the headers; a success's status is
        // in the trailers, after the body. `grpc.status` is therefore only set on early errors.
        match response.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
            Some(code) if code != "0" => {
                let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info!(grpc.status = code, grpc.message = message, elapsed_ms, "rpc answered with an error");
            }
            _ => tracing::info!(elapsed_ms, "rpc answered"),
        }
        Poll::Ready(Ok(response))
    }
}
