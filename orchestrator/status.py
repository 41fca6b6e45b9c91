"""How an orchestrator error leaves the server: its gRPC status, in one table.

`SagaError`s carry a transport-neutral `ErrorCode`; this module, used only by
the servicer, is the one place those become `grpc.StatusCode`s, and the status
it builds carries an ErrorInfo with the error's UPPER_SNAKE reason (AIP-193).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from orchestrator.errors import ErrorCode, SagaError

ERROR_DOMAIN = "orchestrator.saga"

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def grpc_code_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for any exception: its own code's for a SagaError, INTERNAL otherwise."""
    if isinstance(error, SagaError):
        return GRPC_CODES[error.code]
    return grpc.StatusCode.INTERNAL


def rpc_status_of(error: SagaError) -> grpc.Status:
    """The status a call answers with when `error` ends it: code, message and ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    status = status_pb2.Status(code=grpc_code_of(error).value[0], message=error.message)
    status.details.add().Pack(info)
    return rpc_status.to_status(status)
