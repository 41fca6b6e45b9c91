"""The relay's store side, on both back ends: partition leases claimed by the database
clock, and deletes fenced by them, so a relay that lost its partition (frozen past its
lease, then woken) deletes nothing and dead-letters nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from orchestrator.core.events import DeadEvent, EventSink, PartitionClaim, Settlement
from orchestrator.core.records import Lease
from orchestrator.events.brokers import (
    BrokerUnavailable,
    EventRefused,
    OutgoingEvent,
    PublishTimeout,
)
from orchestrator.events.relay import RelaySettings, SinkRelay
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


async def test_one_read_gives_the_first_rows_of_each_chosen_partition_in_outbox_order(
    store_url: str,
):
    sink = EventSink("spread", partitions=4)
    store = open_store(store_url, event_sinks=(sink,))
    await store.open()
    try:
        await store.create_sagas([new_saga(f"trip-{n}") for n in range(24)])
        by_partition = {p: await store.pending_events(sink.name, p, limit=100) for p in range(4)}
        assert all(len(rows) >= 3 for rows in by_partition.values())

        rows = await store.pending_events_of(sink.name, [3, 1], limit=2)

        expected = sorted(by_partition[1][:2] + by_partition[3][:2], key=lambda row: row.id)
        assert rows == expected
        assert await store.pending_events_of(sink.name, [], limit=2) == []
    finally:
        await store.close()


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


async def test_one_settlement_of_two_partitions_leaves_the_lost_one_untouched(store_url: str):
    sink = EventSink("spread", partitions=2)
    store = open_store(store_url, event_sinks=(sink,))
    await store.open()
    try:
        await store.create_sagas([new_saga(f"trip-{n}") for n in range(8)])
        ids = {p: [row.id for row in await store.pending_events(sink.name, p, 100)] for p in (0, 1)}
        assert ids[0] and ids[1]
        stale, kept = await store.claim_event_partitions(sink.name, 2, Lease("a", EXPIRED), 2)
        [fresh] = await store.claim_event_partitions(sink.name, 1, Lease("b", LIVE), 1)
        assert fresh.partition == stale.partition == 0
        # b took partition 0 over; a still holds 1 once it renews.
        [kept] = await store.renew_event_partitions(sink.name, Lease("a", LIVE))

        lost = await store.settle_partitions(
            Lease("a", LIVE),
            [Settlement(kept, ids[1][:1]), Settlement(stale, ids[0], DeadEvent(ids[0][0], 5, "x"))],
        )

        assert lost == [stale]
        assert [row.id for row in await store.pending_events(sink.name, 0, 100)] == ids[0]
        assert [row.id for row in await store.pending_events(sink.name, 1, 100)] == ids[1][1:]
        assert await store.dead_event_counts() == {}
    finally:
        await store.close()


async def test_a_claim_of_an_earlier_tenure_deletes_nothing(relay_store: Store):
    """The same replica lost the partition and claimed it again: its first claim is void."""
    await relay_store.create_sagas([new_saga("trip-1")])
    ids = await pending_ids(relay_store)
    [first] = await relay_store.claim_event_partitions("broker", 1, Lease("a", EXPIRED), 1)
    await relay_store.claim_event_partitions("broker", 1, Lease("b", EXPIRED), 1)
    [again] = await relay_store.claim_event_partitions("broker", 1, Lease("a", LIVE), 1)
    assert again.version == first.version + 2

    assert not await relay_store.settle_events(first, Lease("a", LIVE), ids)
    assert await pending_ids(relay_store) == ids
    assert await relay_store.settle_events(again, Lease("a", LIVE), ids)
    assert await pending_ids(relay_store) == []


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


class ScriptedBroker:
    """A publisher that records what it was sent and fails as told: the first batch is
    cut after its first item (PublishFailed), and `refused` is refused every time."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.sent: list[str] = []
        self.stored: list[str] = []
        self.failed_once = False

    async def connect(self) -> None:
        pass

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        for index, event in enumerate(batch):
            self.sent.append(event.event_id)
            if not self.failed_once and index == 1:
                self.failed_once = True
                raise PublishTimeout("no confirm", confirmed=1)
            if event.event_id == self.refused:
                raise EventRefused("too large", event_id=event.event_id, confirmed=index)
            self.stored.append(event.event_id)

    async def close(self) -> None:
        pass


async def test_the_relay_retries_from_the_first_unconfirmed_and_dead_letters_a_refused_event(
    relay_store: Store,
):
    await relay_store.create_sagas([new_saga(f"trip-{n}") for n in range(4)])
    refused = "trip-2:1"
    broker = ScriptedBroker(refused)
    settings = RelaySettings(poll_seconds=0.05, backoff_seconds=0.01, max_refusals=3)
    relay = SinkRelay(relay_store, SINK, broker, "a", settings)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(1500):  # bounded: 30 s
            if not await pending_ids(relay_store):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"the relay left {await pending_ids(relay_store)} pending")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert broker.stored == ["trip-0:1", "trip-1:1", "trip-3:1"]
    # Cut after the first: the second is sent again; the refused one three times.
    assert broker.sent[:3] == ["trip-0:1", "trip-1:1", "trip-1:1"]
    assert broker.sent.count(refused) == 3
    assert await relay_store.dead_event_counts() == {"broker": 1}
    # Stopping released the partition: another replica takes it at once.
    assert await relay_store.claim_event_partitions("broker", 1, Lease("b", LIVE), 1)


class RecordingBroker:
    """A publisher that stores every batch whole."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def connect(self) -> None:
        pass

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        self.stored += [event.event_id for event in batch]

    async def close(self) -> None:
        pass


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1500):  # bounded: 30 s
        if await condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting until {what}")


async def test_two_replicas_share_the_partitions_and_publish_every_event_once(store_url: str):
    sink = EventSink("shared", partitions=4)
    stores = [open_store(store_url, event_sinks=(sink,)) for _ in range(2)]
    for store in stores:
        await store.open()
    brokers = [RecordingBroker(), RecordingBroker()]
    settings = RelaySettings(lease_seconds=0.6, poll_seconds=0.05)
    relays = [
        SinkRelay(store, sink, broker, owner, settings)
        for store, broker, owner in zip(stores, brokers, ("a", "b"), strict=True)
    ]
    tasks = [asyncio.create_task(relays[0].run())]
    try:

        async def holds(relay: SinkRelay, count: int) -> bool:
            return len(relay.partitions) == count

        await wait_for(lambda: holds(relays[0], 4), "a holds every partition")
        tasks.append(asyncio.create_task(relays[1].run()))
        await wait_for(lambda: holds(relays[1], 2), "b holds its share")
        await wait_for(lambda: holds(relays[0], 2), "a handed on its excess")
        assert sorted(relays[0].partitions + relays[1].partitions) == [0, 1, 2, 3]

        saga_ids = [f"trip-{n}" for n in range(16)]
        await stores[0].create_sagas([new_saga(saga_id) for saga_id in saga_ids])

        async def drained() -> bool:
            return not await stores[0].event_backlog()

        await wait_for(drained, "the outbox is empty")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in stores:
            await store.close()
    assert brokers[0].stored and brokers[1].stored
    assert sorted(brokers[0].stored + brokers[1].stored) == sorted(f"{s}:1" for s in saga_ids)


class BatchRecordingBroker:
    """A publisher that keeps each batch it was handed, as a list of event ids."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def connect(self) -> None:
        pass

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        self.batches.append([event.event_id for event in batch])

    async def close(self) -> None:
        pass


async def test_one_round_publishes_every_held_partition_in_one_batch(store_url: str):
    sink = EventSink("spread", partitions=4)
    store = open_store(store_url, event_sinks=(sink,))
    await store.open()
    broker = BatchRecordingBroker()
    relay = SinkRelay(store, sink, broker, "a", RelaySettings(poll_seconds=0.05))
    try:
        await store.create_sagas([new_saga(f"trip-{n}") for n in range(12)])
        rows = [row for p in range(4) for row in await store.pending_events(sink.name, p, 100)]
        in_order = [row.event_id for row in sorted(rows, key=lambda row: row.id)]
        task = asyncio.create_task(relay.run())
        try:

            async def drained() -> bool:
                return not await store.event_backlog()

            await wait_for(drained, "the outbox is empty")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()
    assert broker.batches == [in_order]


class OutageBroker:
    """A publisher that fails its first publishes with `failures`, in order, then works."""

    def __init__(self, failures: Sequence[Exception]) -> None:
        self.failures = list(failures)
        self.stored: list[str] = []

    async def connect(self) -> None:
        pass

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.stored += [event.event_id for event in batch]

    async def close(self) -> None:
        pass


def lost() -> Exception:
    return BrokerUnavailable("the connection to the broker is lost; reconnecting")


async def test_the_backlog_drains_soon_after_the_broker_is_back_not_after_a_backoff(
    relay_store: Store,
):
    """Partitions would back off for a minute here: an unreachable broker is tried again
    within `reconnect_seconds` instead."""
    await relay_store.create_sagas([new_saga(f"trip-{n}") for n in range(3)])
    broker = OutageBroker([lost(), lost(), lost(), lost()])
    settings = RelaySettings(
        poll_seconds=0.05,
        backoff_seconds=60.0,
        max_backoff_seconds=60.0,
        reconnect_seconds=0.05,
    )
    relay = SinkRelay(relay_store, SINK, broker, "a", settings)
    task = asyncio.create_task(relay.run())
    try:

        async def drained() -> bool:
            return not await pending_ids(relay_store)

        await wait_for(drained, "the outbox is empty")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert broker.stored == [f"trip-{n}:1" for n in range(3)] and not broker.failures


async def test_a_write_wakes_only_the_sinks_it_gave_outbox_rows(store_url: str):
    trips = EventSink("trips", saga_types=frozenset({"trip"}))
    hotels = EventSink("hotels", saga_types=frozenset({"hotel"}))
    store = open_store(store_url, event_sinks=(trips, hotels))
    await store.open()
    woken: list[frozenset[str]] = []
    store.on_written(woken.append)
    try:
        await store.create_sagas([new_saga("trip-1")])  # a trip saga: rows for trips only
        await store.enqueue_events([])  # nothing written: nobody woken
    finally:
        await store.close()
    assert woken == [frozenset({"trips"})]
