"""RosterClient and AsyncRosterClient: every call of roster's Registry (and the feed's ReportApplied), with the
retry rules R1–R5 built in (see :mod:`roster_client.retry`).

Both return the generated messages (``roster_client.pb.registry_pb2``) and raise :class:`RosterCallError` when a
call fails for good. Mutations are idempotent on the server (R1: client-chosen ids, upserts, deletes that succeed
on absent ids), which is what makes retrying them safe.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, AsyncIterator, Dict, Iterator, Mapping, Optional, Tuple, Type, TypeVar

import grpc
import grpc.aio

from . import defaults
from ._proto.roster.v1 import feed_pb2, feed_pb2_grpc, registry_pb2, registry_pb2_grpc
from .connection import Connection, PathLike
from .errors import TRANSIENT_CODES
from .retry import CallState, ChannelSlot, RetryPolicy

B = TypeVar("B", bound="_Base")

# method name -> (stub class, the call's full name for logs and spans)
_METHODS: Dict[str, Tuple[Any, str]] = {
    **{
        m: (registry_pb2_grpc.RegistryStub, f"roster.v1.Registry/{m}")
        for m in (
            "RegisterProducer",
            "DeregisterProducer",
            "GetProducer",
            "ListProducers",
            "ListCollectors",
            "SetProducerPin",
            "ForgetCollector",
        )
    },
    "ReportApplied": (feed_pb2_grpc.AssignmentFeedStub, "roster.v1.AssignmentFeed/ReportApplied"),
}

_KINDS = {
    None: registry_pb2.PRODUCER_KIND_UNSPECIFIED,
    "grpc": registry_pb2.PRODUCER_KIND_GRPC,
    "prometheus": registry_pb2.PRODUCER_KIND_PROMETHEUS,
}


def register_request(
    producer_id: str,
    address: str,
    interval_ms: int,
    labels: Optional[Mapping[str, str]] = None,
    *,
    lease_ms: Optional[int] = None,
    pinned_collector_id: str = "",
    kind: Optional[str] = None,
    prometheus: Optional[registry_pb2.PrometheusTarget] = None,
) -> registry_pb2.RegisterProducerRequest:
    """A RegisterProducer request; ``kind`` is ``"grpc"``, ``"prometheus"`` or None (the server's: gRPC)."""
    if kind not in _KINDS:
        raise ValueError(f"kind {kind!r} is not a producer kind; use 'grpc' or 'prometheus'")
    request = registry_pb2.RegisterProducerRequest(
        producer_id=producer_id,
        address=address,
        interval_ms=interval_ms,
        labels=dict(labels or {}),
        pinned_collector_id=pinned_collector_id,
        kind=_KINDS[kind],
    )
    if lease_ms is not None:
        request.lease_ms = lease_ms
    if prometheus is not None:
        request.prometheus.CopyFrom(prometheus)
    return request


def list_producers_request(
    collector_id: str = "", page_size: Optional[int] = None, page_token: str = ""
) -> registry_pb2.ListProducersRequest:
    request = registry_pb2.ListProducersRequest(collector_id=collector_id, page_token=page_token)
    if page_size is not None:
        request.page_size = page_size
    return request


def report_request(
    collector_id: str, epoch: str, generation: int, rejected_reason: Optional[str] = None
) -> feed_pb2.ReportAppliedRequest:
    return feed_pb2.ReportAppliedRequest(
        collector_id=collector_id,
        epoch=epoch,
        generation=generation,
        outcome=registry_pb2.APPLY_OUTCOME_APPLIED if rejected_reason is None else registry_pb2.APPLY_OUTCOME_REJECTED,
        reason=rejected_reason or "",
    )


class _Base:
    def __init__(
        self,
        target: str,
        *,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        token_file: Optional[PathLike] = None,
        max_attempts: int = defaults.MAX_ATTEMPTS,
        attempt_timeout_s: float = defaults.ATTEMPT_TIMEOUT_S,
        retry_initial_s: float = defaults.RETRY_INITIAL_S,
        retry_cap_s: float = defaults.RETRY_CAP_S,
        retry_jitter: float = defaults.RETRY_JITTER,
    ) -> None:
        self.connection = Connection.make(target, tls_ca, tls_cert, tls_key, token_file)
        self.policy = RetryPolicy(max_attempts, retry_initial_s, retry_cap_s, retry_jitter, attempt_timeout_s)
        self._slot: ChannelSlot[Any] = ChannelSlot()

    @property
    def target(self) -> str:
        return self.connection.endpoint.url

    @classmethod
    def from_env(cls: Type[B], **settings: Any) -> B:
        """A client set up as the CLI would be from its environment: ROSTER_SERVER (default
        ``defaults.SERVER``), ROSTER_TLS_CA, ROSTER_TLS_CERT, ROSTER_TLS_KEY and ROSTER_TOKEN_FILE; ``settings``
        given here win."""
        found = {k: os.environ[v] for k, v in defaults.ENVIRONMENT.items() if os.environ.get(v)}
        merged = {**found, **settings}
        return cls(merged.pop("target", defaults.SERVER), **merged)


class RosterClient(_Base):
    """A blocking client of one roster server. Thread-safe; close it (or use ``with``) to release its channel.

    ``target`` is ``http://host:port``, or ``https://host:port`` with ``tls_ca`` (and ``tls_cert``/``tls_key``
    for mutual TLS). ``token_file`` holds a bearer token. Retries: see :class:`roster_client.retry.RetryPolicy`;
    the defaults are in :mod:`roster_client.defaults`.
    """

    def __enter__(self) -> RosterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        channel = self._slot.take_all()
        if channel is not None:
            channel.close()

    def _call(self, method: str, request: Any) -> Any:
        stub_class, name = _METHODS[method]
        with CallState(name, self.policy, self.connection.metadata()) as state:
            while True:
                channel = self._slot.acquire(self.connection.channel)
                code: Optional[grpc.StatusCode] = None
                try:
                    with state.attempt() as metadata:
                        response = getattr(stub_class(channel), method)(
                            request, timeout=self.policy.attempt_timeout_s, metadata=metadata, wait_for_ready=False
                        )
                except grpc.RpcError as e:
                    code, details = e.code(), e.details() or ""
                finally:
                    if self._slot.release(channel, failed=code in TRANSIENT_CODES):
                        channel.close()
                if code is None:
                    state.succeeded()
                    return response
                start = state.failed(code, details)
                time.sleep(max(0.0, start - time.monotonic()))

    def register_producer(self, producer_id: str, address: str, interval_ms: int,
                          labels: Optional[Mapping[str, str]] = None, **fields: Any
                          ) -> registry_pb2.RegisterProducerResponse:
        """Registers or renews a producer (an upsert by id; renew every ``renew_interval_ms``). ``fields``:
        ``lease_ms``, ``pinned_collector_id``, ``kind`` ('grpc' or 'prometheus'), ``prometheus``."""
        return self._call("RegisterProducer", register_request(producer_id, address, interval_ms, labels, **fields))

    def deregister_producer(self, producer_id: str) -> registry_pb2.DeregisterProducerResponse:
        """Removes a producer; succeeds with ``existed`` False when it was not registered."""
        return self._call("DeregisterProducer", registry_pb2.DeregisterProducerRequest(producer_id=producer_id))

    def get_producer(self, producer_id: str) -> registry_pb2.ProducerInfo:
        """One producer; NOT_FOUND (a RosterCallError, not retried) when it is not registered."""
        return self._call("GetProducer", registry_pb2.GetProducerRequest(producer_id=producer_id))

    def list_producers(self, collector_id: str = "", page_size: Optional[int] = None,
                       page_token: str = "") -> registry_pb2.ListProducersResponse:
        """One page of producers; follow ``next_page_token`` until it is empty, or use :meth:`iter_producers`."""
        return self._call("ListProducers", list_producers_request(collector_id, page_size, page_token))

    def iter_producers(self, collector_id: str = "", page_size: Optional[int] = None
                       ) -> Iterator[registry_pb2.ProducerInfo]:
        """Every producer (of one collector, if given), following every page; each page is its own call."""
        token = ""
        while True:
            page = self.list_producers(collector_id, page_size, token)
            yield from page.producers
            token = page.next_page_token
            if not token:
                return

    def list_collectors(self) -> registry_pb2.ListCollectorsResponse:
        return self._call("ListCollectors", registry_pb2.ListCollectorsRequest())

    def set_producer_pin(self, producer_id: str, collector_id: str) -> registry_pb2.SetProducerPinResponse:
        """Sets the operator pin (an empty ``collector_id`` clears it)."""
        return self._call(
            "SetProducerPin", registry_pb2.SetProducerPinRequest(producer_id=producer_id, collector_id=collector_id)
        )

    def forget_collector(self, collector_id: str) -> registry_pb2.ForgetCollectorResponse:
        return self._call("ForgetCollector", registry_pb2.ForgetCollectorRequest(collector_id=collector_id))

    def report_applied(self, collector_id: str, epoch: str, generation: int,
                       rejected_reason: Optional[str] = None) -> feed_pb2.ReportAppliedResponse:
        """C4: reports a generation applied, or rejected with a reason."""
        return self._call("ReportApplied", report_request(collector_id, epoch, generation, rejected_reason))


class AsyncRosterClient(_Base):
    """The asyncio twin of :class:`RosterClient` (grpc.aio): the same methods, awaited."""

    async def __aenter__(self) -> AsyncRosterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channel = self._slot.take_all()
        if channel is not None:
            await channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        stub_class, name = _METHODS[method]
        with CallState(name, self.policy, self.connection.metadata()) as state:
            while True:
                channel = self._slot.acquire(self.connection.aio_channel)
                code: Optional[grpc.StatusCode] = None
                try:
                    with state.attempt() as metadata:
                        response = await getattr(stub_class(channel), method)(
                            request, timeout=self.policy.attempt_timeout_s, metadata=metadata, wait_for_ready=False
                        )
                except grpc.RpcError as e:
                    code, details = e.code(), e.details() or ""
                finally:
                    if self._slot.release(channel, failed=code in TRANSIENT_CODES):
                        await channel.close()
                if code is None:
                    state.succeeded()
                    return response
                start = state.failed(code, details)
                await asyncio.sleep(max(0.0, start - time.monotonic()))

    async def register_producer(self, producer_id: str, address: str, interval_ms: int,
                                labels: Optional[Mapping[str, str]] = None, **fields: Any
                                ) -> registry_pb2.RegisterProducerResponse:
        return await self._call(
            "RegisterProducer", register_request(producer_id, address, interval_ms, labels, **fields)
        )

    async def deregister_producer(self, producer_id: str) -> registry_pb2.DeregisterProducerResponse:
        return await self._call(
            "DeregisterProducer", registry_pb2.DeregisterProducerRequest(producer_id=producer_id)
        )

    async def get_producer(self, producer_id: str) -> registry_pb2.ProducerInfo:
        return await self._call("GetProducer", registry_pb2.GetProducerRequest(producer_id=producer_id))

    async def list_producers(self, collector_id: str = "", page_size: Optional[int] = None,
                             page_token: str = "") -> registry_pb2.ListProducersResponse:
        return await self._call("ListProducers", list_producers_request(collector_id, page_size, page_token))

    async def iter_producers(self, collector_id: str = "", page_size: Optional[int] = None
                             ) -> AsyncIterator[registry_pb2.ProducerInfo]:
        token = ""
        while True:
            page = await self.list_producers(collector_id, page_size, token)
            for producer in page.producers:
                yield producer
            token = page.next_page_token
            if not token:
                return

    async def list_collectors(self) -> registry_pb2.ListCollectorsResponse:
        return await self._call("ListCollectors", registry_pb2.ListCollectorsRequest())

    async def set_producer_pin(self, producer_id: str, collector_id: str) -> registry_pb2.SetProducerPinResponse:
        return await self._call(
            "SetProducerPin", registry_pb2.SetProducerPinRequest(producer_id=producer_id, collector_id=collector_id)
        )

    async def forget_collector(self, collector_id: str) -> registry_pb2.ForgetCollectorResponse:
        return await self._call("ForgetCollector", registry_pb2.ForgetCollectorRequest(collector_id=collector_id))

    async def report_applied(self, collector_id: str, epoch: str, generation: int,
                             rejected_reason: Optional[str] = None) -> feed_pb2.ReportAppliedResponse:
        return await self._call("ReportApplied", report_request(collector_id, epoch, generation, rejected_reason))
