"""Group commit: the writes of many concurrent sagas, one transaction.

Every `create_saga` and `commit` call joins a queue; one writer task takes
everything queued and writes it with `Store.write` in a single transaction, while
the next callers queue up behind it. There is no timer: an idle store writes a
lone saga's commit at once, so concurrency 1 pays nothing, and at concurrency N a
transaction carries up to N sagas' transitions. Before each further batch the writer
lets the event loop make a few passes, so the sagas ready to write by then join it.
Each caller still awaits its own write before it goes on, so "persisted before
acting" holds for every saga.

If a batch fails because one commit's expected version is stale, its items are
written again one by one, so only the stale one fails; any other error (the
database is unreachable) fails every item of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.records import CreateSagaResult, NewSaga, SagaCommit

MAX_BATCH_ITEMS = 512
"""Creates plus commits written in one transaction at most."""

MAX_GATHER_PASSES = 4
"""Event-loop passes the writer lets run before a further batch, while each brings writes."""

Write = Callable[[Sequence[NewSaga], Sequence[SagaCommit]], Awaitable[list[CreateSagaResult]]]


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
        new_sagas = [p.new_saga for p in batch if p.new_saga is not None]
        commits = [commit for p in batch for commit in p.commits]
        try:
            results = await self._write(new_sagas, commits)
        except StaleSagaVersion as error:
            if len(batch) == 1:
                _fail(batch[0], error)
                return
            for pending in batch:  # find the stale one; the others are written alone
                await self._write_batch([pending])
            return
        except BaseException as error:
            for pending in batch:
                _fail(pending, error)
            if not isinstance(error, Exception):
                raise
            return
        created = iter(results)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(next(created) if pending.new_saga else None)
            elif pending.new_saga is not None:
                next(created)


def _fail(pending: _Pending, error: BaseException) -> None:
    if not pending.done.done():
        pending.done.set_exception(error)
