//! The one way a roster client makes its channel: see [`ClientOptions`].

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{ClientTls, DEFAULT_CONNECT_TIMEOUT, Keepalive};
use crate::endpoint::ServerUrl;

/// How a client dials a gRPC service. Every channel also has `TCP_NODELAY`: calls are small and latency is what
/// matters.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest wait for a connection.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive pings, sent even while no call is open; `None` for none (a unary client's per-call time
    /// limit bounds each call instead).
    pub keepalive: Option<Keepalive>,
    /// How `https://` URLs are dialled: the CA that signed the server's certificate and, for mutual TLS, the
    /// client's own. An `http://` URL is dialled in plaintext whatever this says; whether a URL's scheme and the
    /// TLS settings go together is checked where both enter ([`ServerUrl::check_tls`]).
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    /// A connect timeout of [`DEFAULT_CONNECT_TIMEOUT`], no keepalive pings, no TLS.
    fn default() -> Self {
        Self { connect_timeout: DEFAULT_CONNECT_TIMEOUT, keepalive: None, tls: None }
    }
}

impl ClientOptions {
    /// The endpoint of `url` with these options. The one place a client's connection settings are made; for an
    /// `https://` URL it reads the TLS files again ([`ClientTls`]), so each new endpoint presents the client
    /// certificate on disk now. A channel keeps its endpoint's, reconnecting included.
    pub fn endpoint(&self, url: &ServerUrl) -> Endpoint {
        let mut endpoint = url.endpoint().connect_timeout(self.connect_timeout).tcp_nodelay(true);
        if url.is_tls()
            && let Some(tls) = &self.tls
        {
            endpoint = endpoint
                .tls_config(tls.reloaded())
                .expect("the TLS files were checked at load, and a ServerUrl's host is a valid server name");
        }
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
