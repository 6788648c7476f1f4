from roster_client._proto.roster.v1 import registry_pb2 as _registry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("collector_id", "known_epoch", "known_generation", "observe_only", "instance_id", "supported_kinds", "known_digest")
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    KNOWN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_KINDS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    collector_id: str
    known_epoch: str
    known_generation: int
    observe_only: bool
    instance_id: str
    supported_kinds: _containers.RepeatedScalarFieldContainer[_registry_pb2.ProducerKind]
    known_digest: int
    def __init__(self, collector_id: _Optional[str] = ..., known_epoch: _Optional[str] = ..., known_generation: _Optional[int] = ..., observe_only: bool = ..., instance_id: _Optional[str] = ..., supported_kinds: _Optional[_Iterable[_Union[_registry_pb2.ProducerKind, str]]] = ..., known_digest: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("chunk", "in_sync", "heartbeat")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    chunk: SnapshotChunk
    in_sync: InSync
    heartbeat: Heartbeat
    def __init__(self, chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., in_sync: _Optional[_Union[InSync, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("epoch", "generation", "index", "producers", "complete", "chunk_count", "producer_count", "digest", "store_settling")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    STORE_SETTLING_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    generation: int
    index: int
    producers: _containers.RepeatedCompositeFieldContainer[AssignedProducer]
    complete: bool
    chunk_count: int
    producer_count: int
    digest: int
    store_settling: bool
    def __init__(self, epoch: _Optional[str] = ..., generation: _Optional[int] = ..., index: _Optional[int] = ..., producers: _Optional[_Iterable[_Union[AssignedProducer, _Mapping]]] = ..., complete: bool = ..., chunk_count: _Optional[int] = ..., producer_count: _Optional[int] = ..., digest: _Optional[int] = ..., store_settling: bool = ...) -> None: ...

class AssignedProducer(_message.Message):
    __slots__ = ("id", "address", "interval_ms", "labels", "kind", "prometheus")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    interval_ms: int
    labels: _containers.ScalarMap[str, str]
    kind: _registry_pb2.ProducerKind
    prometheus: _registry_pb2.PrometheusTarget
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., interval_ms: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., kind: _Optional[_Union[_registry_pb2.ProducerKind, str]] = ..., prometheus: _Optional[_Union[_registry_pb2.PrometheusTarget, _Mapping]] = ...) -> None: ...

class InSync(_message.Message):
    __slots__ = ("epoch", "generation")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    generation: int
    def __init__(self, epoch: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("epoch", "generation")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    generation: int
    def __init__(self, epoch: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class ReportAppliedRequest(_message.Message):
    __slots__ = ("collector_id", "epoch", "generation", "outcome", "reason")
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    collector_id: str
    epoch: str
    generation: int
    outcome: _registry_pb2.ApplyOutcome
    reason: str
    def __init__(self, collector_id: _Optional[str] = ..., epoch: _Optional[str] = ..., generation: _Optional[int] = ..., outcome: _Optional[_Union[_registry_pb2.ApplyOutcome, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportAppliedResponse(_message.Message):
    __slots__ = ("current",)
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    current: bool
    def __init__(self, current: bool = ...) -> None: ...
