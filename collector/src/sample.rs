//! One collected sample: what a scraper makes of a producer's answer, what the sink queues and what an exporter
//! writes. Protocol-neutral, so that every scraper feeds every exporter.

use std::collections::BTreeMap;

/// One sample, with its producer's labels already applied.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When it was observed (Unix ms).
    pub(crate) time_ms: u64,
    /// The producer it came from.
    pub(crate) producer_id: String,
    /// Metric name.
    pub(crate) name: String,
    /// Labels, ordered by name.
    pub(crate) labels: BTreeMap<String, String>,
    /// Value.
    pub(crate) value: f64,
}
