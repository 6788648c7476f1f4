//! The scenarios of issue 18: roster-server replicas sharing one PostgreSQL database (`--store postgres://…`).
//! The database is a real PostgreSQL 15 of the harness's own ([`TestPostgres`]: `fsync` on, on loopback), fresh for
//! each scenario (and each row of [`registrations`]), so none inherits another's rows; the replicas are real
//! `roster-server` processes ([`ServerProcess`]).
//!
//! - [`registrations`]: durable registrations per second with 16 clients, on SQLite (one server, beside it for the
//!   comparison), on PostgreSQL with one replica, with three (the clients on one of them, then spread over them),
//!   and with three while collectors watch from elsewhere.
//! - [`propagation`]: a change written through one replica, timed until a follower of another replica applied it.
//! - [`failover`]: `kill -9` of the leading replica, timed until another leads (its `roster_server_leader` gauge),
//!   until a write through a survivor is acknowledged, and until every follower applied it; the killed replica is
//!   replaced (started again on its address) and the new leader killed in turn.
//!
//! The replicas of a scenario are started one after the other: the first creates the schema and the epoch.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use roster::pb::registry_client::RegistryClient;
use roster_testkit::TestPostgres;

use crate::{
    Figure, Scale,
    fleet::{Fleet, RemoteWatchers, register_many, register_spread},
    ms,
    prometheus::metric_total,
    scenarios::{LIMIT, STEADY, time_changes},
    server::ServerProcess,
};

/// Concurrent clients of the registration figures, each on its own connection (the figure).
pub const CLIENTS: usize = 16;
/// Producers stored before the failovers, so that the followers carry some.
pub const FAILOVER_PRODUCERS: usize = 1_000;
/// Followers in the failover scenario: one starting on each replica, each knowing all three.
pub const FAILOVER_FOLLOWERS: usize = 3;
/// How often the failover scenario polls the replicas' metrics and retries a refused write.
const POLL: Duration = Duration::from_millis(5);
/// The gauge that is 1 while a replica leads.
const LEADER_GAUGE: &str = "roster_server_leader";

/// Replicas of roster-server sharing one PostgreSQL database of their own.
#[derive(Debug)]
pub struct Replicas {
    /// The replicas, in the order they were started. Declared before the database, so dropped before it: no replica
    /// sees its store vanish under it.
    pub servers: Vec<ServerProcess>,
    /// The database, held only to keep it running while the replicas are (it stops when dropped).
    _postgres: TestPostgres,
}

impl Replicas {
    /// A fresh PostgreSQL database and `count` replicas on it, with `extra` flags, each on an OS-chosen port of
    /// 127.0.0.1; returns once every replica serves.
    ///
    /// # Errors
    /// When a replica does not start. (PostgreSQL's tools missing, or PostgreSQL not starting, is a panic naming
    /// them: [`TestPostgres::start`].)
    pub async fn start(count: usize, extra: &[&str]) -> anyhow::Result<Self> {
        let postgres = TestPostgres::start().await;
        let servers = (0..count)
            .map(|_| ServerProcess::start_on(&postgres.url(), "127.0.0.1:0", extra))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { servers, _postgres: postgres })
    }

    /// Each replica's `http://ADDR`.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(ServerProcess::url).collect()
    }

    /// The CPU time every replica used so far.
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        self.servers.iter().map(ServerProcess::cpu_time).sum()
    }
}

/// Durable registrations per second with [`CLIENTS`] clients, `scale.producers` new producers each time,
/// acknowledged only once committed: SQLite and one server; PostgreSQL and one replica; PostgreSQL and three, every
/// client on one of them; three, the clients spread over them; and the same with `scale.collectors` collectors
/// watching from elsewhere ([`RemoteWatchers`], spread over the replicas too). With the CPU the servers used
/// meanwhile, in cores.
///
/// # Errors
/// When a server fails, a registration fails, or the watchers do not apply every producer within [`LIMIT`].
pub async fn registrations(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let count = scale.producers;
    let mut figures = Vec::new();
    let mut push = |what: &str, took: Duration, cpu: Duration, target: &str| {
        let name = format!("{what}: {count} new producers, {CLIENTS} clients");
        figures
            .push(Figure::new("replica registrations", &name, count as f64 / took.as_secs_f64(), "/s").against(target));
        figures.push(Figure::new(
            "replica registrations",
            format!("{name}: server CPU"),
            cpu.as_secs_f64() / took.as_secs_f64(),
            "cores",
        ));
    };

    let server = ServerProcess::start(&dir.join("replica-registrations-sqlite"), "127.0.0.1:0", &[])?;
    let before = server.cpu_time()?;
    let (_, took) = register_many(&server.url(), count, CLIENTS).await?;
    push("SQLite, one server, none watching", took, server.cpu_time()? - before, "");
    drop(server);

    // Three replicas with every client on the first: what the other replicas' following costs, without their
    // writes contending for the store's write lock.
    for (replicas, clients_on, what, target) in [
        (1, 1, "1 replica", ""),
        (3, 1, "3 replicas, every client on one of them", ""),
        (3, 3, "3 replicas, the clients spread over them", "≥ 5 000/s"),
    ] {
        let set = Replicas::start(replicas, &[]).await?;
        let before = set.cpu_time()?;
        let (_, took) = register_spread(&set.urls()[..clients_on], count, CLIENTS).await?;
        let what = format!("PostgreSQL, {what}, none watching");
        push(&what, took, set.cpu_time()? - before, target);
    }

    let set = Replicas::start(3, STEADY).await?;
    let watchers = RemoteWatchers::start(&set.urls(), &Fleet::random_ids(scale.collectors)).await?;
    let before = set.cpu_time()?;
    let (_, took) = register_spread(&set.urls(), count, CLIENTS).await?;
    let cpu = set.cpu_time()? - before;
    watchers.wait_for(count, LIMIT).await?;
    push(&format!("PostgreSQL, 3 replicas, {} collectors watching from elsewhere", scale.collectors), took, cpu, "");
    Ok(figures)
}

/// Propagation across replicas: three replicas; `scale.collectors` followers (with state files, as the propagation
/// scenario's) follow replica B; `scale.producers` producers are registered through replica A, then
/// `scale.changes` single changes through A are timed until the follower of their collector, on B, applied them
/// ([`time_changes`]).
///
/// # Errors
/// When a server or follower fails, or a wait passes [`LIMIT`].
pub async fn propagation(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let set = Replicas::start(3, STEADY).await?;
    let urls = set.urls();
    let (written, followed) = (&urls[0], &urls[1]);
    let state = dir.join("replica-propagation-followers");
    std::fs::create_dir_all(&state)?;
    let fleet = Fleet::start(followed, Fleet::random_ids(scale.collectors), Some(&state))?;
    fleet.wait("every follower's first snapshot", LIMIT, |h| h.iter().all(|h| h.applied.borrow().is_some())).await?;
    let (_, took) = register_many(written, scale.producers, CLIENTS).await?;
    fleet.wait("every producer applied", LIMIT, |h| Fleet::applied_producers(h) == scale.producers).await?;
    let mut figures = vec![Figure::new(
        "replica propagation",
        format!(
            "setup: {} registrations through replica A by {CLIENTS} clients, {} collectors following replica B",
            scale.producers, scale.collectors
        ),
        scale.producers as f64 / took.as_secs_f64(),
        "/s",
    )];
    let times = time_changes(written, &fleet, scale.changes).await?;
    figures.extend(times.figures("replica propagation", "≤ 20 ms"));
    fleet.stop();
    Ok(figures)
}

/// Failover: three replicas, [`FAILOVER_FOLLOWERS`] followers (each knowing every replica, one starting on each)
/// and [`FAILOVER_PRODUCERS`] producers; then `scale.failovers` times: the leading replica is killed with
/// `SIGKILL`, and the scenario times, from the kill, until another replica's `roster_server_leader` gauge is 1,
/// until a registration sent through a survivor (retried until acknowledged) is acknowledged, and until every
/// follower is connected and has applied it; then the killed replica is replaced (started again on its address,
/// so the followers know it). Reports each, and the max of each.
///
/// # Errors
/// When a replica or follower fails, or a wait passes [`LIMIT`].
pub async fn failover(scale: Scale) -> anyhow::Result<Vec<Figure>> {
    let mut set = Replicas::start(3, STEADY).await?;
    let urls = set.urls();
    let fleets = (0..FAILOVER_FOLLOWERS)
        .map(|i| {
            let endpoints: Vec<&str> = urls.iter().cycle().skip(i).take(urls.len()).map(String::as_str).collect();
            Fleet::start(&endpoints.join(","), Fleet::random_ids(1), None)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    register_many(&urls[0], FAILOVER_PRODUCERS, CLIENTS).await?;
    let mut stored = FAILOVER_PRODUCERS;
    in_sync(&fleets, stored).await?;

    let mut figures = Vec::new();
    let (mut led, mut written, mut applied) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for kill in 1..=scale.failovers {
        let leader = leader(&set.servers).await?;
        let survivors: Vec<usize> = (0..set.servers.len()).filter(|&i| i != leader).collect();
        let mut client = RegistryClient::new(crate::channel(&set.servers[survivors[0]].url()).await?);
        let metrics: Vec<SocketAddr> = survivors.iter().map(|&i| set.servers[i].metrics_addr).collect();

        let killed = Instant::now();
        set.servers[leader].stop("-KILL")?;
        let request = roster_testkit::never_due();
        let new_leader = async {
            while leads_among(&metrics).await?.is_none() {
                if killed.elapsed() > LIMIT {
                    bail!("no survivor leads {LIMIT:?} after the leader was killed");
                }
                tokio::time::sleep(POLL).await;
            }
            Ok(killed.elapsed())
        };
        let write = async {
            loop {
                match client.register_producer(request.clone()).await {
                    Ok(_) => return Ok(killed.elapsed()),
                    Err(status) if killed.elapsed() > LIMIT => {
                        bail!("a write through a survivor was refused for {LIMIT:?}, the last time with {status}")
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
        };
        stored += 1;
        let applied_everywhere = async {
            in_sync(&fleets, stored).await?;
            Ok(killed.elapsed())
        };
        let (took_lead, took_write, took_applied) = tokio::try_join!(new_leader, write, applied_everywhere)?;
        let name = |what: &str| format!("kill {kill}: {what}");
        figures.push(Figure::new(
            "replica failover",
            name("kill -9 of the leader to another leading"),
            ms(took_lead),
            "ms",
        ));
        figures.push(Figure::new(
            "replica failover",
            name("to a write through a survivor acknowledged"),
            ms(took_write),
            "ms",
        ));
        figures.push(Figure::new(
            "replica failover",
            name(&format!("to every follower ({FAILOVER_FOLLOWERS}) connected and that write applied")),
            ms(took_applied),
            "ms",
        ));
        (led, written, applied) = (led.max(took_lead), written.max(took_write), applied.max(took_applied));
        set.servers[leader].restart().with_context(|| format!("the replacement of replica {leader}"))?;
    }
    let name = |what: &str| format!("max over {} kills: {what}", scale.failovers);
    figures.push(Figure::new("replica failover", name("another leading"), ms(led), "ms").against("≤ 5 s"));
    figures.push(Figure::new("replica failover", name("a write acknowledged"), ms(written), "ms").against("≤ 5 s"));
    figures.push(Figure::new("replica failover", name("every follower connected and in sync"), ms(applied), "ms"));
    Ok(figures)
}

/// Waits until exactly one of `servers` leads (its gauge is 1), bounded by [`LIMIT`]; returns its index.
async fn leader(servers: &[ServerProcess]) -> anyhow::Result<usize> {
    let metrics: Vec<SocketAddr> = servers.iter().map(|s| s.metrics_addr).collect();
    let start = Instant::now();
    loop {
        if let Some(i) = leads_among(&metrics).await? {
            return Ok(i);
        }
        if start.elapsed() > LIMIT {
            bail!("no single replica led within {LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Which of the replicas whose metrics are at `metrics` leads, when exactly one does.
async fn leads_among(metrics: &[SocketAddr]) -> anyhow::Result<Option<usize>> {
    let mut leaders = Vec::new();
    for (i, addr) in metrics.iter().enumerate() {
        if metric_total(*addr, LEADER_GAUGE).await? >= 1.0 {
            leaders.push(i);
        }
    }
    Ok(match leaders.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

/// Waits until every follower of `fleets` is connected and together they hold `stored` producers.
async fn in_sync(fleets: &[Fleet], stored: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let held: usize = fleets.iter().map(|f| Fleet::applied_producers(&f.handles)).sum();
        let connected = fleets.iter().flat_map(|f| &f.handles).all(|h| h.stats.snapshot().connected);
        if connected && held == stored {
            return Ok(());
        }
        if start.elapsed() > LIMIT {
            bail!("followers: {held} of {stored} producers applied, all connected: {connected}, after {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
