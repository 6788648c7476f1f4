"""roster_client: a Python client of roster's control plane.

- :class:`RosterClient` / :class:`AsyncRosterClient`: every Registry call (and the feed's ReportApplied), with
  roster's retry rules R1–R5 built in (:mod:`roster_client.retry`).
- :class:`Follower` / :class:`AsyncFollower`: one collector's assignment feed by the rules C1–C5 and R4
  (:mod:`roster_client.follower`); user code sees only applied, complete :class:`Snapshot` objects.
- :mod:`roster_client.pb`: the generated messages and stubs; :mod:`roster_client.defaults`: every default.
"""

import logging

from .assembler import Snapshot
from .client import AsyncRosterClient, RosterClient
from .entries import Producer, PrometheusTarget
from .errors import RosterCallError, RosterConfigError, StateFileError
from .follower import AsyncFollower, Follower, FollowerStats

__all__ = [
    "AsyncFollower",
    "AsyncRosterClient",
    "Follower",
    "FollowerStats",
    "Producer",
    "PrometheusTarget",
    "RosterCallError",
    "RosterClient",
    "RosterConfigError",
    "Snapshot",
    "StateFileError",
]

# A library's records go where the application sends them; with no logging configured, nowhere (PEP 282's advice).
logging.getLogger("roster_client").addHandler(logging.NullHandler())
