"""One exception hierarchy for the orchestrator, and its one mapping to gRPC codes.

Code anywhere raises a `SagaError` subclass; only the servicer turns it into a
gRPC status, through `grpc_code_of`.
"""

from __future__ import annotations

import grpc


class SagaError(Exception):
    """Base of every error the orchestrator raises on purpose.

    `reason` is the UPPER_SNAKE reason sent in the status's ErrorInfo (AIP-193).
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SagaError):
    """The caller's request is malformed: fix the request and try again."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class UnknownSagaType(InvalidArgument):
    """No definition is registered under the requested saga type."""

    reason = "UNKNOWN_SAGA_TYPE"


class InvalidPayload(InvalidArgument):
    """The payload does not convert to the saga type's input message."""

    reason = "INVALID_PAYLOAD"


class SagaNotFound(SagaError):
    """No saga has the requested id."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "SAGA_NOT_FOUND"


class IdempotencyKeyReused(SagaError):
    """An idempotency key already started a saga with a different request."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "IDEMPOTENCY_KEY_REUSED"


class StaleSagaVersion(SagaError):
    """A commit expected a saga version the store no longer holds (fencing)."""

    code = grpc.StatusCode.ABORTED
    reason = "STALE_SAGA_VERSION"


class StoreUnavailable(SagaError):
    """The database cannot be reached; nothing was written."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"


class DefinitionError(SagaError):
    """A saga definition is inconsistent; the orchestrator refuses to start with it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "INVALID_DEFINITION"


class ConfigurationError(SagaError):
    """The orchestrator's configuration is incomplete or wrong."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "INVALID_CONFIGURATION"


def grpc_code_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for any exception: its own for a SagaError, INTERNAL otherwise."""
    if isinstance(error, SagaError):
        return error.code
    return grpc.StatusCode.INTERNAL
