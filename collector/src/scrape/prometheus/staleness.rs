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
//! A sample, a marker or a report series (`up` and the four others) is written only when it is newer than the last
//! one written of its series (a wall clock stepped back makes the scrape's time go back too), and, with a timestamp of its
//! own, at most [`OLDEST_OWN_TIME_MS`] older than the scrape: the checks Prometheus's head makes at ingestion
//! (`storage.ErrOutOfOrderSample`, `ErrDuplicateSampleForTimestamp`, `ErrOutOfBounds`), where 2.42 drops such a
//! sample, counts it and keeps the rest of the scrape. Here they matter more: a remote-write receiver such as
//! Prometheus refuses the *whole* request that holds one such sample (400, which is not retried), with every other
//! series of every target that shared it. The dropped samples are counted ([`Dropped`]) and logged per scrape.
//!
//! Series are told apart by a 64-bit hash of their name and final labels ([`series_hash`]), as Prometheus tells
//! them apart by a 64-bit hash of their label set.

use std::{collections::hash_map::Entry, sync::Arc};

use xxhash_rust::xxh3::xxh3_64;

use crate::{
    defaults,
    sample::{Labels, Sample, stale_nan},
};

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

/// How much older than the scrape a sample's own timestamp may be: what Prometheus's head takes
/// ([`defaults::PROMETHEUS_OLDEST_SAMPLE`]).
pub(crate) const OLDEST_OWN_TIME_MS: u64 = defaults::PROMETHEUS_OLDEST_SAMPLE.as_millis() as u64;

/// The samples of a scrape (its report series included) that were not written, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Not newer than the last sample written of their series (a timestamp repeated or going back).
    pub(crate) out_of_order: usize,
    /// With a timestamp of their own older than [`OLDEST_OWN_TIME_MS`] before the scrape.
    pub(crate) out_of_bounds: usize,
    /// Exposed by the target as one of the scrape's own report series (`up` and the four others, with no label of
    /// their own): the report's sample of that series, at the same time, is the one written.
    pub(crate) report_series: usize,
}

/// A series seen before: its name and labels, which the samples of its next scrapes share.
#[derive(Debug)]
struct Known {
    name: Arc<str>,
    labels: Labels,
    /// The time of its last sample written (0 before any).
    last_ms: u64,
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
    /// The time the report series were last written at (0 before any).
    report_last_ms: u64,
}

impl Tracker {
    /// Nothing seen yet, for the producer `producer_id`.
    pub(crate) fn new(producer_id: Arc<str>) -> Self {
        Self { producer_id, known: foldhash::HashMap::default(), scrapes: 0, report_labels: None, report_last_ms: 0 }
    }

    /// Whether the report series may be written at `at_ms`, newer than when they last were; if so, that is now
    /// `at_ms`.
    pub(crate) fn report_at(&mut self, at_ms: u64) -> bool {
        let newer = at_ms > self.report_last_ms;
        if newer {
            self.report_last_ms = at_ms;
        }
        newer
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

    /// After a successful scrape at `at_ms`: its samples that may be written (see the module's doc), followed by
    /// markers for the series it lacks; how many of its series are new; and the samples dropped. The series are kept
    /// in place: those of this scrape are marked with its number, and those left unmarked are ended and forgotten.
    pub(crate) fn scraped(&mut self, at_ms: u64, scraped: Vec<Scraped>) -> (Vec<Sample>, usize, Dropped) {
        self.scrapes += 1;
        let this = self.scrapes;
        let mut samples = Vec::with_capacity(scraped.len() + self.known.len().saturating_sub(scraped.len()));
        let (mut added, mut dropped) = (0, Dropped::default());
        for Scraped { sample, hash, own_time } in scraped {
            let known = match self.known.entry(hash) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(vacant) => {
                    added += 1;
                    let (name, labels) = (sample.name.clone(), sample.labels.clone());
                    vacant.insert(Known { name, labels, last_ms: 0, open: false, seen: this })
                }
            };
            known.open = !own_time;
            known.seen = this;
            if own_time && sample.time_ms.saturating_add(OLDEST_OWN_TIME_MS) < at_ms {
                dropped.out_of_bounds += 1;
            } else if sample.time_ms <= known.last_ms {
                dropped.out_of_order += 1;
            } else {
                known.last_ms = sample.time_ms;
                samples.push(sample);
            }
        }
        let producer_id = &self.producer_id;
        self.known.retain(|_, known| {
            // Seen now; or gone, but with a sample not older than this scrape (the wall clock stepped back): kept,
            // so that its next sample, or its marker, is not written at or before that one.
            if known.seen == this || at_ms <= known.last_ms {
                return true;
            }
            if known.open {
                samples.push(marker(producer_id, known.name.clone(), known.labels.clone(), at_ms));
            }
            false
        });
        (samples, added, dropped)
    }

    /// After a failed scrape at `at_ms`: markers for every series not yet ended, which are then ended.
    pub(crate) fn failed(&mut self, at_ms: u64) -> Vec<Sample> {
        let mut markers = Vec::new();
        for known in self.known.values_mut().filter(|k| k.open) {
            known.open = false;
            if at_ms > known.last_ms {
                known.last_ms = at_ms;
                markers.push(marker(&self.producer_id, known.name.clone(), known.labels.clone(), at_ms));
            }
        }
        markers
    }

    /// The target has left the assignment: markers at `at_ms` for every series not yet ended, and nothing kept.
    pub(crate) fn retire(&mut self, at_ms: u64) -> Vec<Sample> {
        let known = std::mem::take(&mut self.known);
        known
            .into_values()
            .filter(|k| k.open && at_ms > k.last_ms)
            .map(|k| marker(&self.producer_id, k.name, k.labels, at_ms))
            .collect()
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

    /// A sample of series `name` scraped at `at`, or at its `own_time`.
    fn scraped(at: u64, name: &str, value: f64, own_time: Option<u64>) -> Scraped {
        let labels: Labels = [("job", "j")].into_iter().collect();
        Scraped {
            hash: series_hash(&mut Vec::new(), name, labels.iter()),
            sample: Sample {
                time_ms: own_time.unwrap_or(at),
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
        let (first, added, _) =
            tracker.scraped(1_000, vec![scraped(1_000, "a", 1.0, None), scraped(1_000, "b", 2.0, None)]);
        assert_eq!((first.len(), added), (2, 2));
        let (second, added, _) =
            tracker.scraped(2_000, vec![scraped(2_000, "a", 1.0, None), scraped(2_000, "c", 3.0, None)]);
        assert_eq!(added, 1, "c is new");
        assert_eq!(
            shown(&second),
            [("a".into(), false, 2_000), ("b".into(), true, 2_000), ("c".into(), false, 2_000)],
            "b ended at the second scrape"
        );
        let (third, added, _) =
            tracker.scraped(3_000, vec![scraped(3_000, "a", 1.0, None), scraped(3_000, "c", 3.0, None)]);
        assert_eq!((shown(&third).iter().filter(|s| s.1).count(), added), (0, 0), "b is not ended twice");
    }

    #[test]
    fn a_failed_scrape_ends_every_series_once_and_a_timestamped_series_never_gets_a_marker() {
        let mut tracker = Tracker::new("p".into());
        tracker.scraped(1_000, vec![scraped(1_000, "a", 1.0, None), scraped(1_000, "t", 1.0, Some(500))]);
        assert_eq!(shown(&tracker.failed(2_000)), [("a".into(), true, 2_000)]);
        assert!(tracker.failed(3_000).is_empty(), "a second failure writes nothing");
        // Back: the series are not new (the cache keeps them), and nothing is ended again.
        let (back, added, _) = tracker.scraped(4_000, vec![scraped(4_000, "a", 1.0, None)]);
        assert_eq!((shown(&back), added), (vec![("a".into(), false, 4_000)], 0));
        assert_eq!(shown(&tracker.retire(5_000)), [("a".into(), true, 5_000)]);
        assert!(tracker.retire(6_000).is_empty());
    }

    /// What Prometheus's head refuses at ingestion is not written (a remote-write receiver would refuse the whole
    /// request that held it): a timestamp repeated or going back, and one more than an hour before the scrape. The
    /// rest of the scrape is written.
    #[test]
    fn samples_not_newer_than_their_series_or_an_hour_old_are_dropped_and_counted() {
        let mut tracker = Tracker::new("p".into());
        let at = 10 * OLDEST_OWN_TIME_MS;
        let (first, _, dropped) = tracker.scraped(
            at,
            vec![
                scraped(at, "a", 1.0, None),
                scraped(at, "t", 1.0, Some(at - 500)),
                scraped(at, "old", 1.0, Some(at - OLDEST_OWN_TIME_MS - 1)),
                scraped(at, "edge", 1.0, Some(at - OLDEST_OWN_TIME_MS)),
                scraped(at, "u", 1.0, Some(at - 100)),
            ],
        );
        assert_eq!(dropped, Dropped { out_of_order: 0, out_of_bounds: 1, report_series: 0 });
        assert_eq!(
            shown(&first),
            [
                ("a".into(), false, at),
                ("edge".into(), false, at - OLDEST_OWN_TIME_MS),
                ("t".into(), false, at - 500),
                ("u".into(), false, at - 100)
            ]
        );

        let next = at + 1_000;
        let (second, _, dropped) = tracker.scraped(
            next,
            vec![
                scraped(next, "a", 2.0, None),
                scraped(next, "t", 2.0, Some(at - 500)),
                scraped(next, "u", 2.0, Some(at - 200)),
                scraped(next, "edge", 2.0, Some(at - OLDEST_OWN_TIME_MS)),
                scraped(next, "old", 2.0, Some(next)),
            ],
        );
        assert_eq!(
            dropped,
            Dropped { out_of_order: 2, out_of_bounds: 1, report_series: 0 },
            "t repeated its time, u went back, edge is now over an hour old"
        );
        assert_eq!(shown(&second), [("a".into(), false, next), ("old".into(), false, next)]);

        // A wall clock stepped back: the scrape's own samples are not newer than what was written.
        let (back, _, dropped) = tracker.scraped(at, vec![scraped(at, "a", 3.0, None)]);
        assert_eq!(dropped.out_of_order, 1);
        assert!(back.iter().all(|s| s.name.as_ref() != "a" || is_stale(s.value)), "{:?}", shown(&back));
    }

    /// A wall clock stepped back: no marker is written at or before the last sample of its series, whether the
    /// series vanished, the scrape failed or the target left; the report series are not written twice at a time,
    /// nor back in time.
    #[test]
    fn no_marker_or_report_goes_back_in_time() {
        let mut tracker = Tracker::new("p".into());
        tracker.scraped(2_000, vec![scraped(2_000, "a", 1.0, None), scraped(2_000, "b", 1.0, None)]);
        assert!(tracker.report_at(2_000));
        let (back, _, dropped) = tracker.scraped(1_500, vec![scraped(1_500, "a", 2.0, None)]);
        assert_eq!((shown(&back), dropped.out_of_order), (vec![], 1), "neither a's sample nor b's marker");
        assert!(!tracker.report_at(1_500) && !tracker.report_at(2_000), "not back, not twice");
        // b, gone meanwhile, is back: it was kept, and its sample is still not newer than the one written.
        let (again, added, dropped) =
            tracker.scraped(1_800, vec![scraped(1_800, "a", 3.0, None), scraped(1_800, "b", 3.0, None)]);
        assert_eq!((shown(&again), added, dropped.out_of_order), (vec![], 0, 2));
        assert!(tracker.failed(1_900).is_empty(), "a's and b's markers would precede their last samples");
        assert!(!tracker.has_series_to_end(), "a is ended all the same");

        let mut tracker = Tracker::new("p".into());
        tracker.scraped(2_000, vec![scraped(2_000, "a", 1.0, None)]);
        assert!(tracker.retire(2_000).is_empty(), "a marker at its last sample's time would repeat it");
        let mut tracker = Tracker::new("p".into());
        tracker.scraped(2_000, vec![scraped(2_000, "a", 1.0, None)]);
        assert_eq!(shown(&tracker.retire(2_001)), [("a".into(), true, 2_001)]);
        assert!(tracker.report_at(2_001));
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
