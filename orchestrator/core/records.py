"""The persisted shape of a saga: plain records shared by the engine and the store.

Nothing here does I/O. The executor builds these from the state machine and hands
them to the store; the store returns them on reads and on recovery.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.core.ingested import NO_ROWS, IngestedRows


class SagaStatus(enum.StrEnum):
    """States of a whole saga; COMPLETED and FAILED are terminal."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.FAILED)


class StepStatus(enum.StrEnum):
    """States of one step. COMPENSATION_FAILED means an operator must act;
    NOTHING_TO_UNDO is a read-only step a rollback passed over (no command sent)."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    NOTHING_TO_UNDO = "NOTHING_TO_UNDO"
    WAITING = "WAITING"
    """An asynchronous step its participant accepted, waiting to be completed later."""


class TransitionEvent(enum.StrEnum):
    """What a row of the transition log records."""

    SAGA_STARTED = "SAGA_STARTED"
    STEP_STARTED = "STEP_STARTED"
    STEP_RETRY_SCHEDULED = "STEP_RETRY_SCHEDULED"
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_FAILED = "STEP_FAILED"
    COMPENSATION_STARTED = "COMPENSATION_STARTED"
    COMPENSATION_RETRY_SCHEDULED = "COMPENSATION_RETRY_SCHEDULED"
    COMPENSATION_COMPLETED = "COMPENSATION_COMPLETED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    SAGA_COMPENSATING = "SAGA_COMPENSATING"
    SAGA_COMPLETED = "SAGA_COMPLETED"
    SAGA_FAILED = "SAGA_FAILED"
    SAGA_HALTED = "SAGA_HALTED"
    SAGA_ABORTED = "SAGA_ABORTED"
    SAGA_DEADLINE_PASSED = "SAGA_DEADLINE_PASSED"
    SAGA_RETRIED = "SAGA_RETRIED"
    STEP_RESOLVED = "STEP_RESOLVED"
    LOCKS_WAITING = "LOCKS_WAITING"
    LOCKS_ACQUIRED = "LOCKS_ACQUIRED"
    LOCK_WAIT_EXPIRED = "LOCK_WAIT_EXPIRED"
    LOCKS_REFUSED = "LOCKS_REFUSED"
    LOCKS_RELEASED = "LOCKS_RELEASED"
    LOCK_BROKEN = "LOCK_BROKEN"
    STEP_NOTHING_TO_UNDO = "STEP_NOTHING_TO_UNDO"
    STEP_WAITING = "STEP_WAITING"
    STEP_TIMED_OUT = "STEP_TIMED_OUT"
    STEP_COMPLETED_LATE = "STEP_COMPLETED_LATE"
    """A completion arrived after its step stopped waiting: refused, kept for the record."""
    EVENT_ANOMALY = "EVENT_ANOMALY"
    """An event of a tracked saga that did not fit (after the end, a second start, a
    conflict, out of phase, or early and held): recorded, never an error."""


ENGINE_ACTOR = "engine"


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """One row of the sagas table.

    `version` is bumped by every commit; a commit names the version it expects,
    which fences off a writer that no longer owns the saga.
    """

    saga_id: str
    saga_type: str
    definition_version: int
    correlation_id: str
    payload: dict[str, Any]
    status: SagaStatus
    create_time: datetime
    update_time: datetime
    idempotency_key: str | None = None
    request_fingerprint: str = ""
    failure_reason: str = ""
    failed_step: str = ""
    needs_intervention: bool = False
    version: int = 1
    deadline_time: datetime | None = None
    lock_keys: tuple[str, ...] = ()
    """The semantic lock keys the saga takes (sorted), computed from its input at start."""
    locks_held: bool = False
    lock_wait_since: datetime | None = None
    """When the saga first queued for its locks; None if it never waited."""
    output: bytes | None = None
    """A COMPLETED saga's output, a serialized google.protobuf.Any; None without one."""
    namespace: str = "default"
    """The tenant the saga belongs to; its idempotency key and lock keys are stored
    qualified by it (`orchestrator.core.namespaces`)."""
    completion_webhook_url: str | None = None
    """Where the saga's terminal event is POSTed (StartSaga's completion webhook)."""
    wake_time: datetime | None = None
    """Set while the saga only waits for asynchronous steps: nobody drives it, and no
    replica claims it before this time (its earliest wait deadline) unless a completion
    or an operator changes it first."""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One row of the saga_steps table; `result` is the participant's serialized reply."""

    saga_id: str
    index: int
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    error: str = ""
    result: bytes | None = None
    start_time: datetime | None = None
    update_time: datetime | None = None
    next_attempt_time: datetime | None = None
    wait_deadline: datetime | None = None
    """An asynchronous step's deadline while WAITING: the sooner of its total wait and
    its heartbeat timeout."""
    wait_until: datetime | None = None
    """When the total wait ends (fixed at acceptance; heartbeats never move it)."""
    completion_tokens: tuple[str, ...] = ()
    """The sha256 hex digests of the completion tokens sent with the current wait's
    commands (a resend carries a new one); never the tokens themselves."""
    completion_id: str = ""
    """The completion recorded for the step's wait as "<kind>:<id>" (kind: completed,
    failed or late), so a repeat gets the first answer; "" before one."""


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One row of the append-only transition log (the audit trail).

    `seq` numbers a saga's transitions from 1 without gaps; statuses are the
    ones in force after the transition.
    """

    saga_id: str
    seq: int
    event: TransitionEvent
    time: datetime
    saga_status: SagaStatus
    step: str = ""
    step_status: StepStatus | None = None
    attempt: int = 0
    error: str = ""
    actor: str = ENGINE_ACTOR
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SagaCommit:
    """One unit of the write path: a saga's new row, its changed steps and the log rows.

    A store applies a sequence of commits (possibly of many sagas) in one
    transaction, all or nothing. `saga.version` must be `expected_version + 1`.
    """

    saga: SagaRecord
    expected_version: int
    steps: tuple[StepRecord, ...] = ()
    transitions: tuple[TransitionRecord, ...] = field(default=())
    released_locks: tuple[str, ...] = ()
    """Lock keys the saga gives up in this commit, with its places in their queues."""
    ingested: IngestedRows = NO_ROWS
    """Incoming events this commit applied or holds (`orchestrator.core.ingested`)."""


@dataclass(frozen=True, slots=True)
class LockBlocker:
    """A saga in the way of another's lock: it holds `key`, or queues for it ahead."""

    key: str
    saga_id: str
    holds: bool


@dataclass(frozen=True, slots=True)
class LockAttempt:
    """What the store found when a saga asked for its lock keys, inside the transaction
    that takes them: nobody in the way (`blockers` empty), or who is, and whether the
    saga already had its place in the queues (`queued`)."""

    blockers: tuple[LockBlocker, ...]
    queued: bool
    ticket: int = 0
    """The saga's place in the order of all queues (lower goes first); 0 if never queued."""

    @property
    def acquired(self) -> bool:
        return not self.blockers


@dataclass(frozen=True, slots=True)
class LockHolding:
    """A key a saga holds (`holds`), or queues for with `ahead` sagas queued before it
    (the holder not counted): its place in the queue is `ahead` + 1."""

    key: str
    holds: bool
    ahead: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """A replica's claim on the sagas it drives: its owner id and how long a claim lasts.

    A saga whose lease has expired may be claimed by any replica; claiming bumps
    the saga's version, so the previous owner's next commit fails (fencing).
    """

    owner: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """Which sagas a listing returns; None means any. Conditions combine with AND."""

    status: SagaStatus | None = None
    saga_type: str | None = None
    correlation_id: str | None = None
    needs_intervention: bool | None = None
    created_after: datetime | None = None
    """Inclusive."""
    created_before: datetime | None = None
    """Exclusive."""
    lock_key: str | None = None
    """Sagas that hold or queue for this semantic lock key, in their own namespace (the
    key as a client names it, unqualified)."""
    namespaces: tuple[str, ...] | None = None
    """Sagas in one of these namespaces; None for every namespace."""
    failed_step: str | None = None
    """Sagas with a failed step of this name: one whose compensation failed, or the
    step whose failure the saga stopped at (`SagaRecord.failed_step`)."""
    failed_steps: tuple[tuple[str, str], ...] | None = None
    """Sagas with a failed step (as above) whose (saga type, step name) is one of these
    (the steps that address one participant)."""
    failure_reason_contains: str | None = None
    """Sagas whose failure reason contains this text (case-sensitive)."""
    updated_after: datetime | None = None
    """Inclusive."""
    updated_before: datetime | None = None
    """Exclusive."""
    saga_id_prefix: str | None = None
    """Sagas whose id starts with this (lowercase hex digits and hyphens only)."""


@dataclass(frozen=True, slots=True)
class PagePosition:
    """Where the previous page ended, in the listing's order (newest first)."""

    create_time: datetime
    saga_id: str


@dataclass(frozen=True, slots=True)
class NewSaga:
    """A saga to insert: its row, its PENDING steps, its first log rows, and optionally
    the lease its creator takes on it."""

    saga: SagaRecord
    steps: tuple[StepRecord, ...]
    transitions: tuple[TransitionRecord, ...]
    lease: Lease | None = None
    ingested: IngestedRows = NO_ROWS
    """Incoming events the new saga applied or holds (its start event among them)."""


@dataclass(frozen=True, slots=True)
class CreateSagaResult:
    """What `Store.create_saga` did: the stored saga, and whether this call created it."""

    saga: SagaRecord
    created: bool


@dataclass(frozen=True, slots=True)
class StoredSaga:
    """What driving a saga from the store starts from: its row, its steps in index order,
    and the seq of its newest log row (0 when it has none)."""

    saga: SagaRecord
    steps: tuple[StepRecord, ...]
    last_seq: int
