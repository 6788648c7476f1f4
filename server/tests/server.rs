//! Integration tests of roster-server in this process: a real server on 127.0.0.1:0 with a real store on disk,
//! spoken to by tonic clients over real sockets. Time-dependent rules (leases, restarts after a long downtime)
//! use a manual clock, so nothing here waits for wall-clock time to pass.

mod common;

use std::time::Duration;

use common::*;
use prost::Message as _;
use roster::pb::{self, watch_response::Frame};
use roster_server::clock::Clock as _;
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn register_then_watch_gets_a_complete_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    let p = Uuid::new_v4();
    let reply = registry.register_producer(producer(p, 9100)).await.unwrap().into_inner();
    assert!(reply.created);
    assert_eq!(reply.renew_interval_ms, 75_000, "a quarter of the default 5 minute lease");
    let info = reply.producer.unwrap();
    assert_eq!(info.assigned_collector_id, "", "no collector yet: registered but unassigned");

    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.ids(), vec![p.to_string()]);
    assert_eq!(snap.producers[0].address, "127.0.0.1:9100");
    assert!(snap.settling, "a store younger than one renewal interval says so");
    let listed = list_all(&mut registry).await;
    assert_eq!(listed[0].assigned_collector_id, collector.to_string());

    let collectors = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
    assert_eq!(collectors.len(), 1);
    assert_eq!(collectors[0].state(), pb::CollectorState::Live);
    assert_eq!(collectors[0].assigned_count, 1);
    assert!(!collectors[0].converged);

    // C4: reporting the generation makes the collector converged.
    let report = pb::ReportAppliedRequest {
        collector_id: collector.to_string(),
        epoch: snap.epoch.clone(),
        generation: snap.generation,
        outcome: pb::ApplyOutcome::Applied.into(),
        reason: String::new(),
    };
    assert!(feed.report_applied(report).await.unwrap().into_inner().current);
    let collectors = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
    assert!(collectors[0].converged);
    assert_eq!(collectors[0].reported_generation, snap.generation);
    server.stop().await;
}

#[tokio::test]
async fn each_change_yields_a_newer_generation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    let mut feed = server.feed().await;
    let collector = Uuid::new_v4();
    let mut stream = watch(&mut feed, collector, None).await;
    let mut last = next_snapshot(&mut stream).await;
    assert!(last.producers.is_empty());

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let expect = |snap: Snap, ids: &[Uuid], last: &mut Snap| {
        assert!(snap.generation > last.generation, "generation {} after {}", snap.generation, last.generation);
        let mut want: Vec<_> = ids.iter().map(Uuid::to_string).collect();
        want.sort();
        assert_eq!(snap.ids(), want);
        *last = snap;
    };
    registry.register_producer(producer(a, 1)).await.unwrap();
    expect(next_snapshot(&mut stream).await, &[a], &mut last);
    registry.register_producer(producer(b, 2)).await.unwrap();
    expect(next_snapshot(&mut stream).await, &[a, b], &mut last);

    // A changed entry is a change; a plain renewal is not.
    let mut changed = producer(a, 1);
    changed.labels.insert("zone".into(), "eu".into());
    registry.register_producer(changed.clone()).await.unwrap();
    let renewal = registry.register_producer(changed).await.unwrap().into_inner();
    assert!(!renewal.created);
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.producers.iter().find(|p| p.id == a.to_string()).unwrap().labels["zone"], "eu");
    expect(snap, &[a, b], &mut last);

    let gone = registry
        .deregister_producer(pb::DeregisterProducerRequest { producer_id: a.to_string() })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.existed);
    expect(next_snapshot(&mut stream).await, &[b], &mut last);
    // R1: deregistering again succeeds and changes nothing.
    let again = registry
        .deregister_producer(pb::DeregisterProducerRequest { producer_id: a.to_string() })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.existed);
    // The next frame proves nothing was sent for it: it is the snapshot of the next real change.
    let c = Uuid::new_v4();
    registry.register_producer(producer(c, 3)).await.unwrap();
    expect(next_snapshot(&mut stream).await, &[b, c], &mut last);
    server.stop().await;
}

#[tokio::test]
async fn twenty_thousand_producers_stream_in_bounded_chunks() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    let first = next_snapshot(&mut stream).await;

    // Register concurrently on one connection: the registry commits concurrent calls together.
    let ids: Vec<Uuid> = (0..N).map(|_| Uuid::new_v4()).collect();
    let requests = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut req = producer(*id, 1000 + (i % 50_000) as u16);
            req.labels.insert("worker".into(), format!("w{}", i % 64));
            req
        })
        .collect();
    register_all(&server.registry().await, requests, 64).await;

    // Snapshots coalesce (S4), so intermediate ones may be skipped; read until the whole set has arrived.
    let mut last = first;
    while last.producers.len() < N {
        let snap = next_snapshot(&mut stream).await;
        assert!(snap.generation > last.generation);
        last = snap;
    }
    assert_eq!(last.producers.len(), N);
    assert!(last.chunks.len() >= N / 1000, "{} chunks", last.chunks.len());
    for chunk in &last.chunks {
        assert!(chunk.producers.len() <= 1000);
        assert!(
            chunk.encoded_len() < 2 * 1024 * 1024,
            "a chunk of {} bytes nears the 4 MiB limit",
            chunk.encoded_len()
        );
    }
    assert!(last.chunks.last().unwrap().complete);
    assert!(last.chunks.iter().rev().skip(1).all(|c| !c.complete), "only the last chunk is complete");
    let mut want: Vec<_> = ids.iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(last.ids(), want);

    // The listing pages through everything, in a stable order, with the true total.
    let mut registry = server.registry().await;
    let page = registry.list_producers(pb::ListProducersRequest::default()).await.unwrap().into_inner();
    assert_eq!(page.producers.len(), 100);
    assert_eq!(page.total_count, N as u64);
    let listed: Vec<_> = list_all(&mut registry).await.into_iter().map(|p| p.id).collect();
    assert_eq!(listed, want);
    server.stop().await;
}

#[tokio::test]
async fn a_current_known_generation_gets_in_sync_and_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    registry.register_producer(producer(Uuid::new_v4(), 1)).await.unwrap();
    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let snap = next_snapshot(&mut watch(&mut feed, collector, None).await).await;

    let mut stream = watch(&mut feed, collector, Some((&snap.epoch, snap.generation))).await;
    match next_frame(&mut stream).await {
        Frame::InSync(s) => assert_eq!((s.epoch, s.generation), (snap.epoch.clone(), snap.generation)),
        other => panic!("expected in-sync, got {other:?}"),
    }
    // The next frame is the snapshot of the next change, not a resend of the current one.
    let p = Uuid::new_v4();
    registry.register_producer(producer(p, 2)).await.unwrap();
    let next = next_snapshot(&mut stream).await;
    assert_eq!(next.generation, snap.generation + 1);
    assert!(next.ids().contains(&p.to_string()));

    // An old known generation gets the current snapshot.
    let mut stale = watch(&mut feed, collector, Some((&snap.epoch, snap.generation))).await;
    assert_eq!(next_snapshot(&mut stale).await.generation, next.generation);
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_watcher_does_not_delay_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let (stuck, healthy) = (Uuid::new_v4(), Uuid::new_v4());
    let mut stuck_feed = server.feed().await;
    let mut healthy_feed = server.feed().await;
    // Both become live before producers arrive, so pins hold.
    let mut stuck_stream = watch(&mut stuck_feed, stuck, None).await;
    next_snapshot(&mut stuck_stream).await;
    let mut healthy_stream = watch(&mut healthy_feed, healthy, None).await;
    next_snapshot(&mut healthy_stream).await;

    // Give the stuck collector an assignment far larger than the HTTP/2 flow-control windows, and never read it.
    let registry = server.registry().await;
    let requests = (0..4000u16)
        .map(|i| {
            let mut req = pinned(Uuid::new_v4(), 1 + i, stuck);
            req.labels.insert("padding".into(), "x".repeat(250));
            req
        })
        .collect();
    register_all(&registry, requests, 16).await;

    // The healthy collector still gets each of its changes while the stuck stream sits full.
    let mut registry = registry.clone();
    for round in 0..5u16 {
        let p = Uuid::new_v4();
        registry.register_producer(pinned(p, 60_000 + round, healthy)).await.unwrap();
        // And the stuck collector's assignment keeps changing too (coalesced, never queued).
        registry.register_producer(pinned(Uuid::new_v4(), 50_000 + round, stuck)).await.unwrap();
        let snap = next_snapshot(&mut healthy_stream).await;
        assert!(snap.ids().contains(&p.to_string()), "round {round}");
    }
    drop(stuck_stream);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_epoch_producers_and_generations() {
    let dir = tempfile::tempdir().unwrap();
    let (config_a, _) = config(dir.path());
    let server = TestServer::start(config_a).await;
    let collector = Uuid::new_v4();
    let mut registry = server.registry().await;
    for port in 1..=5 {
        registry.register_producer(producer(Uuid::new_v4(), port)).await.unwrap();
    }
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.producers.len(), 5);
    let before = list_all(&mut registry).await;
    drop(stream);
    server.stop().await;

    let (config_b, _) = config(dir.path());
    let server = TestServer::start(config_b).await;
    let mut registry = server.registry().await;
    assert_eq!(list_all(&mut registry).await, before, "producers, leases and assignment survive");
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, Some((&snap.epoch, snap.generation))).await;
    match next_frame(&mut stream).await {
        Frame::InSync(s) => {
            assert_eq!((s.epoch, s.generation), (snap.epoch.clone(), snap.generation), "same epoch and generation")
        }
        other => panic!("expected in-sync after restart, got {other:?}"),
    }
    registry.register_producer(producer(Uuid::new_v4(), 6)).await.unwrap();
    assert!(next_snapshot(&mut stream).await.generation > snap.generation, "generations continue");
    server.stop().await;
}

#[tokio::test]
async fn leases_lapse_and_the_collector_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config(dir.path());
    let server = TestServer::start(config).await;
    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    next_snapshot(&mut stream).await;
    let mut registry = server.registry().await;
    let (early, late) = (Uuid::new_v4(), Uuid::new_v4());
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(10_000), ..producer(early, 1) })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(5));
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(10_000), ..producer(late, 2) })
        .await
        .unwrap();
    let mut snap = next_snapshot(&mut stream).await;
    while snap.producers.len() < 2 {
        snap = next_snapshot(&mut stream).await;
    }

    clock.advance(Duration::from_secs(5)); // t = 10 s: `early` lapses, `late` has 5 s left.
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.ids(), vec![late.to_string()]);
    // Renewal keeps a lease alive.
    clock.advance(Duration::from_secs(4));
    let renewed = registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(10_000), ..producer(late, 2) })
        .await
        .unwrap();
    assert!(!renewed.into_inner().created);
    clock.advance(Duration::from_secs(9)); // 9 s after renewal: still alive.
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(10_000), ..producer(early, 1) })
        .await
        .unwrap();
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.producers.len(), 2, "the renewed lease did not lapse");
    clock.advance(Duration::from_secs(1)); // 10 s after renewal: `late` lapses.
    assert_eq!(next_snapshot(&mut stream).await.ids(), vec![early.to_string()]);
    server.stop().await;
}

#[tokio::test]
async fn leases_do_not_lapse_right_after_a_long_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let (config_a, clock) = config(dir.path());
    let server = TestServer::start(config_a.clone()).await;
    let mut registry = server.registry().await;
    let survivor = Uuid::new_v4();
    // A 60 s lease: renew every 15 s.
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(60_000), ..producer(survivor, 1) })
        .await
        .unwrap();
    server.stop().await;

    clock.advance(Duration::from_secs(10 * 3600)); // Ten hours down: the stored expiry is long past.
    let server = TestServer::start(config_a).await;
    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    let mut registry = server.registry().await;
    // A witness with a 10 s lease, registered at the restart: its lapse proves the sweeper ran past t + 10 s.
    let witness = Uuid::new_v4();
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(10_000), ..producer(witness, 2) })
        .await
        .unwrap();
    let mut snap = next_snapshot(&mut stream).await;
    while snap.producers.len() < 2 {
        snap = next_snapshot(&mut stream).await;
    }
    clock.advance(Duration::from_secs(10));
    let snap = next_snapshot(&mut stream).await;
    assert_eq!(snap.ids(), vec![survivor.to_string()], "the survivor has one renewal interval (15 s) from the restart");
    clock.advance(Duration::from_secs(5)); // 15 s after the restart, unrenewed: now it lapses.
    assert!(next_snapshot(&mut stream).await.producers.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_collector_that_reconnects_within_grace_keeps_its_producers_and_one_that_does_not_loses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config(dir.path());
    let server = TestServer::start(config).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut feed_a = server.feed().await;
    let mut feed_b = server.feed().await;
    let mut stream_a = watch(&mut feed_a, a, None).await;
    next_snapshot(&mut stream_a).await;
    let mut stream_b = watch(&mut feed_b, b, None).await;
    next_snapshot(&mut stream_b).await;
    let mut registry = server.registry().await;
    for port in 1..=40 {
        registry.register_producer(producer(Uuid::new_v4(), port)).await.unwrap();
    }
    let owners =
        |list: &[pb::ProducerInfo], c: Uuid| list.iter().filter(|p| p.assigned_collector_id == c.to_string()).count();
    let before = list_all(&mut registry).await;
    assert!(owners(&before, a) > 0 && owners(&before, b) > 0, "rendezvous spreads 40 producers over both");

    drop(stream_a);
    // Within grace nothing moves; `a` is listed in grace.
    let in_grace = wait_for_some("a in grace", || {
        let mut registry = registry.clone();
        async move {
            let list = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
            list.into_iter().find(|c| c.id == a.to_string() && c.state() == pb::CollectorState::Grace)
        }
    })
    .await;
    assert!(in_grace.grace_ends_at_unix_ms > 0);
    clock.advance(Duration::from_secs(59));
    let mut stream_a = watch(&mut feed_a, a, None).await;
    next_snapshot(&mut stream_a).await;
    assert_eq!(list_all(&mut registry).await, before, "a blip within grace moves nothing");

    // Gone for longer than grace: its producers move to `b`, and `b` is told.
    drop(stream_a);
    wait_for_some("a in grace again", || {
        let mut registry = registry.clone();
        async move {
            let list = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
            list.into_iter().find(|c| c.id == a.to_string() && c.state() == pb::CollectorState::Grace)
        }
    })
    .await;
    clock.advance(Duration::from_secs(60));
    let mut snap = next_snapshot(&mut stream_b).await;
    while snap.producers.len() < 40 {
        snap = next_snapshot(&mut stream_b).await;
    }
    assert_eq!(owners(&list_all(&mut registry).await, b), 40);
    server.stop().await;
}

#[tokio::test]
async fn a_rejected_generation_is_not_resent_on_reconnect_unless_the_client_has_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    registry.register_producer(producer(Uuid::new_v4(), 1)).await.unwrap();
    let collector = Uuid::new_v4();
    let mut feed = server.feed().await;
    let mut first_stream = watch(&mut feed, collector, None).await;
    let first = next_snapshot(&mut first_stream).await;
    registry.register_producer(producer(Uuid::new_v4(), 2)).await.unwrap();
    let snap = next_snapshot(&mut first_stream).await;
    drop(first_stream);
    let reject = pb::ReportAppliedRequest {
        collector_id: collector.to_string(),
        epoch: snap.epoch.clone(),
        generation: snap.generation,
        outcome: pb::ApplyOutcome::Rejected.into(),
        reason: "digest mismatch".into(),
    };
    feed.report_applied(reject).await.unwrap();
    // A client that keeps the first snapshot in force is not sent the generation it rejected (C4).
    let mut stream = watch(&mut feed, collector, Some((&first.epoch, first.generation))).await;
    match next_frame(&mut stream).await {
        Frame::Heartbeat(h) => assert_eq!(h.generation, snap.generation),
        other => panic!("expected a heartbeat instead of the rejected snapshot, got {other:?}"),
    }
    // A client with nothing in force (a wiped data directory under the same id) gets it: it must collect something.
    let mut empty_handed = watch(&mut feed, collector, None).await;
    assert_eq!(next_snapshot(&mut empty_handed).await.generation, snap.generation);
    drop(empty_handed);
    registry.register_producer(producer(Uuid::new_v4(), 3)).await.unwrap();
    assert!(next_snapshot(&mut stream).await.generation > snap.generation, "a newer generation is sent");
    let collectors = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
    assert_eq!(collectors[0].reported_outcome(), pb::ApplyOutcome::Rejected);
    assert_eq!(collectors[0].reported_reason, "digest mismatch");
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_flow_on_an_idle_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = config(dir.path());
    config.heartbeat = Duration::from_millis(50);
    let server = TestServer::start(config).await;
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, Uuid::new_v4(), None).await;
    let snap = next_snapshot(&mut stream).await;
    for _ in 0..3 {
        match next_frame(&mut stream).await {
            Frame::Heartbeat(h) => assert_eq!((h.epoch, h.generation), (snap.epoch.clone(), snap.generation)),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, Uuid::new_v4(), None).await;
    next_snapshot(&mut stream).await;
    server.stop().await;
    let status =
        tokio::time::timeout(WAIT, stream.message()).await.unwrap().expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("shutting down"), "{status}");
}

/// Every bad field is answered with INVALID_ARGUMENT naming it, and nothing is stored.
#[tokio::test]
async fn bad_input_is_rejected_with_the_field_named_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    let mut feed = server.feed().await;
    let collector = Uuid::new_v4();
    let snap = next_snapshot(&mut watch(&mut feed, collector, None).await).await;
    registry.register_producer(producer(Uuid::new_v4(), 1)).await.unwrap();
    let before = list_all(&mut registry).await;
    let collectors_before = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner();

    let ok = || producer(Uuid::new_v4(), 2);
    let registrations: Vec<(&str, pb::RegisterProducerRequest)> = vec![
        ("producer_id", pb::RegisterProducerRequest { producer_id: "not-a-uuid".into(), ..ok() }),
        ("producer_id", pb::RegisterProducerRequest { producer_id: String::new(), ..ok() }),
        ("address", pb::RegisterProducerRequest { address: String::new(), ..ok() }),
        ("address", pb::RegisterProducerRequest { address: "no port".into(), ..ok() }),
        ("address", pb::RegisterProducerRequest { address: "host:0".into(), ..ok() }),
        ("address", pb::RegisterProducerRequest { address: "x".repeat(10_000), ..ok() }),
        ("interval_ms", pb::RegisterProducerRequest { interval_ms: 0, ..ok() }),
        ("interval_ms", pb::RegisterProducerRequest { interval_ms: u32::MAX, ..ok() }),
        ("lease_ms", pb::RegisterProducerRequest { lease_ms: Some(1), ..ok() }),
        ("pinned_collector_id", pb::RegisterProducerRequest { pinned_collector_id: "nope".into(), ..ok() }),
        (
            "labels",
            pb::RegisterProducerRequest { labels: (0..100).map(|i| (format!("l{i}"), "v".into())).collect(), ..ok() },
        ),
        (
            "labels[\"bad-name\"]",
            pb::RegisterProducerRequest { labels: [("bad-name".into(), "v".into())].into(), ..ok() },
        ),
        (
            "labels[\"long\"]",
            pb::RegisterProducerRequest { labels: [("long".into(), "v".repeat(1000))].into(), ..ok() },
        ),
    ];
    for (field, request) in registrations {
        let status = registry.register_producer(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status}");
        assert!(status.message().starts_with(&format!("{field}: ")), "{field}: {status}");
    }

    let status =
        registry.deregister_producer(pb::DeregisterProducerRequest { producer_id: "x".into() }).await.unwrap_err();
    assert!(status.code() == Code::InvalidArgument && status.message().starts_with("producer_id: "), "{status}");

    let listings: Vec<(&str, pb::ListProducersRequest)> = vec![
        ("page_size", pb::ListProducersRequest { page_size: Some(0), ..Default::default() }),
        ("page_size", pb::ListProducersRequest { page_size: Some(1_000_000), ..Default::default() }),
        ("page_token", pb::ListProducersRequest { page_token: "bogus".into(), ..Default::default() }),
        ("collector_id", pb::ListProducersRequest { collector_id: "bogus".into(), ..Default::default() }),
    ];
    for (field, request) in listings {
        let status = registry.list_producers(request).await.expect_err(field);
        assert!(
            status.code() == Code::InvalidArgument && status.message().starts_with(&format!("{field}: ")),
            "{status}"
        );
    }

    let watches: Vec<(&str, pb::WatchRequest)> = vec![
        ("collector_id", pb::WatchRequest { collector_id: "x".into(), ..Default::default() }),
        (
            "known_epoch",
            pb::WatchRequest {
                collector_id: collector.to_string(),
                known_epoch: "x".into(),
                known_generation: 1,
                ..Default::default()
            },
        ),
        (
            "known_generation",
            pb::WatchRequest {
                collector_id: collector.to_string(),
                known_epoch: String::new(),
                known_generation: 4,
                ..Default::default()
            },
        ),
        (
            "instance_id",
            pb::WatchRequest { collector_id: collector.to_string(), instance_id: "x".into(), ..Default::default() },
        ),
    ];
    for (field, request) in watches {
        let status = feed.watch(request).await.expect_err(field);
        assert!(
            status.code() == Code::InvalidArgument && status.message().starts_with(&format!("{field}: ")),
            "{status}"
        );
    }

    let report = || pb::ReportAppliedRequest {
        collector_id: collector.to_string(),
        epoch: snap.epoch.clone(),
        generation: snap.generation,
        outcome: pb::ApplyOutcome::Applied.into(),
        reason: String::new(),
    };
    let reports: Vec<(&str, pb::ReportAppliedRequest)> = vec![
        ("collector_id", pb::ReportAppliedRequest { collector_id: String::new(), ..report() }),
        ("epoch", pb::ReportAppliedRequest { epoch: "x".into(), ..report() }),
        ("generation", pb::ReportAppliedRequest { generation: 0, ..report() }),
        ("outcome", pb::ReportAppliedRequest { outcome: 0, ..report() }),
        ("outcome", pb::ReportAppliedRequest { outcome: 99, ..report() }),
        ("reason", pb::ReportAppliedRequest { reason: "r".repeat(5000), ..report() }),
    ];
    for (field, request) in reports {
        let status = feed.report_applied(request).await.expect_err(field);
        assert!(
            status.code() == Code::InvalidArgument && status.message().starts_with(&format!("{field}: ")),
            "{status}"
        );
    }
    let status = feed
        .report_applied(pb::ReportAppliedRequest { collector_id: Uuid::new_v4().to_string(), ..report() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");

    assert_eq!(list_all(&mut registry).await, before, "no producer was stored or changed");
    let collectors_after = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner();
    assert_eq!(collectors_after.collectors.len(), collectors_before.collectors.len());
    assert_eq!(collectors_after.collectors[0].reported_generation, 0, "no report was stored");
    server.stop().await;
}

/// Issue 11: time the server could not serve is charged to no lease and no grace period. The manual clock stands
/// for a process stopped for a minute (both clocks jump), a wall clock stepped an hour ahead (the wall clock
/// alone), and one stepped an hour back.
#[tokio::test]
async fn absence_and_clock_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = config(dir.path());
    config.absence_threshold = Duration::from_secs(2);
    let server = TestServer::start(config).await;
    let mut registry = server.registry().await;
    let mut feed = server.feed().await;
    let collector = Uuid::new_v4();
    let stream = watch(&mut feed, collector, None).await;
    let id = Uuid::new_v4();
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(40_000), ..producer(id, 1) })
        .await
        .unwrap();
    let get = |mut registry: pb::registry_client::RegistryClient<_>| async move {
        registry.get_producer(pb::GetProducerRequest { producer_id: id.to_string() }).await
    };
    // Its stream closes: the collector is in grace (60 s) and keeps the producer.
    drop(stream);
    wait_for_some("the collector in grace", || {
        let mut registry = registry.clone();
        async move {
            let listed = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner();
            (listed.collectors[0].state() == pb::CollectorState::Grace).then_some(())
        }
    })
    .await;

    // Stopped for 100 s, beyond the 40 s lease and the 60 s grace: on waking, nothing lapses or departs.
    clock.advance(Duration::from_secs(100));
    let now = clock.now_ms();
    let extended = wait_for_some("the lease extended", || {
        let registry = registry.clone();
        async move {
            let p = get(registry).await.expect("still registered").into_inner();
            (p.lease_expires_at_unix_ms >= now + 10_000).then_some(p)
        }
    })
    .await;
    assert_eq!(extended.assigned_collector_id, collector.to_string(), "the collector in grace keeps it");
    let listed = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner();
    assert!(listed.collectors[0].grace_ends_at_unix_ms >= now + 60_000, "{listed:?}");

    // Served time still counts: unrenewed, in steps a serving server sees, the lease lapses a renewal interval on.
    for _ in 0..11 {
        clock.advance(Duration::from_secs(1));
        let _ = get(registry.clone()).await;
    }
    wait_for_some("the unrenewed lease lapsed", || {
        let registry = registry.clone();
        async move { get(registry).await.is_err_and(|s| s.code() == Code::NotFound).then_some(()) }
    })
    .await;

    // The wall clock steps an hour ahead, monotonic time does not: no lease is charged for that hour.
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(40_000), ..producer(id, 1) })
        .await
        .unwrap();
    clock.step_wall_forward(Duration::from_secs(3600));
    let now = clock.now_ms();
    wait_for_some("the lease moved past the step", || {
        let registry = registry.clone();
        async move {
            get(registry).await.ok().map(|p| p.into_inner()).filter(|p| p.lease_expires_at_unix_ms >= now + 10_000)
        }
    })
    .await;

    // It steps back a day: no lease may then last longer than its length from now.
    clock.step_wall_back(Duration::from_secs(86_400));
    let now = clock.now_ms();
    wait_for_some("the lease capped at its length", || {
        let registry = registry.clone();
        async move {
            get(registry).await.ok().map(|p| p.into_inner()).filter(|p| p.lease_expires_at_unix_ms <= now + 40_000)
        }
    })
    .await;
    server.stop().await;
}

/// `SetProducerPin` checks its fields at the edge like every other call (the CLI refuses bad ids before calling).
#[tokio::test]
async fn set_producer_pin_names_a_bad_field_and_an_unknown_producer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    let id = Uuid::new_v4();
    registry.register_producer(producer(id, 1)).await.unwrap();
    let pin = |producer_id: String, collector_id: &str| pb::SetProducerPinRequest {
        producer_id,
        collector_id: collector_id.to_owned(),
    };
    for (field, request) in [
        ("collector_id", pin(id.to_string(), "nope")),
        ("collector_id", pin(id.to_string(), "00000000-0000-0000-0000-000000000000")),
        ("producer_id", pin("nope".into(), &Uuid::new_v4().to_string())),
    ] {
        let status = registry.set_producer_pin(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(&format!("{field}: ")), "{status:?}");
    }
    let unknown = Uuid::new_v4();
    let status = registry.set_producer_pin(pin(unknown.to_string(), &Uuid::new_v4().to_string())).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains(&unknown.to_string()), "{status:?}");
    let stored = registry.get_producer(pb::GetProducerRequest { producer_id: id.to_string() }).await.unwrap();
    assert_eq!(stored.into_inner().operator_pinned_collector_id, "", "nothing was pinned");
    server.stop().await;
}

/// The seed's failure 1, on the wire: listing the producers of a collector the server does not know is NOT_FOUND,
/// never an empty page that a client would trust as "nothing to collect".
#[tokio::test]
async fn listing_the_producers_of_an_unknown_collector_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()).0).await;
    let mut registry = server.registry().await;
    registry.register_producer(producer(Uuid::new_v4(), 1)).await.unwrap();
    let unknown = Uuid::new_v4();
    let request = |c: Uuid| pb::ListProducersRequest { collector_id: c.to_string(), ..Default::default() };
    let status = registry.list_producers(request(unknown)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().starts_with(&format!("collector_id: {unknown} is not known")), "{status:?}");
    // A known collector with nothing assigned is an empty page, as before.
    let mut feed = server.feed().await;
    let known = Uuid::new_v4();
    let mut stream = watch(&mut feed, known, None).await;
    next_snapshot(&mut stream).await;
    let page = registry.list_producers(request(known)).await.unwrap().into_inner();
    assert_eq!(page.total_count, 1, "the one producer is assigned to the one collector");
    server.stop().await;
}

/// H6 (L3 across replicas): time when no replica led counts for no lease. A replica on PostgreSQL registers a
/// producer on a 40 s lease and stops; the lead it held lapses 100 s before the next replica starts, and the clock
/// moves as far. The replica that takes the lead forgives the 100 s: the lease gets a renewal interval from now
/// instead of lapsing at its first sweep.
#[tokio::test]
async fn time_when_no_replica_led_counts_for_no_lease() {
    use sqlx::Connection as _;

    let postgres = roster_testkit::TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = config(dir.path());
    config.store = postgres.url().parse().unwrap();
    let server = TestServer::start(config.clone()).await;
    let id = Uuid::new_v4();
    let mut registry = server.registry().await;
    registry
        .register_producer(pb::RegisterProducerRequest { lease_ms: Some(40_000), ..producer(id, 1) })
        .await
        .unwrap();
    server.stop().await;

    let mut db = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    sqlx::query("UPDATE meta SET leader_until_ms = leader_until_ms - 100000").execute(&mut db).await.unwrap();
    clock.advance(Duration::from_secs(100));
    let now = clock.now_ms();
    let server = TestServer::start(config).await;
    let registry = server.registry().await;
    let extended = wait_for_some("the lease extended by the new leader", || {
        let mut registry = registry.clone();
        async move {
            let p = registry.get_producer(pb::GetProducerRequest { producer_id: id.to_string() }).await;
            let p = p.expect("still registered: the leaderless time was forgiven").into_inner();
            (p.lease_expires_at_unix_ms >= now + 10_000).then_some(p)
        }
    })
    .await;
    // Without the forgiveness the first sweep (every 20 ms) lapses the lease, and the wait above fails on NOT_FOUND.
    assert!(extended.lease_expires_at_unix_ms <= now + 40_000, "a renewal interval, not a new lease: {extended:?}");
    server.stop().await;
}

/// A collector that comes back to a feed the server already published, unchanged by the batch that records its
/// stream, is served before that batch's commit. Here another connection holds the store's write lock until the
/// snapshot arrived, and the commit goes through once it is let go: had the server waited for its commit before
/// answering, the commit would have failed on the held lock first (after the store's 5 s busy timeout).
#[tokio::test]
async fn a_returning_collector_is_served_its_feed_before_the_commit_that_records_its_stream() {
    use sqlx::Connection as _;

    let dir = tempfile::tempdir().unwrap();
    let (mut config, _clock) = config(dir.path());
    // A port free a moment ago, for the metrics page (the config takes an address, not a listener).
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    config.metrics_listen = Some(metrics);
    let server = TestServer::start(config).await;
    let (collector, p) = (Uuid::new_v4(), Uuid::new_v4());
    let mut feed = server.feed().await;
    let mut stream = watch(&mut feed, collector, None).await;
    next_snapshot(&mut stream).await;
    let mut registry = server.registry().await;
    registry.register_producer(producer(p, 9100)).await.unwrap();
    let served = next_snapshot(&mut stream).await;
    assert_eq!(served.ids(), vec![p.to_string()]);
    drop(stream);
    let state = |wanted: pb::CollectorState| {
        let mut registry = registry.clone();
        async move {
            let list = registry.list_collectors(pb::ListCollectorsRequest {}).await.unwrap().into_inner().collectors;
            list.into_iter().find(|c| c.id == collector.to_string() && c.state() == wanted)
        }
    };
    wait_for_some("the collector in grace", || state(pb::CollectorState::Grace)).await;

    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("roster.db").display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let mut stream = watch(&mut feed, collector, None).await;
    let again = next_snapshot(&mut stream).await;
    assert_eq!((again.generation, again.ids()), (served.generation, served.ids()), "the committed generation");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    wait_for_some("the collector live, its stream recorded", || state(pb::CollectorState::Live)).await;
    let text = scrape(metrics).await;
    assert!(text.lines().any(|l| l == "roster_server_store_commit_failures_total 0"), "no commit failed:\n{text}");
    drop(stream);
    server.stop().await;
}
