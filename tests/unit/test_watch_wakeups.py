"""Watchers of a saga are woken by its next local commit and leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.commands import ParticipantClient
from orchestrator.executor import Executor
from orchestrator.registry import Registry
from orchestrator.store import SqliteStore

pytestmark = pytest.mark.unit


@pytest.fixture
def executor():
    return Executor(SqliteStore(":memory:"), Registry([]), ParticipantClient({}))


async def test_a_local_commit_wakes_every_watcher_at_once(executor):
    waiters = [asyncio.create_task(executor.wait_for_commit("s", 5.0)) for _ in range(3)]
    await asyncio.sleep(0)
    executor._notify("s")
    done, pending = await asyncio.wait(waiters, timeout=1.0)
    assert len(done) == 3 and not pending
    assert executor._watchers == {}


async def test_watchers_that_time_out_leave_no_event_behind(executor):
    await asyncio.gather(*(executor.wait_for_commit("elsewhere", 0.01) for _ in range(3)))
    assert executor._watchers == {}
