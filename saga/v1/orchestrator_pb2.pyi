import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransitionEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSITION_EVENT_UNSPECIFIED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_STARTED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_STARTED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_RETRY_SCHEDULED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_COMPLETED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_FAILED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_COMPENSATION_STARTED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_COMPENSATION_RETRY_SCHEDULED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_COMPENSATION_COMPLETED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_COMPENSATION_FAILED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_COMPENSATING: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_COMPLETED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_FAILED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_HALTED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_ABORTED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_DEADLINE_PASSED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_SAGA_RETRIED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_RESOLVED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCKS_WAITING: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCKS_ACQUIRED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCK_WAIT_EXPIRED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCKS_REFUSED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCKS_RELEASED: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_LOCK_BROKEN: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_NOTHING_TO_UNDO: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_WAITING: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_TIMED_OUT: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_STEP_COMPLETED_LATE: _ClassVar[TransitionEvent]
    TRANSITION_EVENT_EVENT_ANOMALY: _ClassVar[TransitionEvent]

class SagaStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_STATUS_UNSPECIFIED: _ClassVar[SagaStatus]
    SAGA_STATUS_RUNNING: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPENSATING: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPLETED: _ClassVar[SagaStatus]
    SAGA_STATUS_FAILED: _ClassVar[SagaStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_STARTED: _ClassVar[StepStatus]
    STEP_STATUS_COMPLETED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATING: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATION_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_NOTHING_TO_UNDO: _ClassVar[StepStatus]
    STEP_STATUS_WAITING: _ClassVar[StepStatus]

class SagaView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_VIEW_UNSPECIFIED: _ClassVar[SagaView]
    SAGA_VIEW_BASIC: _ClassVar[SagaView]
    SAGA_VIEW_FULL: _ClassVar[SagaView]
TRANSITION_EVENT_UNSPECIFIED: TransitionEvent
TRANSITION_EVENT_SAGA_STARTED: TransitionEvent
TRANSITION_EVENT_STEP_STARTED: TransitionEvent
TRANSITION_EVENT_STEP_RETRY_SCHEDULED: TransitionEvent
TRANSITION_EVENT_STEP_COMPLETED: TransitionEvent
TRANSITION_EVENT_STEP_FAILED: TransitionEvent
TRANSITION_EVENT_COMPENSATION_STARTED: TransitionEvent
TRANSITION_EVENT_COMPENSATION_RETRY_SCHEDULED: TransitionEvent
TRANSITION_EVENT_COMPENSATION_COMPLETED: TransitionEvent
TRANSITION_EVENT_COMPENSATION_FAILED: TransitionEvent
TRANSITION_EVENT_SAGA_COMPENSATING: TransitionEvent
TRANSITION_EVENT_SAGA_COMPLETED: TransitionEvent
TRANSITION_EVENT_SAGA_FAILED: TransitionEvent
TRANSITION_EVENT_SAGA_HALTED: TransitionEvent
TRANSITION_EVENT_SAGA_ABORTED: TransitionEvent
TRANSITION_EVENT_SAGA_DEADLINE_PASSED: TransitionEvent
TRANSITION_EVENT_SAGA_RETRIED: TransitionEvent
TRANSITION_EVENT_STEP_RESOLVED: TransitionEvent
TRANSITION_EVENT_LOCKS_WAITING: TransitionEvent
TRANSITION_EVENT_LOCKS_ACQUIRED: TransitionEvent
TRANSITION_EVENT_LOCK_WAIT_EXPIRED: TransitionEvent
TRANSITION_EVENT_LOCKS_REFUSED: TransitionEvent
TRANSITION_EVENT_LOCKS_RELEASED: TransitionEvent
TRANSITION_EVENT_LOCK_BROKEN: TransitionEvent
TRANSITION_EVENT_STEP_NOTHING_TO_UNDO: TransitionEvent
TRANSITION_EVENT_STEP_WAITING: TransitionEvent
TRANSITION_EVENT_STEP_TIMED_OUT: TransitionEvent
TRANSITION_EVENT_STEP_COMPLETED_LATE: TransitionEvent
TRANSITION_EVENT_EVENT_ANOMALY: TransitionEvent
SAGA_STATUS_UNSPECIFIED: SagaStatus
SAGA_STATUS_RUNNING: SagaStatus
SAGA_STATUS_COMPENSATING: SagaStatus
SAGA_STATUS_COMPLETED: SagaStatus
SAGA_STATUS_FAILED: SagaStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_STARTED: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_COMPENSATING: StepStatus
STEP_STATUS_COMPENSATED: StepStatus
STEP_STATUS_COMPENSATION_FAILED: StepStatus
STEP_STATUS_NOTHING_TO_UNDO: StepStatus
STEP_STATUS_WAITING: StepStatus
SAGA_VIEW_UNSPECIFIED: SagaView
SAGA_VIEW_BASIC: SagaView
SAGA_VIEW_FULL: SagaView

class StartSagaRequest(_message.Message):
    __slots__ = ("saga_type", "correlation_id", "payload", "input", "idempotency_key", "namespace", "completion_webhook_url")
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    saga_type: str
    correlation_id: str
    payload: _struct_pb2.Struct
    input: _any_pb2.Any
    idempotency_key: str
    namespace: str
    completion_webhook_url: str
    def __init__(self, saga_type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., input: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., namespace: _Optional[str] = ..., completion_webhook_url: _Optional[str] = ...) -> None: ...

class StartSagaResponse(_message.Message):
    __slots__ = ("saga_id", "status", "created")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    status: SagaStatus
    created: bool
    def __init__(self, saga_id: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., created: _Optional[bool] = ...) -> None: ...

class ExecuteSagaRequest(_message.Message):
    __slots__ = ("start",)
    START_FIELD_NUMBER: _ClassVar[int]
    start: StartSagaRequest
    def __init__(self, start: _Optional[_Union[StartSagaRequest, _Mapping]] = ...) -> None: ...

class ExecuteSagaResponse(_message.Message):
    __slots__ = ("created", "saga")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SAGA_FIELD_NUMBER: _ClassVar[int]
    created: bool
    saga: Saga
    def __init__(self, created: _Optional[bool] = ..., saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class StartSagasRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[StartSagaRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[StartSagaRequest, _Mapping]]] = ...) -> None: ...

class StartSagasResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StartSagaResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StartSagaResult, _Mapping]]] = ...) -> None: ...

class StartSagaResult(_message.Message):
    __slots__ = ("saga", "error")
    SAGA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    saga: StartSagaResponse
    error: _status_pb2.Status
    def __init__(self, saga: _Optional[_Union[StartSagaResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class GetSagaRequest(_message.Message):
    __slots__ = ("saga_id", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class Saga(_message.Message):
    __slots__ = ("saga_id", "saga_type", "definition_version", "correlation_id", "status", "failure_reason", "failed_step", "needs_intervention", "create_time", "update_time", "steps", "payload", "idempotency_key", "deadline_time", "output", "locks", "lock_wait_time", "namespace", "tracked")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    NEEDS_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    LOCK_WAIT_TIME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TRACKED_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    saga_type: str
    definition_version: int
    correlation_id: str
    status: SagaStatus
    failure_reason: str
    failed_step: str
    needs_intervention: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    payload: _struct_pb2.Struct
    idempotency_key: str
    deadline_time: _timestamp_pb2.Timestamp
    output: _any_pb2.Any
    locks: _containers.RepeatedCompositeFieldContainer[SagaLock]
    lock_wait_time: _timestamp_pb2.Timestamp
    namespace: str
    tracked: bool
    def __init__(self, saga_id: _Optional[str] = ..., saga_type: _Optional[str] = ..., definition_version: _Optional[int] = ..., correlation_id: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., failure_reason: _Optional[str] = ..., failed_step: _Optional[str] = ..., needs_intervention: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., deadline_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., locks: _Optional[_Iterable[_Union[SagaLock, _Mapping]]] = ..., lock_wait_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., namespace: _Optional[str] = ..., tracked: _Optional[bool] = ...) -> None: ...

class SagaLock(_message.Message):
    __slots__ = ("key", "held", "queue_position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    key: str
    held: bool
    queue_position: int
    def __init__(self, key: _Optional[str] = ..., held: _Optional[bool] = ..., queue_position: _Optional[int] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("name", "status", "attempts", "error", "compensation_attempts", "start_time", "update_time", "next_attempt_time", "group", "reply", "wait_deadline", "expected_event_types", "expecting_undo", "participant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    WAIT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    EXPECTING_UNDO_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: StepStatus
    attempts: int
    error: str
    compensation_attempts: int
    start_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    group: str
    reply: _any_pb2.Any
    wait_deadline: _timestamp_pb2.Timestamp
    expected_event_types: _containers.RepeatedScalarFieldContainer[str]
    expecting_undo: bool
    participant: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., compensation_attempts: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group: _Optional[str] = ..., reply: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., wait_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_event_types: _Optional[_Iterable[str]] = ..., expecting_undo: _Optional[bool] = ..., participant: _Optional[str] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("seq", "event", "time", "step", "saga_status", "step_status", "attempt", "error", "actor", "reason")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SAGA_STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event: TransitionEvent
    time: _timestamp_pb2.Timestamp
    step: str
    saga_status: SagaStatus
    step_status: StepStatus
    attempt: int
    error: str
    actor: str
    reason: str
    def __init__(self, seq: _Optional[int] = ..., event: _Optional[_Union[TransitionEvent, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[str] = ..., saga_status: _Optional[_Union[SagaStatus, str]] = ..., step_status: _Optional[_Union[StepStatus, str]] = ..., attempt: _Optional[int] = ..., error: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetSagaHistoryRequest(_message.Message):
    __slots__ = ("saga_id", "page_size", "page_token", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    page_size: int
    page_token: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class GetSagaHistoryResponse(_message.Message):
    __slots__ = ("transitions", "next_page_token")
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transitions: _containers.RepeatedCompositeFieldContainer[Transition]
    next_page_token: str
    def __init__(self, transitions: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchSagaRequest(_message.Message):
    __slots__ = ("saga_id", "after_seq", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    after_seq: int
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., namespace: _Optional[str] = ...) -> None: ...

class WatchSagaResponse(_message.Message):
    __slots__ = ("transition", "saga")
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    SAGA_FIELD_NUMBER: _ClassVar[int]
    transition: Transition
    saga: Saga
    def __init__(self, transition: _Optional[_Union[Transition, _Mapping]] = ..., saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ListSagasRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status", "saga_type", "correlation_id", "needs_intervention", "create_time_after", "create_time_before", "view", "lock_key", "namespace", "saga_id_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    NEEDS_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    LOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SAGA_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: SagaStatus
    saga_type: str
    correlation_id: str
    needs_intervention: bool
    create_time_after: _timestamp_pb2.Timestamp
    create_time_before: _timestamp_pb2.Timestamp
    view: SagaView
    lock_key: str
    namespace: str
    saga_id_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., saga_type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., needs_intervention: _Optional[bool] = ..., create_time_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., view: _Optional[_Union[SagaView, str]] = ..., lock_key: _Optional[str] = ..., namespace: _Optional[str] = ..., saga_id_prefix: _Optional[str] = ...) -> None: ...

class ListSagasResponse(_message.Message):
    __slots__ = ("sagas", "next_page_token")
    SAGAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sagas: _containers.RepeatedCompositeFieldContainer[Saga]
    next_page_token: str
    def __init__(self, sagas: _Optional[_Iterable[_Union[Saga, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AbortSagaRequest(_message.Message):
    __slots__ = ("saga_id", "reason", "requested_by", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    reason: str
    requested_by: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class AbortSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class RetrySagaRequest(_message.Message):
    __slots__ = ("saga_id", "reason", "requested_by", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    reason: str
    requested_by: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class RetrySagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ResolveStepRequest(_message.Message):
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

class ResolveStepResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class BreakLockRequest(_message.Message):
    __slots__ = ("saga_id", "reason", "requested_by", "namespace")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    reason: str
    requested_by: str
    namespace: str
    def __init__(self, saga_id: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class BreakLockResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ListSagaTypesRequest(_message.Message):
    __slots__ = ("saga_type",)
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    saga_type: str
    def __init__(self, saga_type: _Optional[str] = ...) -> None: ...

class ListSagaTypesResponse(_message.Message):
    __slots__ = ("definitions",)
    DEFINITIONS_FIELD_NUMBER: _ClassVar[int]
    definitions: _containers.RepeatedCompositeFieldContainer[SagaDefinition]
    def __init__(self, definitions: _Optional[_Iterable[_Union[SagaDefinition, _Mapping]]] = ...) -> None: ...

class SagaDefinition(_message.Message):
    __slots__ = ("saga_type", "version", "description", "input", "output", "deadline_seconds", "pivot_stage", "steps", "latest", "tracking")
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PIVOT_STAGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    TRACKING_FIELD_NUMBER: _ClassVar[int]
    saga_type: str
    version: int
    description: str
    input: str
    output: str
    deadline_seconds: float
    pivot_stage: int
    steps: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    latest: bool
    tracking: TrackingDefinition
    def __init__(self, saga_type: _Optional[str] = ..., version: _Optional[int] = ..., description: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., deadline_seconds: _Optional[float] = ..., pivot_stage: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ..., latest: _Optional[bool] = ..., tracking: _Optional[_Union[TrackingDefinition, _Mapping]] = ...) -> None: ...

class TrackingDefinition(_message.Message):
    __slots__ = ("started_by", "correlation", "on_stuck")
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    ON_STUCK_FIELD_NUMBER: _ClassVar[int]
    started_by: _containers.RepeatedScalarFieldContainer[str]
    correlation: str
    on_stuck: str
    def __init__(self, started_by: _Optional[_Iterable[str]] = ..., correlation: _Optional[str] = ..., on_stuck: _Optional[str] = ...) -> None: ...

class ObservedStepDefinition(_message.Message):
    __slots__ = ("completes_on", "fails_on", "compensated_on", "within_seconds", "compensation_event")
    COMPLETES_ON_FIELD_NUMBER: _ClassVar[int]
    FAILS_ON_FIELD_NUMBER: _ClassVar[int]
    COMPENSATED_ON_FIELD_NUMBER: _ClassVar[int]
    WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_EVENT_FIELD_NUMBER: _ClassVar[int]
    completes_on: _containers.RepeatedScalarFieldContainer[str]
    fails_on: _containers.RepeatedScalarFieldContainer[str]
    compensated_on: _containers.RepeatedScalarFieldContainer[str]
    within_seconds: float
    compensation_event: str
    def __init__(self, completes_on: _Optional[_Iterable[str]] = ..., fails_on: _Optional[_Iterable[str]] = ..., compensated_on: _Optional[_Iterable[str]] = ..., within_seconds: _Optional[float] = ..., compensation_event: _Optional[str] = ...) -> None: ...

class StepDefinition(_message.Message):
    __slots__ = ("name", "group", "stage", "participant", "action", "compensation", "forward_only", "retriable", "timeout_seconds", "retry", "compensation_retry", "read_only", "completion", "escalation_seconds", "observed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    FORWARD_ONLY_FIELD_NUMBER: _ClassVar[int]
    RETRIABLE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_RETRY_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: str
    stage: int
    participant: str
    action: str
    compensation: str
    forward_only: bool
    retriable: bool
    timeout_seconds: float
    retry: RetryPolicy
    compensation_retry: RetryPolicy
    read_only: bool
    completion: AsyncCompletionDefinition
    escalation_seconds: float
    observed: ObservedStepDefinition
    def __init__(self, name: _Optional[str] = ..., group: _Optional[str] = ..., stage: _Optional[int] = ..., participant: _Optional[str] = ..., action: _Optional[str] = ..., compensation: _Optional[str] = ..., forward_only: _Optional[bool] = ..., retriable: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., compensation_retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., read_only: _Optional[bool] = ..., completion: _Optional[_Union[AsyncCompletionDefinition, _Mapping]] = ..., escalation_seconds: _Optional[float] = ..., observed: _Optional[_Union[ObservedStepDefinition, _Mapping]] = ...) -> None: ...

class AsyncCompletionDefinition(_message.Message):
    __slots__ = ("result_type", "timeout_seconds", "heartbeat_timeout_seconds", "on_timeout")
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    result_type: str
    timeout_seconds: float
    heartbeat_timeout_seconds: float
    on_timeout: str
    def __init__(self, result_type: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., heartbeat_timeout_seconds: _Optional[float] = ..., on_timeout: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff_seconds", "max_backoff_seconds", "multiplier", "jitter", "retry_codes")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_CODES_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float
    multiplier: float
    jitter: float
    retry_codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff_seconds: _Optional[float] = ..., max_backoff_seconds: _Optional[float] = ..., multiplier: _Optional[float] = ..., jitter: _Optional[float] = ..., retry_codes: _Optional[_Iterable[str]] = ...) -> None: ...

class BulkSagaFilter(_message.Message):
    __slots__ = ("saga_type", "namespace", "status", "needs_intervention", "failed_step", "participant", "failure_reason_contains", "create_time_after", "create_time_before", "update_time_after", "update_time_before")
    SAGA_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_AFTER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    saga_type: str
    namespace: str
    status: SagaStatus
    needs_intervention: bool
    failed_step: str
    participant: str
    failure_reason_contains: str
    create_time_after: _timestamp_pb2.Timestamp
    create_time_before: _timestamp_pb2.Timestamp
    update_time_after: _timestamp_pb2.Timestamp
    update_time_before: _timestamp_pb2.Timestamp
    def __init__(self, saga_type: _Optional[str] = ..., namespace: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., needs_intervention: _Optional[bool] = ..., failed_step: _Optional[str] = ..., participant: _Optional[str] = ..., failure_reason_contains: _Optional[str] = ..., create_time_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BulkSagaResult(_message.Message):
    __slots__ = ("saga_id", "status", "error")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    status: SagaStatus
    error: _status_pb2.Status
    def __init__(self, saga_id: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class RetrySagasRequest(_message.Message):
    __slots__ = ("filter", "reason", "requested_by", "dry_run", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: BulkSagaFilter
    reason: str
    requested_by: str
    dry_run: bool
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[BulkSagaFilter, _Mapping]] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., dry_run: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class RetrySagasResponse(_message.Message):
    __slots__ = ("matched_count", "saga_ids", "results", "next_page_token")
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAGA_IDS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    matched_count: int
    saga_ids: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[BulkSagaResult]
    next_page_token: str
    def __init__(self, matched_count: _Optional[int] = ..., saga_ids: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[BulkSagaResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveSagasRequest(_message.Message):
    __slots__ = ("filter", "reason", "requested_by", "dry_run", "page_size", "page_token", "step")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    filter: BulkSagaFilter
    reason: str
    requested_by: str
    dry_run: bool
    page_size: int
    page_token: str
    step: str
    def __init__(self, filter: _Optional[_Union[BulkSagaFilter, _Mapping]] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., dry_run: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., step: _Optional[str] = ...) -> None: ...

class ResolveSagasResponse(_message.Message):
    __slots__ = ("matched_count", "saga_ids", "results", "next_page_token")
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAGA_IDS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    matched_count: int
    saga_ids: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[BulkSagaResult]
    next_page_token: str
    def __init__(self, matched_count: _Optional[int] = ..., saga_ids: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[BulkSagaResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AbortSagasRequest(_message.Message):
    __slots__ = ("filter", "reason", "requested_by", "dry_run", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: BulkSagaFilter
    reason: str
    requested_by: str
    dry_run: bool
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[BulkSagaFilter, _Mapping]] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., dry_run: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AbortSagasResponse(_message.Message):
    __slots__ = ("matched_count", "saga_ids", "results", "next_page_token")
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAGA_IDS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    matched_count: int
    saga_ids: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[BulkSagaResult]
    next_page_token: str
    def __init__(self, matched_count: _Optional[int] = ..., saga_ids: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[BulkSagaResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
