"""How an orchestrator error leaves the server: its gRPC status, in one table.

`SagaError`s carry a transport-neutral `ErrorCode`; this module, used only by
the servicer, is the one place those become `grpc.StatusCode`s, and the status
it builds carries an ErrorInfo with the error's UPPER_SNAKE reason (AIP-193), and a
RetryInfo when the error says when to try again (RESOURCE_EXHAUSTED under load).
"""

from __future__ import annotations

import logging

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from orchestrator.core.errors import ErrorCode, SagaError
from orchestrator.telemetry.throttle import ThrottledLog

logger = logging.getLogger(__name__)
_refusals = ThrottledLog(logger, rate=1.0, burst=10)
"""Client mistakes at INFO, about one a second after a burst of ten."""
_SERVER_FAULTS = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})

ERROR_DOMAIN = "orchestrator.saga"

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def grpc_code_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for any exception: its own code's for a SagaError, INTERNAL otherwise."""
    if isinstance(error, SagaError):
        return GRPC_CODES[error.code]
    return grpc.StatusCode.INTERNAL


def status_proto_of(error: SagaError) -> status_pb2.Status:
    """`error` as a google.rpc.Status: code, message, ErrorInfo and (when the error says
    when to try again) RetryInfo; what a call ends with, or one item of a batch answers."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    status = status_pb2.Status(code=grpc_code_of(error).value[0], message=error.message)
    status.details.add().Pack(info)
    if error.retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(error.retry_after * 1e9))
        status.details.add().Pack(retry)
    return status


def rpc_status_of(error: SagaError) -> grpc.Status:
    """The status a call answers with when `error` ends it (see `status_proto_of`)."""
    return rpc_status.to_status(status_proto_of(error))


def log_refusal(error: SagaError) -> None:
    """Log a request refused for the client's mistake (or a limit): INFO, throttled, no
    traceback. The server's own faults are logged where they happen, with theirs."""
    if error.code not in _SERVER_FAULTS:
        _refusals.log(logging.INFO, "request refused: %s: %s", error.reason, error.message)
