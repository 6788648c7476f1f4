"""The feed's test vectors against the Python assembler and digest, read as strictly as testdata/README.md says
(every object has exactly the keys described; uint64 values are decimal strings, uint32 values numbers):

- the golden vectors (testdata/feed/), the same files roster's Rust assembler checks (src/follower/feed_vectors.rs);
- random vectors written by roster's Rust assembler (the example feed-random-vectors, in the same schema), named by
  $ROSTER_FEED_RANDOM_VECTORS, which scripts/test generates: both assemblers accept and reject the same frame
  sequences (issue 16). Without the file that test fails, saying how to make it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from roster_client._proto.roster.v1 import feed_pb2
from roster_client.assembler import (
    AlreadyApplied,
    Applied,
    Assembler,
    Discarded,
    Event,
    Heartbeat,
    InSync,
    Progress,
    Snapshot,
)
from roster_client.digest import digest, encode_entry

from .conftest import TESTDATA

FEED = TESTDATA / "feed"
# The file of random assembly vectors the Rust side generated, and how to make it (what scripts/test runs).
RANDOM_VECTORS_VAR = "ROSTER_FEED_RANDOM_VECTORS"
MAKE_RANDOM_VECTORS = (
    "cargo run --example feed-random-vectors -- --seed 16 --cases 2000 --out /tmp/feed-random-vectors.json "
    "(from the repository's root), then set ROSTER_FEED_RANDOM_VECTORS=/tmp/feed-random-vectors.json; "
    "./scripts/test does both"
)


def obj(value: Any, allowed: List[str], what: str) -> Dict[str, Any]:
    """``value`` as an object with no key outside ``allowed``."""
    assert isinstance(value, dict), f"{what}: expected an object, got {value!r}"
    unknown = [k for k in value if k not in allowed]
    assert not unknown, f"{what}: unknown key {unknown[0]!r} (allowed: {allowed})"
    return value


def string(m: Dict[str, Any], key: str, what: str) -> str:
    v = m.get(key, "")
    assert isinstance(v, str), f"{what}.{key}: expected a string, got {v!r}"
    return v


def boolean(m: Dict[str, Any], key: str, what: str) -> bool:
    v = m.get(key, False)
    assert isinstance(v, bool), f"{what}.{key}: expected true or false, got {v!r}"
    return v


def uint32(m: Dict[str, Any], key: str, what: str) -> int:
    v = m.get(key, 0)
    assert isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32, f"{what}.{key}: not a uint32: {v!r}"
    return v


def uint64(m: Dict[str, Any], key: str, what: str) -> int:
    v = m.get(key, "0")
    assert isinstance(v, str) and v.isdigit() and int(v) < 2**64, f"{what}.{key}: not a uint64 string: {v!r}"
    return int(v)


def producer(value: Any, what: str) -> feed_pb2.AssignedProducer:
    m = obj(value, ["id", "address", "interval_ms", "labels"], what)
    labels = m.get("labels", {})
    assert isinstance(labels, dict), f"{what}.labels: expected an object of strings"
    return feed_pb2.AssignedProducer(
        id=string(m, "id", what),
        address=string(m, "address", what),
        interval_ms=uint32(m, "interval_ms", what),
        labels={k: string(labels, k, what) for k in labels},
    )


def producers(m: Dict[str, Any], key: str, what: str) -> List[feed_pb2.AssignedProducer]:
    items = m.get(key, [])
    assert isinstance(items, list), f"{what}.{key}: expected an array"
    return [producer(p, f"{what}.{key}[{i}]") for i, p in enumerate(items)]


def frame(value: Any, what: str) -> feed_pb2.WatchResponse:
    m = obj(value, ["chunk", "in_sync", "heartbeat"], what)
    assert len(m) == 1, f"{what}: a WatchResponse sets exactly one of its frame fields"
    if "chunk" in m:
        w = f"{what}.chunk"
        c = obj(
            m["chunk"],
            ["epoch", "generation", "index", "producers", "complete", "chunk_count", "producer_count", "digest",
             "store_settling"],
            w,
        )
        return feed_pb2.WatchResponse(
            chunk=feed_pb2.SnapshotChunk(
                epoch=string(c, "epoch", w),
                generation=uint64(c, "generation", w),
                index=uint32(c, "index", w),
                producers=producers(c, "producers", w),
                complete=boolean(c, "complete", w),
                chunk_count=uint32(c, "chunk_count", w),
                producer_count=uint64(c, "producer_count", w),
                digest=uint64(c, "digest", w),
                store_settling=boolean(c, "store_settling", w),
            )
        )
    key = next(iter(m))
    w = f"{what}.{key}"
    inner = obj(m[key], ["epoch", "generation"], w)
    epoch, generation = string(inner, "epoch", w), uint64(inner, "generation", w)
    if key == "in_sync":
        return feed_pb2.WatchResponse(in_sync=feed_pb2.InSync(epoch=epoch, generation=generation))
    return feed_pb2.WatchResponse(heartbeat=feed_pb2.Heartbeat(epoch=epoch, generation=generation))


def snapshot_json(s: Snapshot) -> Dict[str, Any]:
    return {
        "epoch": s.epoch,
        "generation": str(s.generation),
        "settling": s.settling,
        "producers": list(s.ids),
        "carried": list(s.carried),
        "digest": str(digest(p.to_pb() for p in s.producers)),
    }


def event_json(e: Event) -> Dict[str, Any]:
    if isinstance(e, Progress):
        return {"event": "progress"}
    if isinstance(e, Applied):
        return {"event": "applied", "snapshot": snapshot_json(e.snapshot)}
    if isinstance(e, AlreadyApplied):
        return {"event": "already_applied"}
    if isinstance(e, Discarded):
        refused = None if e.refused is None else {"epoch": e.refused[0], "generation": str(e.refused[1])}
        return {"event": "discarded", "reason": e.reason, "refused": refused}
    if isinstance(e, InSync):
        return {"event": "in_sync", "epoch": e.epoch, "generation": str(e.generation)}
    assert isinstance(e, Heartbeat)
    return {"event": "heartbeat", "epoch": e.epoch, "generation": str(e.generation)}


def assembly_cases() -> List[Any]:
    files = sorted((FEED / "assembly").glob("*.json"))
    assert len(files) >= 5, f"the assembly vectors are missing from {FEED / 'assembly'}"
    cases = []
    for path in files:
        top = obj(json.loads(path.read_text(encoding="utf-8")), ["description", "cases"], path.name)
        assert top.get("cases"), f"{path.name}: no cases"
        for case in top["cases"]:
            cases.append(pytest.param(path.name, case, id=f"{path.stem}: {case.get('name')}"))
    assert len(cases) >= 30, f"only {len(cases)} assembly cases"
    return cases


@pytest.mark.parametrize("file,case", assembly_cases())
def test_assembly_vector(file: str, case: Any) -> None:
    run_case(file, case)


def test_random_assembly_vectors_from_the_rust_assembler() -> None:
    path = os.environ.get(RANDOM_VECTORS_VAR)
    assert path, (
        f"${RANDOM_VECTORS_VAR} is not set: it names the Rust side's random assembly vectors. "
        f"Make them: {MAKE_RANDOM_VECTORS}"
    )
    file = Path(path)
    assert file.is_file(), f"${RANDOM_VECTORS_VAR}={path}: no such file. Make it: {MAKE_RANDOM_VECTORS}"
    top = obj(json.loads(file.read_text(encoding="utf-8")), ["description", "cases"], file.name)
    cases = top.get("cases")
    assert isinstance(cases, list) and cases, f"{file}: no cases. Make it anew: {MAKE_RANDOM_VECTORS}"
    for case in cases:
        run_case(file.name, case)


def run_case(file: str, case: Any) -> None:
    """One assembly case through a fresh assembler: every step's events and the snapshot in force must be the
    vector's."""
    m = obj(case, ["name", "rules", "max_producers", "steps", "applied"], file)
    what = f"{file}: {m['name']!r}"
    assert isinstance(m.get("rules"), list) and m["rules"], f"{what}: name the rules the case covers"
    max_producers: Optional[int] = m.get("max_producers")
    assembler = Assembler() if max_producers is None else Assembler(max_producers=max_producers)
    steps = m.get("steps")
    assert isinstance(steps, list) and steps, f"{what}: no steps"
    arrived: List[str] = []  # the ids of the snapshot being assembled, as they came
    for i, step in enumerate(steps):
        at = f"{what} step {i}"
        s = obj(step, ["frame", "stream_ended", "events"], at)
        if "frame" in s and "stream_ended" not in s:
            response = frame(s["frame"], at)
            events: List[Event] = assembler.on_frame(response)
            if response.HasField("chunk"):
                arrived = [] if response.chunk.index == 0 else arrived
                arrived += [p.id for p in response.chunk.producers]
            # What a Watch says it holds (known_digest) is the digest the applied snapshot came with, when it came
            # in id order, as a roster server sends it.
            for e in events:
                if isinstance(e, Applied) and response.chunk.digest != 0 and arrived == sorted(arrived):
                    assert e.snapshot.server_digest() == response.chunk.digest, f"{at}: server_digest"
        elif "frame" not in s and s.get("stream_ended") is True:
            ended = assembler.stream_ended()
            events = [] if ended is None else [ended]
        else:
            raise AssertionError(f'{at}: a step is either a frame or "stream_ended": true')
        assert "events" in s, f"{at}: no expected events"
        assert [event_json(e) for e in events] == s["events"], f"{at}: events differ (left: Python, right: vector)"
    assert "applied" in m, f"{what}: no expected applied snapshot"
    got = None if assembler.applied is None else snapshot_json(assembler.applied)
    assert got == m["applied"], f"{what}: the snapshot in force differs (left: Python, right: vector)"


def digest_cases() -> List[Any]:
    top = obj(json.loads((FEED / "digest.json").read_text(encoding="utf-8")), ["description", "cases"], "digest.json")
    cases = top.get("cases")
    assert isinstance(cases, list) and len(cases) >= 5, "digest.json: fewer than 5 cases"
    return [pytest.param(c, id=str(c.get("name"))) for c in cases]


@pytest.mark.parametrize("case", digest_cases())
def test_digest_vector(case: Any) -> None:
    m = obj(case, ["name", "producers", "encoded_hex", "digest"], "digest.json")
    what = f"digest.json: {m['name']}"
    entries = producers(m, "producers", what)
    assert b"".join(encode_entry(e) for e in entries).hex() == m["encoded_hex"], f"{what}: encoding"
    assert digest(entries) == uint64(m, "digest", what), f"{what}: digest"
