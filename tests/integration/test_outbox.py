"""The transactional outbox, on both back ends: an event row exists if and only if the
transition it announces committed, one per (selected transition, sink), in each saga's
log order within its partition; retention never deletes one; no sinks, no rows."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.errors import ConfigurationError, DataRefused, StaleSagaVersion
from orchestrator.core.events import (
    EVENT_TYPES,
    EventSet,
    EventSink,
    PendingEvent,
    event_id,
    partition_of,
)
from orchestrator.core.records import (
    CreateSagaResult,
    LockAttempt,
    NewSaga,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.engine.retention import sweep
from orchestrator.store import Store, open_store
from orchestrator.store.sql_store import SqlStore
from tests.integration.test_store import (
    first_step_completed,
    new_saga,
    pending_steps,
    saga_record,
    saga_started,
)
from tests.integration.test_store_isolation import FAULTS, step_completed

pytestmark = pytest.mark.integration

LIFECYCLE = EventSink("lifecycle", partitions=4)
EVERYTHING = EventSink("all", events=EventSet.ALL, partitions=4)
SINKS = (LIFECYCLE, EVERYTHING)


@pytest.fixture
async def outbox_store(store_url: str) -> AsyncIterator[Store]:
    """A store on `store_url` writing outbox rows for a lifecycle and an `all` sink."""
    store = open_store(store_url, event_sinks=SINKS)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def events_of(store: Store, sink: EventSink) -> list[PendingEvent]:
    """Every pending event of `sink`, partition by partition, each in id order."""
    found: list[PendingEvent] = []
    for partition in range(sink.partitions):
        rows = await store.pending_events(sink.name, partition, limit=1000)
        assert [row.id for row in rows] == sorted(row.id for row in rows)
        assert all(row.partition == partition for row in rows)
        found += rows
    return found


def announced(events: Sequence[PendingEvent], saga_id: str | None = None) -> list[str]:
    return [e.event_id for e in events if saga_id is None or e.saga_id == saga_id]


def completed(saga: SagaRecord, seq: int) -> SagaCommit:
    """The saga's last step done and the saga COMPLETED: two log rows in one commit."""
    step = first_step_completed(saga, seq=seq)
    done = dataclasses.replace(step.saga, status=SagaStatus.COMPLETED, output=b"\x0aout")
    finished = TransitionRecord(
        saga.saga_id, seq + 1, TransitionEvent.SAGA_COMPLETED, done.update_time, done.status
    )
    return dataclasses.replace(step, saga=done, transitions=(*step.transitions, finished))


async def test_lifecycle_selects_saga_milestones_and_all_every_transition(outbox_store: Store):
    new = new_saga("trip-1")
    await outbox_store.create_sagas([new])
    step = first_step_completed(new.saga, seq=2)
    await outbox_store.commit([step])
    await outbox_store.commit([completed(step.saga, seq=3)])

    lifecycle = await events_of(outbox_store, LIFECYCLE)
    everything = await events_of(outbox_store, EVERYTHING)

    assert announced(lifecycle) == ["trip-1:1", "trip-1:4"]
    assert [e.event_type for e in lifecycle] == [
        EVENT_TYPES[TransitionEvent.SAGA_STARTED],
        EVENT_TYPES[TransitionEvent.SAGA_COMPLETED],
    ]
    assert announced(everything) == ["trip-1:1", "trip-1:2", "trip-1:3", "trip-1:4"]
    for event in lifecycle + everything:
        body = json.loads(event.body)
        assert body["id"] == event.event_id == event_id("trip-1", event.seq)
        assert body["type"] == event.event_type
        assert body["subject"] == "trip-1"
        assert event.partition == partition_of("trip-1", 4)
        # No sink here asks for payloads.
        assert "output" not in body["data"]


async def test_a_saga_type_filter_selects_only_its_types(store_url: str):
    trips = EventSink("trips", saga_types=frozenset({"trip"}))
    others = EventSink("others", saga_types=frozenset({"parcel"}))
    store = open_store(store_url, event_sinks=(trips, others))
    await store.open()
    try:
        await store.create_sagas([new_saga("trip-1")])
        assert announced(await events_of(store, trips)) == ["trip-1:1"]
        assert await events_of(store, others) == []
        assert set(await store.event_backlog()) == {"trips"}
    finally:
        await store.close()


async def test_no_sinks_write_no_rows(store: Store):
    new = new_saga("trip-1")
    await store.create_sagas([new])
    await store.commit([completed(new.saga, seq=2)])

    assert await store.event_backlog() == {}
    for sink in SINKS:
        assert await events_of(store, sink) == []


async def test_without_sinks_no_write_touches_the_outbox(store: Store):
    """No statement at all: with the table gone, every kind of write still commits."""
    assert isinstance(store, SqlStore)
    await store._rows("DROP TABLE saga_outbox", {}, write=True)
    new = new_saga("trip-1")
    await store.create_sagas([new])
    await store.commit([completed(new.saga, seq=2)])
    saga = dataclasses.replace(saga_record("locked"), lock_keys=("default/sku:1",))
    opening = NewSaga(saga, pending_steps("locked"), (saga_started("locked"),))
    created = await store.create_locked_saga(None, ("default/sku:1",), lambda _: opening)
    assert created.created
    assert (await store.get_saga("trip-1")) == completed(new.saga, seq=2).saga


async def test_a_stale_commit_leaves_no_event(outbox_store: Store):
    first, second = new_saga("first"), new_saga("second")
    await outbox_store.create_sagas([first, second])
    good = completed(first.saga, seq=2)
    moved_on = first_step_completed(second.saga, seq=2)
    await outbox_store.commit([moved_on])
    stale = completed(second.saga, seq=2)  # expects the version `moved_on` replaced

    with pytest.raises(StaleSagaVersion):
        await outbox_store.write((), [good, stale])

    everything = await events_of(outbox_store, EVERYTHING)
    assert announced(everything, "first") == ["first:1"]
    assert announced(everything, "second") == ["second:1", "second:2"]


async def test_a_refused_member_of_a_group_commit_leaves_no_event(outbox_store: Store):
    running = [new_saga(f"running-{n}") for n in range(12)]
    await outbox_store.create_sagas(running)
    bad = {3, 8}
    commits = [
        step_completed(new.saga, seq=2, poison=FAULTS["surrogate"] if n in bad else "", where="log")
        for n, new in enumerate(running)
    ]

    # Started together, so the group commit takes them into one batch.
    outcomes = await asyncio.gather(
        *(outbox_store.commit([commit]) for commit in commits), return_exceptions=True
    )

    everything = await events_of(outbox_store, EVERYTHING)
    for n, outcome in enumerate(outcomes):
        saga_id = f"running-{n}"
        if n in bad:
            assert isinstance(outcome, DataRefused), outcome
            assert announced(everything, saga_id) == [f"{saga_id}:1"]
        else:
            assert outcome is None, outcome
            expected = [f"{saga_id}:1", f"{saga_id}:2", f"{saga_id}:3"]
            assert announced(everything, saga_id) == expected


async def test_each_saga_s_events_keep_its_log_order_within_its_partition(outbox_store: Store):
    sagas = [new_saga(f"saga-{n}").saga for n in range(10)]
    await outbox_store.create_sagas(
        [NewSaga(s, pending_steps(s.saga_id), (saga_started(s.saga_id),)) for s in sagas]
    )
    # Interleaved commits of every saga, some of two commits of one saga in one batch.
    steps = [first_step_completed(saga, seq=2) for saga in sagas]
    await outbox_store.write((), steps[:5])
    await outbox_store.write((), [*steps[5:], *(completed(s.saga, seq=3) for s in steps[:5])])
    await asyncio.gather(*(outbox_store.commit([completed(s.saga, seq=3)]) for s in steps[5:]))

    everything = await events_of(outbox_store, EVERYTHING)
    for saga in sagas:
        mine = [e for e in everything if e.saga_id == saga.saga_id]
        assert [e.seq for e in mine] == [1, 2, 3, 4]
        assert {e.partition for e in mine} == {partition_of(saga.saga_id, 4)}
        ids = [e.id for e in mine]
        assert ids == sorted(ids)
    assert len(set(announced(everything))) == len(everything) == 40


async def test_lock_takes_and_locked_openings_write_their_events(outbox_store: Store):
    """...and wake the relay as any write does: their rows are made inside the lock
    transaction by a callback, not handed to `commit`."""
    woken: list[frozenset[str]] = []
    outbox_store.on_written(woken.append)
    saga = dataclasses.replace(saga_record("locked"), lock_keys=("default/sku:1",))
    opening = NewSaga(saga, pending_steps("locked"), (saga_started("locked"),))

    def open_saga(attempt: LockAttempt) -> NewSaga:
        assert attempt.acquired
        return opening

    created = await outbox_store.create_locked_saga(None, ("default/sku:1",), open_saga)
    assert created == CreateSagaResult(saga, created=True)
    moment = saga.update_time + timedelta(seconds=1)
    taken = dataclasses.replace(saga, version=2, update_time=moment, locks_held=True)
    acquired = TransitionRecord("locked", 2, TransitionEvent.LOCKS_ACQUIRED, moment, taken.status)
    await outbox_store.take_locks(
        "locked", ("default/sku:2",), 1, lambda _: SagaCommit(taken, 1, (), (acquired,))
    )

    assert announced(await events_of(outbox_store, EVERYTHING)) == ["locked:1", "locked:2"]
    assert announced(await events_of(outbox_store, LIFECYCLE)) == ["locked:1"]
    everything_and_lifecycle = frozenset({EVERYTHING.name, LIFECYCLE.name})
    assert woken == [everything_and_lifecycle, frozenset({EVERYTHING.name})]


async def test_retention_deletes_a_saga_but_never_its_undelivered_events(outbox_store: Store):
    old = utc_now() - timedelta(days=40)
    saga = saga_record("old", status=SagaStatus.COMPLETED, create_time=old)
    await outbox_store.create_saga(saga, pending_steps("old"), [saga_started("old")])

    assert await sweep(outbox_store, timedelta(days=30)) == 1

    assert await outbox_store.get_saga("old") is None
    assert announced(await events_of(outbox_store, LIFECYCLE)) == ["old:1"]


async def test_the_relay_reads_oldest_first_deletes_what_it_names_and_sees_the_backlog(
    outbox_store: Store,
):
    new = [new_saga(f"saga-{n}") for n in range(5)]
    await outbox_store.create_sagas(new)
    before = await outbox_store.event_backlog()
    assert before["lifecycle"].pending == before["all"].pending == 5
    assert before["lifecycle"].oldest <= utc_now()

    partition = partition_of("saga-0", LIFECYCLE.partitions)
    rows = await outbox_store.pending_events("lifecycle", partition, limit=1)
    assert announced(rows) == ["saga-0:1"]
    assert await outbox_store.delete_events([rows[0].id, rows[0].id]) == 1
    assert await outbox_store.delete_events([rows[0].id]) == 0
    assert await outbox_store.delete_events([]) == 0

    after = await outbox_store.event_backlog()
    assert after["lifecycle"].pending == 4
    assert after["all"].pending == 5
    assert "saga-0:1" not in announced(await events_of(outbox_store, LIFECYCLE))
    assert "saga-0:1" in announced(await events_of(outbox_store, EVERYTHING))


def test_two_sinks_of_one_name_are_refused(store_url: str):
    with pytest.raises(ConfigurationError, match="lifecycle"):
        open_store(store_url, event_sinks=(LIFECYCLE, EventSink("lifecycle")))
