//! Producers that misbehave, collected by a real roster-collector process: one hangs (accepts, never answers),
//! one answers after its deadline, one answers garbage bytes, one answers a payload above the 4 MiB limit. Each
//! one's failures are counted in the collector's status with a clear error, and a healthy producer beside them is
//! still collected on time. And the reverse: a collection cut short because the *collector* was stopped is not
//! counted against the producer.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Proc, registration, registry, start_collector, start_server, wait_status};
use roster::pb;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tonic::transport::{Server, server::TcpIncoming};

/// A Producer that answers after `delay` with `samples` samples whose names are `name_bytes` long, counting calls.
#[derive(Default)]
struct Misbehaving {
    delay: Duration,
    samples: usize,
    name_bytes: usize,
    calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl pb::producer_server::Producer for Misbehaving {
    async fn collect(
        &self,
        _request: tonic::Request<pb::CollectRequest>,
    ) -> Result<tonic::Response<pb::CollectResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let sample = pb::Sample { name: "x".repeat(self.name_bytes), value: 1.0, ..Default::default() };
        Ok(tonic::Response::new(pb::CollectResponse { samples: vec![sample; self.samples] }))
    }
}

async fn serve(producer: Misbehaving) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = pb::producer_server::ProducerServer::new(producer).max_encoding_message_size(64 << 20);
    tokio::spawn(Server::builder().add_service(service).serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

/// A TCP endpoint that accepts and then, per connection, either holds it silently or writes `garbage` forever.
async fn raw(garbage: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Bounded by the test's lifetime: the socket closes when the collector gives up on it.
                for _ in 0..10_000 {
                    if let Some(bytes) = garbage
                        && socket.write_all(bytes).await.is_err()
                    {
                        return;
                    }
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_slow_garbage_or_huge_producer_fails_alone_and_the_healthy_one_is_collected_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (_collector, status_addr, _) = start_collector(&url, &collector_dir);

    let healthy = Proc::start("roster-demo-producer", &["--server", &url, "--interval", "200ms"]);
    let healthy_id = healthy.logged("demo producer serving", "producer.id=");
    let bad: BTreeMap<&str, SocketAddr> = BTreeMap::from([
        ("hanging", raw(None).await),
        ("garbage", raw(Some(b"HTTP/1.1 200 OK\r\n\r\nnot grpc at all \xff\xfe")).await),
        (
            "slow",
            serve(Misbehaving { delay: Duration::from_secs(3), samples: 1, name_bytes: 4, ..Default::default() }).await,
        ),
        ("huge", serve(Misbehaving { samples: 80, name_bytes: 100_000, ..Default::default() }).await),
    ]);
    let mut client = registry(&url).await;
    let mut ids = BTreeMap::new();
    for (name, addr) in &bad {
        let request = registration(&addr.to_string(), 1000);
        ids.insert(request.producer_id.clone(), *name);
        client.register_producer(request).await.unwrap();
    }

    let status = wait_status(&status_addr, "three failures of each misbehaving producer", |s| {
        s.producers.len() == 5 && s.producers.iter().filter(|p| ids.contains_key(&p.id)).all(|p| p.failures >= 3)
    })
    .await;
    for producer in &status.producers {
        if let Some(name) = ids.get(&producer.id) {
            eprintln!("figure: {name} producer: {} failures, last error: {}", producer.failures, producer.last_error);
            assert_eq!(producer.collections, 0, "{name}: {producer:?}");
            assert!(!producer.last_error.is_empty(), "{name}: the error is kept for operators");
        }
    }
    let error_of = |name: &str| {
        let id = ids.iter().find(|(_, n)| **n == name).unwrap().0;
        status.producers.iter().find(|p| &p.id == id).unwrap().last_error.clone()
    };
    assert!(error_of("hanging").contains("no answer within 800ms"), "{}", error_of("hanging"));
    assert!(error_of("slow").contains("no answer within 800ms"), "{}", error_of("slow"));
    assert!(error_of("huge").contains("too large"), "{}", error_of("huge"));

    let good = status.producers.iter().find(|p| p.id == healthy_id).unwrap();
    assert_eq!(good.failures, 0, "{good:?}");
    // On time: consecutive collections of the healthy producer, meanwhile, are never far apart.
    let text = std::fs::read_to_string(collector_dir.join("samples.jsonl")).unwrap();
    let mut times: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["producer_id"] == healthy_id.as_str())
        .map(|v| v["time_unix_ms"].as_u64().unwrap())
        .collect();
    times.dedup();
    let widest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!("figure: healthy producer: {} collections, widest gap {widest} ms (interval 200 ms)", times.len());
    assert!(times.len() >= 10, "{}", times.len());
    assert!(widest < 1_000, "the healthy producer was held up: a {widest} ms gap at a 200 ms interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_cut_short_by_the_collectors_own_stop_is_not_the_producers_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (collector, status_addr, _) = start_collector(&url, &dir.path().join("c"));
    // Collected every 4 s with a 3.2 s deadline; it answers after 1 s, well within it.
    let calls = Arc::new(AtomicU64::new(0));
    let producer =
        serve(Misbehaving { delay: Duration::from_secs(1), samples: 1, name_bytes: 4, calls: calls.clone() });
    registry(&url).await.register_producer(registration(&producer.await.to_string(), 4000)).await.unwrap();

    // The collector is stopped while a collection is in flight, for longer than the deadline and the interval.
    common::wait_for("a collection in flight", || calls.load(Ordering::SeqCst) == 1).await;
    collector.signal("-STOP");
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.signal("-CONT");
    let status = wait_status(&status_addr, "the cut collection counted as the collector's own stall", |s| {
        s.producers.first().is_some_and(|p| p.own_stalls == 1)
    })
    .await;
    let p = &status.producers[0];
    eprintln!("figure: after a 6 s stop: {p:?}");
    assert_eq!((p.failures, p.skipped_ticks), (0, 0), "the producer is not blamed: {p:?}");
    assert!(collector.stderr().contains("this collector was not running"), "{}", collector.stderr());
    // It goes on being collected as usual.
    let next = wait_status(&status_addr, "a collection after the stop", |s| {
        s.producers.first().is_some_and(|q| q.collections > p.collections)
    })
    .await;
    assert_eq!(next.producers[0].failures, 0);
}
