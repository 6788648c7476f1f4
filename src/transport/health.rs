//! `grpc.health.v1.Health` for a roster server: SERVING while it serves, and a clean going-away.
//!
//! The server as a whole answers as the service `""`, and each service served under its own name.

use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health as HealthApi, HealthServer},
    server::HealthReporter,
};

/// The health reporter of one server.
pub(super) struct Health(HealthReporter);

/// The health service with the server (`""`) and each of `services` SERVING, and its reporter.
pub(super) async fn serving(services: &[&str]) -> (Health, HealthServer<impl HealthApi>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in whole_and_each(services) {
        reporter.set_service_status(name, ServingStatus::Serving).await;
    }
    (Health(reporter), service)
}

/// The service name a server is served under.
pub(super) fn name_of<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

impl Health {
    /// Marks the server and `services` NOT_SERVING, then ends every `grpc.health.v1.Health/Watch` stream on them.
    ///
    /// Load balancers and supervisors hold a Watch open for as long as a server lives. Left open, it would hold a
    /// graceful shutdown until its drain limit. Each watcher gets NOT_SERVING first, then its stream ends; a Check
    /// from then on answers NOT_FOUND.
    pub(super) async fn going_away(&mut self, services: &[&str]) {
        for name in whole_and_each(services) {
            self.0.set_service_status(name, ServingStatus::NotServing).await;
        }
        for name in whole_and_each(services) {
            self.0.clear_service_status(name).await;
        }
    }
}

/// `""` (the server as a whole), then each service.
fn whole_and_each<'a>(services: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    std::iter::once("").chain(services.iter().copied())
}
