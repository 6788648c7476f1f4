//! The server's two readings of time, behind a trait so tests can move them by hand.
//!
//! - Wall-clock time (Unix milliseconds) for lease expiry, grace periods and timestamps: it is stored, so it
//!   survives restarts.
//! - Monotonic time, which only moves while the machine runs and never steps: with the wall clock it tells the
//!   registry how long it could not serve (a stalled process, a paused VM) and whether the wall clock stepped
//!   (see `registry::absence`).
//!
//! A [`ManualClock`] lets a test jump hours ahead (a long downtime) or past a lease without sleeping and without
//! racing tokio's paused-time auto-advance against the store's I/O thread, and step the wall clock alone, as an
//! NTP correction does.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A source of the current wall-clock time, in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Milliseconds since an arbitrary fixed point; never goes back and does not step with the wall clock.
    fn monotonic_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ms(&self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        ms(START.get_or_init(Instant::now).elapsed())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    /// A clock whose wall reading is `start_ms` (its monotonic reading starts at 0).
    pub fn new(start_ms: u64) -> Self {
        Self { wall: AtomicU64::new(start_ms), monotonic: AtomicU64::new(0) }
    }

    /// Lets `by` pass: both readings move forward.
    pub fn advance(&self, by: Duration) {
        self.monotonic.fetch_add(ms(by), Ordering::SeqCst);
        self.wall.fetch_add(ms(by), Ordering::SeqCst);
    }

    /// Steps the wall clock alone forward by `by`, as an NTP correction does; monotonic time does not move.
    pub fn step_wall_forward(&self, by: Duration) {
        self.wall.fetch_add(ms(by), Ordering::SeqCst);
    }

    /// Steps the wall clock alone back by `by`.
    pub fn step_wall_back(&self, by: Duration) {
        self.wall.fetch_sub(ms(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

/// A duration in whole milliseconds, as stored.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
