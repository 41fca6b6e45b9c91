"""What a tracked saga does next: its steps wait for events, time out, unwind, or are
rescued. The machine's `next_actions` hands a tracked run here (its one hook), and
`observing.apply_event` settles a run here after an event moved it.

Forward, the first step not COMPLETED waits (STEP_WAITING, no command: the services
drive the flow) with `wait_deadline` = the previous event's time + its window; the
saga is parked until that deadline. A missed window is STEP_TIMED_OUT and then what
the type's `on_stuck` says: flagged for an operator (the step FAILED, the saga FAILED
with needs_intervention), or a *rescue*.

Unwinding (a failing event refused a step): each COMPLETED step that declares
`compensated_on` events, in reverse order, waits (COMPENSATING, with a deadline) for
its service to say it undid it; steps that declare none are passed over (left
COMPLETED: nothing could tell us they were undone).

A rescue (on_stuck COMPENSATE after a missed window, or an operator's abort of a
RUNNING tracked saga) is the orchestrator compensating through the machine's
write-ahead path: in reverse order, from the step that timed out (its outcome is
unknown), each step with a `compensation` call gets it (`SendCompensation`), one with
a `compensation_event` gets that event published (`SendCompensation.event` names its
type: the engine publishes `observing.compensation_command_event` through its
CommandEventPublisher instead of calling a participant, then calls
`observing.compensation_event_published`), and one with neither but `compensated_on`
events waits for them. A saga is rescuing when its failure reason says so
(`RESCUE_NOTE`, or an abort): the failure reason is persisted with the saga, so the
mode survives a restart without a column of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.core import waiting
from orchestrator.core.actions import Action, SendCompensation
from orchestrator.core.moves import SAGA_MOVES, STEP_MOVES, IllegalTransition, fire
from orchestrator.core.records import SagaStatus, StepStatus, TransitionEvent
from orchestrator.core.tracking import Observed, OnStuck

if TYPE_CHECKING:
    from orchestrator.core.machine import SagaRun

RESCUE_NOTE = "rescued by the orchestrator"
"""In a saga's failure reason: it compensates itself (a rescue), not through events."""
ABORT_PREFIX = "aborted by "
"""How the machine's abort starts a failure reason: an abort is a rescue too."""
RESTART_RESEND = "resent after a restart"


def observed(run: SagaRun, index: int) -> Observed:
    """The observed step at `index` (IllegalTransition for a step that is not)."""
    found = run.definition.all_steps[index].observed
    if found is None:
        raise IllegalTransition(f"saga {run.saga.saga_id}: step {index} is not observed")
    return found


def is_rescue(run: SagaRun) -> bool:
    """The saga compensates itself (commands and events it sends), not by following its
    services' undo events."""
    reason = run.saga.failure_reason
    return reason.startswith(ABORT_PREFIX) or RESCUE_NOTE in reason


def expected_text(types: tuple[str, ...]) -> str:
    return " or ".join(types) if types else "nothing"


def next_actions(run: SagaRun, now: datetime, *, send: bool = True) -> tuple[Action, ...]:
    """The tracked counterpart of `SagaRun.next_actions`: queue what the states call for
    and say what the engine does next: nothing (terminal, or `send` False and a command
    is due: the driver sends it), wait (`AwaitCompletion`, parked until its deadline),
    or send a rescue compensation (only when `send`: the caller commits
    COMPENSATION_STARTED before sending)."""
    if run.status is SagaStatus.RUNNING:
        return _next_forward(run, now, send)
    if run.status is SagaStatus.COMPENSATING:
        return _next_undo(run, now, send)
    return ()


def _next_forward(run: SagaRun, now: datetime, send: bool) -> tuple[Action, ...]:
    for index in range(len(run.steps)):
        status = run.step_status(index)
        if status is StepStatus.COMPLETED:
            continue
        if status is StepStatus.WAITING:
            if waiting.waiting_expired(run, index, now):
                time_out(run, index, now)
                return next_actions(run, now, send=send)
            return (waiting.AwaitCompletion(waiting.parked_until(run)),)
        if status in (StepStatus.PENDING, StepStatus.STARTED):
            begin_waiting(run, index, now)
            return (waiting.AwaitCompletion(waiting.parked_until(run)),)
        raise IllegalTransition(
            f"saga {run.saga.saga_id} is RUNNING with step {run.steps[index].name} {status}"
        )
    run._fire_saga("complete", TransitionEvent.SAGA_COMPLETED, now)
    return ()


def begin_waiting(run: SagaRun, index: int, now: datetime) -> None:
    """The step's turn: it waits for one of its events, within its window from now (a
    PENDING step, or one an operator's retry restarted: a fresh window)."""
    step = observed(run, index)
    until = now + timedelta(seconds=step.within)
    trigger = "observe" if run.step_status(index) is StepStatus.PENDING else "accept"
    run._fire_step(
        index,
        trigger,
        TransitionEvent.STEP_WAITING,
        now,
        reason=f"expecting {expected_text((*step.completes_on, *step.fails_on))} "
        f"within {step.within:g}s",
        attempts=run.steps[index].attempts + 1,
        wait_deadline=until,
        wait_until=until,
        error="",
        next_attempt_time=None,
        completion_id="",
    )


def time_out(run: SagaRun, index: int, now: datetime) -> None:
    """A forward step's window passed without its event: flag the saga, or rescue it."""
    step = observed(run, index)
    name = run.steps[index].name
    error = f"no {expected_text((*step.completes_on, *step.fails_on))} within {step.within:g}s"
    tracking = run.definition.tracking
    assert tracking is not None
    if tracking.on_stuck is OnStuck.COMPENSATE:
        run._update_step(index, now, error=error, wait_deadline=None)
        run._log(TransitionEvent.STEP_TIMED_OUT, now, index, error=error)
        reason = f"step {name} timed out ({error}): {RESCUE_NOTE}"
        run._set_saga(now, failure_reason=reason, failed_step=name)
        run._fire_saga("compensate", TransitionEvent.SAGA_COMPENSATING, now, error=reason)
        return
    run._fire_step(
        index, "fail", TransitionEvent.STEP_TIMED_OUT, now, error=error, wait_deadline=None
    )
    reason = (
        f"step {name} timed out ({error}); flagged for an operator: the flow is not "
        "the orchestrator's to undo"
    )
    run._set_saga(now, failure_reason=reason, failed_step=name, needs_intervention=True)
    run._fire_saga("halt", TransitionEvent.SAGA_HALTED, now, error=reason)


def _next_undo(run: SagaRun, now: datetime, send: bool) -> tuple[Action, ...]:
    for index in reversed(range(len(run.steps))):
        status = run.step_status(index)
        record = run.steps[index]
        if status is StepStatus.COMPENSATING:
            if record.wait_deadline is not None:
                if waiting.waiting_expired(run, index, now):
                    _undo_timed_out(run, index, now)
                    return next_actions(run, now, send=send)
                return (waiting.AwaitCompletion(waiting.parked_until(run)),)
            if record.compensation_attempts > 0:
                return _resend(run, index, now) if send else ()
            # An operator's retry, or a switch to rescue: undo it afresh.
            actions = _undo(run, index, now, send)
            if actions is not None:
                return actions
            continue
        if status in (StepStatus.COMPLETED, StepStatus.WAITING, StepStatus.STARTED):
            actions = _undo(run, index, now, send)
            if actions is not None:
                return actions
    run._fire_saga("fail", TransitionEvent.SAGA_FAILED, now, error=run.saga.failure_reason)
    return ()


def _resend(run: SagaRun, index: int, now: datetime) -> tuple[Action, ...]:
    """A rescue compensation found in flight (a restart): sent again, same key."""
    event = observed(run, index).compensation_event
    due = run.steps[index].next_attempt_time
    if due is not None:
        return (SendCompensation(index, not_before=due, event=event),)
    run.compensation_retrying(index, RESTART_RESEND, now)
    return (SendCompensation(index, event=event),)


def _undo(run: SagaRun, index: int, now: datetime, send: bool) -> tuple[Action, ...] | None:
    """Undo step `index`: send its own compensation (a rescue), wait for its undo
    events, or None to pass over it (nothing undoes it)."""
    step = observed(run, index)
    if _own_compensation(run, index) and is_rescue(run):
        if not send:
            return ()
        if run.step_status(index) is StepStatus.COMPENSATING:
            run._update_step(index, now, compensation_attempts=1, error="", next_attempt_time=None)
            run._log(TransitionEvent.COMPENSATION_STARTED, now, index, error="", reason=RESCUE_NOTE)
        else:
            run._fire_step(
                index,
                "compensate",
                TransitionEvent.COMPENSATION_STARTED,
                now,
                reason=RESCUE_NOTE,
                compensation_attempts=1,
                wait_deadline=None,
            )
        return (SendCompensation(index, event=step.compensation_event),)
    if step.compensated_on:
        wait_for_undo(run, index, now)
        return (waiting.AwaitCompletion(waiting.parked_until(run)),)
    if run.step_status(index) is StepStatus.WAITING:
        run._update_step(index, now, wait_deadline=None)
    return None


def wait_for_undo(run: SagaRun, index: int, now: datetime, reason: str = "") -> None:
    """The step waits, COMPENSATING, for one of its `compensated_on` events, within its
    window from now."""
    step = observed(run, index)
    until = now + timedelta(seconds=step.within)
    why = reason or f"expecting {expected_text(step.compensated_on)} within {step.within:g}s"
    if run.step_status(index) is StepStatus.COMPENSATING:
        run._update_step(index, now, wait_deadline=until, wait_until=until, error="")
        run._log(TransitionEvent.STEP_WAITING, now, index, error="", reason=why)
        return
    run._fire_step(
        index,
        "compensate",
        TransitionEvent.STEP_WAITING,
        now,
        reason=why,
        wait_deadline=until,
        wait_until=until,
        error="",
    )


def _undo_timed_out(run: SagaRun, index: int, now: datetime) -> None:
    """No undo event within the window: a rescue sends the step's own compensation when
    it has one; otherwise (or under NEEDS_INTERVENTION) the saga waits for an operator."""
    step = observed(run, index)
    name = run.steps[index].name
    error = f"no {expected_text(step.compensated_on)} within {step.within:g}s"
    tracking = run.definition.tracking
    assert tracking is not None
    own = run.definition.all_steps[index].compensation is not None or bool(step.compensation_event)
    sent = run.steps[index].compensation_attempts > 0
    if tracking.on_stuck is OnStuck.COMPENSATE and own and not sent:
        run._update_step(index, now, error=error, wait_deadline=None, wait_until=None)
        run._log(TransitionEvent.STEP_TIMED_OUT, now, index, error=error)
        if not is_rescue(run):
            run._set_saga(now, failure_reason=f"{run.saga.failure_reason}; {RESCUE_NOTE}")
        return
    run._fire_step(
        index, "give_up", TransitionEvent.STEP_TIMED_OUT, now, error=error, wait_deadline=None
    )
    reason = f"{run.saga.failure_reason}; the undo of step {name} timed out ({error})"
    run._set_saga(now, failure_reason=reason, needs_intervention=True)
    run._fire_saga("fail", TransitionEvent.SAGA_FAILED, now, error=reason)


def abort(run: SagaRun, now: datetime, actor: str, reason: str) -> None:
    """An operator stops a tracked saga: a rescue from where it stands. RUNNING: the saga
    compensates itself (the waiting step too: its outcome is unknown). Flagged (it waits
    for an operator after a missed window): the same, from the stuck step. Unwinding
    through events: the orchestrator sends what it can itself instead of waiting."""
    why = f"{ABORT_PREFIX}{actor}: {reason}"
    if run.status is SagaStatus.RUNNING:
        run._begin_compensating_by_request(
            TransitionEvent.SAGA_ABORTED, now, reason=reason, actor=actor, failure=why
        )
        return
    if run.status is SagaStatus.COMPENSATING and not is_rescue(run):
        for index in range(len(run.steps)):
            record = run.steps[index]
            waits = run.step_status(index) is StepStatus.COMPENSATING and record.wait_deadline
            if waits and _own_compensation(run, index):
                run._update_step(index, now, wait_deadline=None, wait_until=None)
        run._set_saga(now, failure_reason=f"{run.saga.failure_reason}; {RESCUE_NOTE}: {why}")
        run._log(TransitionEvent.SAGA_ABORTED, now, None, error="", actor=actor, reason=reason)
        return
    if run.status is SagaStatus.FAILED and run.saga.needs_intervention:
        _abort_flagged(run, now, actor, reason, why)
        return
    raise IllegalTransition(
        f"saga {run.saga.saga_id} is {run.status}; a tracked saga can be aborted while it "
        "runs, unwinds, or waits for an operator"
    )


def _abort_flagged(run: SagaRun, now: datetime, actor: str, reason: str, why: str) -> None:
    index = run.stuck_step()
    what = f"saga {run.saga.saga_id} {run.steps[index].name}"
    if run.step_status(index) is StepStatus.COMPENSATION_FAILED:
        fire(STEP_MOVES, run._step_models[index], "retry_compensation", what)
        run._update_step(
            index, now, status=run.step_status(index), compensation_attempts=0, error=""
        )
        failure = f"{run.saga.failure_reason}; {RESCUE_NOTE}: {why}"
    else:
        step = observed(run, index)
        if _own_compensation(run, index) or step.compensated_on:
            # Its outcome is unknown: undone with the others (STARTED, as if never answered).
            fire(STEP_MOVES, run._step_models[index], "retry_forward", what)
            run._update_step(index, now, status=run.step_status(index), error="")
        failure = why
    run._set_saga(now, needs_intervention=False, failure_reason=failure)
    fire(SAGA_MOVES, run._saga_model, "resume_compensation", f"saga {run.saga.saga_id}")
    run._set_saga(now, status=run.status)
    run._log(TransitionEvent.SAGA_ABORTED, now, None, error="", actor=actor, reason=reason)


def _own_compensation(run: SagaRun, index: int) -> bool:
    """The orchestrator can undo the step itself: a compensation call or event."""
    step = run.definition.all_steps[index]
    return step.compensation is not None or bool(observed(run, index).compensation_event)
