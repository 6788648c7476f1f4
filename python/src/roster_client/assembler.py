"""Assembles snapshots from feed frames (C1–C3): a pure state machine, frames in, events out, no I/O.

A port of roster's Rust assembler (src/follower/assembler.rs), checked against the same golden vectors
(testdata/feed/). It holds the applied snapshot (the last known set) and at most one partial snapshot. A partial
becomes the applied snapshot only when its complete chunk arrived, every chunk carried the same epoch and
generation, indices ran 0..n-1, the counts and the digest match, and every entry is valid with no id twice (C1).
Anything else discards the partial and leaves the applied snapshot untouched (C2). Within an epoch only a newer
generation applies (C3).

The new-epoch rule: a snapshot of another epoch that says its store is settling applies at once *together with*
every producer of the applied set it lacks (those are carried); later settling snapshots of that epoch carry the
carried producers they still lack; the first settled snapshot applies as sent. A follower with nothing applied
applies any complete snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple, Union

from . import defaults
from ._proto.roster.v1 import feed_pb2
from .digest import Digest, digest
from .entries import InvalidEntry, Producer, parse_uuid

# The discard reasons: stable names, the same as roster-collector's discard counters.
STREAM_ENDED = "stream_ended"
OTHER_GENERATION = "other_generation"
GAP = "gap"
REPEATED_CHUNK = "repeated_chunk"
COUNT_MISMATCH = "count_mismatch"
DIGEST_MISMATCH = "digest_mismatch"
DUPLICATE_PRODUCER = "duplicate_producer"
INVALID_ENTRY = "invalid_entry"
INTERLEAVED = "interleaved"
TOO_LARGE = "too_large"
STALE_GENERATION = "stale_generation"


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot in force."""

    epoch: str
    """The server store's epoch (a lowercase UUID)."""
    generation: int
    producers: Tuple[Producer, ...]
    """The producers, ordered by id, carried ones included."""
    settling: bool = False
    """Whether the server's store was settling when it was sent."""
    carried: Tuple[str, ...] = ()
    """Ids kept from an earlier epoch's set while the server's new store settles, ordered."""

    @property
    def ids(self) -> Tuple[str, ...]:
        """The producers' ids, in order."""
        return tuple(p.id for p in self.producers)

    def server_digest(self) -> int:
        """The digest of the server's snapshot this set was applied from (its producers without the carried ones),
        which a ``Watch`` sends as ``known_digest``: a server that made this generation again with other producers
        (a store restored from an older backup) then sends the set it has now, rather than "in sync"."""
        carried = set(self.carried)
        return digest(p.to_pb() for p in self.producers if p.id not in carried)

    def carry_from(self, applied: Snapshot) -> Snapshot:
        """The new-epoch rule: keeps the producers of ``applied`` this settling snapshot lacks (all of them when
        ``applied`` is of another epoch, else those ``applied`` already carried)."""
        ids = set(self.ids)
        carried_before = set(applied.carried)
        carry = [
            p
            for p in applied.producers
            if (applied.epoch != self.epoch or p.id in carried_before) and p.id not in ids
        ]
        producers = tuple(sorted(self.producers + tuple(carry), key=lambda p: p.id))
        return replace(self, producers=producers, carried=tuple(p.id for p in carry))


@dataclass(frozen=True)
class Progress:
    """A chunk was accepted; the snapshot is not complete yet."""


@dataclass(frozen=True)
class Applied:
    """A new snapshot is in force."""

    snapshot: Snapshot


@dataclass(frozen=True)
class AlreadyApplied:
    """A complete snapshot of the generation in force: nothing to do."""


@dataclass(frozen=True)
class Discarded:
    """A partial or complete snapshot was not applied; the last known set stays (C2)."""

    reason: str
    detail: str
    refused: Optional[Tuple[str, int]] = None
    """(epoch, generation) of a complete snapshot that was refused: reported as REJECTED (C4)."""


@dataclass(frozen=True)
class InSync:
    """The server says the applied snapshot is current (S3)."""

    epoch: str
    generation: int


@dataclass(frozen=True)
class Heartbeat:
    """The stream is alive (S5)."""

    epoch: str
    generation: int


Event = Union[Progress, Applied, AlreadyApplied, Discarded, InSync, Heartbeat]


@dataclass
class _Partial:
    epoch: str
    generation: int
    next_index: int = 0
    producers: List[Producer] = field(default_factory=list)
    digest: Digest = field(default_factory=Digest)


class Assembler:
    """The assembler; see the module docs."""

    def __init__(self, applied: Optional[Snapshot] = None, max_producers: int = defaults.MAX_PRODUCERS) -> None:
        self._applied = applied
        self._partial: Optional[_Partial] = None
        self._max_producers = max_producers

    @property
    def applied(self) -> Optional[Snapshot]:
        """The snapshot in force."""
        return self._applied

    def stream_ended(self) -> Optional[Discarded]:
        """The stream failed or ended: a partial snapshot is discarded (nothing complete was refused)."""
        p, self._partial = self._partial, None
        if p is None:
            return None
        return Discarded(STREAM_ENDED, f"generation {p.generation} ended after {p.next_index} chunks")

    def on_frame(self, frame: feed_pb2.WatchResponse) -> List[Event]:
        """Takes one frame; returns what it led to (a discard of the partial may come before the frame's own)."""
        which = frame.WhichOneof("frame")
        if which == "chunk":
            return self._on_chunk(frame.chunk)
        if which == "in_sync":
            return self._interrupt("in-sync") + [InSync(frame.in_sync.epoch, frame.in_sync.generation)]
        if which == "heartbeat":
            return self._interrupt("heartbeat") + [Heartbeat(frame.heartbeat.epoch, frame.heartbeat.generation)]
        return []  # A frame of a kind this version does not know (a newer server's): nothing to do.

    def _interrupt(self, what: str) -> List[Event]:
        p, self._partial = self._partial, None
        if p is None:
            return []
        return [Discarded(INTERLEAVED, f"{what} frame inside generation {p.generation} after {p.next_index} chunks")]

    def _on_chunk(self, chunk: feed_pb2.SnapshotChunk) -> List[Event]:
        events: List[Event] = []
        # The partial is taken out while this chunk is checked: a chunk that breaks a rule leaves none behind (C2).
        partial, self._partial = self._partial, None
        if partial is not None and (partial.epoch != chunk.epoch or partial.generation != chunk.generation):
            events.append(
                Discarded(
                    OTHER_GENERATION,
                    f"generation {partial.generation} (epoch {partial.epoch}) interrupted by a chunk of generation "
                    f"{chunk.generation} (epoch {chunk.epoch})",
                )
            )
            partial = None
        if partial is None:
            if chunk.index != 0:
                events.append(Discarded(GAP, f"generation {chunk.generation} started at chunk {chunk.index}"))
                return events
            partial = _Partial(chunk.epoch, chunk.generation)
        if chunk.index != partial.next_index:
            reason = REPEATED_CHUNK if chunk.index < partial.next_index else GAP
            detail = f"generation {partial.generation}: chunk {chunk.index} where {partial.next_index} was due"
            events.append(Discarded(reason, detail))
            return events
        if len(partial.producers) + len(chunk.producers) > self._max_producers:
            detail = f"generation {partial.generation} exceeds {self._max_producers} producers"
            events.append(Discarded(TOO_LARGE, detail))
            return events
        for entry in chunk.producers:
            partial.digest.update(entry)
            try:
                partial.producers.append(Producer.from_pb(entry))
            except InvalidEntry as e:
                events.append(Discarded(INVALID_ENTRY, f"generation {partial.generation}: {e}"))
                return events
        partial.next_index += 1
        if chunk.complete:
            events.append(self._complete(partial, chunk))
        else:
            self._partial = partial
            events.append(Progress())
        return events

    def _complete(self, p: _Partial, last: feed_pb2.SnapshotChunk) -> Event:
        try:
            epoch = parse_uuid("epoch", p.epoch)
        except InvalidEntry:
            return Discarded(INVALID_ENTRY, f"epoch {p.epoch!r} is not a UUID")
        refused = (epoch, p.generation)
        producers = sorted(p.producers, key=lambda t: t.id)
        for a, b in zip(producers, producers[1:]):
            if a.id == b.id:
                return Discarded(DUPLICATE_PRODUCER, f"generation {p.generation}: producer {a.id} twice", refused)
        if last.chunk_count != p.next_index or last.producer_count != len(producers):
            return Discarded(
                COUNT_MISMATCH,
                f"generation {p.generation}: {p.next_index} chunks and {len(producers)} producers arrived, the "
                f"complete chunk says {last.chunk_count} and {last.producer_count}",
                refused,
            )
        if last.digest != 0 and last.digest != p.digest.value():
            return Discarded(DIGEST_MISMATCH, f"generation {p.generation}: digest does not match", refused)
        snapshot = Snapshot(epoch, p.generation, tuple(producers), last.store_settling)
        applied = self._applied
        if applied is not None and applied.epoch == epoch:
            if snapshot.generation == applied.generation:
                return AlreadyApplied()
            if snapshot.generation < applied.generation:
                return Discarded(
                    STALE_GENERATION,
                    f"generation {snapshot.generation} is older than the applied {applied.generation}",
                )
        if snapshot.settling and applied is not None:
            snapshot = snapshot.carry_from(applied)
        self._applied = snapshot
        return Applied(snapshot)
