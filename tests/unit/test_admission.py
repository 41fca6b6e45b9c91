"""The budget of sagas in flight: places are taken before anything is awaited and given
back exactly once, and a claim of orphans holds its places while the store answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.core.records import Lease
from orchestrator.engine.admission import SagaSlots
from orchestrator.engine.leases import LeaseKeeper

pytestmark = pytest.mark.unit


def test_reservations_never_pass_the_capacity_and_are_given_back_once():
    driven: dict[str, Any] = {"running": object()}
    slots = SagaSlots(4, driven)
    first, second = slots.reserve(2), slots.reserve(2)
    assert (first.count, second.count, slots.in_use, slots.free()) == (2, 1, 4, 0)
    assert not slots.reserve()
    first.release(1)
    first.release()
    first.release()
    assert (slots.in_use, slots.free(), slots.free(keep=1)) == (2, 2, 1)
    with slots.reserve(5, keep=1) as places:
        assert places.count == 1
    second.release()
    assert slots.in_use == 1


class SlowClaims:
    """A store whose claim of orphans answers only when told to."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.waiting = asyncio.Event()
        self.answer = asyncio.Event()

    async def claim_sagas(self, lease: Lease, limit: int) -> list[Any]:
        self.asked.append(limit)
        self.waiting.set()
        await self.answer.wait()
        return []

    async def load_sagas(self, saga_ids: list[str]) -> list[Any]:
        return []


async def test_orphans_being_claimed_hold_their_places_so_starts_cannot_take_them_too():
    driven: dict[str, Any] = {}
    slots = SagaSlots(20, driven)
    store = SlowClaims()
    keeper = LeaseKeeper(
        store,  # type: ignore[arg-type]
        Lease("replica", 10.0),
        driven=driven,
        slots=slots,
        run_of=lambda stored: None,  # type: ignore[arg-type,return-value]
        drive=lambda saga_id, run: None,
    )
    claiming = asyncio.create_task(keeper.claim_orphans())
    await asyncio.wait_for(store.waiting.wait(), 5)
    # 18 places claimed for orphans, a tenth (2) kept for new sagas; a start gets those.
    assert store.asked == [18]
    assert slots.reserve(5).count == 2
    store.answer.set()
    assert await claiming == 0
    assert slots.in_use == 2  # the claim found nothing and gave its places back
