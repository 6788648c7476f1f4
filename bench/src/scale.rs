//! The fleet-scale scenarios of issue 17: a million producers renewing while a thousand collectors watch
//! ([`renewals`]), the server's start with a million producers stored ([`restart`]), and a store wiped under
//! live producers ([`store_wipe`]). It owns the load they share: a fleet of producers named by index
//! ([`Producers`]) and the renewal driver ([`drive`]), which keeps many registrations in flight over a few HTTP/2
//! connections, paced at a target rate, rather than a task per producer.
//!
//! A renewal is what a registrant sends every quarter of its lease: `RegisterProducer` again with the very same
//! spec. The followers are the library's own ([`Fleet`]), without state files: their fsyncs would share this
//! machine's disk with the server's commits, which a collector on its own machine does not.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use roster::{
    domain::ProducerId,
    follower::{FollowerEvent, assembler::Snapshot},
    pb::{self, registry_client::RegistryClient},
};
use roster_server::DEFAULT_LEASE;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{
    Figure, Scale,
    fleet::Fleet,
    ms, percentiles,
    scenarios::{LIMIT, STEADY},
    server::ServerProcess,
};

/// Connections the driver's registrations share (HTTP/2: many calls in flight on each).
pub const CONNECTIONS: usize = 8;
/// Registrations the driver keeps in flight: enough to fill the registry's next batch (up to 512 commands, one
/// commit) while one commits.
pub const IN_FLIGHT: usize = 1024;
/// Different values of the second label: producers share them, as a fleet's racks or zones do.
const SHARDS: usize = 1000;
/// Longest the store-wipe scenario renews before the wipe (its producers' renewals in their steady state).
const WARM_UP: Duration = Duration::from_secs(15);
/// The new store's settle period in the store-wipe scenario: longer than the fleet takes to register again, so
/// what is measured is the followers carrying producers, not the store settling.
const WIPE_SETTLE: &str = "5m";

/// `count` producers with ids from a random base, each a never-due producer ([`roster_testkit::never_due`]) with
/// two labels; the `i`-th is registered, and renewed, with the same request each time.
#[derive(Debug, Clone)]
pub struct Producers {
    base: u128,
    count: usize,
    template: pb::RegisterProducerRequest,
}

impl Producers {
    /// `count` new producers.
    ///
    /// # Errors
    /// When `count` is above 2³², the ids an index can make.
    pub fn new(count: usize) -> anyhow::Result<Self> {
        ensure!(count as u128 <= 1 << 32, "{count} producers: at most 2^32 are named by index");
        // A random (version 4) UUID with its low 32 bits cleared: never nil, and each id is the base plus its index.
        let base = uuid::Uuid::new_v4().as_u128() & !u128::from(u32::MAX);
        Ok(Self { base, count, template: roster_testkit::never_due() })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th producer's id.
    pub fn id(&self, i: usize) -> ProducerId {
        ProducerId(uuid::Uuid::from_u128(self.base | i as u128))
    }

    /// The index of `id`, if it is one of these producers.
    pub fn index(&self, id: ProducerId) -> Option<usize> {
        let value = id.0.as_u128();
        let i = (value & u128::from(u32::MAX)) as usize;
        (value & !u128::from(u32::MAX) == self.base && i < self.count).then_some(i)
    }

    /// The `i`-th producer's registration (and renewal).
    pub fn request(&self, i: usize) -> pb::RegisterProducerRequest {
        let mut request = self.template.clone();
        request.producer_id = self.id(i).to_string();
        request.labels =
            [("job".to_owned(), "roster-bench".to_owned()), ("shard".to_owned(), (i % SHARDS).to_string())]
                .into_iter()
                .collect();
        request
    }
}

/// What [`drive`] sends: the `k`-th request registers producer `k mod len`, at most `sends` of them, none after
/// `until` (neither scheduled after it nor, when the server falls behind the schedule, sent after it); at `rate`
/// per second from the start if given, else as fast as [`IN_FLIGHT`] calls allow.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Target requests per second; `None` for as many as the server answers.
    pub rate: Option<f64>,
    /// Most requests sent.
    pub sends: u64,
    /// No request is sent after this.
    pub until: Instant,
}

/// What [`drive`] did.
#[derive(Debug, Default)]
pub struct Driven {
    /// Requests answered OK.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// The first failure, to name it.
    pub first_error: Option<String>,
    /// From the first request sent to the last answer.
    pub took: Duration,
    /// Each OK request's latency, milliseconds, from its send to its answer.
    pub latency_ms: Vec<f64>,
}

impl Driven {
    /// OK answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.took.as_secs_f64()
    }

    /// An error naming the first failure if any request failed.
    ///
    /// # Errors
    /// When one did.
    pub fn all_ok(&self, what: &str) -> anyhow::Result<()> {
        match &self.first_error {
            Some(e) => {
                bail!("{what}: {} of {} requests failed, the first with {e}", self.failed, self.failed + self.ok)
            }
            None => Ok(()),
        }
    }
}

/// `clients` connections to `url` for [`drive`].
///
/// # Errors
/// When one cannot connect.
pub async fn connect(url: &str, clients: usize) -> anyhow::Result<Vec<RegistryClient<Channel>>> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(RegistryClient::new(crate::channel(url).await?));
    }
    Ok(connected)
}

/// Sends `plan`'s registrations of `producers` with [`IN_FLIGHT`] calls in flight over `clients`, until the plan
/// is done or `stop` is cancelled. A failed call is counted and the plan goes on (a renewal missed is renewed on
/// the next round); the caller decides whether failures were expected.
///
/// # Errors
/// When a sending task panics.
pub async fn drive(
    clients: Vec<RegistryClient<Channel>>,
    producers: Arc<Producers>,
    plan: Plan,
    stop: CancellationToken,
) -> anyhow::Result<Driven> {
    ensure!(!clients.is_empty() && !producers.is_empty(), "a drive needs a client and a producer");
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..IN_FLIGHT {
        let mut client = clients[worker % clients.len()].clone();
        let (next, producers, stop) = (Arc::clone(&next), Arc::clone(&producers), stop.clone());
        tasks.spawn(async move {
            let mut driven = Driven::default();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= plan.sends || stop.is_cancelled() {
                    break;
                }
                if let Some(rate) = plan.rate {
                    let at = start + Duration::from_secs_f64(k as f64 / rate);
                    if at.into_std() > plan.until || Instant::now() > plan.until {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = stop.cancelled() => break,
                    }
                } else if Instant::now() > plan.until {
                    break;
                }
                let request = producers.request((k % producers.len() as u64) as usize);
                let sent = Instant::now();
                match client.register_producer(request).await {
                    Ok(_) => {
                        driven.ok += 1;
                        driven.latency_ms.push(ms(sent.elapsed()));
                    }
                    Err(status) => {
                        driven.failed += 1;
                        driven.first_error.get_or_insert_with(|| format!("{}: {}", status.code(), status.message()));
                    }
                }
            }
            driven
        });
    }
    let mut all = Driven::default();
    while let Some(done) = tasks.join_next().await {
        let driven = done.context("a registration task")?;
        all.ok += driven.ok;
        all.failed += driven.failed;
        if all.first_error.is_none() {
            all.first_error = driven.first_error;
        }
        all.latency_ms.extend(driven.latency_ms);
    }
    all.took = start.elapsed();
    Ok(all)
}

/// Starts followers of `collectors` new ids and lets them go (each stays eligible for the server's grace period),
/// registers every producer, then starts followers of the same ids again and [`settle`]s them: each collector is
/// known before any producer registers, so every producer is assigned once, and each follower's first snapshot
/// holds all of its producers. (Followers that joined after the producers registered would each move a share of
/// them, a new generation for every collector that shares it: 85 s of churn for 1 000 followers and 100 000
/// producers.) Returns the followers, the registrations, and the time the second followers took to settle.
async fn watched(
    url: &str,
    producers: &Arc<Producers>,
    collectors: usize,
) -> anyhow::Result<(Fleet, Driven, Duration)> {
    let first = Fleet::start(url, Fleet::random_ids(collectors), None)?;
    first.wait("every follower's first snapshot", LIMIT, |h| h.iter().all(|h| h.applied.borrow().is_some())).await?;
    let ids = first.ids.clone();
    first.stop();
    drop(first);
    let registered = register_all(url, producers).await?;
    let fleet = Fleet::start(url, ids, None)?;
    let synced = settle(&fleet, producers.len()).await?;
    Ok((fleet, registered, synced))
}

/// Registers every producer once, as fast as the server answers.
async fn register_all(url: &str, producers: &Arc<Producers>) -> anyhow::Result<Driven> {
    let plan = Plan { rate: None, sends: producers.len() as u64, until: Instant::now() + LIMIT };
    let driven = drive(connect(url, CONNECTIONS).await?, Arc::clone(producers), plan, CancellationToken::new()).await?;
    driven.all_ok("registering the producers")?;
    Ok(driven)
}

/// Each follower's applied (epoch, generation).
fn generations(fleet: &Fleet) -> Vec<Option<(uuid::Uuid, u64)>> {
    fleet.handles.iter().map(|h| h.applied.borrow().as_ref().map(|s| (s.epoch, s.generation))).collect()
}

/// How long the fleet's generations must stay put for [`settle`].
const QUIET: Duration = Duration::from_secs(1);

/// Waits until every follower has applied a snapshot, together they hold `count` producers, and no generation
/// changes for [`QUIET`]: the followers' joins have moved every producer they take (L4), so what changes
/// afterwards was caused by what follows. Returns how long that took, the quiet time included.
async fn settle(fleet: &Fleet, count: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let all_applied = |h: &[roster::follower::FollowerHandle]| {
        h.iter().all(|h| h.applied.borrow().is_some()) && Fleet::applied_producers(h) == count
    };
    loop {
        ensure!(start.elapsed() < LIMIT, "the fleet's generations did not stay put for {QUIET:?} within {LIMIT:?}");
        fleet
            .wait(
                "every follower applied and every producer with one",
                LIMIT.saturating_sub(start.elapsed()),
                all_applied,
            )
            .await?;
        let before = generations(fleet);
        tokio::time::sleep(QUIET).await;
        if generations(fleet) == before && all_applied(&fleet.handles) {
            return Ok(start.elapsed());
        }
    }
}

/// Renewals at fleet scale: `scale.fleet_producers` producers registered, `scale.fleet_collectors` followers
/// watching until every producer is applied, then every producer renewed at the rate 5-minute leases need (one
/// renewal per producer per 75 s) for `scale.renewal_secs`, then as fast as the server answers for a third of that.
/// Reports the rates, the renewals' latency, the server's CPU and memory per producer, and whether any follower was
/// sent a new generation (a renewal is no change).
/// The server's lease and grace are an hour ([`STEADY`]), so that nothing lapses or moves while the fleet is set
/// up; a renewal costs the server the same whatever lease it renews.
/// With `then_restart`, the server is then restarted on the same store ([`restart`]'s figures).
///
/// # Errors
/// When the server or a follower fails, a registration fails, or a wait passes [`LIMIT`].
pub async fn renewals(scale: Scale, dir: &Path, then_restart: bool) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let (count, collectors) = (scale.fleet_producers, scale.fleet_collectors);
    let mut server = ServerProcess::start(&dir.join("renewals-server"), "127.0.0.1:0", STEADY)?;
    let url = server.url();
    let producers = Arc::new(Producers::new(count)?);
    let (fleet, registered, synced) = watched(&url, &producers, collectors).await?;
    figures.push(Figure::new(
        "renewals",
        format!("setup: {count} registrations, {IN_FLIGHT} in flight on {CONNECTIONS} connections, none watching"),
        registered.rate(),
        "/s",
    ));
    figures.push(Figure::new(
        "renewals",
        format!("setup: {collectors} followers started until every producer applied, {QUIET:?} quiet included"),
        synced.as_secs_f64(),
        "s",
    ));
    let rss = server.rss_bytes()?;
    figures.push(Figure::new(
        "renewals",
        format!("server RSS, {count} producers, {collectors} watching"),
        rss as f64 / 1_048_576.0,
        "MiB",
    ));
    figures.push(
        Figure::new("renewals", "server RSS per producer", rss as f64 / count as f64 / 1024.0, "KiB")
            .against("≤ 1 KiB"),
    );

    // Every producer renews once per quarter of the default lease, for `renewal_secs`; then as fast as the server
    // answers, for a third of that: how far above the need it goes.
    let rate = count as f64 / (DEFAULT_LEASE.as_secs_f64() / 4.0);
    let window = Duration::from_secs(scale.renewal_secs);
    let before = generations(&fleet);
    for (pace, window) in [(Some(rate), window), (None, window / 3)] {
        let (mut renewed, cpu) = renew(&url, &producers, &server, pace, window).await?;
        let name = |what: &str| format!("{what} ({} renewals in {:.1} s)", renewed.ok, renewed.took.as_secs_f64());
        figures.push(match pace {
            Some(rate) => {
                Figure::new("renewals", name(&format!("sustained, target {rate:.0}/s")), renewed.rate(), "/s")
                    .against("≥ 13 333/s at 1 000 000 producers")
            }
            None => Figure::new("renewals", name("as fast as answered"), renewed.rate(), "/s"),
        });
        let (p50, p99, max) = percentiles(&mut renewed.latency_ms);
        figures.push(Figure::new("renewals", name("latency p50"), p50, "ms"));
        figures.push(Figure::new("renewals", name("latency p99"), p99, "ms"));
        figures.push(Figure::new("renewals", name("latency max"), max, "ms"));
        figures.push(Figure::new("renewals", name("server CPU"), cpu, "cores"));
    }
    // Generations bumped by the renewals would be sent within milliseconds; give them a second to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bumped = generations(&fleet).iter().zip(&before).filter(|(after, before)| after != before).count();
    figures.push(
        Figure::new("renewals", "followers sent a new generation while renewing", bumped as f64, "").against("0"),
    );
    let (rss, peak) = crate::server::memory(server.pid())?;
    figures.push(Figure::new(
        "renewals",
        "server RSS after renewing, per producer",
        rss as f64 / count as f64 / 1024.0,
        "KiB",
    ));
    figures.push(Figure::new("renewals", "server peak RSS (VmHWM)", peak as f64 / 1_048_576.0, "MiB"));
    fleet.stop();
    drop(fleet);
    if then_restart {
        figures.extend(time_restart(&mut server, count).await?);
    }
    Ok(figures)
}

/// Renews every producer for `window`, at `rate` per second or, with `None`, as fast as the server answers; every
/// renewal must succeed. Returns what was done and the server's CPU meanwhile, in cores.
async fn renew(
    url: &str,
    producers: &Arc<Producers>,
    server: &ServerProcess,
    rate: Option<f64>,
    window: Duration,
) -> anyhow::Result<(Driven, f64)> {
    let sends = rate.map_or(u64::MAX, |rate| (rate * window.as_secs_f64()).ceil() as u64);
    let plan = Plan { rate, sends, until: Instant::now() + window };
    let cpu_before = server.cpu_time()?;
    let renewed =
        drive(connect(url, CONNECTIONS).await?, Arc::clone(producers), plan, CancellationToken::new()).await?;
    renewed.all_ok("renewing")?;
    let cpu = (server.cpu_time()? - cpu_before).as_secs_f64() / renewed.took.as_secs_f64();
    Ok((renewed, cpu))
}

/// The server's start with `scale.fleet_producers` producers stored: registered (none watching), the server
/// stopped with SIGTERM and started again on the same store.
///
/// # Errors
/// When the server fails, a registration fails, or it does not serve within 60 s.
pub async fn restart(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut server = ServerProcess::start(&dir.join("restart-server"), "127.0.0.1:0", &[])?;
    let producers = Arc::new(Producers::new(scale.fleet_producers)?);
    register_all(&server.url(), &producers).await?;
    time_restart(&mut server, scale.fleet_producers).await
}

/// Stops `server` (SIGTERM), starts it on the same store and times it to its "serving" line (logged once the
/// store is loaded) and to its first answer, a page of one producer whose total must be `count`.
async fn time_restart(server: &mut ServerProcess, count: usize) -> anyhow::Result<Vec<Figure>> {
    let stopping = Instant::now();
    server.stop("-TERM")?;
    let stopped = stopping.elapsed();
    let start = Instant::now();
    server.restart()?;
    let serving = start.elapsed();
    let mut client = RegistryClient::new(crate::channel(&server.url()).await?);
    let page = client
        .list_producers(pb::ListProducersRequest { page_size: Some(1), ..Default::default() })
        .await
        .context("the first call after the restart")?
        .into_inner();
    let answered = start.elapsed();
    ensure!(page.total_count == count as u64, "the restarted server lists {} producers, not {count}", page.total_count);
    let rss = server.rss_bytes()?;
    let name = |what: &str| format!("{what}, {count} producers stored");
    Ok(vec![
        Figure::new("restart", name("stop (SIGTERM to exit)"), ms(stopped), "ms"),
        Figure::new("restart", name("start to \"serving\" logged"), ms(serving), "ms"),
        Figure::new("restart", name("start to the first call answered"), ms(answered), "ms").against("≤ 10 s"),
        Figure::new("restart", name("server RSS once serving"), rss as f64 / 1_048_576.0, "MiB"),
    ])
}

/// Which followers hold each producer: the union of their applied sets, and the part of it applied from the new
/// epoch's own snapshots (not carried), kept as counts updated on every applied snapshot.
struct Coverage {
    producers: Arc<Producers>,
    /// Each follower's last applied snapshot.
    applied: Vec<Option<Arc<Snapshot>>>,
    /// Per producer: followers holding it (carried or not), and followers holding it from a new epoch's snapshot.
    held: Vec<u32>,
    fresh: Vec<u32>,
    /// Producers with a nonzero count in `held` and in `fresh`.
    covered: usize,
    covered_fresh: usize,
    /// The epoch before the wipe: any other is new.
    old_epoch: uuid::Uuid,
}

impl Coverage {
    fn new(producers: Arc<Producers>, followers: usize, old_epoch: uuid::Uuid) -> Self {
        let count = producers.len();
        Self {
            producers,
            applied: vec![None; followers],
            held: vec![0; count],
            fresh: vec![0; count],
            covered: 0,
            covered_fresh: 0,
            old_epoch,
        }
    }

    /// Follower `follower` applied `snapshot`: its new set is counted before its old one is taken away, so the
    /// union is never seen smaller than it was.
    fn apply(&mut self, follower: usize, snapshot: Arc<Snapshot>) {
        self.count(&snapshot, true);
        if let Some(old) = self.applied[follower].replace(snapshot) {
            self.count(&old, false);
        }
    }

    fn count(&mut self, snapshot: &Snapshot, add: bool) {
        let new_epoch = snapshot.epoch != self.old_epoch;
        for target in &snapshot.targets {
            let Some(i) = self.producers.index(target.id) else { continue };
            let fresh = new_epoch && snapshot.carried.binary_search(&target.id).is_err();
            Self::step(&mut self.held[i], &mut self.covered, add);
            if fresh {
                Self::step(&mut self.fresh[i], &mut self.covered_fresh, add);
            }
        }
    }

    fn step(holders: &mut u32, covered: &mut usize, add: bool) {
        if add {
            *covered += usize::from(*holders == 0);
            *holders += 1;
        } else {
            *holders -= 1;
            *covered -= usize::from(*holders == 0);
        }
    }
}

/// A store wiped under live producers (the new-epoch rule, C3): `scale.producers` producers renewing every quarter
/// of a `scale.wipe_lease_secs` lease while `scale.collectors` followers watch; the server is stopped, its data
/// directory deleted and the server started again (a new epoch). Every applied snapshot of every follower, from
/// before the wipe until every producer is applied from the new epoch's own snapshots, updates the union of the
/// followers' sets; reports its smallest size over that time (every producer must stay collected), and the time
/// from the wipe until every producer is back (or, if they are not all back within [`LIMIT`], how many are).
///
/// # Errors
/// When the server or a follower fails, a registration fails before the wipe, the harness misses an applied
/// snapshot, or a wait passes [`LIMIT`].
pub async fn store_wipe(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let (count, lease) = (scale.producers, Duration::from_secs(scale.wipe_lease_secs));
    let data = dir.join("wipe-server");
    let lease_flag = format!("{}s", lease.as_secs());
    let mut server =
        ServerProcess::start(&data, "127.0.0.1:0", &["--lease", &lease_flag, "--settle-period", WIPE_SETTLE])?;
    let url = server.url();
    let producers = Arc::new(Producers::new(count)?);
    let (fleet, ..) = watched(&url, &producers, scale.collectors).await?;
    let old_epoch = fleet.handles[0].applied.borrow().as_ref().map(|s| s.epoch).context("an applied snapshot")?;

    // The coverage counts every applied snapshot, forwarded from each follower's events (none is skipped, as a
    // watch would skip those replaced before it is read; a lag is an error).
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(usize, Arc<Snapshot>), String>>();
    let mut forwarders = tokio::task::JoinSet::new();
    let mut coverage = Coverage::new(Arc::clone(&producers), fleet.handles.len(), old_epoch);
    for (follower, handle) in fleet.handles.iter().enumerate() {
        let mut events = handle.events.subscribe();
        if let Some(snapshot) = handle.applied.borrow().clone() {
            coverage.apply(follower, snapshot);
        }
        let (tx, stop) = (tx.clone(), stop.clone());
        forwarders.spawn(async move {
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    () = stop.cancelled() => break,
                };
                let sent = match event {
                    Ok(FollowerEvent::Applied(snapshot)) => tx.send(Ok((follower, snapshot))),
                    Ok(_) => Ok(()),
                    Err(RecvError::Lagged(missed)) => {
                        tx.send(Err(format!("follower {follower}: {missed} events missed")))
                    }
                    Err(RecvError::Closed) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    ensure!(coverage.covered == count, "{} of {count} producers applied before the wipe", coverage.covered);

    // Renewals as the producers send them: each once per quarter of its lease, spread evenly; through the outage
    // they fail, and each is sent again on its next round.
    let interval = lease / 4;
    let rate = count as f64 / interval.as_secs_f64();
    let renewing = {
        let plan = Plan { rate: Some(rate), sends: u64::MAX, until: Instant::now() + 2 * LIMIT };
        tokio::spawn(drive(connect(&url, CONNECTIONS).await?, Arc::clone(&producers), plan, stop.clone()))
    };
    // Renewals in their steady state before the wipe.
    tokio::time::sleep(interval.min(WARM_UP)).await;

    let wiping = Instant::now();
    server.stop("-TERM")?;
    std::fs::remove_dir_all(&data).with_context(|| format!("wipe {}", data.display()))?;
    server.restart()?;
    let serving = wiping.elapsed();
    let mut lowest = coverage.covered;
    // Until every producer is applied from the new epoch, or LIMIT: either way the figures say how far it got.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while coverage.covered_fresh < count {
        let (follower, snapshot) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(applied))) => applied,
            Ok(Some(Err(missed))) => bail!("the harness missed applied snapshots: {missed}"),
            Ok(None) => bail!("every follower's events closed"),
            Err(_) => break,
        };
        coverage.apply(follower, snapshot);
        lowest = lowest.min(coverage.covered);
    }
    let waited = wiping.elapsed();
    stop.cancel();
    let renewed = renewing.await.context("the renewal driver")??;
    while forwarders.join_next().await.is_some() {}
    fleet.stop();
    let name = |what: &str| format!("{what} ({count} producers, {} collectors, lease {lease_flag})", scale.collectors);
    Ok(vec![
        Figure::new("store wipe", name("renewals/s needed"), rate, "/s"),
        Figure::new("store wipe", name("wipe to serving again"), ms(serving), "ms"),
        Figure::new(
            "store wipe",
            name("lowest share of producers applied by some collector"),
            100.0 * lowest as f64 / count as f64,
            "%",
        )
        .against("100 %"),
        Figure::new(
            "store wipe",
            name("share applied from the new epoch's own snapshots when the wait ended"),
            100.0 * coverage.covered_fresh as f64 / count as f64,
            "%",
        )
        .against(format!("100 % within {LIMIT:?}")),
        Figure::new("store wipe", name("wipe to the end of that wait"), waited.as_secs_f64(), "s")
            .against(format!("one renewal interval, {interval:?}")),
        Figure::new(
            "store wipe",
            name("renewals refused or lost while the server was away"),
            renewed.failed as f64,
            "",
        ),
    ])
}
