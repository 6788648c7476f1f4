"""Follows one collector's assignment feed, by the rules of roster's Rust follower (src/follower/): connect,
watch, assemble (C1–C3, :mod:`roster_client.assembler`), persist (C5), report (C4), reconnect (R4).

Two APIs over one core: :class:`Follower`, a blocking iterator, and :class:`AsyncFollower`, an async iterator
on grpc.aio. Both yield only applied, complete snapshots: first the one in the state file (so a follower
restarted while the control plane is down resumes its last set at once), then each newly applied one.

- C4/C5: an applied snapshot is saved to the state file (atomically) and only then reported APPLIED; a save that
  fails is retried with capped backoff (200 ms doubling to 10 s) and reported once it succeeds. A complete
  snapshot refused by C1–C3 is reported REJECTED with the reason. Reports go through :class:`RosterClient`'s
  retries. The snapshot loaded at start is reported once on the first stream (idempotent).
- R4: a lost or refused stream is retried forever: 200 ms doubling to a hard 30 s cap, each delay shortened by up
  to half at random, the sequence reset once a stream delivered a frame; a ``grpc-retry-pushback-ms`` from the
  server (sent when it shuts down, S6) replaces the delay, still under the cap. Each attempt dials on a new
  channel, so the delay here is the only thing that spaces connections.
- S5: HTTP/2 keepalive pings every 10 s, dropped if unanswered for 10 s, so a half-open connection is found within
  20 s.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
import grpc.aio

from . import assembler as asm
from . import defaults, state_file
from ._proto.roster.v1 import feed_pb2, feed_pb2_grpc, registry_pb2
from .assembler import Snapshot
from .client import AsyncRosterClient, RosterClient
from .connection import Connection, PathLike
from .entries import NIL_UUID, InvalidEntry, parse_uuid
from .errors import RosterCallError, RosterConfigError, StateFileError
from .retry import REQUEST_ID_HEADER, backoff_delay

log = logging.getLogger("roster_client.follower")

_KINDS = {"grpc": registry_pb2.PRODUCER_KIND_GRPC, "prometheus": registry_pb2.PRODUCER_KIND_PROMETHEUS}
# Codes with which a server refuses a Watch rather than fails it: logged as errors, retried all the same.
_REFUSALS = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
}


@dataclass
class Backoff:
    """Capped exponential backoff (:func:`roster_client.retry.backoff_delay`), forever."""

    initial_s: float
    cap_s: float
    jitter: float
    retries: int = 0

    def next(self) -> float:
        self.retries += 1
        return backoff_delay(self.initial_s, self.cap_s, self.jitter, self.retries, random.random())

    def reset(self) -> None:
        self.retries = 0


@dataclass
class FollowerStats:
    """Counters and connection state, for status pages and tests."""

    connected: bool = False
    reconnects: int = 0
    """Stream attempts after the first."""
    last_contact_ms: int = 0
    discards: Dict[str, int] = field(default_factory=dict)
    """Discarded or refused snapshots by reason (C2)."""
    recent_delays: List[float] = field(default_factory=list)
    """Delays waited before reconnecting, most recent last (the last 64)."""
    persisted: Optional[Tuple[str, int]] = None
    """(epoch, generation) last saved to the state file, or loaded from it."""
    persist_error: Optional[str] = None
    persist_failures: int = 0
    reported: Optional[Tuple[str, int]] = None
    """(epoch, generation) the server last acknowledged as APPLIED."""
    feed_refused: Optional[str] = None
    """Why the server refused the last Watch (until a stream opens)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def pushback_ms(metadata: Any) -> Optional[int]:
    """gRPC's ``grpc-retry-pushback-ms`` (gRFC A6): a non-negative whole number of ms, anything else ignored."""
    for key, value in metadata or ():
        if key == "grpc-retry-pushback-ms":
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.strip().isdigit():
                return int(text.strip())
    return None


class _Core:
    """What both followers share: the assembler, the state file, reports to make, backoff and counters. No I/O but
    the state file."""

    def __init__(
        self,
        target: str,
        collector_id: str,
        state_path: Optional[PathLike],
        *,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        token_file: Optional[PathLike] = None,
        observe_only: bool = False,
        supported_kinds: Sequence[str] = ("grpc",),
        instance_id: Optional[str] = None,
        keepalive_interval_s: float = defaults.KEEPALIVE_INTERVAL_S,
        keepalive_timeout_s: float = defaults.KEEPALIVE_TIMEOUT_S,
        reconnect_initial_s: float = defaults.FEED_INITIAL_S,
        reconnect_cap_s: float = defaults.FEED_CAP_S,
        max_producers: int = defaults.MAX_PRODUCERS,
    ) -> None:
        try:
            self.collector_id = parse_uuid("collector_id", collector_id)
        except InvalidEntry as e:
            raise RosterConfigError(f"{e}; give the collector's UUID, e.g. 67e55044-10b1-426f-9247-bb680e5fe0c8") from None
        if self.collector_id == NIL_UUID:
            raise RosterConfigError("collector_id is the nil UUID (all zeros), which is never an id; give a random UUID")
        unknown = [k for k in supported_kinds if k not in _KINDS]
        if unknown:
            raise RosterConfigError(f"supported_kinds: {unknown[0]!r} is not a producer kind; use 'grpc' or 'prometheus'")
        if not 0 < reconnect_initial_s <= reconnect_cap_s <= defaults.FEED_CAP_S:
            raise RosterConfigError(
                f"reconnect delays need 0 < reconnect_initial_s <= reconnect_cap_s <= {defaults.FEED_CAP_S} (R4's "
                f"hard cap), got {reconnect_initial_s} and {reconnect_cap_s}"
            )
        keepalive = (
            ("grpc.keepalive_time_ms", int(keepalive_interval_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
            # grpcio (1.85.1 measured) waits for a ping's answer this long, not keepalive_timeout_ms: left at its
            # default (60 s), a frozen connection was found after 60.5 s instead of interval + timeout.
            ("grpc.http2.ping_timeout_ms", int(keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        )
        self.connection = Connection.make(target, tls_ca, tls_cert, tls_key, token_file, keepalive)
        self.observe_only = observe_only
        self.kinds = [_KINDS[k] for k in supported_kinds]
        self.instance_id = "" if observe_only else (instance_id or str(uuid.uuid4()))
        self.backoff = Backoff(reconnect_initial_s, reconnect_cap_s, defaults.FEED_JITTER)
        self.persist_backoff = Backoff(defaults.PERSIST_INITIAL_S, defaults.PERSIST_CAP_S, defaults.PERSIST_JITTER)
        self.stats = FollowerStats()
        self.state_path = Path(state_path) if state_path is not None else None
        loaded: Optional[Snapshot] = None
        if self.state_path is not None:
            if state_file.remove_leftover(self.state_path):
                log.warning("removed %s, left by a save that did not finish", state_file.tmp_path(self.state_path))
            found = state_file.load(self.state_path)
            if found is not None:
                loaded = found[0]
                self.stats.persisted = (loaded.epoch, loaded.generation)
                log.info("resuming the persisted snapshot: epoch %s generation %d, %d producers",
                         loaded.epoch, loaded.generation, len(loaded.producers))
        self.assembler = asm.Assembler(loaded, max_producers)
        self.loaded = loaded
        self.to_save: Optional[Tuple[Snapshot, int]] = None
        self.save_due = 0.0
        self.reported: Optional[Tuple[str, int]] = None  # reported APPLIED by this process
        # The server digest of the snapshot in force, computed once per snapshot: ((epoch, generation), digest).
        self.known_digest: Optional[Tuple[Tuple[str, int], int]] = None
        self.reports: List[feed_pb2.ReportAppliedRequest] = []

    def watch_request(self) -> feed_pb2.WatchRequest:
        applied = self.assembler.applied
        known_digest = 0
        if applied is not None:
            of = (applied.epoch, applied.generation)
            if self.known_digest is None or self.known_digest[0] != of:
                self.known_digest = (of, applied.server_digest())
            known_digest = self.known_digest[1]
        return feed_pb2.WatchRequest(
            collector_id=self.collector_id,
            known_epoch=applied.epoch if applied else "",
            known_generation=applied.generation if applied else 0,
            observe_only=self.observe_only,
            instance_id=self.instance_id,
            supported_kinds=self.kinds,
            known_digest=known_digest,
        )

    def call_metadata(self) -> Tuple[Tuple[str, str], ...]:
        return ((REQUEST_ID_HEADER, str(uuid.uuid4())), *self.connection.metadata())

    def opened(self) -> None:
        self.stats.connected = True
        self.stats.feed_refused = None
        log.info("feed stream open to %s (known generation %d)", self.connection.endpoint.url,
                 self.assembler.applied.generation if self.assembler.applied else 0)
        self._report_saved()  # A snapshot saved while no stream was open (or loaded at start) is reported now.

    def on_frame(self, frame: feed_pb2.WatchResponse) -> Tuple[List[Snapshot], bool]:
        """The snapshots a frame applied, and whether it delivered anything (resets the backoff, R4)."""
        self.stats.last_contact_ms = now_ms()
        applied: List[Snapshot] = []
        delivered = False
        for event in self.assembler.on_frame(frame):
            delivered = delivered or not isinstance(event, asm.Progress)
            if isinstance(event, asm.Applied):
                s = event.snapshot
                log.info("snapshot applied: epoch %s generation %d, %d producers (%d carried), settling %s",
                         s.epoch, s.generation, len(s.producers), len(s.carried), s.settling)
                self.to_save = (s, now_ms())
                self.save_due = 0.0
                applied.append(s)
            elif isinstance(event, asm.Discarded):
                self.discarded(event)
                if event.refused is not None:
                    self.report(event.refused, event.detail)
        return applied, delivered

    def discarded(self, event: asm.Discarded) -> None:
        log.warning("snapshot discarded (%s: %s); the last known set stays in force", event.reason, event.detail)
        self.stats.discards[event.reason] = self.stats.discards.get(event.reason, 0) + 1

    def save_if_due(self) -> None:
        """Saves the latest applied snapshot if one waits and its retry is due; reports it once saved (C5)."""
        if self.to_save is None or time.monotonic() < self.save_due:
            return
        snapshot, at = self.to_save
        if self.state_path is not None:
            try:
                state_file.save(self.state_path, snapshot, at)
            except StateFileError as e:
                delay = self.persist_backoff.next()
                self.save_due = time.monotonic() + delay
                self.stats.persist_failures += 1
                self.stats.persist_error = (
                    f"cannot save the applied snapshot (generation {snapshot.generation}): {e}; collecting from it "
                    f"anyway, retrying the save in {delay:.1f} s, not reporting it until it is saved"
                )
                log.error("%s", self.stats.persist_error)
                return
            if self.stats.persist_error is not None:
                log.info("applied snapshot saved after failed attempts; reporting it")
        self.persist_backoff.reset()
        self.stats.persist_error = None
        self.stats.persisted = (snapshot.epoch, snapshot.generation)
        self.to_save = None
        if self.stats.connected:
            self._report_saved()

    def _report_saved(self) -> None:
        applied = self.assembler.applied
        current = (applied.epoch, applied.generation) if applied else None
        if self.stats.persisted is not None and self.stats.persisted == current and current != self.reported:
            self.reported = current
            self.report(current, None)

    def report(self, which: Tuple[str, int], rejected: Optional[str]) -> None:
        if not self.observe_only:
            self.reports.append(feed_pb2.ReportAppliedRequest(
                collector_id=self.collector_id, epoch=which[0], generation=which[1],
                outcome=registry_pb2.APPLY_OUTCOME_REJECTED if rejected else registry_pb2.APPLY_OUTCOME_APPLIED,
                # The server takes at most 1024 bytes of reason (feed.proto, ReportAppliedRequest.reason).
                reason=(rejected or "").encode()[:1024].decode(errors="ignore"),
            ))

    def take_reports(self) -> List[feed_pb2.ReportAppliedRequest]:
        reports, self.reports = self.reports, []
        return reports

    def reported_ok(self, request: feed_pb2.ReportAppliedRequest) -> None:
        if request.outcome == registry_pb2.APPLY_OUTCOME_APPLIED:
            self.stats.reported = (request.epoch, request.generation)

    def lost(self, cause: str, code: Optional[grpc.StatusCode], delivered: bool, pushback: Optional[int]) -> float:
        """The stream ended: discards a partial snapshot (C2) and returns the delay before the next attempt (R4)."""
        self.stats.connected = False
        ended = self.assembler.stream_ended()
        if ended is not None:
            self.discarded(ended)
        if code in _REFUSALS:
            self.stats.feed_refused = cause
            log.error("the server refused this collector's feed (%s); keeping the last known set meanwhile", cause)
        if delivered:
            self.backoff.reset()
        delay = min(pushback / 1000.0, self.backoff.cap_s) if pushback is not None else self.backoff.next()
        self.stats.reconnects += 1
        self.stats.recent_delays = (self.stats.recent_delays + [delay])[-64:]
        log.warning("feed stream lost (%s); reconnecting in %.3f s%s", cause, delay,
                    " (the server's pushback)" if pushback is not None else "")
        return delay


def _cause(error: grpc.RpcError) -> Tuple[str, Optional[grpc.StatusCode], Optional[int]]:
    code = error.code()
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return f"{code.name}: {error.details()}", code, pushback_ms(trailing)





class _FollowerBase(abc.ABC):
    """What both followers share: their settings (see :class:`Follower`), the core, the snapshot in force and the
    counters."""

    def __init__(self, target: str, collector_id: str, state_file: Optional[PathLike] = None, *,
                 tls_ca: Optional[PathLike] = None, tls_cert: Optional[PathLike] = None,
                 tls_key: Optional[PathLike] = None, token_file: Optional[PathLike] = None,
                 observe_only: bool = False, supported_kinds: Sequence[str] = ("grpc",),
                 instance_id: Optional[str] = None,
                 keepalive_interval_s: float = defaults.KEEPALIVE_INTERVAL_S,
                 keepalive_timeout_s: float = defaults.KEEPALIVE_TIMEOUT_S,
                 reconnect_initial_s: float = defaults.FEED_INITIAL_S,
                 reconnect_cap_s: float = defaults.FEED_CAP_S,
                 max_producers: int = defaults.MAX_PRODUCERS) -> None:
        self._core = _Core(
            target, collector_id, state_file, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            token_file=token_file, observe_only=observe_only, supported_kinds=supported_kinds,
            instance_id=instance_id, keepalive_interval_s=keepalive_interval_s,
            keepalive_timeout_s=keepalive_timeout_s, reconnect_initial_s=reconnect_initial_s,
            reconnect_cap_s=reconnect_cap_s, max_producers=max_producers,
        )
        self._setup(target, tls_ca, tls_cert, tls_key, token_file)

    @abc.abstractmethod
    def _setup(self, target: str, tls_ca: Optional[PathLike], tls_cert: Optional[PathLike],
               tls_key: Optional[PathLike], token_file: Optional[PathLike]) -> None:
        """Makes what the blocking or the asyncio follower needs besides the core: its reporting client."""

    @property
    def applied(self) -> Optional[Snapshot]:
        """The snapshot in force (None until one was applied or loaded)."""
        return self._core.assembler.applied

    @property
    def stats(self) -> FollowerStats:
        """Counters and connection state."""
        return self._core.stats


class Follower(_FollowerBase):
    """Follows a feed in the calling thread: iterate to get each applied snapshot; :meth:`close` (from any thread)
    ends the iteration. The feed is read, saved and reported while the loop waits for the next snapshot, so keep the
    loop's body short (hand the snapshot to your own workers).

    ``target``: ``http://host:port`` or ``https://host:port`` (with ``tls_ca``; ``tls_cert``/``tls_key`` for mutual
    TLS); ``collector_id``: the collector's UUID; ``state_file``: where the applied snapshot is kept (C5; None keeps
    it in memory only). ``token_file``: a bearer token. ``observe_only``: follow without being the collector (no
    reports, no liveness; ``roster watch``). ``supported_kinds``: the producer kinds this follower collects
    (``"grpc"``, ``"prometheus"``). ``instance_id``: this process's id (default: a new UUID). The rest
    (``keepalive_interval_s``, ``keepalive_timeout_s``, ``reconnect_initial_s``, ``reconnect_cap_s``,
    ``max_producers``) default to :mod:`roster_client.defaults`.
    """

    def _setup(self, target: str, tls_ca: Optional[PathLike], tls_cert: Optional[PathLike],
               tls_key: Optional[PathLike], token_file: Optional[PathLike]) -> None:
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._reporter = RosterClient(target, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token_file=token_file)
        self._reports = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roster-report")

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the iteration (the current stream is cancelled) and releases the report thread and channel."""
        with self._lock:
            self._closed.set()
            if self._call is not None:
                self._call.cancel()
        self._reports.shutdown(wait=True)
        self._reporter.close()

    def _send_reports(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return  # Closing: the server sends an unreported generation again to the next follower (C4).
            for request in self._core.take_reports():
                self._reports.submit(self._report, request)

    def _report(self, request: feed_pb2.ReportAppliedRequest) -> None:
        try:
            self._reporter.report_applied(request.collector_id, request.epoch, request.generation,
                                          request.reason if request.outcome == registry_pb2.APPLY_OUTCOME_REJECTED
                                          else None)
            self._core.reported_ok(request)
        except RosterCallError as e:
            log.warning("could not report generation %d: %s", request.generation, e)

    def __iter__(self) -> Iterator[Snapshot]:
        core = self._core
        if core.loaded is not None:
            yield core.loaded
        while not self._closed.is_set():
            channel = core.connection.channel()
            delivered = False
            try:
                call = feed_pb2_grpc.AssignmentFeedStub(channel).Watch(
                    core.watch_request(), metadata=core.call_metadata(), wait_for_ready=False
                )
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                opened = False
                for frame in call:
                    if not opened:
                        core.opened()
                        opened = True
                    applied, got = core.on_frame(frame)
                    delivered = delivered or got
                    core.save_if_due()
                    self._send_reports()
                    yield from applied
                cause, code, pushback = "the server ended the stream", None, None
            except grpc.RpcError as e:
                cause, code, pushback = _cause(e)
            finally:
                with self._lock:
                    self._call = None
                channel.close()
            if self._closed.is_set():
                return
            delay = core.lost(cause, code, delivered, pushback)
            self._send_reports()
            deadline = time.monotonic() + delay
            while not self._closed.wait(min(max(0.0, deadline - time.monotonic()), 0.5)):
                if time.monotonic() >= deadline:
                    break
                core.save_if_due()
            core.save_if_due()


class AsyncFollower(_FollowerBase):
    """Follows a feed on asyncio (grpc.aio): ``async for snapshot in follower``; :meth:`close` ends it. The
    settings are :class:`Follower`'s."""

    def _setup(self, target: str, tls_ca: Optional[PathLike], tls_cert: Optional[PathLike],
               tls_key: Optional[PathLike], token_file: Optional[PathLike]) -> None:
        self._reporter = AsyncRosterClient(
            target, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token_file=token_file
        )
        # Made in the event loop that runs the follower (on CPython 3.9 an Event binds to the loop current when
        # it is made, which need not be that one).
        self._closed_event: Optional[asyncio.Event] = None
        self._tasks: "set[asyncio.Task[None]]" = set()

    async def __aenter__(self) -> AsyncFollower:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _closed(self) -> asyncio.Event:
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        return self._closed_event

    async def close(self) -> None:
        """Ends the iteration; waits for reports under way."""
        self._closed.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reporter.close()

    def _send_reports(self) -> None:
        if self._closed.is_set():
            return  # Closing: the server sends an unreported generation again to the next follower (C4).
        for request in self._core.take_reports():
            task = asyncio.ensure_future(self._report(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _report(self, request: feed_pb2.ReportAppliedRequest) -> None:
        try:
            await self._reporter.report_applied(
                request.collector_id, request.epoch, request.generation,
                request.reason if request.outcome == registry_pb2.APPLY_OUTCOME_REJECTED else None)
            self._core.reported_ok(request)
        except RosterCallError as e:
            log.warning("could not report generation %d: %s", request.generation, e)

    async def _save(self) -> None:
        """Saves a waiting snapshot off the event loop (an fsync takes milliseconds)."""
        if self._core.to_save is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._core.save_if_due)

    async def __aiter__(self) -> AsyncIterator[Snapshot]:
        core = self._core
        if core.loaded is not None:
            yield core.loaded
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while not self._closed.is_set():
                channel = core.connection.aio_channel()
                delivered = False
                call = feed_pb2_grpc.AssignmentFeedStub(channel).Watch(
                    core.watch_request(), metadata=core.call_metadata(), wait_for_ready=False
                )
                try:
                    opened = False
                    while True:
                        read = asyncio.ensure_future(call.read())
                        await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                        if not read.done():
                            read.cancel()
                            call.cancel()
                            return
                        frame = read.result()
                        if frame is grpc.aio.EOF:
                            cause, code, pushback = "the server ended the stream", None, None
                            break
                        if not opened:
                            core.opened()
                            opened = True
                        applied, got = core.on_frame(frame)
                        delivered = delivered or got
                        await self._save()
                        self._send_reports()
                        for snapshot in applied:
                            yield snapshot
                except grpc.RpcError as e:
                    cause, code, pushback = _cause(e)
                finally:
                    await channel.close()
                delay = core.lost(cause, code, delivered, pushback)
                self._send_reports()
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(asyncio.shield(closed), min(0.5, max(0.0, deadline - time.monotonic())))
                        return
                    except asyncio.TimeoutError:
                        await self._save()
                await self._save()
        finally:
            closed.cancel()
