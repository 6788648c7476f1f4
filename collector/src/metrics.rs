//! roster-collector's own Prometheus metrics, served on `--metrics-listen` by [`roster::metrics_http`].
//!
//! What the collector already counts for its status API is read from there at scrape time, not counted twice: the
//! feed's connection, reconnects and discards by reason and the persisted snapshot's failures (the follower's
//! [`Stats`](roster::follower::Stats)), the applied generation (the follower's `applied` channel), and the sink's samples written and
//! dropped and its queue ([`SinkStats`]). Scrapes are counted here, by producer kind and outcome, with their
//! duration: a producer's own counters end with its task, and a counter must not fall when a producer leaves.
//! Each task gets its kind's counters once ([`ScrapeMetrics::for_kind`]), so a scrape costs two atomic adds and a
//! histogram observation.
//!
//! Every name starts `roster_collector_`; label values are fixed words.

use std::{
    fmt,
    sync::atomic::Ordering,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use roster::{
    domain::ProducerKind,
    follower::{FollowerHandle, assembler::DiscardReason},
};

use crate::{export::remote_write::stats::RemoteWriteStats, sink::SinkView};

/// A label set of fixed words.
type Words<const N: usize> = [(&'static str, &'static str); N];

/// The histogram of one kind's scrape durations: 1 ms to about 33 s, past the longest deadline
/// ([`crate::defaults::COLLECT_TIMEOUT_MAX`]).
fn scrape_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// How one scrape ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Samples came back.
    Success,
    /// The producer answered with an error, or could not be reached.
    Error,
    /// No answer within the scrape's deadline.
    Timeout,
    /// Cut by the deadline because this collector was not running (stopped, paused, starved): not the producer's
    /// failure.
    OwnStall,
}

impl Outcome {
    /// Every outcome, in the order declared (so `outcome as usize` indexes it).
    const ALL: [Self; 4] = [Self::Success, Self::Error, Self::Timeout, Self::OwnStall];

    /// The label value.
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::OwnStall => "own_stall",
        }
    }

    /// The outcome of a scrape run under a deadline: `Ok(Ok(_))`, `Ok(Err(_))` (the scraper's error) or `Err(_)`
    /// (the deadline passed), `stalled` when the time was this collector's own.
    pub(crate) fn of<T, E, D>(result: &Result<Result<T, E>, D>, stalled: bool) -> Self {
        match result {
            Ok(Ok(_)) => Self::Success,
            Ok(Err(_)) => Self::Error,
            Err(_) if stalled => Self::OwnStall,
            Err(_) => Self::Timeout,
        }
    }
}

/// Scrapes by kind and outcome, and their durations. Cheap to clone: every clone counts into the same metrics.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeMetrics {
    scrapes: Family<Words<2>, Counter>,
    durations: Family<Words<1>, Histogram, fn() -> Histogram>,
}

impl Default for ScrapeMetrics {
    fn default() -> Self {
        Self {
            scrapes: Family::default(),
            durations: Family::new_with_constructor(scrape_duration_histogram as fn() -> Histogram),
        }
    }
}

impl ScrapeMetrics {
    /// The counters of the producers of one kind, made once per task. Every outcome's series exists from then on,
    /// at 0 until it happens.
    pub(crate) fn for_kind(&self, kind: ProducerKind) -> KindMetrics {
        let kind = kind.as_str();
        let counter =
            |outcome: Outcome| self.scrapes.get_or_create_owned(&[("kind", kind), ("outcome", outcome.as_str())]);
        KindMetrics {
            outcomes: Outcome::ALL.map(counter),
            duration: self.durations.get_or_create_owned(&[("kind", kind)]),
        }
    }
}

/// One kind's scrape counters, held by each of its tasks.
#[derive(Debug, Clone)]
pub(crate) struct KindMetrics {
    /// By [`Outcome`], in the order it is declared.
    outcomes: [Counter; 4],
    duration: Histogram,
}

impl KindMetrics {
    /// One scrape ended with `outcome` after `took`.
    pub(crate) fn scraped(&self, outcome: Outcome, took: Duration) {
        self.outcomes[outcome as usize].inc();
        self.duration.observe(took.as_secs_f64());
    }
}

/// The collector's registry: the scrape counters, and what the follower and the sink count, read at each scrape.
pub(crate) fn registry(scrapes: &ScrapeMetrics, follower: &FollowerHandle, sinks: Vec<SinkView>) -> Registry {
    let mut registry = Registry::with_prefix("roster_collector");
    registry.register(
        "scrapes",
        "Scrapes of producers, by producer kind and outcome (success, error, timeout, own_stall: cut because this \
         collector was not running)",
        scrapes.scrapes.clone(),
    );
    registry.register_with_unit(
        "scrape_duration",
        "Time one scrape took, by producer kind",
        Unit::Seconds,
        scrapes.durations.clone(),
    );
    registry.register_collector(Box::new(Observed { follower: follower.clone(), sinks }));
    registry
}

/// What is read at scrape time.
#[derive(Debug)]
struct Observed {
    follower: FollowerHandle,
    sinks: Vec<SinkView>,
}

/// Encodes one gauge without labels.
fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Encodes one counter without labels (`_total` is appended).
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = self.follower.stats.snapshot();
        let applied = self.follower.applied.borrow().clone();
        let (generation, producers) = applied.map_or((0, 0), |s| (s.generation, s.targets.len() as u64));
        gauge(
            &mut encoder,
            "applied_generation",
            "Generation of the snapshot in force (0 before the first).",
            as_i64(generation),
        )?;
        gauge(&mut encoder, "applied_producers", "Producers in the snapshot in force.", as_i64(producers))?;
        gauge(&mut encoder, "feed_connected", "1 while a feed stream is open, else 0.", i64::from(stats.connected))?;
        counter(&mut encoder, "feed_reconnects", "Feed connection attempts after the first.", stats.reconnects)?;
        {
            let mut metric = encoder.encode_descriptor(
                "snapshot_discards",
                "Snapshots discarded or refused, by reason: the last known set stayed in force.",
                None,
                MetricType::Counter,
            )?;
            for reason in DiscardReason::ALL.map(DiscardReason::as_str) {
                let count = stats.discards.get(reason).copied().unwrap_or(0);
                ConstCounter::new(count).encode(metric.encode_family(&[("reason", reason)])?)?;
            }
        }
        counter(
            &mut encoder,
            "persist_failures",
            "Failed saves of the applied snapshot to the state file.",
            stats.persist_failures,
        )?;
        counter(
            &mut encoder,
            "report_failures",
            "Reports of an applied generation that failed after all their attempts; each is sent again on the next \
             feed stream or heartbeat.",
            stats.report_failures,
        )?;
        per_sink(
            &mut encoder,
            "sink_queue_batches",
            "Batches of samples waiting in a destination's queue (bounded; a batch that finds it full is dropped).",
            MetricType::Gauge,
            &self.sinks,
            |s| s.stats.queued.load(Ordering::Relaxed),
        )?;
        per_sink(
            &mut encoder,
            "sink_samples_written",
            "Samples a destination took: written to its file, or appended to its disk queue.",
            MetricType::Counter,
            &self.sinks,
            |s| s.stats.written.load(Ordering::Relaxed),
        )?;
        per_sink(
            &mut encoder,
            "sink_samples_dropped",
            "Samples dropped before a destination took them: its queue was full, or the write failed.",
            MetricType::Counter,
            &self.sinks,
            |s| s.stats.dropped.load(Ordering::Relaxed),
        )?;
        self.encode_remote_write(&mut encoder)
    }
}

/// One figure of every remote-write receiver: name, help, type, and how it is read (given the time, Unix ms).
type ReceiverFigure = (&'static str, &'static str, MetricType, fn(&RemoteWriteStats, u128) -> u64);

impl Observed {
    /// Each remote-write receiver's figures, labelled with its URL.
    fn encode_remote_write(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let receivers: Vec<(&str, &RemoteWriteStats)> =
            self.sinks.iter().filter_map(|s| Some((s.destination.as_str(), s.remote.as_deref()?))).collect();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let figures: [ReceiverFigure; 6] = [
            ("remote_write_samples_sent", "Samples a receiver acknowledged (2xx).", MetricType::Counter, |r, _| {
                r.samples_sent.load(Ordering::Relaxed)
            }),
            (
                "remote_write_requests_retried",
                "Requests sent again after a 5xx, a 429, a timeout or a network error.",
                MetricType::Counter,
                |r, _| r.requests_retried.load(Ordering::Relaxed),
            ),
            ("remote_write_queue_bytes", "Bytes of a receiver's disk queue.", MetricType::Gauge, |r, _| {
                r.queue.bytes.load(Ordering::Relaxed)
            }),
            (
                "remote_write_queue_samples",
                "Samples waiting in a receiver's disk queue (not yet acknowledged).",
                MetricType::Gauge,
                |r, _| r.queue.samples.load(Ordering::Relaxed),
            ),
            (
                "remote_write_oldest_queued_sample_age_seconds",
                "Age of the oldest sample waiting in a receiver's disk queue; 0 when it is empty.",
                MetricType::Gauge,
                |r, now_ms| match u128::try_from(r.queue.oldest_sample_ms.load(Ordering::Relaxed)) {
                    Ok(oldest) if oldest > 0 => u64::try_from(now_ms.saturating_sub(oldest) / 1000).unwrap_or(u64::MAX),
                    _ => 0,
                },
            ),
            (
                "remote_write_healthy",
                "1 while a receiver's last request succeeded (or none was made yet), else 0.",
                MetricType::Gauge,
                |r, _| u64::from(r.healthy()),
            ),
        ];
        for (name, help, metric_type, value) in figures {
            let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (receiver, stats) in &receivers {
                let labels = [("receiver", *receiver)];
                let family = metric.encode_family(&labels)?;
                match metric_type {
                    MetricType::Counter => ConstCounter::new(value(stats, now_ms)).encode(family)?,
                    _ => ConstGauge::new(as_i64(value(stats, now_ms))).encode(family)?,
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "remote_write_samples_discarded",
            "Samples given up, by receiver and reason: the receiver's refusal (4xx, never retried), or the disk \
             queue's bounds (queue full, too old) and damage.",
            None,
            MetricType::Counter,
        )?;
        for (receiver, stats) in &receivers {
            for (reason, count) in stats.dropped() {
                let labels = [("receiver", *receiver), ("reason", reason.as_str())];
                let family = metric.encode_family(&labels)?;
                ConstCounter::new(count).encode(family)?;
            }
        }
        Ok(())
    }
}

/// Encodes one value per destination, labelled with its kind and where it writes.
fn per_sink(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    sinks: &[SinkView],
    value: impl Fn(&SinkView) -> u64,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for sink in sinks {
        let labels = [("kind", sink.kind), ("destination", sink.destination.as_str())];
        let family = metric.encode_family(&labels)?;
        match metric_type {
            MetricType::Counter => ConstCounter::new(value(sink)).encode(family)?,
            _ => ConstGauge::new(as_i64(value(sink))).encode(family)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use roster::{
        domain::CollectorId,
        follower::{Follower, FollowerConfig},
    };

    use super::*;

    #[test]
    fn scrapes_are_counted_by_kind_and_outcome_and_the_rest_is_read_where_it_is_kept() {
        let (_follower, handle) =
            Follower::new(FollowerConfig::new(vec!["http://127.0.0.1:9".parse().unwrap()], CollectorId::new_random()))
                .unwrap();
        let sink =
            SinkView { kind: "jsonl", destination: "/tmp/s.jsonl".into(), stats: Default::default(), remote: None };
        sink.stats.written.store(7, Ordering::Relaxed);
        let remote = RemoteWriteStats::new(Default::default());
        remote.samples_sent.store(5, Ordering::Relaxed);
        remote.queue.samples.store(3, Ordering::Relaxed);
        remote.queue.dropped_too_old.store(2, Ordering::Relaxed);
        remote.refused_for(4, "400 out of bounds");
        let receiver = "http://tsdb:9090/api/v1/write";
        let remote_view = SinkView {
            kind: "remote-write",
            destination: receiver.into(),
            stats: Default::default(),
            remote: Some(remote),
        };
        let scrapes = ScrapeMetrics::default();
        let registry = registry(&scrapes, &handle, vec![sink, remote_view]);
        let grpc = scrapes.for_kind(ProducerKind::Grpc);
        grpc.scraped(Outcome::of::<(), (), ()>(&Ok(Ok(())), false), Duration::from_millis(2));
        grpc.scraped(Outcome::of::<(), (), ()>(&Ok(Ok(())), true), Duration::from_millis(2));
        grpc.scraped(Outcome::of::<(), (), ()>(&Ok(Err(())), false), Duration::from_millis(2));
        grpc.scraped(Outcome::of::<(), (), ()>(&Err(()), false), Duration::from_millis(800));
        grpc.scraped(Outcome::of::<(), (), ()>(&Err(()), true), Duration::from_secs(3));

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "roster_collector_scrapes_total{kind=\"grpc\",outcome=\"success\"} 2",
            "roster_collector_scrapes_total{kind=\"grpc\",outcome=\"error\"} 1",
            "roster_collector_scrapes_total{kind=\"grpc\",outcome=\"timeout\"} 1",
            "roster_collector_scrapes_total{kind=\"grpc\",outcome=\"own_stall\"} 1",
            "# TYPE roster_collector_scrape_duration_seconds histogram",
            "roster_collector_scrape_duration_seconds_count{kind=\"grpc\"} 5",
            "roster_collector_applied_generation 0",
            "roster_collector_feed_connected 0",
            "roster_collector_feed_reconnects_total 0",
            "roster_collector_snapshot_discards_total{reason=\"digest_mismatch\"} 0",
            "roster_collector_sink_queue_batches{kind=\"jsonl\",destination=\"/tmp/s.jsonl\"} 0",
            "roster_collector_sink_samples_written_total{kind=\"jsonl\",destination=\"/tmp/s.jsonl\"} 7",
            "roster_collector_sink_samples_dropped_total{kind=\"jsonl\",destination=\"/tmp/s.jsonl\"} 0",
            &format!("roster_collector_remote_write_samples_sent_total{{receiver=\"{receiver}\"}} 5"),
            &format!("roster_collector_remote_write_queue_samples{{receiver=\"{receiver}\"}} 3"),
            &format!("roster_collector_remote_write_oldest_queued_sample_age_seconds{{receiver=\"{receiver}\"}} 0"),
            &format!("roster_collector_remote_write_healthy{{receiver=\"{receiver}\"}} 1"),
            &format!(
                "roster_collector_remote_write_samples_discarded_total{{receiver=\"{receiver}\",reason=\"400 out of bounds\"}} 4"
            ),
            &format!(
                "roster_collector_remote_write_samples_discarded_total{{receiver=\"{receiver}\",reason=\"too old\"}} 2"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
