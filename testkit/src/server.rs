//! A roster-server running inside the test's own process, on a loopback port, with a shutdown the test controls:
//! the server suite and the collector suite test against it without building or spawning the binary (the
//! end-to-end suite in `tests/` runs the real binary).

use std::net::SocketAddr;

use roster::pb::{assignment_feed_client::AssignmentFeedClient, registry_client::RegistryClient};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

use crate::wait::WAIT;

/// A roster-server in this process. [`TestServer::stop`] shuts it down and checks it stopped cleanly; dropping it
/// shuts it down without waiting.
#[derive(Debug)]
pub struct TestServer {
    /// The address it serves on.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), roster_server::ServerError>>,
}

impl TestServer {
    /// Starts on a fresh port of 127.0.0.1.
    pub async fn start(config: roster_server::Config) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on `addr`: port 0 for a fresh one, or the address of a server stopped before, to come back on it.
    pub async fn start_on(addr: SocketAddr, config: roster_server::Config) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(roster_server::run(listener, config, async {
            // A send or a dropped sender: either way, stop.
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    /// Shuts the server down and waits (up to [`WAIT`]) for it to finish; fails the test unless it stopped cleanly.
    pub async fn stop(self) {
        let Self { stop, task, .. } = self;
        let _ = stop.send(());
        let outcome = tokio::time::timeout(WAIT, task).await.expect("the server stops in time");
        outcome.expect("the server task did not panic").expect("the server stopped without an error");
    }

    /// Its URL, as clients take it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection to it.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("a valid URL").connect().await.expect("connect to the test server")
    }

    /// A registry client on its own connection.
    pub async fn registry(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel().await)
    }

    /// A feed client on its own connection (as each collector would have).
    pub async fn feed(&self) -> AssignmentFeedClient<Channel> {
        AssignmentFeedClient::new(self.channel().await)
    }
}
