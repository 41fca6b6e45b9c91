"""Heartbeats write at most once per fifth of the heartbeat timeout, on both back ends:
a burst of heartbeats moves the stored deadline once, and each answers with the new
deadline; a heartbeat with a wrong token is refused and writes nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.records import SagaCommit, StepRecord, StepStatus
from orchestrator.core.registry import Registry
from orchestrator.core.tokens import make_token, token_digest
from orchestrator.core.waiting import CompletionDenied
from orchestrator.engine.commit_watchers import CommitWatchers
from orchestrator.engine.completions import StepCompletions
from orchestrator.store import Store
from tests.integration.test_store import ALICE, saga_record, saga_started
from tests.support.async_sagas import HEARTBEAT_TRIP

pytestmark = pytest.mark.integration


class Waker:
    """The executor's part a completion uses: its watchers and `wake`."""

    def __init__(self) -> None:
        self.watchers = CommitWatchers(live=False)
        self.woken: list[str] = []

    def wake(self, saga_id: str) -> None:
        self.woken.append(saga_id)


async def waiting_saga(store: Store, saga_id: str, token: str) -> None:
    saga = dataclasses.replace(saga_record(saga_id), saga_type=HEARTBEAT_TRIP.name)
    steps = [StepRecord(saga_id, i, step.name) for i, step in enumerate(HEARTBEAT_TRIP.all_steps)]
    await store.create_saga(saga, steps, [saga_started(saga_id)], lease=ALICE)
    now = utc_now()
    hotel = dataclasses.replace(steps[0], status=StepStatus.COMPLETED, attempts=1)
    flight = dataclasses.replace(
        steps[1],
        status=StepStatus.WAITING,
        attempts=1,
        wait_until=now + timedelta(seconds=30),
        wait_deadline=now + timedelta(seconds=2),
        completion_tokens=(token_digest(token),),
    )
    await store.commit(
        [
            SagaCommit(
                saga=dataclasses.replace(saga, version=saga.version + 1),
                expected_version=saga.version,
                steps=(hotel, flight),
            )
        ]
    )


async def test_a_burst_of_heartbeats_is_written_once(store: Store):
    token = make_token("beating", 1, "secret")
    await waiting_saga(store, "beating", token)
    before = (await store.get_saga("beating")).version
    completions = StepCompletions(store, Registry([HEARTBEAT_TRIP]), Waker())  # type: ignore[arg-type]
    answers = [await completions.heartbeat(token) for _ in range(10)]
    assert not any(answer.cancel_requested for answer in answers)
    assert all(answer.deadline is not None for answer in answers)
    assert (await store.get_saga("beating")).version == before + 1
    [stored] = await store.load_sagas(["beating"])
    assert stored.steps[1].wait_deadline == answers[0].deadline
    assert stored.saga.wake_time == answers[0].deadline
    with pytest.raises(CompletionDenied):
        await completions.heartbeat(make_token("beating", 1, "forged"))
    assert (await store.get_saga("beating")).version == before + 1
