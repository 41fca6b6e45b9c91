"""The pure saga state machine: what happens next, and which transitions that takes.

Two `transitions` machines, one for the saga and one for its steps, are shared
by every saga in the process (models are added and removed, never a machine per
saga). `SagaRun` wraps one saga's models: the executor asks it for the next
action, tells it what a participant answered, and persists the `SagaCommit`s it
hands out before acting. Nothing here does I/O; an illegal transition raises
`IllegalTransition`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from transitions import Machine, MachineError

from orchestrator.definition import SagaDefinition
from orchestrator.errors import SagaError
from orchestrator.records import (
    ENGINE_ACTOR,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)


class IllegalTransition(SagaError):
    """A trigger was fired in a state that does not allow it: an engine bug or a corrupt record."""

    reason = "ILLEGAL_TRANSITION"


_SAGA_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "complete", "source": SagaStatus.RUNNING, "dest": SagaStatus.COMPLETED},
    {"trigger": "compensate", "source": SagaStatus.RUNNING, "dest": SagaStatus.COMPENSATING},
    {"trigger": "fail", "source": SagaStatus.COMPENSATING, "dest": SagaStatus.FAILED},
]

_STEP_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start", "source": StepStatus.PENDING, "dest": StepStatus.STARTED},
    {"trigger": "succeed", "source": StepStatus.STARTED, "dest": StepStatus.COMPLETED},
    {"trigger": "fail", "source": StepStatus.STARTED, "dest": StepStatus.FAILED},
    # STARTED: the outcome is unknown (no reply, or a crash), so it is undone too.
    {
        "trigger": "compensate",
        "source": [StepStatus.COMPLETED, StepStatus.STARTED],
        "dest": StepStatus.COMPENSATING,
    },
    {"trigger": "compensated", "source": StepStatus.COMPENSATING, "dest": StepStatus.COMPENSATED},
    {
        "trigger": "give_up",
        "source": StepStatus.COMPENSATING,
        "dest": StepStatus.COMPENSATION_FAILED,
    },
]


def _machine(states: type[SagaStatus] | type[StepStatus], finals: set[Any], rules: Any) -> Machine:
    return Machine(
        model=None,
        states=[{"name": s, "final": s in finals} for s in states],
        transitions=rules,
        initial=next(iter(states)),
        auto_transitions=False,
    )


SAGA_MACHINE = _machine(SagaStatus, {SagaStatus.COMPLETED, SagaStatus.FAILED}, _SAGA_TRANSITIONS)
STEP_MACHINE = _machine(StepStatus, {StepStatus.COMPENSATED}, _STEP_TRANSITIONS)


def _fire(machine: Machine, model: object, trigger: str, what: str) -> None:
    try:
        machine.events[trigger].trigger(model)
    except MachineError as error:
        raise IllegalTransition(f"{what}: cannot {trigger} from {model.state}") from error  # type: ignore[attr-defined]


class _Model:
    """A bare model object for a shared machine; `state` is set by the machine."""

    state: Any


# --- actions: what the executor must do next -------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAction:
    """Send (or send again, same idempotency key) the action of step `index`."""

    index: int


@dataclass(frozen=True, slots=True)
class SendCompensation:
    """Send (or send again) the compensation of step `index`."""

    index: int


Action = SendAction | SendCompensation


class SagaRun:
    """One saga in memory: its machine models and the transitions not yet persisted.

    Every mutating method fires triggers and queues log rows; `take_commit`
    hands them out as one `SagaCommit`. The executor must persist that commit
    before it sends any command, which is what makes the store write-ahead.
    """

    def __init__(
        self,
        definition: SagaDefinition,
        saga: SagaRecord,
        steps: list[StepRecord],
        last_seq: int,
    ) -> None:
        if [s.name for s in steps] != [s.name for s in definition.all_steps]:
            raise IllegalTransition(
                f"saga {saga.saga_id}: stored steps do not match {definition.name} "
                f"v{definition.version}"
            )
        self.definition = definition
        self.saga = saga
        self.steps = list(steps)
        self._saga_model = _Model()
        self._step_models = [_Model() for _ in steps]
        SAGA_MACHINE.add_model(self._saga_model, initial=saga.status)
        for model, record in zip(self._step_models, steps, strict=True):
            STEP_MACHINE.add_model(model, initial=record.status)
        self._seq = last_seq
        self._persisted_version = saga.version
        self._pending: list[TransitionRecord] = []
        self._changed_steps: set[int] = set()

    def release(self) -> None:
        """Detach the models from the shared machines; call once the run is finished with."""
        SAGA_MACHINE.remove_model(self._saga_model)
        for model in self._step_models:
            STEP_MACHINE.remove_model(model)

    # --- reading --------------------------------------------------------------------

    @property
    def status(self) -> SagaStatus:
        return SagaStatus(self._saga_model.state)

    def step_status(self, index: int) -> StepStatus:
        return StepStatus(self._step_models[index].state)

    def next_actions(self, now: datetime) -> tuple[Action, ...]:
        """Decide, from the current states alone, what the executor sends next.

        RUNNING: the first stage not wholly COMPLETED; each of its PENDING steps
        is started and each STARTED one (only after a restart) is sent again, all
        at once for a Parallel group. COMPENSATING: walking backwards, one step at
        a time: a step being compensated is sent again, else the first COMPLETED or
        STARTED step with a compensation is started. An empty tuple means the saga
        is terminal; finishing it was queued here.
        """
        status = self.status
        if status is SagaStatus.RUNNING:
            for stage in self.definition.stages:
                actions: list[Action] = []
                for index in stage:
                    step_status = self.step_status(index)
                    if step_status is StepStatus.COMPLETED:
                        continue
                    if step_status is StepStatus.PENDING:
                        self._fire_step(
                            index, "start", TransitionEvent.STEP_STARTED, now, attempts=1
                        )
                    elif step_status is StepStatus.STARTED:
                        # Only a restart gets here: count the resend before it goes out.
                        self.action_retrying(index, "resent after a restart", now)
                    else:
                        raise IllegalTransition(
                            f"saga {self.saga.saga_id} is RUNNING with step "
                            f"{self.steps[index].name} {step_status}"
                        )
                    actions.append(SendAction(index))
                if actions:
                    return tuple(actions)
            self._fire_saga("complete", TransitionEvent.SAGA_COMPLETED, now)
            return ()
        if status is SagaStatus.COMPENSATING:
            for index in reversed(range(len(self.steps))):
                step_status = self.step_status(index)
                if step_status is StepStatus.COMPENSATING:
                    self.compensation_retrying(index, "resent after a restart", now)
                    return (SendCompensation(index),)
                if step_status in (StepStatus.COMPLETED, StepStatus.STARTED):
                    if self.definition.all_steps[index].compensation is None:
                        continue
                    self._start_compensation(index, now)
                    return (SendCompensation(index),)
            self._fire_saga(
                "fail", TransitionEvent.SAGA_FAILED, now, error=self.saga.failure_reason
            )
            return ()
        return ()

    # --- what a participant answered -------------------------------------------------

    def action_succeeded(self, index: int, result: bytes, now: datetime) -> None:
        """Store the reply with the step: compensations are built from it."""
        self._fire_step(
            index, "succeed", TransitionEvent.STEP_COMPLETED, now, result=result, error=""
        )

    def action_retrying(self, index: int, error: str, now: datetime) -> None:
        """A transient error: the next attempt, same key, is counted before it is sent."""
        record = self.steps[index]
        self._update_step(index, now, attempts=record.attempts + 1, error=error)
        self._log(TransitionEvent.STEP_RETRY_SCHEDULED, now, index, error=error)

    def action_rejected(self, index: int, error: str, now: datetime) -> None:
        """A definitive failure: nothing happened at the participant; undo the earlier steps."""
        self._fire_step(index, "fail", TransitionEvent.STEP_FAILED, now, error=error)
        self._begin_compensating(index, error, now)

    def action_outcome_unknown(self, index: int, error: str, now: datetime) -> None:
        """Retries exhausted without a definitive answer: the step may have happened, so it
        is compensated together with the earlier steps."""
        self._update_step(index, now, error=error)
        self._log(TransitionEvent.STEP_FAILED, now, index, error=error)
        self._begin_compensating(index, error, now)

    def compensation_succeeded(self, index: int, now: datetime) -> None:
        self._fire_step(index, "compensated", TransitionEvent.COMPENSATION_COMPLETED, now)

    def compensation_retrying(self, index: int, error: str, now: datetime) -> None:
        record = self.steps[index]
        self._update_step(
            index, now, compensation_attempts=record.compensation_attempts + 1, error=error
        )
        self._log(TransitionEvent.COMPENSATION_RETRY_SCHEDULED, now, index, error=error)

    def compensation_gave_up(self, index: int, error: str, now: datetime) -> None:
        """The compensation's retries are exhausted: stop, and flag the saga for an operator."""
        name = self.steps[index].name
        self._fire_step(index, "give_up", TransitionEvent.COMPENSATION_FAILED, now, error=error)
        reason = (
            f"{self.saga.failure_reason}; compensation of step {name} gave up after "
            f"{self.steps[index].compensation_attempts} attempts: {error}"
        )
        self._set_saga(now, failure_reason=reason, needs_intervention=True)
        self._fire_saga("fail", TransitionEvent.SAGA_FAILED, now, error=reason)

    # --- persistence hand-off ---------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self._pending)

    def take_commit(self) -> SagaCommit:
        """Everything queued since the last commit, as one unit with the next version."""
        commit = SagaCommit(
            saga=self.saga,
            expected_version=self._persisted_version,
            steps=tuple(self.steps[i] for i in sorted(self._changed_steps)),
            transitions=tuple(self._pending),
        )
        self._persisted_version = self.saga.version
        self._pending = []
        self._changed_steps = set()
        return commit

    # --- internals --------------------------------------------------------------------

    def _begin_compensating(self, index: int, error: str, now: datetime) -> None:
        if self.status is SagaStatus.COMPENSATING:
            return  # a sibling in the same Parallel group failed first
        reason = f"step {self.steps[index].name} failed: {error}"
        self._set_saga(now, failure_reason=reason, failed_step=self.steps[index].name)
        self._fire_saga("compensate", TransitionEvent.SAGA_COMPENSATING, now, error=reason)

    def _start_compensation(self, index: int, now: datetime) -> None:
        self._fire_step(
            index, "compensate", TransitionEvent.COMPENSATION_STARTED, now, compensation_attempts=1
        )

    def _fire_saga(
        self, trigger: str, event: TransitionEvent, now: datetime, error: str = ""
    ) -> None:
        _fire(SAGA_MACHINE, self._saga_model, trigger, f"saga {self.saga.saga_id}")
        self._set_saga(now, status=self.status)
        self._log(event, now, None, error=error)

    def _fire_step(
        self,
        index: int,
        trigger: str,
        event: TransitionEvent,
        now: datetime,
        **changes: Any,
    ) -> None:
        name = self.steps[index].name
        _fire(STEP_MACHINE, self._step_models[index], trigger, f"saga {self.saga.saga_id} {name}")
        if self.steps[index].start_time is None:
            changes["start_time"] = now
        self._update_step(index, now, status=self.step_status(index), **changes)
        self._log(event, now, index, error=changes.get("error", ""))

    def _update_step(self, index: int, now: datetime, **changes: Any) -> None:
        self.steps[index] = dataclasses.replace(self.steps[index], update_time=now, **changes)
        self._changed_steps.add(index)
        self._set_saga(now)

    def _set_saga(self, now: datetime, **changes: Any) -> None:
        version = self._persisted_version + 1
        self.saga = dataclasses.replace(self.saga, update_time=now, version=version, **changes)

    def _log(self, event: TransitionEvent, now: datetime, index: int | None, error: str) -> None:
        self._seq += 1
        step = self.steps[index] if index is not None else None
        attempt = 0
        if step is not None:
            in_compensation = step.status in (
                StepStatus.COMPENSATING,
                StepStatus.COMPENSATED,
                StepStatus.COMPENSATION_FAILED,
            )
            attempt = step.compensation_attempts if in_compensation else step.attempts
        self._pending.append(
            TransitionRecord(
                saga_id=self.saga.saga_id,
                seq=self._seq,
                event=event,
                time=now,
                saga_status=self.status,
                step=step.name if step else "",
                step_status=step.status if step else None,
                attempt=attempt,
                error=error,
                actor=ENGINE_ACTOR,
            )
        )
