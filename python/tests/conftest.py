"""Shared fixtures: where the repository's test data and roster binaries are, and real roster-server processes.

ROSTER_BIN_DIR names the directory holding roster-server and roster (default: the repository's target/debug);
a missing binary fails the test that needs it, naming the path and the fix, never skips it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .servers import RosterServer, bin_dir

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "testdata"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RosterServer]:
    """A roster-server on a free loopback port, with its own data directory; stopped after the test."""
    s = RosterServer(bin_dir(), tmp_path / "server")
    s.start()
    try:
        yield s
    finally:
        s.stop()
