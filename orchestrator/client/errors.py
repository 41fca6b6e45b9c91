"""The client's errors: one small hierarchy, and the one mapping from a gRPC failure to it.

Every call of `orchestrator.client` raises a `ClientError`: `InvalidRequest`, `NotFound`,
`Conflict`, `Unavailable` (`StreamLost` when a watch could not get its stream back),
`DeadlineExceeded` (also a TimeoutError), and `SagaFailed` from `SagaHandle.result()`.
Each carries the orchestrator's ErrorInfo reason when it sent one, and a message that
says what to do (`describe_orchestrator_error`).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from saga.v1 import orchestrator_pb2 as pb


class ClientError(Exception):
    """A call to the orchestrator failed; `code` is the gRPC code (None when the failure is
    the saga's, not the call's) and `reason` the orchestrator's ErrorInfo reason, if any."""

    code: grpc.StatusCode | None = None

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidRequest(ClientError):
    """The orchestrator refused the request as it stands (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ClientError):
    """No such saga (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class Conflict(ClientError):
    """The saga's state does not allow it, or the idempotency key was used for another
    request (FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ClientError):
    """The orchestrator (or its database) could not be reached; the call may be retried."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ClientError, TimeoutError):
    """A call or a wait did not finish within its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class SagaFailed(ClientError):
    """The saga ended FAILED: `saga` is it as GetSaga shows it, with its failure."""

    def __init__(self, saga: pb.Saga) -> None:
        needs = "; it needs an operator" if saga.needs_intervention else ""
        super().__init__(f"saga {saga.saga_id} failed: {saga.failure_reason}{needs}")
        self.saga = saga
        self.saga_id = saga.saga_id
        self.failed_step = saga.failed_step
        self.failure_reason = saga.failure_reason
        self.needs_intervention = saga.needs_intervention


class StreamLost(Unavailable):
    """The orchestrator stayed out of reach longer than a watch may wait for it."""

    def __init__(self, saga_id: str, last_seq: int, cause: str, waited: float) -> None:
        super().__init__(
            f"lost the stream of saga {saga_id} after seq {last_seq} for {waited:g}s ({cause})"
        )
        self.saga_id = saga_id
        self.last_seq = last_seq
        self.cause = cause
        self.waited = waited


_ERROR_CLASSES: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def _error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of the orchestrator's answer (AIP-193); "" without one."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return ""
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


def client_error(error: grpc.RpcError, address: str, timeout: float) -> ClientError:
    """The ClientError for a failed call, with the words `describe_orchestrator_error` has."""
    kind = _ERROR_CLASSES.get(error.code(), ClientError)
    mapped = kind(describe_orchestrator_error(error, address, timeout), reason=_error_reason(error))
    if kind is ClientError:
        mapped.code = error.code()
    return mapped


def status_error(status: status_pb2.Status) -> ClientError:
    """The ClientError for one request of a batch the orchestrator refused (a StartSagas
    result's google.rpc.Status), as the same refusal of a single call would be."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    kind = _ERROR_CLASSES.get(code, ClientError)
    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = str(info.reason)
    mapped = kind(f"{code.name}: {status.message}", reason=reason)
    mapped.code = code  # the exact code: Conflict also stands for ALREADY_EXISTS and ABORTED
    return mapped


_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _has_error_info(error: grpc.RpcError) -> bool:
    """True when the orchestrator itself answered (its errors carry an ErrorInfo)."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return False
    return any(key == "grpc-status-details-bin" for key, _ in metadata)


def _connection_cause(details: str) -> str:
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if any(
        words in lowered
        for words in ("dns resolution failed", "name or service not known", "domain name not found")
    ):
        return "the host name does not resolve"
    if "socket closed" in lowered or "connection reset" in lowered:
        return "the connection was closed"
    return details or "no answer"


def describe_orchestrator_error(error: grpc.RpcError, address: str, timeout: float) -> str:
    """What went wrong calling the orchestrator, in words that say what to do.

    (Not the step record's wording of a participant's error: that is
    `orchestrator.engine.commands.describe_rpc_error`.)
    """
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and not _has_error_info(error):
        return (
            f"UNAVAILABLE: cannot reach the orchestrator at {address} "
            f"({_connection_cause(details)}); is `saga serve` running there? "
            "Point --address (env SAGA_ADDRESS) at it"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and not _has_error_info(error):
        return (
            f"DEADLINE_EXCEEDED: the orchestrator at {address} did not answer within "
            f"{timeout:g}s (--timeout, env SAGA_TIMEOUT); is --address (env SAGA_ADDRESS) right?"
        )
    return f"{code.name}: {details}"
