import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventSinkKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_SINK_KIND_UNSPECIFIED: _ClassVar[EventSinkKind]
    EVENT_SINK_KIND_RABBITMQ: _ClassVar[EventSinkKind]
    EVENT_SINK_KIND_NATS: _ClassVar[EventSinkKind]
    EVENT_SINK_KIND_WEBHOOKS: _ClassVar[EventSinkKind]
EVENT_SINK_KIND_UNSPECIFIED: EventSinkKind
EVENT_SINK_KIND_RABBITMQ: EventSinkKind
EVENT_SINK_KIND_NATS: EventSinkKind
EVENT_SINK_KIND_WEBHOOKS: EventSinkKind

class ListEventSinksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EventSinkPartition(_message.Message):
    __slots__ = ("partition", "owner", "lease_expire_time")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    partition: int
    owner: str
    lease_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, partition: _Optional[int] = ..., owner: _Optional[str] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventSink(_message.Message):
    __slots__ = ("name", "configured", "kind", "target", "event_set", "saga_types", "include_payload", "partitions", "pending", "oldest_pending_time", "oldest_pending_age", "dead", "partition_owners")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    EVENT_SET_FIELD_NUMBER: _ClassVar[int]
    SAGA_TYPES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_TIME_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    PARTITION_OWNERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    configured: bool
    kind: EventSinkKind
    target: str
    event_set: str
    saga_types: _containers.RepeatedScalarFieldContainer[str]
    include_payload: bool
    partitions: int
    pending: int
    oldest_pending_time: _timestamp_pb2.Timestamp
    oldest_pending_age: _duration_pb2.Duration
    dead: int
    partition_owners: _containers.RepeatedCompositeFieldContainer[EventSinkPartition]
    def __init__(self, name: _Optional[str] = ..., configured: _Optional[bool] = ..., kind: _Optional[_Union[EventSinkKind, str]] = ..., target: _Optional[str] = ..., event_set: _Optional[str] = ..., saga_types: _Optional[_Iterable[str]] = ..., include_payload: _Optional[bool] = ..., partitions: _Optional[int] = ..., pending: _Optional[int] = ..., oldest_pending_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., oldest_pending_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead: _Optional[int] = ..., partition_owners: _Optional[_Iterable[_Union[EventSinkPartition, _Mapping]]] = ...) -> None: ...

class ListEventSinksResponse(_message.Message):
    __slots__ = ("sinks", "relay_replicas", "replica_id")
    SINKS_FIELD_NUMBER: _ClassVar[int]
    RELAY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    sinks: _containers.RepeatedCompositeFieldContainer[EventSink]
    relay_replicas: _containers.RepeatedScalarFieldContainer[str]
    replica_id: str
    def __init__(self, sinks: _Optional[_Iterable[_Union[EventSink, _Mapping]]] = ..., relay_replicas: _Optional[_Iterable[str]] = ..., replica_id: _Optional[str] = ...) -> None: ...

class ReplayEventsRequest(_message.Message):
    __slots__ = ("saga_id", "since_time", "sink", "limit", "page_token", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    since_time: _timestamp_pb2.Timestamp
    sink: str
    limit: int
    page_token: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sink: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ReplayEventsResponse(_message.Message):
    __slots__ = ("queued", "transitions", "next_page_token")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queued: int
    transitions: int
    next_page_token: str
    def __init__(self, queued: _Optional[int] = ..., transitions: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeadEvent(_message.Message):
    __slots__ = ("id", "sink", "event_id", "saga_id", "seq", "event_type", "attempts", "error", "create_time", "dead_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    id: int
    sink: str
    event_id: str
    saga_id: str
    seq: int
    event_type: str
    attempts: int
    error: str
    create_time: _timestamp_pb2.Timestamp
    dead_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., sink: _Optional[str] = ..., event_id: _Optional[str] = ..., saga_id: _Optional[str] = ..., seq: _Optional[int] = ..., event_type: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dead_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadEventsRequest(_message.Message):
    __slots__ = ("sink", "page_size", "page_token")
    SINK_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sink: str
    page_size: int
    page_token: str
    def __init__(self, sink: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeadEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DeadEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[DeadEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RequeueDeadEventsRequest(_message.Message):
    __slots__ = ("sink", "ids", "all")
    SINK_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    sink: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    def __init__(self, sink: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ...) -> None: ...

class RequeueDeadEventsResponse(_message.Message):
    __slots__ = ("requeued",)
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    def __init__(self, requeued: _Optional[int] = ...) -> None: ...
