"""A randomised test of the assembler (seeded, bounded), as roster's Rust proptest does: for any sequence of
snapshots, corruptions (truncation, a dropped or repeated chunk, a flipped digest), heartbeats and stream breaks,
every applied set is exactly a complete snapshot that was sent, and a generation applied after another of the same
epoch is newer (another epoch in between starts over: C3)."""

from __future__ import annotations

import random
from typing import List, Optional, Tuple

from roster_client._proto.roster.v1 import feed_pb2
from roster_client.assembler import Applied, Assembler, Event

from .fakes import pid, snapshot

EPOCHS = ["00000000-0000-4000-8000-0000000000e1", "00000000-0000-4000-8000-0000000000e2"]
SEQUENCES = 400


def corrupt(rng: random.Random, frames: List[feed_pb2.WatchResponse]) -> List[feed_pb2.WatchResponse]:
    """The frames with at most one corruption."""
    kind = rng.choice(["none", "none", "none", "truncate", "drop", "repeat", "digest"])
    frames = [feed_pb2.WatchResponse.FromString(f.SerializeToString()) for f in frames]
    if kind == "truncate":
        return frames[: rng.randrange(len(frames))]
    if kind == "drop" and len(frames) > 1:
        del frames[rng.randrange(len(frames))]
        return frames
    if kind == "repeat":
        at = rng.randrange(len(frames))
        frames.insert(at, frames[at])
        return frames
    if kind == "digest":
        frames[-1].chunk.digest ^= 1
        return frames
    return frames


def test_applied_sets_are_always_sent_snapshots() -> None:
    rng = random.Random(16)
    for _ in range(SEQUENCES):
        # Snapshot i: epoch i // 4, generation i % 4 + 1, a random set of up to 11 of 30 producers.
        sets = [sorted({rng.randrange(1, 31) for _ in range(rng.randrange(12))}) for _ in range(8)]
        assembler = Assembler()
        last: Optional[Tuple[str, int]] = None  # the last applied (epoch, generation)
        for _ in range(rng.randrange(1, 60)):
            step = rng.random()
            events: List[Event]
            if step < 0.1:
                events = assembler.on_frame(feed_pb2.WatchResponse(heartbeat=feed_pb2.Heartbeat()))
            elif step < 0.2:
                ended = assembler.stream_ended()
                events = [] if ended is None else [ended]
            else:
                i = rng.randrange(8)
                frames = corrupt(rng, snapshot(EPOCHS[i // 4], i % 4 + 1, sets[i], per_chunk=rng.randrange(1, 4)))
                events = [e for f in frames for e in assembler.on_frame(f)]
            for event in events:
                if isinstance(event, Applied):
                    s = event.snapshot
                    index = EPOCHS.index(s.epoch) * 4 + s.generation - 1
                    assert s.ids == tuple(pid(n) for n in sets[index]), f"applied set is exactly snapshot {index}"
                    if last is not None and last[0] == s.epoch:
                        assert s.generation > last[1], f"generation went from {last[1]} to {s.generation}"
                    last = (s.epoch, s.generation)
