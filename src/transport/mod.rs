//! How roster speaks gRPC on the network, written once for every server and every client.
//!
//! - [`ServerTransport`] (in `server.rs`) serves a set of gRPC services the way every roster server does:
//!   roster-server's `roster.v1` API, a roster-collector's status API and a producer's `roster.v1.Producer` (the
//!   library's [`crate::producer`]). It accepts connections, adds the request-trace and message-size layers, serves
//!   gRPC health and reflection beside the services, and on shutdown goes away (health NOT_SERVING, then every
//!   health watch ends) and drains open calls within one budget.
//! - [`ClientOptions`] (in `client.rs`) makes the channel of every roster client: the library's clients, the feed
//!   follower, the test kit and the benchmark.
//! - [`tls`] reads and checks certificates, keys and CA bundles, and holds a server's reloadable configuration
//!   ([`ServerTls`]) and a client's ([`ClientTls`]). A TLS server accepts through roster's own acceptor
//!   (`acceptor.rs`), so that certificates reload without a restart and a plaintext client is told that TLS is
//!   required; a client dials `https://` URLs with [`ClientOptions::tls`], whose files are read again for each
//!   endpoint made, so a client that reconnects (the feed follower) presents a rotated certificate without a
//!   restart.

mod acceptor;
mod client;
mod health;
mod reflection;
mod server;
pub mod tls;

use std::time::Duration;

pub use client::ClientOptions;
pub use server::{ServeOptions, ServerTransport};
pub use tls::{ClientTls, ClientTlsFiles, IdentityFiles, PeerTlsFiles, ServerTls, ServerTlsFiles, TlsError};

/// How long a client waits for a connection, unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server, once told to stop, lets open calls finish before it closes them, unless told otherwise.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// HTTP/2 keepalive (S5): a ping every `interval`; a connection whose ping goes unanswered for `timeout` is
/// closed. On a client, pings are sent even while no call is open: a quiet feed stream is exactly what must be
/// probed, since a half-open connection looks the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long a ping may go unanswered.
    pub timeout: Duration,
}
