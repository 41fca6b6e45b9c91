from saga.v1 import orchestrator_pb2 as _orchestrator_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SagaEventData(_message.Message):
    __slots__ = ("saga_id", "namespace", "saga_type", "saga_version", "correlation_id", "status", "step", "attempt", "error", "needs_intervention", "output", "output_included")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAGA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEEDS_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    namespace: str
    saga_type: str
    saga_version: int
    correlation_id: str
    status: _orchestrator_pb2.SagaStatus
    step: str
    attempt: int
    error: str
    needs_intervention: bool
    output: bytes
    output_included: bool
    def __init__(self, saga_id: _Optional[str] = ..., namespace: _Optional[str] = ..., saga_type: _Optional[str] = ..., saga_version: _Optional[int] = ..., correlation_id: _Optional[str] = ..., status: _Optional[_Union[_orchestrator_pb2.SagaStatus, str]] = ..., step: _Optional[str] = ..., attempt: _Optional[int] = ..., error: _Optional[str] = ..., needs_intervention: _Optional[bool] = ..., output: _Optional[bytes] = ..., output_included: _Optional[bool] = ...) -> None: ...
