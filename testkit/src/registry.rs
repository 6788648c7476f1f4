//! Registering producers in bulk, the one way every suite and the benchmark do it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use roster::{
    endpoint::ServerUrl,
    pb::{self, registry_client::RegistryClient},
    transport::ClientOptions,
};
use tonic::transport::Channel;

/// What a bulk registration can fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A registration of a new producer at `address`, collected every `interval_ms`.
pub fn registration(address: &str, interval_ms: u32) -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest {
        producer_id: uuid::Uuid::new_v4().to_string(),
        address: address.to_owned(),
        interval_ms,
        ..Default::default()
    }
}

/// A producer at an address nothing answers on, due hourly: it costs a registration and a place in a snapshot,
/// and no collection within any test.
pub fn never_due() -> pb::RegisterProducerRequest {
    registration("127.0.0.1:9", 3_600_000)
}

/// The largest labels a registration may carry: as many labels as allowed, each name and value as long as
/// allowed (the limits of `roster::domain`). About 10 KiB encoded.
pub fn largest_labels() -> BTreeMap<String, String> {
    use roster::domain::{MAX_LABEL_NAME_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS};
    (0..MAX_LABELS)
        .map(|i| {
            let name = format!("l{i:03}_");
            let name = format!("{name}{}", "n".repeat(MAX_LABEL_NAME_BYTES - name.len()));
            (name, "v".repeat(MAX_LABEL_VALUE_BYTES))
        })
        .collect()
}

/// The longest producer address allowed (`roster::domain::MAX_ADDRESS_BYTES`): a DNS name of 63-byte labels under
/// `.invalid`, which never resolves (RFC 6761), and port 9.
pub fn longest_address() -> String {
    let suffix = ".invalid:9";
    let mut host = String::new();
    while host.len() + suffix.len() < roster::domain::MAX_ADDRESS_BYTES {
        if !host.is_empty() {
            host.push('.');
        }
        let room = roster::domain::MAX_ADDRESS_BYTES - suffix.len() - host.len();
        host.push_str(&"x".repeat(room.min(63)));
    }
    format!("{host}{suffix}")
}

/// Registers every request, `workers` at a time on one connection (the registry commits concurrent calls
/// together).
///
/// # Panics
/// When a registration fails: a test helper, the panic is the test failing.
pub async fn register_all(
    registry: &RegistryClient<Channel>,
    requests: Vec<pb::RegisterProducerRequest>,
    workers: usize,
) {
    let per_worker = requests.len().div_ceil(workers.max(1)).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for slice in requests.chunks(per_worker) {
        let mut registry = registry.clone();
        let slice = slice.to_vec();
        tasks.spawn(async move {
            for request in slice {
                #[allow(clippy::expect_used)] // Test helper: a panic is the test failing, with its message.
                registry.register_producer(request).await.expect("registration");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        #[allow(clippy::expect_used)]
        done.expect("registration task");
    }
}

/// Registers `count` [`never_due`] producers with `clients` concurrent clients, each on its own connection;
/// returns the acknowledged ids and the time the registrations took (connecting not included).
///
/// # Errors
/// When `url` is not `http://host:port`, a client cannot connect or a registration fails.
pub async fn register_many(url: &str, count: usize, clients: usize) -> Result<(Vec<String>, Duration), Error> {
    register_many_like(url, count, clients, never_due).await
}

/// As [`register_many`], each registration made by `make` (a new producer each time).
///
/// # Errors
/// When `url` is not `http://host:port`, a client cannot connect or a registration fails.
pub async fn register_many_like(
    url: &str,
    count: usize,
    clients: usize,
    make: fn() -> pb::RegisterProducerRequest,
) -> Result<(Vec<String>, Duration), Error> {
    register_spread(&[url], count, clients, make).await
}

/// As [`register_many_like`], the `i`-th client connected to `urls[i % urls.len()]`: clients spread over
/// replicas of one store.
///
/// # Errors
/// When `urls` is empty, one is not `http://host:port`, a client cannot connect or a registration fails.
pub async fn register_spread(
    urls: &[impl AsRef<str>],
    count: usize,
    clients: usize,
    make: fn() -> pb::RegisterProducerRequest,
) -> Result<(Vec<String>, Duration), Error> {
    if urls.is_empty() {
        return Err("no server to register with".into());
    }
    let urls: Vec<ServerUrl> = urls.iter().map(|url| ServerUrl::parse(url.as_ref())).collect::<Result<_, _>>()?;
    let clients = clients.max(1);
    let mut connected = Vec::with_capacity(clients);
    for url in urls.iter().cycle().take(clients) {
        connected.push(RegistryClient::new(ClientOptions::default().connect(url).await?));
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, mut client) in connected.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for _ in (worker..count).step_by(clients) {
                let request = make();
                ids.push(request.producer_id.clone());
                client.register_producer(request).await?;
            }
            Ok::<_, tonic::Status>(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        ids.extend(done??);
    }
    Ok((ids, start.elapsed()))
}
