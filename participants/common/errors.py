"""The participants' one exception hierarchy and its one mapping to a gRPC status.

Service code raises these; only `CommandProcessor` turns them into a status,
through `ParticipantError.to_status`. Every status carries one
`google.rpc.ErrorInfo` with an UPPER_SNAKE reason and the service's domain
(AIP-193), so a caller can branch on the reason instead of parsing messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


class ParticipantError(Exception):
    """Base of every error a participant answers on purpose."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})

    def to_status(self, domain: str) -> status_pb2.Status:
        """The rich status for this error: code, message and one ErrorInfo."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=domain)
        info.metadata.update(self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])


class InvalidCommand(ParticipantError):
    """The request is malformed; nothing was stored, so a fixed request may reuse the key."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_ARGUMENT", message)


class IdempotencyKeyReused(ParticipantError):
    """The key already applied a different request (or another method); nothing changed."""

    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, message: str) -> None:
        super().__init__("IDEMPOTENCY_KEY_REUSED", message)


class BusinessRejection(ParticipantError):
    """The command is valid but the business says no (FAILED_PRECONDITION).

    A rejection is recorded under the command's idempotency key, so a repeat
    gets the same code, message and reason, and nothing of the command's
    business change is kept.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotOwner(ParticipantError):
    """A compensation named an effect another saga (or another step) created; nothing
    changed. Holds with or without auth: a saga may undo only what its own action did."""

    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, message: str) -> None:
        super().__init__("NOT_OWNER", message)
