//! One collection task per producer, as a handle and an actor (after omicron's oximeter).
//!
//! The actor owns the schedule and the counters; its [`Scraper`] owns the protocol. Every interval the actor
//! scrapes with a deadline below the interval, hands the samples to the sink, and keeps per-producer counters.
//! Missed ticks are skipped, not bunched: a slow producer is collected at most once per interval. Each task has
//! its own scraper and timer, so no producer can delay another. The handle commands the actor through a watch
//! channel (run, retire, stop); a collection in flight finishes first (C6).
//!
//! Each collection is taken at the wall-clock time of its tick, read before asking, and ends in the scraper's
//! [`conclude`](Scraper::conclude), success, failure or timeout alike, so a Prometheus target writes `up` = 0 and
//! its staleness markers when it fails. A producer that leaves the assignment is retired rather than stopped: its
//! task ends the producer's series in the background (two ticks later, as Prometheus does) and then stops, while
//! the reconciler goes on at once.
//!
//! A collection's deadline bounds how long a producer can take. One that ends far past it ([`OWN_STALL`] beyond)
//! means this collector was not running (stopped, paused, starved): the time is its own, so a timeout then is
//! not the producer's failure and no tick of the producer's counts as skipped. Such collections are counted apart
//! (`own_stalls`), and the next tick collects as usual.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use roster::{
    domain::{Collection, CollectorId, Target},
    error_chain::chain,
    follower::now_ms,
    transport::ClientTls,
};
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};
use tracing::{Instrument as _, debug, info_span, warn};

use crate::{
    defaults,
    metrics::{KindMetrics, Outcome, ScrapeMetrics},
    scrape::{
        ScrapeError, Scraper,
        grpc::GrpcScraper,
        prometheus::{HttpClient, PrometheusScraper, staleness::Tracker},
    },
    sink::Sink,
};

/// Counters of one producer's collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStats {
    /// Successful collections.
    pub(crate) collections: u64,
    /// Failed collections.
    pub(crate) failures: u64,
    /// Last success (Unix ms).
    pub(crate) last_success_ms: u64,
    /// Last failure (Unix ms).
    pub(crate) last_failure_ms: u64,
    /// The last failure's cause.
    pub(crate) last_error: String,
    /// Ticks skipped because a collection overran its interval.
    pub(crate) skipped_ticks: u64,
    /// Collections that ended far past their deadline because this collector was not running.
    pub(crate) own_stalls: u64,
}

/// How far past its deadline a collection may end before the time is taken for this collector's own stall: a
/// running tokio timer fires within milliseconds of its deadline.
const OWN_STALL: Duration = Duration::from_secs(1);

/// Numbers the task incarnations of one collector process.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

/// What a task's handle asks of its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Collect on schedule.
    Run,
    /// The producer has left the assignment: end its series (after the collection in flight), then stop.
    Retire,
    /// Stop after the collection in flight, writing nothing more (shutdown, a restart, a producer that came back
    /// before its series were ended).
    Stop,
}

/// The handle of a running collection task.
#[derive(Debug)]
pub(crate) struct TaskHandle {
    /// What it collects.
    pub(crate) target: Target,
    /// Which incarnation it is (changes only on restart).
    pub(crate) incarnation: u64,
    /// Its counters.
    pub(crate) stats: Arc<Mutex<ProducerStats>>,
    command: watch::Sender<Command>,
    join: JoinHandle<Option<Tracker>>,
}

impl TaskHandle {
    /// Starts collecting `target` with the scraper its kind calls for, first after `first_delay`. This is the one
    /// place a scraper is chosen.
    /// `handed` is what the task it replaces handed over ([`TaskHandle::stop`]). Its scrapes are counted in
    /// `metrics`, under its kind.
    pub(crate) fn start(
        target: Target,
        kit: &ScrapeKit,
        sink: Sink,
        first_delay: Duration,
        handed: Option<Tracker>,
        metrics: &ScrapeMetrics,
    ) -> Self {
        let metrics = metrics.for_kind(target.collection.kind());
        match &target.collection {
            Collection::Grpc => {
                let deadline = collect_timeout(target.interval);
                let scraper = GrpcScraper::new(&target, kit.collector, deadline, kit.producer_tls.as_ref());
                Self::spawn(scraper, target, sink, first_delay, deadline, metrics)
            }
            Collection::Prometheus(prometheus) => {
                let deadline = prometheus.scrape_timeout.unwrap_or_else(|| collect_timeout(target.interval));
                let scraper = PrometheusScraper::new(&target, prometheus, &kit.http, deadline, handed);
                Self::spawn(scraper, target, sink, first_delay, deadline, metrics)
            }
        }
    }

    /// Spawns the actor of `target` around `scraper` (or the reason there is none).
    fn spawn<S: Scraper>(
        scraper: Result<S, ScrapeError>,
        target: Target,
        sink: Sink,
        first_delay: Duration,
        deadline: Duration,
        metrics: KindMetrics,
    ) -> Self {
        let stats = Arc::new(Mutex::new(ProducerStats::default()));
        let (command, commands) = watch::channel(Command::Run);
        let incarnation = INCARNATIONS.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("producer", producer.id = %target.id, address = %target.address);
        let actor = Actor {
            interval: target.interval,
            grid: Grid::new(target.interval),
            deadline,
            sink,
            stats: stats.clone(),
            commands,
            metrics,
        };
        // The scraper is unwrapped here, not inside the task: a future keeps each argument of its async fn for its
        // whole life, so a `Result` unwrapped inside would hold the scraper twice in every task (measured with
        // `roster-bench --only big-snapshot`: 17 MiB more for 20 000 producers).
        let join = match scraper {
            Ok(scraper) => tokio::spawn(actor.run(scraper, first_delay).instrument(span)),
            Err(e) => {
                // Nothing can be collected from it: say why once, and wait to be stopped or retired.
                actor.record_failure(&e);
                tokio::spawn(actor.idle().instrument(span))
            }
        };
        Self { target, incarnation, stats, command, join }
    }

    /// Stops the task after any collection in flight, writing nothing more, and waits for it; returns the series
    /// its scraper has written and not ended, for a task that replaces it ([`Scraper::hand_over`]).
    pub(crate) async fn stop(self) -> Option<Tracker> {
        let _ = self.command.send(Command::Stop);
        self.join.await.ok().flatten()
    }

    /// Tells the task its producer has left the assignment, and returns at once: after any collection in flight,
    /// the task ends the producer's series as Prometheus does (markers two ticks later, so that a target that comes
    /// back at once is not cut off), then stops by itself; with no series to end, it stops at once.
    /// [`TaskHandle::stop`] cancels that.
    pub(crate) fn retire(&self) {
        let _ = self.command.send(Command::Retire);
    }

    /// Whether the task has stopped.
    pub(crate) fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

/// What every task of one collector shares to build its scraper.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeKit {
    /// This collector (named in gRPC `Collect` requests).
    pub(crate) collector: CollectorId,
    /// The HTTP client of Prometheus targets, one pool for all.
    pub(crate) http: HttpClient,
    /// When set, gRPC producers are called over TLS with it (`https://`); otherwise in plaintext.
    pub(crate) producer_tls: Option<ClientTls>,
}

impl ScrapeKit {
    /// The kit of `collector`, with the default body limit, calling gRPC producers with `producer_tls`.
    pub(crate) fn new(collector: CollectorId, producer_tls: Option<ClientTls>) -> Self {
        Self { collector, http: HttpClient::new(defaults::SCRAPE_BODY_LIMIT), producer_tls }
    }
}

/// The default deadline of one collection: [`defaults::COLLECT_TIMEOUT_SHARE`] of the interval, at most
/// [`defaults::COLLECT_TIMEOUT_MAX`].
fn collect_timeout(interval: Duration) -> Duration {
    interval.mul_f64(defaults::COLLECT_TIMEOUT_SHARE).min(defaults::COLLECT_TIMEOUT_MAX)
}

/// How far a tick's time may stray from its task's grid and still be put on it (Prometheus's
/// `ScrapeTimestampTolerance`).
const GRID_TOLERANCE_MS: u64 = 2;

/// A task's grid of collection times: the first tick's time plus whole intervals. A tick's wall-clock time within
/// [`GRID_TOLERANCE_MS`] of the grid is put on it, as Prometheus 2.42 does (`AlignScrapeTimestamps`), so that the
/// timestamps of a series are evenly spaced and compress well in a TSDB. Not for intervals of 200 ms or less,
/// where the tolerance would be too large a share.
#[derive(Debug)]
struct Grid {
    interval_ms: u64,
    aligned_ms: Option<u64>,
}

impl Grid {
    fn new(interval: Duration) -> Self {
        Self { interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1), aligned_ms: None }
    }

    /// The time of a tick read at `now_ms`.
    fn time(&mut self, now_ms: u64) -> u64 {
        if self.interval_ms <= 100 * GRID_TOLERANCE_MS {
            return now_ms;
        }
        let aligned = self.aligned_ms.get_or_insert(now_ms);
        if now_ms >= *aligned + self.interval_ms {
            // Skipped ticks: the grid moves by whole intervals.
            *aligned += (now_ms - *aligned) / self.interval_ms * self.interval_ms;
        }
        if now_ms <= *aligned + GRID_TOLERANCE_MS { *aligned } else { now_ms }
    }
}

/// The task's side: the schedule and the counters.
struct Actor {
    interval: Duration,
    grid: Grid,
    deadline: Duration,
    sink: Sink,
    stats: Arc<Mutex<ProducerStats>>,
    commands: watch::Receiver<Command>,
    metrics: KindMetrics,
}

impl Actor {
    /// Runs until stopped (then hands the scraper's series over) or retired (then ends them).
    async fn run<S: Scraper>(mut self, mut scraper: S, first_delay: Duration) -> Option<Tracker> {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first_delay, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let command = tokio::select! {
                biased;
                command = self.next_command(Command::Retire) => command,
                _ = ticks.tick() => Command::Run,
            };
            match command {
                Command::Run => self.collect(&mut scraper).await,
                Command::Retire => {
                    if scraper.has_series_to_end() {
                        self.retire(&mut scraper, &mut ticks).await;
                    }
                    debug!("collection task retired");
                    return None;
                }
                Command::Stop => break,
            }
        }
        debug!("collection task stopped");
        scraper.hand_over()
    }

    /// The first command at least as strong as `at_least` (`Retire` < `Stop`); `Stop` when the handle is gone.
    /// The task of a producer that cannot be scraped (its failure is recorded): it waits to be stopped or retired,
    /// with no series to end.
    async fn idle(mut self) -> Option<Tracker> {
        self.next_command(Command::Retire).await;
        None
    }

    async fn next_command(&mut self, at_least: Command) -> Command {
        loop {
            let command = *self.commands.borrow_and_update();
            if command == Command::Stop || command == at_least {
                return command;
            }
            if self.commands.changed().await.is_err() {
                return Command::Stop;
            }
        }
    }

    /// One collection, bounded by the deadline (`tokio::time::timeout`, which also covers connecting).
    async fn collect<S: Scraper>(&mut self, scraper: &mut S) {
        let at_ms = self.grid.time(now_ms());
        let started = tokio::time::Instant::now();
        // Boxed: the scrape's future (a gRPC call's, an HTTP request's) exists only while a scrape runs, so it is
        // not part of every idle task's memory (22 MiB for 20 000 producers, measured as above).
        let result = tokio::time::timeout(self.deadline, Box::pin(scraper.scrape(at_ms))).await;
        let took = started.elapsed();
        let stalled = own_stall(took, self.deadline);
        self.metrics.scraped(Outcome::of(&result, stalled), took);
        let written = match result {
            Ok(Ok(scraped)) => {
                if let Ok(mut stats) = self.stats.lock() {
                    stats.collections += 1;
                    stats.last_success_ms = now_ms();
                }
                Some(scraper.conclude(at_ms, took, Ok(scraped)))
            }
            Ok(Err(e)) => {
                self.record_failure(&e);
                Some(scraper.conclude(at_ms, took, Err(&e)))
            }
            // The time was this collector's own: not the producer's failure, and nothing is written for it.
            Err(_) if stalled => None,
            Err(_) => {
                let e = ScrapeError::Timeout(self.deadline);
                self.record_failure(&e);
                Some(scraper.conclude(at_ms, took, Err(&e)))
            }
        };
        if let Some(samples) = written {
            self.sink.push(samples);
        }
        if stalled {
            warn!(
                took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                deadline_ms = u64::try_from(self.deadline.as_millis()).unwrap_or(u64::MAX),
                "a collection ended far past its deadline: this collector was not running (stopped, paused or \
                 starved); not counted against the producer"
            );
            if let Ok(mut stats) = self.stats.lock() {
                stats.own_stalls += 1;
            }
        } else if took > self.interval {
            let skipped = (took.as_nanos() / self.interval.as_nanos().max(1)) as u64;
            if let Ok(mut stats) = self.stats.lock() {
                stats.skipped_ticks += skipped;
            }
        }
    }

    /// Ends the producer's series as Prometheus's `endOfRunStaleness` does: the time of the next tick is the
    /// markers' time, and they are written one tick and a tenth of an interval after it, unless the task is
    /// stopped first (the producer came back, or the collector shuts down).
    async fn retire<S: Scraper>(&mut self, scraper: &mut S, ticks: &mut Interval) {
        let interval = self.interval;
        let wait = async move {
            ticks.tick().await;
            let at_ms = now_ms();
            ticks.tick().await;
            tokio::time::sleep(interval / 10).await;
            at_ms
        };
        tokio::select! {
            biased;
            _ = self.next_command(Command::Stop) => {}
            at_ms = wait => {
                debug!("producer left the assignment: its series are ended");
                self.sink.push(scraper.retire(at_ms));
            }
        }
    }

    fn record_failure(&self, error: &ScrapeError) {
        let reason = error.reason();
        let error = chain(error).to_string();
        debug!(error, reason, "collection failed");
        if let Ok(mut stats) = self.stats.lock() {
            stats.failures += 1;
            stats.last_failure_ms = now_ms();
            stats.last_error = error;
        }
    }
}

/// Whether a collection that took `took` against a deadline of `timeout` was cut by this collector's own stall.
fn own_stall(took: Duration, timeout: Duration) -> bool {
    took > timeout + OWN_STALL
}

#[cfg(test)]
mod tests {
    use std::{fmt, io};

    use roster::domain::{Labels, ProducerAddress, ProducerId};
    use tokio::time::Instant;

    use super::*;
    use crate::{export::Exporter, sample::Sample};

    /// A scraper that logs, as `what@ms` since `start`, each conclusion and retirement.
    struct Logging {
        start: Instant,
        hang: bool,
        /// Whether it has series to end.
        ends: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Logging {
        fn note(&self, what: &str) -> Vec<Sample> {
            let ms = self.start.elapsed().as_millis();
            self.log.lock().unwrap().push(format!("{what}@{ms}"));
            vec![Sample {
                time_ms: 0,
                producer_id: "p".into(),
                name: what.into(),
                labels: Default::default(),
                value: 1.0,
            }]
        }
    }

    impl Scraper for Logging {
        type Scraped = ();

        async fn scrape(&mut self, _at_ms: u64) -> Result<(), ScrapeError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        }

        fn conclude(&mut self, _at_ms: u64, _took: Duration, outcome: Result<(), &ScrapeError>) -> Vec<Sample> {
            self.note(outcome.map_or_else(ScrapeError::reason, |()| "ok"))
        }

        fn has_series_to_end(&self) -> bool {
            self.ends
        }

        fn retire(&mut self, _at_ms: u64) -> Vec<Sample> {
            self.note("retire")
        }

        fn hand_over(self) -> Option<Tracker> {
            None
        }
    }

    /// An exporter that keeps the names it is given.
    struct Recording(Arc<Mutex<Vec<String>>>);

    impl fmt::Display for Recording {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("recording")
        }
    }

    impl Exporter for Recording {
        type Error = io::Error;

        const KIND: &'static str = "recording";

        async fn export(&mut self, batch: &[Sample]) -> io::Result<()> {
            self.0.lock().unwrap().extend(batch.iter().map(|s| s.name.to_string()));
            Ok(())
        }

        async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }

        async fn shutdown(self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines kept by a test scraper or exporter.
    type Lines = Arc<Mutex<Vec<String>>>;

    /// A task every second with a deadline of 800 ms, first at once; its log and what reached the sink.
    fn start(hang: bool, ends: bool) -> (TaskHandle, Lines, Lines) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (sink, _, _) = Sink::start(Recording(written.clone()));
        let target = Target {
            id: ProducerId::new_random(),
            address: ProducerAddress::parse_field("address", "127.0.0.1:9").unwrap(),
            interval: Duration::from_secs(1),
            labels: Labels::default(),
            collection: Collection::Grpc,
        };
        let scraper = Logging { start: Instant::now(), hang, ends, log: log.clone() };
        let metrics = ScrapeMetrics::default().for_kind(target.collection.kind());
        let handle = TaskHandle::spawn(Ok(scraper), target, sink, Duration::ZERO, Duration::from_millis(800), metrics);
        (handle, log, written)
    }

    #[test]
    fn tick_times_within_2_ms_of_the_grid_are_put_on_it() {
        let mut grid = Grid::new(Duration::from_secs(1));
        let times: Vec<u64> = [10_000, 11_002, 11_999, 13_001, 14_003, 16_001, 17_500].map(|t| grid.time(t)).into();
        assert_eq!(times, [10_000, 11_000, 11_999, 13_000, 14_003, 16_000, 17_500], "skipped ticks keep the grid");
        let mut fast = Grid::new(Duration::from_millis(200));
        assert_eq!([1_000, 1_201].map(|t| fast.time(t)), [1_000, 1_201], "no grid at 200 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_collection_past_its_deadline_is_concluded_as_a_timeout_and_counted() {
        let (handle, log, written) = start(true, true);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(*log.lock().unwrap(), ["timeout@800", "timeout@1800"]);
        assert_eq!(*written.lock().unwrap(), ["timeout", "timeout"], "what the conclusion wrote reached the sink");
        let stats = handle.stats.lock().unwrap().clone();
        assert_eq!((stats.failures, stats.collections, stats.last_error.as_str()), (2, 0, "no answer within 800ms"));
        handle.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_task_ends_its_series_a_tick_and_a_tenth_after_the_next_tick_and_then_stops() {
        let (handle, log, written) = start(false, true);
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.retire();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(*log.lock().unwrap(), ["ok@0", "retire@2100"], "no collection after retirement");
        assert_eq!(*written.lock().unwrap(), ["ok", "retire"]);
        assert!(handle.is_finished());
        handle.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_task_with_no_series_to_end_stops_at_once() {
        let (handle, log, _) = start(false, false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.retire();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(handle.is_finished());
        assert_eq!(*log.lock().unwrap(), ["ok@0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_task_stopped_before_its_markers_are_due_writes_none() {
        let (handle, log, _) = start(false, true);
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.retire();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!handle.is_finished());
        handle.stop().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(*log.lock().unwrap(), ["ok@0"]);
    }
}
