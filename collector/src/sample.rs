//! One collected sample: what a scraper makes of a producer's answer, what the sink queues and what an exporter
//! writes. Protocol-neutral, so that every scraper feeds every exporter.
//!
//! Values are any `f64`, non-finite ones included, and one NaN among them is special: Prometheus's staleness
//! marker ([`STALE_NAN_BITS`]), which says "this series ended here". It is told apart by its bits only
//! ([`is_stale`]), never by `is_nan`, and exporters must keep it apart from an ordinary NaN. (No producer can
//! write one: the parser gives every NaN of a body other bits, [`NORMAL_NAN`](crate::exposition::NORMAL_NAN).)

use std::collections::BTreeMap;

/// The bits of Prometheus's staleness marker, `StaleNaN` (prometheus/prometheus `model/value/value.go`): a
/// signalling NaN that no arithmetic produces.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub(crate) fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `value` is the staleness marker (by its bits: every other NaN is an ordinary value).
pub(crate) fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One sample, with its producer's labels already applied.
#[derive(Debug, Clone, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staleness_marker_is_told_apart_from_every_other_nan_by_its_bits() {
        assert!(is_stale(stale_nan()));
        assert!(stale_nan().is_nan());
        for other in [f64::NAN, f64::from_bits(crate::exposition::NORMAL_NAN), -f64::NAN, f64::INFINITY, 0.0] {
            assert!(!is_stale(other), "{:#x}", other.to_bits());
        }
        // Moved through a Vec and a clone, the bits stay.
        let kept = [stale_nan()].to_vec();
        assert_eq!(kept.clone()[0].to_bits(), STALE_NAN_BITS);
    }
}
