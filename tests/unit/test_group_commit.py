"""Group commit's batching and failure isolation, with an in-memory write function."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from orchestrator.core.errors import StaleSagaVersion, StoreUnavailable
from orchestrator.core.records import CreateSagaResult, NewSaga, SagaCommit
from orchestrator.store.group_commit import GroupCommit
from tests.unit.test_machine import new_run

pytestmark = pytest.mark.unit


class FakeWrite:
    """Records each call; fails a call containing a commit of a saga named in `stale`."""

    def __init__(self, stale: set[str] = frozenset(), unavailable: bool = False) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.stale = stale
        self.unavailable = unavailable
        self.entered = asyncio.Event()
        """Set when the first transaction begins."""

    async def __call__(self, new_sagas, commits) -> list[CreateSagaResult]:
        self.entered.set()
        await asyncio.sleep(0.01)  # a transaction takes a while: others queue meanwhile
        self.calls.append(([n.saga.saga_id for n in new_sagas], [c.saga.saga_id for c in commits]))
        if self.unavailable:
            raise StoreUnavailable("down")
        if any(c.saga.saga_id in self.stale for c in commits):
            raise StaleSagaVersion("stale")
        return [CreateSagaResult(n.saga, created=True) for n in new_sagas]


def commit_of(saga_id: str) -> SagaCommit:
    run = new_run()
    saga = dataclasses.replace(run.saga, saga_id=saga_id, version=2)
    return SagaCommit(saga=saga, expected_version=1)


def new_saga(saga_id: str) -> NewSaga:
    return NewSaga(dataclasses.replace(new_run().saga, saga_id=saga_id), (), ())


async def test_a_lone_write_goes_at_once_in_its_own_transaction():
    write = FakeWrite()
    group = GroupCommit(write)
    await group.commit([commit_of("a")])
    assert write.calls == [([], ["a"])]


async def test_concurrent_writes_share_transactions():
    write = FakeWrite()
    group = GroupCommit(write)
    results = await asyncio.gather(
        *(group.commit([commit_of(f"c{n}")]) for n in range(20)),
        *(group.create(new_saga(f"n{n}")) for n in range(5)),
    )
    assert len(write.calls) == 1, "everything queued before the writer ran: one transaction"
    assert sorted(c for _, commits in write.calls for c in commits) == sorted(
        f"c{n}" for n in range(20)
    )
    assert [r.saga.saga_id for r in results[20:]] == [f"n{n}" for n in range(5)]


async def test_writes_queued_during_a_transaction_go_together_in_the_next():
    write = FakeWrite()
    group = GroupCommit(write)
    first = asyncio.create_task(group.commit([commit_of("first")]))
    await write.entered.wait()  # the writer is now inside the first transaction
    await asyncio.gather(first, *(group.commit([commit_of(f"c{n}")]) for n in range(10)))
    assert [len(commits) for _, commits in write.calls] == [1, 10]


async def test_a_saga_whose_write_just_committed_joins_the_next_batch_with_its_next_write():
    write = FakeWrite()
    group = GroupCommit(write)

    async def two_writes() -> None:
        await group.commit([commit_of("first")])
        await group.commit([commit_of("second")])

    saga = asyncio.create_task(two_writes())
    await write.entered.wait()  # the writer is now inside the first transaction
    await asyncio.gather(saga, group.commit([commit_of("queued")]))
    assert [sorted(commits) for _, commits in write.calls] == [["first"], ["queued", "second"]]


async def test_writes_that_arrive_pass_after_pass_join_the_next_batch():
    write = FakeWrite()
    group = GroupCommit(write)

    async def two_writes(name: str, steps_between: int) -> None:
        await group.commit([commit_of(f"{name}-1")])
        for _ in range(steps_between):  # a reply's callback, then the saga's own step
            await asyncio.sleep(0)
        await group.commit([commit_of(f"{name}-2")])

    sagas = [asyncio.create_task(two_writes(name, n)) for n, name in enumerate("abc")]
    await write.entered.wait()  # the writer is now inside the first transaction
    await asyncio.gather(*sagas, group.commit([commit_of("queued")]))
    assert [sorted(commits) for _, commits in write.calls] == [
        ["a-1", "b-1", "c-1"],
        ["a-2", "b-2", "c-2", "queued"],
    ]


async def test_a_stale_commit_fails_alone_and_the_rest_of_its_batch_is_written():
    write = FakeWrite(stale={"c3"})
    group = GroupCommit(write)
    outcomes = await asyncio.gather(
        *(group.commit([commit_of(f"c{n}")]) for n in range(6)), return_exceptions=True
    )
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 3 + ["StaleSagaVersion"] + [
        "NoneType"
    ] * 2
    committed = {c for _, commits in write.calls if "c3" not in commits for c in commits}
    assert committed == {"c0", "c1", "c2", "c4", "c5"}


async def test_an_unreachable_store_fails_every_write_of_the_batch():
    write = FakeWrite(unavailable=True)
    group = GroupCommit(write)
    outcomes = await asyncio.gather(
        *(group.commit([commit_of(f"c{n}")]) for n in range(4)), return_exceptions=True
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)


async def test_batches_are_bounded():
    write = FakeWrite()
    group = GroupCommit(write, max_items=4)
    await asyncio.gather(*(group.commit([commit_of(f"c{n}")]) for n in range(13)))
    assert max(len(commits) for _, commits in write.calls) <= 4
