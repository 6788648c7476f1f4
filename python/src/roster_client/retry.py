"""Unary calls with bounded retries (R2, R3, R5), shared by the blocking and the asyncio client.

One logical call is up to ``max_attempts`` attempts. Every attempt carries the same ``x-request-id`` and, from
the second on, ``grpc-previous-rpc-attempts``; each is one ``logging`` record on the ``roster_client`` logger
(request id, method, attempt n of max, the delay before the next one, the cause) and, when opentelemetry-api is
installed, one span under the call's span. Only ``UNAVAILABLE`` and an attempt that ran out of its time limit are
retried; anything else ends the call at once.

Two rules make retries reach a server that came back (python/README.md, "Retry defaults and why", has the
measurements behind them):

- grpcio's own retries are off (``grpc.enable_retries`` 0): this is the one retry layer, so every attempt is
  counted, spaced and logged here;
- a transient failure retires the channel it happened on: the next attempt dials on a new channel at once, instead
  of waiting out the old channel's reconnect backoff (1 s growing 1.6 times per failure, during which grpcio fails
  calls without dialling). A retired channel is closed once no call uses it. So each attempt is exactly one
  connection attempt, and the spacing below is the only thing that spaces them.

Whatever the settings, no one-second window of one call holds more than 5 attempts
(``defaults.MAX_ATTEMPTS_PER_SECOND``): an attempt that would be the sixth waits.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Deque, Dict, Generic, Iterator, List, Optional, Tuple, TypeVar

import grpc

from . import defaults
from .errors import TRANSIENT_CODES, RosterCallError, RosterConfigError

log = logging.getLogger("roster_client")

REQUEST_ID_HEADER = "x-request-id"
PREVIOUS_ATTEMPTS_HEADER = "grpc-previous-rpc-attempts"

_otel_trace: Optional[ModuleType]
_otel_propagate: Optional[ModuleType]
try:  # OpenTelemetry is optional: spans when its API is installed, nothing otherwise.
    from opentelemetry import propagate as _otel_propagate
    from opentelemetry import trace as _otel_trace
except ImportError:
    _otel_trace = None
    _otel_propagate = None


def backoff_delay(initial_s: float, cap_s: float, jitter: float, retry: int, unit: float) -> float:
    """roster's one backoff formula (R3, R4, C5): the delay before retry ``retry`` (1 for the first) is
    ``min(initial_s * 2^(retry-1), cap_s)``, shortened by ``jitter * unit`` of itself (``unit`` in [0, 1)): jitter
    never lengthens a delay, so the cap is hard."""
    base = min(initial_s * 2.0 ** min(retry - 1, 62), cap_s)
    return base * (1.0 - jitter * min(max(unit, 0.0), 1.0))


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a unary call (R3). The delay before retry n is ``min(initial_s * 2^(n-1), cap_s)``,
    shortened by a random part of at most ``jitter`` of itself (never lengthened: the cap is hard)."""

    max_attempts: int = defaults.MAX_ATTEMPTS
    initial_s: float = defaults.RETRY_INITIAL_S
    cap_s: float = defaults.RETRY_CAP_S
    jitter: float = defaults.RETRY_JITTER
    attempt_timeout_s: float = defaults.ATTEMPT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise RosterConfigError(f"max_attempts must be a whole number of at least 1, got {self.max_attempts!r}")
        if not self.initial_s > 0 or not self.cap_s >= self.initial_s:
            raise RosterConfigError(
                f"retry delays need 0 < initial_s <= cap_s, got initial_s={self.initial_s}, cap_s={self.cap_s}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise RosterConfigError(f"jitter is a fraction from 0 to 1, got {self.jitter}")
        if not self.attempt_timeout_s > 0:
            raise RosterConfigError(f"attempt_timeout_s must be above 0, got {self.attempt_timeout_s}")

    def delay(self, retry: int, unit: float) -> float:
        """The delay before retry ``retry`` (1 for the first), with jitter drawn from ``unit`` in [0, 1)."""
        return backoff_delay(self.initial_s, self.cap_s, self.jitter, retry, unit)


class AttemptWindow:
    """The attempts of one call, spaced so that no one-second window holds more than the limit."""

    def __init__(self, limit: int = defaults.MAX_ATTEMPTS_PER_SECOND, period_s: float = 1.0) -> None:
        self.limit = limit
        self.period_s = period_s
        self.starts: Deque[float] = deque(maxlen=limit)

    def earliest(self, planned: float) -> float:
        """The earliest start, at or after ``planned``, that keeps the limit."""
        if len(self.starts) < self.limit:
            return planned
        # Strictly more than one period after the attempt `limit` back, so a closed window of one period holds
        # at most `limit` attempts.
        return max(planned, self.starts[0] + self.period_s + 1e-3)

    def record(self, start: float) -> None:
        self.starts.append(start)


C = TypeVar("C")


class ChannelSlot(Generic[C]):
    """The channel calls use now, and channels retired after a transient failure, closed once unused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Optional[C] = None
        self._users: Dict[int, int] = {}

    def acquire(self, make: Callable[[], C]) -> C:
        with self._lock:
            if self._current is None:
                self._current = make()
            channel = self._current
            self._users[id(channel)] = self._users.get(id(channel), 0) + 1
            return channel

    def release(self, channel: C, failed: bool) -> bool:
        """Ends one use; returns whether the caller must now close ``channel`` (retired and unused)."""
        with self._lock:
            if failed and channel is self._current:
                self._current = None
            left = self._users[id(channel)] - 1
            if left:
                self._users[id(channel)] = left
                return False
            del self._users[id(channel)]
            return channel is not self._current

    def take_all(self) -> Optional[C]:
        """Retires the current channel (closing the client); returns it if no call uses it."""
        with self._lock:
            channel, self._current = self._current, None
            if channel is not None and self._users.get(id(channel)):
                return None
            return channel


class CallState:
    """One logical call: its request id, attempts, spacing, log records and spans. The blocking and the asyncio
    loops drive it the same way, inside ``with CallState(...) as state`` (which ends the call's span whatever
    happens, a cancelled task included): each attempt inside ``with state.attempt() as metadata``, then
    ``succeeded()``, or ``failed()``, which says when the next attempt may start or raises the call's error."""

    def __init__(self, method: str, policy: RetryPolicy, extra_metadata: Tuple[Tuple[str, str], ...]) -> None:
        self.method = method
        self.policy = policy
        self.request_id = str(uuid.uuid4())
        self.extra_metadata = extra_metadata
        self.attempt_number = 0
        self.started = time.monotonic()
        self.window = AttemptWindow()
        self._span_cm: Any = None
        self._span: Any = None
        if _otel_trace is not None:
            self._span_cm = _otel_trace.get_tracer("roster_client").start_as_current_span(
                method,
                kind=_otel_trace.SpanKind.CLIENT,
                attributes={"rpc.system": "grpc", "rpc.method": method, "roster.request_id": self.request_id},
            )
            self._span = self._span_cm.__enter__()

    @contextmanager
    def attempt(self) -> Iterator[List[Tuple[str, str]]]:
        """One attempt: its span (when OpenTelemetry is installed) and its metadata, which carries the request id,
        the attempt number and the span's trace context."""
        self.attempt_number += 1
        self.window.record(time.monotonic())
        if _otel_trace is None:
            yield self._metadata()
            return
        with _otel_trace.get_tracer("roster_client").start_as_current_span(
            f"{self.method} attempt",
            kind=_otel_trace.SpanKind.CLIENT,
            attributes={"roster.attempt": self.attempt_number, "roster.max_attempts": self.policy.max_attempts,
                        "roster.request_id": self.request_id},
        ):
            yield self._metadata()

    def _metadata(self) -> List[Tuple[str, str]]:
        metadata = [(REQUEST_ID_HEADER, self.request_id), *self.extra_metadata]
        if self.attempt_number > 1:
            metadata.append((PREVIOUS_ATTEMPTS_HEADER, str(self.attempt_number - 1)))
        if _otel_propagate is not None:
            carrier: Dict[str, str] = {}
            _otel_propagate.inject(carrier)
            metadata.extend(carrier.items())
        return metadata

    def _record(self, level: int, outcome: str, delay_s: Optional[float], cause: str) -> None:
        log.log(
            level,
            "%s attempt %d/%d %s (request id %s)%s%s",
            self.method,
            self.attempt_number,
            self.policy.max_attempts,
            outcome,
            self.request_id,
            f": {cause}" if cause else "",
            f"; next attempt in {delay_s:.3f} s" if delay_s is not None else "",
            extra={
                "request_id": self.request_id,
                "method": self.method,
                "attempt": self.attempt_number,
                "max_attempts": self.policy.max_attempts,
                "delay_s": delay_s,
                "cause": cause,
            },
        )
        if self._span is not None:
            self._span.add_event(
                "attempt",
                {"roster.attempt": self.attempt_number, "roster.outcome": outcome, "roster.cause": cause,
                 "roster.delay_s": -1.0 if delay_s is None else delay_s},
            )

    def succeeded(self) -> None:
        self._record(logging.INFO if self.attempt_number > 1 else logging.DEBUG, "succeeded", None, "")
        self._end(None)

    def failed(self, code: grpc.StatusCode, details: str) -> float:
        """Records a failed attempt. Returns when (monotonic time) the next attempt may start, or raises the
        call's :class:`RosterCallError` when there is none."""
        cause = f"{code.name}: {details}" if details else code.name
        if code in TRANSIENT_CODES and self.attempt_number < self.policy.max_attempts:
            delay = self.policy.delay(self.attempt_number, random.random())
            start = self.window.earliest(time.monotonic() + delay)
            self._record(logging.WARNING, "failed, retrying", start - time.monotonic(), cause)
            return start
        transient = code in TRANSIENT_CODES
        self._record(logging.ERROR if transient else logging.INFO, "failed, giving up" if transient else
                     "failed, not retried", None, cause)
        error = RosterCallError(
            self.method, self.attempt_number, self.policy.max_attempts, time.monotonic() - self.started, code, details,
            self.request_id,
        )
        self._end(error)
        raise error

    def __enter__(self) -> CallState:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._span is not None and error is not None:
            self._span.record_exception(error)
        self._end(None)

    def _end(self, error: Optional[RosterCallError]) -> None:
        if self._span is None:
            return
        self._span.set_attribute("roster.attempts", self.attempt_number)
        if error is not None and _otel_trace is not None:
            self._span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, str(error)))
        self._span_cm.__exit__(None, None, None)
        self._span = None
