"""grpcio servers written in the tests, for what a real roster-server cannot be made to do on cue: a Registry
that fails a chosen number of times, and an AssignmentFeed that sends scripted frames."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import grpc

from roster_client._proto.roster.v1 import feed_pb2, feed_pb2_grpc, registry_pb2, registry_pb2_grpc
from roster_client.digest import digest


class FlakyRegistry(registry_pb2_grpc.RegistryServicer):
    """ListCollectors fails with ``codes`` in turn, then succeeds; every call's metadata is recorded."""

    def __init__(self, codes: Sequence[grpc.StatusCode]) -> None:
        self.codes = list(codes)
        self.calls: List[dict] = []

    def ListCollectors(self, request: Any, context: grpc.ServicerContext) -> registry_pb2.ListCollectorsResponse:
        self.calls.append(dict(context.invocation_metadata()))
        if self.codes:
            context.abort(self.codes.pop(0), "scripted failure")
        return registry_pb2.ListCollectorsResponse()


# A script step: a WatchResponse to send, an End, or HeartbeatsUntilReport.
Step = Any


class HeartbeatsUntilReport:
    """Sends a heartbeat every ``every_s`` until a report arrives (at most ``most`` of them)."""

    def __init__(self, every_s: float = 0.05, most: int = 200) -> None:
        self.every_s = every_s
        self.most = most


class ScriptedFeed(feed_pb2_grpc.AssignmentFeedServicer):
    """Each Watch call plays the next script (a list of frames, optionally ending with an ``End``); a stream with
    no script left stays open until the test ends. Reports are recorded."""

    def __init__(self, scripts: Sequence[Sequence[Step]]) -> None:
        self.scripts = [list(s) for s in scripts]
        self.watches: List[feed_pb2.WatchRequest] = []
        self.reports: List[feed_pb2.ReportAppliedRequest] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def Watch(self, request: feed_pb2.WatchRequest, context: grpc.ServicerContext) -> Iterator[feed_pb2.WatchResponse]:
        with self.lock:
            self.watches.append(request)
            script = self.scripts.pop(0) if self.scripts else None
        if script is None:
            self.done.wait(timeout=60)
            return
        for step in script:
            if isinstance(step, HeartbeatsUntilReport):
                for _ in range(step.most):
                    if self.reports or self.done.wait(step.every_s):
                        break
                    yield feed_pb2.WatchResponse(heartbeat=feed_pb2.Heartbeat())
                continue
            if isinstance(step, End):
                if step.pushback_ms is not None:
                    context.set_trailing_metadata((("grpc-retry-pushback-ms", str(step.pushback_ms)),))
                context.abort(step.code, "scripted end")
            yield step

    def ReportApplied(self, request: feed_pb2.ReportAppliedRequest, context: grpc.ServicerContext
                      ) -> feed_pb2.ReportAppliedResponse:
        with self.lock:
            self.reports.append(request)
        return feed_pb2.ReportAppliedResponse(current=True)


class End:
    """Ends a scripted stream with ``code`` (and a pushback, if given)."""

    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, pushback_ms: Optional[int] = None):
        self.code = code
        self.pushback_ms = pushback_ms


def pid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def entry(n: int) -> feed_pb2.AssignedProducer:
    return feed_pb2.AssignedProducer(id=pid(n), address=f"10.0.0.{n}:9100", interval_ms=15000, labels={"n": str(n)})


def snapshot(epoch: str, generation: int, ns: Sequence[int], per_chunk: int = 2, settling: bool = False,
             bad_digest: bool = False) -> List[feed_pb2.WatchResponse]:
    """The frames the server sends for a snapshot of producers ``ns``."""
    entries = [entry(n) for n in sorted(ns)]
    groups = [entries[i:i + per_chunk] for i in range(0, len(entries), per_chunk)] or [[]]
    frames = []
    for i, group in enumerate(groups):
        chunk = feed_pb2.SnapshotChunk(epoch=epoch, generation=generation, index=i, producers=group)
        if i == len(groups) - 1:
            chunk.complete = True
            chunk.chunk_count = len(groups)
            chunk.producer_count = len(entries)
            chunk.digest = digest(entries) ^ (1 if bad_digest else 0)
            chunk.store_settling = settling
        frames.append(feed_pb2.WatchResponse(chunk=chunk))
    return frames


def serve(add: Callable[[grpc.Server], None]) -> Tuple[grpc.Server, int]:
    """A grpcio server on a free loopback port with the servicers ``add`` puts on it; started."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
