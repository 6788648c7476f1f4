"""OpenTelemetry (the optional ``otel`` extra): each call is a span, each attempt a child span with its number,
and each attempt's trace context travels in its request metadata."""

from __future__ import annotations

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from roster_client._proto.roster.v1 import registry_pb2_grpc
from roster_client.client import RosterClient

from .fakes import FlakyRegistry, serve


def test_a_call_is_a_span_and_each_attempt_a_child_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    registry = FlakyRegistry([grpc.StatusCode.UNAVAILABLE])
    server, port = serve(lambda s: registry_pb2_grpc.add_RegistryServicer_to_server(registry, s))
    try:
        with RosterClient(f"http://127.0.0.1:{port}") as client:
            client.list_collectors()
    finally:
        server.stop(grace=None)
    spans = exporter.get_finished_spans()
    call = [s for s in spans if s.name == "roster.v1.Registry/ListCollectors"]
    attempts = [s for s in spans if s.name == "roster.v1.Registry/ListCollectors attempt"]
    assert len(call) == 1 and call[0].attributes["roster.attempts"] == 2
    assert [a.attributes["roster.attempt"] for a in attempts] == [1, 2]
    assert all(a.parent is not None and a.parent.span_id == call[0].context.span_id for a in attempts)
    request_id = call[0].attributes["roster.request_id"]
    assert [c["x-request-id"] for c in registry.calls] == [request_id, request_id]
    # W3C traceparent: version-trace id-parent span id-flags; the server's parent is the attempt's span.
    sent = [c["traceparent"].split("-") for c in registry.calls]
    assert [p[1] for p in sent] == [format(call[0].context.trace_id, "032x")] * 2
    assert [p[2] for p in sent] == [format(a.context.span_id, "016x") for a in attempts]
