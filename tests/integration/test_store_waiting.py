"""Asynchronous steps in the store, on both back ends: a waiting step's deadlines and
token digests round-trip, and a parked saga is claimed only once its wake time has come."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.records import SagaCommit, StepStatus
from orchestrator.store import Store
from tests.integration.test_store import ALICE, BOB, create_leased, pending_steps

pytestmark = pytest.mark.integration


async def park(store: Store, saga_id: str, wake_in: float) -> None:
    """Commit the saga's first step WAITING, the saga parked until `wake_in` seconds from
    now, and hand its lease back (as a driver that parks does)."""
    saga = await create_leased(store, saga_id, ALICE)
    now = utc_now()
    step = dataclasses.replace(
        pending_steps(saga_id)[0],
        status=StepStatus.WAITING,
        attempts=1,
        wait_deadline=now + timedelta(seconds=wake_in),
        wait_until=now + timedelta(seconds=60),
        completion_tokens=("ab" * 32, "cd" * 32),
        completion_id="",
    )
    parked = dataclasses.replace(
        saga, version=saga.version + 1, update_time=now, wake_time=step.wait_deadline
    )
    await store.commit([SagaCommit(saga=parked, expected_version=saga.version, steps=(step,))])
    await store.release_leases(ALICE.owner, [saga_id])


async def test_a_waiting_step_round_trips_its_deadlines_and_token_digests(store: Store):
    await park(store, "waiting", wake_in=30)
    [loaded] = await store.load_sagas(["waiting"])
    step = loaded.steps[0]
    assert step.status is StepStatus.WAITING
    assert step.completion_tokens == ("ab" * 32, "cd" * 32)
    assert loaded.saga.wake_time == step.wait_deadline
    assert step.wait_until is not None and step.wait_until > step.wait_deadline


async def test_a_parked_saga_is_claimed_only_once_its_wake_time_has_come(store: Store):
    await park(store, "later", wake_in=3600)
    await park(store, "due", wake_in=-1)
    claimed = await store.claim_sagas(BOB, limit=10)
    assert [saga.saga_id for saga in claimed] == ["due"]
    assert await store.claim_saga(BOB, "later") is None


async def test_a_claim_passes_parked_sagas_by_and_takes_due_and_fresh_ones_oldest_first(
    store: Store,
):
    """All created at one time, so oldest first is by saga id: the parked ones come first."""
    for number in range(3):
        await park(store, f"a-later-{number}", wake_in=3600)
    await park(store, "b-due", wake_in=-1)
    for saga_id in ("c-fresh", "d-fresh"):
        await create_leased(store, saga_id, ALICE)
        await store.release_leases(ALICE.owner, [saga_id])
    await park(store, "e-due", wake_in=-1)
    claimed = await store.claim_sagas(BOB, limit=3)
    assert sorted(saga.saga_id for saga in claimed) == ["b-due", "c-fresh", "d-fresh"]
    rest = await store.claim_sagas(BOB, limit=3)
    assert [saga.saga_id for saga in rest] == ["e-due"]
