//! The scenarios of the benchmark: the six, and the server's cost of encoding a full sync. Each that
//! needs a server starts its own roster-server process on a fresh store, so none inherits another's state, and
//! returns its figures.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use prost::Message as _;
use roster::{
    domain::{CollectorId, ProducerId},
    endpoint::ServerUrl,
    follower::{
        FollowerEvent,
        assembler::{Assembler, Event},
        state_file,
        wire::WireResponse,
    },
    pb::{self, assignment_feed_client::AssignmentFeedClient, registry_client::RegistryClient},
    transport::ClientOptions,
};
use roster_server::{
    DEFAULT_CHUNK_LIMITS,
    feed::snapshot::{Assignment, Entry, Snapshot},
};
use roster_testkit::{FaultProxy, per_window};
use tonic::transport::Channel;

use crate::{
    Figure, Scale,
    bare::{self, BareFeed},
    collector::CollectorProcess,
    fleet::{Fleet, RemoteWatchers, register_many},
    ms, percentiles,
    server::{ServerProcess, cpu_time},
};

/// Bound on every wait of the harness.
pub const LIMIT: Duration = Duration::from_secs(300);
/// Server flags for scenarios that stop and start followers: nothing lapses or moves while they do.
pub const STEADY: &[&str] = &["--lease", "1h", "--grace", "1h"];
/// Full-sync runs; the best of each side is compared.
pub const RUNS: usize = 5;

/// Propagation of single changes to 100 collectors watching 100 000 producers, then full sync of the same fleet
/// against the bare limit.
///
/// # Errors
/// When a server or follower fails, or a wait passes [`LIMIT`].
pub async fn propagation_and_full_sync(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let server = ServerProcess::start(&dir.join("propagation-server"), "127.0.0.1:0", STEADY)?;
    let url = server.url();
    let state = dir.join("propagation-followers");
    std::fs::create_dir_all(&state)?;
    let fleet = Fleet::start(&url, Fleet::random_ids(scale.collectors), Some(&state))?;
    fleet.wait("every follower's first snapshot", LIMIT, |h| h.iter().all(|h| h.applied.borrow().is_some())).await?;
    let (_, took) = register_many(&url, scale.producers, 16).await?;
    fleet.wait("every producer applied", LIMIT, |h| Fleet::applied_producers(h) == scale.producers).await?;
    figures.push(Figure::new(
        "propagation",
        format!("setup: {} registrations by 16 clients, {} collectors watching", scale.producers, scale.collectors),
        scale.producers as f64 / took.as_secs_f64(),
        "/s",
    ));
    // Memory once every producer is applied: the registry, its store's cache and every collector's snapshot.
    let rss = server.rss_bytes()?;
    figures.push(Figure::new("propagation", "server RSS after setup", rss as f64 / 1_048_576.0, "MiB"));
    figures.push(Figure::new(
        "propagation",
        "server RSS after setup, per producer",
        rss as f64 / scale.producers as f64 / 1024.0,
        "KiB",
    ));

    let times = time_changes(&url, &fleet, scale.changes).await?;
    figures.extend(times.figures("propagation", "≤ 10 ms"));

    let ids = fleet.ids.clone();
    let total = Fleet::applied_producers(&fleet.handles);
    fleet.stop();
    drop(fleet);
    figures.extend(full_sync(&server, &ids, total, dir, "full sync, fleet").await?);
    Ok(figures)
}

/// Latencies of single changes ([`time_changes`]), in milliseconds from the call to `RegisterProducer`.
#[derive(Debug)]
pub struct ChangeTimes {
    /// Until the call answered: the change committed.
    pub committed: Vec<f64>,
    /// Until the follower of its collector applied it.
    pub applied: Vec<f64>,
    /// Until that follower's `ReportApplied` of it was acknowledged.
    pub reported: Vec<f64>,
}

impl ChangeTimes {
    /// p50, p99 and max of each, as `scenario`'s figures; the applied p99 held against `applied_target`.
    pub fn figures(mut self, scenario: &'static str, applied_target: &str) -> Vec<Figure> {
        let changes = self.committed.len();
        let name = |what: &str| format!("{what} ({changes} changes)");
        let mut figures = Vec::new();
        for (what, samples, target) in [
            ("registration committed", &mut self.committed, ""),
            ("applied by its collector", &mut self.applied, applied_target),
            ("ReportApplied acknowledged", &mut self.reported, ""),
        ] {
            let (p50, p99, max) = percentiles(samples);
            figures.push(Figure::new(scenario, name(&format!("{what}, p50")), p50, "ms"));
            figures.push(Figure::new(scenario, name(&format!("{what}, p99")), p99, "ms").against(target));
            figures.push(Figure::new(scenario, name(&format!("{what}, max")), max, "ms"));
        }
        figures
    }
}

/// `changes` single changes through `url`, one at a time: a new producer, then that producer moved (pinned) to the
/// next collector of `fleet`, each timed until the follower of its collector applied it and until that follower's
/// report was acknowledged. `url` may be another replica than the one `fleet` follows.
///
/// # Errors
/// When a registration fails, a follower's events close, or a change is not applied within [`LIMIT`].
pub async fn time_changes(url: &str, fleet: &Fleet, changes: usize) -> anyhow::Result<ChangeTimes> {
    let index: HashMap<String, usize> = fleet.ids.iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect();
    let mut events: Vec<_> = fleet.handles.iter().map(|h| h.events.subscribe()).collect();
    let mut client = RegistryClient::new(crate::channel(url).await?);
    let (mut committed, mut applied, mut reported) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<(String, usize)> = None;
    for change in 0..changes {
        for rx in &mut events {
            while !matches!(rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)) {}
        }
        let mut request = roster_testkit::never_due();
        if change % 2 == 1
            && let Some((id, from)) = last.take()
        {
            request.producer_id = id;
            request.pinned_collector_id = fleet.ids[(from + 1) % fleet.ids.len()].to_string();
        }
        let producer: ProducerId = request.producer_id.parse()?;
        let start = Instant::now();
        let info = client.register_producer(request).await?.into_inner().producer.context("a producer")?;
        committed.push(ms(start.elapsed()));
        let target = index[&info.assigned_collector_id];
        last = Some((info.id, target));
        let rx = &mut events[target];
        let mut applied_generation = None;
        loop {
            match tokio::time::timeout(LIMIT, rx.recv()).await?? {
                FollowerEvent::Applied(s)
                    if applied_generation.is_none() && s.targets.iter().any(|t| t.id == producer) =>
                {
                    applied.push(ms(start.elapsed()));
                    applied_generation = Some(s.generation);
                }
                FollowerEvent::Reported { generation } if applied_generation.is_some_and(|g| generation >= g) => {
                    reported.push(ms(start.elapsed()));
                    break;
                }
                _ => {}
            }
        }
    }
    Ok(ChangeTimes { committed, applied, reported })
}

/// One collector holding all producers: its full sync against the bare limit.
///
/// # Errors
/// As [`propagation_and_full_sync`].
pub async fn full_sync_one_collector(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let server = ServerProcess::start(&dir.join("one-server"), "127.0.0.1:0", STEADY)?;
    let url = server.url();
    let one = Fleet::start(&url, Fleet::random_ids(1), None)?;
    one.wait("the first snapshot", LIMIT, |h| h[0].applied.borrow().is_some()).await?;
    register_many(&url, scale.producers, 16).await?;
    one.wait("every producer applied", LIMIT, |h| Fleet::applied_producers(h) == scale.producers).await?;
    let ids = one.ids.clone();
    one.stop();
    drop(one);
    full_sync(&server, &ids, scale.producers, dir, "full sync, one collector").await
}

/// Times fresh followers (no state: a full snapshot each, persisted as a collector does) of `ids` until they
/// hold `total` producers, then the bare stream of the same chunks; best of [`RUNS`] each. Beside the times, the
/// CPU each side used in its timed windows, averaged over its runs (`/proc`'s 10 ms ticks, so a run's figure is
/// within 10 ms per process, and the average over the runs closer): the two sides share this machine's cores, so
/// neither's time can fall below its CPU divided by the cores.
///
/// Each run starts once `server` holds no stream of the run before (every collector in grace): a follower that
/// opened its stream while its predecessor's was still open on the server would be refused as a second process
/// with the same collector id, and come back after its reconnect delay (R4: 200 ms or more), which is not what a
/// full sync costs.
async fn full_sync(
    server: &ServerProcess,
    ids: &[CollectorId],
    total: usize,
    dir: &Path,
    scenario: &'static str,
) -> anyhow::Result<Vec<Figure>> {
    let url = &server.url();
    let mut roster_best = Duration::MAX;
    let here = std::process::id();
    let (mut server_cpu, mut followers_cpu) = (Duration::ZERO, Duration::ZERO);
    for run in 0..RUNS {
        let state = dir.join(format!("{scenario}-run{run}").replace([' ', ','], "-"));
        std::fs::create_dir_all(&state)?;
        no_live_collector(server).await?;
        let cpu = (server.cpu_time()?, cpu_time(here)?);
        let start = Instant::now();
        let fleet = Fleet::start(url, ids.to_vec(), Some(&state))?;
        fleet.wait(scenario, LIMIT, |h| Fleet::applied_producers(h) == total).await?;
        roster_best = roster_best.min(start.elapsed());
        server_cpu += server.cpu_time()? - cpu.0;
        followers_cpu += cpu_time(here)? - cpu.1;
        fleet.stop();
    }
    let mut recordings = HashMap::new();
    for id in ids {
        recordings.insert(id.to_string(), bare::capture(url, &id.to_string()).await?);
    }
    let bytes = bare::bytes(&recordings.values().cloned().collect::<Vec<_>>());
    let collectors: Vec<String> = recordings.keys().cloned().collect();
    let (addr, task) = bare::serve(BareFeed { recordings: Arc::new(recordings) }).await?;
    let mut bare_best = Duration::MAX;
    let bare_cpu = cpu_time(here)?;
    for _ in 0..RUNS {
        bare_best = bare_best.min(bare::read_all(addr, &collectors).await?);
    }
    // Nothing else runs between the bare runs.
    let bare_cpu = cpu_time(here)? - bare_cpu;
    task.abort();
    let per_run = |cpu: Duration| ms(cpu) / RUNS as f64;
    let mut figures = vec![
        Figure::new(
            scenario,
            format!("{} collectors, {total} producers, {bytes} snapshot bytes: roster", ids.len()),
            ms(roster_best),
            "ms",
        ),
        Figure::new(scenario, "the same chunks from memory, bare tonic", ms(bare_best), "ms"),
        Figure::new(scenario, "ratio roster / bare", roster_best.as_secs_f64() / bare_best.as_secs_f64(), "×")
            .against("≤ 1.5×"),
        Figure::new(scenario, "CPU per run, roster-server", per_run(server_cpu), "ms"),
        Figure::new(scenario, "CPU per run, followers (assembly, state files, reports)", per_run(followers_cpu), "ms"),
        Figure::new(scenario, "CPU per run, bare tonic (server and clients)", per_run(bare_cpu), "ms"),
    ];
    // A ratio only over enough clock ticks to divide by: a small run (`--scale smoke`) may use none.
    if bare_cpu >= MIN_CPU_TO_COMPARE {
        figures.push(Figure::new(
            scenario,
            "CPU ratio roster / bare",
            (server_cpu + followers_cpu).as_secs_f64() / bare_cpu.as_secs_f64(),
            "×",
        ));
    }
    Ok(figures)
}

/// The least CPU a side must have used, over its runs, for a ratio to it to mean anything: ten of `/proc`'s 10 ms
/// clock ticks.
const MIN_CPU_TO_COMPARE: Duration = Duration::from_millis(100);

/// Waits until `server` counts no collector live (every stream closed and seen closed by its registry), polling its
/// metrics every millisecond.
///
/// # Errors
/// When its metrics cannot be read, or some collector is still live after [`LIMIT`].
async fn no_live_collector(server: &ServerProcess) -> anyhow::Result<()> {
    let start = Instant::now();
    while crate::prometheus::metric_total(server.metrics_addr, "roster_server_collectors{state=\"live\"}").await? > 0.0
    {
        anyhow::ensure!(start.elapsed() < LIMIT, "collectors still live {LIMIT:?} after their followers stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// The server's own cost of turning one collector's assignment of `scale.producers` producers (two labels each)
/// into the frames of a full sync, in this process: as the feed does it (the snapshot built from the entries the
/// registry encoded when the producers registered, then each chunk written straight from them,
/// `roster_server::wire`), and, for reference, as a typed frame would need (a copy of the chunk's producers, then
/// prost's encoding). CPU only, so steadier than the wall-clock scenarios; best of [`RUNS`]. Then a follower's cost
/// of the same snapshot and of its state file, which is written under `dir`.
///
/// # Errors
/// When the state file cannot be written.
pub fn chunk_encoding(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let producers: Vec<pb::AssignedProducer> = (0..scale.producers as u128)
        .map(|i| pb::AssignedProducer {
            id: uuid::Uuid::from_u128(i).to_string(),
            address: format!("10.0.{}.{}:9100", i / 250 % 250, i % 250),
            interval_ms: 1000,
            labels: [("job".to_owned(), "node".to_owned()), ("zone".to_owned(), "eu-west-1a".to_owned())].into(),
            ..Default::default()
        })
        .collect();
    let assignment: Assignment =
        producers.iter().zip(0u128..).map(|(p, i)| (ProducerId(uuid::Uuid::from_u128(i)), Entry::new(p))).collect();
    let build = || Snapshot::build(uuid::Uuid::new_v4(), 7, false, assignment.clone(), DEFAULT_CHUNK_LIMITS);
    let snapshot = build();
    let best = |frames: &dyn Fn() -> usize| {
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(frames());
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let encoded = best(&|| {
        let snapshot = build();
        (0..snapshot.chunk_count()).map(|i| snapshot.encoded_chunk(i).len()).sum()
    });
    let typed = best(&|| {
        (0..snapshot.chunk_count())
            .map(|i| {
                let chunk = pb::SnapshotChunk {
                    producers: producers[snapshot.chunk_range(i)].to_vec(),
                    ..snapshot.chunk_header(i)
                };
                pb::WatchResponse { frame: Some(pb::watch_response::Frame::Chunk(chunk)) }.encode_to_vec().len()
            })
            .sum()
    });
    let what = format!("{} producers, {} chunks", scale.producers, snapshot.chunk_count());
    let mut figures = vec![
        Figure::new(
            "chunk encoding",
            format!("{what}: as the feed sends them (snapshot built, then written)"),
            ms(encoded),
            "ms",
        ),
        Figure::new("chunk encoding", format!("{what}: typed frames (copy, then encode)"), ms(typed), "ms"),
    ];
    figures.extend(assembly(&snapshot, &assignment, &what, dir)?);
    Ok(figures)
}

/// A follower's cost of the same snapshot, from the received messages to the set in force: fresh (a full sync)
/// and as the next generation with one producer changed (what every registration costs each follower of its
/// collector), beside the bare client's cost of decoding the same messages (what `full_sync`'s bare side does);
/// then the save of the set it applied ([`state_file_saves`]).
fn assembly(snapshot: &Snapshot, assignment: &Assignment, what: &str, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let messages = |s: &Snapshot| -> Vec<bytes::Bytes> { (0..s.chunk_count()).map(|i| s.encoded_chunk(i)).collect() };
    let first = messages(snapshot);
    let mut changed = assignment.clone();
    let id = changed.ids_from(std::ops::Bound::Unbounded).next().expect("a producer");
    let mut moved = changed.get(&id).expect("its entry").decode().expect("an entry decodes");
    moved.address = "10.9.9.9:9100".into();
    changed.insert(id, Entry::new(&moved));
    let epoch = snapshot.chunk_header(0).epoch.parse().expect("the epoch is a UUID");
    let next = messages(&Snapshot::build(epoch, 8, false, changed, DEFAULT_CHUNK_LIMITS));
    let read = |assembler: &mut Assembler, messages: &[bytes::Bytes]| {
        for message in messages {
            let frame = WireResponse::decode(message.clone()).expect("a message decodes").frame.expect("a frame");
            for event in assembler.on_wire_frame(frame) {
                assert!(matches!(event, Event::Progress | Event::Applied(_)), "{event:?}");
            }
        }
    };
    let best = |run: &mut dyn FnMut() -> Duration| (0..RUNS).map(|_| run()).min().unwrap_or_default();
    let bare = best(&mut || {
        let start = Instant::now();
        for message in &first {
            std::hint::black_box(pb::WatchResponse::decode(message.clone()).expect("a message decodes"));
        }
        start.elapsed()
    });
    let fresh = best(&mut || {
        let start = Instant::now();
        read(&mut Assembler::new(None), &first);
        start.elapsed()
    });
    let following = best(&mut || {
        let mut assembler = Assembler::new(None);
        read(&mut assembler, &first);
        let start = Instant::now();
        read(&mut assembler, &next);
        start.elapsed()
    });
    let mut assembler = Assembler::new(None);
    read(&mut assembler, &first);
    let saves = state_file_saves(&assembler, dir, what)?;
    let mut figures = vec![
        Figure::new("follower assembly", format!("{what}: decoded by a bare client (prost)"), ms(bare), "ms"),
        Figure::new("follower assembly", format!("{what}: assembled and applied, fresh (full sync)"), ms(fresh), "ms"),
        Figure::new(
            "follower assembly",
            format!("{what}: assembled and applied, next generation with one producer changed"),
            ms(following),
            "ms",
        ),
    ];
    figures.extend(saves);
    Ok(figures)
}

/// The follower's save of the snapshot `assembler` applied, as C5 requires it before the report
/// (`state_file::save_encoded`: temporary file, write, fsync, rename, fsync of the directory), beside the floor
/// C5 sets: the very bytes of that file written the same way by bare `std::fs` calls. Wall time, fsyncs included,
/// to a new file each time (as a new collector's first save), the two taking turns; best of [`RUNS`] each.
fn state_file_saves(assembler: &Assembler, dir: &Path, what: &str) -> anyhow::Result<Vec<Figure>> {
    use std::io::Write as _;

    let applied = assembler.applied().context("an applied snapshot")?;
    let dir = dir.join("state-file-saves");
    std::fs::create_dir_all(&dir)?;
    let directory = std::fs::File::open(&dir)?;
    let (mut roster_best, mut bare_best, mut bytes) = (Duration::MAX, Duration::MAX, Vec::new());
    // Alternately, so that the disk's moods fall on both alike.
    for run in 0..RUNS {
        let path = dir.join(format!("roster-{run}.bin"));
        let start = Instant::now();
        state_file::save_encoded(&path, applied, assembler.applied_encodings(), 1)?;
        roster_best = roster_best.min(start.elapsed());
        if run == 0 {
            bytes = std::fs::read(&path)?;
        }
        let (tmp, path) = (dir.join(format!("bare-{run}.tmp")), dir.join(format!("bare-{run}.bin")));
        let start = Instant::now();
        let mut file = std::fs::File::create(&tmp)?;
        // In 1 MiB writes, as the follower's buffer issues them: one write of the whole file took 19-25 ms instead of
        // 5 in some invocations on this VM.
        for piece in bytes.chunks(1 << 20) {
            file.write_all(piece)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        directory.sync_all()?;
        bare_best = bare_best.min(start.elapsed());
    }
    let size = format!("{what}, a {:.1} MB file", bytes.len() as f64 / 1e6);
    Ok(vec![
        Figure::new("state file save", format!("{size}: as a follower saves it (C5)"), ms(roster_best), "ms"),
        Figure::new(
            "state file save",
            "the same bytes: create, write, fsync, rename, fsync the directory",
            ms(bare_best),
            "ms",
        ),
        Figure::new(
            "state file save",
            "ratio follower / bare",
            roster_best.as_secs_f64() / bare_best.as_secs_f64(),
            "×",
        ),
    ])
}

/// How long the server is left to settle before its memory is read.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Server memory and CPU with idle Watch streams, each on its own connection.
///
/// # Errors
/// When the server fails, a stream cannot open, or `/proc` cannot be read.
pub async fn fan_out(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let server = ServerProcess::start(&dir.join("fanout-server"), "127.0.0.1:0", &[])?;
    let url = ServerUrl::parse(&server.url())?;
    let options = ClientOptions::default();
    let base = settled_rss(server.pid(), &url, &options).await?;
    figures.push(Figure::new("fan-out", "server RSS with no stream", base as f64 / 1_048_576.0, "MiB"));
    let mut open = Vec::new();
    for target in scale.fanout {
        open.extend(open_streams(&url, &options, target - open.len()).await?);
        tokio::time::sleep(SETTLE).await;
        let rss = server.rss_bytes()?;
        let cpu_before = server.cpu_time()?;
        let watched = Instant::now();
        tokio::time::sleep(Duration::from_secs(scale.idle_secs)).await;
        let cpu = (server.cpu_time()? - cpu_before).as_secs_f64() / watched.elapsed().as_secs_f64();
        figures.push(Figure::new(
            "fan-out",
            format!("server RSS, {target} idle streams"),
            rss as f64 / 1_048_576.0,
            "MiB",
        ));
        figures.push(
            Figure::new(
                "fan-out",
                format!("server memory per stream, {target} streams"),
                rss.saturating_sub(base) as f64 / target as f64 / 1024.0,
                "KiB",
            )
            .against("≤ 32 KiB"),
        );
        figures.push(Figure::new(
            "fan-out",
            format!("server CPU, {target} idle streams (heartbeat 10 s)"),
            cpu * 100.0,
            "% of a core",
        ));
    }
    drop(open);
    Ok(figures)
}

/// The server's resident memory with no stream open, once its first connection's allocations are made: one
/// stream opened and closed, then [`SETTLE`]. The baseline of every per-stream memory figure.
///
/// # Errors
/// When the stream cannot open or `/proc` cannot be read.
pub async fn settled_rss(pid: u32, url: &ServerUrl, options: &ClientOptions) -> anyhow::Result<u64> {
    drop(open_streams(url, options, 1).await?);
    tokio::time::sleep(SETTLE).await;
    Ok(crate::server::memory(pid)?.0)
}

/// An open Watch stream and the connection it is on.
pub type OpenStream = (AssignmentFeedClient<Channel>, tonic::Streaming<pb::WatchResponse>);

/// Opens `count` Watch streams for new collector ids, each on its own connection made with `options`, reads each
/// one's first frame, and returns them all, open. At most 64 connections (and handshakes) are set up at once, as
/// a fleet coming up would.
///
/// # Errors
/// When a connection or a stream fails.
pub async fn open_streams(url: &ServerUrl, options: &ClientOptions, count: usize) -> anyhow::Result<Vec<OpenStream>> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let (url, options) = (url.clone(), options.clone());
        tasks.spawn(async move {
            let mut client = AssignmentFeedClient::new(options.connect(&url).await?);
            let request =
                pb::WatchRequest { collector_id: CollectorId::new_random().to_string(), ..Default::default() };
            let mut stream = client.watch(request).await?.into_inner();
            stream.message().await?.context("a first frame")?;
            Ok::<_, anyhow::Error>((client, stream))
        });
        if tasks.len() >= 64
            && let Some(done) = tasks.join_next().await
        {
            streams.push(done??);
        }
    }
    while let Some(done) = tasks.join_next().await {
        streams.push(done??);
    }
    Ok(streams)
}

/// A fleet of followers through a counting proxy; the server is restarted gracefully (SIGTERM) and then
/// crashes (SIGKILL) and is restarted.
///
/// # Errors
/// When the server or a follower fails, or the fleet does not come back within [`LIMIT`].
pub async fn reconnect_storm(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut server = ServerProcess::start(&dir.join("storm-server"), "127.0.0.1:0", STEADY)?;
    register_many(&server.url(), scale.storm * 10, 16).await?;
    let proxy = FaultProxy::start(server.addr).await;
    let fleet = Fleet::start(&proxy.url(), Fleet::random_ids(scale.storm), None)?;
    let all_connected = |h: &[roster::follower::FollowerHandle]| h.iter().all(|h| h.stats.snapshot().connected);
    fleet.wait("the fleet's first sync", LIMIT, |h| Fleet::applied_producers(h) == scale.storm * 10).await?;
    fleet.wait("every follower connected", LIMIT, all_connected).await?;
    for (signal, how) in [("-TERM", "SIGTERM"), ("-KILL", "SIGKILL")] {
        let mark = proxy.accepted_at().len();
        let stopped = Instant::now();
        server.stop(signal)?;
        fleet
            .wait("every follower sees the server gone", LIMIT, |h| h.iter().all(|h| !h.stats.snapshot().connected))
            .await?;
        server.restart()?;
        let up = Instant::now();
        fleet.wait("every follower back", LIMIT, all_connected).await?;
        let back = up.elapsed();
        let attempts = proxy.accepted_at()[mark..].to_vec();
        let peak = per_window(&attempts, stopped, Duration::from_secs(1)).values().copied().max().unwrap_or(0);
        let scenario = "reconnect storm";
        figures.push(Figure::new(scenario, format!("{how}: server down"), ms(up - stopped), "ms"));
        figures.push(Figure::new(scenario, format!("{how}: connection attempts"), attempts.len() as f64, ""));
        figures.push(
            Figure::new(
                scenario,
                format!("{how}: peak attempts in one second, share of the fleet"),
                peak as f64 / scale.storm as f64 * 100.0,
                "%",
            )
            .against("≤ 25 %"),
        );
        figures.push(
            Figure::new(scenario, format!("{how}: every follower back in sync after the server is up"), ms(back), "ms")
                .against("a few seconds"),
        );
    }
    Ok(figures)
}

/// Durable registrations per second: one client, then 16 concurrent clients.
///
/// # Errors
/// When the server fails or a registration fails.
pub async fn registrations(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let server = ServerProcess::start(&dir.join("registrations-server"), "127.0.0.1:0", &[])?;
    let url = server.url();
    let (_, one) = register_many(&url, scale.registrations[0], 1).await?;
    let (_, sixteen) = register_many(&url, scale.registrations[1], 16).await?;
    drop(server);
    // The row: new registrations while collectors watch. Their assembly and state files run on their own
    // machines, so they stand in here as watchers that read and report (the propagation scenario's setup runs
    // the same registrations with real followers on this machine).
    let server = ServerProcess::start(&dir.join("registrations-watched-server"), "127.0.0.1:0", STEADY)?;
    let url = server.url();
    let watchers = RemoteWatchers::start(std::slice::from_ref(&url), &Fleet::random_ids(scale.collectors)).await?;
    let (_, watched) = register_many(&url, scale.producers, 16).await?;
    watchers.wait_for(scale.producers, LIMIT).await?;
    Ok(vec![
        Figure::new(
            "registrations",
            "durable RegisterProducer, 1 client",
            scale.registrations[0] as f64 / one.as_secs_f64(),
            "/s",
        ),
        Figure::new(
            "registrations",
            "durable RegisterProducer, 16 clients",
            scale.registrations[1] as f64 / sixteen.as_secs_f64(),
            "/s",
        )
        .against("≥ 5 000/s"),
        Figure::new(
            "registrations",
            format!(
                "new producers, 16 clients, {} collectors watching from elsewhere, {} producers",
                scale.collectors, scale.producers
            ),
            scale.producers as f64 / watched.as_secs_f64(),
            "/s",
        )
        .against("≥ 5 000/s"),
    ])
}

/// A registration whose labels are as large as roster allows: [`MAX_LABELS`] labels with the longest names and
/// values, distinct per producer (`n`) and per `version`, so that nothing can share them by accident.
///
/// [`MAX_LABELS`]: roster::domain::MAX_LABELS
pub fn largest_registration(id: uuid::Uuid, n: usize, version: usize) -> pb::RegisterProducerRequest {
    use roster::domain::{MAX_LABEL_NAME_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS};
    let labels = (0..MAX_LABELS)
        .map(|l| {
            let name = format!("label_{l:02}_{}", "n".repeat(MAX_LABEL_NAME_BYTES - 9));
            let value = format!("{n:08}-{version:08}-{l:02}-{}", "v".repeat(MAX_LABEL_VALUE_BYTES - 21));
            (name, value)
        })
        .collect();
    pb::RegisterProducerRequest {
        producer_id: id.to_string(),
        labels,
        lease_ms: Some(3_600_000),
        ..roster_testkit::never_due()
    }
}

/// The collector's side of the largest snapshots: `scale.big_snapshot` producers with the largest labels allowed,
/// followed by one real `roster-collector` process. Its peak memory is held against the encoded snapshot it
/// keeps on disk; then a burst of changes (16 clients, `scale.burst_secs`) shows how many generations the server
/// made and how many snapshots the collector wrote for them.
///
/// # Errors
/// When a process fails, or a wait passes [`LIMIT`].
pub async fn big_snapshot(scale: Scale, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let server = ServerProcess::start(&dir.join("big-server"), "127.0.0.1:0", STEADY)?;
    let url = server.url();
    let n = scale.big_snapshot;
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let requests: Vec<_> = ids.iter().enumerate().map(|(i, id)| largest_registration(*id, i, 0)).collect();
    let registry = RegistryClient::new(crate::channel(&url).await?);
    roster_testkit::register_all(&registry, requests, 16).await;

    let started = Instant::now();
    let collector = CollectorProcess::start(&url, &dir.join("big-collector"), &[])?;
    let converged = |generation: u64| {
        let (url, collector) = (url.clone(), &collector);
        async move {
            let deadline = Instant::now() + LIMIT;
            loop {
                let status = collector.status().await?;
                let listed = RegistryClient::new(crate::channel(&url).await?)
                    .list_collectors(pb::ListCollectorsRequest {})
                    .await?
                    .into_inner();
                if status.applied_producer_count == n as u64
                    && status.persisted_generation >= generation
                    && listed.collectors.iter().any(|c| c.id == status.collector_id && c.converged)
                {
                    return anyhow::Ok(status);
                }
                anyhow::ensure!(Instant::now() < deadline, "the collector did not converge: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let status = converged(1).await?;
    let synced = started.elapsed();
    let state_file = dir.join("big-collector").join(format!("snapshot-{}.bin", status.collector_id));
    let encoded = std::fs::metadata(&state_file).context("the collector's state file")?.len() as f64;
    let (_, collector_peak) = collector.memory()?;
    let (_, server_peak) = crate::server::memory(server.pid())?;

    // The burst: every producer re-registered with new labels, 16 at a time, until the time is up.
    let saves_before = status.persisted_snapshots;
    let generation_before = status.applied_generation;
    let burst = Duration::from_secs(scale.burst_secs);
    let burst_start = Instant::now();
    let mut version = 1;
    while burst_start.elapsed() < burst && version < 1_000 {
        let changed: Vec<_> = ids
            .iter()
            .enumerate()
            .skip((version * 64) % n.max(1))
            .take(64)
            .map(|(i, id)| largest_registration(*id, i, version))
            .collect();
        roster_testkit::register_all(&registry, changed, 16).await;
        version += 1;
    }
    let listed = RegistryClient::new(crate::channel(&url).await?).list_collectors(pb::ListCollectorsRequest {}).await?;
    let last = listed.into_inner().collectors.iter().map(|c| c.generation).max().unwrap_or(0);
    let after = converged(last).await?;
    let (collector_rss_after, collector_peak_after) = collector.memory()?;
    let mb = |bytes: f64| bytes / (1024.0 * 1024.0);
    Ok(vec![
        Figure::new("big snapshot", format!("{n} producers, encoded snapshot (state file)"), mb(encoded), "MiB"),
        Figure::new("big snapshot", "registered to applied, persisted and reported", ms(synced), "ms"),
        Figure::new("big snapshot", "collector peak RSS / encoded snapshot", collector_peak as f64 / encoded, "×")
            .against("≤ 3×"),
        Figure::new("big snapshot", "collector peak RSS", mb(collector_peak as f64), "MiB"),
        Figure::new("big snapshot", "server peak RSS", mb(server_peak as f64), "MiB"),
        Figure::new(
            "big snapshot",
            format!("burst of {:.0} s: generations made", burst_start.elapsed().as_secs_f64()),
            (after.applied_generation - generation_before) as f64,
            "",
        ),
        Figure::new("big snapshot", "burst: snapshots written", (after.persisted_snapshots - saves_before) as f64, "")
            .against("bounded: the latest wins"),
        Figure::new(
            "big snapshot",
            "collector peak RSS after the burst / encoded snapshot",
            collector_peak_after as f64 / encoded,
            "×",
        )
        .against("≤ 3×"),
        Figure::new("big snapshot", "collector RSS after the burst", mb(collector_rss_after as f64), "MiB"),
    ])
}
