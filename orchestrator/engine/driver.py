"""Drives one saga: decide the next action (pure), persist the intent, send the command,
record the outcome, repeat.

Write-ahead rule: `SagaRun` queues transitions in memory; everything queued is
committed before any command leaves this process, and a saga's terminal status
is committed before the drive ends. A reply whose commit is lost to a crash is
not lost for the saga: the step is still STARTED in the store, so the command
is sent again with the same idempotency key and the participant answers with
the result it stored the first time.

Every decision (retry and when, reject, compensate, halt, give up) is the
machine's; a `SagaDriver` only performs the I/O it asks for.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime

import grpc
from google.protobuf.message import Message

from orchestrator import failpoints
from orchestrator.core import observing, waiting
from orchestrator.core.clock import utc_now
from orchestrator.core.definition import CONTEXT_FIELD
from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.incoming import CommandEventPublisher
from orchestrator.core.machine import (
    AcquireLocks,
    Action,
    AfterFailure,
    AwaitCompletion,
    Command,
    SagaRun,
    SendAction,
    SendCompensation,
    Verdict,
)
from orchestrator.core.records import LockAttempt, SagaCommit, SagaStatus
from orchestrator.core.registry import Registry
from orchestrator.core.tokens import make_token, token_digest
from orchestrator.engine.commands import ParticipantClient, classify
from orchestrator.engine.wakeups import KeyWakeups
from orchestrator.store.base import Store
from orchestrator.telemetry.engine import ACTION, COMPENSATION, EngineTelemetry

# The engine's saga lines (outcomes, stuck steps) keep the logger name they have always
# had, which operators' log filters and alerts select on.
logger = logging.getLogger("orchestrator.engine.executor")


class SagaDriver:
    """The drive loop of one saga, loaded in `run`, until it is terminal.

    The driver owns the saga's commit lock, which keeps its commits in version
    order when the members of a Parallel group commit at once. It is used for
    one drive: after any error the executor loads the saga afresh and builds a
    new driver.
    """

    def __init__(
        self,
        run: SagaRun,
        *,
        store: Store,
        registry: Registry,
        participants: ParticipantClient,
        telemetry: EngineTelemetry,
        rng: random.Random,
        committed: Callable[[str], None],
        wakeups: KeyWakeups,
        lock_recheck_seconds: float,
        saga_input: Message | None = None,
        parked: Callable[[str, datetime | None], Awaitable[None]] | None = None,
        command_events: CommandEventPublisher | None = None,
    ) -> None:
        self.run = run
        self._command_events = command_events
        self._parked = parked
        """Called when the saga only waits for asynchronous completions (see `_park`)."""
        self._store = store
        self._registry = registry
        self._participants = participants
        self._telemetry = telemetry
        self._rng = rng
        self._committed = committed
        self._commit_lock = asyncio.Lock()
        self._wakeups = wakeups
        self._lock_recheck_seconds = lock_recheck_seconds
        self._saga_input = saga_input
        """The saga's input, decoded once per drive (StartSaga hands over its own)."""

    async def drive(self, first_actions: tuple[Action, ...] | None = None) -> None:
        """Stage by stage: commit what the machine queued, then send.

        `first_actions` are commands already committed as started (a new saga's
        first stage); they are sent before the machine is asked again. The members
        of a Parallel group are sent concurrently and all awaited (also when one
        fails) before the machine decides again, so a member still in flight when a
        sibling fails is compensated if it completed.
        """
        run = self.run
        while True:
            if first_actions is not None:
                actions, first_actions = first_actions, None
            else:
                actions = run.next_actions(utc_now())
            committed = run.has_pending()
            if committed and not actions and run.status is SagaStatus.COMPLETED:
                self._record_output()
            if committed:
                await self._commit()
            if not actions:
                if committed:
                    self._telemetry.saga_finished(run)
                    failpoints.hit("saga_finished")
                log_outcome(run)
                return
            if isinstance(actions[0], AwaitCompletion):
                await self._park(actions[0])
                return
            if isinstance(actions[0], AcquireLocks):
                await self._take_locks(actions[0])
                continue
            if len(actions) == 1 and isinstance(actions[0], SendAction | SendCompensation):
                await self._perform(actions[0])
                continue
            try:
                async with asyncio.TaskGroup() as group:
                    for action in actions:
                        if isinstance(action, SendAction | SendCompensation):
                            group.create_task(self._perform(action))
            except ExceptionGroup as errors:
                raise errors.exceptions[0] from errors

    def _record_output(self) -> None:
        """Build the definition's output from the stored replies into the terminal commit.
        A builder that raises leaves the saga COMPLETED without an output (and says so):
        every step has succeeded, so nothing may be undone for want of a summary."""
        run = self.run
        try:
            output = self._registry.build_output(run.definition, run.saga, run.steps, self._input())
        except Exception as error:
            logger.error(
                "the output builder failed; the saga completes without an output: %r",
                error,
                extra={"saga_id": run.saga.saga_id},
            )
            return
        run.record_output(output, utc_now())

    def _input(self) -> Message:
        if self._saga_input is None:
            self._saga_input = self._registry.saga_input(self.run.definition, self.run.saga)
        return self._saga_input

    async def _take_locks(self, action: AcquireLocks) -> None:
        """Ask the store for the saga's keys until it holds them, or until its maximum
        wait has passed (the machine then decides); between refusals, sleep until a key
        is released here or on another replica, at most `lock_recheck_seconds`."""
        run = self.run
        saga_id = run.saga.saga_id

        def decide(attempt: LockAttempt) -> SagaCommit | None:
            run.locks_answered(attempt, utc_now())
            return run.take_commit() if run.has_pending() else None

        waiting = False
        with self._wakeups.watch(saga_id, action.keys) as watch:
            try:
                bound = self._lock_wait_bound()
                if watch.opening_ticket is not None and bound > 0:
                    # Queued by its opening and nothing released since: the first ask
                    # would be refused, so it sleeps first (a release from now wakes it).
                    waiting = True
                    self._telemetry.lock_waiting(+1)
                    await self._wakeups.sleep(watch, watch.opening_ticket, bound)
                while True:
                    watch.arm()
                    was_queued = run.saga.lock_wait_since is not None
                    async with self._commit_lock:
                        attempt = await self._store.take_locks(
                            saga_id, action.keys, run.persisted_version, decide
                        )
                    if run.saga.lock_wait_since is not None and not was_queued:
                        self._telemetry.lock_queued(run)
                    if attempt.acquired:
                        watch.acquired = True
                        self._committed(saga_id)
                        self._telemetry.locks_acquired(run)
                        return
                    if run.status is not SagaStatus.RUNNING:
                        self._committed(saga_id)  # refused under the reject policy
                        return
                    if not waiting:
                        waiting = True
                        self._telemetry.lock_waiting(+1)
                    bound = self._lock_wait_bound()
                    if bound <= 0:
                        return  # the machine fails the saga at its next decision
                    await self._wakeups.sleep(watch, attempt.ticket, bound)
            finally:
                if waiting:
                    self._telemetry.lock_waiting(-1)

    def _lock_wait_bound(self) -> float:
        """How long a refused saga sleeps at most: until the next recheck, or until its
        maximum wait has passed (<= 0: it has)."""
        bound = self._lock_recheck_seconds
        give_up_at = self.run.lock_give_up_time()  # set once the saga first queued
        if give_up_at is not None:
            bound = min(bound, (give_up_at - utc_now()).total_seconds())
        return bound

    async def _perform(self, action: Command) -> None:
        """Send an action or compensation until the machine's policy settles it.

        A retry's due time is committed before the wait; any other outcome is queued
        in the run, not yet committed: the next command's commit carries it (one
        write for "step i completed" and "step i+1 started"). If the saga's deadline
        passes meanwhile, the step is left STARTED and the saga compensates.
        """
        run = self.run
        compensating = not isinstance(action, SendAction)
        failpoints.hit("compensation_started" if compensating else "step_started")
        if isinstance(action, SendCompensation) and action.event:
            await self._publish_compensation(action)
            return
        try:
            request = self._registry.build_request(
                run.definition,
                run.saga,
                run.steps,
                action.index,
                compensating=compensating,
                saga_input=self._input(),
            )
        except Exception as error:
            run.request_unbuildable(action, repr(error), utc_now())
            return
        asynchronous = not compensating and run.definition.all_steps[action.index].completion
        if asynchronous:
            token = await self._issue_token(action.index)
            getattr(request, CONTEXT_FIELD).completion_token = token
        due = action.not_before
        while True:
            if due is not None:
                await self._wait_until(due)
            if not compensating and run.deadline_passed(utc_now()):
                return
            try:
                reply = await self._send(action.index, request, compensating=compensating)
            except grpc.aio.AioRpcError as error:
                if _being_cancelled():
                    # The drive is being stopped (shutdown, lease lost, a sibling failed):
                    # whatever the call ended with is the engine's doing, not the
                    # participant's outcome. Nothing is recorded; the step stays STARTED
                    # and is sent again, same key, by whoever drives the saga next.
                    raise asyncio.CancelledError from error
                after = self._failed(action.index, error, compensating=compensating)
                if after.verdict is not Verdict.RETRY:
                    return
                await self._commit()
                due = after.retry_at
                continue
            if compensating:
                failpoints.hit("compensation_replied")
                run.compensation_succeeded(action.index, utc_now())
            elif asynchronous:
                failpoints.hit("step_accepted")
                waiting.action_accepted(run, action.index, utc_now())
            else:
                failpoints.hit("reply_received")
                run.action_succeeded(action.index, reply.SerializeToString(), utc_now())
            return

    async def _publish_compensation(self, action: SendCompensation) -> None:
        """A tracked saga's rescue undoes a step by publishing its compensation event
        (COMPENSATION_STARTED is committed): once the broker confirmed it, the core says
        what follows (the step waits for its undo event, or counts as undone); a failed
        publish is a failed compensation attempt, retried by the compensation policy
        with the same event id, which the service takes once."""
        run = self.run
        step = run.definition.all_steps[action.index]
        due = action.not_before
        while True:
            if due is not None:
                await self._wait_until(due)
            error = f"no broker publishes compensation events (wanted {action.event})"
            if self._command_events is not None:
                event = observing.compensation_command_event(run, action.index, utc_now())
                try:
                    await asyncio.wait_for(self._command_events.publish(event), step.timeout)
                except Exception as failed:  # any refusal: the policy retries it
                    error = f"publishing {action.event} failed: {failed!r}"
                else:
                    failpoints.hit("compensation_replied")
                    observing.compensation_event_published(run, action.index, utc_now())
                    return
            after = run.compensation_failed(action.index, error, utc_now(), self._rng.random())
            if after.verdict is not Verdict.RETRY:
                return
            await self._commit()
            due = after.retry_at

    async def _issue_token(self, index: int) -> str:
        """A fresh completion token for this command of an asynchronous step; its digest
        is committed before the command leaves, so a completion racing the reply is
        recognised. The token itself is kept nowhere but in the command."""
        run = self.run
        token = make_token(run.saga.saga_id, index, secrets.token_urlsafe(32))
        waiting.token_issued(run, index, token_digest(token), utc_now())
        await self._commit()
        failpoints.hit("token_issued")
        return token

    async def _park(self, action: AwaitCompletion) -> None:
        """The saga only waits for completions (committed with its wake time): stop driving
        it and hand its lease back. A completion or an operator wakes it; otherwise a
        replica claims it at its wake time, to time the wait out."""
        saga_id = self.run.saga.saga_id
        logger.info(
            "saga waits for asynchronous completion until %s",
            action.wake_time.isoformat() if action.wake_time else "completed",
            extra={"saga_id": saga_id},
        )
        if self._parked is not None:
            await self._parked(saga_id, action.wake_time)

    async def _send(self, index: int, request: Message, *, compensating: bool) -> Message:
        """One attempt, with its span and metrics; raises grpc.aio.AioRpcError on failure."""
        run = self.run
        definition = run.definition
        step = definition.all_steps[index]
        call = self._registry.resolved_step(definition, step.name).call(compensating=compensating)
        if compensating:
            attempt = run.steps[index].compensation_attempts
            with self._telemetry.command(run, step.name, COMPENSATION, attempt, call.path):
                return await self._participants.send(step.participant, call, request, step.timeout)
        retry_codes = definition.action_retry(step).retry_codes
        timeout = run.attempt_timeout(step.timeout, utc_now())
        attempt = run.steps[index].attempts
        with self._telemetry.command(run, step.name, ACTION, attempt, call.path, retry_codes):
            return await self._participants.send(step.participant, call, request, timeout)

    def _failed(
        self, index: int, error: grpc.aio.AioRpcError, *, compensating: bool
    ) -> AfterFailure:
        """Hand a failed attempt to the machine's policy; report what it decided."""
        run = self.run
        step = run.definition.all_steps[index]
        message = self._participants.describe_failure(step.participant, error)
        if compensating:
            after = run.compensation_failed(index, message, utc_now(), self._rng.random())
        else:
            kind = classify(error.code(), run.definition.action_retry(step).retry_codes)
            after = run.action_failed(index, kind, message, utc_now(), self._rng.random())
        if after.verdict is Verdict.RETRY:
            self._telemetry.retrying(run, step.name, COMPENSATION if compensating else ACTION)
            record = run.steps[index]
            logger.info(
                "%s attempt %d failed (%s); attempt %d at %s",
                "compensation" if compensating else "action",
                (record.compensation_attempts if compensating else record.attempts) - 1,
                message,
                record.compensation_attempts if compensating else record.attempts,
                after.retry_at.isoformat() if after.retry_at is not None else "once",
                extra={"saga_id": run.saga.saga_id, "step": step.name},
            )
        elif after.verdict is Verdict.STUCK:
            logger.error(
                "step cannot go forward and must not be undone; the saga needs an operator",
                extra={"saga_id": run.saga.saga_id, "step": step.name},
            )
        elif after.verdict is Verdict.GAVE_UP:
            logger.error(
                "compensation gave up; the saga needs an operator",
                extra={"saga_id": run.saga.saga_id, "step": step.name},
            )
        return after

    async def _commit(self) -> None:
        """Commit everything the run queued, in version order (see the class docstring)."""
        async with self._commit_lock:
            if self.run.has_pending():
                commit = self.run.take_commit()
                with self._telemetry.store_commit():
                    await self._store.commit([commit])
                self._committed(self.run.saga.saga_id)
                if commit.released_locks:
                    self._wakeups.wake(commit.released_locks)

    async def _wait_until(self, due: datetime) -> None:
        """Sleep until a scheduled attempt is due (or the saga's deadline, if sooner), then
        make sure nobody changed the saga meanwhile (an operator, another replica)."""
        delay = (self.run.wake_time(due) - utc_now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        saga_id = self.run.saga.saga_id
        stored = await self._store.get_saga(saga_id)
        if stored is None or stored.version != self.run.persisted_version:
            raise StaleSagaVersion(f"saga {saga_id} changed while a retry was waiting")


def _being_cancelled() -> bool:
    """Whether the task running this has been asked to stop. grpc.aio raises the task's
    own cancellation as asyncio.CancelledError; this also covers a cancellation that lands
    while the call is ending, whose status grpc may hand back instead."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def log_outcome(run: SagaRun) -> None:
    """One line for a saga that ended: INFO completed, WARNING compensated, ERROR stuck."""
    saga = run.saga
    extra = {"saga_id": saga.saga_id, "saga_type": saga.saga_type}
    if run.status is SagaStatus.COMPLETED:
        logger.info("saga completed", extra=extra)
    elif saga.needs_intervention:
        logger.error("saga failed and needs intervention: %s", saga.failure_reason, extra=extra)
    else:
        logger.warning("saga failed and was compensated: %s", saga.failure_reason, extra=extra)
