"""The applied snapshot on disk (C5), in the same format as roster's Rust follower (src/follower/state_file.rs),
so a Python follower and roster-collector read each other's files and a follower restarted while the control
plane is down resumes its last known set at once.

Format: the 16 bytes ``ROSTER-SNAPSHOT1``, the XXH3-64 of the payload (8 bytes, little-endian), then the payload,
a ``roster.v1.PersistedSnapshot`` protobuf. A save writes ``<path>.tmp``, fsyncs it, renames it over the file
and fsyncs the directory, so a crash leaves the old file or the new one, never a mix; a failed save removes its
temporary file, and one left by a crash is removed at start. A missing file means "no snapshot yet"; a damaged
one is an error naming the file and the way out, never a silent empty set.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Tuple

import xxhash
from google.protobuf.message import DecodeError

from ._proto.roster.v1 import collector_pb2
from .assembler import Snapshot
from .entries import InvalidEntry, Producer, parse_uuid
from .errors import StateFileError

MAGIC = b"ROSTER-SNAPSHOT1"
_HINT = (
    "The follower will not guess what it held. To start with an empty set (collecting nothing until the server "
    "sends this collector's assignment), move the file away; or restore it from a backup"
)


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def load(path: Path) -> Optional[Tuple[Snapshot, int]]:
    """The snapshot in the file and when it was applied (Unix ms); None when there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateFileError(str(path), f"cannot be read: {e.strerror or e}") from None

    def corrupt(problem: str) -> StateFileError:
        return StateFileError(str(path), f"is damaged ({problem})", _HINT)

    if len(data) < 24 or data[:16] != MAGIC:
        raise corrupt(f"{len(data)} bytes, without the ROSTER-SNAPSHOT1 header")
    payload = data[24:]
    (stored,) = struct.unpack("<Q", data[16:24])
    if stored != xxhash.xxh3_64_intdigest(payload):
        raise corrupt("checksum mismatch: the file was truncated or altered")
    message = collector_pb2.PersistedSnapshot()
    try:
        message.ParseFromString(payload)
        epoch = parse_uuid("epoch", message.epoch)
        producers = tuple(Producer.from_pb(p) for p in message.producers)
        carried = tuple(parse_uuid("carried_ids", c) for c in message.carried_ids)
    except (DecodeError, InvalidEntry) as e:
        raise corrupt(str(e) or "cannot decode") from None
    return Snapshot(epoch, message.generation, producers, message.store_settling, carried), message.applied_at_unix_ms


def save(path: Path, snapshot: Snapshot, applied_at_ms: int) -> None:
    """Writes the file atomically (temp file, fsync, rename, directory fsync)."""
    message = collector_pb2.PersistedSnapshot(
        epoch=snapshot.epoch,
        generation=snapshot.generation,
        producers=[p.to_pb() for p in snapshot.producers],
        applied_at_unix_ms=applied_at_ms,
        store_settling=snapshot.settling,
        carried_ids=list(snapshot.carried),
    )
    payload = message.SerializeToString(deterministic=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as out:
            out.write(MAGIC + struct.pack("<Q", xxhash.xxh3_64_intdigest(payload)) + payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass  # Best effort: the save already failed, and a leftover is removed at the next start.
        raise StateFileError(str(path), f"cannot be written: {e.strerror or e}") from None
    directory = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    except OSError as e:
        raise StateFileError(str(path), f"cannot sync its directory: {e.strerror or e}") from None
    finally:
        os.close(directory)


def remove_leftover(path: Path) -> bool:
    """Removes the temporary file of a save that did not finish; returns whether there was one."""
    try:
        tmp_path(path).unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StateFileError(str(tmp_path(path)), f"cannot be removed: {e.strerror or e}") from None
