//! The scrape scenario: one real `roster-collector` beside Debian's `prometheus` 2.42 in agent mode, the peer it
//! is measured against, scraping the same Prometheus text targets served from memory by this harness
//! ([`prometheus`](crate::prometheus)).
//!
//! The two run one after the other, never together, and each is measured the same way
//! ([`measure`]): once every target is scraped every second
//! (after a warm-up that covers Prometheus's ~5 s service-discovery throttle), over the same window, samples per
//! second as the scraper counts them itself, CPU seconds (`utime + stime` from `/proc/PID/stat`) per million of
//! those samples, and resident memory (`VmRSS` and `VmHWM` from `/proc/PID/status`).
//!
//! What each writes is part of its cost: the collector writes every sample as a JSON line to its sink file in a
//! temporary directory (its only exporter); the agent appends to its write-ahead log there.

use std::{path::Path, time::Duration};

use crate::{
    Figure, Scale,
    collector::CollectorProcess,
    prometheus::{Agent, Measured, SERIES_PER_TARGET, Targets, measure},
};

/// The scenario's name in the figures.
const SCENARIO: &str = "scrape vs prometheus";

/// The collector's side: `targets` registered as Prometheus producers on a fresh roster-server, collected by one
/// roster-collector process writing JSON lines to its sink in `dir`.
async fn roster_side(targets: &Targets, dir: &Path, window: Duration) -> anyhow::Result<Measured> {
    let server = targets.registered_on_a_server(&dir.join("scrape-server")).await?;
    let collector = CollectorProcess::start(&server.url(), &dir.join("scrape-collector"), &[])?;
    let collector = &collector;
    measure(collector.pid(), targets.series_per_sec(), window, move || async move {
        Ok(collector.status().await?.samples_written as f64)
    })
    .await
}

/// The scenario: `scale.scrape_targets` targets of [`SERIES_PER_TARGET`] series at a 1 s interval, scraped by
/// roster-collector and then by Prometheus's agent, each measured over `scale.scrape_window_secs`.
///
/// # Errors
/// When a process fails, `$ROSTER_PROMETHEUS` is unset, or a scraper does not reach the full rate within [`LIMIT`](crate::scenarios::LIMIT).
pub async fn scrape_vs_prometheus(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let n = scale.scrape_targets;
    let window = Duration::from_secs(scale.scrape_window_secs);
    let targets = Targets::start(n).await?;
    let roster = roster_side(&targets, dir, window).await?;
    let agent = {
        let agent = Agent::start(&targets, &dir.join("scrape-agent"), None)?;
        measure(agent.pid(), targets.series_per_sec(), window, || agent.samples_appended()).await?
    };
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let who = |side: &str, what: &str| format!("{n} targets × {SERIES_PER_TARGET} series at 1 s, {side}: {what}");
    Ok(vec![
        Figure::new(SCENARIO, who("roster-collector", "samples/s"), roster.samples_per_sec, "/s"),
        Figure::new(SCENARIO, who("prometheus agent", "samples/s"), agent.samples_per_sec, "/s"),
        Figure::new(SCENARIO, who("roster-collector", "CPU per million samples"), roster.cpu_per_million, "s")
            .against(format!("≤ the agent's {:.2} s", agent.cpu_per_million)),
        Figure::new(SCENARIO, who("prometheus agent", "CPU per million samples"), agent.cpu_per_million, "s"),
        Figure::new(SCENARIO, who("roster-collector", "RSS"), mib(roster.rss), "MiB")
            .against(format!("< the agent's {:.1} MiB", mib(agent.rss))),
        Figure::new(SCENARIO, who("prometheus agent", "RSS"), mib(agent.rss), "MiB"),
        Figure::new(SCENARIO, who("roster-collector", "peak RSS"), mib(roster.peak), "MiB")
            .against(format!("< the agent's {:.1} MiB", mib(agent.peak))),
        Figure::new(SCENARIO, who("prometheus agent", "peak RSS"), mib(agent.peak), "MiB"),
    ])
}
