//! The producer side: serve `roster.v1.Producer`, and keep a registration alive.
//!
//! [`SampleService`] turns a function that returns samples into a `roster.v1.Producer` service.
//! [`Registration::run`] registers the producer, renews it at the interval the server returns (a quarter of the
//! lease, L1), retries each call per R3 and keeps trying after a give-up (with the feed's capped backoff), and
//! deregisters on shutdown, so a producer that stops cleanly is dropped at once rather than at lease expiry.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, transport::Channel};
use tracing::{info, warn};

use crate::{
    backoff::BackoffPolicy,
    pb::{self, registry_client::RegistryClient},
    retry,
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
    /// The registry, on a lazily connecting channel.
    pub registry: RegistryClient<Channel>,
    /// Per-attempt time limit.
    pub timeout: Duration,
}

impl Registration {
    /// Registers, renews until `shutdown`, then deregisters.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut outage = BackoffPolicy::FEED.delays();
        let id = self.request.producer_id.clone();
        loop {
            let registry = self.registry.clone();
            let result =
                retry::call("RegisterProducer", BackoffPolicy::UNARY, self.timeout, self.request.clone(), |req| {
                    let mut registry = registry.clone();
                    async move { registry.register_producer(req).await }
                })
                .await;
            let wait = match result {
                Ok(reply) => {
                    outage.reset();
                    if reply.created {
                        info!(producer.id = %id, "producer registered");
                    }
                    Duration::from_millis(u64::from(reply.renew_interval_ms.max(1000)))
                }
                Err(e @ retry::CallError::Rejected { .. }) => {
                    warn!(producer.id = %id, error = %e, "registration refused; fix the request (retrying later)");
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
        let request = pb::DeregisterProducerRequest { producer_id: id.clone() };
        let registry = self.registry.clone();
        match retry::call("DeregisterProducer", BackoffPolicy::UNARY, self.timeout, request, |req| {
            let mut registry = registry.clone();
            async move { registry.deregister_producer(req).await }
        })
        .await
        {
            Ok(_) => info!(producer.id = %id, "producer deregistered"),
            Err(e) => warn!(producer.id = %id, error = %e, "could not deregister; the lease will lapse instead"),
        }
    }
}
