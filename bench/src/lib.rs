//! roster's benchmark harness: what roster exists for, measured on loopback.
//!
//! The server under test is the real `roster-server` binary, a child process (found next to this binary, or at
//! `$ROSTER_SERVER_BIN`), so its memory and CPU are its own and its store is a real SQLite file with
//! `synchronous=FULL`. Followers are the library's own [`roster::follower::Follower`], many in this process, each
//! with its own connection and, where the scenario says, its own state file. The limit each full sync is compared
//! with is a bare tonic server streaming the very same encoded chunks from memory to bare clients ([`bare`]).
//!
//! The scrape scenario ([`scrape`]) runs a real `roster-collector` and, after it, Debian's `prometheus` 2.42 in
//! agent mode (`$ROSTER_PROMETHEUS`) against the same Prometheus targets served from memory by the harness
//! ([`prometheus`]). The remote-write scenario ([`remote_write`]) does the same with both delivering what they
//! scrape to the harness's own remote-write receiver ([`receiver`]), through an outage of that receiver, and then
//! to Debian's `prometheus` 2.42 started as a remote-write receiver.
//!
//! The fleet-scale scenarios ([`scale`]) hold a million producers renewing while a thousand followers watch,
//! restart the server on their store, and wipe the store under live producers.
//!
//! The replicas scenarios ([`replicas`]) run several roster-servers on one PostgreSQL database (a real
//! PostgreSQL 15 of the harness's own, `fsync` on): registrations per second, propagation from one replica to a
//! follower of another, and failover after `kill -9` of the leader.
//!
//! The TLS scenario ([`tls`]) runs the registration, propagation and idle-stream measurements against a plaintext
//! server and against one serving mutual TLS with authentication on.
//!
//! Numbers are printed as a table (and optionally written as JSON); `BENCHMARKS.md` records them with the
//! machine and the command. The test suite runs the harness at [`Scale::smoke`] to check that it works, never
//! its speed.

pub mod bare;
pub mod collector;
pub mod fleet;
pub mod prometheus;
pub mod receiver;
pub mod remote_write;
pub mod replicas;
pub mod scale;
pub mod scenarios;
pub mod scrape;
pub mod server;
pub mod tls;

/// Sizes of every scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Collectors watching in the propagation and full-sync scenarios.
    pub collectors: usize,
    /// Producers registered in the propagation and full-sync scenarios.
    pub producers: usize,
    /// Changes timed in the propagation scenario.
    pub changes: usize,
    /// Idle Watch streams in the fan-out scenario (two steps).
    pub fanout: [usize; 2],
    /// How long the fan-out scenario watches the idle server's CPU.
    pub idle_secs: u64,
    /// Followers in the reconnect storm.
    pub storm: usize,
    /// Registrations timed with one client, and with 16.
    pub registrations: [usize; 2],
    /// Producers with the largest labels allowed, in the big-snapshot scenario.
    pub big_snapshot: usize,
    /// How long the big-snapshot scenario's burst of changes lasts.
    pub burst_secs: u64,
    /// Prometheus targets scraped by roster-collector and by Prometheus's agent, in the scrape and remote-write
    /// scenarios.
    pub scrape_targets: usize,
    /// How long each scraper is measured, once it scrapes every target every second (in the remote-write
    /// scenario: once its samples reach the receiver every second).
    pub scrape_window_secs: u64,
    /// How long the remote-write receiver answers 503 in the remote-write scenario.
    pub outage_secs: u64,
    /// Producers renewing in the renewals scenario, and stored in the restart scenario.
    pub fleet_producers: usize,
    /// Followers watching in the renewals scenario.
    pub fleet_collectors: usize,
    /// How long the renewals scenario renews at the rate of 5-minute leases.
    pub renewal_secs: u64,
    /// Leaders killed, one after the other, in the replica failover scenario.
    pub failovers: usize,
    /// The lease of the store-wipe scenario's producers (`scale.producers` of them, renewing every quarter of it,
    /// while `scale.collectors` followers watch).
    pub wipe_lease_secs: u64,
}

impl Scale {
    /// The sizes the issue asks for.
    pub const FULL: Self = Self {
        collectors: 100,
        producers: 100_000,
        changes: 1_000,
        fanout: [1_000, 5_000],
        idle_secs: 10,
        storm: 1_000,
        registrations: [2_000, 20_000],
        big_snapshot: 20_000,
        burst_secs: 20,
        scrape_targets: 1_000,
        scrape_window_secs: 30,
        // 30 s at 205 000 samples/s is a backlog of 6.2 M samples, some 0.8 GB of roster-collector's disk queue,
        // within its default bound of 1 GiB: the backlog of a 10-minute outage at 10 000 samples/s.
        outage_secs: 30,
        fleet_producers: 1_000_000,
        fleet_collectors: 1_000,
        renewal_secs: 60,
        failovers: 3,
        // The default lease: renewals every 75 s, 1 333/s for 100 000 producers, the rate at which they all
        // register anew after a wipe (a 1-minute lease asks 6 667/s, beyond what the server takes under watch).
        wipe_lease_secs: 300,
    };

    /// A run of a few seconds that exercises every scenario: for the test suite.
    pub const fn smoke() -> Self {
        Self {
            collectors: 4,
            producers: 400,
            changes: 20,
            fanout: [20, 50],
            idle_secs: 1,
            storm: 20,
            registrations: [50, 200],
            big_snapshot: 200,
            burst_secs: 1,
            scrape_targets: 10,
            scrape_window_secs: 2,
            outage_secs: 5,
            fleet_producers: 2_000,
            fleet_collectors: 10,
            renewal_secs: 2,
            failovers: 1,
            // The shortest lease allowed (`roster::domain::MIN_LEASE`).
            wipe_lease_secs: 10,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Scenario, e.g. `propagation`.
    pub scenario: &'static str,
    /// What was measured, e.g. `applied p99`.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `ms`.
    pub unit: &'static str,
    /// The target it is held against, in words (empty if none).
    pub target: String,
}

impl Figure {
    /// A figure with no target.
    pub fn new(scenario: &'static str, metric: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self { scenario, metric: metric.into(), value, unit, target: String::new() }
    }

    /// The same figure, held against `target`.
    #[must_use]
    pub fn against(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }
}

/// A channel to `url` (`http://host:port`), connected now, made as every roster client makes one
/// ([`roster::transport::ClientOptions`]).
///
/// # Errors
/// When `url` is not `http://host:port` or no connection is made.
pub async fn channel(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    let url = roster::endpoint::ServerUrl::parse(url)?;
    Ok(roster::transport::ClientOptions::default().connect(&url).await?)
}

/// A duration in milliseconds, as the figures give them.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99 and max of `samples` (milliseconds), sorted in place.
pub fn percentiles(samples: &mut [f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_from_the_sorted_samples() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut samples), (50.0, 99.0, 100.0));
        assert!(percentiles(&mut []).0.is_nan());
    }
}
