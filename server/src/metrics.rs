//! roster-server's own Prometheus metrics, served on `--metrics-listen` by [`roster::metrics_http`].
//!
//! [`ServerMetrics`] holds what is counted as it happens (registrations, store commits, lease expiries; the
//! registry actor counts them once its batch is committed) and builds the [`Registry`] that also reads, at scrape
//! time, what is kept elsewhere: the open feed streams, counted by the streams themselves ([`OpenStreams`]), and
//! each collector's liveness, generation, report and producers. The actor copies the collectors' figures here at
//! start and after every sweep of its periodic work (every second by default), so a scrape never waits on the
//! actor, the actor never waits on a scrape, and the figures are at most one sweep old.
//!
//! Every name starts `roster_server_`; label values are fixed words and collector UUIDs.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::{feed::stream::OpenStreams, records::Liveness, registry::state::CollectorView};

/// A label set of fixed words.
type Words<const N: usize> = [(&'static str, &'static str); N];

/// What the server counts, and the per-collector figures its registry last copied. Cheap to clone: every clone
/// counts into the same metrics.
#[derive(Debug, Clone)]
pub(crate) struct ServerMetrics {
    registrations: Family<Words<1>, Counter>,
    store_commit_duration: Histogram,
    store_commit_failures: Counter,
    lease_expiries: Counter,
    leader: Gauge,
    store_revision: Gauge,
    collectors: Arc<Mutex<Vec<CollectorFigures>>>,
}

/// One collector as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CollectorFigures {
    id: String,
    state: &'static str,
    generation: u64,
    reported_generation: u64,
    converged: bool,
    assigned: usize,
}

impl ServerMetrics {
    /// The metrics, and the registry that serves them (reading `open_streams` at each scrape).
    pub(crate) fn new(open_streams: Arc<OpenStreams>) -> (Self, Registry) {
        let metrics = Self {
            registrations: Family::default(),
            // 0.5 ms to about 4 s: an fsync on a fast disk up to a disk in trouble.
            store_commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            store_commit_failures: Counter::default(),
            lease_expiries: Counter::default(),
            leader: Gauge::default(),
            store_revision: Gauge::default(),
            collectors: Arc::default(),
        };
        // Both results are listed from the start, at 0 until they happen.
        for result in ["created", "renewed"] {
            metrics.registrations.get_or_create_owned(&[("result", result)]);
        }
        let mut registry = Registry::with_prefix("roster_server");
        registry.register(
            "registrations",
            "Registrations committed (RegisterProducer), by result: created (a new producer) or renewed",
            metrics.registrations.clone(),
        );
        registry.register_with_unit(
            "store_commit_duration",
            "Time to commit one batch of registry changes to the store (one transaction, one fsync)",
            Unit::Seconds,
            metrics.store_commit_duration.clone(),
        );
        registry.register(
            "store_commit_failures",
            "Store commits that failed (the batch is refused with UNAVAILABLE and the state reloaded)",
            metrics.store_commit_failures.clone(),
        );
        registry.register(
            "lease_expiries",
            "Producers removed because their lease lapsed",
            metrics.lease_expiries.clone(),
        );
        registry.register(
            "leader",
            "1 while this server leads the replicas sharing its store (it alone applies leases and grace periods); a \
             server on its own store always leads",
            metrics.leader.clone(),
        );
        registry.register(
            "store_revision",
            "The revision of the shared store this replica's state reflects (0 on a store of one server)",
            metrics.store_revision.clone(),
        );
        registry.register_collector(Box::new(Observed { open_streams, collectors: metrics.collectors.clone() }));
        (metrics, registry)
    }

    /// Whether this server leads, as its last tick found.
    pub(crate) fn leads(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// The store's revision this server's state reflects.
    pub(crate) fn store_revision(&self, revision: u64) {
        self.store_revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    /// A registration was committed; `created` when the producer was new.
    pub(crate) fn registered(&self, created: bool) {
        let result = if created { "created" } else { "renewed" };
        self.registrations.get_or_create(&[("result", result)]).inc();
    }

    /// A batch with changes was committed (or failed to be) in `took`.
    pub(crate) fn committed(&self, took: Duration, ok: bool) {
        self.store_commit_duration.observe(took.as_secs_f64());
        if !ok {
            self.store_commit_failures.inc();
        }
    }

    /// `count` leases lapsed, and their removal was committed.
    pub(crate) fn leases_expired(&self, count: usize) {
        self.lease_expiries.inc_by(count as u64);
    }

    /// Every known collector, as the registry lists it now.
    pub(crate) fn collectors_seen(&self, views: &[CollectorView]) {
        let figures = views
            .iter()
            .map(|v| CollectorFigures {
                id: v.id.to_string(),
                state: state_word(v.record.liveness),
                generation: v.record.generation,
                reported_generation: v.record.report.as_ref().map_or(0, |r| r.generation),
                converged: v.converged,
                assigned: v.assigned,
            })
            .collect();
        if let Ok(mut shared) = self.collectors.lock() {
            *shared = figures;
        }
    }
}

/// The word for a liveness, as `roster collectors list` shows it.
fn state_word(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Live { .. } => "live",
        Liveness::Grace { .. } => "grace",
        Liveness::Departed { .. } => "departed",
    }
}

/// Every collector state, so each is listed (at 0 when no collector is in it).
const STATES: [&str; 3] = ["live", "grace", "departed"];

/// What is read at scrape time.
#[derive(Debug)]
struct Observed {
    open_streams: Arc<OpenStreams>,
    collectors: Arc<Mutex<Vec<CollectorFigures>>>,
}

impl Observed {
    /// A gauge with one series per collector.
    fn per_collector(
        encoder: &mut DescriptorEncoder<'_>,
        figures: &[CollectorFigures],
        name: &str,
        help: &str,
        value: impl Fn(&CollectorFigures) -> i64,
    ) -> fmt::Result {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for f in figures {
            ConstGauge::new(value(f)).encode(metric.encode_family(&[("collector_id", f.id.as_str())])?)?;
        }
        Ok(())
    }
}

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let open = i64::try_from(self.open_streams.open()).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(open);
        gauge.encode(encoder.encode_descriptor(
            "feed_streams_open",
            "Feed (Watch) streams open now, observers' included.",
            None,
            gauge.metric_type(),
        )?)?;

        let figures = self.collectors.lock().map(|f| f.clone()).unwrap_or_default();
        {
            let mut metric = encoder.encode_descriptor(
                "collectors",
                "Known collectors by state: live (a stream open), grace (eligible, no stream), departed.",
                None,
                MetricType::Gauge,
            )?;
            for state in STATES {
                let count = i64::try_from(figures.iter().filter(|f| f.state == state).count()).unwrap_or(i64::MAX);
                ConstGauge::new(count).encode(metric.encode_family(&[("state", state)])?)?;
            }
        }

        let generation = |f: &CollectorFigures| i64::try_from(f.generation).unwrap_or(i64::MAX);
        Self::per_collector(
            &mut encoder,
            &figures,
            "collector_generation",
            "The collector's current generation: bumped by each change of its assignment.",
            generation,
        )?;
        Self::per_collector(
            &mut encoder,
            &figures,
            "collector_reported_generation",
            "The generation the collector last reported (applied or rejected); 0 before its first report.",
            |f| i64::try_from(f.reported_generation).unwrap_or(i64::MAX),
        )?;
        Self::per_collector(
            &mut encoder,
            &figures,
            "collector_converged",
            "1 when the collector's last report is an APPLIED of its current generation in this epoch, else 0.",
            |f| i64::from(f.converged),
        )?;
        Self::per_collector(
            &mut encoder,
            &figures,
            "collector_assigned_producers",
            "Producers assigned to the collector now.",
            |f| i64::try_from(f.assigned).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use roster::domain::{ApplyOutcome, CollectorId, SupportedKinds};

    use super::*;
    use crate::records::{CollectorRecord, StoredReport};

    #[test]
    fn counted_figures_and_open_streams_are_encoded_by_their_prometheus_names() {
        let open = Arc::new(OpenStreams::default());
        let (metrics, registry) = ServerMetrics::new(open);
        metrics.registered(true);
        metrics.registered(false);
        metrics.registered(false);
        metrics.committed(Duration::from_millis(3), true);
        metrics.committed(Duration::from_millis(3), false);
        metrics.leases_expired(4);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "roster_server_registrations_total{result=\"created\"} 1",
            "roster_server_registrations_total{result=\"renewed\"} 2",
            "# TYPE roster_server_store_commit_duration_seconds histogram",
            "roster_server_store_commit_duration_seconds_count 2",
            "roster_server_store_commit_failures_total 1",
            "roster_server_lease_expiries_total 4",
            "roster_server_feed_streams_open 0",
            "roster_server_collectors{state=\"live\"} 0",
            "roster_server_collectors{state=\"departed\"} 0",
            "# TYPE roster_server_collector_generation gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn each_collector_shows_its_generation_report_convergence_and_state() {
        let (metrics, registry) = ServerMetrics::new(Arc::new(OpenStreams::default()));
        let view = |liveness, generation, reported: Option<u64>, converged| {
            let report = reported.map(|generation| StoredReport {
                epoch: uuid::Uuid::new_v4(),
                generation,
                outcome: ApplyOutcome::Applied,
                at_ms: 1,
            });
            CollectorView {
                id: CollectorId::new_random(),
                record: CollectorRecord {
                    generation,
                    liveness,
                    report,
                    supported_kinds: SupportedKinds::GRPC_ONLY,
                    holders: Default::default(),
                },
                assigned: 3,
                converged,
                forget_at_ms: None,
                instances: 1,
                conflict: None,
            }
        };
        let views = [
            view(Liveness::Live { streams: 1 }, 5, Some(5), true),
            view(Liveness::Grace { until_ms: 9 }, 4, Some(3), false),
            view(Liveness::Live { streams: 2 }, 1, None, false),
        ];
        metrics.collectors_seen(&views);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let first = views[0].id;
        let second = views[1].id;
        let third = views[2].id;
        for line in [
            "roster_server_collectors{state=\"live\"} 2".to_owned(),
            "roster_server_collectors{state=\"grace\"} 1".to_owned(),
            "roster_server_collectors{state=\"departed\"} 0".to_owned(),
            format!("roster_server_collector_generation{{collector_id=\"{first}\"}} 5"),
            format!("roster_server_collector_reported_generation{{collector_id=\"{first}\"}} 5"),
            format!("roster_server_collector_converged{{collector_id=\"{first}\"}} 1"),
            format!("roster_server_collector_reported_generation{{collector_id=\"{second}\"}} 3"),
            format!("roster_server_collector_converged{{collector_id=\"{second}\"}} 0"),
            format!("roster_server_collector_reported_generation{{collector_id=\"{third}\"}} 0"),
            format!("roster_server_collector_assigned_producers{{collector_id=\"{third}\"}} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }

        // A collector forgotten is no longer listed.
        metrics.collectors_seen(&views[..1]);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.contains(&second.to_string()), "{text}");
    }
}
