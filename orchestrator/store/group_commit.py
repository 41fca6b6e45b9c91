"""Group commit: the writes of many concurrent sagas, one transaction.

Every `create_saga` and `commit` call joins a queue; one writer task takes
everything queued and writes it with `Store.write` in a single transaction, while
the next callers queue up behind it. There is no timer: an idle store writes a
lone saga's commit at once, so concurrency 1 pays nothing, and at concurrency N a
transaction carries up to N sagas' transitions. Before each further batch the writer
lets the event loop make a few passes, so the sagas ready to write by then join it.
Each caller still awaits its own write before it goes on, so "persisted before
acting" holds for every saga.

One caller's write cannot fail another's. If a batch fails for a reason one of its
writes may own (a stale expected version, a value the database refuses to store: see
`fails_alone`), its halves are written again apart, and the failing half halved again
(`write_isolated`): the others commit, in their order, and each caller hears its own
outcome, a refused value as `DataRefused`. That costs about two writes per halving, so a
batch of 512 with one bad write takes some 20 writes. An error of the database or of its
connection (unreachable, shutting down, a serialization failure) fails every write of
the batch, as it would have failed each alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator.core.records import CreateSagaResult, NewSaga, SagaCommit
from orchestrator.store._rows import fails_alone, member_error

MAX_BATCH_ITEMS = 512
"""Creates plus commits written in one transaction at most."""

MAX_GATHER_PASSES = 4
"""Event-loop passes the writer lets run before a further batch, while each brings writes."""

Write = Callable[[Sequence[NewSaga], Sequence[SagaCommit]], Awaitable[list[CreateSagaResult]]]

Item = TypeVar("Item")
Result = TypeVar("Result")


async def write_isolated(
    write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
    items: Sequence[Item],
    answer: Callable[[Sequence[Item], Sequence[Result | Exception]], None],
) -> None:
    """Write `items` in one `write` (one transaction, one result per item), and `answer`
    each with its result or its error, as soon as the write that decided it is done.

    If the write fails for a reason an item may own (`fails_alone`), the two halves are
    written apart, in order, and so on down to single items: the items the error is not
    about are written, and an item that fails alone answers its own error (a refused
    value as `DataRefused`). Any other error answers every item with it. A cancellation
    is raised, the items not yet answered left to the caller."""
    try:
        results = await write(items)
    except Exception as error:
        if len(items) > 1 and fails_alone(error):
            half = len(items) // 2
            await write_isolated(write, items[:half], answer)
            await write_isolated(write, items[half:], answer)
            return
        answer(items, [member_error(error)] * len(items))
        return
    answer(items, results)


@dataclass(slots=True)
class _Pending:
    new_saga: NewSaga | None
    commits: Sequence[SagaCommit]
    done: asyncio.Future[CreateSagaResult | None] = field(repr=False)


class GroupCommit:
    """Queues writes and flushes them through `write`, one batch per transaction."""

    def __init__(self, write: Write, max_items: int = MAX_BATCH_ITEMS) -> None:
        self._write = write
        self._max_items = max_items
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def create(self, new_saga: NewSaga) -> CreateSagaResult:
        result = await self._submit(new_saga, ())
        if result is None:  # a write answers every new saga it was given
            raise RuntimeError(f"saga {new_saga.saga.saga_id}: the write gave no result")
        return result

    async def commit(self, commits: Sequence[SagaCommit]) -> None:
        if commits:
            await self._submit(None, commits)

    async def _submit(
        self, new_saga: NewSaga | None, commits: Sequence[SagaCommit]
    ) -> CreateSagaResult | None:
        loop = asyncio.get_running_loop()
        pending = _Pending(new_saga, commits, loop.create_future())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._flush(), name="group-commit")
        return await pending.done

    async def _flush(self) -> None:
        first = True
        while self._queue:
            if not first:
                # Let the sagas whose writes just committed, and whose replies are ready,
                # run first: their next writes join this batch instead of the one after
                # it. Passes of the event loop, no timer: while a pass brings new writes,
                # up to MAX_GATHER_PASSES.
                for _ in range(MAX_GATHER_PASSES):
                    queued = len(self._queue)
                    await asyncio.sleep(0)
                    if len(self._queue) == queued:
                        break
            first = False
            batch: list[_Pending] = []
            items = 0
            while self._queue and (not batch or items < self._max_items):
                pending = self._queue.pop(0)
                batch.append(pending)
                items += (1 if pending.new_saga else 0) + len(pending.commits)
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            await write_isolated(self._write_pendings, batch, _answer)
        except BaseException as error:
            for pending in batch:
                _fail(pending, error)
            raise

    async def _write_pendings(self, batch: Sequence[_Pending]) -> list[CreateSagaResult | None]:
        """One write of `batch`: each pending's created saga (None for commits), in order."""
        new_sagas = [p.new_saga for p in batch if p.new_saga is not None]
        commits = [commit for p in batch for commit in p.commits]
        created = iter(await self._write(new_sagas, commits))
        return [next(created) if pending.new_saga else None for pending in batch]


def _answer(
    batch: Sequence[_Pending], outcomes: Sequence[CreateSagaResult | Exception | None]
) -> None:
    for pending, outcome in zip(batch, outcomes, strict=True):
        if pending.done.done():  # its caller was cancelled
            continue
        if isinstance(outcome, Exception):
            pending.done.set_exception(outcome)
        else:
            pending.done.set_result(outcome)


def _fail(pending: _Pending, error: BaseException) -> None:
    if not pending.done.done():
        pending.done.set_exception(error)
