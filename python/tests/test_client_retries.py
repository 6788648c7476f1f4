"""The retry contract (R2, R3, R5) measured against real roster-server processes and sockets that misbehave:
a 1 s outage (kill -9, restart on the same port) is invisible in every one of 20 runs; a server that resets every
connection sees at most 5 attempts, never more than 5 in a second whatever the settings; giving up raises one
error naming the call, the attempts, the time and the last status; every attempt is one log record and carries
the same request id."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import List

import grpc
import pytest

from roster_client import defaults
from roster_client._proto.roster.v1 import registry_pb2_grpc
from roster_client.client import AsyncRosterClient, RosterClient
from roster_client.errors import RosterCallError

from .fakes import FlakyRegistry, serve
from .servers import ResetServer, RosterServer, bin_dir, wait_for

RUNS = 20
OUTAGE_S = 1.0


def most_in_one_second(times: List[float]) -> int:
    return max((sum(1 for u in times if t <= u <= t + 1.0) for t in times), default=0)


def test_a_one_second_outage_is_invisible_in_every_run(tmp_path: Path) -> None:
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    client = RosterClient(server.url)
    errors: List[BaseException] = []
    done: List[List[float]] = [[], []]  # when each call of each worker returned
    stop = threading.Event()

    def work(n: int) -> None:
        producer = str(uuid.uuid4())
        while not stop.is_set():
            try:
                if n % 2:
                    client.register_producer(producer, f"127.0.0.1:{9000 + n}", 1000)
                else:
                    client.list_collectors()
            except BaseException as e:  # noqa: BLE001 - any exception at all is the failure measured
                errors.append(e)
                return
            done[n].append(time.monotonic())

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(len(done))]
    for w in workers:
        w.start()
    outages = []
    try:
        for run in range(RUNS):
            server.kill()
            killed = time.monotonic()
            time.sleep(max(0.0, killed + OUTAGE_S - time.monotonic()))  # the outage itself, not a synchronisation
            server.start()
            outages.append(time.monotonic() - killed)
            back = time.monotonic()
            # Every worker finishes a call that began after the restart before the next outage: each outage is
            # one second, never two close together.
            wait_for(lambda: all(len(d) > 1 and d[-2] > back for d in done) or errors, f"calls after outage {run}")
            assert not errors, f"run {run}: {errors[0]!r}"
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=15)
        client.close()
        server.stop()
    assert not errors, f"{errors[0]!r}"
    assert len(outages) == RUNS and min(outages) >= OUTAGE_S, outages
    print(f"outages (kill -9 to serving again): {min(outages):.3f} to {max(outages):.3f} s over {RUNS} runs")


def test_a_server_that_resets_every_connection_sees_at_most_five_attempts(caplog: pytest.LogCaptureFixture) -> None:
    reset = ResetServer()
    caplog.set_level(logging.DEBUG, logger="roster_client")
    try:
        with RosterClient(f"http://127.0.0.1:{reset.port}") as client:
            started = time.monotonic()
            with pytest.raises(RosterCallError) as caught:
                client.register_producer(str(uuid.uuid4()), "127.0.0.1:9100", 1000)
            elapsed = time.monotonic() - started
    finally:
        reset.close()
    error = caught.value
    assert len(reset.accepted) == defaults.MAX_ATTEMPTS == error.attempts, reset.accepted
    assert most_in_one_second(reset.accepted) <= defaults.MAX_ATTEMPTS_PER_SECOND
    # The give-up error: one type, naming the call, the attempts, the time spent and the last status.
    assert error.gave_up and error.code == grpc.StatusCode.UNAVAILABLE
    assert error.method == "roster.v1.Registry/RegisterProducer"
    assert abs(error.elapsed_s - elapsed) < 0.5 and error.elapsed_s >= 0.2 + 0.4 + 0.8 + 1.6 - 0.6
    text = str(error)
    for part in ("roster.v1.Registry/RegisterProducer", "gave up after 5 of 5 attempts", "UNAVAILABLE",
                 f"{error.elapsed_s:.2f} s", error.request_id):
        assert part in text, (part, text)
    # One log record per attempt, each with the request id, the method, n of max, the delay and the cause.
    records = [r for r in caplog.records if getattr(r, "request_id", None) == error.request_id]
    assert [(r.attempt, r.max_attempts, r.method) for r in records] == [
        (n, 5, "roster.v1.Registry/RegisterProducer") for n in range(1, 6)
    ]
    assert all(r.delay_s is not None and 0 < r.delay_s <= defaults.RETRY_CAP_S for r in records[:-1])
    assert records[-1].delay_s is None and records[-1].levelno == logging.ERROR
    assert all("UNAVAILABLE" in r.cause for r in records)


def test_no_settings_make_more_than_five_attempts_in_a_second() -> None:
    reset = ResetServer()
    try:
        client = RosterClient(
            f"http://127.0.0.1:{reset.port}", max_attempts=8, retry_initial_s=0.001, retry_cap_s=0.001
        )
        with client, pytest.raises(RosterCallError) as caught:
            client.list_collectors()
    finally:
        reset.close()
    assert caught.value.attempts == len(reset.accepted) == 8
    assert most_in_one_second(reset.accepted) <= defaults.MAX_ATTEMPTS_PER_SECOND, reset.accepted


def test_every_attempt_carries_the_request_id_and_its_number() -> None:
    registry = FlakyRegistry([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
    server, port = serve(lambda s: registry_pb2_grpc.add_RegistryServicer_to_server(registry, s))
    try:
        with RosterClient(f"http://127.0.0.1:{port}") as client:
            client.list_collectors()
    finally:
        server.stop(grace=None)
    ids = {call["x-request-id"] for call in registry.calls}
    assert len(registry.calls) == 3 and len(ids) == 1, registry.calls
    assert [call.get("grpc-previous-rpc-attempts") for call in registry.calls] == [None, "1", "2"]


def test_a_non_transient_failure_is_not_retried(server: RosterServer) -> None:
    registry = FlakyRegistry([grpc.StatusCode.INVALID_ARGUMENT])
    fake, port = serve(lambda s: registry_pb2_grpc.add_RegistryServicer_to_server(registry, s))
    try:
        with RosterClient(f"http://127.0.0.1:{port}") as client, pytest.raises(RosterCallError) as caught:
            client.list_collectors()
    finally:
        fake.stop(grace=None)
    assert len(registry.calls) == 1 and caught.value.attempts == 1 and not caught.value.gave_up
    with RosterClient(server.url) as client, pytest.raises(RosterCallError) as caught:
        client.get_producer(str(uuid.uuid4()))
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and caught.value.attempts == 1
    assert "producer_id" in caught.value.details


def test_the_asyncio_client_rides_out_an_outage_and_gives_up_the_same_way(tmp_path: Path) -> None:
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    reset = ResetServer()

    async def scenario() -> RosterCallError:
        async with AsyncRosterClient(server.url) as client:
            producer = str(uuid.uuid4())
            await client.register_producer(producer, "127.0.0.1:9100", 1000, {"job": "a"})
            for _ in range(3):
                server.kill()
                killed = time.monotonic()
                call = asyncio.ensure_future(client.get_producer(producer))
                await asyncio.sleep(max(0.0, killed + OUTAGE_S - time.monotonic()))  # the outage
                server.start()
                assert (await call).labels["job"] == "a"
            assert [p.id async for p in client.iter_producers()] == [producer]
        async with AsyncRosterClient(f"http://127.0.0.1:{reset.port}") as client:
            try:
                await client.list_collectors()
            except RosterCallError as e:
                return e
        raise AssertionError("a server that resets every connection answered")

    try:
        error = asyncio.run(scenario())
    finally:
        reset.close()
        server.stop()
    assert error.gave_up and error.attempts == len(reset.accepted) == 5
    assert most_in_one_second(reset.accepted) <= 5
