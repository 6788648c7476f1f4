//! One collected sample: what a scraper makes of a producer's answer, what the sink queues and what an exporter
//! writes. Protocol-neutral, so that every scraper feeds every exporter.
//!
//! Values are any `f64`, non-finite ones included, and one NaN among them is special: Prometheus's staleness
//! marker ([`STALE_NAN_BITS`]), which says "this series ended here". It is told apart by its bits only
//! ([`is_stale`]), never by `is_nan`, and exporters must keep it apart from an ordinary NaN. (No producer can
//! write one: the parser gives every NaN of a body other bits, [`NORMAL_NAN`](crate::exposition::NORMAL_NAN).)
//!
//! Samples are many (a collector writes hundreds of thousands a second) and their strings repeat: every sample
//! of a producer has its id, and every scrape of a series has its name and labels. So those are shared, not
//! copied: [`Sample::producer_id`] and [`Sample::name`] are `Arc<str>`, and [`Sample::labels`] is a [`Labels`],
//! one shared slice of pairs. A scraper keeps the name and labels of the series it has seen and hands out clones
//! of them (a reference count each), and a sample costs no allocation of its own.

use std::sync::Arc;

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
    /// The producer it came from (shared by all its samples).
    pub(crate) producer_id: Arc<str>,
    /// Metric name (shared by the samples of its series).
    pub(crate) name: Arc<str>,
    /// Labels (shared by the samples of its series).
    pub(crate) labels: Labels,
    /// Value.
    pub(crate) value: f64,
}

/// A series' labels: `(name, value)` pairs, **ordered by name, each name once**, as [`Labels::iter`] gives them.
/// Every way of making one keeps that invariant. Cheap to clone (the pairs are shared), compared by content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Labels(Arc<[(Box<str>, Box<str>)]>);

impl Labels {
    /// Labels of `pairs`, already ordered by name, each name once (debug builds check it).
    pub(crate) fn from_sorted<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Self {
        let labels = Self(pairs.map(|(name, value)| (name.into(), value.into())).collect());
        debug_assert!(labels.0.windows(2).all(|w| w[0].0 < w[1].0), "{labels:?}");
        labels
    }

    /// The pairs, ordered by name.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(name, value)| (&**name, &**value))
    }
}

/// Labels of pairs in any order; of a name given twice, the last value stands (as in a map).
impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        // Stable: of equal names the last one given is the last one here, and it is the one kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match kept.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => kept.push(pair),
            }
        }
        Self(kept.into())
    }
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
