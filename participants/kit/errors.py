"""What a participant answers on purpose instead of a reply, and its one mapping to a
google.rpc.Status (code, message, one ErrorInfo with an UPPER_SNAKE reason, AIP-193).

`Rejected` is a business refusal: recorded under the command's key, so a repeat gets
the same answer. `Invalid` and `NotOwner` refuse a command that was never processed:
nothing is recorded, so a fixed request may reuse the key.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "participant.saga"
"""The ErrorInfo domain of a participant that names none (`Participant.domain`)."""


class Rejected(Exception):
    """A business refusal (FAILED_PRECONDITION by default: the saga compensates); the
    handler's writes are rolled back and the refusal is recorded as the answer."""

    recorded = True

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.metadata = dict(metadata or {})

    def to_status(self, domain: str = DOMAIN) -> status_pb2.Status:
        """The google.rpc.Status answered (and, when `recorded`, stored)."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=domain)
        info.metadata.update(self.metadata)
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(info)
        return status


class Invalid(Rejected):
    """A malformed request (INVALID_ARGUMENT); the message names the field and the rule."""

    recorded = False

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_ARGUMENT", message, code=grpc.StatusCode.INVALID_ARGUMENT)


class NotOwner(Rejected):
    """A compensation named an effect of another saga or step (PERMISSION_DENIED): a saga
    may undo only what its own action did, with or without auth."""

    recorded = False

    def __init__(self, message: str) -> None:
        super().__init__("NOT_OWNER", message, code=grpc.StatusCode.PERMISSION_DENIED)


def require_text(value: str, field: str) -> None:
    """A required string field must not be empty or blank."""
    if not value.strip():
        raise Invalid(f"{field} is required")


def require_positive(value: int, field: str) -> None:
    """A count or amount must be above zero."""
    if value <= 0:
        raise Invalid(f"{field} must be positive, got {value}")
