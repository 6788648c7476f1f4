//! The one way a roster client makes its channel: see [`ClientOptions`].

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{DEFAULT_CONNECT_TIMEOUT, Keepalive};
use crate::endpoint::ServerUrl;

/// How a client dials a gRPC service. Every channel also has `TCP_NODELAY`: calls are small and latency is what
/// matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The longest wait for a connection.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive pings, sent even while no call is open; `None` for none (a unary client's per-call time
    /// limit bounds each call instead).
    pub keepalive: Option<Keepalive>,
}

impl Default for ClientOptions {
    /// A connect timeout of [`DEFAULT_CONNECT_TIMEOUT`], no keepalive pings.
    fn default() -> Self {
        Self { connect_timeout: DEFAULT_CONNECT_TIMEOUT, keepalive: None }
    }
}

impl ClientOptions {
    /// The endpoint of `url` with these options. The one place a client's connection settings are made: TLS
    /// (issue 15) adds its client configuration here.
    pub fn endpoint(&self, url: &ServerUrl) -> Endpoint {
        let endpoint = url.endpoint().connect_timeout(self.connect_timeout).tcp_nodelay(true);
        match self.keepalive {
            Some(keepalive) => endpoint
                .http2_keep_alive_interval(keepalive.interval)
                .keep_alive_timeout(keepalive.timeout)
                .keep_alive_while_idle(true),
            None => endpoint,
        }
    }

    /// A channel to `url` that connects on its first call (and again after a failure), so a service that is down
    /// fails calls rather than the making of the client.
    pub fn connect_lazy(&self, url: &ServerUrl) -> Channel {
        self.endpoint(url).connect_lazy()
    }

    /// A channel to `url`, connected now.
    ///
    /// # Errors
    /// When no connection is made within the connect timeout.
    pub async fn connect(&self, url: &ServerUrl) -> Result<Channel, tonic::transport::Error> {
        self.endpoint(url).connect().await
    }
}
