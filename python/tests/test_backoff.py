"""The backoff formula and the attempt window, as pure functions: the defaults ride out a 1 s outage and stay
under 5 attempts a second in the worst case of jitter; no delay exceeds its cap; the window holds any settings to
5 attempts a second; the feed's reconnect delays reach and never pass the hard 30 s cap (R3, R4)."""

from __future__ import annotations

import random

from roster_client import defaults
from roster_client.follower import Backoff
from roster_client.retry import AttemptWindow, RetryPolicy, backoff_delay


def test_the_defaults_ride_out_a_second_and_stay_under_five_a_second() -> None:
    policy = RetryPolicy()
    for unit in (0.0, 0.999999):  # the longest and the shortest delays
        starts = [0.0]
        for retry in range(1, policy.max_attempts):
            starts.append(starts[-1] + policy.delay(retry, unit))
        assert len(starts) == 5
        assert starts[3] > 1.1, f"the 4th attempt comes after a 1 s outage: {starts}"
        assert max(sum(1 for u in starts if t <= u <= t + 1.0) for t in starts) <= 3, starts


def test_no_delay_exceeds_its_cap_and_bases_never_shrink() -> None:
    rng = random.Random(16)
    for _ in range(5000):
        initial, cap = rng.uniform(0.001, 10), rng.uniform(0.001, 120)
        jitter, unit, retry = rng.random(), rng.random(), rng.randint(1, 200)
        delay = backoff_delay(initial, cap, jitter, retry, unit)
        base = min(initial * 2.0 ** (retry - 1), cap)
        assert base * (1 - jitter) - 1e-9 <= delay <= base <= cap
        assert backoff_delay(initial, cap, 0.0, retry + 1, 0.0) >= backoff_delay(initial, cap, 0.0, retry, 0.0)


def test_the_window_holds_any_settings_to_five_attempts_a_second() -> None:
    window = AttemptWindow()
    now, starts = 100.0, []
    for _ in range(23):
        start = window.earliest(now)  # every attempt wants to go at once
        window.record(start)
        starts.append(start)
        now = start
    assert max(sum(1 for u in starts if t <= u <= t + 1.0) for t in starts) == defaults.MAX_ATTEMPTS_PER_SECOND


def test_the_feed_backs_off_to_its_hard_cap_and_starts_over_after_a_delivering_stream() -> None:
    backoff = Backoff(defaults.FEED_INITIAL_S, defaults.FEED_CAP_S, defaults.FEED_JITTER)
    delays = [backoff.next() for _ in range(1000)]
    assert all(d <= defaults.FEED_CAP_S for d in delays) and max(delays) >= defaults.FEED_CAP_S / 2
    assert delays[0] <= defaults.FEED_INITIAL_S
    backoff.reset()
    assert backoff.next() <= defaults.FEED_INITIAL_S
