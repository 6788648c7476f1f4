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
//! Both can hold at once (a stop during which the clock was also stepped back): the absence is forgiven first,
//! then the deadlines are capped, and a floor of a quarter lease always lies below a ceiling of a whole one.
//!
//! Small jitter (a busy machine, a slow commit) stays under the threshold and changes nothing.

use std::time::Duration;

use crate::clock::ms;

/// One pair of clock readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Monotonic milliseconds.
    pub monotonic_ms: u64,
    /// Wall-clock Unix milliseconds.
    pub wall_ms: u64,
}

/// What the time between two wakes says. Both findings can hold at once: a process stopped for 40 s whose wall
/// clock was also stepped back 5 s meanwhile was absent *and* saw its clock step back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// How long the server could not serve, beyond the expected gap; 0 when it was present.
    pub absent_ms: u64,
    /// Whether the wall clock moved further than monotonic time (a step forward, or a pause the monotonic clock
    /// did not see), rather than both moving together.
    pub wall_step_forward: bool,
    /// How far the wall clock stepped back against monotonic time; 0 when it did not.
    pub stepped_back_ms: u64,
}

/// Judges the time between two wakes: `expected` is the longest gap a serving actor leaves (its sweep interval),
/// `threshold` the lateness (or backward step) that is still noise.
pub(crate) fn judge(last: Reading, now: Reading, expected: Duration, threshold: Duration) -> Verdict {
    let monotonic = i128::from(now.monotonic_ms) - i128::from(last.monotonic_ms);
    let wall = i128::from(now.wall_ms) - i128::from(last.wall_ms);
    let threshold = i128::from(ms(threshold));
    let beyond = |excess: i128| if excess > threshold { u64::try_from(excess).unwrap_or(u64::MAX) } else { 0 };
    Verdict {
        absent_ms: beyond(monotonic.max(wall) - i128::from(ms(expected))),
        wall_step_forward: wall - monotonic > threshold,
        stepped_back_ms: beyond(monotonic - wall),
    }
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
        let verdict =
            |absent_ms, wall_step_forward, stepped_back_ms| Verdict { absent_ms, wall_step_forward, stepped_back_ms };
        assert_eq!(judge(1_000, 1_000), Verdict::default(), "a normal sweep");
        assert_eq!(judge(3_000, 3_000), Verdict::default(), "late, but within the threshold");
        assert_eq!(judge(40_000, 40_000), verdict(39_000, false, 0), "SIGSTOP for 40 s");
        assert_eq!(judge(20, 3_600_020), verdict(3_599_020, true, 0), "wall stepped 1 h ahead");
        assert_eq!(judge(1_000, -3_599_000), verdict(0, false, 3_600_000), "wall stepped 1 h back");
        assert_eq!(judge(40_000, 35_000), verdict(39_000, false, 5_000), "stopped 40 s, the wall clock 5 s back");
        assert_eq!(judge(1_000, -500), Verdict::default(), "a small backward slew");
    }

    proptest! {
        /// When both clocks move together by no more than the expected gap plus the threshold, nothing is found;
        /// beyond it, absence is found and never overstated.
        #[test]
        fn absence_is_found_exactly_beyond_the_threshold(gap in 0u64..100_000_000, start in 0u64..u64::MAX / 2) {
            let verdict = judge(at(start, start), at(start + gap, start + gap), EXPECTED, THRESHOLD);
            let absent_ms = if gap <= 3_000 { 0 } else { gap - 1_000 };
            prop_assert_eq!(verdict, Verdict { absent_ms, ..Verdict::default() });
        }
    }
}
