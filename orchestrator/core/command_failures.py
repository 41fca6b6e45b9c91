"""How a failed command's status sorts into the machine's three `ErrorKind`s.

Each kind leads the saga somewhere else: transient (retry, same idempotency key),
rejected (the participant said no: nothing happened) and unknown outcome (it may
have happened: compensate it). Keyed on the canonical status code's name
("UNAVAILABLE", "FAILED_PRECONDITION", the names gRPC and google.rpc.Code share),
so the core holds the rule without importing a transport; the engine translates
its transport's codes into these names (orchestrator/engine/commands.py).
"""

from __future__ import annotations

from orchestrator.core.machine import ErrorKind

TRANSIENT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED", "ABORTED"}
)
"""Retried with the same idempotency key; a deadline does not mean "did not happen".
CANCELLED is the same case: the call was cut short before its answer (by the participant's
side, or by something between: the engine's own cancellations never reach the machine, see
orchestrator/engine/driver.py), so it may or may not have happened, and the same key makes
the resend harmless."""

REJECTION_CODES = frozenset(
    {
        "FAILED_PRECONDITION",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "OUT_OF_RANGE",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "UNIMPLEMENTED",
    }
)
"""The participant answered and refused: its state is unchanged. FAILED_PRECONDITION is
the business rejection (no seats left, card declined)."""


def classify_failure(code: str, retry_codes: frozenset[str] = frozenset()) -> ErrorKind:
    """Which way a failed command with status `code` (its name) takes the saga;
    anything unlisted may have happened.

    `retry_codes` names further codes (e.g. "INTERNAL") a retry policy treats as transient.
    """
    if code in TRANSIENT_CODES or code in retry_codes:
        return ErrorKind.TRANSIENT
    if code in REJECTION_CODES:
        return ErrorKind.REJECTED
    return ErrorKind.OUTCOME_UNKNOWN
