from roster_client._proto.roster.v1 import feed_pb2 as _feed_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("collector_id", "endpoint", "connected", "connected_changed_at_unix_ms", "applied_epoch", "applied_generation", "applied_at_unix_ms", "applied_producer_count", "last_contact_unix_ms", "reconnects", "discards", "held_reason", "samples_written", "samples_dropped", "sink_error", "producers", "next_page_token", "persist_error", "persist_failures", "persisted_generation", "instance_id", "feed_refused", "persisted_snapshots", "sinks")
    class DiscardsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_CHANGED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    APPLIED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PRODUCER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    DISCARDS_FIELD_NUMBER: _ClassVar[int]
    HELD_REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SINK_ERROR_FIELD_NUMBER: _ClassVar[int]
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PERSIST_ERROR_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FAILURES_FIELD_NUMBER: _ClassVar[int]
    PERSISTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FEED_REFUSED_FIELD_NUMBER: _ClassVar[int]
    PERSISTED_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    SINKS_FIELD_NUMBER: _ClassVar[int]
    collector_id: str
    endpoint: str
    connected: bool
    connected_changed_at_unix_ms: int
    applied_epoch: str
    applied_generation: int
    applied_at_unix_ms: int
    applied_producer_count: int
    last_contact_unix_ms: int
    reconnects: int
    discards: _containers.ScalarMap[str, int]
    held_reason: str
    samples_written: int
    samples_dropped: int
    sink_error: str
    producers: _containers.RepeatedCompositeFieldContainer[ProducerStatus]
    next_page_token: str
    persist_error: str
    persist_failures: int
    persisted_generation: int
    instance_id: str
    feed_refused: str
    persisted_snapshots: int
    sinks: _containers.RepeatedCompositeFieldContainer[SinkStatus]
    def __init__(self, collector_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., connected: bool = ..., connected_changed_at_unix_ms: _Optional[int] = ..., applied_epoch: _Optional[str] = ..., applied_generation: _Optional[int] = ..., applied_at_unix_ms: _Optional[int] = ..., applied_producer_count: _Optional[int] = ..., last_contact_unix_ms: _Optional[int] = ..., reconnects: _Optional[int] = ..., discards: _Optional[_Mapping[str, int]] = ..., held_reason: _Optional[str] = ..., samples_written: _Optional[int] = ..., samples_dropped: _Optional[int] = ..., sink_error: _Optional[str] = ..., producers: _Optional[_Iterable[_Union[ProducerStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., persist_error: _Optional[str] = ..., persist_failures: _Optional[int] = ..., persisted_generation: _Optional[int] = ..., instance_id: _Optional[str] = ..., feed_refused: _Optional[str] = ..., persisted_snapshots: _Optional[int] = ..., sinks: _Optional[_Iterable[_Union[SinkStatus, _Mapping]]] = ...) -> None: ...

class SinkStatus(_message.Message):
    __slots__ = ("kind", "destination", "samples_written", "samples_dropped", "last_error", "samples_sent", "requests_retried", "samples_discarded", "queue_bytes", "queue_samples", "oldest_queued_sample_unix_ms", "healthy", "receiver_error")
    class SamplesDiscardedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_RETRIED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_DISCARDED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    OLDEST_QUEUED_SAMPLE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    destination: str
    samples_written: int
    samples_dropped: int
    last_error: str
    samples_sent: int
    requests_retried: int
    samples_discarded: _containers.ScalarMap[str, int]
    queue_bytes: int
    queue_samples: int
    oldest_queued_sample_unix_ms: int
    healthy: bool
    receiver_error: str
    def __init__(self, kind: _Optional[str] = ..., destination: _Optional[str] = ..., samples_written: _Optional[int] = ..., samples_dropped: _Optional[int] = ..., last_error: _Optional[str] = ..., samples_sent: _Optional[int] = ..., requests_retried: _Optional[int] = ..., samples_discarded: _Optional[_Mapping[str, int]] = ..., queue_bytes: _Optional[int] = ..., queue_samples: _Optional[int] = ..., oldest_queued_sample_unix_ms: _Optional[int] = ..., healthy: bool = ..., receiver_error: _Optional[str] = ...) -> None: ...

class ProducerStatus(_message.Message):
    __slots__ = ("id", "address", "interval_ms", "collections", "failures", "last_success_unix_ms", "last_failure_unix_ms", "last_error", "skipped_ticks", "task_incarnation", "own_stalls")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_TICKS_FIELD_NUMBER: _ClassVar[int]
    TASK_INCARNATION_FIELD_NUMBER: _ClassVar[int]
    OWN_STALLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    interval_ms: int
    collections: int
    failures: int
    last_success_unix_ms: int
    last_failure_unix_ms: int
    last_error: str
    skipped_ticks: int
    task_incarnation: int
    own_stalls: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., interval_ms: _Optional[int] = ..., collections: _Optional[int] = ..., failures: _Optional[int] = ..., last_success_unix_ms: _Optional[int] = ..., last_failure_unix_ms: _Optional[int] = ..., last_error: _Optional[str] = ..., skipped_ticks: _Optional[int] = ..., task_incarnation: _Optional[int] = ..., own_stalls: _Optional[int] = ...) -> None: ...

class PersistedSnapshot(_message.Message):
    __slots__ = ("epoch", "generation", "producers", "applied_at_unix_ms", "store_settling", "carried_ids")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STORE_SETTLING_FIELD_NUMBER: _ClassVar[int]
    CARRIED_IDS_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    generation: int
    producers: _containers.RepeatedCompositeFieldContainer[_feed_pb2.AssignedProducer]
    applied_at_unix_ms: int
    store_settling: bool
    carried_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, epoch: _Optional[str] = ..., generation: _Optional[int] = ..., producers: _Optional[_Iterable[_Union[_feed_pb2.AssignedProducer, _Mapping]]] = ..., applied_at_unix_ms: _Optional[int] = ..., store_settling: bool = ..., carried_ids: _Optional[_Iterable[str]] = ...) -> None: ...
