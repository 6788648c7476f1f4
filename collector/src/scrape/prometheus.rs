//! The scraper of Prometheus HTTP targets (text format 0.0.4 and OpenMetrics 1.0), faithful to Prometheus 2.42's
//! scrape loop (`scrapeLoop` in prometheus/prometheus `scrape/scrape.go`) except where this says otherwise.
//!
//! | part | module |
//! |---|---|
//! | the `GET`: headers, status, gzip, body limit | [`http`] |
//! | target labels, `exported_` renaming | [`labels`] |
//! | series kept between scrapes, staleness markers | [`staleness`] |
//! | the body's format and parse | [`crate::exposition`] |
//!
//! Each scrape writes the target's samples (with the target labels, their own timestamps kept, the others at the
//! tick's time), staleness markers, and five report series at the tick's time, labelled with the target labels
//! alone: `up` (1 only when everything succeeded), `scrape_duration_seconds` (request, read and parse),
//! `scrape_samples_scraped` and `scrape_samples_post_metric_relabeling` (the samples of the body: roster does
//! not relabel; 0 for a failed scrape), and `scrape_series_added` (series not in the series kept so far).
//!
//! All or nothing: a scrape that fails anywhere (request, status, body limit, gzip, content type, parse, a
//! duplicate series) writes none of the body's samples, only `up` = 0, the other report series and the markers of
//! every series not yet ended. Where 2.42 differs:
//! - **A duplicate series** (the same series and timestamp twice in one body) fails the scrape here, with the
//!   reason `duplicate_series`; 2.42 keeps the first value, drops the second and reports `up` = 1. The format
//!   calls such a body's ingestion undefined, and a silent choice hides a broken exporter.
//! - **Redirects** are not followed: a 3xx fails as any status but 200 does.
//! - **https** verifies targets against the system's CA certificates only (no per-target CA, client
//!   certificate or `insecure_skip_verify`).
//! - The report series of a failed scrape count 0 samples, where 2.42 counts the lines parsed before the error.

pub(crate) mod http;
pub(crate) mod labels;
pub(crate) mod staleness;
#[cfg(test)]
pub(crate) mod test_target;

use std::{collections::HashSet, fmt::Write as _, sync::Arc, time::Duration};

use ::http::Uri;
use roster::domain::{PrometheusTarget, Target};
use tracing::warn;

pub(crate) use self::http::HttpClient;
use self::{
    labels::TargetLabels,
    staleness::{Dropped, Scraped, Tracker, series_hash},
};
use super::{ScrapeError, Scraper};
use crate::{
    exposition::{self, Format, Parsed},
    sample::{Labels, Sample, stale_nan},
};

/// The report series, in Prometheus's order.
const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Scrapes one Prometheus target.
#[derive(Debug)]
pub(crate) struct PrometheusScraper {
    http: HttpClient,
    uri: Uri,
    timeout: Duration,
    producer_id: Arc<str>,
    labels: TargetLabels,
    /// The names of [`REPORT`], shared by the report samples.
    report_names: [Arc<str>; 5],
    /// The [`series_hash`] of each report series: a scraped series that is one of them (a target exposing `up`
    /// without labels of its own) is dropped, as it would be a second sample of that series at the scrape's time.
    report_hashes: [u64; 5],
    tracker: Tracker,
}

/// A target's URL is not one (an address a server accepted long ago, under older rules).
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a URL")]
struct NotAUrl(String, #[source] ::http::uri::InvalidUri);

impl PrometheusScraper {
    /// A scraper of `target`, served as `prometheus` says, through `http`, each scrape within `timeout` (which
    /// the target is told), going on from the series `handed` over by the scraper it replaces, if any.
    ///
    /// # Errors
    /// [`ScrapeError::BadAddress`] when its URL does not parse.
    pub(crate) fn new(
        target: &Target,
        prometheus: &PrometheusTarget,
        http: &HttpClient,
        timeout: Duration,
        handed: Option<Tracker>,
    ) -> Result<Self, ScrapeError> {
        let url = prometheus.url(&target.address);
        let uri = url.parse::<Uri>().map_err(|e| ScrapeError::BadAddress(NotAUrl(url, e).into()))?;
        let producer_id: Arc<str> = target.id.to_string().into();
        let labels = TargetLabels::new(target);
        let report_hashes = {
            let (mut applied, mut key) = (Vec::new(), Vec::new());
            labels.apply(&[], &mut applied);
            REPORT.map(|name| series_hash(&mut key, name, applied.iter().map(|(label, value)| (&**label, *value))))
        };
        Ok(Self {
            http: http.clone(),
            uri,
            timeout,
            labels,
            report_names: REPORT.map(Arc::from),
            report_hashes,
            tracker: handed.unwrap_or_else(|| Tracker::new(producer_id.clone())),
            producer_id,
        })
    }

    /// The samples of a body in `format`, labelled, at `at_ms` unless they carry their own time. A series the
    /// last successful scrape had shares the name and labels kept for it: a sample allocates nothing of its own.
    fn samples(&self, body: &[u8], format: Format, at_ms: u64) -> Result<Vec<Scraped>, ScrapeError> {
        let parsed = exposition::parse(body, format).map_err(ScrapeError::Parse)?;
        // Series and timestamps seen, by the hash of the final series: the same exposed series twice has the same
        // hash, so only a repeated hash calls for the exact check (which compares the exposed label sets).
        let mut seen = HashSet::with_capacity_and_hasher(parsed.len(), foldhash::fast::RandomState::default());
        let mut repeated = false;
        let mut negative = None;
        let (mut labels, mut key) = (Vec::new(), Vec::new());
        let mut samples = Vec::with_capacity(parsed.len());
        for Parsed { name, labels: exposed, value, timestamp_ms } in &parsed {
            // A negative timestamp fails the scrape, after a duplicate would have (as the checks were ordered).
            let own_time = timestamp_ms.and_then(|ms| match u64::try_from(ms) {
                Ok(ms) => Some(ms),
                Err(_) => {
                    negative.get_or_insert(ms);
                    None
                }
            });
            self.labels.apply(exposed, &mut labels);
            let hash = series_hash(&mut key, name, labels.iter().map(|(label, value)| (&**label, *value)));
            repeated |= !seen.insert((hash, *timestamp_ms));
            let (name, labels) = match self.tracker.series(hash) {
                Some((name, labels)) => (name.clone(), labels.clone()),
                None => {
                    (Arc::from(&**name), Labels::from_sorted(labels.iter().map(|(label, value)| (&**label, *value))))
                }
            };
            samples.push(Scraped {
                hash,
                own_time: timestamp_ms.is_some(),
                sample: Sample {
                    time_ms: own_time.unwrap_or(at_ms),
                    producer_id: self.producer_id.clone(),
                    name,
                    labels,
                    value: *value,
                },
            });
        }
        if repeated && let Some(duplicate) = exposition::first_duplicate(&parsed) {
            return Err(ScrapeError::DuplicateSeries(series_text(duplicate)));
        }
        match negative {
            Some(ms) => Err(ScrapeError::NegativeTimestamp(ms)),
            None => Ok(samples),
        }
    }

    /// The five report series at `at_ms` with `labels`, with these values.
    fn report<'a>(&'a self, at_ms: u64, values: [f64; 5], labels: &'a Labels) -> impl Iterator<Item = Sample> + 'a {
        self.report_names.iter().zip(values).map(move |(name, value)| Sample {
            time_ms: at_ms,
            producer_id: self.producer_id.clone(),
            name: name.clone(),
            labels: labels.clone(),
            value,
        })
    }
}

/// A series as a body would write it, for the duplicate's error: `name{a="b"}`.
fn series_text(sample: &Parsed) -> String {
    let mut text = sample.name.to_string();
    if !sample.labels.is_empty() {
        text.push('{');
        for (i, (name, value)) in sample.labels.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(text, "{comma}{name}={value:?}");
        }
        text.push('}');
    }
    text
}

impl Scraper for PrometheusScraper {
    type Scraped = Vec<Scraped>;

    async fn scrape(&mut self, at_ms: u64) -> Result<Vec<Scraped>, ScrapeError> {
        let fetched = self.http.get(&self.uri, self.timeout).await?;
        let format = Format::from_content_type(fetched.content_type.as_deref()).map_err(ScrapeError::ContentType)?;
        self.samples(&fetched.body, format, at_ms)
    }

    fn conclude(&mut self, at_ms: u64, took: Duration, outcome: Result<Vec<Scraped>, &ScrapeError>) -> Vec<Sample> {
        let (mut samples, up, scraped, added, mut dropped) = match outcome {
            Ok(mut scraped) => {
                let count = scraped.len();
                scraped.retain(|s| !self.report_hashes.contains(&s.hash));
                let report_series = count - scraped.len();
                let (samples, added, mut dropped) = self.tracker.scraped(at_ms, scraped);
                dropped.report_series = report_series;
                (samples, 1.0, count, added, dropped)
            }
            Err(_) => (self.tracker.failed(at_ms), 0.0, 0, 0, Dropped::default()),
        };
        if self.tracker.report_at(at_ms) {
            // Report series written before under other target labels (the entry changed) end here.
            if let Some(before) = self.tracker.report_labels(self.labels.as_labels()) {
                samples.extend(self.report(at_ms, [stale_nan(); 5], &before));
            }
            let (scraped, added) = (scraped as f64, added as f64);
            let values = [up, took.as_secs_f64(), scraped, scraped, added];
            samples.extend(self.report(at_ms, values, self.labels.as_labels()));
        } else {
            // The wall clock went back: they would be out of order.
            dropped.out_of_order += self.report_names.len();
        }
        if dropped != Dropped::default() {
            // As Prometheus says it ("Error on ingesting out-of-order samples"): once per scrape, counted.
            warn!(
                producer.id = %self.producer_id,
                out_of_order = dropped.out_of_order,
                out_of_bounds = dropped.out_of_bounds,
                report_series = dropped.report_series,
                "samples dropped: not newer than the last of their series, timestamped over an hour before the \
                 scrape, or exposed as one of the scrape's own series (up, scrape_*) without other labels (a \
                 receiver would refuse them, and the other series sent with them)"
            );
        }
        samples
    }

    fn has_series_to_end(&self) -> bool {
        self.tracker.has_series_to_end()
    }

    fn retire(&mut self, at_ms: u64) -> Vec<Sample> {
        let mut samples = self.tracker.retire(at_ms);
        if let Some(labels) = self.tracker.take_report_labels()
            && self.tracker.report_at(at_ms)
        {
            samples.extend(self.report(at_ms, [stale_nan(); 5], &labels));
        }
        samples
    }

    fn hand_over(self) -> Option<Tracker> {
        Some(self.tracker)
    }
}

#[cfg(test)]
mod tests {
    use roster::{
        domain::{Collection, Labels, ProducerAddress, ProducerId},
        error_chain::chain,
    };

    use super::*;
    use crate::{
        sample::is_stale,
        scrape::prometheus::test_target::{Answer, TestTarget},
    };

    const AT: u64 = 1_700_000_000_000;

    /// A Prometheus-kind target at `addr` with `labels` (also for the tests of `labels`).
    pub(super) fn target(addr: &str, labels: &[(&str, &str)]) -> Target {
        Target {
            id: ProducerId::new_random(),
            address: ProducerAddress::parse_field("address", addr).unwrap(),
            interval: Duration::from_secs(1),
            labels: Labels::parse_field(
                "labels",
                labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            )
            .unwrap(),
            collection: Collection::Prometheus(PrometheusTarget::default()),
        }
    }

    fn scraper(target: &Target) -> PrometheusScraper {
        let Collection::Prometheus(prometheus) = &target.collection else { unreachable!() };
        PrometheusScraper::new(target, prometheus, &HttpClient::new(1 << 20), Duration::from_millis(800), None).unwrap()
    }

    /// One scrape at `at_ms`, concluded.
    async fn scrape(scraper: &mut PrometheusScraper, at_ms: u64) -> (Result<(), ScrapeError>, Vec<Sample>) {
        match scraper.scrape(at_ms).await {
            Ok(scraped) => (Ok(()), scraper.conclude(at_ms, Duration::from_millis(5), Ok(scraped))),
            Err(e) => {
                let written = scraper.conclude(at_ms, Duration::from_millis(5), Err(&e));
                (Err(e), written)
            }
        }
    }

    fn value(samples: &[Sample], name: &str) -> f64 {
        samples.iter().find(|s| &*s.name == name).unwrap_or_else(|| panic!("no {name} in {samples:?}")).value
    }

    fn stale_names(samples: &[Sample]) -> Vec<&str> {
        let mut names: Vec<&str> = samples.iter().filter(|s| is_stale(s.value)).map(|s| &*s.name).collect();
        names.sort_unstable();
        names
    }

    #[tokio::test]
    async fn a_scrape_writes_the_samples_with_the_target_labels_and_the_report_series() {
        let server = TestTarget::start(Answer::text(
            "# TYPE a counter\na_total{instance=\"spoofed\",mode=\"\"} 3\nb 1 1699999940000\nc NaN\n",
        ))
        .await;
        let target = target(&server.addr.to_string(), &[("job", "node")]);
        let mut scraper = scraper(&target);
        let (result, samples) = scrape(&mut scraper, AT).await;
        result.unwrap();
        let a = samples.iter().find(|s| &*s.name == "a_total").unwrap();
        let instance = server.addr.to_string();
        assert_eq!(
            a.labels,
            [("exported_instance", "spoofed"), ("instance", instance.as_str()), ("job", "node")].into_iter().collect()
        );
        assert_eq!((a.time_ms, a.value, a.producer_id.clone()), (AT, 3.0, target.id.to_string().into()));
        assert_eq!(samples.iter().find(|s| &*s.name == "b").unwrap().time_ms, 1_699_999_940_000, "its own time");
        assert_eq!(value(&samples, "c").to_bits(), exposition::NORMAL_NAN);
        let reports: Vec<&Sample> = samples.iter().filter(|s| REPORT.contains(&&*s.name)).collect();
        assert_eq!(reports.iter().map(|s| &*s.name).collect::<Vec<_>>(), REPORT);
        assert!(reports.iter().all(|s| s.time_ms == AT && s.labels == *scraper.labels.as_labels()));
        assert_eq!(value(&samples, "up"), 1.0);
        assert_eq!(value(&samples, "scrape_duration_seconds"), 0.005);
        assert_eq!(value(&samples, "scrape_samples_scraped"), 3.0);
        assert_eq!(value(&samples, "scrape_samples_post_metric_relabeling"), 3.0);
        assert_eq!(value(&samples, "scrape_series_added"), 3.0);
        let (_, again) = scrape(&mut scraper, AT + 1000).await;
        assert_eq!(value(&again, "scrape_series_added"), 0.0);
        let a_again = again.iter().find(|s| &*s.name == "a_total").unwrap();
        assert_eq!((&a_again.labels, a_again.value), (&a.labels, 3.0));
        assert!(Arc::ptr_eq(&a.name, &a_again.name), "a series seen before shares its strings");
    }

    /// Two exposed series that end up as one: not a duplicate series (the scrape succeeds, as in 2.42), but the
    /// second sample is one Prometheus's head refuses at ingestion (the same series and time, another value), so it
    /// is dropped: sent, it would have made a receiver refuse the whole request.
    #[tokio::test]
    async fn two_exposed_series_that_end_up_with_the_same_labels_are_no_duplicate_and_a_repeated_one_is() {
        // `{instance="a"}` is renamed to `exported_instance="a"`: the same labels as the second line's.
        let server = TestTarget::start(Answer::text("m{instance=\"a\"} 1\nm{exported_instance=\"a\"} 2\n")).await;
        let mut scraper = scraper(&target(&server.addr.to_string(), &[]));
        let (result, samples) = scrape(&mut scraper, AT).await;
        result.unwrap();
        let m: Vec<f64> = samples.iter().filter(|s| &*s.name == "m").map(|s| s.value).collect();
        assert_eq!(m, [1.0], "the first is written, the second dropped");
        assert_eq!(value(&samples, "scrape_samples_scraped"), 2.0, "both were scraped");
        server.set(Answer::text("m{b=\"1\",a=\"2\"} 1\nm{a=\"2\",b=\"1\"} 2\n"));
        let error = scrape(&mut scraper, AT + 1000).await.0.unwrap_err();
        assert_eq!(error.to_string(), "duplicate series m{a=\"2\",b=\"1\"}");
    }

    #[tokio::test]
    async fn every_failure_writes_up_0_and_ends_the_series_once_and_nothing_of_the_body() {
        let good = "a 1\nb 2 1699999940000\n";
        let server = TestTarget::start(Answer::text(good)).await;
        let target = target(&server.addr.to_string(), &[]);
        let mut scraper = scraper(&target);
        let failures: [(Answer, &str); 5] = [
            (Answer::ok("text/html; charset=utf-8", b"<html><body>hello</body></html>\n"), "parse"),
            (Answer::text("a 1\nz 3\na 1\n"), "duplicate_series"),
            (Answer::ok("text/plain", b"a{l=\"\xff\xfe\"} 1\n"), "parse"),
            (
                Answer::ok("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily", b""),
                "content_type",
            ),
            (Answer::with("500 Internal Server Error", &[], b""), "http_status"),
        ];
        for (i, (answer, reason)) in failures.into_iter().enumerate() {
            let at = AT + 10_000 * i as u64;
            server.set(Answer::text(good));
            let (result, _) = scrape(&mut scraper, at).await;
            result.unwrap();
            server.set(answer);
            let (result, written) = scrape(&mut scraper, at + 1000).await;
            let error = result.unwrap_err();
            assert_eq!(error.reason(), reason, "{}", chain(&error));
            assert_eq!(stale_names(&written), ["a"], "only the series without a time of its own: {written:?}");
            assert!(written.iter().all(|s| s.time_ms == at + 1000));
            assert!(!written.iter().any(|s| &*s.name == "z" || &*s.name == "b"), "nothing of the body");
            assert_eq!(value(&written, "up"), 0.0);
            assert_eq!(value(&written, "scrape_samples_scraped"), 0.0);
            let (_, again) = scrape(&mut scraper, at + 2000).await;
            assert!(stale_names(&again).is_empty(), "a second failure ends nothing more");
        }
    }

    #[tokio::test]
    async fn a_series_that_vanishes_is_ended_and_a_retired_target_ends_everything_with_its_report_series() {
        let server = TestTarget::start(Answer::text("a 1\nb 1\n")).await;
        let target = target(&server.addr.to_string(), &[]);
        let mut scraper = scraper(&target);
        assert!(!scraper.has_series_to_end());
        assert!(scraper.retire(AT).is_empty(), "never scraped: nothing to end");
        scrape(&mut scraper, AT).await.0.unwrap();
        assert!(scraper.has_series_to_end());
        server.set(Answer::text("a 2\n"));
        let (_, written) = scrape(&mut scraper, AT + 1000).await;
        assert_eq!(stale_names(&written), ["b"]);
        let retired = scraper.retire(AT + 1500);
        let mut expected = vec!["a"];
        expected.extend(REPORT);
        expected.sort_unstable();
        assert_eq!(stale_names(&retired), expected);
        assert!(retired.iter().all(|s| s.time_ms == AT + 1500));
        assert!(!scraper.has_series_to_end());
        assert!(scraper.retire(AT + 2000).is_empty(), "ended once");
    }

    /// A target that exposes `up` (or another of the report series) with no label of its own: its sample would be
    /// a second one of the report's series at the same time, which a receiver refuses with the whole request. The
    /// report's is written; one with labels of its own is another series, and written.
    #[tokio::test]
    async fn a_report_series_the_target_exposes_is_dropped_for_the_scrapes_own() {
        let server = TestTarget::start(Answer::text("up 0\nscrape_series_added 7\nup{shard=\"a\"} 0\nm 1\n")).await;
        let mut scraper = scraper(&target(&server.addr.to_string(), &[("job", "node")]));
        let (result, samples) = scrape(&mut scraper, AT).await;
        result.unwrap();
        let ups: Vec<(f64, usize)> =
            samples.iter().filter(|s| &*s.name == "up").map(|s| (s.value, s.labels.iter().count())).collect();
        assert_eq!(ups, [(0.0, 3), (1.0, 2)], "the exposed up{{shard}} and the report's up{{instance,job}}");
        assert_eq!(samples.iter().filter(|s| &*s.name == "scrape_series_added").count(), 1);
        assert_eq!(value(&samples, "scrape_series_added"), 2.0, "up{{shard}} and m");
        assert_eq!(value(&samples, "scrape_samples_scraped"), 4.0, "all four were scraped");
    }

    /// A wall clock stepped back: the scrape writes nothing at or before what it wrote already (a receiver refuses a
    /// request holding an out-of-order sample, with every other series in it), and goes on once time passes the last.
    #[tokio::test]
    async fn a_scrape_after_the_clock_stepped_back_writes_nothing_out_of_order() {
        let server = TestTarget::start(Answer::text("a 1\nb 1\n")).await;
        let mut scraper = scraper(&target(&server.addr.to_string(), &[]));
        scrape(&mut scraper, AT).await.0.unwrap();
        server.set(Answer::text("a 2\n"));
        let (result, written) = scrape(&mut scraper, AT - 60_000).await;
        result.unwrap();
        assert!(written.is_empty(), "a, b's marker and the report series are all out of order: {written:?}");
        server.set(Answer::with("500 Internal Server Error", &[], b""));
        assert!(scrape(&mut scraper, AT).await.1.is_empty(), "at the same time again: neither up = 0 nor a marker");

        server.set(Answer::text("a 3\n"));
        let (_, written) = scrape(&mut scraper, AT + 1000).await;
        assert_eq!((value(&written, "a"), value(&written, "up")), (3.0, 1.0), "time went on past the last");
        let mut ended = vec!["a"];
        ended.extend(REPORT);
        ended.sort_unstable();
        assert_eq!(stale_names(&scraper.retire(AT + 1001)), ended);
    }

    #[tokio::test]
    async fn a_scraper_that_replaces_another_goes_on_from_the_series_it_handed_over() {
        let server = TestTarget::start(Answer::text("a 1\nb 1\n")).await;
        let old = target(&server.addr.to_string(), &[("zone", "1")]);
        let mut first = scraper(&old);
        scrape(&mut first, AT).await.0.unwrap();
        // The entry changes (a label): the new scraper's `a` is another series, and `b` is gone.
        server.set(Answer::text("a 1\n"));
        let new =
            Target { labels: Labels::parse_field("labels", [("zone".into(), "2".into())].into()).unwrap(), ..old };
        let Collection::Prometheus(prometheus) = &new.collection else { unreachable!() };
        let handed = first.hand_over();
        let mut second =
            PrometheusScraper::new(&new, prometheus, &HttpClient::new(1 << 20), Duration::from_secs(1), handed)
                .unwrap();
        let (_, written) = scrape(&mut second, AT + 1000).await;
        let ended: Vec<(&str, &str)> = written
            .iter()
            .filter(|s| is_stale(s.value))
            .map(|s| (&*s.name, s.labels.iter().find(|(k, _)| *k == "zone").unwrap().1))
            .collect();
        assert_eq!(ended.len(), 2 + REPORT.len(), "{ended:?}");
        assert!(ended.contains(&("a", "1")) && ended.contains(&("b", "1")), "{ended:?}");
        assert!(REPORT.iter().all(|name| ended.contains(&(name, "1"))), "the report series of zone 1: {ended:?}");
        let added = written
            .iter()
            .find(|s| &*s.name == "scrape_series_added" && s.labels.iter().any(|l| l == ("zone", "2")))
            .unwrap();
        assert_eq!(added.value, 1.0, "a with zone 2");
        let retired = second.retire(AT + 2000);
        assert_eq!(stale_names(&retired).len(), 1 + REPORT.len(), "a and the report series: {retired:?}");
    }

    #[tokio::test]
    async fn an_openmetrics_answer_is_read_as_openmetrics_with_its_timestamps_in_seconds() {
        let body = "# TYPE a counter\na_total 1 1699999940.5\n# EOF\n";
        let server = TestTarget::start(Answer::ok(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body.as_bytes(),
        ))
        .await;
        let mut scraper = scraper(&target(&server.addr.to_string(), &[]));
        let (result, samples) = scrape(&mut scraper, AT).await;
        result.unwrap();
        assert_eq!(samples.iter().find(|s| &*s.name == "a_total").unwrap().time_ms, 1_699_999_940_500);
        // Without its # EOF it is not OpenMetrics: the scrape fails.
        server.set(Answer::ok("application/openmetrics-text; version=1.0.0", b"a_total 1\n"));
        assert_eq!(scrape(&mut scraper, AT + 1000).await.0.unwrap_err().reason(), "parse");
    }

    #[tokio::test]
    async fn an_https_target_is_scraped_when_its_certificate_is_trusted_and_fails_when_not() {
        let tls = test_target::Tls::new();
        let server = TestTarget::start_tls(Answer::text("a 1\n"), &tls).await;
        let mut https = target(&format!("localhost:{}", server.addr.port()), &[]);
        https.collection = Collection::Prometheus(PrometheusTarget {
            scheme: roster::domain::Scheme::Https,
            ..PrometheusTarget::default()
        });
        let Collection::Prometheus(prometheus) = &https.collection else { unreachable!() };
        let trusting = HttpClient::with_tls(1 << 20, tls.client_config());
        let mut scraper = PrometheusScraper::new(&https, prometheus, &trusting, Duration::from_secs(5), None).unwrap();
        let (result, samples) = scrape(&mut scraper, AT).await;
        result.unwrap();
        assert_eq!(value(&samples, "a"), 1.0);

        let strangers = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let wary = HttpClient::with_tls(1 << 20, strangers);
        let mut scraper = PrometheusScraper::new(&https, prometheus, &wary, Duration::from_secs(5), None).unwrap();
        let error = scrape(&mut scraper, AT).await.0.unwrap_err();
        assert_eq!(error.reason(), "request");
        assert!(chain(&error).to_string().contains("certificate"), "{}", chain(&error));
    }
}
