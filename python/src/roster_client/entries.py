"""Producer entries of a snapshot, validated as roster's Rust follower validates them (C2: an invalid entry
discards the snapshot), and their wire form for the digest and the state file.

An entry is read as data a server accepted (roster's ``Target::try_from`` with ``parse_accepted``): any UUID as
its id, and an address that the strict rules refuse is still kept when it is a lowercase, dialable
``host:port``, so a server or state file from before a rule was made stricter never makes a whole snapshot
unusable. What the Rust code normalises (ids as lowercase hyphenated UUIDs, addresses lowercased with the port's
leading zeros dropped and IPv6 in short form, a gRPC entry's kind as 0) is normalised the same way here, since the
digest of the set in force is computed over these normalised entries.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from ._proto.roster.v1 import feed_pb2, registry_pb2

# The ranges and sizes of roster's src/domain.rs (they are the contract's: registry.proto states them).
MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 3_600_000
MAX_LABELS = 32
MAX_LABEL_NAME_BYTES = 64
MAX_LABEL_VALUE_BYTES = 256
MAX_ADDRESS_BYTES = 255
MAX_METRICS_PATH_BYTES = 1024
MAX_HOST_NAME_BYTES = 253
MAX_DNS_LABEL_BYTES = 63
DEFAULT_METRICS_PATH = "/metrics"

NIL_UUID = "00000000-0000-0000-0000-000000000000"

KIND_GRPC = "grpc"
KIND_PROMETHEUS = "prometheus"


class InvalidEntry(ValueError):
    """An entry breaks a rule; the message starts with the field's name."""


_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The forms the Rust uuid crate's parse_str takes: simple, hyphenated, braced and URN.
_UUID_FORMS = re.compile(
    rf"(?:{_HEX}{{32}}|{_HYPHENATED}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED})", re.ASCII
)


def parse_uuid(field: str, value: str) -> str:
    """A UUID in any form roster accepts, as its lowercase hyphenated text; the nil UUID is accepted (stored data)."""
    if not _UUID_FORMS.fullmatch(value):
        raise InvalidEntry(f"{field}: {_clip(value)!r} is not a UUID")
    digits = re.sub(r"[^0-9a-fA-F]", "", value[len("urn:uuid:") :] if value.startswith("urn:") else value).lower()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _clip(value: str) -> str:
    return value if len(value) <= 64 else value[:64] + "…"


@dataclass(frozen=True)
class PrometheusTarget:
    """What a Prometheus HTTP target needs beyond its address: ``GET scheme://address/metrics_path``."""

    scheme: str = "http"
    metrics_path: str = DEFAULT_METRICS_PATH
    scrape_timeout_ms: Optional[int] = None


@dataclass(frozen=True)
class Producer:
    """One producer a collector must collect: a validated ``AssignedProducer`` entry."""

    id: str
    address: str
    interval_ms: int
    labels: Tuple[Tuple[str, str], ...] = ()
    kind: str = KIND_GRPC
    prometheus: Optional[PrometheusTarget] = None

    @property
    def label_map(self) -> Dict[str, str]:
        """The labels as a dict, ordered by name."""
        return dict(self.labels)

    def to_pb(self) -> feed_pb2.AssignedProducer:
        """The wire entry, as roster writes it: a gRPC entry carries kind 0 and no ``prometheus``."""
        entry = feed_pb2.AssignedProducer(
            id=self.id, address=self.address, interval_ms=self.interval_ms, labels=dict(self.labels)
        )
        if self.prometheus is not None:
            entry.kind = registry_pb2.PRODUCER_KIND_PROMETHEUS
            target = entry.prometheus
            target.scheme = self.prometheus.scheme
            target.metrics_path = self.prometheus.metrics_path
            if self.prometheus.scrape_timeout_ms is not None:
                target.scrape_timeout_ms = self.prometheus.scrape_timeout_ms
        return entry

    @classmethod
    def from_pb(cls, entry: feed_pb2.AssignedProducer, field: str = "producers") -> Producer:
        """Validates a wire entry; raises :class:`InvalidEntry` naming the field."""
        interval = entry.interval_ms
        if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
            raise InvalidEntry(
                f"{field}.interval_ms: {interval} ms is out of range: use {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS} ms"
            )
        producer_id = parse_uuid(f"{field}.id", entry.id)
        address = parse_accepted_address(f"{field}.address", entry.address)
        labels = check_labels(f"{field}.labels", entry.labels)
        kind, prometheus = _collection(field, entry, interval)
        return cls(producer_id, address, interval, labels, kind, prometheus)


def check_labels(field: str, labels: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """Labels by roster's rules, ordered by name."""
    if len(labels) > MAX_LABELS:
        raise InvalidEntry(f"{field}: {len(labels)} labels, at most {MAX_LABELS} allowed")
    for name, value in labels.items():
        if not name:
            raise InvalidEntry(f"{field}: a label name is empty; names match [a-zA-Z_][a-zA-Z0-9_]*")
        if len(name.encode()) > MAX_LABEL_NAME_BYTES:
            raise InvalidEntry(f"{field}[{_clip(name)!r}]: name is longer than {MAX_LABEL_NAME_BYTES} bytes")
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name, re.ASCII):
            raise InvalidEntry(f"{field}[{_clip(name)!r}]: name must match [a-zA-Z_][a-zA-Z0-9_]*")
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidEntry(f"{field}[{_clip(name)!r}]: value is longer than {MAX_LABEL_VALUE_BYTES} bytes")
    return tuple(sorted(labels.items()))


def _collection(
    field: str, entry: feed_pb2.AssignedProducer, interval_ms: int
) -> Tuple[str, Optional[PrometheusTarget]]:
    has_target = entry.HasField("prometheus")
    if entry.kind in (registry_pb2.PRODUCER_KIND_UNSPECIFIED, registry_pb2.PRODUCER_KIND_GRPC):
        if has_target:
            raise InvalidEntry(f"{field}.prometheus: set, but the kind is gRPC")
        return KIND_GRPC, None
    if entry.kind != registry_pb2.PRODUCER_KIND_PROMETHEUS:
        raise InvalidEntry(f"{field}.kind: {entry.kind} is not a producer kind")
    target = entry.prometheus
    scheme = target.scheme.lower() or "http"
    if scheme not in ("http", "https"):
        raise InvalidEntry(f"{field}.prometheus.scheme: {_clip(target.scheme)!r} is not http or https")
    path = target.metrics_path or DEFAULT_METRICS_PATH
    path_field = f"{field}.prometheus.metrics_path"
    if len(path.encode()) > MAX_METRICS_PATH_BYTES:
        raise InvalidEntry(f"{path_field}: longer than {MAX_METRICS_PATH_BYTES} bytes")
    if not path.startswith("/") or any(c in path for c in "?#") or not path.isascii():
        raise InvalidEntry(f"{path_field}: {_clip(path)!r} is not a path starting with / without ? or #")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in path) or re.search(r'["<>\\^`{|}]', path):
        raise InvalidEntry(f"{path_field}: {_clip(path)!r} holds a character a URI path cannot")
    timeout = target.scrape_timeout_ms if target.HasField("scrape_timeout_ms") else None
    if timeout is not None and not 0 < timeout < interval_ms:
        raise InvalidEntry(
            f"{field}.prometheus.scrape_timeout_ms: {timeout} is not between 1 and interval_ms {interval_ms} - 1"
        )
    return KIND_PROMETHEUS, PrometheusTarget(scheme, path, timeout)


def parse_accepted_address(field: str, value: str) -> str:
    """An address from data a server accepted: kept as it is when in normal form, else normalised by the strict
    rules, else kept when it is a lowercase, dialable ``host:port`` (a looser, older rule's)."""
    if _is_normal_host_port(value):
        return value
    try:
        return parse_address(field, value)
    except InvalidEntry:
        if not any("A" <= c <= "Z" for c in value) and _dialable_authority(value):
            return value
        raise


def parse_address(field: str, value: str) -> str:
    """The strict rules of a producer address (registry.proto, RegisterProducerRequest.address), normalised."""
    if not value:
        raise InvalidEntry(f"{field}: required, but empty (expected host:port)")
    if len(value.encode()) > MAX_ADDRESS_BYTES:
        raise InvalidEntry(f"{field}: longer than {MAX_ADDRESS_BYTES} bytes")
    lowered = value.lower()
    if lowered.startswith("https://"):
        raise InvalidEntry(f"{field}: {_clip(value)!r} asks for TLS; give host:port")
    bare = value[len("http://") :] if lowered.startswith("http://") else value
    bare = bare[:-1] if bare.endswith("/") else bare
    if "://" in bare:
        raise InvalidEntry(f"{field}: {_clip(value)!r} has a scheme other than http://")
    if any(c in bare for c in "/?#@"):
        raise InvalidEntry(f"{field}: {_clip(value)!r} is not a bare host:port")
    try:
        return parse_host_port(bare)
    except ValueError as e:
        raise InvalidEntry(f"{field}: {_clip(value)!r} {e} (expected host:port)") from None


def parse_host_port(value: str) -> str:
    """roster's one ``host:port`` parser: a DNS name (lowercased), an IPv4 address, or a bracketed IPv6 address
    without a zone (short form); the port 1-65535 with leading zeros dropped. Raises ValueError saying what is
    wrong."""
    if value.startswith("["):
        inside, sep, after = value[1:].partition("]")
        if not sep:
            raise ValueError("has a '[' without its ']'")
        if not after.startswith(":"):
            raise ValueError("has no port" if not after else "has something other than :port after ']'")
        if "%" in inside:
            raise ValueError("has a zone-scoped IPv6 address")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"has [{_clip(inside)}], which is not an IPv6 address") from None
        # Rust's canonical text (RFC 5952), which roster stores: an IPv4-mapped address keeps its dotted tail.
        mapped = address.ipv4_mapped
        host = f"[::ffff:{mapped}]" if mapped is not None else f"[{address.compressed}]"
        port = after[1:]
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise ValueError("has no port")
        if ":" in host:
            raise ValueError("has an IPv6 address without brackets; write it as [addr]:port")
        _check_host(host)
        host = host.lower()
    return f"{host}:{_parse_port(port)}"


def _parse_port(port: str) -> int:
    if not port:
        raise ValueError("has no port after ':'")
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"has port {_clip(port)!r}, which is not a number; use 1-65535")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"has port {number}, which is out of range; use 1-65535")
    return number


def _check_host(host: str) -> None:
    if not host:
        raise ValueError("has no host before ':'")
    last = host.rsplit(".", 1)[-1]
    if last and last.isascii() and last.isdigit():
        # A name never ends in an all-numeric label, so this is meant as an IPv4 address (canonical form only).
        parts = host.split(".")
        if len(parts) != 4 or not all(
            p.isascii() and p.isdigit() and (p == "0" or not p.startswith("0")) and int(p) <= 255 for p in parts
        ):
            raise ValueError(f"has host {_clip(host)!r}, which is not an IPv4 address")
        return
    if len(host.encode()) > MAX_HOST_NAME_BYTES:
        raise ValueError(f"has a host name longer than {MAX_HOST_NAME_BYTES} bytes")
    for label in host.split("."):
        if not label:
            raise ValueError("has an empty label")
        if len(label.encode()) > MAX_DNS_LABEL_BYTES:
            raise ValueError(f"has a label longer than {MAX_DNS_LABEL_BYTES} bytes")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", label, re.ASCII):
            raise ValueError(f"has label {_clip(label)!r}, which holds a character other than a letter, digit, - or _")
        if label.startswith("-") or label.endswith("-"):
            raise ValueError(f"has label {_clip(label)!r}, which starts or ends with a hyphen")


def _is_normal_host_port(value: str) -> bool:
    """A lowercase DNS name or IPv4 address and a port without leading zeros: what the server sends."""
    host, sep, port = value.rpartition(":")
    if not sep or len(value.encode()) > MAX_ADDRESS_BYTES or not re.fullmatch(r"[a-z0-9.-]*", host, re.ASCII):
        return False
    if port.startswith("0") or not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        return False
    try:
        _check_host(host)
    except ValueError:
        return False
    return True


# RFC 3986 authority: [userinfo@]host[:port], host a reg-name (unreserved, sub-delims, %XX) or an IP literal.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%:-]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+):([0-9]+)")


def _dialable_authority(value: str) -> bool:
    """Whether ``value`` is a URI authority with a host and a non-zero port (the Rust follower's lenient rule)."""
    match = _AUTHORITY.fullmatch(value)
    return match is not None and 0 < int(match.group(2)) <= 65535
