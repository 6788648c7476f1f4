//! The producer side: serve `roster.v1.Producer`, and keep a registration alive.
//!
//! [`SampleService`] turns a function that returns samples into a `roster.v1.Producer` service.
//! [`Registration::run`] registers the producer, renews it at the interval the server returns (a quarter of the
//! lease, L1), retries each call per R3 and keeps trying after a give-up (with the feed's capped backoff), and
//! deregisters on shutdown, so a producer that stops cleanly is dropped at once rather than at lease expiry.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{error, info, warn};

use crate::{
    backoff::BackoffPolicy,
    client::RosterClient,
    pb,
    retry::CallError,
    transport::{ServeOptions, ServerTransport},
};

/// Serves samples from a function.
pub struct SampleService<F> {
    samples: Arc<F>,
}

impl<F> SampleService<F>
where
    F: Fn(&pb::CollectRequest) -> Vec<pb::Sample> + Send + Sync + 'static,
{
    /// A service answering `Collect` with `samples(request)`.
    pub fn new(samples: F) -> pb::producer_server::ProducerServer<Self> {
        pb::producer_server::ProducerServer::new(Self { samples: Arc::new(samples) })
    }
}

#[tonic::async_trait]
impl<F> pb::producer_server::Producer for SampleService<F>
where
    F: Fn(&pb::CollectRequest) -> Vec<pb::Sample> + Send + Sync + 'static,
{
    async fn collect(&self, request: Request<pb::CollectRequest>) -> Result<Response<pb::CollectResponse>, Status> {
        let samples = (self.samples)(request.get_ref());
        Ok(Response::new(pb::CollectResponse { samples }))
    }
}

/// Keeps one producer registered.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration to keep.
    pub request: pb::RegisterProducerRequest,
    /// The registry's client, which retries each call per R3.
    pub client: RosterClient,
}

impl Registration {
    /// Registers, renews until `shutdown`, then deregisters.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut outage = BackoffPolicy::FEED.delays();
        let id = self.request.producer_id.clone();
        loop {
            let wait = match self.client.register_producer(self.request.clone()).await {
                Ok(reply) => {
                    outage.reset();
                    if reply.created {
                        info!(producer.id = %id, "producer registered");
                    }
                    Duration::from_millis(u64::from(reply.renew_interval_ms.max(1000)))
                }
                Err(e @ CallError::Rejected { .. }) => {
                    if retrying_cannot_change(e.status().code()) {
                        // Logged as an error: a process run at the error level (the CLI's default) must say why
                        // nothing gets registered.
                        error!(producer.id = %id, error = %e, "registration refused; fix the request or the credentials (retrying later)");
                    } else {
                        warn!(producer.id = %id, error = %e, "registration refused; fix the request (retrying later)");
                    }
                    outage.next().unwrap_or(BackoffPolicy::FEED.cap)
                }
                Err(e) => {
                    let delay = outage.next().unwrap_or(BackoffPolicy::FEED.cap);
                    warn!(producer.id = %id, error = %e, delay_ms = delay.as_millis() as u64, "registration failed; trying again later");
                    delay
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        match self.client.deregister_producer(id.clone()).await {
            Ok(_) => info!(producer.id = %id, "producer deregistered"),
            Err(e) => warn!(producer.id = %id, error = %e, "could not deregister; the lease will lapse instead"),
        }
    }
}

/// Whether a registration refused with `code` is refused for good: only a change of the request, the credentials or
/// the server's configuration can make it pass, never the passing of time.
fn retrying_cannot_change(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(code, Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated | Code::FailedPrecondition)
}

/// Settings of the demo producer.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// roster-server URL to register with; or the URLs of replicas sharing a store, tried in turn
    /// ([`RosterClient`]). At least one.
    pub servers: Vec<crate::endpoint::ServerUrl>,
    /// What its calls to the registry carry to authenticate (a producer token, [`crate::auth`]).
    pub credentials: crate::auth::CallCredentials,
    /// The producer's id.
    pub id: crate::domain::ProducerId,
    /// Collection interval asked for.
    pub interval: Duration,
    /// Lease asked for.
    pub lease: Duration,
    /// Labels added to its samples.
    pub labels: std::collections::BTreeMap<String, String>,
    /// How an `https://` server is dialled to register.
    pub tls: Option<crate::transport::ClientTls>,
    /// TLS on `roster.v1.Producer` (reloaded when its files change); `None` serves plaintext.
    pub serve_tls: Option<crate::transport::ServerTls>,
}

/// Why the demo producer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A setting is out of range or malformed.
    #[error("{0}")]
    Config(String),
    /// The listener's address cannot be read.
    #[error("cannot read the listener's address")]
    Listener(#[source] std::io::Error),
    /// Serving failed.
    #[error("serving roster.v1.Producer")]
    Transport(#[source] tonic::transport::Error),
}

/// The time limit of each attempt of the demo producer's calls to the registry.
const DEMO_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a demo producer on `listener` until `shutdown`: serves `demo_up`, `demo_collections_total` and
/// `demo_wave` (through [`ServerTransport`], as every roster server), and keeps itself registered with
/// `options.servers` (deregistering on the way out).
///
/// # Errors
/// When the options are invalid or serving fails.
pub async fn run_demo(
    listener: tokio::net::TcpListener,
    options: DemoOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    use std::sync::atomic::{AtomicU64, Ordering};

    let local = listener.local_addr().map_err(DemoError::Listener)?;
    let ms = |d: Duration, what: &str| {
        u32::try_from(d.as_millis()).map_err(|_| DemoError::Config(format!("{what} is too long: {d:?}")))
    };
    let request = pb::RegisterProducerRequest {
        producer_id: options.id.to_string(),
        address: local.to_string(),
        interval_ms: ms(options.interval, "interval")?,
        labels: options.labels,
        lease_ms: Some(ms(options.lease, "lease")?),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let client = RosterClient::connect_any(&options.servers, DEMO_CALL_TIMEOUT, options.tls)
        .map_err(|e| DemoError::Config(e.to_string()))?
        .with_credentials(options.credentials);
    let registration = Registration { request, client };
    let keeper = tokio::spawn(registration.run(stop.clone()));

    let collections = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let service = SampleService::new(move |_req: &pb::CollectRequest| {
        let n = collections.fetch_add(1, Ordering::Relaxed) + 1;
        let sample = |name: &str, value: f64| pb::Sample { name: name.into(), value, ..Default::default() };
        vec![
            sample("demo_up", 1.0),
            sample("demo_collections_total", n as f64),
            sample("demo_wave", (started.elapsed().as_secs_f64() / 10.0).sin()),
        ]
    });
    let tls = options.serve_tls.as_ref().map_or("off", |_| "on");
    let servers = crate::endpoint::ServerUrl::joined(&options.servers);
    info!(producer.id = %options.id, listen = %local, tls, servers, "demo producer serving");
    let served = ServerTransport::new(ServeOptions::default())
        .tls(options.serve_tls)
        .add_service(service)
        .serve(listener, shutdown)
        .await;
    stop.cancel();
    let _ = keeper.await;
    served.map_err(DemoError::Transport)
}
