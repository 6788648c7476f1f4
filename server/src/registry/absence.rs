//! How long the server could not serve, measured by the server itself: a pure function of two clock readings.
//!
//! L3 says time the control plane was down does not count against a lease. A restart is the obvious downtime,
//! but a server can be absent without restarting: the process is stopped (SIGSTOP, a debugger), the VM is paused
//! or live-migrated, the host swaps, or the wall clock steps forward after a resume (an NTP correction). The
//! registry actor wakes at least once per sweep interval, so between two wakes it expects about that much time to
//! pass. Each wake it takes both readings of its [`Clock`](crate::clock::Clock) and compares them with the last:
//!
//! - more time passed than one sweep interval plus the threshold, on either clock: the server was **absent** for
//!   the excess, and the registry forgives it as it does a restart (see `State::forgive_absence`);
//! - the wall clock moved back against the monotonic one by more than the threshold: it **stepped back**, and
//!   every deadline is clamped to what it could be from now (see `State::clamp_deadlines`), so a backward step
//!   cannot make a lease last longer than its length.
//!
//! Small jitter (a busy machine, a slow commit) stays under the threshold and changes nothing.

use std::time::Duration;

use crate::clock::ms;

/// One pair of clock readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Monotonic milliseconds.
    pub monotonic_ms: u64,
    /// Wall-clock Unix milliseconds.
    pub wall_ms: u64,
}

/// What the time between two wakes says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Time passed as expected.
    Present,
    /// The server could not serve for about `ms` milliseconds.
    Absent {
        /// The time beyond the expected gap.
        ms: u64,
        /// Whether the wall clock moved further than monotonic time (a step forward, or a pause the monotonic
        /// clock did not see), rather than both moving together.
        wall_step: bool,
    },
    /// The wall clock stepped back by about `ms` milliseconds.
    WallSteppedBack {
        /// How far.
        ms: u64,
    },
}

/// Judges the time between two wakes: `expected` is the longest gap a serving actor leaves (its sweep interval),
/// `threshold` the lateness that is still not absence.
pub fn judge(last: Reading, now: Reading, expected: Duration, threshold: Duration) -> Verdict {
    let monotonic = i128::from(now.monotonic_ms) - i128::from(last.monotonic_ms);
    let wall = i128::from(now.wall_ms) - i128::from(last.wall_ms);
    let threshold = i128::from(ms(threshold));
    if monotonic - wall > threshold {
        return Verdict::WallSteppedBack { ms: u64::try_from(monotonic - wall).unwrap_or(u64::MAX) };
    }
    let late = monotonic.max(wall) - i128::from(ms(expected));
    if late > threshold {
        return Verdict::Absent {
            ms: u64::try_from(late).unwrap_or(u64::MAX),
            wall_step: wall - monotonic > threshold,
        };
    }
    Verdict::Present
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EXPECTED: Duration = Duration::from_secs(1);
    const THRESHOLD: Duration = Duration::from_secs(2);

    fn at(monotonic_ms: u64, wall_ms: u64) -> Reading {
        Reading { monotonic_ms, wall_ms }
    }

    #[test]
    fn the_cases() {
        let last = at(10_000, 1_700_000_000_000);
        let judge =
            |m: u64, w: i64| judge(last, at(10_000 + m, last.wall_ms.saturating_add_signed(w)), EXPECTED, THRESHOLD);
        assert_eq!(judge(1_000, 1_000), Verdict::Present, "a normal sweep");
        assert_eq!(judge(3_000, 3_000), Verdict::Present, "late, but within the threshold");
        assert_eq!(judge(40_000, 40_000), Verdict::Absent { ms: 39_000, wall_step: false }, "SIGSTOP for 40 s");
        assert_eq!(judge(20, 3_600_020), Verdict::Absent { ms: 3_599_020, wall_step: true }, "wall stepped 1 h ahead");
        assert_eq!(judge(1_000, -3_599_000), Verdict::WallSteppedBack { ms: 3_600_000 }, "wall stepped 1 h back");
        assert_eq!(judge(1_000, -500), Verdict::Present, "a small backward slew");
    }

    proptest! {
        /// When both clocks move together by no more than the expected gap plus the threshold, nothing is found;
        /// beyond it, absence is found and never overstated.
        #[test]
        fn absence_is_found_exactly_beyond_the_threshold(gap in 0u64..100_000_000, start in 0u64..u64::MAX / 2) {
            let verdict = judge(at(start, start), at(start + gap, start + gap), EXPECTED, THRESHOLD);
            if gap <= 3_000 {
                prop_assert_eq!(verdict, Verdict::Present);
            } else {
                prop_assert_eq!(verdict, Verdict::Absent { ms: gap - 1_000, wall_step: false });
            }
        }
    }
}
