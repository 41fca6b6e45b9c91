"""The checks every request's ids and operator fields pass before anything is stored.

Ids are non-empty printable text of bounded length, so they index and log safely; a
saga id is a UUID as StartSaga returns it. A failed check raises `InvalidArgument`,
which the servicer answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import uuid

from orchestrator.core.errors import InvalidArgument
from orchestrator.security.auth import current_caller

MAX_ID_LENGTH = 256


def check_id(name: str, value: str, *, required: bool = True) -> None:
    """Ids are non-empty printable text of bounded length, so they index and log safely."""
    if not value:
        if required:
            raise InvalidArgument(f"{name} is required")
        return
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidArgument(
            f"{name} must be printable text without leading or trailing spaces: {value!r}"
        )


def check_saga_id(saga_id: str) -> None:
    check_id("saga_id", saga_id)
    try:
        canonical = str(uuid.UUID(saga_id))
    except ValueError:
        canonical = ""
    if canonical != saga_id:
        raise InvalidArgument(f"saga_id must be a UUID as returned by StartSaga, got {saga_id!r}")


def check_operator_request(
    saga_id: str, reason: str, requested_by: str, *, authenticated: bool
) -> None:
    """An operator's change names a saga, says why, and (unauthenticated) who asks."""
    check_saga_id(saga_id)
    check_operator_note(reason, requested_by, authenticated=authenticated)


def check_operator_note(reason: str, requested_by: str, *, authenticated: bool) -> None:
    """An operator's change (one saga or many) says why and (unauthenticated) who asks."""
    check_id("requested_by", requested_by, required=not authenticated)
    if not reason.strip():
        raise InvalidArgument("reason is required: say why, it goes into the saga's log")
    if len(reason) > 2000:
        raise InvalidArgument("reason is longer than 2000 characters")


def operator_actor(requested_by: str, reason: str) -> tuple[str, str]:
    """Who an operator's change is recorded as, and the reason it is recorded with.

    With auth on, the actor is `operator:<authenticated name>` and a `requested_by`
    is only a note in the reason; without auth (laptop mode) it is the actor.
    """
    caller = current_caller()
    if caller is None:
        return f"operator:{requested_by}", reason
    if requested_by and requested_by != caller.name:
        reason = f"{reason} (requested_by: {requested_by})"
    return f"operator:{caller.name}", reason
