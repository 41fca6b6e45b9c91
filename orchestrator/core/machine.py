"""The pure saga state machine: what happens next, and which transitions that takes.

Two `transitions` machines, one for the saga and one for its steps, define the
legal moves (orchestrator/core/moves.py). Their transition tables are read once, at
import, and every saga moves by looking its trigger up there: no model is ever
added to a machine.
`SagaRun` holds one saga's states: the executor asks it for the next action,
tells it what a participant answered, and persists the `SagaCommit`s it hands
out before acting. The failure policy lives here too: given the kind of a failed
attempt, the time and a random draw, `SagaRun` decides between retrying (and
when), rejecting, compensating an unknown outcome, halting for an operator and
giving up. Nothing here does I/O or imports a transport; an illegal transition
raises `IllegalTransition`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from orchestrator.core import tracked_moves, waiting
from orchestrator.core.actions import (
    AcquireLocks,
    Action,
    AfterFailure,
    Command,
    ErrorKind,
    SendAction,
    SendCompensation,
    Verdict,
    describe_blockers,
    key_names,
)
from orchestrator.core.definition import LockPolicy, SagaDefinition
from orchestrator.core.moves import (
    SAGA_MACHINE,
    SAGA_MOVES,
    STEP_MACHINE,
    STEP_MOVES,
    IllegalTransition,
    Model,
    fire,
    replaced,
)
from orchestrator.core.records import (
    ENGINE_ACTOR,
    LockAttempt,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)

AwaitCompletion = waiting.AwaitCompletion

__all__ = [
    "SAGA_MACHINE",
    "SAGA_MOVES",
    "STEP_MACHINE",
    "STEP_MOVES",
    "AcquireLocks",
    "Action",
    "AfterFailure",
    "AwaitCompletion",
    "Command",
    "ErrorKind",
    "IllegalTransition",
    "SagaRun",
    "SendAction",
    "SendCompensation",
    "Verdict",
]

OPERATOR_RETRY_SEND = "sent again on an operator's retry"
RESTART_RESEND = "resent after a restart"


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
        self._saga_model = Model(saga.status)
        self._step_models = [Model(record.status) for record in steps]
        self._seq = last_seq
        self._persisted_version = saga.version
        self._pending: list[TransitionRecord] = []
        self._changed_steps: set[int] = set()
        self._released_in_commit: tuple[str, ...] = ()

    # --- reading --------------------------------------------------------------------

    @property
    def status(self) -> SagaStatus:
        return cast(SagaStatus, self._saga_model.state)

    def step_status(self, index: int) -> StepStatus:
        return cast(StepStatus, self._step_models[index].state)

    def next_actions(self, now: datetime) -> tuple[Action, ...]:
        """Decide, from the current states alone, what the executor sends next.

        RUNNING: the first stage not wholly COMPLETED; each of its PENDING steps
        is started and each STARTED one (only after a restart) is sent again, all
        at once for a Parallel group. COMPENSATING: walking backwards, one step at
        a time: a step being compensated is sent again, else the first COMPLETED or
        STARTED step with a compensation is started; read-only steps passed on the
        way become NOTHING_TO_UNDO, with no command. An empty tuple means the saga
        is terminal; finishing it was queued here. A tracked saga (observed steps)
        decides in orchestrator/core/tracked_moves.py.
        """
        if self.definition.tracking is not None:
            return tracked_moves.next_actions(self, now)
        status = self.status
        if status is SagaStatus.RUNNING and self.deadline_passed(now):
            self._begin_compensating_by_request(
                TransitionEvent.SAGA_DEADLINE_PASSED,
                now,
                reason=f"saga deadline {self.saga.deadline_time} passed",
            )
            status = self.status
        if status is SagaStatus.RUNNING:
            return self._next_forward(now)
        if status is SagaStatus.COMPENSATING:
            return self._next_compensation(now)
        return ()

    def _next_forward(self, now: datetime) -> tuple[Action, ...]:
        lock_stage = self.definition.lock_stage
        for position, stage in enumerate(self.definition.stages):
            if lock_stage is not None and position >= lock_stage and self.needs_locks():
                return self._locks_first(now)
            actions: list[Action] = []
            for index in stage:
                step_status = self.step_status(index)
                if step_status is StepStatus.COMPLETED:
                    continue
                if step_status is StepStatus.WAITING:
                    if waiting.waiting_expired(self, index, now):
                        waiting.time_out(self, index, now)
                        return self.next_actions(now)
                    continue
                if step_status is StepStatus.PENDING:
                    self._fire_step(index, "start", TransitionEvent.STEP_STARTED, now, attempts=1)
                elif step_status is StepStatus.STARTED:
                    # Only a restart or an operator's retry gets here.
                    due = self.steps[index].next_attempt_time
                    if due is not None:
                        # The scheduled attempt was counted when it was scheduled.
                        actions.append(SendAction(index, not_before=due))
                        continue
                    if self.steps[index].attempts == 0:
                        self._restart_after_retry(index, TransitionEvent.STEP_STARTED, now)
                    else:
                        self.action_retrying(index, RESTART_RESEND, now)
                else:
                    raise IllegalTransition(
                        f"saga {self.saga.saga_id} is RUNNING with step "
                        f"{self.steps[index].name} {step_status}"
                    )
                actions.append(SendAction(index))
            if actions:
                return tuple(actions)
            if any(self.step_status(i) is StepStatus.WAITING for i in stage):
                return (waiting.AwaitCompletion(waiting.parked_until(self)),)
        self._fire_saga("complete", TransitionEvent.SAGA_COMPLETED, now)
        return ()

    # --- semantic locks -----------------------------------------------------------------

    def needs_locks(self) -> bool:
        """The saga has lock keys it does not hold yet (and is not done)."""
        return bool(self.saga.lock_keys) and not self.saga.locks_held

    def lock_give_up_time(self) -> datetime | None:
        """When a queued saga stops waiting for its locks; None to wait for as long as it takes."""
        locks = self.definition.locks
        since = self.saga.lock_wait_since
        if locks is None or locks.max_wait is None or since is None:
            return None
        return since + timedelta(seconds=locks.max_wait)

    def _locks_first(self, now: datetime) -> tuple[Action, ...]:
        give_up_at = self.lock_give_up_time()
        if give_up_at is not None and now >= give_up_at:
            since = self.saga.lock_wait_since
            waited = (now - since).total_seconds() if since is not None else 0.0
            keys = key_names(self.saga.lock_keys, self.saga.namespace)
            self._begin_compensating_by_request(
                TransitionEvent.LOCK_WAIT_EXPIRED,
                now,
                reason=f"gave up waiting for lock key(s) {keys} after {waited:.1f}s",
            )
            return self._next_compensation(now)
        return (AcquireLocks(self.saga.lock_keys, give_up_at),)

    def locks_answered(self, attempt: LockAttempt, now: datetime) -> bool:
        """Record what the store found when the saga asked for its keys; True if it holds
        them now. The first refusal queues the saga (its place in every key's queue is
        taken in the same transaction); later refusals record nothing."""
        if attempt.acquired:
            self._set_saga(now, locks_held=True)
            self._log(
                TransitionEvent.LOCKS_ACQUIRED,
                now,
                None,
                error="",
                reason=key_names(self.saga.lock_keys, self.saga.namespace),
            )
            return True
        locks = self.definition.locks
        if locks is not None and locks.policy is LockPolicy.REJECT:
            # StartSaga checked the keys; another saga took one since.
            self._begin_compensating_by_request(
                TransitionEvent.LOCKS_REFUSED,
                now,
                reason=describe_blockers(attempt, self.saga.namespace),
            )
            return False
        if not attempt.queued:
            self._set_saga(now, lock_wait_since=now)
            reason = f"ticket {attempt.ticket}: {describe_blockers(attempt, self.saga.namespace)}"
            self._log(TransitionEvent.LOCKS_WAITING, now, None, error="", reason=reason)
        return False

    def lock_broken(self, now: datetime, actor: str, reason: str) -> None:
        """An operator takes the saga's locks away (it goes on without them): the keys and
        the saga's places in their queues are released in this commit. A saga that
        finished keeps the names of the keys it released, but holds none of them."""
        if not self.saga.lock_keys or not (
            self.saga.locks_held or self.saga.lock_wait_since is not None
        ):
            raise IllegalTransition(f"saga {self.saga.saga_id} holds and waits for no lock")
        self._released_in_commit = self.saga.lock_keys
        keys = key_names(self.saga.lock_keys, self.saga.namespace)
        self._set_saga(now, lock_keys=(), locks_held=False, lock_wait_since=None)
        self._log(TransitionEvent.LOCK_BROKEN, now, None, error=keys, actor=actor, reason=reason)

    def _releases_locks(self) -> bool:
        """The commit being taken ends the saga for good: it gives up its keys and queue
        places, unless it waits for an operator, who finds it still holding them."""
        return (
            self.status.is_terminal
            and not self.saga.needs_intervention
            and bool(self.saga.lock_keys)
            and (self.saga.locks_held or self.saga.lock_wait_since is not None)
        )

    def _next_compensation(self, now: datetime) -> tuple[Action, ...]:
        for index in reversed(range(len(self.steps))):
            step_status = self.step_status(index)
            if step_status is StepStatus.COMPENSATING:
                due = self.steps[index].next_attempt_time
                if due is not None:
                    return (SendCompensation(index, not_before=due),)
                if self.steps[index].compensation_attempts == 0:
                    self._restart_after_retry(index, TransitionEvent.COMPENSATION_STARTED, now)
                else:
                    self.compensation_retrying(index, RESTART_RESEND, now)
                return (SendCompensation(index),)
            if step_status in (StepStatus.COMPLETED, StepStatus.STARTED, StepStatus.WAITING):
                step = self.definition.all_steps[index]
                if step.read_only:
                    # Changed nothing: recorded as such, in the commit of the next move.
                    self._fire_step(
                        index, "nothing_to_undo", TransitionEvent.STEP_NOTHING_TO_UNDO, now
                    )
                    continue
                if step.compensation is None:
                    continue
                self._start_compensation(index, now)
                return (SendCompensation(index),)
        self._fire_saga("fail", TransitionEvent.SAGA_FAILED, now, error=self.saga.failure_reason)
        return ()

    # --- what a participant answered -------------------------------------------------

    def action_succeeded(self, index: int, result: bytes, now: datetime) -> None:
        """Store the reply with the step: compensations are built from it."""
        self._fire_step(
            index,
            "succeed",
            TransitionEvent.STEP_COMPLETED,
            now,
            result=result,
            error="",
            next_attempt_time=None,
        )

    def action_retrying(
        self, index: int, error: str, now: datetime, due: datetime | None = None
    ) -> None:
        """A transient error: the next attempt, same key, is counted (and its time kept)
        before it is sent, so a restart neither resets nor skips the schedule."""
        record = self.steps[index]
        self._update_step(
            index, now, attempts=record.attempts + 1, error=error, next_attempt_time=due
        )
        self._log(TransitionEvent.STEP_RETRY_SCHEDULED, now, index, error=error)

    def action_rejected(
        self, index: int, error: str, now: datetime, actor: str = ENGINE_ACTOR, reason: str = ""
    ) -> None:
        """A definitive failure: nothing happened at the participant; undo the earlier steps.
        `actor` and `reason` name who failed it when that was not the engine (a person
        rejecting a task, a participant's FailStep)."""
        self._fire_step(
            index,
            "fail",
            TransitionEvent.STEP_FAILED,
            now,
            actor=actor,
            reason=reason,
            error=error,
            next_attempt_time=None,
        )
        self._begin_compensating(index, error, now)

    def action_outcome_unknown(self, index: int, error: str, now: datetime) -> None:
        """Retries exhausted without a definitive answer: the step may have happened, so it
        is compensated together with the earlier steps."""
        self._update_step(index, now, error=error, next_attempt_time=None)
        self._log(TransitionEvent.STEP_FAILED, now, index, error=error)
        self._begin_compensating(index, error, now)

    def action_stuck(
        self, index: int, error: str, now: datetime, actor: str = ENGINE_ACTOR, reason: str = ""
    ) -> None:
        """A step that must not be compensated (past the pivot, or the pivot itself with
        an unknown outcome) ran out of attempts: halt and flag the saga for an operator."""
        name = self.steps[index].name
        self._fire_step(
            index,
            "fail",
            TransitionEvent.STEP_FAILED,
            now,
            actor=actor,
            reason=reason,
            error=error,
            next_attempt_time=None,
        )
        reason = f"step {name} cannot go forward and must not be undone: {error}"
        self._set_saga(now, failure_reason=reason, failed_step=name, needs_intervention=True)
        self._fire_saga("halt", TransitionEvent.SAGA_HALTED, now, error=reason)

    def compensation_succeeded(self, index: int, now: datetime) -> None:
        self._fire_step(
            index,
            "compensated",
            TransitionEvent.COMPENSATION_COMPLETED,
            now,
            next_attempt_time=None,
        )

    def compensation_retrying(
        self, index: int, error: str, now: datetime, due: datetime | None = None
    ) -> None:
        record = self.steps[index]
        self._update_step(
            index,
            now,
            compensation_attempts=record.compensation_attempts + 1,
            error=error,
            next_attempt_time=due,
        )
        self._log(TransitionEvent.COMPENSATION_RETRY_SCHEDULED, now, index, error=error)

    def compensation_gave_up(self, index: int, error: str, now: datetime) -> None:
        """The compensation's retries are exhausted: stop, and flag the saga for an operator."""
        name = self.steps[index].name
        self._fire_step(
            index,
            "give_up",
            TransitionEvent.COMPENSATION_FAILED,
            now,
            error=error,
            next_attempt_time=None,
        )
        reason = (
            f"{self.saga.failure_reason}; compensation of step {name} gave up after "
            f"{self.steps[index].compensation_attempts} attempts: {error}"
        )
        self._set_saga(now, failure_reason=reason, needs_intervention=True)
        self._fire_saga("fail", TransitionEvent.SAGA_FAILED, now, error=reason)

    # --- the failure policy ---------------------------------------------------------

    def action_failed(
        self, index: int, kind: ErrorKind, error: str, now: datetime, unit_random: float
    ) -> AfterFailure:
        """Decide, and queue, where a failed attempt of step `index`'s action leads.

        A transient error (any error, for a `retriable` step) is retried while the
        step's policy allows, after a backoff spread by `unit_random` (in [0, 1)).
        Otherwise: if the saga's deadline has passed, nothing is recorded (the saga
        compensates next); a rejection before the pivot's later stages fails the step;
        a step that must not be undone halts the saga; anything else leaves the
        outcome unknown, so the step is compensated too (a read-only step with an
        unknown outcome changed nothing either way: the rollback passes over it).
        """
        step = self.definition.all_steps[index]
        policy = self.definition.action_retry(step)
        attempts = self.steps[index].attempts
        if (kind is ErrorKind.TRANSIENT or step.retriable) and attempts < policy.max_attempts:
            due = now + timedelta(seconds=policy.backoff(attempts, unit_random))
            self.action_retrying(index, error, now, due)
            return AfterFailure(Verdict.RETRY, due)
        if self.deadline_passed(now):
            return AfterFailure(Verdict.DEADLINE_PASSED)
        forward_only = self.definition.is_forward_only(index)
        if kind is ErrorKind.REJECTED and not forward_only:
            self.action_rejected(index, error, now)
            return AfterFailure(Verdict.REJECTED)
        if forward_only or step.is_pivot:
            self.action_stuck(index, f"after {attempts} attempt(s): {error}", now)
            return AfterFailure(Verdict.STUCK)
        self.action_outcome_unknown(
            index, f"outcome unknown after {attempts} attempt(s): {error}", now
        )
        return AfterFailure(Verdict.OUTCOME_UNKNOWN)

    def compensation_failed(
        self, index: int, error: str, now: datetime, unit_random: float
    ) -> AfterFailure:
        """Decide, and queue, where a failed compensation attempt leads: every error is
        retried (giving up leaves the saga for an operator) until the attempts run out."""
        step = self.definition.all_steps[index]
        policy = self.definition.compensation_retry_of(step)
        attempts = self.steps[index].compensation_attempts
        if attempts >= policy.max_attempts:
            self.compensation_gave_up(index, error, now)
            return AfterFailure(Verdict.GAVE_UP)
        due = now + timedelta(seconds=policy.backoff(attempts, unit_random))
        self.compensation_retrying(index, error, now, due)
        return AfterFailure(Verdict.RETRY, due)

    def request_unbuildable(self, action: Command, error: str, now: datetime) -> AfterFailure:
        """A request builder failed on this saga's data: no attempt can succeed, so an
        action is rejected and a compensation gives up at once."""
        message = f"building the request failed: {error}"
        if isinstance(action, SendAction):
            self.action_rejected(action.index, message, now)
            return AfterFailure(Verdict.REJECTED)
        self.compensation_gave_up(action.index, message, now)
        return AfterFailure(Verdict.GAVE_UP)

    def attempt_timeout(self, timeout: float, now: datetime) -> float:
        """A step's per-attempt deadline, cut short by the saga's own (before the pivot)."""
        deadline = self.saga.deadline_time
        if deadline is None or self.past_pivot():
            return timeout
        remaining = (deadline - now).total_seconds()
        return max(0.001, min(timeout, remaining))

    def wake_time(self, due: datetime) -> datetime:
        """When to wake for an attempt due at `due`: the saga's deadline if sooner (before
        the pivot), so a saga out of time stops waiting and compensates."""
        deadline = self.saga.deadline_time
        if deadline is not None and not self.past_pivot():
            return min(due, deadline)
        return due

    # --- deadlines and operators ------------------------------------------------------

    def past_pivot(self) -> bool:
        """True once the pivot (a step that cannot be undone) has started: from then on
        neither an abort nor the saga's deadline may stop it. A pivot its participant
        refuses still compensates the steps before it (`action_failed`)."""
        pivot = self.definition.pivot_stage
        if pivot is None:
            return False
        return any(
            self.step_status(i) is not StepStatus.PENDING for i in self.definition.stages[pivot]
        )

    def deadline_passed(self, now: datetime) -> bool:
        """A RUNNING saga's deadline has passed and it may still be compensated."""
        deadline = self.saga.deadline_time
        return (
            deadline is not None
            and now >= deadline
            and self.status is SagaStatus.RUNNING
            and not self.past_pivot()
        )

    def abort(self, now: datetime, actor: str, reason: str) -> None:
        """An operator stops a RUNNING saga: it compensates what it completed. A tracked
        saga is rescued (orchestrator/core/tracked_moves.py)."""
        if self.definition.tracking is not None:
            return tracked_moves.abort(self, now, actor, reason)
        if self.status is not SagaStatus.RUNNING:
            raise IllegalTransition(
                f"saga {self.saga.saga_id} is {self.status}; only a RUNNING saga can be aborted"
            )
        if self.past_pivot():
            raise IllegalTransition(
                f"saga {self.saga.saga_id} has passed its pivot step; it can only go forward"
            )
        self._begin_compensating_by_request(
            TransitionEvent.SAGA_ABORTED,
            now,
            reason=reason,
            actor=actor,
            failure=f"aborted by {actor}: {reason}",
        )

    def stuck_step(self) -> int:
        """The step an operator must deal with in a saga that needs intervention."""
        if not (self.status is SagaStatus.FAILED and self.saga.needs_intervention):
            raise IllegalTransition(
                f"saga {self.saga.saga_id} is {self.status} and does not need intervention"
            )
        for index in range(len(self.steps)):
            if self.step_status(index) is StepStatus.COMPENSATION_FAILED:
                return index
        for index in range(len(self.steps)):
            if self.step_status(index) is StepStatus.FAILED and self.steps[index].name == (
                self.saga.failed_step
            ):
                return index
        raise IllegalTransition(f"saga {self.saga.saga_id}: no stuck step found")

    def retry(self, now: datetime, actor: str, reason: str) -> None:
        """An operator resumes a saga that needs intervention from where it stopped: the
        stuck compensation (or forward step) gets a fresh budget of attempts."""
        index = self.stuck_step()
        if self.step_status(index) is StepStatus.COMPENSATION_FAILED:
            self._fire_step(
                index,
                "retry_compensation",
                TransitionEvent.SAGA_RETRIED,
                now,
                compensation_attempts=0,
                error="",
                next_attempt_time=None,
                actor=actor,
                reason=reason,
            )
            self._set_saga(
                now,
                needs_intervention=False,
                failure_reason=f"{self.saga.failure_reason}; retried by {actor}: {reason}",
            )
            fire(SAGA_MOVES, self._saga_model, "resume_compensation", self.saga.saga_id)
        else:
            self._fire_step(
                index,
                "retry_forward",
                TransitionEvent.SAGA_RETRIED,
                now,
                attempts=0,
                error="",
                next_attempt_time=None,
                actor=actor,
                reason=reason,
                # An asynchronous step's new wait: the earlier wait's tokens die here.
                completion_tokens=(),
                completion_id="",
            )
            self._set_saga(now, needs_intervention=False, failure_reason="", failed_step="")
            fire(SAGA_MOVES, self._saga_model, "resume_forward", self.saga.saga_id)
        self._set_saga(now, status=self.status)

    def resolve(self, step: str, now: datetime, actor: str, reason: str) -> None:
        """An operator declares a stuck step done by hand (a compensation carried out some
        other way, or a forward step completed outside the saga); the saga moves on."""
        index = self.stuck_step()
        if self.steps[index].name != step:
            raise IllegalTransition(
                f"saga {self.saga.saga_id} is stuck at step {self.steps[index].name}, not at {step}"
            )
        if self.step_status(index) is StepStatus.COMPENSATION_FAILED:
            self._fire_step(
                index,
                "resolve_compensation",
                TransitionEvent.STEP_RESOLVED,
                now,
                actor=actor,
                reason=reason,
            )
            self._set_saga(
                now,
                needs_intervention=False,
                failure_reason=f"{self.saga.failure_reason}; {step} resolved by {actor}: {reason}",
            )
            fire(SAGA_MOVES, self._saga_model, "resume_compensation", self.saga.saga_id)
        else:
            self._fire_step(
                index,
                "resolve_forward",
                TransitionEvent.STEP_RESOLVED,
                now,
                actor=actor,
                reason=reason,
            )
            self._set_saga(now, needs_intervention=False, failure_reason="", failed_step="")
            fire(SAGA_MOVES, self._saga_model, "resume_forward", self.saga.saga_id)
        self._set_saga(now, status=self.status)

    def record_output(self, output: bytes | None, now: datetime) -> None:
        """Keep a COMPLETED saga's output (a serialized Any) with its terminal commit."""
        if self.status is not SagaStatus.COMPLETED:
            raise IllegalTransition(f"saga {self.saga.saga_id} is {self.status}, not COMPLETED")
        self._set_saga(now, output=output)

    # --- persistence hand-off ---------------------------------------------------------

    @property
    def persisted_version(self) -> int:
        """The saga version the store holds if every handed-out commit was applied."""
        return self._persisted_version

    def has_pending(self) -> bool:
        """Something to commit: log rows, or a step changed without one (a completion
        token issued, a heartbeat's new deadline)."""
        return bool(self._pending or self._changed_steps)

    def take_commit(self) -> SagaCommit:
        """Everything queued since the last commit, as one unit with the next version.

        The commit that makes the saga terminal (but for an operator) also releases its
        lock keys, and logs that it did."""
        if self._pending or self._changed_steps:
            waiting.refresh_wake_time(self)
        released = self._released_in_commit
        if self._pending and self._releases_locks():
            released = self.saga.lock_keys
            now = self.saga.update_time
            self._log(
                TransitionEvent.LOCKS_RELEASED,
                now,
                None,
                error="",
                reason=key_names(released, self.saga.namespace),
            )
            self.saga = replaced(self.saga, locks_held=False, lock_wait_since=None)
        commit = SagaCommit(
            saga=self.saga,
            expected_version=self._persisted_version,
            steps=tuple(self.steps[i] for i in sorted(self._changed_steps)),
            transitions=tuple(self._pending),
            released_locks=released,
        )
        self._released_in_commit = ()
        self._persisted_version = self.saga.version
        self._pending = []
        self._changed_steps = set()
        return commit

    # --- internals --------------------------------------------------------------------

    def _begin_compensating(self, index: int, error: str, now: datetime) -> None:
        if self.status is SagaStatus.COMPENSATING:
            return  # a sibling failed first, or an operator or the deadline stopped it
        reason = f"step {self.steps[index].name} failed: {error}"
        self._set_saga(now, failure_reason=reason, failed_step=self.steps[index].name)
        self._fire_saga("compensate", TransitionEvent.SAGA_COMPENSATING, now, error=reason)

    def _begin_compensating_by_request(
        self,
        event: TransitionEvent,
        now: datetime,
        reason: str,
        actor: str = ENGINE_ACTOR,
        failure: str = "",
    ) -> None:
        self._set_saga(now, failure_reason=failure or reason)
        fire(SAGA_MOVES, self._saga_model, "compensate", self.saga.saga_id)
        self._set_saga(now, status=self.status)
        self._log(event, now, None, error="", actor=actor, reason=reason)

    def _restart_after_retry(self, index: int, event: TransitionEvent, now: datetime) -> None:
        """The first attempt after an operator's retry (which reset the attempts to 0): logged
        as a start, like the step's first, so the log reads retried, started, then the
        outcome. A command found STARTED with attempts counted was sent before by a process
        that died: that resend is a retry (`RESTART_RESEND`)."""
        counter = "attempts" if event is TransitionEvent.STEP_STARTED else "compensation_attempts"
        self._update_step(index, now, error="", next_attempt_time=None, **{counter: 1})
        self._log(event, now, index, error="", reason=OPERATOR_RETRY_SEND)

    def _start_compensation(self, index: int, now: datetime) -> None:
        self._fire_step(
            index, "compensate", TransitionEvent.COMPENSATION_STARTED, now, compensation_attempts=1
        )

    def _fire_saga(
        self, trigger: str, event: TransitionEvent, now: datetime, error: str = ""
    ) -> None:
        fire(SAGA_MOVES, self._saga_model, trigger, f"saga {self.saga.saga_id}")
        self._set_saga(now, status=self.status)
        self._log(event, now, None, error=error)

    def _fire_step(
        self,
        index: int,
        trigger: str,
        event: TransitionEvent,
        now: datetime,
        actor: str = ENGINE_ACTOR,
        reason: str = "",
        **changes: Any,
    ) -> None:
        name = self.steps[index].name
        fire(STEP_MOVES, self._step_models[index], trigger, f"saga {self.saga.saga_id} {name}")
        if self.steps[index].start_time is None:
            changes["start_time"] = now
        self._update_step(index, now, status=self.step_status(index), **changes)
        self._log(event, now, index, error=changes.get("error", ""), actor=actor, reason=reason)

    def _update_step(self, index: int, now: datetime, **changes: Any) -> None:
        self.steps[index] = replaced(self.steps[index], update_time=now, **changes)
        self._changed_steps.add(index)
        self._set_saga(now)

    def _set_saga(self, now: datetime, **changes: Any) -> None:
        version = self._persisted_version + 1
        self.saga = replaced(self.saga, update_time=now, version=version, **changes)

    def _log(
        self,
        event: TransitionEvent,
        now: datetime,
        index: int | None,
        error: str,
        actor: str = ENGINE_ACTOR,
        reason: str = "",
    ) -> None:
        self._seq += 1
        step = self.steps[index] if index is not None else None
        attempt = 0
        if step is not None:
            in_compensation = step.status in (
                StepStatus.COMPENSATING,
                StepStatus.COMPENSATED,
                StepStatus.COMPENSATION_FAILED,
                StepStatus.NOTHING_TO_UNDO,
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
                actor=actor,
                reason=reason,
            )
        )
