"""Measures what README.md "Retry defaults and why" reports: grpcio's built-in retries (gRFC A6, service config)
with various reconnect-backoff channel options, against roster_client's retries, through kill -9 outages of a
real roster-server, and the connections a server that resets every connection sees during one failing call.

Run from python/ (it takes about two minutes)::

    ROSTER_BIN_DIR=../target/debug python -m tests.measure_outage --runs 10
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import grpc

from roster_client._proto.roster.v1 import registry_pb2, registry_pb2_grpc
from roster_client.client import RosterClient
from roster_client.errors import RosterCallError
from roster_client.retry import RetryPolicy

from .servers import ResetServer, RosterServer, bin_dir

A6 = json.dumps({"methodConfig": [{"name": [{"service": "roster.v1.Registry"}], "retryPolicy": {
    "maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"]}}]})

SETUPS: Dict[str, List[Tuple[str, object]]] = {
    "grpcio A6 retries, default channel": [("grpc.service_config", A6)],
    "A6 + reconnect backoff 100 ms..1 s": [("grpc.service_config", A6), ("grpc.initial_reconnect_backoff_ms", 100),
                                           ("grpc.min_reconnect_backoff_ms", 100),
                                           ("grpc.max_reconnect_backoff_ms", 1000)],
    "A6 + reconnect backoff 100..250 ms": [("grpc.service_config", A6), ("grpc.initial_reconnect_backoff_ms", 100),
                                           ("grpc.min_reconnect_backoff_ms", 100),
                                           ("grpc.max_reconnect_backoff_ms", 250)],
}


def grpcio_caller(address: str, options: List[Tuple[str, object]]) -> Tuple[Callable[[], None], Callable[[], None]]:
    channel = grpc.insecure_channel(address, options=options)
    stub = registry_pb2_grpc.RegistryStub(channel)
    return (lambda: stub.ListCollectors(registry_pb2.ListCollectorsRequest(), timeout=5)), channel.close


def one_channel_caller(address: str) -> Tuple[Callable[[], None], Callable[[], None]]:
    """roster_client's attempts and delays, but every attempt on the same channel (grpcio's retries off): what
    the fresh channel after a failure is for."""
    channel = grpc.insecure_channel(address, options=[("grpc.enable_retries", 0)])
    stub = registry_pb2_grpc.RegistryStub(channel)
    policy = RetryPolicy()

    def call() -> None:
        for attempt in range(1, policy.max_attempts + 1):
            try:
                stub.ListCollectors(registry_pb2.ListCollectorsRequest(), timeout=policy.attempt_timeout_s)
                return
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == policy.max_attempts:
                    raise
                time.sleep(policy.delay(attempt, random.random()))

    return call, channel.close


def roster_caller(address: str) -> Tuple[Callable[[], None], Callable[[], None]]:
    client = RosterClient(f"http://{address}")
    return client.list_collectors, client.close


def outages(server: RosterServer, make: Callable[[], Tuple[Callable[[], None], Callable[[], None]]],
            runs: int, gap_s: float) -> Tuple[int, List[float]]:
    """Calls issued at the moment of each kill -9; how many failed, and how long the good ones took."""
    call, close = make()
    failed, latencies = 0, []
    for _ in range(runs):
        call()  # the channel is connected before the outage
        result: List[object] = []
        server.kill()
        killed = time.monotonic()

        def one() -> None:
            try:
                call()
                result.append(time.monotonic() - killed)
            except (grpc.RpcError, RosterCallError) as e:
                result.append(e)

        worker = threading.Thread(target=one)
        worker.start()
        time.sleep(max(0.0, killed + gap_s - time.monotonic()))
        server.start()
        worker.join(timeout=30)
        if isinstance(result[0], float):
            latencies.append(result[0])
        else:
            failed += 1
    close()
    return failed, latencies


def connections(make: Callable[[str], Tuple[Callable[[], None], Callable[[], None]]]) -> Tuple[int, int, float]:
    """One call to a server that resets every connection: connections it saw, most in one second, seconds."""
    reset = ResetServer()
    call, close = make(f"127.0.0.1:{reset.port}")
    started = time.monotonic()
    try:
        call()
    except (grpc.RpcError, RosterCallError):
        pass
    elapsed = time.monotonic() - started
    close()
    time.sleep(0.5)
    reset.close()
    times = reset.accepted
    most = max((sum(1 for u in times if t <= u <= t + 1.0) for t in times), default=0)
    return len(times), most, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds from kill -9 to the restart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = RosterServer(bin_dir(), Path(directory) / "server")
        server.start()
        try:
            rows = [(name, lambda o=options: grpcio_caller(server.address, o)) for name, options in SETUPS.items()]
            rows.append(("roster_client's delays on one channel", lambda: one_channel_caller(server.address)))
            rows.append(("roster_client (defaults)", lambda: roster_caller(server.address)))
            for name, make in rows:
                failed, latencies = outages(server, make, args.runs, args.gap)
                spread = f"{min(latencies):.2f}-{max(latencies):.2f} s" if latencies else "-"
                print(f"{name}: {args.gap} s outage: {args.runs - failed}/{args.runs} OK, {failed} failed; OK calls took {spread}")
        finally:
            server.stop()
    for name, options in SETUPS.items():
        total, most, elapsed = connections(lambda a, o=options: grpcio_caller(a, o))
        print(f"{name}: resetting server saw {total} connections in {elapsed:.2f} s, at most {most} in one second")
    total, most, elapsed = connections(one_channel_caller)
    print(f"roster_client's delays on one channel: resetting server saw {total} connections in {elapsed:.2f} s, at most {most} in one second")
    total, most, elapsed = connections(roster_caller)
    print(f"roster_client (defaults): resetting server saw {total} connections in {elapsed:.2f} s, at most {most} in one second")


if __name__ == "__main__":
    main()
