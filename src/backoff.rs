//! The one backoff policy of roster, shared by the feed follower (R4), the retrying unary client (R3) and the
//! follower's retries of a failed snapshot save (C5).
//!
//! The delay before retry `n` (n ≥ 1) is `min(initial * 2^(n-1), cap)`, then shortened by a random part of at
//! most `jitter` of itself: it lies in `[base * (1 - jitter), base]`. Jitter never lengthens a delay, so the cap
//! is hard: no delay ever exceeds it. (backon's own jitter adds up to 100 % on top of the delay, which would
//! break that; [`BackoffPolicy`] is therefore a `backon::BackoffBuilder` of its own.)

use std::time::Duration;

/// How long to wait between attempts, and how many to make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Base delay before the first retry.
    pub initial: Duration,
    /// No delay is ever longer than this.
    pub cap: Duration,
    /// Fraction (0 to 1) by which a delay may be randomly shortened, to spread clients that failed together.
    pub jitter: f64,
    /// Most attempts in all (the first included); `None` means retry forever.
    pub max_attempts: Option<u32>,
}

impl BackoffPolicy {
    /// R4, the feed: first retry after about 200 ms, doubling up to a hard 30 s cap, forever. The wide jitter
    /// spreads a fleet that lost its server at the same moment.
    pub const FEED: Self =
        Self { initial: Duration::from_millis(200), cap: Duration::from_secs(30), jitter: 0.5, max_attempts: None };

    /// R3, unary calls: at most 5 attempts, retries after about 200, 400, 800 and 1600 ms (each shortened by at
    /// most 20 %). The fourth attempt comes at least 1.12 s after the first, so an outage of up to 1 s never
    /// surfaces; no one-second window holds more than 3 attempts, well under 5 requests per second.
    pub const UNARY: Self =
        Self { initial: Duration::from_millis(200), cap: Duration::from_secs(5), jitter: 0.2, max_attempts: Some(5) };

    /// C5, saving the applied snapshot (a full or read-only disk): first retry after about 200 ms, doubling up to a
    /// hard 10 s cap, forever. A disk that recovers is noticed within 10 s; a failing one is tried at most every
    /// 10 s.
    pub const PERSIST: Self =
        Self { initial: Duration::from_millis(200), cap: Duration::from_secs(10), jitter: 0.5, max_attempts: None };

    /// The delay before retry `retry` (1 for the first retry) before jitter: `min(initial * 2^(retry-1), cap)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry `retry`, with jitter drawn from `unit` (a number in `[0, 1)`).
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry);
        let shorten = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        base.mul_f64(1.0 - shorten).min(self.cap)
    }

    /// The delays between attempts, in order (none after the last attempt).
    pub fn delays(&self) -> Delays {
        Delays { policy: *self, retry: 0 }
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self::UNARY
    }
}

/// The delays of a [`BackoffPolicy`]; an iterator, and backon's `Backoff`.
#[derive(Debug, Clone)]
pub struct Delays {
    policy: BackoffPolicy,
    retry: u32,
}

impl Delays {
    /// Starts again from the first delay (after a stream that delivered and stayed up, R4).
    pub fn reset(&mut self) {
        self.retry = 0;
    }

    /// How many delays were handed out since the start or the last reset.
    pub fn retries(&self) -> u32 {
        self.retry
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts
            && self.retry.saturating_add(1) >= max
        {
            return None;
        }
        self.retry = self.retry.saturating_add(1);
        Some(self.policy.delay_with(self.retry, rand::random::<f64>()))
    }
}

impl backon::BackoffBuilder for BackoffPolicy {
    type Backoff = Delays;

    fn build(self) -> Delays {
        self.delays()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unary_defaults_ride_out_a_second_and_stay_under_five_per_second() {
        let policy = BackoffPolicy::UNARY;
        // Worst case: every jitter at its largest (shortest delays).
        let delays: Vec<_> = (1..5).map(|n| policy.delay_with(n, 0.999_999)).collect();
        let mut starts = vec![Duration::ZERO];
        for delay in &delays {
            starts.push(*starts.last().unwrap() + *delay);
        }
        assert_eq!(starts.len(), 5, "five attempts");
        assert!(starts[3] > Duration::from_secs(1), "the 4th attempt comes after a 1 s outage: {starts:?}");
        for (i, start) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().filter(|s| **s < *start + Duration::from_secs(1)).count();
            assert!(in_window <= 5, "{in_window} attempts within 1 s of attempt {i}: {starts:?}");
        }
        assert_eq!(policy.delays().count(), 4, "five attempts means four delays");
    }

    #[test]
    fn the_feed_retries_forever_and_reset_starts_over() {
        let mut delays = BackoffPolicy::FEED.delays();
        let long: Vec<_> = delays.by_ref().take(1000).collect();
        assert_eq!(long.len(), 1000);
        assert!(long[999] >= Duration::from_secs(15));
        delays.reset();
        assert!(delays.next().is_some_and(|d| d <= Duration::from_millis(200)));
    }

    proptest! {
        #[test]
        fn no_delay_exceeds_the_cap_and_bases_never_shrink(
            initial_ms in 1u64..10_000,
            cap_ms in 1u64..120_000,
            jitter in 0.0f64..=1.0,
            unit in 0.0f64..1.0,
            retry in 1u32..200,
        ) {
            let policy = BackoffPolicy {
                initial: Duration::from_millis(initial_ms),
                cap: Duration::from_millis(cap_ms),
                jitter,
                max_attempts: None,
            };
            let delay = policy.delay_with(retry, unit);
            prop_assert!(delay <= policy.cap);
            prop_assert!(delay >= policy.base_delay(retry).mul_f64(1.0 - jitter) - Duration::from_nanos(1));
            prop_assert!(policy.base_delay(retry + 1) >= policy.base_delay(retry));
        }
    }
}
