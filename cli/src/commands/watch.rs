//! `roster watch`: follows a collector's feed as an observer (no report, no instance id, no liveness) and prints
//! each applied snapshot, each discard and each reconnection. It gives up after `--max-attempts` failed attempts in
//! a row (a stream that opened starts the count again), as every other command does.

use std::time::Instant;

use roster::{
    domain::Collection,
    endpoint::ServerUrl,
    follower::{Follower, FollowerConfig, FollowerEvent},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Globals;
use crate::{
    args::WatchArgs,
    output::{self, Format},
};

#[allow(clippy::print_stdout, reason = "printing the feed is what this command is for")]
pub(super) async fn run(globals: &Globals, args: WatchArgs) -> anyhow::Result<()> {
    let WatchArgs { collector, count } = args;
    let mut config = FollowerConfig::new(globals.server.clone(), collector);
    config.tls = globals.tls.clone();
    config.report = false;
    config.observe_only = true;
    config.credentials = globals.credentials.clone();
    // An observer, not the collector: it gives no instance id, so following a running collector's feed is not
    // taken for a second process with its id.
    config.instance = None;
    let (follower, handle) = Follower::new(config)?;
    let mut events = handle.events.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(stop.clone()));
    let mut applied = 0u64;
    // Failed attempts since the last stream opened, and when the first of them began: the follower reconnects
    // forever, but a watch on a wrong URL or a down server must end, like any other command (`--max-attempts`).
    let mut failures = 0u32;
    let mut failing_since = Some(Instant::now());
    let signal = roster::process::shutdown_signal_or_hangup();
    tokio::pin!(signal);
    loop {
        let event = tokio::select! {
            () = &mut signal => break,
            event = events.recv() => match event {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("({n} events skipped: output too slow)");
                    continue;
                }
                Err(_) => break,
            },
        };
        let (value, text) = match &event {
            FollowerEvent::WatchRefused { code, message } => {
                // Retrying cannot change these answers: say so and stop, rather than follow nothing forever.
                if matches!(
                    code,
                    tonic::Code::NotFound
                        | tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                        | tonic::Code::Unimplemented
                ) {
                    stop.cancel();
                    let _ = task.await;
                    anyhow::bail!("Watch: {code:?}: {message}");
                }
                continue;
            }
            FollowerEvent::Connected { endpoint } => {
                failures = 0;
                failing_since = None;
                (json!({"event": "connected", "endpoint": endpoint}), format!("connected to {endpoint}"))
            }
            FollowerEvent::Lost { cause, delay } => {
                failures += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if failures >= globals.max_attempts {
                    stop.cancel();
                    let _ = task.await;
                    anyhow::bail!(
                        "Watch: gave up after {} over {:.1} s to follow the feed from --server {}; last error: {cause}",
                        roster::retry::attempts_text(failures),
                        since.elapsed().as_secs_f64(),
                        ServerUrl::joined(&globals.server),
                    );
                }
                (
                    json!({"event": "lost", "cause": cause, "retry_in_ms": delay.as_millis() as u64}),
                    format!("stream lost ({cause}); reconnecting in {delay:?}"),
                )
            }
            FollowerEvent::Discarded { reason, detail } => (
                json!({"event": "discarded", "reason": reason, "detail": detail}),
                format!("discarded ({reason}): {detail}"),
            ),
            FollowerEvent::Reported { generation } => (
                json!({"event": "reported", "generation": generation}),
                format!("generation {generation} reported to the server"),
            ),
            FollowerEvent::Applied(s) => {
                let producers: Vec<_> = s
                    .targets
                    .iter()
                    .map(|t| {
                        let prometheus = match &t.collection {
                            Collection::Grpc => None,
                            Collection::Prometheus(target) => Some(output::prometheus_json(&target.to_pb())),
                        };
                        json!({"id": t.id.to_string(), "kind": t.collection.kind().as_str(), "address": t.address.to_string(), "prometheus": prometheus, "interval_ms": t.interval.as_millis() as u64, "labels": t.labels.to_map()})
                    })
                    .collect();
                let mut text =
                    format!("applied generation {} of epoch {}: {} producers", s.generation, s.epoch, s.targets.len());
                for t in &s.targets {
                    let place = match &t.collection {
                        Collection::Grpc => t.address.to_string(),
                        Collection::Prometheus(target) => target.url(&t.address),
                    };
                    text.push_str(&format!("\n  {}  {}  {place}  {:?}", t.id, t.collection.kind(), t.interval));
                }
                (
                    json!({"event": "applied", "epoch": s.epoch.to_string(), "generation": s.generation, "producers": producers}),
                    text,
                )
            }
        };
        match globals.format {
            Format::Json => println!("{value}"),
            Format::Table => println!("{text}"),
        }
        if matches!(event, FollowerEvent::Applied(_)) {
            applied += 1;
            if count.is_some_and(|c| applied >= c) {
                break;
            }
        }
    }
    stop.cancel();
    let _ = task.await;
    Ok(())
}
