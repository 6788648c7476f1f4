//! A window of queued requests, split over the shards by series and sent by them in parallel.
//!
//! Each series goes to the shard a hash of its labels names, so all of a series' samples go through one shard,
//! which sends its requests one after another: the samples of a series reach the receiver in the order they were
//! queued, while the shards' requests overlap. A shard's requests are bounded in samples and in bytes; each is
//! built by copying the series' bytes (see [`wire`](super::wire)), compressed, and sent until the receiver
//! delivers or refuses it ([`Receiver::send`]). A window is done once every shard has sent all of its part.
//!
//! **A request holds at most one sample of a series**, so that sending it again never loses anything. Prometheus
//! (2.42, `storage/remote/write_handler.go`) appends a request's samples one by one and rolls the whole request
//! back at the first it refuses; a sample older than the newest its series holds is refused ("out of order
//! sample"), an identical one is taken as it is. A request is sent again when its answer was lost (a timeout after
//! the receiver took it) or after a restart, when the unacknowledged window is read again. Were a series twice in
//! one request, its earlier sample would then be refused and the whole request with it, new samples included.
//! With one sample per series per request, and the requests of a shard cut the same way from the same records
//! (a restart's window starts with the same records, so its first requests are the same, the last one possibly
//! with more series), a request sent again holds, for each series, either the newest sample it has (taken again)
//! or one the receiver never saw. The price: a backlog of few series goes out in more, smaller requests.
//!
//! **A sample the receiver refuses loses only itself.** The same rollback makes one sample Prometheus refuses (out
//! of order, a duplicate, out of bounds; say a marker of a producer that moved, written by its old collector after
//! the new one's first sample) take every other series of the request down with it, from every producer. So a
//! request refused as bad (400) is sent again as two halves of its series ([`deliver`]), and each refused half is
//! halved again, down to single series: one bad series in `n` costs about 2·log₂ n more requests (22 for 2 000)
//! and loses only itself. Two bounds keep a receiver from drawing a storm: while nothing of the request was
//! delivered, halving stops two levels down (a receiver that refuses everything costs 7 requests for each, not one
//! per series), and it adds at most [`halving_budget`] requests (104 for 2 000 series); a refused part left then is
//! dropped whole. Halves hold only series of their request, each once, and are sent before the shard's next
//! request, so the order of each series holds.

use std::collections::HashSet;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::error;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    client::{Receiver, Sent, Stopped},
    wire::{self, Damaged, Series},
};

/// How requests are cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Shards, at least 1.
    pub(crate) shards: usize,
    /// Most samples in one request (a series with more goes alone).
    pub(crate) max_samples: usize,
    /// Most bytes of one request's protobuf (a series with more goes alone).
    pub(crate) max_bytes: usize,
}

/// The requests of one window, by shard, being built.
#[derive(Debug)]
pub(crate) struct Window {
    limits: Limits,
    shards: Vec<Part>,
    samples: usize,
    /// Scratch for [`Series::split`].
    series: Vec<Series>,
}

/// One shard's part of a window.
#[derive(Debug, Default)]
struct Part {
    /// Its requests (protobuf, samples); the last one is being filled.
    requests: Vec<(Vec<u8>, u32)>,
    /// The hashes of the series in the last request (the identity of a series: a hash collision only starts a
    /// request early).
    open: HashSet<u64>,
}

impl Window {
    /// An empty window.
    pub(crate) fn new(limits: Limits) -> Self {
        let limits = Limits { shards: limits.shards.max(1), max_samples: limits.max_samples.max(1), ..limits };
        let shards = (0..limits.shards).map(|_| Part::default()).collect();
        Self { limits, shards, samples: 0, series: Vec::new() }
    }

    /// Samples in the window.
    pub(crate) fn samples(&self) -> usize {
        self.samples
    }

    /// Adds the series of one queued request (an encoded `WriteRequest`) to their shards' requests, but for those
    /// whose newest sample is older than `oldest_allowed_ms`, which it leaves out and returns the samples of: the
    /// queue's age bound, sample by sample. (The queue drops a record whose newest sample is too old; one holding
    /// a target's own, older timestamps beside it would otherwise go out, and a receiver refuses a request holding
    /// one sample out of its bounds.)
    pub(crate) fn push(&mut self, request: &[u8], oldest_allowed_ms: i64) -> Result<u32, Damaged> {
        self.series.clear();
        Series::split(request, &mut self.series)?;
        let Limits { shards, max_samples, max_bytes } = self.limits;
        let mut too_old = 0u32;
        for series in &self.series {
            if series.newest_ms < oldest_allowed_ms {
                too_old = too_old.saturating_add(series.samples);
                continue;
            }
            let key = &request[series.key.0..series.key.1];
            let entry = &request[series.entry.0..series.entry.1];
            let hash = xxh3_64(key);
            // The modulo of a 64-bit hash by a small count: spread even enough, and stable across runs.
            let part = &mut self.shards[(hash % shards as u64) as usize];
            let fits = part.requests.last().is_some_and(|(bytes, samples)| {
                *samples as usize + series.samples as usize <= max_samples
                    && bytes.len() + entry.len() <= max_bytes
                    && !part.open.contains(&hash)
            });
            if !fits {
                part.requests.push((Vec::with_capacity(entry.len().max(max_bytes.min(1 << 16))), 0));
                part.open.clear();
            }
            if let Some((bytes, samples)) = part.requests.last_mut() {
                bytes.extend_from_slice(entry);
                *samples = samples.saturating_add(series.samples);
            }
            part.open.insert(hash);
            self.samples += series.samples as usize;
        }
        Ok(too_old)
    }

    /// Sends every shard's requests, the shards in parallel, and empties the window. `Stopped` if `stop` fired
    /// before all were delivered or refused (each shard finishes the request it has in flight).
    pub(crate) async fn send(&mut self, receiver: &Receiver, stop: &CancellationToken) -> Result<(), Stopped> {
        let mut tasks = JoinSet::new();
        for part in &mut self.shards {
            part.open.clear();
            if part.requests.is_empty() {
                continue;
            }
            let requests = std::mem::take(&mut part.requests);
            let (receiver, stop) = (receiver.clone(), stop.clone());
            tasks.spawn(async move {
                for (request, samples) in requests {
                    deliver(&receiver, request, samples, &stop).await?;
                }
                Ok(())
            });
        }
        self.samples = 0;
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(Stopped)) => result = Err(Stopped),
                // A shard is never aborted: the error is a panic, passed on.
                Err(e) => {
                    if let Ok(panic) = e.try_into_panic() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        }
        result
    }
}

/// How many levels halving goes down while nothing of the request was delivered: a receiver that refuses every
/// request costs 1 + 2 + 4 = 7 requests for each, and bad series around the midpoint (a moved producer's markers
/// come as one block) still meet a delivered part.
const BLIND_LEVELS: u32 = 2;

/// The most requests halving may add to one request of `n` series: enough to isolate eight bad series scattered
/// over it (each costs about 2·log₂ n), bounded however the receiver answers.
fn halving_budget(n: usize) -> usize {
    8 * n.next_power_of_two().trailing_zeros() as usize + 16
}

/// Sends one request; when the receiver refuses it as bad, sends its halves, and halves again each refused part,
/// down to single series (see the module doc), within [`halving_budget`] and, while nothing of it was delivered,
/// [`BLIND_LEVELS`]. What is refused in the end is dropped and counted.
async fn deliver(receiver: &Receiver, request: Vec<u8>, samples: u32, stop: &CancellationToken) -> Result<(), Stopped> {
    let Answered::Bad(reason) = send_once(receiver, &request, samples, stop).await? else { return Ok(()) };
    let mut budget = halving_budget(series_in(&request));
    let mut delivered_any = false;
    let mut refused = vec![(request, samples, reason, 0)];
    while let Some((request, samples, reason, level)) = refused.pop() {
        let may_halve = budget >= 2 && (delivered_any || level < BLIND_LEVELS);
        let Some(halves) = may_halve.then(|| halves(&request)).flatten() else {
            receiver.refused(samples, &reason);
            continue;
        };
        budget -= 2;
        for (half, half_samples) in halves {
            match send_once(receiver, &half, half_samples, stop).await? {
                Answered::Delivered => delivered_any = true,
                Answered::Dropped => {}
                Answered::Bad(reason) => refused.push((half, half_samples, reason, level + 1)),
            }
        }
    }
    Ok(())
}

/// How one request was answered, as [`deliver`] needs it.
enum Answered {
    Delivered,
    /// Refused other than as bad, and counted; or not compressible (past snappy's 4 GiB, which the byte bound rules
    /// out), and counted.
    Dropped,
    /// Refused as bad (400), with this reason: to be halved, or counted when it is not.
    Bad(String),
}

/// Sends `request` (`samples` samples) until it is delivered or refused for good.
async fn send_once(
    receiver: &Receiver,
    request: &[u8],
    samples: u32,
    stop: &CancellationToken,
) -> Result<Answered, Stopped> {
    let body = match wire::compress(request) {
        Ok(body) => body,
        Err(e) => {
            error!(error = %e, samples, "remote-write request not compressible; dropped");
            receiver.refused(samples, "not compressible (over 4 GiB)");
            return Ok(Answered::Dropped);
        }
    };
    Ok(match receiver.send(Bytes::from(body), samples, stop).await? {
        Sent::Delivered => Answered::Delivered,
        Sent::Refused { reason, bad_request: true } => Answered::Bad(reason),
        Sent::Refused { reason, bad_request: false } => {
            receiver.refused(samples, &reason);
            Answered::Dropped
        }
    })
}

/// How many series an encoded request holds.
fn series_in(request: &[u8]) -> usize {
    let mut series = Vec::new();
    Series::split(request, &mut series).map_or(0, |()| series.len())
}

/// The two halves of a request's series, each with its samples; `None` for a request of one series (or one that
/// does not parse, which [`Window::push`] rules out).
fn halves(request: &[u8]) -> Option<[(Vec<u8>, u32); 2]> {
    let mut series = Vec::new();
    Series::split(request, &mut series).ok()?;
    if series.len() < 2 {
        return None;
    }
    let (first, second) = series.split_at(series.len() / 2);
    let half = |part: &[Series]| {
        let (start, end) = (part[0].entry.0, part[part.len() - 1].entry.1);
        (request[start..end].to_vec(), part.iter().map(|s| s.samples).sum())
    };
    Some([half(first), half(second)])
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, atomic::Ordering},
        time::{Duration, Instant},
    };

    use roster::backoff::BackoffPolicy;

    use super::*;
    use crate::{
        export::remote_write::{
            config::{Auth, RemoteWriteConfig},
            stats::RemoteWriteStats,
            test_receiver::{Answer, TestReceiver},
            wire::{
                encode,
                tests::{decode, sample},
            },
        },
        sample::{STALE_NAN_BITS, stale_nan},
    };

    /// A configuration for `receiver` that retries within milliseconds.
    fn config(receiver: &TestReceiver) -> RemoteWriteConfig {
        receiver.config()
    }

    fn limits(config: &RemoteWriteConfig) -> Limits {
        Limits { shards: config.shards, max_samples: config.max_samples_per_send, max_bytes: config.max_bytes_per_send }
    }

    /// Sends `batches` as one window through `config`; the stats it counted.
    async fn send(config: &RemoteWriteConfig, batches: &[Vec<crate::sample::Sample>]) -> Arc<RemoteWriteStats> {
        let stats = RemoteWriteStats::new(Arc::default());
        let receiver = Receiver::new(config, stats.clone());
        let mut window = Window::new(limits(config));
        for batch in batches {
            window.push(&encode(batch).payload, i64::MIN).unwrap();
        }
        window.send(&receiver, &CancellationToken::new()).await.unwrap();
        assert_eq!(window.samples(), 0, "the window is emptied");
        stats
    }

    #[tokio::test]
    async fn requests_carry_the_spec_headers_and_decode_to_the_samples_sent() {
        let receiver = TestReceiver::start([]).await;
        let batch = vec![
            sample("up", &[("job", "node"), ("instance", "a")], 1_000, 1.0),
            sample("gone", &[], 2_000, stale_nan()),
        ];
        let stats = send(&RemoteWriteConfig { shards: 1, ..config(&receiver) }, &[batch]).await;
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        let headers = &received[0].headers;
        for (name, value) in [
            ("content-encoding", "snappy"),
            ("content-type", "application/x-protobuf"),
            ("x-prometheus-remote-write-version", "0.1.0"),
            ("user-agent", concat!("roster-collector/", env!("CARGO_PKG_VERSION"))),
        ] {
            assert_eq!(headers[name], value, "{name}");
        }
        assert!(headers.get("authorization").is_none());
        let series = &received[0].request.timeseries;
        let labels: Vec<(&str, &str)> = series[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(labels, [("__name__", "up"), ("instance", "a"), ("job", "node")]);
        assert_eq!(
            receiver.delivered(),
            [("up".into(), 1_000, 1f64.to_bits()), ("gone".into(), 2_000, STALE_NAN_BITS)]
        );
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 2);
        assert!(stats.healthy());
    }

    #[tokio::test]
    async fn credentials_go_in_the_authorization_header() {
        let receiver = TestReceiver::start([]).await;
        let bearer = Auth::bearer("t0ken").unwrap();
        send(&RemoteWriteConfig { auth: Some(bearer), ..config(&receiver) }, &[vec![sample("a", &[], 1, 1.0)]]).await;
        let basic = Auth::basic("ali", "pw");
        send(&RemoteWriteConfig { auth: Some(basic), ..config(&receiver) }, &[vec![sample("a", &[], 2, 1.0)]]).await;
        let received = receiver.received();
        assert_eq!(received[0].headers["authorization"], "Bearer t0ken");
        assert_eq!(received[1].headers["authorization"], "Basic YWxpOnB3");
    }

    #[tokio::test]
    async fn each_series_keeps_its_order_across_shards_requests_and_windows() {
        let receiver = TestReceiver::start([]).await;
        let config = RemoteWriteConfig { shards: 4, max_samples_per_send: 7, ..config(&receiver) };
        let names: Vec<String> = (0..40).map(|n| format!("m{n}")).collect();
        // Three windows of two batches; each batch holds every series once, at a later time.
        for window in 0..3u64 {
            let batches: Vec<Vec<_>> = (0..2u64)
                .map(|b| names.iter().map(|n| sample(n, &[("k", "v")], 10 * (2 * window + b) + 1, 1.0)).collect())
                .collect();
            send(&config, &batches).await;
        }
        let delivered = receiver.delivered();
        assert_eq!(delivered.len(), 40 * 6, "every sample, once");
        for name in &names {
            let times: Vec<i64> = delivered.iter().filter(|d| &d.0 == name).map(|d| d.1).collect();
            assert_eq!(times, [1, 11, 21, 31, 41, 51], "{name}");
        }
        let received = receiver.received();
        assert!(received.iter().all(|r| r.request.timeseries.len() <= 7), "bounded in samples");
        let shards_used: std::collections::BTreeSet<String> =
            received.iter().map(|r| format!("{:?}", r.request.timeseries[0].labels)).collect();
        assert!(shards_used.len() > 1);
    }

    #[tokio::test]
    async fn requests_are_bounded_in_bytes_and_a_larger_series_goes_alone() {
        let receiver = TestReceiver::start([]).await;
        let config = RemoteWriteConfig { shards: 1, max_bytes_per_send: 100, ..config(&receiver) };
        let big = "x".repeat(200);
        let batch = vec![sample("a", &[], 1, 1.0), sample("b", &[], 1, 1.0), sample("c", &[("big", &big)], 1, 1.0)];
        let bytes: Vec<usize> = batch.iter().map(|s| encode(std::slice::from_ref(s)).payload.len()).collect();
        assert!(bytes[0] + bytes[1] <= 100 && bytes[2] > 100, "{bytes:?}");
        send(&config, &[batch]).await;
        let sizes: Vec<usize> = receiver.received().iter().map(|r| r.request.timeseries.len()).collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn a_request_holds_one_sample_per_series_and_a_longer_window_starts_with_the_same_requests() {
        let limits = Limits { shards: 1, max_samples: 100, max_bytes: 1 << 20 };
        let mut records: Vec<Vec<u8>> =
            (0..3).map(|t| encode(&[sample("a", &[], t, 1.0), sample("b", &[], t, 1.0)]).payload).collect();
        let cut = |records: &[Vec<u8>]| {
            let mut window = Window::new(limits);
            for record in records {
                window.push(record, i64::MIN).unwrap();
            }
            window.shards[0].requests.clone()
        };
        let short = cut(&records);
        assert_eq!(short.len(), 3, "a and b again start a request each time");
        for (request, samples) in &short {
            let names: Vec<_> = decode(request).timeseries.iter().map(|t| t.labels[0].value.clone()).collect();
            assert_eq!((names, *samples), (vec!["a".to_owned(), "b".to_owned()], 2));
        }
        // After a restart the window may hold more records: its requests start the same, the last one may grow.
        records.push(encode(&[sample("c", &[], 3, 1.0), sample("a", &[], 3, 1.0)]).payload);
        let long = cut(&records);
        assert_eq!(long[..2], short[..2]);
        assert!(long[2].0.starts_with(&short[2].0) && long[2].1 == 3, "c joins the last request");
        assert_eq!(long.len(), 4, "a's next sample starts a new one");
    }

    #[tokio::test]
    async fn a_5xx_is_retried_until_delivered_once() {
        let receiver = TestReceiver::start([Answer::status(503, "busy"), Answer::status(500, "oops")]).await;
        let stats = send(&config(&receiver), &[vec![sample("a", &[], 1, 1.0)]]).await;
        let answered: Vec<_> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [Some(503), Some(500), Some(204)]);
        assert_eq!(receiver.delivered().len(), 1);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 2);
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 1);
        assert!(stats.healthy() && stats.last_error().is_none());
    }

    #[tokio::test]
    async fn shards_waiting_out_their_backoff_retry_at_once_when_another_shard_gets_through() {
        // The first two requests to arrive fail; their shards would then wait an hour. The others are taken, and
        // each delivery wakes the waiting shards, so the window is done at once.
        let receiver = TestReceiver::start([Answer::status(503, "down"), Answer::status(503, "down")]).await;
        let hour = Duration::from_secs(3600);
        let config = RemoteWriteConfig {
            shards: 4,
            backoff: BackoffPolicy { initial: hour, cap: hour, jitter: 0.0, max_attempts: None },
            ..config(&receiver)
        };
        let batch: Vec<_> = (0..32).map(|i| sample(&format!("m{i}"), &[], 1, 1.0)).collect();
        let stats = tokio::time::timeout(roster_testkit::WAIT, send(&config, &[batch]))
            .await
            .expect("the failed shards did not wait out their hour");
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 32);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 2);
        let answered: Vec<_> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered.iter().filter(|a| **a == Some(503)).count(), 2, "{answered:?}");
    }

    #[tokio::test]
    async fn a_429_waits_what_retry_after_asks_capped() {
        let receiver = TestReceiver::start([Answer::Status(429, vec![("retry-after", "1".into())], "slow down")]).await;
        let started = Instant::now();
        let stats = send(&config(&receiver), &[vec![sample("a", &[], 1, 1.0)]]).await;
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
        assert_eq!(receiver.received().len(), 2);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 1);

        // An hour is cut to the configured maximum.
        receiver.script([Answer::Status(429, vec![("retry-after", "3600".into())], "")]);
        let config = RemoteWriteConfig { retry_after_max: Duration::from_millis(300), ..config(&receiver) };
        let started = Instant::now();
        send(&config, &[vec![sample("a", &[], 2, 1.0)]]).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(60), "waited {waited:?}");
        assert_eq!(receiver.delivered().len(), 2);
    }

    #[tokio::test]
    async fn a_4xx_is_never_retried_and_counted_by_its_reason() {
        let receiver = TestReceiver::start([
            Answer::status(400, "out of order sample\nseries {...}"),
            Answer::status(400, "out of order sample"),
            Answer::status(404, ""),
        ])
        .await;
        let config = RemoteWriteConfig { shards: 1, max_samples_per_send: 1, ..config(&receiver) };
        let batch: Vec<_> = (0..4).map(|t| sample("a", &[], t, 1.0)).collect();
        let stats = send(&config, &[batch]).await;
        let answered: Vec<_> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [Some(400), Some(400), Some(404), Some(204)], "no retries");
        let refused = stats.refused();
        assert_eq!(refused.len(), 2);
        assert_eq!(refused["400 out of order sample"], 2);
        assert_eq!(refused["404 Not Found"], 1);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 0);
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 1);
        assert!(stats.healthy(), "a refusal is an answer");
    }

    /// 100 series in one request, one of which the receiver refuses (as Prometheus refuses a marker older than
    /// its series' newest sample, with the whole request): the halves are sent, and the refused half halved again,
    /// down to that series. The 99 others are delivered, each once, in about 2·log₂(100) more requests.
    #[tokio::test]
    async fn one_series_the_receiver_refuses_loses_only_itself() {
        let receiver = TestReceiver::start([]).await;
        receiver.refuse_series("m37");
        let config = RemoteWriteConfig { shards: 1, ..config(&receiver) };
        let batch: Vec<_> = (0..100).map(|i| sample(&format!("m{i}"), &[], 1, 1.0)).collect();
        let stats = send(&config, &[batch]).await;
        let mut delivered: Vec<String> = receiver.delivered().into_iter().map(|d| d.0).collect();
        delivered.sort_unstable();
        let mut expected: Vec<String> = (0..100).filter(|&i| i != 37).map(|i| format!("m{i}")).collect();
        expected.sort_unstable();
        assert_eq!(delivered, expected, "every other series, once");
        assert_eq!(stats.refused(), [("400 out of order sample".to_owned(), 1)].into());
        assert_eq!(stats.samples_sent.load(Ordering::Relaxed), 99);
        let requests = receiver.received().len();
        assert!(requests <= 1 + 2 * 7, "halving 100 series takes 7 levels at most: {requests} requests");
        let at_fault = receiver.received().into_iter().filter(|r| r.answered == Some(400)).last().unwrap();
        assert_eq!(at_fault.request.timeseries.len(), 1, "halved down to the series at fault");
    }

    /// Refused series in both halves: each is isolated, and only they are lost. A receiver that refuses every
    /// request costs 7 requests for each (two levels of halving), not one per series; a refusal other than 400 (the
    /// request, not a sample, is wrong) is not halved.
    #[tokio::test]
    async fn bad_series_in_both_halves_lose_only_themselves_and_a_receiver_refusing_all_costs_seven_requests() {
        let receiver = TestReceiver::start([]).await;
        receiver.refuse_series("m0");
        receiver.refuse_series("m9");
        let config = RemoteWriteConfig { shards: 1, ..config(&receiver) };
        let batch: Vec<_> = (0..10).map(|i| sample(&format!("m{i}"), &[], 1, 1.0)).collect();
        let stats = send(&config, std::slice::from_ref(&batch)).await;
        assert_eq!(receiver.delivered().len(), 8, "all but m0 and m9");
        assert_eq!(stats.refused(), [("400 out of order sample".to_owned(), 2)].into());

        let receiver = TestReceiver::start(std::iter::repeat_n(Answer::status(400, "bad"), 100)).await;
        let stats =
            send(&RemoteWriteConfig { shards: 1, ..self::config(&receiver) }, std::slice::from_ref(&batch)).await;
        let sizes: Vec<usize> = receiver.received().iter().map(|r| r.request.timeseries.len()).collect();
        assert_eq!(sizes.len(), 7, "{sizes:?}");
        assert_eq!(stats.refused(), [("400 bad".to_owned(), 10)].into());

        let receiver = TestReceiver::start([Answer::status(413, "too large")]).await;
        let stats = send(&RemoteWriteConfig { shards: 1, ..self::config(&receiver) }, &[batch]).await;
        assert_eq!(receiver.received().len(), 1, "not halved");
        assert_eq!(stats.refused(), [("413 too large".to_owned(), 10)].into());
    }

    /// The queue's age bound, sample by sample: a series whose sample is older than the bound is left out of the
    /// window and counted, the rest of its record goes out.
    #[test]
    fn a_window_leaves_out_the_samples_older_than_the_bound() {
        let mut window = Window::new(Limits { shards: 1, max_samples: 100, max_bytes: 1 << 20 });
        let record =
            encode(&[sample("old", &[], 999, 1.0), sample("new", &[], 1_000, 1.0), sample("older", &[], 5, 1.0)]);
        assert_eq!(window.push(&record.payload, 1_000).unwrap(), 2);
        assert_eq!(window.samples(), 1);
        let names: Vec<_> =
            decode(&window.shards[0].requests[0].0).timeseries.iter().map(|t| t.labels[0].value.clone()).collect();
        assert_eq!(names, ["new"]);
    }

    /// A block of bad series (a moved producer's markers) in a request of many: every good series around it is
    /// delivered, and the requests added stay within the budget.
    #[tokio::test]
    async fn a_block_of_bad_series_is_cut_out_within_the_budget() {
        let receiver = TestReceiver::start([]).await;
        for i in 40..46 {
            receiver.refuse_series(&format!("m{i}"));
        }
        let config = RemoteWriteConfig { shards: 1, ..config(&receiver) };
        let batch: Vec<_> = (0..200).map(|i| sample(&format!("m{i}"), &[], 1, 1.0)).collect();
        let stats = send(&config, &[batch]).await;
        assert_eq!(receiver.delivered().len(), 194, "every series but the six");
        assert_eq!(stats.refused(), [("400 out of order sample".to_owned(), 6)].into());
        let requests = receiver.received().len();
        assert!(requests <= 1 + halving_budget(200), "{requests} requests");
    }

    #[tokio::test]
    async fn a_hanging_receiver_is_cut_by_the_timeout_and_retried() {
        let receiver = TestReceiver::start([Answer::Hang]).await;
        let config = RemoteWriteConfig { timeout: Duration::from_millis(200), ..config(&receiver) };
        let stats = send(&config, &[vec![sample("a", &[], 1, 1.0)]]).await;
        let answered: Vec<_> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [None, Some(204)]);
        assert_eq!(stats.requests_retried.load(Ordering::Relaxed), 1);
        assert_eq!(receiver.delivered().len(), 1);
    }

    #[tokio::test]
    async fn a_receiver_that_is_not_there_is_retried_until_it_is() {
        // A port nothing listens on, then a receiver on it.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url: http::Uri = format!("http://{addr}/api/v1/write").parse().unwrap();
        let stats = RemoteWriteStats::new(Arc::default());
        let config = RemoteWriteConfig { url, ..config(&TestReceiver::start([]).await) };
        let sender = Receiver::new(&config, stats.clone());
        let mut window = Window::new(limits(&config));
        window.push(&encode(&[sample("a", &[], 1, 1.0)]).payload, i64::MIN).unwrap();
        let sending = tokio::spawn(async move { window.send(&sender, &CancellationToken::new()).await.is_ok() });
        roster_testkit::wait_for("retries", || stats.requests_retried.load(Ordering::Relaxed) >= 3).await;
        assert!(!stats.healthy());
        assert!(stats.last_error().is_some_and(|e| e.contains("onnect")), "{:?}", stats.last_error());
        let receiver = TestReceiver::start_on(addr).await;
        assert!(sending.await.unwrap(), "delivered once the receiver is there");
        assert_eq!(receiver.delivered().len(), 1);
        assert!(stats.healthy());
    }

    #[tokio::test]
    async fn a_stop_ends_the_retries_and_the_window_is_not_done() {
        let receiver = TestReceiver::start(std::iter::repeat_n(Answer::status(503, ""), 1000)).await;
        let stats = RemoteWriteStats::new(Arc::default());
        let config = config(&receiver);
        let sender = Receiver::new(&config, stats.clone());
        let mut window = Window::new(limits(&config));
        window.push(&encode(&[sample("a", &[], 1, 1.0)]).payload, i64::MIN).unwrap();
        let stop = CancellationToken::new();
        let stopper = {
            let (stop, stats) = (stop.clone(), stats.clone());
            tokio::spawn(async move {
                roster_testkit::wait_for("a few retries", || stats.requests_retried.load(Ordering::Relaxed) >= 3).await;
                stop.cancel();
            })
        };
        assert!(window.send(&sender, &stop).await.is_err(), "stopped before delivery");
        stopper.await.unwrap();
        assert!(!stats.healthy());
        assert_eq!(stats.last_error().as_deref(), Some("503 Service Unavailable"));
        assert!(receiver.delivered().is_empty());
    }
}
