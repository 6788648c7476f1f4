//! Harness for the collector's fault tests: an in-process producer on port 0, an in-process collector read
//! through its status API, and a scripted feed in front of a real server. The in-process roster-server, the
//! bounded waits and the fault-injecting proxy come from `roster-testkit`.

// Test helpers: a panic here is the test failing, with its message.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use roster::pb::{
    assignment_feed_client::AssignmentFeedClient,
    assignment_feed_server::{AssignmentFeed, AssignmentFeedServer},
};
use roster::{pb, producer::SampleService};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{
    Request, Response, Status,
    transport::{Channel, Server, server::TcpIncoming},
};
use uuid::Uuid;

pub use roster_testkit::{FaultProxy, Mode, TestServer, WAIT, register_all, wait_for, wait_until};

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

/// What a [`ScriptedFeed`] does to the calls it passes on; the test changes it at any time.
#[derive(Debug, Default)]
pub struct Script {
    /// Fail every `ReportApplied` with `UNAVAILABLE` instead of passing it on.
    pub fail_reports: AtomicBool,
    /// End each `Watch` stream after its first frame.
    pub one_frame_streams: AtomicBool,
    /// Reports failed so far.
    pub reports_failed: AtomicU64,
}

/// The feed service of a real roster-server, with a [`Script`] in between (as linkerd2-proxy's tests script their
/// control plane): every call goes to the server unless the script says otherwise, so what the follower gets is
/// what a real server sends.
#[derive(Clone)]
pub struct ScriptedFeed {
    upstream: AssignmentFeedClient<Channel>,
    script: Arc<Script>,
}

impl ScriptedFeed {
    /// Serves, on a free port of 127.0.0.1, the feed of `server` under a script; returns its address and the script.
    /// It stops with the test's runtime.
    pub async fn start(server: &TestServer) -> (SocketAddr, Arc<Script>) {
        let script = Arc::new(Script::default());
        let feed = Self { upstream: server.feed().await, script: script.clone() };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(AssignmentFeedServer::new(feed))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        (addr, script)
    }
}

#[tonic::async_trait]
impl AssignmentFeed for ScriptedFeed {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let stream = self.upstream.clone().watch(request.into_inner()).await?.into_inner();
        Ok(Response::new(if self.script.one_frame_streams.load(Ordering::SeqCst) {
            Box::pin(stream.take(1))
        } else {
            Box::pin(stream)
        }))
    }

    async fn report_applied(
        &self,
        request: Request<pb::ReportAppliedRequest>,
    ) -> Result<Response<pb::ReportAppliedResponse>, Status> {
        if self.script.fail_reports.load(Ordering::SeqCst) {
            self.script.reports_failed.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("scripted: this report fails"));
        }
        self.upstream.clone().report_applied(request.into_inner()).await
    }
}
