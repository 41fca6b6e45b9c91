"""Completions, failures and heartbeats of asynchronous steps, from any replica.

A completion is applied like an operator's change: the saga is loaded, the machine
decides (`orchestrator.core.waiting`), and what it queued is committed under the
saga's version, so it never overwrites the driving replica's commit (nor the other
way round: a stale side reloads). Once committed, the saga is woken: driven here,
after its current drive, if it was parked.

Heartbeats only move a deadline: one is written at most every fifth of the step's
heartbeat timeout (per token, remembered here); between writes the deadline the store
holds is still at least four fifths of a timeout away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from orchestrator import failpoints
from orchestrator.core.clock import utc_now
from orchestrator.core.errors import SagaNotFound, StaleSagaVersion
from orchestrator.core.machine import SagaRun
from orchestrator.core.registry import Registry
from orchestrator.core.tokens import digest_matches, token_address, token_digest
from orchestrator.core.waiting import (
    CompletionAnswer,
    CompletionConflict,
    CompletionDenied,
    CompletionOutcome,
    HeartbeatAnswer,
    StepNotWaiting,
    answer_completion,
    answer_heartbeat,
)
from orchestrator.engine.executor import Executor
from orchestrator.store.base import Store

logger = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
HEARTBEAT_WRITE_SHARE = 5
"""A heartbeat is written at most once per this fraction of the heartbeat timeout."""
REMEMBERED_HEARTBEATS = 100_000
"""Tokens whose last heartbeat write is remembered; past it the memory starts afresh."""
DENIED = "the completion token is not valid for any waiting step (forged, mangled, or replaced)"


@dataclass(frozen=True, slots=True)
class Completed:
    """Where a completion landed: the saga, the step, and what the machine answered."""

    saga_id: str
    step: str
    answer: CompletionAnswer


class StepCompletions:
    """Applies SagaCallbacks' calls to the sagas they name."""

    def __init__(self, store: Store, registry: Registry, executor: Executor) -> None:
        self._store = store
        self._registry = registry
        self._executor = executor
        self._heartbeats_written: dict[str, float] = {}

    async def load(self, token: str) -> tuple[SagaRun, int, str]:
        """The saga a token names, the step, and the token's digest, once the digest is
        one of the step's: else CompletionDenied, whatever was wrong."""
        address = token_address(token)
        if address is None:
            raise CompletionDenied(DENIED)
        try:
            run = await self._load(address.saga_id)
        except SagaNotFound:
            raise CompletionDenied(DENIED) from None
        index = address.step_index
        digest = token_digest(token)
        if index >= len(run.steps) or not digest_matches(
            digest, run.steps[index].completion_tokens
        ):
            raise CompletionDenied(DENIED)
        return run, index, digest

    async def finish(
        self,
        token: str,
        completion_id: str,
        *,
        result: bytes | None = None,
        error: str = "",
        actor: str = "",
    ) -> Completed:
        """Complete (`result`) or fail (`error`) a step; raises the refusal otherwise."""
        for _ in range(COMMIT_ATTEMPTS):
            run, index, digest = await self.load(token)
            answer = answer_completion(
                run,
                index,
                digest,
                completion_id,
                utc_now(),
                result=result,
                error=error,
                actor=actor,
            )
            if run.has_pending():
                if not await self._commit(run):
                    continue
                failpoints.hit("completion_committed")
            return Completed(run.saga.saga_id, run.steps[index].name, _checked(answer))
        raise StaleSagaVersion("the saga kept changing; the completion was not applied, retry")

    async def decide_task(
        self,
        saga_id: str,
        step: str,
        *,
        actor: str,
        result: bytes | None = None,
        error: str = "",
        reason: str = "",
    ) -> Completed:
        """A person completes (`result`) or rejects (`error`) a waiting step, with no
        token: their role admitted them. The same person deciding the same way again
        gets the first answer; anyone else, after a decision, a conflict naming it."""
        kind = "complete" if result is not None else "reject"
        for _ in range(COMMIT_ATTEMPTS):
            run = await self._load(saga_id)
            names = [record.name for record in run.steps]
            if step not in names:
                raise SagaNotFound(f"saga {saga_id} has no step {step!r}")
            index = names.index(step)
            if run.definition.all_steps[index].completion is None:
                raise StepNotWaiting(f"step {step} is not asynchronous: it is not a task")
            answer = answer_completion(
                run,
                index,
                None,
                f"{kind}-by-{actor}",
                utc_now(),
                result=result,
                error=error,
                actor=actor,
                reason=reason,
            )
            if run.has_pending() and not await self._commit(run):
                continue
            return Completed(saga_id, step, _checked(answer))
        raise StaleSagaVersion("the saga kept changing; the decision was not applied, retry")

    async def heartbeat(self, token: str) -> HeartbeatAnswer:
        """Keep a step waiting (written at most every fifth of its heartbeat timeout)."""
        for _ in range(COMMIT_ATTEMPTS):
            run, index, digest = await self.load(token)
            now = utc_now()
            answer = answer_heartbeat(run, index, digest, now)
            if not run.has_pending():
                return answer
            completion = run.definition.all_steps[index].completion
            assert completion is not None and completion.heartbeat_timeout is not None
            every = completion.heartbeat_timeout / HEARTBEAT_WRITE_SHARE
            last = self._heartbeats_written.get(digest)
            if last is not None and time.monotonic() - last < every:
                return answer  # the stored deadline is still far enough ahead
            if not await self._commit(run):
                continue
            if len(self._heartbeats_written) >= REMEMBERED_HEARTBEATS:
                self._heartbeats_written.clear()
            self._heartbeats_written[digest] = time.monotonic()
            return answer
        raise StaleSagaVersion("the saga kept changing; the heartbeat was not applied, retry")

    async def _commit(self, run: SagaRun) -> bool:
        """Commit what the machine queued; False when the saga changed meanwhile."""
        commit = run.take_commit()
        try:
            await self._store.commit([commit])
        except StaleSagaVersion:
            return False
        saga = commit.saga
        self._executor.watchers.notify(saga.saga_id)
        if commit.transitions and not saga.status.is_terminal and saga.wake_time is None:
            self._executor.wake(saga.saga_id)
        return True

    async def _load(self, saga_id: str) -> SagaRun:
        stored = await self._store.load_sagas([saga_id])
        if not stored:
            raise SagaNotFound(f"no saga with id {saga_id}")
        saga = stored[0].saga
        definition = self._registry.get(saga.saga_type, saga.definition_version)
        return SagaRun(definition, saga, list(stored[0].steps), stored[0].last_seq)


def _checked(answer: CompletionAnswer) -> CompletionAnswer:
    """The answer, or the refusal it means."""
    outcome = answer.outcome
    if outcome is CompletionOutcome.DENIED:
        raise CompletionDenied(DENIED)
    if outcome is CompletionOutcome.CONFLICT:
        raise CompletionConflict(
            f"completion {answer.recorded_id!r} ({answer.recorded_kind}) was recorded for "
            "this step first; a step takes one completion"
        )
    if outcome is CompletionOutcome.LATE or (
        outcome is CompletionOutcome.DUPLICATE and answer.recorded_kind == "late"
    ):
        why = answer.reason or "it came after the step stopped waiting"
        raise StepNotWaiting(f"the completion was refused: {why}")
    return answer
