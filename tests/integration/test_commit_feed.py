"""Every commit reaches every replica's watchers: PostgreSQL through LISTEN/NOTIFY on a
channel of its schema; SQLite (one process) needs no feed and is live at once."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.store import Store, open_store
from tests.integration.test_store import create

pytestmark = pytest.mark.integration


async def follow(store: Store) -> tuple[asyncio.Task[None], asyncio.Queue[str], list[bool]]:
    heard: asyncio.Queue[str] = asyncio.Queue()
    states: list[bool] = []
    task = asyncio.create_task(store.follow_commits(heard.put_nowait, states.append))
    for _ in range(200):
        if states:
            break
        await asyncio.sleep(0.01)
    return task, heard, states


async def test_sqlite_feed_is_live_at_once_and_needs_no_listener(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'saga.db'}")
    await store.open()
    try:
        task, _, states = await follow(store)
        await asyncio.wait_for(task, 1.0)
        assert states == [True]
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_commit_by_one_replica_is_heard_by_another(postgres_url):
    listener, writer = open_store(postgres_url), open_store(postgres_url)
    await listener.open()
    await writer.open()
    try:
        task, heard, states = await follow(listener)
        assert states == [True]
        saga = await create(writer, "saga-heard")
        assert await asyncio.wait_for(heard.get(), 5.0) == saga.saga_id
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert states == [True, False]
    finally:
        await listener.close()
        await writer.close()
