"""Semantic locks in the store, once per back end: all-or-nothing taking with the
saga's commit, FIFO queues, release in the terminal commit, fencing by version."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.records import (
    LockAttempt,
    LockHolding,
    SagaCommit,
    SagaFilter,
    SagaRecord,
    SagaStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.store import PostgresStore, Store, open_store
from orchestrator.store.locks import RELEASE_CHANNEL
from tests.integration.test_store import create

pytestmark = pytest.mark.integration


class Saga:
    """A stored saga and the commits a driver would make of the store's answers."""

    def __init__(self, store: Store, record: SagaRecord) -> None:
        self.store = store
        self.record = record
        self.seq = 1

    def _commit(self, event: TransitionEvent, **changes: object) -> SagaCommit:
        saga = self.record
        self.seq += 1
        moment = saga.update_time + timedelta(seconds=1)
        new = dataclasses.replace(saga, update_time=moment, version=saga.version + 1, **changes)
        transition = TransitionRecord(saga.saga_id, self.seq, event, moment, new.status)
        self.record = new
        return SagaCommit(new, saga.version, (), (transition,))

    def decide(self, attempt: LockAttempt) -> SagaCommit | None:
        if attempt.acquired:
            return self._commit(TransitionEvent.LOCKS_ACQUIRED, locks_held=True)
        if not attempt.queued:
            return self._commit(
                TransitionEvent.LOCKS_WAITING, lock_wait_since=self.record.update_time
            )
        return None

    async def take(self) -> LockAttempt:
        return await self.store.take_locks(
            self.record.saga_id, self.record.lock_keys, self.record.version, self.decide
        )

    async def finish(self) -> None:
        saga = self.record
        self.seq += 1
        moment = saga.update_time + timedelta(seconds=1)
        new = dataclasses.replace(
            saga,
            status=SagaStatus.COMPLETED,
            update_time=moment,
            version=saga.version + 1,
            locks_held=False,
        )
        transition = TransitionRecord(
            saga.saga_id, self.seq, TransitionEvent.SAGA_COMPLETED, moment, new.status
        )
        self.record = new
        await self.store.commit(
            [SagaCommit(new, saga.version, (), (transition,), released_locks=saga.lock_keys)]
        )


async def locked_saga(store: Store, saga_id: str, *keys: str) -> Saga:
    record = await create(store, saga_id)
    saga = Saga(store, dataclasses.replace(record, lock_keys=tuple(sorted(keys))))
    await store.commit([saga._commit(TransitionEvent.SAGA_STARTED)])  # stores the keys
    return saga


async def test_free_keys_are_taken_together_with_the_saga_commit(store: Store):
    a = await locked_saga(store, "A", "sku:1", "customer:1")
    attempt = await a.take()
    assert attempt.acquired
    stored = await store.get_saga("A")
    assert stored is not None and stored.locks_held and stored.version == a.record.version
    assert await store.lock_holdings("A") == [
        LockHolding("customer:1", holds=True),
        LockHolding("sku:1", holds=True),
    ]
    log = [t.event for t in await store.get_transitions("A")]
    assert log[-1] is TransitionEvent.LOCKS_ACQUIRED


SKU = "default/sku:1"


async def test_waiters_queue_in_arrival_order_and_the_terminal_commit_hands_the_key_on(
    store: Store,
):
    # The store keeps lock keys qualified by the saga's namespace; a listing names the key
    # as clients do.
    a = await locked_saga(store, "A", SKU)
    b = await locked_saga(store, "B", SKU)
    c = await locked_saga(store, "C", SKU)
    assert (await a.take()).acquired
    refused_b = await b.take()
    assert [(x.key, x.saga_id, x.holds) for x in refused_b.blockers] == [(SKU, "A", True)]
    assert not refused_b.queued
    assert not (await c.take()).acquired
    assert await store.lock_holdings("B") == [LockHolding(SKU, holds=False, ahead=0)]
    assert await store.lock_holdings("C") == [LockHolding(SKU, holds=False, ahead=1)]
    assert (await b.take()).queued  # a later refusal: already in the queue
    await a.finish()
    assert await store.lock_holdings("A") == []
    # C asks first, but B queued first: C waits for B.
    refused_c = await c.take()
    assert [(x.saga_id, x.holds) for x in refused_c.blockers] == [("B", False)]
    assert (await b.take()).acquired
    assert await store.lock_holdings("C") == [LockHolding(SKU, holds=False, ahead=0)]
    holders = await store.list_sagas(SagaFilter(lock_key="sku:1"), limit=10)
    assert {s.saga_id for s in holders} == {"B", "C"}


async def test_keys_are_all_or_nothing_and_queues_agree_on_order_across_keys(store: Store):
    a = await locked_saga(store, "A", "k1")
    b = await locked_saga(store, "B", "k1", "k2")
    c = await locked_saga(store, "C", "k2")
    assert (await a.take()).acquired
    assert not (await b.take()).acquired
    assert await store.lock_holdings("B") == [
        LockHolding("k1", holds=False, ahead=0),
        LockHolding("k2", holds=False, ahead=0),
    ]
    # k2 is free, but B queued for it first: C may not overtake (no starvation of B).
    assert not (await c.take()).acquired
    await a.finish()
    assert (await b.take()).acquired
    assert not (await c.take()).acquired
    await b.finish()
    assert (await c.take()).acquired


async def test_a_writer_holding_a_stale_version_can_neither_take_nor_queue(store: Store):
    a = await locked_saga(store, "A", "sku:1")
    stale = Saga(store, a.record)
    stale.seq = a.seq
    await a.take()  # the current owner moves the saga on
    b = await locked_saga(store, "B", "sku:2")
    fenced = Saga(store, dataclasses.replace(b.record, version=b.record.version - 1))
    fenced.seq = 50
    with pytest.raises(StaleSagaVersion):
        await fenced.take()
    assert await store.lock_holdings("B") == []
    # A refusal that writes nothing still checks the version.
    with pytest.raises(StaleSagaVersion):
        await store.take_locks("A", ("sku:1",), stale.record.version, lambda _: None)


async def test_a_stale_terminal_commit_releases_nothing(store: Store):
    a = await locked_saga(store, "A", "sku:1")
    await a.take()
    stale = Saga(store, dataclasses.replace(a.record, version=a.record.version - 1))
    stale.seq = 90
    with pytest.raises(StaleSagaVersion):
        await stale.finish()
    assert await store.lock_holdings("A") == [LockHolding("sku:1", holds=True)]


@pytest.mark.postgres
async def test_concurrent_takers_on_two_connections_never_both_hold_a_key(postgres_url: str):
    stores = [open_store(postgres_url) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        sagas = [await locked_saga(stores[i % 2], f"S{i:02}", "hot", f"own:{i}") for i in range(20)]
        attempts = await asyncio.gather(*(s.take() for s in sagas))
        assert sum(a.acquired for a in attempts) == 1
        holders = [s for s, a in zip(sagas, attempts, strict=True) if a.acquired]
        assert await stores[0].lock_holdings(holders[0].record.saga_id) == [
            LockHolding("hot", holds=True),
            LockHolding(f"own:{int(holders[0].record.saga_id[1:])}", holds=True),
        ]
    finally:
        for s in stores:
            await s.close()


async def listeners(url: str, channel: str) -> set[int]:
    """Backend pids of the database that ran LISTEN on `channel` and are idle: from then
    on, a notification on it reaches them. Tests of other schemas share the database,
    so a test looks for a pid that was not there before."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as observer:
        cursor = await observer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle' AND query = %s",
            (f"LISTEN {channel}",),
        )
        return {pid for (pid,) in await cursor.fetchall()}


async def a_new_listener(url: str, channel: str, before: set[int], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await listeners(url, channel) - before:
        assert loop.time() < deadline, f"no new backend LISTENed on {channel} in {timeout}s"
        await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_a_release_is_announced_to_listeners_when_it_commits(postgres_url: str):
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        releases = store.lock_releases()
        assert releases is not None
        before = await listeners(postgres_url, RELEASE_CHANNEL)
        first = asyncio.ensure_future(anext(releases))
        await a_new_listener(postgres_url, RELEASE_CHANNEL, before)
        a = await locked_saga(store, "A", "sku:9")
        await a.take()
        assert not first.done()
        await a.finish()
        assert await asyncio.wait_for(first, 5) == "sku:9"
        await releases.aclose()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_woken_waiter_takes_every_key_and_leaves_every_queue_in_its_commit(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        holder = await locked_saga(store, "A", "k1", "k2", "k3")
        waiter = await locked_saga(store, "B", "k1", "k2", "k3")
        lone = await locked_saga(store, "C", "k4")
        assert (await holder.take()).acquired
        assert not (await waiter.take()).acquired
        await holder.finish()
        sent: list[str] = []
        execute = psycopg.AsyncCursor.execute

        async def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return await execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
        assert (await waiter.take()).acquired
        three_keys = len(sent)
        sent.clear()
        assert (await lone.take()).acquired
        monkeypatch.undo()
        # Set-based: three keys cost the statements one key costs.
        assert three_keys == len(sent)
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT DISTINCT xmin::text FROM saga_locks WHERE saga_id = 'B'"
                " UNION SELECT xmin::text FROM sagas WHERE saga_id = 'B'"
            ).fetchall()
            queued = connection.execute("SELECT count(*) FROM saga_lock_queue").fetchone()
        assert len(rows) == 1  # the keys and the saga's commit: one transaction
        assert queued == (0,)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_saga_moved_on_while_its_keys_are_looked_at_takes_nothing(postgres_url: str):
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        a = await locked_saga(store, "A", "sku:1")

        def moved_on_meanwhile(attempt: LockAttempt) -> SagaCommit | None:
            # Another writer commits between the look and the update (an operator).
            with psycopg.connect(postgres_url, autocommit=True) as other:
                other.execute("UPDATE sagas SET version = version + 1 WHERE saga_id = 'A'")
            return a.decide(attempt)

        with pytest.raises(StaleSagaVersion, match="holds version"):
            await store.take_locks("A", ("sku:1",), a.record.version, moved_on_meanwhile)
        assert await store.lock_holdings("A") == []
        log = [t.event for t in await store.get_transitions("A")]
        assert TransitionEvent.LOCKS_ACQUIRED not in log
    finally:
        await store.close()
