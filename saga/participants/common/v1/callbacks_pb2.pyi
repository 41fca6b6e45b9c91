import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompleteStepRequest(_message.Message):
    __slots__ = ("token", "completion_id", "result")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    token: str
    completion_id: str
    result: _any_pb2.Any
    def __init__(self, token: _Optional[str] = ..., completion_id: _Optional[str] = ..., result: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class CompleteStepResponse(_message.Message):
    __slots__ = ("saga_id", "step")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    step: str
    def __init__(self, saga_id: _Optional[str] = ..., step: _Optional[str] = ...) -> None: ...

class FailStepRequest(_message.Message):
    __slots__ = ("token", "completion_id", "reason")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    token: str
    completion_id: str
    reason: str
    def __init__(self, token: _Optional[str] = ..., completion_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailStepResponse(_message.Message):
    __slots__ = ("saga_id", "step")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    step: str
    def __init__(self, saga_id: _Optional[str] = ..., step: _Optional[str] = ...) -> None: ...

class HeartbeatStepRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class HeartbeatStepResponse(_message.Message):
    __slots__ = ("cancel_requested", "wait_deadline")
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    WAIT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    cancel_requested: bool
    wait_deadline: _timestamp_pb2.Timestamp
    def __init__(self, cancel_requested: _Optional[bool] = ..., wait_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
