//! The gRPC edge: `roster.v1.Registry` and `roster.v1.AssignmentFeed`.
//!
//! Each handler converts its request into domain types once (`TryFrom`, which names a bad field), calls the
//! registry, and converts the answer back into wire types. No rule lives here, and no status code: every failure
//! is an [`Error`], made a status by its one mapping (`crate::error`).
//!
//! The auth layer ([`roster::auth::AuthLayer`]) has checked the caller's role against the method before a handler
//! runs; what only the body shows (which collector, which producer, a pin) is checked by [`authorize`], before
//! the registry is asked anything, so a refused call changes nothing.

use std::pin::Pin;

use roster::{
    auth::{AuthError, Principal, Target},
    domain::{
        ApplyOutcome, ApplyReport, CollectorId, PinChange, ProducerId, ProducerQuery, Registration, WatchParams,
        duration_ms_u32,
    },
    message_limit, pb,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, info};

use crate::{
    error::Error,
    feed::stream::{self, STREAM_BUFFER, StreamConfig},
    records::{Liveness, ProducerRecord},
    registry::{
        RegistryHandle,
        state::{CollectorView, ConflictView},
    },
    wire::{WatchFrame, feed_server::assignment_feed_server::AssignmentFeed},
};

/// Whether the caller of `request` may act on `target`: the [`Principal`] the auth layer put into the request,
/// asked through its one check ([`Principal::may`]). A request without one never passed the layer, and is refused.
fn authorize(extensions: &tonic::Extensions, target: Target) -> Result<(), Error> {
    let principal = extensions.get::<Principal>().ok_or_else(|| {
        Error::Auth(AuthError::Unauthenticated("the call did not pass the server's authentication".to_owned()))
    })?;
    principal.may(target).map_err(Error::Auth)
}

fn producer_info(r: &ProducerRecord) -> pb::ProducerInfo {
    let (kind, prometheus) = r.spec.collection.to_info_pb();
    pb::ProducerInfo {
        id: r.spec.id.to_string(),
        address: r.spec.address.to_string(),
        interval_ms: duration_ms_u32(r.spec.interval),
        labels: r.spec.labels.to_map(),
        pinned_collector_id: r.pin().map(|c| c.to_string()).unwrap_or_default(),
        assigned_collector_id: r.assigned.map(|c| c.to_string()).unwrap_or_default(),
        lease_ms: duration_ms_u32(r.lease),
        lease_expires_at_unix_ms: r.expires_at_ms,
        registered_at_unix_ms: r.registered_at_ms,
        operator_pinned_collector_id: r.operator_pin.map(|c| c.to_string()).unwrap_or_default(),
        registrant_pinned_collector_id: r.spec.pinned.map(|c| c.to_string()).unwrap_or_default(),
        kind,
        prometheus,
    }
}

fn collector_info(v: &CollectorView) -> pb::CollectorInfo {
    let (state, open_streams, grace_ends) = match v.record.liveness {
        Liveness::Live { streams } => (pb::CollectorState::Live, streams, 0),
        Liveness::Grace { until_ms } => (pb::CollectorState::Grace, 0, until_ms),
        Liveness::Departed { .. } => (pb::CollectorState::Departed, 0, 0),
    };
    let report = v.record.report.as_ref();
    pb::CollectorInfo {
        id: v.id.to_string(),
        state: state.into(),
        open_streams,
        grace_ends_at_unix_ms: grace_ends,
        assigned_count: u32::try_from(v.assigned).unwrap_or(u32::MAX),
        generation: v.record.generation,
        reported_generation: report.map_or(0, |r| r.generation),
        reported_outcome: report
            .map_or(pb::ApplyOutcome::Unspecified, |r| match r.outcome {
                ApplyOutcome::Applied => pb::ApplyOutcome::Applied,
                ApplyOutcome::Rejected(_) => pb::ApplyOutcome::Rejected,
            })
            .into(),
        reported_reason: report
            .and_then(|r| match &r.outcome {
                ApplyOutcome::Rejected(reason) => Some(reason.clone()),
                ApplyOutcome::Applied => None,
            })
            .unwrap_or_default(),
        reported_at_unix_ms: report.map_or(0, |r| r.at_ms),
        converged: v.converged,
        departed_at_unix_ms: v.record.departed_at_ms().unwrap_or(0),
        forget_at_unix_ms: v.forget_at_ms.unwrap_or(0),
        instances: u32::try_from(v.instances).unwrap_or(u32::MAX),
        conflict: v.conflict.as_ref().map(conflict_text).unwrap_or_default(),
        conflict_at_unix_ms: v.conflict.as_ref().map_or(0, |c| c.last_refused_at_ms),
        supported_kinds: v.record.supported_kinds.to_pb(),
    }
}

/// What an operator reads about two processes sharing one collector id, and what to do.
fn conflict_text(c: &ConflictView) -> String {
    let refused = c.refused.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let holder = match c.running {
        Some(running) => format!("instance {running} holds the feed"),
        None => "no instance holds the feed now".to_owned(),
    };
    format!(
        "more than one collector process uses this id (a copied data directory?): {holder}; refused: {refused}. Give \
         the copy a new id: delete the collector-id file in its data directory (or start it with --id and a new \
         UUID) and restart it"
    )
}

/// `roster.v1.Registry`.
#[derive(Debug, Clone)]
pub(crate) struct RegistryService {
    /// The registry actor.
    pub(crate) registry: RegistryHandle,
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn register_producer(
        &self,
        request: Request<pb::RegisterProducerRequest>,
    ) -> Result<Response<pb::RegisterProducerResponse>, Status> {
        let (_, extensions, request) = request.into_parts();
        let registration = Registration::try_from(request).map_err(Error::Field)?;
        let spec = &registration.spec;
        authorize(&extensions, Target::Register { producer: spec.id, pinned: spec.pinned.is_some() })?;
        let registered = self.registry.register(registration).await?;
        if registered.created {
            let spec = &registered.record.spec;
            info!(producer.id = %spec.id, address = %spec.address, kind = %spec.collection.kind(), assigned = ?registered.record.assigned.map(|c| c.to_string()), "producer registered");
        }
        Ok(Response::new(pb::RegisterProducerResponse {
            renew_interval_ms: duration_ms_u32(registered.record.lease / 4),
            producer: Some(producer_info(&registered.record)),
            created: registered.created,
        }))
    }

    async fn deregister_producer(
        &self,
        request: Request<pb::DeregisterProducerRequest>,
    ) -> Result<Response<pb::DeregisterProducerResponse>, Status> {
        let (_, extensions, request) = request.into_parts();
        let id = ProducerId::parse_field("producer_id", &request.producer_id).map_err(Error::Field)?;
        authorize(&extensions, Target::Deregister(id))?;
        let existed = self.registry.deregister(id).await?;
        if existed {
            info!(producer.id = %id, "producer deregistered");
        }
        Ok(Response::new(pb::DeregisterProducerResponse { existed }))
    }

    async fn get_producer(
        &self,
        request: Request<pb::GetProducerRequest>,
    ) -> Result<Response<pb::ProducerInfo>, Status> {
        let id = ProducerId::parse_field("producer_id", &request.into_inner().producer_id).map_err(Error::Field)?;
        match self.registry.get_producer(id).await? {
            Some(record) => Ok(Response::new(producer_info(&record))),
            None => Err(Error::UnknownProducer(id).into()),
        }
    }

    async fn set_producer_pin(
        &self,
        request: Request<pb::SetProducerPinRequest>,
    ) -> Result<Response<pb::SetProducerPinResponse>, Status> {
        let change = PinChange::try_from(request.into_inner()).map_err(Error::Field)?;
        let (record, changed) = self.registry.set_pin(change).await?;
        if changed {
            match change.collector {
                Some(c) => {
                    info!(producer.id = %change.producer, pin = %c, assigned = ?record.assigned.map(|a| a.to_string()), "operator pin set")
                }
                None => {
                    info!(producer.id = %change.producer, assigned = ?record.assigned.map(|a| a.to_string()), "operator pin cleared")
                }
            }
        }
        Ok(Response::new(pb::SetProducerPinResponse { producer: Some(producer_info(&record)), changed }))
    }

    async fn list_producers(
        &self,
        request: Request<pb::ListProducersRequest>,
    ) -> Result<Response<pb::ListProducersResponse>, Status> {
        let query = ProducerQuery::try_from(request.into_inner()).map_err(Error::Field)?;
        let page = self.registry.list_producers(query).await?;
        // A page ends at `page_size` producers or at the byte budget, whichever comes first, so no page nears
        // the 4 MiB message limit whatever the labels hold; a page cut short by bytes continues after its last.
        let mut producers: Vec<_> = page.producers.iter().map(|r| (r.spec.id, producer_info(r))).collect();
        let next_after = message_limit::cut_page(&mut producers, page.next_after.is_some(), message_limit::entry_len);
        Ok(Response::new(pb::ListProducersResponse {
            producers: producers.into_iter().map(|(_, p)| p).collect(),
            next_page_token: next_after.map(ProducerQuery::page_token_after).unwrap_or_default(),
            total_count: page.total,
        }))
    }

    async fn list_collectors(
        &self,
        _request: Request<pb::ListCollectorsRequest>,
    ) -> Result<Response<pb::ListCollectorsResponse>, Status> {
        let collectors = self.registry.list_collectors().await?;
        Ok(Response::new(pb::ListCollectorsResponse { collectors: collectors.iter().map(collector_info).collect() }))
    }

    async fn forget_collector(
        &self,
        request: Request<pb::ForgetCollectorRequest>,
    ) -> Result<Response<pb::ForgetCollectorResponse>, Status> {
        let id = CollectorId::parse_field("collector_id", &request.into_inner().collector_id).map_err(Error::Field)?;
        let existed = self.registry.forget(id).await?;
        if existed {
            info!(collector.id = %id, "departed collector forgotten on an operator's request");
        }
        Ok(Response::new(pb::ForgetCollectorResponse { existed }))
    }
}

/// `roster.v1.AssignmentFeed`.
#[derive(Debug, Clone)]
pub(crate) struct FeedService {
    /// The registry actor.
    pub(crate) registry: RegistryHandle,
    /// Settings shared by every stream.
    pub(crate) stream: StreamConfig,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchFrame, Status>> + Send>>;

#[tonic::async_trait]
impl AssignmentFeed for FeedService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let (_, extensions, request) = request.into_parts();
        let params = WatchParams::try_from(request).map_err(Error::Field)?;
        authorize(&extensions, Target::Feed { collector: params.collector, observe_only: params.observe })?;
        if self.stream.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let attached = self.registry.attach(params.clone()).await?;
        let span = tracing::info_span!("watch", collector.id = %params.collector);
        span.in_scope(|| {
            info!(
                known_epoch = ?params.known.map(|k| k.0),
                known_generation = params.known.map_or(0, |k| k.1),
                observe_only = params.observe,
                instance = ?params.instance,
                kinds = %params.supported_kinds.names(),
                "feed stream opened"
            );
        });
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(stream::serve(params, attached, out, self.stream.clone()).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|frame| frame.map_err(|status| *status)))))
    }

    async fn report_applied(
        &self,
        request: Request<pb::ReportAppliedRequest>,
    ) -> Result<Response<pb::ReportAppliedResponse>, Status> {
        let (_, extensions, request) = request.into_parts();
        let report = ApplyReport::try_from(request).map_err(Error::Field)?;
        authorize(&extensions, Target::Report(report.collector))?;
        let (collector, generation) = (report.collector, report.generation);
        let outcome = match &report.outcome {
            ApplyOutcome::Applied => "applied".to_owned(),
            ApplyOutcome::Rejected(reason) => format!("rejected: {reason}"),
        };
        let current = self.registry.report(report).await?;
        info!(collector.id = %collector, generation, outcome, current, "collector reported");
        Ok(Response::new(pb::ReportAppliedResponse { current }))
    }
}
