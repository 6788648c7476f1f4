"""The feed follower against a scripted AssignmentFeed (cut mid-snapshot, a bad digest, a new epoch while the
store settles, a pushback) and against real roster-server and roster-collector processes: user code sees only
applied, complete snapshots; C4 reports follow C5 saves; the state file restores the last set, and is the
collector's format."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import List

import grpc

from roster_client import state_file
from roster_client._proto.roster.v1 import feed_pb2_grpc, registry_pb2
from roster_client.assembler import Snapshot
from roster_client.client import RosterClient
from roster_client.follower import AsyncFollower, Follower
from roster_client.pb import collector_pb2, collector_pb2_grpc

from .fakes import End, HeartbeatsUntilReport, ScriptedFeed, pid, serve, snapshot
from .servers import FaultProxy, RosterServer, bin_dir, binary, wait_for

EPOCH_1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
EPOCH_2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
COLLECTOR = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


# Stream 1: generation 1 applies; generation 2 is cut after its first chunk.
# Stream 2: generation 2 again, with a bad digest (refused, reported REJECTED); then a new epoch whose store is
# settling sends an empty snapshot (it applies, carrying the old set), and its next snapshot starts and is cut by
# the server's shutdown with a 50 ms pushback.
# Stream 3: the new epoch's settled snapshot applies as sent.
SCRIPTS = [
    [*snapshot(EPOCH_1, 1, [1, 2, 3]), snapshot(EPOCH_1, 2, [1, 2, 3, 4])[0], End()],
    [*snapshot(EPOCH_1, 2, [1, 2, 4], bad_digest=True), *snapshot(EPOCH_2, 1, [], settling=True),
     snapshot(EPOCH_2, 2, [5, 6, 7], settling=True)[0], End(pushback_ms=50)],
    [*snapshot(EPOCH_2, 3, [5])],
]
EXPECTED = [
    (EPOCH_1, 1, (pid(1), pid(2), pid(3)), ()),
    (EPOCH_2, 1, (pid(1), pid(2), pid(3)), (pid(1), pid(2), pid(3))),
    (EPOCH_2, 3, (pid(5),), ()),
]


def follow_in_background(follower: Follower) -> List[Snapshot]:
    """Iterates ``follower`` in a thread (the feed is read while its iterator is), collecting what it yields; the
    iteration ends when the follower is closed."""
    got: List[Snapshot] = []
    threading.Thread(target=lambda: got.extend(follower), daemon=True).start()
    return got


def seen(s: Snapshot):
    return (s.epoch, s.generation, s.ids, s.carried)


def check_scripted_run(feed: ScriptedFeed, got: List[Snapshot], stats, path: Path) -> None:
    assert [seen(s) for s in got] == EXPECTED
    assert stats.discards == {"stream_ended": 2, "digest_mismatch": 1}
    assert 0.05 in stats.recent_delays, stats.recent_delays  # the pushback replaced the backoff delay
    assert [(w.known_epoch, w.known_generation) for w in feed.watches[:3]] == [("", 0), (EPOCH_1, 1), (EPOCH_2, 1)]
    wait_for(lambda: len(feed.reports) >= 4, "the reports")
    reports = [(r.epoch, r.generation, r.outcome) for r in feed.reports]
    applied, rejected = registry_pb2.APPLY_OUTCOME_APPLIED, registry_pb2.APPLY_OUTCOME_REJECTED
    assert reports == [(EPOCH_1, 1, applied), (EPOCH_1, 2, rejected), (EPOCH_2, 1, applied), (EPOCH_2, 3, applied)]
    loaded = state_file.load(path)
    assert loaded is not None and seen(loaded[0]) == EXPECTED[-1]


def scripted_feed():
    feed = ScriptedFeed(SCRIPTS)
    server, port = serve(lambda s: feed_pb2_grpc.add_AssignmentFeedServicer_to_server(feed, s))
    return feed, server, f"http://127.0.0.1:{port}"


def test_the_follower_never_exposes_a_partial_or_refused_set(tmp_path: Path) -> None:
    feed, server, url = scripted_feed()
    got: List[Snapshot] = []
    follower = Follower(url, COLLECTOR, tmp_path / "state.bin", reconnect_initial_s=0.02)
    try:
        for s in follower:
            got.append(s)
            if len(got) == len(EXPECTED):
                break
        check_scripted_run(feed, got, follower.stats, tmp_path / "state.bin")
    finally:
        follower.close()
        feed.done.set()
        server.stop(grace=None)


def test_the_asyncio_follower_follows_the_same_rules(tmp_path: Path) -> None:
    feed, server, url = scripted_feed()

    async def follow() -> AsyncFollower:
        follower = AsyncFollower(url, COLLECTOR, tmp_path / "state.bin", reconnect_initial_s=0.02)
        got: List[Snapshot] = []
        async for s in follower:
            got.append(s)
            if len(got) == len(EXPECTED):
                break
        await follower.close()
        check_scripted_run(feed, got, follower.stats, tmp_path / "state.bin")
        return follower

    try:
        asyncio.run(asyncio.wait_for(follow(), timeout=30))
    finally:
        feed.done.set()
        server.stop(grace=None)


def test_a_follower_of_a_real_server_sees_its_set_and_restarts_into_it(tmp_path: Path) -> None:
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    path = tmp_path / "state.bin"
    try:
        with RosterClient(server.url) as client:
            ids = sorted(str(uuid.uuid4()) for _ in range(5))
            for n, producer in enumerate(ids):
                client.register_producer(producer, f"127.0.0.1:{9100 + n}", 1000, {"job": "py"})
            collector = str(uuid.uuid4())
            with Follower(server.url, collector, path) as follower:
                first = next(iter(follower))
                assert first.ids == tuple(ids)
                assert [p.label_map for p in first.producers] == [{"job": "py"}] * 5
                wait_for(lambda: any(c.id == collector and c.converged for c in client.list_collectors().collectors),
                         "the server to show the collector converged (C4)")
        server.kill()
        # The control plane is down: a restarted follower resumes its last set at once from the state file.
        started = time.monotonic()
        with Follower(server.url, collector, path) as again:
            resumed = next(iter(again))
        assert resumed.ids == tuple(ids) and resumed.generation == first.generation
        assert time.monotonic() - started < 1.0
    finally:
        server.stop()


def test_the_state_file_is_roster_collectors(tmp_path: Path) -> None:
    """roster-collector's state file, read by the Python follower: the same set, epoch and generation."""
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    collector_id = str(uuid.uuid4())
    data = tmp_path / "collector"
    process = None
    try:
        with RosterClient(server.url) as client:
            ids = sorted(str(uuid.uuid4()) for _ in range(3))
            for n, producer in enumerate(ids):
                client.register_producer(producer, f"127.0.0.1:{9200 + n}", 60000, {"zone": "a"})
            with open(tmp_path / "collector.log", "wb") as out:
                process = subprocess.Popen(
                    [str(binary("roster-collector")), "--server", server.url, "--data-dir", str(data), "--id",
                     collector_id, "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
                    stdout=out, stderr=subprocess.STDOUT,
                )
            path = data / f"snapshot-{collector_id}.bin"
            wait_for(lambda: path.exists() and len(state_file.load(path)[0].producers) == 3,
                     f"roster-collector to save its snapshot ({tmp_path / 'collector.log'})")
            loaded, applied_at = state_file.load(path)
            assert loaded.ids == tuple(ids) and applied_at > 0
            assert [p.address for p in loaded.producers] == [f"127.0.0.1:{9200 + n}" for n in range(3)]
            info = next(c for c in client.list_collectors().collectors if c.id == collector_id)
            assert loaded.generation == info.generation
            # And the Python follower resumes from it (the server is not even asked).
            follower = Follower("http://127.0.0.1:9", collector_id, path)
            assert seen(next(iter(follower))) == seen(loaded)
            follower.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        server.stop()


def test_a_refused_watch_is_retried_with_backoff(tmp_path: Path) -> None:
    feed = ScriptedFeed([[End(grpc.StatusCode.FAILED_PRECONDITION)], [*snapshot(EPOCH_1, 1, [1])]])
    server, port = serve(lambda s: feed_pb2_grpc.add_AssignmentFeedServicer_to_server(feed, s))
    try:
        with Follower(f"http://127.0.0.1:{port}", COLLECTOR, reconnect_initial_s=0.02) as follower:
            first = next(iter(follower))
            assert first.ids == (pid(1),)
            assert follower.stats.feed_refused is None and follower.stats.reconnects == 1
    finally:
        feed.done.set()
        server.stop(grace=None)


def test_a_snapshot_that_cannot_be_saved_is_used_but_reported_only_once_saved(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "state.bin"  # its directory does not exist: every save fails until it does
    feed = ScriptedFeed([[*snapshot(EPOCH_1, 1, [1, 2]), HeartbeatsUntilReport()]])
    server, port = serve(lambda s: feed_pb2_grpc.add_AssignmentFeedServicer_to_server(feed, s))
    try:
        with Follower(f"http://127.0.0.1:{port}", COLLECTOR, path) as follower:
            got = follow_in_background(follower)
            wait_for(lambda: got, "the first snapshot")
            assert got[0].ids == (pid(1), pid(2)), "the applied set is used at once (C5 does not hold it)"
            error = follower.stats.persist_error
            assert error is not None and str(path) in error and follower.stats.persist_failures == 1
            assert feed.reports == [], "not reported before it is saved"
            path.parent.mkdir()
            wait_for(lambda: feed.reports, "the report once the save succeeded")
            assert follower.stats.persist_error is None and follower.stats.persisted == (EPOCH_1, 1)
            assert state_file.load(path)[0].ids == (pid(1), pid(2))
    finally:
        feed.done.set()
        server.stop(grace=None)


def test_keepalive_pings_keep_a_quiet_stream_open(tmp_path: Path) -> None:
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    try:
        with Follower(server.url, str(uuid.uuid4()), keepalive_interval_s=0.2, keepalive_timeout_s=1.0) as follower:
            got = follow_in_background(follower)
            wait_for(lambda: got, "the first snapshot")
            quiet_since = time.monotonic()
            # Nothing changes for 2 s (the heartbeat is 10 s): pings every 0.2 s, and no reconnect.
            wait_for(lambda: time.monotonic() - quiet_since > 2.0, "two quiet seconds")
            assert follower.stats.connected and follower.stats.reconnects == 0
    finally:
        server.stop()


def test_roster_collector_resumes_a_state_file_the_python_follower_wrote(tmp_path: Path) -> None:
    """The other direction: a set the Python follower saved (a new epoch's settling snapshot carrying the old set)
    is what roster-collector resumes, with the server unreachable."""
    feed, server, url = scripted_feed()
    path = tmp_path / "state.bin"
    try:
        with Follower(url, COLLECTOR, path, reconnect_initial_s=0.02) as follower:
            for s in follower:
                if s.epoch == EPOCH_2:
                    break
    finally:
        feed.done.set()
        server.stop(grace=None)
    data = tmp_path / "collector"
    data.mkdir()
    (data / f"snapshot-{COLLECTOR}.bin").write_bytes(path.read_bytes())
    log = tmp_path / "collector.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(binary("roster-collector")), "--server", "http://127.0.0.1:9", "--data-dir", str(data), "--id",
             COLLECTOR, "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: re.search(r"status=Some\(([\d.:]+)\)", log.read_text()), f"roster-collector to start ({log})")
        text = log.read_text()
        status_address = re.search(r"status=Some\(([\d.:]+)\)", text).group(1)
        assert "resumed=3" in text, text
        with grpc.insecure_channel(status_address) as channel:
            status = collector_pb2_grpc.CollectorStatusStub(channel).GetStatus(collector_pb2.GetStatusRequest(),
                                                                               timeout=10)
        assert (status.applied_epoch, status.applied_generation, status.applied_producer_count) == (EPOCH_2, 1, 3)
        assert "3" in status.held_reason, status.held_reason  # the carried producers, as the Python side saved them
        assert sorted(p.id for p in status.producers) == [pid(1), pid(2), pid(3)]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_keepalive_finds_a_half_open_connection_and_the_follower_reconnects(tmp_path: Path) -> None:
    """S5: a connection that stops answering (frozen by a proxy, not closed) is dropped within interval + timeout;
    the follower reconnects, and its set never changes meanwhile."""
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    proxy = FaultProxy(server.port or 0)
    try:
        with RosterClient(server.url) as client:
            client.register_producer(str(uuid.uuid4()), "127.0.0.1:9100", 1000)
        follower = Follower(f"http://127.0.0.1:{proxy.port}", str(uuid.uuid4()), keepalive_interval_s=0.5,
                            keepalive_timeout_s=0.5)
        with follower:
            got = follow_in_background(follower)
            wait_for(lambda: got and follower.stats.connected, "the first snapshot")
            before = follower.applied
            proxy.freeze()
            frozen = time.monotonic()
            wait_for(lambda: follower.stats.reconnects >= 1, "keepalive to drop the frozen connection", timeout=10)
            noticed = time.monotonic() - frozen
            wait_for(lambda: follower.stats.connected and proxy.connections >= 2, "a new stream through the proxy")
            assert follower.applied == before and len(got) == 1, "the set in force never changed"
            assert noticed < 5.0, f"the frozen connection was noticed after {noticed:.1f} s"
    finally:
        proxy.close()
        server.stop()


def test_garbage_on_the_wire_mid_snapshot_never_reaches_the_set_in_force(tmp_path: Path) -> None:
    """The server's bytes are garbled while it sends a new snapshot: the stream fails, the set in force stays,
    and the follower reconnects and applies the new snapshot whole."""
    server = RosterServer(bin_dir(), tmp_path / "server")
    server.start()
    proxy = FaultProxy(server.port or 0)
    try:
        with RosterClient(server.url) as client:
            first_id = str(uuid.uuid4())
            client.register_producer(first_id, "127.0.0.1:9100", 1000)
            with Follower(f"http://127.0.0.1:{proxy.port}", str(uuid.uuid4()), reconnect_initial_s=0.05) as follower:
                got = follow_in_background(follower)
                wait_for(lambda: got and follower.stats.connected, "the first snapshot")
                proxy.garble()
                second_id = str(uuid.uuid4())
                client.register_producer(second_id, "127.0.0.1:9101", 1000)
                wait_for(lambda: follower.stats.reconnects >= 1, "the garbled stream to fail")
                wait_for(lambda: len(got) >= 2, "the new snapshot on a new stream")
                assert [s.ids for s in got] == [(first_id,), tuple(sorted([first_id, second_id]))]
                assert proxy.connections >= 2
    finally:
        proxy.close()
        server.stop()
