//! The remote-write scenario: one real `roster-collector` (`--sink remote-write=…`, its disk queue in a temporary
//! data directory) beside Debian's `prometheus` 2.42 in agent mode (`remote_write:` with Prometheus's default
//! queue settings), both scraping the same targets ([`prometheus`](crate::prometheus)) and delivering to the same
//! in-memory receiver ([`Receiver`]), each to a path of its own.
//!
//! The two run one after the other, never together: catch-up is bound by CPU, and on a shared machine the second
//! sender's drain would take the first one's cores. Each goes through the same three phases:
//!
//! 1. **Steady delivery**: once the receiver gets every target's samples every second (two seconds running),
//!    samples per second received over the window, CPU seconds (`utime + stime` of `/proc/PID/stat`) per million
//!    of them, and resident memory ([`measure`]). The sender's lag (samples it counted minus samples received)
//!    is noted at the end of the window.
//! 2. **Outage**: the receiver answers 503 to every write for `Scale::outage_secs`. The sender keeps scraping;
//!    what it cannot deliver waits in its queue (roster's disk queue; the agent's write-ahead log).
//! 3. **Catch-up**: the receiver answers 204 again. The backlog is what the sender counted by then (roster: samples
//!    its remote-write sink took; the agent: `prometheus_agent_samples_appended_total`), minus what it gave up
//!    (roster-collector's queue bounds drop the oldest samples when the backlog outgrows them; reported, and held
//!    against 0), minus its steady lag, minus what was received. The sender first waits out its retry backoff (both cap it at
//!    5 s): that wait, until the first write the receiver accepts, is reported apart. Both send in order (a disk
//!    queue; a write-ahead log), so the backlog is drained once the receiver holds that many more samples: the
//!    time from the first accepted write until then, the backlog drained per second of it, and the sender's CPU
//!    over it. That CPU includes the scraping that goes on meanwhile, so samples per CPU-second here understate
//!    what delivery alone costs. The harness's own CPU over the same time (the receiver decoding, the targets
//!    answering) is reported too: a receiver that takes a core would be what limits the drain.
//!
//! Then each sender, again one after the other and each a fresh process, delivers the same targets to Debian's
//! `prometheus` 2.42 started as a remote-write receiver ([`Tsdb`], a fresh TSDB for each): steady delivery only,
//! over half the steady window, measured as in phase 1 but counted at that receiver
//! (`prometheus_tsdb_head_samples_appended_total`: what its head took, the same count for both senders, and one
//! that, unlike a sender's own, leaves out what the receiver refused), with that Prometheus's own CPU beside it:
//! a receiver short of a core would be what limits the rate.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    Figure, Scale,
    collector::CollectorProcess,
    prometheus::{Agent, Measured, SERIES_PER_TARGET, Targets, Tsdb, measure},
    receiver::Receiver,
    scenarios::LIMIT,
    server::{ServerProcess, cpu_time, memory},
};

/// The scenario's name in the figures.
const SCENARIO: &str = "remote write vs prometheus";
/// The receiver's path roster-collector writes to.
const ROSTER: &str = "/roster";
/// The receiver's path Prometheus's agent writes to.
const AGENT: &str = "/agent";
/// How often the receiver's count is read while a backlog drains: the resolution of the time to drain.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// `/proc` counts CPU time in ticks of 10 ms; a catch-up that took less is counted as one tick.
const CPU_TICK: Duration = Duration::from_millis(10);

/// What one sender did through the three phases.
struct Delivery {
    steady: Measured,
    /// Samples counted by the sender but not yet received, at the end of the steady window.
    lag: u64,
    /// Samples the sender gave up before delivering them (roster-collector's queue bounds).
    lost: u64,
    /// Samples not delivered when the outage ended, beyond the sender's steady lag.
    backlog: u64,
    /// From the end of the outage until the first write the receiver accepted: the sender's retry backoff.
    first_write: Duration,
    /// From that first write until the backlog was received.
    drain: Duration,
    /// The sender's CPU time over `drain`.
    drain_cpu: Duration,
    /// This harness's CPU time over `drain`: the receiver decoding the backlog, and the targets serving scrapes.
    harness_cpu: Duration,
    /// Peak resident memory, at the end of the catch-up.
    peak: u64,
}

/// Runs the three phases for the sender `pid` writing to the receiver's `path`; `produced` reads the sender's own
/// counts: samples it queued for delivery, and of those the ones it gave up.
async fn through_an_outage<F, Fut>(
    receiver: &Receiver,
    path: &'static str,
    pid: u32,
    per_sec: f64,
    window: Duration,
    outage: Duration,
    mut produced: F,
) -> anyhow::Result<Delivery>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<(u64, u64)>>,
{
    let steady = measure(pid, per_sec, window, move || async move { Ok(receiver.samples(path) as f64) }).await?;
    let (queued, lost) = produced().await?;
    let lag = queued.saturating_sub(lost).saturating_sub(receiver.samples(path));

    receiver.set_outage(true);
    let refused = receiver.unavailable(path);
    tokio::time::sleep(outage).await;
    let ((queued, lost), delivered) = (produced().await?, receiver.samples(path));
    let (cpu, harness) = (cpu_time(pid)?, cpu_time(std::process::id())?);
    let ended = Instant::now();
    receiver.set_outage(false);
    ensure!(receiver.unavailable(path) > refused, "{path}: no write reached the receiver during the outage");

    // What the sender gave up will never arrive: the backlog is what it still holds.
    let target = queued.saturating_sub(lost).saturating_sub(lag);
    let backlog = target.saturating_sub(delivered);
    let mut first = None;
    while receiver.samples(path) < target {
        if ended.elapsed() > LIMIT {
            bail!(
                "{path}: {} of a backlog of {backlog} samples delivered within {LIMIT:?} of the outage's end",
                receiver.samples(path).saturating_sub(delivered)
            );
        }
        if first.is_none() && receiver.samples(path) > delivered {
            first = Some((Instant::now(), cpu_time(pid)?, cpu_time(std::process::id())?));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    // A backlog drained within one poll of the first write is timed from the outage's end.
    let (first, cpu, harness) = first.unwrap_or((ended, cpu, harness));
    let (drain, drain_cpu) = (first.elapsed(), cpu_time(pid)? - cpu);
    let harness_cpu = cpu_time(std::process::id())? - harness;
    ensure!(receiver.malformed(path) == 0, "{path}: {} requests did not decode", receiver.malformed(path));
    Ok(Delivery {
        steady,
        lag,
        lost,
        backlog,
        first_write: first - ended,
        drain,
        drain_cpu,
        harness_cpu,
        peak: memory(pid)?.1,
    })
}

/// `targets` registered on a fresh roster-server (its store in `dir/server`), collected by one roster-collector
/// (its data and disk queue in `dir/collector`) whose only sink is remote write to `url`. Each collector gets a
/// server of its own: a server holds a stopped collector's share of the targets until its lease ends.
async fn remote_writing_collector(
    targets: &Targets,
    url: &str,
    dir: &Path,
) -> anyhow::Result<(ServerProcess, CollectorProcess)> {
    let server = targets.registered_on_a_server(&dir.join("server")).await?;
    let sink = vec!["--sink".to_owned(), format!("remote-write={url}")];
    let collector = CollectorProcess::start(&server.url(), &dir.join("collector"), &sink)?;
    Ok((server, collector))
}

/// roster's side: `targets` collected by one roster-collector whose only sink is the receiver's [`ROSTER`] path,
/// its server and disk queue in `dir`.
async fn roster_side(
    targets: &Targets,
    receiver: &Receiver,
    dir: &Path,
    window: Duration,
    outage: Duration,
) -> anyhow::Result<Delivery> {
    let (_server, collector) = remote_writing_collector(targets, &receiver.url(ROSTER), dir).await?;
    let collector = &collector;
    // The samples the remote-write sink took into its disk queue, and those it gave up: its in-memory queue was
    // full, or the disk queue's bounds dropped them (`queue full`, `too old`).
    let queued = move || async move {
        let status = collector.status().await?;
        let sink = status.sinks.iter().find(|s| s.kind == "remote-write").context("the remote-write sink's status")?;
        let lost = sink.samples_dropped + sink.samples_discarded.values().sum::<u64>();
        Ok((sink.samples_written + sink.samples_dropped, lost))
    };
    through_an_outage(receiver, ROSTER, collector.pid(), targets.series_per_sec(), window, outage, queued).await
}

/// The agent's side: Prometheus 2.42 in agent mode scraping `targets`, remote-writing to the receiver's [`AGENT`]
/// path, its write-ahead log in `dir`.
async fn agent_side(
    targets: &Targets,
    receiver: &Receiver,
    dir: &Path,
    window: Duration,
    outage: Duration,
) -> anyhow::Result<Delivery> {
    let agent = Agent::start(targets, &dir.join("remote-write-agent"), Some(&receiver.url(AGENT)))?;
    let agent = &agent;
    // The agent retries a 503 until it is taken, and gives up nothing it has appended to its write-ahead log.
    let appended = move || async move { Ok((agent.samples_appended().await? as u64, 0)) };
    through_an_outage(receiver, AGENT, agent.pid(), targets.series_per_sec(), window, outage, appended).await
}

/// Steady delivery of the sender `pid` into `tsdb`, over `window`, counted by what the TSDB's head took; with the
/// TSDB's cores busy from the sender's start until the window's end (its warm-up included, so that a receiver that
/// cannot keep up shows).
async fn into_tsdb(tsdb: &Tsdb, pid: u32, per_sec: f64, window: Duration) -> anyhow::Result<(Measured, f64)> {
    let (cpu, started) = (cpu_time(tsdb.pid())?, Instant::now());
    let measured = measure(pid, per_sec, window, move || tsdb.samples_appended()).await?;
    let cores = (cpu_time(tsdb.pid())? - cpu).as_secs_f64() / started.elapsed().as_secs_f64();
    Ok((measured, cores))
}

/// Steady delivery to Prometheus 2.42 as the receiver, over `window`: roster-collector, then Prometheus's agent,
/// scraping `targets`, each writing to a fresh [`Tsdb`] of its own in `dir`. Each with the TSDB's cores busy.
async fn into_prometheus(
    targets: &Targets,
    dir: &Path,
    window: Duration,
) -> anyhow::Result<((Measured, f64), (Measured, f64))> {
    let per_sec = targets.series_per_sec();
    let roster = {
        let tsdb = Tsdb::start(&dir.join("tsdb-roster"))?;
        let (_server, collector) =
            remote_writing_collector(targets, &tsdb.write_url(), &dir.join("tsdb-roster-collector")).await?;
        into_tsdb(&tsdb, collector.pid(), per_sec, window).await?
    };
    let agent = {
        let tsdb = Tsdb::start(&dir.join("tsdb-agent"))?;
        let agent = Agent::start(targets, &dir.join("tsdb-agent-wal"), Some(&tsdb.write_url()))?;
        into_tsdb(&tsdb, agent.pid(), per_sec, window).await?
    };
    Ok((roster, agent))
}

/// The scenario: `scale.scrape_targets` targets of [`SERIES_PER_TARGET`] series at a 1 s interval, scraped by
/// roster-collector and then by Prometheus's agent, each delivering to the in-memory receiver through a steady
/// window of `scale.scrape_window_secs`, an outage of `scale.outage_secs` and the catch-up after it; then each
/// delivering to Prometheus 2.42 as the receiver through a steady window of half as long.
///
/// # Errors
/// When a process fails, `$ROSTER_PROMETHEUS` is unset, a sender does not reach the full rate or drain its backlog
/// within [`LIMIT`], or roster-collector gives up samples.
pub async fn remote_write_vs_prometheus(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let n = scale.scrape_targets;
    let (window, outage) = (Duration::from_secs(scale.scrape_window_secs), Duration::from_secs(scale.outage_secs));
    let targets = Targets::start(n).await?;
    let receiver = Receiver::start(&[ROSTER, AGENT]).await?;
    let roster = roster_side(&targets, &receiver, &dir.join("remote-write-roster"), window, outage).await?;
    let agent = agent_side(&targets, &receiver, dir, window, outage).await?;
    let ((roster_tsdb, roster_tsdb_cores), (agent_tsdb, agent_tsdb_cores)) =
        into_prometheus(&targets, dir, window / 2).await?;

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let drained_per_sec = |d: &Delivery| d.backlog as f64 / d.drain.as_secs_f64();
    let catch_up_cpu_per_million = |d: &Delivery| d.drain_cpu.as_secs_f64() / d.backlog as f64 * 1e6;
    let per_cpu_second = |d: &Delivery| d.backlog as f64 / d.drain_cpu.max(CPU_TICK).as_secs_f64();
    let who = |side: &str, what: &str| {
        format!("{n} targets × {SERIES_PER_TARGET} series at 1 s, {} s outage, {side}: {what}", outage.as_secs())
    };
    let pair = |what: &str, unit: &'static str, value: &dyn Fn(&Delivery) -> f64, target: Option<String>| {
        let ours = Figure::new(SCENARIO, who("roster-collector", what), value(&roster), unit);
        [
            match target {
                Some(target) => ours.against(target),
                None => ours,
            },
            Figure::new(SCENARIO, who("prometheus agent", what), value(&agent), unit),
        ]
    };
    let mut figures = Vec::new();
    figures.extend(pair("steady delivery", "samples/s", &|d| d.steady.samples_per_sec, None));
    figures.extend(pair(
        "steady CPU per million delivered",
        "s",
        &|d| d.steady.cpu_per_million,
        Some(format!("≤ the agent's {:.2} s", agent.steady.cpu_per_million)),
    ));
    figures.extend(pair("lag at the end of the steady window", "samples", &|d| d.lag as f64, None));
    figures.push(
        Figure::new(
            SCENARIO,
            who("roster-collector", "samples given up (queue bounds)"),
            roster.lost as f64,
            "samples",
        )
        .against("0"),
    );
    figures.extend(pair("backlog after the outage", "samples", &|d| d.backlog as f64, None));
    figures.extend(pair(
        "catch-up, backlog drained per second",
        "samples/s",
        &drained_per_sec,
        Some(format!("≥ the agent's {:.0}/s", drained_per_sec(&agent))),
    ));
    figures.extend(pair("catch-up, wait for the first accepted write", "s", &|d| d.first_write.as_secs_f64(), None));
    figures.extend(pair("catch-up, time to drain after it", "s", &|d| d.drain.as_secs_f64(), None));
    figures.extend(pair(
        "catch-up CPU per million delivered",
        "s",
        &catch_up_cpu_per_million,
        Some(format!("≤ the agent's {:.2} s", catch_up_cpu_per_million(&agent))),
    ));
    figures.extend(pair(
        "catch-up, delivered per CPU-second",
        "samples/s per core",
        &per_cpu_second,
        Some("≥ 1 000 000".to_owned()),
    ));
    figures.extend(pair(
        "catch-up, the harness's cores busy (receiver and targets)",
        "cores",
        &|d| d.harness_cpu.as_secs_f64() / d.drain.as_secs_f64(),
        None,
    ));
    figures.extend(pair("steady RSS", "MiB", &|d| mib(d.steady.rss), None));
    figures.extend(pair("peak RSS", "MiB", &|d| mib(d.peak), None));
    let into = |side: &str, what: &str| {
        format!("{n} targets × {SERIES_PER_TARGET} series at 1 s, into prometheus 2.42, {side}: {what}")
    };
    figures.push(Figure::new(
        SCENARIO,
        into("roster-collector", "steady delivery"),
        roster_tsdb.samples_per_sec,
        "samples/s",
    ));
    figures.push(Figure::new(
        SCENARIO,
        into("prometheus agent", "steady delivery"),
        agent_tsdb.samples_per_sec,
        "samples/s",
    ));
    figures.push(
        Figure::new(
            SCENARIO,
            into("roster-collector", "steady CPU per million delivered"),
            roster_tsdb.cpu_per_million,
            "s",
        )
        .against(format!("≤ the agent's {:.2} s", agent_tsdb.cpu_per_million)),
    );
    figures.push(Figure::new(
        SCENARIO,
        into("prometheus agent", "steady CPU per million delivered"),
        agent_tsdb.cpu_per_million,
        "s",
    ));
    for (side, cores) in [("roster-collector", roster_tsdb_cores), ("prometheus agent", agent_tsdb_cores)] {
        figures.push(Figure::new(SCENARIO, into(side, "the receiving prometheus's cores busy"), cores, "cores"));
    }
    Ok(figures)
}
