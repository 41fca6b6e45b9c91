import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(_message.Message):
    __slots__ = ("saga_id", "saga_type", "step", "namespace", "correlation_id", "waiting_since", "wait_deadline", "result_type")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    WAITING_SINCE_FIELD_NUMBER: _ClassVar[int]
    WAIT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    saga_type: str
    step: str
    namespace: str
    correlation_id: str
    waiting_since: _timestamp_pb2.Timestamp
    wait_deadline: _timestamp_pb2.Timestamp
    result_type: str
    def __init__(self, saga_id: _Optional[str] = ..., saga_type: _Optional[str] = ..., step: _Optional[str] = ..., namespace: _Optional[str] = ..., correlation_id: _Optional[str] = ..., waiting_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wait_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result_type: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "namespace")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    namespace: str
    def __init__(self, page_size: _Optional[int] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("saga_id", "step", "result_json", "reason", "requested_by", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    step: str
    result_json: str
    reason: str
    requested_by: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., step: _Optional[str] = ..., result_json: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RejectTaskRequest(_message.Message):
    __slots__ = ("saga_id", "step", "reason", "requested_by", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    step: str
    reason: str
    requested_by: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., step: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class RejectTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
