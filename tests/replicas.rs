//! Replicas of roster-server sharing one PostgreSQL store (issue 18), with real processes on loopback: a real
//! PostgreSQL 15 (`roster_testkit::TestPostgres`), roster-server replicas started with `--store postgres://…`, and
//! real collectors following them. Every scenario checks what the collectors apply (their status API) and what the
//! replicas answer, and every wait is bounded.
//!
//! - any replica takes any call, and every replica serves the same registry and feed; a collector in sync that
//!   moves to another replica gets an in-sync frame (S3), not a resend;
//! - `kill -9` of the replica that leads during a registration burst: no acknowledged registration is lost,
//!   another replica leads, no collector's generation goes backwards, and every producer ends up with exactly
//!   one collector;
//! - PostgreSQL restarted: writes answer `UNAVAILABLE` meanwhile, the feed streams stay up, everything resumes; a
//!   `Watch` whose commit failed leaves no trace of its process, so the collector's next process is not refused
//!   as a conflict with it;
//! - one replica cut from PostgreSQL (a fault proxy between them): it stops deciding, ends its streams, and its
//!   collector moves to another replica;
//! - the listener's connection cut: changes still arrive (the tick catches up);
//! - a replica older than the database's schema refuses to start, and one that cannot reach the database says why;
//! - a client given every replica's URL (the library's, the CLI's) rides out the death of the one it was calling.
//!
//! Failover time and propagation across replicas are measured by `roster-bench` (BENCHMARKS.md), not asserted here.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    Proc, SetWatcher, all_producers, collectors, register_many, roster, start_collector_with, status,
    wait_fleet_in_sync, wait_for, wait_status, wait_until,
};
use roster::{
    client::RosterClient,
    endpoint::ServerUrl,
    pb::{self, WatchRequest, assignment_feed_client::AssignmentFeedClient, watch_response::Frame},
};
use roster_testkit::{FaultProxy, Mode, TestPostgres, never_due};
use sqlx::{Connection as _, PgConnection};

/// Collectors notice a lost stream in about a second, and come back quickly.
const FAST: &[&str] = &["--keepalive-interval", "500ms", "--keepalive-timeout", "500ms", "--reconnect-max-delay", "1s"];

/// A short grace period, so that a replica cut from its store ends its streams after 2 s (a quarter of it).
const SHORT_GRACE: &[&str] = &["--grace", "8s"];

/// A roster-server replica on an OS-chosen port of 127.0.0.1 with its store at `store` (a `postgres://` URL), and
/// its URL.
fn start_replica(store: &str, extra: &[&str]) -> (Proc, String) {
    let args = [&["--listen", "127.0.0.1:0", "--store", store][..], extra].concat();
    let replica = Proc::start("roster-server", &args);
    let addr = replica.logged("roster-server serving", "listen=");
    (replica, format!("http://{addr}"))
}

/// Whether `replica` has taken the lead at some point.
fn has_led(replica: &Proc) -> bool {
    replica.stderr().contains("this replica leads now")
}

/// The index of the replica that leads first, once one does.
async fn first_leader(replicas: &[&Proc]) -> usize {
    let mut leader = None;
    wait_for("a replica leads", || {
        leader = replicas.iter().position(|r| has_led(r));
        leader.is_some()
    })
    .await;
    leader.unwrap()
}

/// A raw registry client of `url`, without retries: what one call answers.
async fn raw_registry(url: &str) -> pb::registry_client::RegistryClient<tonic::transport::Channel> {
    pb::registry_client::RegistryClient::connect(url.to_owned()).await.unwrap()
}

/// Every producer `url` knows is assigned to exactly one of `collectors` (and to nothing else).
async fn assigned_once(url: &str, collectors: &[&str]) -> BTreeMap<String, String> {
    let producers = all_producers(url).await;
    for (producer, collector) in &producers {
        assert!(
            collectors.contains(&collector.as_str()),
            "{producer} assigned to {collector:?}, not to one of {collectors:?}"
        );
    }
    producers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_one_registry_and_one_feed() {
    let postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, url_a) = start_replica(&postgres.url(), &[]);
    let (b, url_b) = start_replica(&postgres.url(), &[]);
    let (c, url_c) = start_replica(&postgres.url(), &[]);
    let epochs: BTreeSet<String> = [&a, &b, &c].iter().map(|r| r.logged("roster-server serving", "epoch=")).collect();
    assert_eq!(epochs.len(), 1, "one epoch, made once with the schema: {epochs:?}");

    // Each collector follows one replica; producers register through a third.
    let (_c1, status1, id1) = start_collector_with(&url_b, &dir.path().join("c1"), FAST);
    let (_c2, status2, id2) = start_collector_with(&url_c, &dir.path().join("c2"), FAST);
    wait_until(
        "both collectors known to the replica they did not call",
        || collectors(&url_a),
        |known| known.contains_key(&id1) && known.contains_key(&id2),
    )
    .await;
    register_many(&url_a, 40).await;
    for url in [&url_a, &url_b, &url_c] {
        wait_fleet_in_sync(url, 2, "registered through another replica").await;
    }
    let (s1, s2) = (status(&status1).await, status(&status2).await);
    assert_eq!(
        s1.applied_producer_count + s2.applied_producer_count,
        40,
        "each producer collected once: {s1:?} {s2:?}"
    );
    let producers = assigned_once(&url_a, &[&id1, &id2]).await;
    for url in [&url_b, &url_c] {
        assert_eq!(all_producers(url).await, producers, "every replica answers the same registry");
    }

    // A collector in sync asking another replica is told so, and sent nothing (S3).
    for url in [&url_a, &url_c] {
        let mut feed = AssignmentFeedClient::connect(url.clone()).await.unwrap();
        let mut stream = feed
            .watch(WatchRequest {
                collector_id: id1.clone(),
                known_epoch: s1.applied_epoch.clone(),
                known_generation: s1.applied_generation,
                observe_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().and_then(|m| m.frame);
        assert!(matches!(first, Some(Frame::InSync(_))), "{url}: {first:?}");
    }

    // A change made through one replica reaches a collector following another.
    raw_registry(&url_b).await.register_producer(never_due()).await.unwrap();
    wait_until(
        "the producer registered through b is applied by a collector",
        || async { status(&status1).await.applied_producer_count + status(&status2).await.applied_producer_count },
        |applied| *applied == 41,
    )
    .await;
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_during_a_registration_burst_loses_nothing() {
    let postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<(Proc, String)> = (0..3).map(|_| start_replica(&postgres.url(), &[])).collect();
    let urls: Vec<String> = replicas.iter().map(|(_, url)| url.clone()).collect();
    let all = urls.join(",");
    let (_c1, status1, id1) = start_collector_with(&all, &dir.path().join("c1"), FAST);
    let (_c2, status2, id2) = start_collector_with(&all, &dir.path().join("c2"), FAST);
    let leader = first_leader(&replicas.iter().map(|(p, _)| p).collect::<Vec<_>>()).await;
    wait_fleet_in_sync(&urls[leader], 2, "both collectors attached").await;
    let watches = [SetWatcher::start(&status1), SetWatcher::start(&status2)];

    // 300 registrations, each sent to the replicas in turn until one acknowledges it (as a client with every
    // replica's address does); the leader is killed after the first 100 acknowledgements.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let burst = {
        let (urls, acknowledged) = (urls.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                let request = never_due();
                let mut done = false;
                // Bounded: every replica twice.
                for attempt in 0..2 * urls.len() {
                    let url = &urls[(i + attempt) % urls.len()];
                    let Ok(mut client) = pb::registry_client::RegistryClient::connect(url.clone()).await else {
                        continue;
                    };
                    if client.register_producer(request.clone()).await.is_ok() {
                        done = true;
                        break;
                    }
                }
                assert!(done, "registration {i} was acknowledged by no replica");
                acknowledged.lock().unwrap().push(request.producer_id);
            }
        })
    };
    wait_for("100 registrations acknowledged", || acknowledged.lock().unwrap().len() >= 100).await;
    let before_kill = all_producers(&urls[leader]).await;
    replicas[leader].0.kill9();
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    wait_for("another replica leads", || survivors.iter().any(|i| has_led(&replicas[*i].0))).await;
    eprintln!("figure: a new leader {:?} after kill -9 of the old one", killed.elapsed());
    burst.await.unwrap();

    let url = &urls[survivors[0]];
    let stored = assigned_once(url, &[&id1, &id2]).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 300);
    for id in &acknowledged {
        assert!(stored.contains_key(id), "acknowledged registration {id} lost");
    }
    // Nothing moved that should not: the collectors on the dead replica were in grace until they came back (L2).
    for (producer, collector) in &before_kill {
        assert_eq!(stored.get(producer), Some(collector), "{producer} moved");
    }
    wait_fleet_in_sync(url, 2, "after the leader's death").await;
    let (s1, s2) = (status(&status1).await, status(&status2).await);
    assert_eq!(
        s1.applied_producer_count + s2.applied_producer_count,
        stored.len() as u64,
        "after convergence every producer is collected by exactly one collector"
    );
    for watch in watches {
        // Fails if an applied generation went backwards.
        let (_, polls) = watch.finish().await;
        assert!(polls > 10, "the generations were watched ({polls} polls)");
    }
    eprintln!("figure: 300 acknowledged, {} stored, 0 lost", stored.len());
    drop(replicas);
}

/// A rolling restart: the leader stopped with SIGTERM leaves the replicas and hands its lead on as it exits, so the
/// other replica leads at its next tick instead of waiting for the lease to lapse; its collector comes back to the
/// other replica and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_hands_its_lead_on() {
    let postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<(Proc, String)> = (0..2).map(|_| start_replica(&postgres.url(), &[])).collect();
    let leader = first_leader(&replicas.iter().map(|(p, _)| p).collect::<Vec<_>>()).await;
    let (leader_url, other_url) = (replicas[leader].1.clone(), replicas[1 - leader].1.clone());
    let (_collector, status_addr, _) =
        start_collector_with(&format!("{leader_url},{other_url}"), &dir.path().join("c"), FAST);
    register_many(&other_url, 5).await;
    let before = wait_status(&status_addr, "5 producers applied", |s| s.applied_producer_count == 5).await;
    let assigned = all_producers(&other_url).await;

    replicas[leader].0.signal("-TERM");
    let stopped = Instant::now();
    assert_eq!(replicas[leader].0.wait_exit().code(), Some(0));
    assert!(replicas[leader].0.stderr().contains("this replica leaves and hands its lead on"));
    wait_for("the other replica leads", || has_led(&replicas[1 - leader].0)).await;
    eprintln!("figure: SIGTERM of the leader: the other replica leads {:?} after it", stopped.elapsed());
    let after =
        wait_status(&status_addr, "the collector on the other replica", |s| s.connected && s.endpoint == other_url)
            .await;
    assert_eq!((after.applied_epoch, after.applied_producer_count), (before.applied_epoch, 5));
    assert_eq!(all_producers(&other_url).await, assigned, "nothing moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_writes_wait_feeds_stay_and_all_resumes() {
    let mut postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, url_a) = start_replica(&postgres.url(), &[]);
    let (_b, url_b) = start_replica(&postgres.url(), &[]);
    let (_collector, status_addr, _) = start_collector_with(&url_b, &dir.path().join("c"), FAST);
    register_many(&url_a, 5).await;
    let before = wait_status(&status_addr, "5 producers applied", |s| s.applied_producer_count == 5).await;

    postgres.stop();
    let stopped = Instant::now();
    let refused = raw_registry(&url_a).await.register_producer(never_due()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    eprintln!("figure: a write while PostgreSQL is down: {}", refused.message());
    postgres.start_again().await;

    // Writes resume (the client retries, as a registrant's library does), and so does the feed.
    let request = never_due();
    wait_until(
        "a registration is acknowledged again",
        || async { raw_registry(&url_a).await.register_producer(request.clone()).await.is_ok() },
        |acknowledged| *acknowledged,
    )
    .await;
    let after = wait_status(&status_addr, "the new producer applied", |s| s.applied_producer_count == 6).await;
    eprintln!("figure: PostgreSQL away and back; the change applied {:?} after the stop", stopped.elapsed());
    assert_eq!(after.reconnects, before.reconnects, "the feed stream stayed up through the restart");
    assert!(after.applied_generation > before.applied_generation);
}

/// A `Watch` whose commit fails is answered `UNAVAILABLE` and opens no stream. Its process must then not count as
/// running: before, the replica kept it among the collector's open processes, and refused every later process of
/// that collector (its restart) with `FAILED_PRECONDITION`, naming a process that had no stream, until the replica
/// itself restarted. The commit is made to fail by a constraint the test adds to the collectors table for this
/// collector alone, then drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_commit_failed_leaves_no_process_behind() {
    let postgres = TestPostgres::start().await;
    let (_replica, url) = start_replica(&postgres.url(), &[]);
    let collector = uuid::Uuid::new_v4().to_string();
    let watch = |instance: uuid::Uuid| {
        let (url, collector) = (url.clone(), collector.clone());
        async move {
            let mut feed = AssignmentFeedClient::connect(url).await.unwrap();
            let request =
                WatchRequest { collector_id: collector, instance_id: instance.to_string(), ..Default::default() };
            feed.watch(request).await.map(tonic::Response::into_inner)
        }
    };
    let mut sql = PgConnection::connect(&postgres.url()).await.unwrap();
    let refuse = format!("ALTER TABLE collectors ADD CONSTRAINT refuse_one CHECK (id <> '{collector}')");
    sqlx::query(sqlx::AssertSqlSafe(refuse)).execute(&mut sql).await.unwrap();

    let refused = watch(uuid::Uuid::new_v4()).await.expect_err("no stream when the commit fails");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    sqlx::query("ALTER TABLE collectors DROP CONSTRAINT refuse_one").execute(&mut sql).await.unwrap();

    // The collector's next process is accepted, and served.
    let mut stream = watch(uuid::Uuid::new_v4())
        .await
        .unwrap_or_else(|status| panic!("the next process of the collector is accepted: {status:?}"));
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.frame, Some(Frame::Chunk(ref c)) if c.complete), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_postgresql_hands_its_collectors_over() {
    cut_from_postgresql(Mode::Refuse).await;
}

/// A network partition: the connections stay open and nothing crosses them (no reset tells anyone). The replica's
/// calls give up after the store's call timeout (10 s) rather than hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_from_postgresql_hands_its_collectors_over() {
    cut_from_postgresql(Mode::Silent).await;
}

/// One replica reaches PostgreSQL through a fault proxy, another directly; a collector follows the first. The proxy
/// is switched to `cut`: the first replica decides nothing and ends its streams, and the collector moves.
async fn cut_from_postgresql(cut_mode: Mode) {
    let postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", postgres.port()).parse().unwrap()).await;
    let through_proxy =
        postgres.url().replace(&format!(":{}/", postgres.port()), &format!(":{}/", proxy.addr().port()));
    let (cut, url_cut) = start_replica(&through_proxy, SHORT_GRACE);
    let (other, url_other) = start_replica(&postgres.url(), SHORT_GRACE);
    // The collector follows the replica that will be cut, and knows the other.
    let (_collector, status_addr, id) =
        start_collector_with(&format!("{url_cut},{url_other}"), &dir.path().join("c"), FAST);
    register_many(&url_other, 5).await;
    let before = wait_status(&status_addr, "on the first replica, 5 producers applied", |s| {
        s.applied_producer_count == 5 && s.endpoint == url_cut
    })
    .await;

    proxy.set(cut_mode);
    let cut_at = Instant::now();
    let refused = raw_registry(&url_cut).await.register_producer(never_due()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "the cut replica decides nothing: {refused}");
    let moved = wait_status(&status_addr, "the collector moves to the other replica", |s| {
        s.connected && s.endpoint == url_other
    })
    .await;
    eprintln!("figure: {cut_mode:?}: the collector moved to the other replica {:?} after the cut", cut_at.elapsed());
    assert!(cut.stderr().contains("can no longer vouch for its feed"), "the cut replica says why it ended its streams");
    assert_eq!(moved.applied_epoch, before.applied_epoch);

    // The other replica serves it from now on, and it was never without its producers.
    raw_registry(&url_other).await.register_producer(never_due()).await.unwrap();
    wait_status(&status_addr, "a change through the other replica applied", |s| s.applied_producer_count == 6).await;
    // The cut replica's stream is counted until the replica that leads takes it for gone.
    let known = wait_until(
        "only the stream on the other replica counted",
        || collectors(&url_other),
        |known| known[&id].open_streams == 1,
    )
    .await;
    assert_eq!(known[&id].state(), pb::CollectorState::Live);
    assert!(
        other.stderr().contains("not heard from within the replica timeout"),
        "the replica that leads says why the stream no longer counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_arrives_though_the_listener_connection_was_cut() {
    let postgres = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, url_a) = start_replica(&postgres.url(), &[]);
    let (b, url_b) = start_replica(&postgres.url(), &[]);
    let (_collector, status_addr, _) = start_collector_with(&url_b, &dir.path().join("c"), FAST);
    register_many(&url_a, 1).await;
    wait_status(&status_addr, "the first producer applied", |s| s.applied_producer_count == 1).await;

    let mut admin = PgConnection::connect(&postgres.url()).await.unwrap();
    let cut: Vec<i32> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity WHERE query = 'LISTEN \"roster\"' OR query LIKE 'LISTEN %roster%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 2, "both replicas' listeners were cut: {cut:?}");
    let written = Instant::now();
    register_many(&url_a, 1).await;
    wait_status(&status_addr, "the change applied on the other replica's collector", |s| s.applied_producer_count == 2)
        .await;
    eprintln!("figure: with the listeners cut, the change applied {:?} after it was written", written.elapsed());
    wait_for("the replica says its listener was lost", || b.stderr().contains("listening for other replicas")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_older_than_the_schema_is_refused() {
    let postgres = TestPostgres::start().await;
    let (first, _) = start_replica(&postgres.url(), &[]);
    drop(first);
    let mut admin = PgConnection::connect(&postgres.url()).await.unwrap();
    // What a newer roster-server's migration would have left.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer roster-server', true, '\\x00', 0)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let mut older = Proc::start("roster-server", &["--listen", "127.0.0.1:0", "--store", &postgres.url()]);
    let exit = older.wait_exit();
    assert!(!exit.success());
    let said = older.stderr();
    assert!(said.contains("9999"), "names the database's schema version: {said}");
}

/// A store that cannot be reached is an error at start that says why: before, PostgreSQL refusing the connection,
/// or a database that does not exist, read only "pool timed out while waiting for an open connection".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_reached_is_refused_saying_why() {
    let postgres = TestPostgres::start().await;
    let nothing_there = format!("postgres://roster@127.0.0.1:{}/roster", common::free_port());
    let no_database = format!("{}/no_such_database", postgres.url().rsplit_once('/').unwrap().0);
    for (store, why) in [(nothing_there, "Connection refused"), (no_database, "\"no_such_database\" does not exist")] {
        let mut refused = Proc::start("roster-server", &["--listen", "127.0.0.1:0", "--store", &store]);
        let exit = refused.wait_exit();
        let said = refused.stderr();
        eprintln!("figure: --store {store}: {}", said.lines().last().unwrap_or(""));
        assert_eq!(exit.code(), Some(1), "{said}");
        assert!(said.contains("cannot connect to the database") && said.contains(why), "{why}: {said}");
    }
}

/// A client given every replica's URL calls one until it fails, then the next: after `kill -9` of the replica it was
/// calling, a call needs one retry (its first attempt meets the dead replica), and the calls after it go straight to
/// the live one. The CLI's `--server a,b` is that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_every_replica_rides_out_the_death_of_one() {
    let postgres = TestPostgres::start().await;
    let (a, url_a) = start_replica(&postgres.url(), &[]);
    let (_b, url_b) = start_replica(&postgres.url(), &[]);
    let urls: Vec<ServerUrl> = [&url_a, &url_b].iter().map(|url| url.parse().unwrap()).collect();
    let client = RosterClient::connect_any(&urls, Duration::from_secs(5), None).unwrap();
    client.register_producer(never_due()).await.unwrap();
    drop(a);

    // The first attempt goes to the replica that is gone; the retry, to the other.
    client.clone().with_max_attempts(2).register_producer(never_due()).await.unwrap();
    // The calls after it go to the live replica at once: one attempt each is enough.
    let one_attempt = client.clone().with_max_attempts(1);
    assert_eq!(one_attempt.list_all_producers(String::new()).await.unwrap().len(), 2);
    // A client made anew starts with the first replica again, and moves on the same way.
    let fresh = RosterClient::connect_any(&urls, Duration::from_secs(5), None).unwrap().with_max_attempts(1);
    assert!(fresh.list_collectors().await.is_err(), "the first replica is gone: one attempt fails");
    assert!(fresh.list_collectors().await.is_ok(), "the next call goes to the other replica");

    let servers = format!("{url_a},{url_b}");
    let mut cli = roster(&["--server", &servers, "--max-attempts", "2", "-o", "json", "producers", "list"]);
    assert!(cli.wait_exit().success(), "{}", cli.stderr());
    assert!(cli.stdout().contains("\"count\": 2"), "{}", cli.stdout());
}
