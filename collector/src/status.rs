//! `roster.v1.CollectorStatus`: what this collector is doing, for operators (grpcurl, `roster status`) and tests.

use std::sync::{Arc, atomic::Ordering};

use roster::{
    domain::CollectorId,
    follower::{FollowerHandle, assembler::Snapshot},
    pb,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{reconciler::TaskViews, sink::SinkStats};

/// The status service.
#[derive(Debug, Clone)]
pub struct StatusService {
    /// This collector.
    pub collector: CollectorId,
    /// The follower's snapshot and counters.
    pub follower: FollowerHandle,
    /// The running tasks.
    pub tasks: TaskViews,
    /// The sink's counters.
    pub sink: Arc<SinkStats>,
}

#[tonic::async_trait]
impl pb::collector_status_server::CollectorStatus for StatusService {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let stats = self.follower.stats.snapshot();
        let applied: watch::Ref<'_, Option<Arc<Snapshot>>> = self.follower.applied.borrow();
        let applied = applied.clone();
        let producers = self
            .tasks
            .lock()
            .map_err(|_| Status::internal("status is unavailable (a task panicked)"))?
            .values()
            .map(|view| {
                let s = view.stats.lock().map(|s| s.clone()).unwrap_or_default();
                pb::ProducerStatus {
                    id: view.target.id.to_string(),
                    address: view.target.address.to_string(),
                    interval_ms: roster::domain::duration_ms_u32(view.target.interval),
                    collections: s.collections,
                    failures: s.failures,
                    last_success_unix_ms: s.last_success_ms,
                    last_failure_unix_ms: s.last_failure_ms,
                    last_error: s.last_error,
                    skipped_ticks: s.skipped_ticks,
                    task_incarnation: view.incarnation,
                    own_stalls: s.own_stalls,
                }
            })
            .collect();
        Ok(Response::new(pb::GetStatusResponse {
            collector_id: self.collector.to_string(),
            endpoint: stats.endpoint,
            connected: stats.connected,
            connected_changed_at_unix_ms: stats.connected_changed_at_ms,
            applied_epoch: applied.as_ref().map(|s| s.epoch.to_string()).unwrap_or_default(),
            applied_generation: applied.as_ref().map_or(0, |s| s.generation),
            applied_at_unix_ms: stats.applied_at_ms,
            applied_producer_count: applied.as_ref().map_or(0, |s| s.targets.len() as u64),
            last_contact_unix_ms: stats.last_contact_ms,
            reconnects: stats.reconnects,
            discards: stats.discards.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            held_reason: stats.held_reason.unwrap_or_default(),
            samples_written: self.sink.written.load(Ordering::Relaxed),
            samples_dropped: self.sink.dropped.load(Ordering::Relaxed),
            sink_error: self.sink.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default(),
            producers,
        }))
    }
}
