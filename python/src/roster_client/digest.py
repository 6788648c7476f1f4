"""The snapshot digest (S2), which both roster-server and every follower compute, so a follower can tell that the
set it assembled from chunks is byte for byte the set the server meant.

Definition (feed.proto, SnapshotChunk.digest): XXH3-64 with seed 0 over the deterministic protobuf encoding (map
entries ordered by key) of every ``AssignedProducer`` of the snapshot, in order, each prefixed by its length as a
varint. ``testdata/feed/digest.json`` holds the vectors both languages check.
"""

from __future__ import annotations

from typing import Iterable

import xxhash

from ._proto.roster.v1 import feed_pb2


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint."""
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_entry(entry: feed_pb2.AssignedProducer) -> bytes:
    """One entry as the digest hashes it: its length as a varint, then its deterministic encoding."""
    body = entry.SerializeToString(deterministic=True)
    return varint(len(body)) + body


class Digest:
    """The digest computed piece by piece, as chunks arrive."""

    def __init__(self) -> None:
        self._hasher = xxhash.xxh3_64(seed=0)

    def update(self, entry: feed_pb2.AssignedProducer) -> None:
        """Adds the next entry."""
        self._hasher.update(encode_entry(entry))

    def value(self) -> int:
        """The digest of everything added."""
        return self._hasher.intdigest()


def digest(entries: Iterable[feed_pb2.AssignedProducer]) -> int:
    """The digest of a whole list of entries, in order."""
    d = Digest()
    for entry in entries:
        d.update(entry)
    return d.value()
