"""What the machine hands the executor: the actions to perform next, and the vocabulary
of the failure policy (the kinds of failed attempts and the verdicts on them). Pure data;
`SagaRun` (orchestrator/core/machine.py) decides which.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.core import waiting
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, unqualified
from orchestrator.core.records import LockAttempt

# --- actions: what the executor must do next -------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAction:
    """Send (or send again, same idempotency key) the action of step `index`, not before
    `not_before` when a retry was scheduled before a restart."""

    index: int
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class SendCompensation:
    """Send (or send again) the compensation of step `index`, not before `not_before`.

    `event` set (a rescue of a tracked saga whose step declares a `compensation_event`):
    the compensation is that CloudEvent type, published through the engine's
    CommandEventPublisher (`observing.compensation_command_event` builds it), not an RPC.
    """

    index: int
    not_before: datetime | None = None
    event: str = ""


@dataclass(frozen=True, slots=True)
class AcquireLocks:
    """Take the saga's lock keys (all or nothing, in the store) before its next stage
    starts; while another saga holds or queues ahead for one, wait for a release, but
    not past `give_up_at` (the saga's maximum lock wait), then ask the machine again."""

    keys: tuple[str, ...]
    give_up_at: datetime | None = None


Command = SendAction | SendCompensation
Action = Command | AcquireLocks | waiting.AwaitCompletion


def describe_blockers(attempt: LockAttempt, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Who is in the way, for the log: "sku:7 held by S1; sku:9 queued for by S2" (keys
    as the definition makes them, without the namespace the store qualifies them by)."""
    return "; ".join(
        f"{unqualified(b.key, namespace)} {'held' if b.holds else 'queued for'} by {b.saga_id}"
        for b in attempt.blockers
    )


def key_names(keys: Sequence[str], namespace: str) -> str:
    """A saga's lock keys for its log and failure reason: "sku:7, sku:9"."""
    return ", ".join(unqualified(key, namespace) for key in keys)


# --- failure policy: what a failed attempt leads to ----------------------------------


class ErrorKind(enum.Enum):
    """How a failed command takes the saga on; the transport sorts its errors into these.

    TRANSIENT: retry with the same idempotency key. REJECTED: the participant said
    no, nothing happened. OUTCOME_UNKNOWN: it may have happened, so it is undone.
    """

    TRANSIENT = "transient"
    REJECTED = "rejected"
    OUTCOME_UNKNOWN = "outcome_unknown"


class Verdict(enum.Enum):
    """What the policy decided after a failed attempt (already queued in the run)."""

    RETRY = "retry"
    """Send again, same key, at `AfterFailure.retry_at`; commit before waiting."""
    REJECTED = "rejected"
    """The step failed for good; the saga compensates the earlier steps."""
    OUTCOME_UNKNOWN = "outcome_unknown"
    """Attempts ran out; the step is compensated with the earlier ones."""
    STUCK = "stuck"
    """A step that must not be undone ran out of attempts: the saga halts for an operator."""
    DEADLINE_PASSED = "deadline_passed"
    """Nothing recorded: the step stays STARTED and the saga compensates at its next step."""
    GAVE_UP = "gave_up"
    """A compensation ran out of attempts: the saga fails and needs an operator."""


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """The verdict on a failed attempt, and for a retry the time it is due."""

    verdict: Verdict
    retry_at: datetime | None = None


__all__ = [
    "AcquireLocks",
    "Action",
    "AfterFailure",
    "Command",
    "ErrorKind",
    "SendAction",
    "SendCompensation",
    "Verdict",
    "describe_blockers",
    "key_names",
]
