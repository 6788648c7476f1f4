//! The series a Prometheus target showed, kept from one scrape to the next, and the staleness markers made from
//! them, as Prometheus 2.42 writes them (prometheus/prometheus `scrape/scrape.go`: `scrapeCache`,
//! `forEachStale`, `endOfRunStaleness`).
//!
//! A marker is a sample whose value is [`stale_nan`], written:
//! - at a successful scrape's time, for each series of the last successful scrape that this one lacks;
//! - at a failed scrape's time (the time of its `up` = 0), for every series not yet ended; a second failure in a
//!   row writes none;
//! - when the target leaves the assignment, for every series not yet ended ([`Tracker::retire`]).
//!
//! Only series exposed without a timestamp of their own get markers: one that carries its own time says when it
//! was true, and Prometheus leaves its end to that time.
//!
//! Series are told apart by a 64-bit hash of their name and final labels ([`series_hash`]), as Prometheus tells
//! them apart by a 64-bit hash of their label set.

use std::{collections::hash_map::Entry, sync::Arc};

use xxhash_rust::xxh3::xxh3_64;

use crate::sample::{Labels, Sample, stale_nan};

/// A sample of a successful scrape, as the tracker needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scraped {
    /// The sample, with its final labels.
    pub(crate) sample: Sample,
    /// [`series_hash`] of it.
    pub(crate) hash: u64,
    /// Whether the target gave its timestamp (then it gets no staleness marker).
    pub(crate) own_time: bool,
}

/// The hash that identifies a series: its name and labels, ordered by name, laid out in `key` (a buffer kept
/// from one series to the next) and hashed at once. (UTF-8 never holds the bytes 0xfe and 0xff, so the
/// separators make it unambiguous.)
pub(crate) fn series_hash<'a>(key: &mut Vec<u8>, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    key.clear();
    key.extend_from_slice(name.as_bytes());
    for (label, value) in labels {
        key.push(0xff);
        key.extend_from_slice(label.as_bytes());
        key.push(0xfe);
        key.extend_from_slice(value.as_bytes());
    }
    xxh3_64(key)
}

/// A series seen before: its name and labels, which the samples of its next scrapes share.
#[derive(Debug)]
struct Known {
    name: Arc<str>,
    labels: Labels,
    /// Whether it gets a marker when it ends: seen without a timestamp of its own, and not ended yet.
    open: bool,
    /// The number of the successful scrape that last had it.
    seen: u64,
}

/// The series of one target, from its last successful scrape, and the labels its report series were last
/// written with.
#[derive(Debug)]
pub(crate) struct Tracker {
    producer_id: Arc<str>,
    known: foldhash::HashMap<u64, Known>,
    /// Successful scrapes so far.
    scrapes: u64,
    report_labels: Option<Labels>,
}

impl Tracker {
    /// Nothing seen yet, for the producer `producer_id`.
    pub(crate) fn new(producer_id: Arc<str>) -> Self {
        Self { producer_id, known: foldhash::HashMap::default(), scrapes: 0, report_labels: None }
    }

    /// The name and labels of the series with `hash`, if the last successful scrape had it: a new sample of it
    /// shares them.
    pub(crate) fn series(&self, hash: u64) -> Option<(&Arc<str>, &Labels)> {
        self.known.get(&hash).map(|known| (&known.name, &known.labels))
    }

    /// The report series are written with `labels`: the labels they were written with before, if others (those
    /// series end).
    pub(crate) fn report_labels(&mut self, labels: &Labels) -> Option<Labels> {
        match &self.report_labels {
            Some(before) if before == labels => None,
            _ => self.report_labels.replace(labels.clone()),
        }
    }

    /// Whether any series (report series included) is written and not ended.
    pub(crate) fn has_series_to_end(&self) -> bool {
        self.report_labels.is_some() || self.known.values().any(|k| k.open)
    }

    /// The labels the report series were written with, if they were, which then end.
    pub(crate) fn take_report_labels(&mut self) -> Option<Labels> {
        self.report_labels.take()
    }

    /// After a successful scrape at `at_ms`: its samples, followed by markers for the series it lacks; and how
    /// many of its series are new. The series are kept in place: those of this scrape are marked with its number,
    /// and those left unmarked are ended and forgotten.
    pub(crate) fn scraped(&mut self, at_ms: u64, scraped: Vec<Scraped>) -> (Vec<Sample>, usize) {
        self.scrapes += 1;
        let this = self.scrapes;
        let mut samples = Vec::with_capacity(scraped.len() + self.known.len().saturating_sub(scraped.len()));
        let mut added = 0;
        for Scraped { sample, hash, own_time } in scraped {
            match self.known.entry(hash) {
                Entry::Occupied(mut known) => {
                    let known = known.get_mut();
                    known.open = !own_time;
                    known.seen = this;
                }
                Entry::Vacant(vacant) => {
                    added += 1;
                    let (name, labels) = (sample.name.clone(), sample.labels.clone());
                    vacant.insert(Known { name, labels, open: !own_time, seen: this });
                }
            }
            samples.push(sample);
        }
        let producer_id = &self.producer_id;
        self.known.retain(|_, known| {
            if known.seen == this {
                return true;
            }
            if known.open {
                samples.push(marker(producer_id, known.name.clone(), known.labels.clone(), at_ms));
            }
            false
        });
        (samples, added)
    }

    /// After a failed scrape at `at_ms`: markers for every series not yet ended, which are then ended.
    pub(crate) fn failed(&mut self, at_ms: u64) -> Vec<Sample> {
        let mut markers = Vec::new();
        for known in self.known.values_mut().filter(|k| k.open) {
            known.open = false;
            markers.push(marker(&self.producer_id, known.name.clone(), known.labels.clone(), at_ms));
        }
        markers
    }

    /// The target has left the assignment: markers at `at_ms` for every series not yet ended, and nothing kept.
    pub(crate) fn retire(&mut self, at_ms: u64) -> Vec<Sample> {
        let known = std::mem::take(&mut self.known);
        known.into_values().filter(|k| k.open).map(|k| marker(&self.producer_id, k.name, k.labels, at_ms)).collect()
    }
}

/// The staleness marker of a series at `at_ms`.
fn marker(producer_id: &Arc<str>, name: Arc<str>, labels: Labels, at_ms: u64) -> Sample {
    Sample { time_ms: at_ms, producer_id: producer_id.clone(), name, labels, value: stale_nan() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::is_stale;

    fn scraped(name: &str, value: f64, own_time: Option<u64>) -> Scraped {
        let labels: Labels = [("job", "j")].into_iter().collect();
        Scraped {
            hash: series_hash(&mut Vec::new(), name, labels.iter()),
            sample: Sample {
                time_ms: own_time.unwrap_or(1_000),
                producer_id: "p".into(),
                name: name.into(),
                labels,
                value,
            },
            own_time: own_time.is_some(),
        }
    }

    /// (name, value is a marker, time) of each sample, sorted.
    fn shown(samples: &[Sample]) -> Vec<(String, bool, u64)> {
        let mut shown: Vec<_> = samples.iter().map(|s| (s.name.to_string(), is_stale(s.value), s.time_ms)).collect();
        shown.sort();
        shown
    }

    #[test]
    fn a_series_that_vanishes_between_successful_scrapes_gets_one_marker_at_the_scrape_time() {
        let mut tracker = Tracker::new("p".into());
        let (first, added) = tracker.scraped(1_000, vec![scraped("a", 1.0, None), scraped("b", 2.0, None)]);
        assert_eq!((first.len(), added), (2, 2));
        let (second, added) = tracker.scraped(2_000, vec![scraped("a", 1.0, None), scraped("c", 3.0, None)]);
        assert_eq!(added, 1, "c is new");
        assert_eq!(
            shown(&second),
            [("a".into(), false, 1_000), ("b".into(), true, 2_000), ("c".into(), false, 1_000)],
            "b ended at the second scrape"
        );
        let (third, added) = tracker.scraped(3_000, vec![scraped("a", 1.0, None), scraped("c", 3.0, None)]);
        assert_eq!((shown(&third).iter().filter(|s| s.1).count(), added), (0, 0), "b is not ended twice");
    }

    #[test]
    fn a_failed_scrape_ends_every_series_once_and_a_timestamped_series_never_gets_a_marker() {
        let mut tracker = Tracker::new("p".into());
        tracker.scraped(1_000, vec![scraped("a", 1.0, None), scraped("t", 1.0, Some(500))]);
        assert_eq!(shown(&tracker.failed(2_000)), [("a".into(), true, 2_000)]);
        assert!(tracker.failed(3_000).is_empty(), "a second failure writes nothing");
        // Back: the series are not new (the cache keeps them), and nothing is ended again.
        let (back, added) = tracker.scraped(4_000, vec![scraped("a", 1.0, None)]);
        assert_eq!((shown(&back), added), (vec![("a".into(), false, 1_000)], 0));
        assert_eq!(shown(&tracker.retire(5_000)), [("a".into(), true, 5_000)]);
        assert!(tracker.retire(6_000).is_empty());
    }

    #[test]
    fn the_hash_tells_names_and_labels_apart() {
        let labels = |pairs: &[(&str, &str)]| -> Labels { pairs.iter().copied().collect() };
        let hashes = [
            series_hash(&mut Vec::new(), "a", labels(&[]).iter()),
            series_hash(&mut Vec::new(), "ab", labels(&[]).iter()),
            series_hash(&mut Vec::new(), "a", labels(&[("b", "")]).iter()),
            series_hash(&mut Vec::new(), "a", labels(&[("b", "c")]).iter()),
            series_hash(&mut Vec::new(), "a", labels(&[("bc", "")]).iter()),
            series_hash(&mut Vec::new(), "a", labels(&[("b", "c"), ("d", "e")]).iter()),
            series_hash(&mut Vec::new(), "a", labels(&[("b", "cd"), ("", "e")]).iter()),
        ];
        let unique: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(unique.len(), hashes.len());
    }
}
