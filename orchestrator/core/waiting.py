"""The machine's decisions for asynchronous steps: accepted, waiting, completed later.

An asynchronous step's action only says the participant accepted the work. The step
then WAITs (persisted, with its deadline) until a completion, a failure, its timeout,
or the saga stopping ends the wait. These functions move one `SagaRun` (pure, like
the rest of the machine): the driver calls `action_accepted` on the reply, and the
callbacks service `answer_completion` / `answer_heartbeat` on a freshly loaded run,
then commits what they queued under the saga's version, so a completion and the
driver's own commits never both win.

A saga whose stage has nothing left but WAITING steps is parked: `next_actions`
answers `AwaitCompletion` and nobody drives it; `wake_time` (on the saga row) is when a
replica claims it again to time it out, unless a completion or an operator wakes it first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.core.definition import OnTimeout, Step
from orchestrator.core.errors import ErrorCode, SagaError
from orchestrator.core.records import SagaStatus, StepStatus, TransitionEvent
from orchestrator.core.tokens import digest_matches

if TYPE_CHECKING:
    from orchestrator.core.machine import SagaRun

KEPT_TOKENS = 4
"""Digests kept per step: the tokens of resends of one command (a restart resends it with
a new token; the participant may hold either). An operator's retry starts afresh."""


@dataclass(frozen=True, slots=True)
class AwaitCompletion:
    """Nothing to send: the saga's stage only waits for asynchronous completions. The
    driver commits and stops driving it; it is claimed again at `wake_time`."""

    wake_time: datetime | None


class CompletionOutcome(enum.Enum):
    """What a completion, failure or heartbeat got, for the callbacks service to answer."""

    ACCEPTED = "accepted"
    """Recorded now: the step completed (or failed) by this call."""
    DUPLICATE = "duplicate"
    """The same completion id again: answered as the first time."""
    CONFLICT = "conflict"
    """Another completion was recorded first (`recorded_id` names it)."""
    LATE = "late"
    """The step no longer waits (timed out, cancelled): refused, and logged as late."""
    DENIED = "denied"
    """The token is not one of this step's current tokens."""


@dataclass(frozen=True, slots=True)
class CompletionAnswer:
    outcome: CompletionOutcome
    recorded_id: str = ""
    recorded_kind: str = ""
    """"completed", "failed" or "late": what the recorded completion was."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    denied: bool
    cancel_requested: bool
    deadline: datetime | None = None


def completion_of(run: SagaRun, index: int) -> Step:
    step = run.definition.all_steps[index]
    if step.completion is None:
        raise ValueError(f"step {step.name} is not asynchronous")
    return step


def token_issued(run: SagaRun, index: int, digest: str, now: datetime) -> None:
    """Keep the digest of the token about to be sent (committed before the command).
    Digests of the same command's earlier sends are kept; none survive an operator's
    retry (attempts restart at 1), so its tokens are refused from then on."""
    record = run.steps[index]
    if record.attempts <= 1:
        run._update_step(index, now, completion_tokens=(digest,), completion_id="")
    else:
        tokens = (*record.completion_tokens, digest)[-KEPT_TOKENS:]
        run._update_step(index, now, completion_tokens=tokens)


def action_accepted(run: SagaRun, index: int, now: datetime) -> None:
    """The participant accepted the work: the step waits, its deadlines set from now.
    A completion already recorded (it beat the reply here) leaves nothing to do."""
    if run.step_status(index) is not StepStatus.STARTED:
        return
    completion = completion_of(run, index).completion
    assert completion is not None
    until = now + timedelta(seconds=completion.timeout)
    run._fire_step(
        index,
        "accept",
        TransitionEvent.STEP_WAITING,
        now,
        wait_until=until,
        wait_deadline=_heartbeat_deadline(until, completion.heartbeat_timeout, now),
        error="",
        next_attempt_time=None,
    )


def _heartbeat_deadline(until: datetime, heartbeat: float | None, now: datetime) -> datetime:
    if heartbeat is None:
        return until
    return min(until, now + timedelta(seconds=heartbeat))


def waiting_expired(run: SagaRun, index: int, now: datetime) -> bool:
    deadline = run.steps[index].wait_deadline
    return deadline is not None and now >= deadline


def time_out(run: SagaRun, index: int, now: datetime) -> None:
    """The wait ended without a completion: the outcome is unknown. Compensate it with
    the earlier steps, or halt for an operator, as the step says (past the pivot, where
    nothing may be undone, it always halts)."""
    step = completion_of(run, index)
    completion = step.completion
    assert completion is not None
    record = run.steps[index]
    if record.wait_until is not None and record.wait_deadline == record.wait_until:
        why = f"no completion within {completion.timeout:g}s"
    else:
        why = f"no heartbeat within {completion.heartbeat_timeout:g}s"
    error = f"asynchronous step timed out ({why}); its outcome is unknown"
    run._update_step(index, now, error=error, wait_deadline=None)
    run._log(TransitionEvent.STEP_TIMED_OUT, now, index, error=error)
    forward_only = run.definition.is_forward_only(index) or step.is_pivot
    if completion.on_timeout is OnTimeout.NEEDS_INTERVENTION or forward_only:
        run.action_stuck(index, error, now)
    else:
        run._begin_compensating(index, error, now)


def parked_until(run: SagaRun) -> datetime | None:
    """When a parked saga (RUNNING, its current stage all COMPLETED or WAITING, one at
    least WAITING; or a tracked saga unwinding through its services' events) must be
    looked at again: its earliest wait deadline, or its own deadline if sooner; None
    for a saga that is not parked."""
    if run.status is SagaStatus.COMPENSATING and run.definition.tracking is not None:
        return _unwinding_until(run)
    if run.status is not SagaStatus.RUNNING:
        return None
    for stage in run.definition.stages:
        statuses = [run.step_status(i) for i in stage]
        if all(s is StepStatus.COMPLETED for s in statuses):
            continue
        if not all(s in (StepStatus.COMPLETED, StepStatus.WAITING) for s in statuses):
            return None
        deadlines = [
            run.steps[i].wait_deadline
            for i in stage
            if run.step_status(i) is StepStatus.WAITING and run.steps[i].wait_deadline
        ]
        wake = min(d for d in deadlines if d is not None) if deadlines else None
        saga_deadline = run.saga.deadline_time
        if saga_deadline is not None and not run.past_pivot():
            wake = saga_deadline if wake is None else min(wake, saga_deadline)
        return wake
    return None


def _unwinding_until(run: SagaRun) -> datetime | None:
    """An unwinding tracked saga is parked while every step being undone waits for its
    service's undo event: until the earliest of their deadlines. None when a step is
    undone by a command (the driver drives it) or none waits yet."""
    deadlines = [
        run.steps[i].wait_deadline
        for i in range(len(run.steps))
        if run.step_status(i) is StepStatus.COMPENSATING
    ]
    if not deadlines or any(d is None for d in deadlines):
        return None
    return min(d for d in deadlines if d is not None)


def refresh_wake_time(run: SagaRun) -> None:
    """Before a commit: the saga row's wake time follows the run (see `parked_until`)."""
    wake = parked_until(run)
    if wake != run.saga.wake_time:
        run._set_saga(run.saga.update_time, wake_time=wake)


def answer_completion(
    run: SagaRun,
    index: int,
    digest: str | None,
    completion_id: str,
    now: datetime,
    *,
    result: bytes | None = None,
    error: str = "",
    actor: str = "",
    reason: str = "",
) -> CompletionAnswer:
    """Decide what a completion (`result` set) or a failure (`error` set) of step
    `index`, presented with a token of digest `digest`, does; queue what it records.
    `digest` None is a person's decision on a task (SagaTasks): no token, the caller's
    role admitted it, and `actor` names them.

    A completion for a STARTED step (the participant was faster than the commit of
    its acceptance) counts as well: accepting and completing commute.
    """
    step = run.definition.all_steps[index]
    record = run.steps[index]
    if step.completion is None or (
        digest is not None and not digest_matches(digest, record.completion_tokens)
    ):
        return CompletionAnswer(CompletionOutcome.DENIED)
    if record.completion_id:
        kind, _, recorded = record.completion_id.partition(":")
        if recorded == completion_id:
            return CompletionAnswer(CompletionOutcome.DUPLICATE, recorded, kind)
        return CompletionAnswer(CompletionOutcome.CONFLICT, recorded, kind)
    status = run.step_status(index)
    waiting = run.status is SagaStatus.RUNNING and status in (
        StepStatus.STARTED,
        StepStatus.WAITING,
    )
    if waiting and status is StepStatus.WAITING and waiting_expired(run, index, now):
        time_out(run, index, now)
        waiting = False
    if waiting and run.deadline_passed(now):
        waiting = False  # the saga compensates at its next decision
    by = actor or "participant"
    if not waiting:
        reason = _why_not_waiting(run, index)
        run._update_step(index, now, completion_id=f"late:{completion_id}")
        run._log(
            TransitionEvent.STEP_COMPLETED_LATE,
            now,
            index,
            error=error,
            actor=by,
            reason=f"completion {completion_id} refused: {reason}",
        )
        return CompletionAnswer(CompletionOutcome.LATE, completion_id, "late", reason)
    if result is not None:
        run._fire_step(
            index,
            "succeed",
            TransitionEvent.STEP_COMPLETED,
            now,
            actor=by,
            reason=reason,
            result=result,
            error="",
            completion_id=f"completed:{completion_id}",
            wait_deadline=None,
            next_attempt_time=None,
        )
        return CompletionAnswer(CompletionOutcome.ACCEPTED, completion_id, "completed")
    run._update_step(index, now, completion_id=f"failed:{completion_id}", wait_deadline=None)
    if run.definition.is_forward_only(index) or step.is_pivot:
        run.action_stuck(index, error, now, actor=by, reason=reason)
    else:
        run.action_rejected(index, error, now, actor=by, reason=reason)
    return CompletionAnswer(CompletionOutcome.ACCEPTED, completion_id, "failed")


def _why_not_waiting(run: SagaRun, index: int) -> str:
    record = run.steps[index]
    if "timed out" in record.error:
        return f"step {record.name} stopped waiting: {record.error}"
    if run.status is not SagaStatus.RUNNING:
        return f"saga {run.saga.saga_id} is {run.status}: {run.saga.failure_reason}"
    return f"step {record.name} is {run.step_status(index)}, not waiting"


def answer_heartbeat(run: SagaRun, index: int, digest: str, now: datetime) -> HeartbeatAnswer:
    """A heartbeat moves a WAITING step's deadline (never past its total wait), queuing
    no log row; it asks the participant to stop once the saga no longer wants the work."""
    step = run.definition.all_steps[index]
    record = run.steps[index]
    if step.completion is None or not digest_matches(digest, record.completion_tokens):
        return HeartbeatAnswer(denied=True, cancel_requested=False)
    status = run.step_status(index)
    if run.status is not SagaStatus.RUNNING or status not in (
        StepStatus.STARTED,
        StepStatus.WAITING,
    ):
        return HeartbeatAnswer(denied=False, cancel_requested=True)
    if status is StepStatus.STARTED or record.wait_until is None:
        return HeartbeatAnswer(denied=False, cancel_requested=False)
    if waiting_expired(run, index, now) or run.deadline_passed(now):
        return HeartbeatAnswer(denied=False, cancel_requested=True, deadline=record.wait_deadline)
    heartbeat = step.completion.heartbeat_timeout
    deadline = _heartbeat_deadline(record.wait_until, heartbeat, now)
    if heartbeat is not None and deadline != record.wait_deadline:
        run._update_step(index, now, wait_deadline=deadline)
    return HeartbeatAnswer(denied=False, cancel_requested=False, deadline=deadline)


class CompletionDenied(SagaError):
    """The token is not the current token of any waiting step: forged, mangled, of
    another saga, or of a wait an operator's retry replaced. Never retried."""

    code = ErrorCode.PERMISSION_DENIED
    reason = "COMPLETION_TOKEN_INVALID"


class CompletionConflict(SagaError):
    """Another completion of the step was recorded first."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "COMPLETION_ALREADY_RECORDED"


class StepNotWaiting(SagaError):
    """The step stopped waiting (timed out, or the saga was stopped): a late completion."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "STEP_NOT_WAITING"
