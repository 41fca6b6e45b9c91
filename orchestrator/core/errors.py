"""One exception hierarchy for the orchestrator, with transport-neutral error codes.

Code anywhere raises a `SagaError` subclass; it carries an `ErrorCode`, not a
gRPC status code, so the engine's pure core (machine.py, definition.py) does not
import grpc. Only the servicer turns an error into a gRPC status, through the one
table in `orchestrator.api.status`.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """What kind of failure an error is, for any transport; named after the gRPC codes
    (and the Google AIPs) because those are the ones the API speaks."""

    INTERNAL = "INTERNAL"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"


class SagaError(Exception):
    """Base of every error the orchestrator raises on purpose.

    `reason` is the UPPER_SNAKE reason sent in the status's ErrorInfo (AIP-193).
    """

    code: ErrorCode = ErrorCode.INTERNAL
    reason: str = "INTERNAL"
    retry_after: float | None = None
    """Seconds after which the same call may succeed, sent as RetryInfo; None for no hint."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SagaError):
    """The caller's request is malformed: fix the request and try again."""

    code = ErrorCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class OutOfRange(SagaError):
    """A value is well-formed but outside what the API accepts (a timestamp before year 1,
    a page token past the end): fix the value and try again."""

    code = ErrorCode.OUT_OF_RANGE
    reason = "OUT_OF_RANGE"


class PayloadTooLarge(InvalidArgument):
    """A payload is bigger or deeper than the configured limit, which the message names."""

    reason = "PAYLOAD_TOO_LARGE"


class ResourceExhausted(SagaError):
    """A per-replica limit is reached (watch streams, sagas in flight); the message names it.

    `reason` names the limit (WATCH_STREAMS_EXHAUSTED, SAGAS_IN_FLIGHT_EXHAUSTED).
    """

    code = ErrorCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.retry_after = retry_after


class UnknownSagaType(InvalidArgument):
    """No definition is registered under the requested saga type."""

    reason = "UNKNOWN_SAGA_TYPE"


class InvalidPayload(InvalidArgument):
    """The payload does not convert to the saga type's input message."""

    reason = "INVALID_PAYLOAD"


class TrackedTypeNotStartable(SagaError):
    """StartSaga named a tracked saga type: its instances start from its start events."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "TRACKED_TYPE_NOT_STARTABLE"


class SagaNotFound(SagaError):
    """No saga has the requested id."""

    code = ErrorCode.NOT_FOUND
    reason = "SAGA_NOT_FOUND"


class NamespaceDenied(SagaError):
    """A request names a namespace its caller may not use (the auth file binds each
    caller to its namespaces). Only a namespace the request names is refused so: a saga
    in a namespace the caller may not see is SagaNotFound, as if it did not exist."""

    code = ErrorCode.PERMISSION_DENIED
    reason = "NAMESPACE_DENIED"


class IdempotencyKeyReused(SagaError):
    """An idempotency key already started a saga with a different request."""

    code = ErrorCode.ALREADY_EXISTS
    reason = "IDEMPOTENCY_KEY_REUSED"


class StaleSagaVersion(SagaError):
    """A commit expected a saga version the store no longer holds (fencing)."""

    code = ErrorCode.ABORTED
    reason = "STALE_SAGA_VERSION"


class StoreUnavailable(SagaError):
    """The database cannot be reached; nothing was written."""

    code = ErrorCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"


class DataRefused(InvalidArgument):
    """The database refused to store a value of this write (a character or a size its
    column types cannot hold). Nothing of the write was stored, and the writes batched
    with it were stored without it; the message names the database's error class and
    code, never the value."""

    reason = "DATA_REFUSED_BY_STORE"


class DefinitionError(SagaError):
    """A saga definition is inconsistent; the orchestrator refuses to start with it."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "INVALID_DEFINITION"


class ConfigurationError(SagaError):
    """The orchestrator's configuration is incomplete or wrong."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "INVALID_CONFIGURATION"


class LockConflict(SagaError):
    """A saga whose policy is to reject was refused: another saga holds (or queues
    for) one of its lock keys; the message names the key and that saga."""

    code = ErrorCode.ABORTED
    reason = "LOCK_HELD"
