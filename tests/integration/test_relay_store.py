"""The relay's store side, on both back ends: partition leases claimed by the database
clock, and deletes fenced by them, so a relay that lost its partition (frozen past its
lease, then woken) deletes nothing and dead-letters nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.core.events import DeadEvent, EventSink, PartitionClaim
from orchestrator.core.records import Lease
from orchestrator.store import Store, open_store
from tests.integration.test_store import new_saga

pytestmark = pytest.mark.integration

SINK = EventSink("broker", partitions=1)
LIVE = 30.0
EXPIRED = -1.0
"""A lease that is over when it is taken: the next claimer may take the partition."""


@pytest.fixture
async def relay_store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url, event_sinks=(SINK,))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def pending_ids(store: Store) -> list[int]:
    return [event.id for event in await store.pending_events(SINK.name, 0, limit=100)]


async def test_a_stale_owner_deletes_nothing_and_the_new_owner_settles(relay_store: Store):
    await relay_store.create_sagas([new_saga(f"trip-{n}") for n in range(3)])
    ids = await pending_ids(relay_store)
    assert len(ids) == 3

    # Replica a claims, then freezes past its lease; replica b takes the partition.
    [stale] = await relay_store.claim_event_partitions("broker", 1, Lease("a", EXPIRED), 1)
    [fresh] = await relay_store.claim_event_partitions("broker", 1, Lease("b", LIVE), 1)
    assert fresh == PartitionClaim("broker", 0, stale.version + 1)

    # a wakes and tries to delete what it published, and to dead-letter one event.
    dead = DeadEvent(ids[2], attempts=5, error="too large")
    assert not await relay_store.settle_events(stale, Lease("a", LIVE), ids[:2], dead)
    assert await pending_ids(relay_store) == ids
    assert await relay_store.dead_event_counts() == {}
    assert await relay_store.renew_event_partitions("broker", Lease("a", LIVE)) == []

    assert await relay_store.settle_events(fresh, Lease("b", LIVE), ids[:1], dead)
    assert await pending_ids(relay_store) == ids[1:2]
    assert await relay_store.dead_event_counts() == {"broker": 1}
    assert await relay_store.renew_event_partitions("broker", Lease("b", LIVE)) == [fresh]


async def test_a_live_partition_is_not_claimed_until_released(relay_store: Store):
    owned = await relay_store.claim_event_partitions("broker", 4, Lease("a", LIVE), 3)
    assert [claim.partition for claim in owned] == [0, 1, 2]
    others = await relay_store.claim_event_partitions("broker", 4, Lease("b", LIVE), 4)
    assert [claim.partition for claim in others] == [3]

    await relay_store.release_event_partitions("broker", "a")
    taken = await relay_store.claim_event_partitions("broker", 4, Lease("b", LIVE), 4)
    assert [(c.partition, c.version) for c in taken] == [
        (c.partition, c.version + 1) for c in owned
    ]
    assert not await relay_store.settle_events(owned[0], Lease("a", LIVE), [])
