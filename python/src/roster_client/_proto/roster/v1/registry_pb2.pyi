from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProducerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRODUCER_KIND_UNSPECIFIED: _ClassVar[ProducerKind]
    PRODUCER_KIND_GRPC: _ClassVar[ProducerKind]
    PRODUCER_KIND_PROMETHEUS: _ClassVar[ProducerKind]

class CollectorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTOR_STATE_UNSPECIFIED: _ClassVar[CollectorState]
    COLLECTOR_STATE_LIVE: _ClassVar[CollectorState]
    COLLECTOR_STATE_GRACE: _ClassVar[CollectorState]
    COLLECTOR_STATE_DEPARTED: _ClassVar[CollectorState]

class ApplyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPLY_OUTCOME_UNSPECIFIED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_APPLIED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_REJECTED: _ClassVar[ApplyOutcome]
PRODUCER_KIND_UNSPECIFIED: ProducerKind
PRODUCER_KIND_GRPC: ProducerKind
PRODUCER_KIND_PROMETHEUS: ProducerKind
COLLECTOR_STATE_UNSPECIFIED: CollectorState
COLLECTOR_STATE_LIVE: CollectorState
COLLECTOR_STATE_GRACE: CollectorState
COLLECTOR_STATE_DEPARTED: CollectorState
APPLY_OUTCOME_UNSPECIFIED: ApplyOutcome
APPLY_OUTCOME_APPLIED: ApplyOutcome
APPLY_OUTCOME_REJECTED: ApplyOutcome

class RegisterProducerRequest(_message.Message):
    __slots__ = ("producer_id", "address", "interval_ms", "labels", "pinned_collector_id", "lease_ms", "kind", "prometheus")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PINNED_COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    address: str
    interval_ms: int
    labels: _containers.ScalarMap[str, str]
    pinned_collector_id: str
    lease_ms: int
    kind: ProducerKind
    prometheus: PrometheusTarget
    def __init__(self, producer_id: _Optional[str] = ..., address: _Optional[str] = ..., interval_ms: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., pinned_collector_id: _Optional[str] = ..., lease_ms: _Optional[int] = ..., kind: _Optional[_Union[ProducerKind, str]] = ..., prometheus: _Optional[_Union[PrometheusTarget, _Mapping]] = ...) -> None: ...

class PrometheusTarget(_message.Message):
    __slots__ = ("scheme", "metrics_path", "scrape_timeout_ms")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    METRICS_PATH_FIELD_NUMBER: _ClassVar[int]
    SCRAPE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    scheme: str
    metrics_path: str
    scrape_timeout_ms: int
    def __init__(self, scheme: _Optional[str] = ..., metrics_path: _Optional[str] = ..., scrape_timeout_ms: _Optional[int] = ...) -> None: ...

class RegisterProducerResponse(_message.Message):
    __slots__ = ("producer", "renew_interval_ms", "created")
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    RENEW_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    producer: ProducerInfo
    renew_interval_ms: int
    created: bool
    def __init__(self, producer: _Optional[_Union[ProducerInfo, _Mapping]] = ..., renew_interval_ms: _Optional[int] = ..., created: bool = ...) -> None: ...

class DeregisterProducerRequest(_message.Message):
    __slots__ = ("producer_id",)
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    def __init__(self, producer_id: _Optional[str] = ...) -> None: ...

class DeregisterProducerResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: bool = ...) -> None: ...

class GetProducerRequest(_message.Message):
    __slots__ = ("producer_id",)
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    def __init__(self, producer_id: _Optional[str] = ...) -> None: ...

class ListProducersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collector_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collector_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collector_id: _Optional[str] = ...) -> None: ...

class ListProducersResponse(_message.Message):
    __slots__ = ("producers", "next_page_token", "total_count")
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    producers: _containers.RepeatedCompositeFieldContainer[ProducerInfo]
    next_page_token: str
    total_count: int
    def __init__(self, producers: _Optional[_Iterable[_Union[ProducerInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class ProducerInfo(_message.Message):
    __slots__ = ("id", "address", "interval_ms", "labels", "pinned_collector_id", "assigned_collector_id", "lease_ms", "lease_expires_at_unix_ms", "registered_at_unix_ms", "operator_pinned_collector_id", "registrant_pinned_collector_id", "kind", "prometheus")
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
    PINNED_COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_PINNED_COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRANT_PINNED_COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    interval_ms: int
    labels: _containers.ScalarMap[str, str]
    pinned_collector_id: str
    assigned_collector_id: str
    lease_ms: int
    lease_expires_at_unix_ms: int
    registered_at_unix_ms: int
    operator_pinned_collector_id: str
    registrant_pinned_collector_id: str
    kind: ProducerKind
    prometheus: PrometheusTarget
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., interval_ms: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., pinned_collector_id: _Optional[str] = ..., assigned_collector_id: _Optional[str] = ..., lease_ms: _Optional[int] = ..., lease_expires_at_unix_ms: _Optional[int] = ..., registered_at_unix_ms: _Optional[int] = ..., operator_pinned_collector_id: _Optional[str] = ..., registrant_pinned_collector_id: _Optional[str] = ..., kind: _Optional[_Union[ProducerKind, str]] = ..., prometheus: _Optional[_Union[PrometheusTarget, _Mapping]] = ...) -> None: ...

class SetProducerPinRequest(_message.Message):
    __slots__ = ("producer_id", "collector_id")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    collector_id: str
    def __init__(self, producer_id: _Optional[str] = ..., collector_id: _Optional[str] = ...) -> None: ...

class SetProducerPinResponse(_message.Message):
    __slots__ = ("producer", "changed")
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    producer: ProducerInfo
    changed: bool
    def __init__(self, producer: _Optional[_Union[ProducerInfo, _Mapping]] = ..., changed: bool = ...) -> None: ...

class ListCollectorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectorsResponse(_message.Message):
    __slots__ = ("collectors",)
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    collectors: _containers.RepeatedCompositeFieldContainer[CollectorInfo]
    def __init__(self, collectors: _Optional[_Iterable[_Union[CollectorInfo, _Mapping]]] = ...) -> None: ...

class CollectorInfo(_message.Message):
    __slots__ = ("id", "state", "open_streams", "grace_ends_at_unix_ms", "assigned_count", "generation", "reported_generation", "reported_outcome", "reported_reason", "reported_at_unix_ms", "converged", "instances", "conflict", "conflict_at_unix_ms", "departed_at_unix_ms", "forget_at_unix_ms", "supported_kinds")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    GRACE_ENDS_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_COUNT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REPORTED_REASON_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DEPARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FORGET_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_KINDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: CollectorState
    open_streams: int
    grace_ends_at_unix_ms: int
    assigned_count: int
    generation: int
    reported_generation: int
    reported_outcome: ApplyOutcome
    reported_reason: str
    reported_at_unix_ms: int
    converged: bool
    instances: int
    conflict: str
    conflict_at_unix_ms: int
    departed_at_unix_ms: int
    forget_at_unix_ms: int
    supported_kinds: _containers.RepeatedScalarFieldContainer[ProducerKind]
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[CollectorState, str]] = ..., open_streams: _Optional[int] = ..., grace_ends_at_unix_ms: _Optional[int] = ..., assigned_count: _Optional[int] = ..., generation: _Optional[int] = ..., reported_generation: _Optional[int] = ..., reported_outcome: _Optional[_Union[ApplyOutcome, str]] = ..., reported_reason: _Optional[str] = ..., reported_at_unix_ms: _Optional[int] = ..., converged: bool = ..., instances: _Optional[int] = ..., conflict: _Optional[str] = ..., conflict_at_unix_ms: _Optional[int] = ..., departed_at_unix_ms: _Optional[int] = ..., forget_at_unix_ms: _Optional[int] = ..., supported_kinds: _Optional[_Iterable[_Union[ProducerKind, str]]] = ...) -> None: ...

class ForgetCollectorRequest(_message.Message):
    __slots__ = ("collector_id",)
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    collector_id: str
    def __init__(self, collector_id: _Optional[str] = ...) -> None: ...

class ForgetCollectorResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: bool = ...) -> None: ...
