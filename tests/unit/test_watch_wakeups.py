"""Watchers of a saga are woken by its next commit, miss none between their read and
their wait, and leave nothing behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.core.records import SagaStatus, TransitionEvent, TransitionRecord
from orchestrator.engine import commit_watchers
from orchestrator.engine.commit_watchers import CommitWatchers
from saga.v1 import orchestrator_pb2 as pb

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


async def test_a_watch_reads_the_log_again_when_the_saga_ended_after_its_last_read() -> None:
    """The commit that ends a saga may land between the watch's read of the log (nothing
    new yet) and its look at the saga (ended): the stream must still send those rows,
    ending with the saga, instead of closing without them."""
    saga_id = "01a22ff6-d722-7df5-93c1-9506d62c6fba"
    now = datetime.now(UTC)
    rows = [
        TransitionRecord(saga_id, 1, TransitionEvent.SAGA_STARTED, now, SagaStatus.RUNNING),
        TransitionRecord(saga_id, 2, TransitionEvent.SAGA_FAILED, now, SagaStatus.FAILED),
    ]

    class EndingStore:
        """Its first log read comes before the last commit; the saga is read after it."""

        reads = 0

        async def get_saga(self, _saga_id: str) -> Any:
            return SimpleNamespace(status=SagaStatus.FAILED)

        async def get_transitions(self, _saga_id: str, after_seq: int = 0) -> list[Any]:
            self.reads += 1
            return [] if self.reads == 1 else [row for row in rows if row.seq > after_seq]

    executor = SimpleNamespace(watchers=CommitWatchers())
    service = SagaOrchestratorService(None, executor, EndingStore())  # type: ignore[arg-type]

    async def ended_saga(_saga_id: str, _seq: int) -> pb.Saga:
        return pb.Saga(saga_id=saga_id, status=pb.SAGA_STATUS_FAILED)

    service._ended_saga = ended_saga  # type: ignore[method-assign,assignment]
    request = pb.WatchSagaRequest(saga_id=saga_id)
    responses = [r async for r in service._watch(request, None)]  # type: ignore[arg-type]
    assert [r.transition.seq for r in responses] == [1, 2]
    assert responses[-1].saga.status == pb.SAGA_STATUS_FAILED
