//! Harness for the collector's fault tests: an in-process producer on port 0, and an in-process collector read
//! through its status API. The in-process roster-server, the bounded waits and the fault-injecting proxy come from
//! `roster-testkit`.

// Test helpers: a panic here is the test failing, with its message.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, path::Path, time::Duration};

use roster::{pb, producer::SampleService};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Server, server::TcpIncoming};
use uuid::Uuid;

pub use roster_testkit::{FaultProxy, Mode, TestServer, WAIT, register_all, wait_until};

/// A roster.v1.Producer in this process, answering every collection with one sample.
pub struct TestProducer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestProducer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = SampleService::new(|_req: &pb::CollectRequest| {
            vec![pb::Sample { name: "test_up".into(), value: 1.0, ..Default::default() }]
        });
        let task = tokio::spawn(async move {
            let _ = Server::builder().add_service(service).serve_with_incoming(TcpIncoming::from(listener)).await;
        });
        Self { addr, task }
    }
}

impl Drop for TestProducer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A roster-collector running in this process.
pub struct TestCollector {
    pub status_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), roster_collector::CollectorError>>,
}

impl TestCollector {
    pub async fn start(config: roster_collector::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let status_addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(roster_collector::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self { status_addr, stop: Some(stop), task }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task).await.expect("collector stops in time").unwrap().unwrap();
    }

    pub async fn status(&self) -> pb::GetStatusResponse {
        let client = roster::client::StatusClient::connect(
            &roster::endpoint::ServerUrl::parse_address_or_url(&self.status_addr.to_string()).unwrap(),
            WAIT,
        );
        client.get_full_status().await.unwrap()
    }

    /// Reads the status until `check` holds; returns that status (bounded by [`WAIT`]).
    pub async fn wait_until(
        &self,
        what: &str,
        check: impl Fn(&pb::GetStatusResponse) -> bool,
    ) -> pb::GetStatusResponse {
        wait_until(what, || self.status(), check).await
    }
}

/// A collector config with fast reconnects (initial 50 ms, cap 500 ms) and fast keepalive.
pub fn collector_config(servers: Vec<String>, data_dir: &Path) -> roster_collector::Config {
    let servers = servers.iter().map(|s| s.parse().expect("an http://host:port server URL")).collect();
    let mut config = roster_collector::Config::new(servers, data_dir);
    config.backoff = roster::backoff::BackoffPolicy {
        initial: Duration::from_millis(50),
        cap: Duration::from_millis(500),
        jitter: 0.5,
        max_attempts: None,
    };
    config.keepalive_interval = Duration::from_millis(500);
    config.keepalive_timeout = Duration::from_millis(500);
    config
}

pub fn producer_at(addr: SocketAddr, interval_ms: u32) -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest {
        producer_id: Uuid::new_v4().to_string(),
        address: addr.to_string(),
        interval_ms,
        ..Default::default()
    }
}

/// Per-producer collection counts from a status.
pub fn collections(status: &pb::GetStatusResponse) -> std::collections::BTreeMap<String, u64> {
    status.producers.iter().map(|p| (p.id.clone(), p.collections)).collect()
}
