//! The task that serves one collector's `Watch` stream (S3–S6), from the generations the registry publishes.
//!
//! A slow or stuck reader blocks only its own task, on its own small channel; the registry never waits for it.
//! When the task is ready again it takes the latest generation published and sends its snapshot, built here (or
//! by another stream of the collector) rather than in the registry, so intermediate generations are skipped
//! rather than queued (S4) and never built. Idle streams get heartbeats (S5); a shutdown ends every
//! stream with `UNAVAILABLE` and a time to reconnect, spread over the fleet (S6).

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use roster::{
    domain::WatchParams,
    pb::{self, watch_response::Frame},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, info};

use crate::{
    error::Error,
    feed::snapshot::{Published, Snapshot},
    registry::Attached,
    wire::WatchFrame,
};

/// Settings of one feed stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamConfig {
    /// Idle time after which a heartbeat is sent (S5).
    pub heartbeat: Duration,
    /// Cancelled when the server shuts down (S6).
    pub shutdown: CancellationToken,
    /// Feed streams open now, across the server.
    pub open: Arc<OpenStreams>,
    /// On shutdown, the collectors are asked to come back spread over a window of `open / reconnect_rate`
    /// seconds (at most [`MAX_RECONNECT_SPREAD`]), so a restart is not met by the whole fleet at once.
    pub reconnect_rate: u32,
}

/// The count of open feed streams, and the count when shutdown began.
#[derive(Debug, Default)]
pub(crate) struct OpenStreams {
    now: AtomicUsize,
    at_shutdown: OnceLock<usize>,
}

impl OpenStreams {
    /// Feed streams open now.
    pub(crate) fn open(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// The reconnect window for a shutdown, from the number of streams open when the first one ended: every
    /// stream gets the same window, however many have ended since.
    pub(crate) fn shutdown_window(&self, rate: u32) -> Duration {
        reconnect_spread(*self.at_shutdown.get_or_init(|| self.now.load(Ordering::Relaxed)), rate)
    }
}

/// The widest window over which collectors are asked to come back after a shutdown.
pub(crate) const MAX_RECONNECT_SPREAD: Duration = Duration::from_secs(10);

/// The window over which `open` collectors should come back, for at most `rate` reconnects per second.
pub(crate) fn reconnect_spread(open: usize, rate: u32) -> Duration {
    let seconds = open as f64 / f64::from(rate.max(1));
    Duration::from_secs_f64(seconds).min(MAX_RECONNECT_SPREAD)
}

/// Frames queued per stream: small, so a stuck reader holds little memory.
pub(crate) const STREAM_BUFFER: usize = 2;

/// Why a stream task stopped sending.
enum Stop {
    ClientGone,
    Shutdown,
}

/// A stream's queue. Its error is boxed, as a frame is (see [`WatchFrame`]): tokio allocates a queue's slots 32 at a
/// time, whatever its bound, and each slot is as big as its item, so an unboxed `Status` would make every idle stream
/// hold kilobytes it never uses.
pub(crate) type Out = mpsc::Sender<Result<WatchFrame, Box<Status>>>;

async fn send(out: &Out, frame: impl Into<WatchFrame>, shutdown: &CancellationToken) -> Result<(), Stop> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Stop::Shutdown),
        sent = out.send(Ok(frame.into())) => sent.map_err(|_| Stop::ClientGone),
    }
}

async fn send_snapshot(out: &Out, snapshot: &Snapshot, shutdown: &CancellationToken) -> Result<(), Stop> {
    for index in 0..snapshot.chunk_count() {
        send(out, WatchFrame::Encoded(snapshot.encoded_chunk(index)), shutdown).await?;
    }
    debug!(
        generation = snapshot.generation,
        chunks = snapshot.chunk_count(),
        producers = snapshot.producer_count(),
        "snapshot sent"
    );
    Ok(())
}

/// Serves one `Watch` stream until the client goes away or the server shuts down.
pub(crate) async fn serve(params: WatchParams, attached: Attached, out: Out, config: StreamConfig) {
    let Attached { mut versions, rejected, guard } = attached;
    let _open = OpenStream::new(&config.open);
    let shutdown = &config.shutdown;
    let result = async {
        let current: Arc<Published> = versions.borrow_and_update().clone();
        let mut sent = current.generation;
        let current_id = (current.epoch, current.generation);
        if params.known == Some(current_id) {
            send(
                &out,
                Frame::InSync(pb::InSync { epoch: current.epoch.to_string(), generation: current.generation }),
                shutdown,
            )
            .await?;
        } else if rejected == Some(current.generation) && params.known.is_some() {
            // C4 holds back a rejected generation from a client that keeps another snapshot in force. A client
            // with none (a new or wiped data directory under a known id) must get the current one, or it would
            // collect nothing until the next change.
            info!(generation = current.generation, "collector rejected its current generation; not resending it (C4)");
            send(&out, heartbeat(&current), shutdown).await?;
        } else {
            send_snapshot(&out, &current.snapshot(), shutdown).await?;
        }
        let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + config.heartbeat, config.heartbeat);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut latest = current;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = out.closed() => return Err(Stop::ClientGone),
                changed = versions.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Shutdown);
                    }
                    latest = versions.borrow_and_update().clone();
                    // Generations are published in increasing order; this only keeps one from being sent twice.
                    if latest.generation > sent {
                        send_snapshot(&out, &latest.snapshot(), shutdown).await?;
                        sent = latest.generation;
                        idle.reset();
                    }
                }
                _ = idle.tick() => {
                    send(&out, heartbeat(&latest), shutdown).await?;
                }
            }
        }
    }
    .await;
    match result {
        Err(Stop::Shutdown) => {
            // S6: tell the collector to reconnect, and when: a random point of the spread window, in gRPC's own
            // retry pushback header, so the fleet comes back spread out rather than all at once. A small fleet's
            // window is a few milliseconds: "at once". A stuck reader may never take it; don't wait long.
            let window = config.open.shutdown_window(config.reconnect_rate);
            let pushback_ms = rand::random_range(0..=u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
            let status = Status::from(Error::Reconnect { pushback_ms });
            let _ = tokio::time::timeout(Duration::from_secs(1), out.send(Err(Box::new(status)))).await;
            info!("feed stream ended: server shutting down");
        }
        Err(Stop::ClientGone) | Ok(()) => info!("feed stream ended: collector went away"),
    }
    drop(guard);
}

/// Counts one open stream for as long as it lives.
struct OpenStream(Arc<OpenStreams>);

impl OpenStream {
    fn new(open: &Arc<OpenStreams>) -> Self {
        open.now.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

fn heartbeat(published: &Published) -> Frame {
    Frame::Heartbeat(pb::Heartbeat { epoch: published.epoch.to_string(), generation: published.generation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_ended_by_a_shutdown_gets_the_window_of_the_whole_fleet() {
        let open = Arc::new(OpenStreams::default());
        let streams: Vec<_> = (0..1000).map(|_| OpenStream::new(&open)).collect();
        let mut windows = Vec::new();
        for stream in streams {
            windows.push(open.shutdown_window(200));
            drop(stream);
        }
        assert!(windows.iter().all(|w| *w == Duration::from_secs(5)), "{:?}", windows.last());
        assert_eq!(open.now.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_reconnect_window_grows_with_the_fleet_up_to_its_cap() {
        assert_eq!(reconnect_spread(0, 200), Duration::ZERO);
        assert_eq!(reconnect_spread(1, 200), Duration::from_millis(5));
        assert_eq!(reconnect_spread(1000, 200), Duration::from_secs(5));
        assert_eq!(reconnect_spread(1_000_000, 200), MAX_RECONNECT_SPREAD);
        assert_eq!(reconnect_spread(10, 0), Duration::from_secs(10), "a zero rate is taken as 1 per second");
    }
}
