//! `roster.v1.CollectorStatus`: what this collector is doing, for operators (grpcurl, `roster status`) and tests.
//!
//! The producers come in pages (by id, bounded by count and by [`PAGE_BYTES`](roster::message_limit::PAGE_BYTES)), since a collector may run tens
//! of thousands of them; every page carries the whole summary.

use std::{
    ops::Bound::{Excluded, Unbounded},
    sync::Arc,
};

use roster::{
    domain::{CollectorId, ProducerId, StatusQuery},
    follower::{FollowerHandle, assembler::Snapshot},
    message_limit, pb,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{
    reconciler::{TaskView, TaskViews},
    sink::SinkView,
};

/// The status service.
#[derive(Debug, Clone)]
pub(crate) struct StatusService {
    /// This collector.
    pub(crate) collector: CollectorId,
    /// This process's instance id (see `WatchRequest.instance_id`).
    pub(crate) instance: Option<uuid::Uuid>,
    /// The follower's snapshot and counters.
    pub(crate) follower: FollowerHandle,
    /// The running tasks.
    pub(crate) tasks: TaskViews,
    /// The destinations of the samples.
    pub(crate) sinks: Vec<SinkView>,
}

#[tonic::async_trait]
impl pb::collector_status_server::CollectorStatus for StatusService {
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let query = StatusQuery::try_from(request.into_inner())?;
        let stats = self.follower.stats.snapshot();
        let applied: watch::Ref<'_, Option<Arc<Snapshot>>> = self.follower.applied.borrow();
        let applied = applied.clone();
        let (producers, next_after) = self.page(&query)?;
        let sinks: Vec<pb::SinkStatus> = self.sinks.iter().map(SinkView::status).collect();
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
            samples_written: sinks.iter().map(|s| s.samples_written).sum(),
            samples_dropped: sinks.iter().map(|s| s.samples_dropped).sum(),
            sink_error: sinks.iter().map(|s| &s.last_error).find(|e| !e.is_empty()).cloned().unwrap_or_default(),
            sinks,
            producers,
            next_page_token: next_after.map(StatusQuery::page_token_after).unwrap_or_default(),
            persist_error: stats.persist_error.unwrap_or_default(),
            persist_failures: stats.persist_failures,
            persisted_snapshots: stats.persisted_snapshots,
            persisted_generation: stats.persisted.map_or(0, |(_, generation)| generation),
            instance_id: self.instance.map(|i| i.to_string()).unwrap_or_default(),
            feed_refused: stats.feed_refused.unwrap_or_default(),
        }))
    }
}

impl StatusService {
    /// One page of the producers: at most `page_size` of them after the token's, and at most
    /// [`PAGE_BYTES`](roster::message_limit::PAGE_BYTES) encoded; with the id the next page starts after, if more follow.
    fn page(&self, query: &StatusQuery) -> Result<(Vec<pb::ProducerStatus>, Option<ProducerId>), Status> {
        let lower = query.after.map_or(Unbounded, Excluded);
        let size = query.page_size as usize;
        let mut page: Vec<(ProducerId, pb::ProducerStatus)> = self
            .tasks
            .lock()
            .map_err(|_| Status::internal("status is unavailable (a task panicked)"))?
            .range((lower, Unbounded))
            .take(size + 1)
            .map(|(id, view)| (*id, producer_status(view)))
            .collect();
        let more = page.len() > size;
        page.truncate(size);
        let next_after = message_limit::cut_page(&mut page, more, message_limit::entry_len_wide_key);
        Ok((page.into_iter().map(|(_, p)| p).collect(), next_after))
    }
}

fn producer_status(view: &TaskView) -> pb::ProducerStatus {
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
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, time::Duration};

    use prost::Message as _;
    use roster::message_limit::PAGE_BYTES;

    use roster::{
        domain::{Collection, Labels, ProducerAddress, Target},
        follower::{Follower, FollowerConfig},
    };

    use super::*;
    use crate::producer_task::ProducerStats;

    /// A status service over `count` producers whose last error is `error_bytes` long.
    fn service(count: usize, error_bytes: usize) -> StatusService {
        let (_follower, handle) =
            Follower::new(FollowerConfig::new(vec!["http://127.0.0.1:9".parse().unwrap()], CollectorId::new_random()))
                .unwrap();
        let views = (0..count)
            .map(|_| {
                let id = ProducerId::new_random();
                let target = Target {
                    id,
                    address: ProducerAddress::parse_field("address", "127.0.0.1:9").unwrap(),
                    interval: Duration::from_secs(1),
                    labels: Labels::default(),
                    collection: Collection::Grpc,
                };
                let stats = ProducerStats { last_error: "e".repeat(error_bytes), ..Default::default() };
                (id, TaskView { target, incarnation: 1, stats: Arc::new(std::sync::Mutex::new(stats)) })
            })
            .collect();
        StatusService {
            collector: CollectorId::new_random(),
            instance: None,
            follower: handle,
            tasks: Arc::new(std::sync::Mutex::new(views)),
            sinks: Vec::new(),
        }
    }

    /// Every page in turn, `page_size` at a time; checks each page's bounds.
    fn all_pages(service: &StatusService, page_size: u32) -> Vec<Vec<pb::ProducerStatus>> {
        let mut pages = Vec::new();
        let mut after = None;
        for _ in 0..10_000 {
            let (page, next) = service.page(&StatusQuery { page_size, after }).unwrap();
            let bytes: usize = page.iter().map(|p| message_limit::entry_len_wide_key(p.encoded_len())).sum();
            assert!(page.len() == 1 || bytes <= PAGE_BYTES, "{} producers, {bytes} bytes", page.len());
            assert!(page.len() <= page_size as usize);
            pages.push(page);
            match next {
                Some(id) => after = Some(id),
                None => return pages,
            }
        }
        panic!("the listing never ended");
    }

    #[test]
    fn pages_are_bounded_by_count_and_by_bytes_and_list_every_producer_once() {
        for (count, error_bytes, page_size, expected_pages) in
            [(0, 0, 100, 1), (250, 0, 100, 3), (100, 0, 100, 1), (30, 100_000, 1000, 3), (3, 2 << 20, 1000, 3)]
        {
            let service = service(count, error_bytes);
            let pages = all_pages(&service, page_size);
            let listed: Vec<String> = pages.iter().flatten().map(|p| p.id.clone()).collect();
            let unique: BTreeSet<&String> = listed.iter().collect();
            assert_eq!((listed.len(), unique.len()), (count, count), "every producer once");
            assert!(listed.windows(2).all(|w| w[0] < w[1]), "ordered by id");
            assert_eq!(pages.len(), expected_pages, "{count} producers, errors of {error_bytes} bytes");
        }
    }
}
