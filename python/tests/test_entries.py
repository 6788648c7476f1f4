"""Snapshot entries are validated and normalised as roster's Rust follower does (src/domain.rs, Target::try_from
with the parse_accepted rules): the set in force, its digest and the state file depend on it."""

from __future__ import annotations

import pytest

from roster_client._proto.roster.v1 import feed_pb2, registry_pb2
from roster_client.entries import InvalidEntry, Producer

ID = "00000000-0000-4000-8000-000000000001"


def entry(**fields: object) -> feed_pb2.AssignedProducer:
    values = {"id": ID, "address": "10.0.0.1:9100", "interval_ms": 1000, **fields}
    return feed_pb2.AssignedProducer(**values)


@pytest.mark.parametrize(
    "address,stored",
    [
        ("10.0.0.1:9100", "10.0.0.1:9100"),
        ("Metrics.Example:080", "metrics.example:80"),  # names lowercased, leading zeros of the port dropped
        ("http://node_exporter:9100/", "node_exporter:9100"),
        ("[2001:DB8:0:0:0:0:0:1]:9100", "[2001:db8::1]:9100"),
        ("[::ffff:10.0.0.1]:9100", "[::ffff:10.0.0.1]:9100"),
        ("a..b:80", "a..b:80"),  # refused for new registrations, kept when a server sent it (an older rule's)
    ],
)
def test_addresses_are_kept_or_normalised(address: str, stored: str) -> None:
    assert Producer.from_pb(entry(address=address)).address == stored


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"address": "no port"}, "producers.address"),
        ({"address": "A..B:80"}, "producers.address"),
        ({"address": "[fe80::1%eth0]:80"}, "producers.address"),
        ({"address": "https://10.0.0.1:443"}, "producers.address"),
        ({"address": "10.0.0.1:0"}, "producers.address"),
        ({"interval_ms": 99}, "producers.interval_ms"),
        ({"interval_ms": 3_600_001}, "producers.interval_ms"),
        ({"id": "producer-3"}, "producers.id"),
        ({"id": "0000000000004000800000000000000-1"}, "producers.id"),
        ({"labels": {"1x": "a"}}, "producers.labels"),
        ({"labels": {"x": "v" * 257}}, "producers.labels"),
        ({"labels": {f"l{n}": "v" for n in range(33)}}, "producers.labels"),
        ({"kind": 7}, "producers.kind"),
        ({"prometheus": registry_pb2.PrometheusTarget()}, "producers.prometheus"),
        ({"kind": 2, "prometheus": registry_pb2.PrometheusTarget(scheme="ftp")}, "producers.prometheus.scheme"),
        ({"kind": 2, "prometheus": registry_pb2.PrometheusTarget(metrics_path="metrics")},
         "producers.prometheus.metrics_path"),
        ({"kind": 2, "prometheus": registry_pb2.PrometheusTarget(scrape_timeout_ms=1000)},
         "producers.prometheus.scrape_timeout_ms"),
    ],
)
def test_invalid_entries_are_refused_naming_the_field(fields: dict, field: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        Producer.from_pb(entry(**fields))
    assert str(caught.value).startswith(field), str(caught.value)


def test_ids_kinds_and_targets_are_normalised_as_roster_stores_them() -> None:
    braced = Producer.from_pb(entry(id="{00000000-0000-4000-8000-00000000000A}"))
    assert braced.id == "00000000-0000-4000-8000-00000000000a"
    assert Producer.from_pb(entry(id="00000000-0000-0000-0000-000000000000")).id.startswith("00000000")
    grpc_entry = Producer.from_pb(entry(kind=registry_pb2.PRODUCER_KIND_GRPC)).to_pb()
    assert grpc_entry.kind == 0 and not grpc_entry.HasField("prometheus"), "a gRPC entry is encoded as before kinds"
    prometheus = Producer.from_pb(entry(kind=2, prometheus=registry_pb2.PrometheusTarget(scheme="HTTPS"))).to_pb()
    assert (prometheus.kind, prometheus.prometheus.scheme, prometheus.prometheus.metrics_path) == (2, "https", "/metrics")
    assert not prometheus.prometheus.HasField("scrape_timeout_ms")
