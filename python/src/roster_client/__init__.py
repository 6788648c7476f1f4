"""roster_client: a Python client of roster's control plane.

- :class:`RosterClient` / :class:`AsyncRosterClient`: every Registry call, with roster's retry rules (R1–R5).
- :class:`Follower` / :class:`AsyncFollower`: one collector's assignment feed, by the rules C1–C5 and R4; user
  code sees only applied, complete snapshots.

The generated messages and stubs are in ``roster_client.pb`` (``registry_pb2``, ``feed_pb2``, …).
"""
