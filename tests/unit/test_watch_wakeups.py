"""Watchers of a saga are woken by its next commit, miss none between their read and
their wait, and leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator import commit_watchers
from orchestrator.commit_watchers import CommitWatchers

pytestmark = pytest.mark.unit


async def test_a_commit_wakes_every_watcher_of_its_saga_at_once():
    watchers = CommitWatchers(live=True)

    async def watch(saga_id: str) -> None:
        with watchers.subscription(saga_id) as event:
            await watchers.wait(event)

    waiters = [asyncio.create_task(watch("s")) for _ in range(3)]
    other = asyncio.create_task(watch("t"))
    await asyncio.sleep(0)
    watchers.notify("s")
    done, pending = await asyncio.wait(waiters, timeout=1.0)
    assert len(done) == 3 and not pending
    assert not other.done()
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    assert watchers.watched == 0


async def test_a_commit_between_read_and_wait_is_not_missed():
    watchers = CommitWatchers(live=True)
    with watchers.subscription("s") as event:
        event.clear()  # as before a read of the log
        watchers.notify("s")  # a commit lands while the watcher reads
        await asyncio.wait_for(watchers.wait(event), 1.0)


async def test_an_idle_watcher_sleeps_while_the_feed_is_live_and_polls_while_it_is_down(
    monkeypatch,
):
    monkeypatch.setattr(commit_watchers, "IDLE_RECHECK_SECONDS", 5.0)
    monkeypatch.setattr(commit_watchers, "POLL_SECONDS", 0.01)
    watchers = CommitWatchers(live=True)
    with watchers.subscription("s") as event:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watchers.wait(event), 0.2)
        watchers.set_live(False)
        event.clear()
        await asyncio.wait_for(watchers.wait(event), 1.0)  # returns after one poll


async def test_the_feed_coming_back_wakes_every_watcher():
    watchers = CommitWatchers(live=False)
    with watchers.subscription("a") as a, watchers.subscription("b") as b:
        watchers.set_live(True)
        assert a.is_set() and b.is_set()
