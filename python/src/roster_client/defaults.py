"""Every default of roster_client, in one place, each with why (the rules are in roster's docs/DESIGN.md).

Nothing else in the package writes a number that a user could want to change: the client, the follower and their
tests read them from here.
"""

from __future__ import annotations

# R3: most attempts of one unary call, the first included. The seed: "give up after 3 to 5 tries".
MAX_ATTEMPTS = 5

# R3: whatever max_attempts and delays are set to, no one-second window of one call holds more than this many
# attempts (the seed: "at most 5 requests per second"). Enforced by waiting, not by configuration.
MAX_ATTEMPTS_PER_SECOND = 5

# R3: the delay before retry n is min(RETRY_INITIAL_S * 2^(n-1), RETRY_CAP_S), shortened by a random part of at most
# RETRY_JITTER of itself (jitter never lengthens a delay, so the cap is hard). The defaults give retries about
# 0.2, 0.4, 0.8 and 1.6 s apart: the 4th attempt starts at least 1.12 s after the 1st, so a 1 s outage never
# surfaces, and no second holds more than 3 attempts. The same figures as roster's Rust client (BackoffPolicy::UNARY).
RETRY_INITIAL_S = 0.2
RETRY_CAP_S = 5.0
RETRY_JITTER = 0.2

# R3: the time limit of each attempt (not of the whole call). An attempt that runs out is DEADLINE_EXCEEDED and
# retried. As the CLI's --timeout.
ATTEMPT_TIMEOUT_S = 5.0

# R4: the feed reconnects forever, first after about 200 ms, doubling to a hard 30 s cap; the wide jitter spreads
# a fleet that lost its server at the same moment. A server's grpc-retry-pushback-ms replaces the delay (under the
# cap).
FEED_INITIAL_S = 0.2
FEED_CAP_S = 30.0
FEED_JITTER = 0.5

# S5: HTTP/2 keepalive of the feed connection: a ping every 10 s, dropped if unanswered for 10 s, so a half-open
# connection is found within 20 s. roster-server permits pings this often.
KEEPALIVE_INTERVAL_S = 10.0
KEEPALIVE_TIMEOUT_S = 10.0

# C5: retries of a failed save of the applied snapshot (a full or read-only disk): 200 ms doubling to 10 s, each
# shortened by up to half: a disk that recovers is noticed within 10 s, a failing one tried at most every 10 s.
PERSIST_INITIAL_S = 0.2
PERSIST_CAP_S = 10.0
PERSIST_JITTER = 0.5

# C1: most producers in one snapshot; far above any real assignment, it only guards memory.
MAX_PRODUCERS = 1_000_000

# gRPC channel options of every channel this package makes. grpcio's own retries are off (one retry layer, ours,
# counted and logged); see python/README.md "Retry defaults and why" for what was measured.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.enable_retries", 0),)

# The server a client calls when built with from_env() and ROSTER_SERVER is unset: the CLI's default.
SERVER = "http://127.0.0.1:50051"

# The environment variables from_env() reads, as the CLI's flags (cli/src/args.rs): setting -> variable.
ENVIRONMENT = {
    "target": "ROSTER_SERVER",
    "tls_ca": "ROSTER_TLS_CA",
    "tls_cert": "ROSTER_TLS_CERT",
    "tls_key": "ROSTER_TLS_KEY",
    "token_file": "ROSTER_TOKEN_FILE",
}
