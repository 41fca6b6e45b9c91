"""PostgreSQL: what a lock take and a batch of locked openings read before their plan.

Both run in one pipelined transaction of the writer (`PlanWriter`), under the guard of
their keys (advisory locks, `LOCKS.guard_keys`), and end in a `WritePlan`:

- A lock take (`take_locks`), in two round trips where the shared path (`locks.py`)
  needs about eight: BEGIN, the setting bounding an idle transaction, the guard and one
  look at everything the machine decides on (`LOOK_AT_KEYS`: the saga's queue ticket,
  who is in the way of each key, a new ticket when it must queue for the first time, the
  stored version) go in the first; `decide` runs on what came back; the saga's commit,
  the keys taken (and its queue places left) or its queue places, and COMMIT go in the
  second. The look runs after the guard, so it sees every taker of these keys that
  committed before: the same all-or-nothing, FIFO answer as the shared path. The version
  read turns an already stale saga away before anything is written; a commit found
  stale at COMMIT fails the transaction at the server (the writer's logging update).
- A batch of locked openings (`write_openings`), in one round trip for the guard, who
  is in the way and the sagas the idempotency keys already started; one more for
  tickets, only when an opening may wait; then the plan: the inserts, steps, log rows,
  held keys and queue places with COMMIT (one more round trip before them only when an
  opening has an idempotency key). The batch is decided by the core's `decide_openings`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from psycopg.rows import dict_row

from orchestrator.core.events import EventSink
from orchestrator.core.lock_openings import (
    LockedOpening,
    OpenedSaga,
    decide_openings,
    openings_may_wait,
)
from orchestrator.core.records import CreateSagaResult, LockAttempt, SagaRecord
from orchestrator.store._rows import expected_at, write_refused
from orchestrator.store.locks import Decide, blockers_from_rows
from orchestrator.store.postgres.connection import Connection
from orchestrator.store.postgres.sql import (
    ENCODING,
    IDLE_LOCK_TRANSACTION,
    LOCKS,
    LOOK_AT_KEYS,
    SELECT_SAGAS_BY_KEYS,
)
from orchestrator.store.postgres.writer import PlanWriter, WritePlan


async def take_locks(
    connection: Connection,
    saga_id: str,
    keys: Sequence[str],
    version: int,
    decide: Decide,
    now: datetime,
    sinks: Collection[EventSink] = (),
) -> LockAttempt:
    """As the shared `take_locks` (see the module): the attempt the machine decided on,
    committed with its commit and the keys or the queue places. StaleSagaVersion if the
    saga is not at `version`."""
    writer = PlanWriter(connection, explicit=True)
    async with writer.transaction() as pipeline:
        cursor = connection.cursor(row_factory=dict_row)
        await cursor.execute(IDLE_LOCK_TRANSACTION)
        await cursor.execute(LOCKS.guard_keys, {"keys": list(keys)})
        look = connection.cursor(row_factory=dict_row)
        await look.execute(LOOK_AT_KEYS, {"saga_id": saga_id, "keys": list(keys)})
        await pipeline.sync()
        found = await look.fetchone()
        if found is None:  # a SELECT of aggregates and subqueries returns one row
            raise RuntimeError(f"saga {saga_id}: the lock look returned no row")
        if found["version"] != version:
            stored = {} if found["version"] is None else {saga_id: found["version"]}
            raise write_refused([expected_at(saga_id, version)], stored)
        queued = found["queued_ticket"] is not None
        ticket = found["queued_ticket"] if queued else found["new_ticket"]
        attempt = LockAttempt(
            tuple(blockers_from_rows(found["blockers"])), queued=queued, ticket=int(ticket or 0)
        )
        commit = decide(attempt)
        # The machine decided to wait (under the reject policy it fails the saga instead).
        waits = commit is not None and commit.saga.lock_wait_since is not None
        acquired = attempt.acquired
        await writer.queue(
            WritePlan(
                commits=() if commit is None else (commit,),
                held=[(key, saga_id) for key in keys] if acquired else (),
                leaving_queue=(saga_id,) if acquired else (),
                queued=[(key, saga_id, attempt.ticket) for key in keys]
                if not acquired and not queued and waits
                else (),
                locked_at=now,
                announce=False,
                sinks=sinks,
            )
        )
    return attempt


async def write_openings(
    connection: Connection,
    openings: Sequence[LockedOpening],
    now: datetime,
    sinks: Collection[EventSink] = (),
) -> list[CreateSagaResult | Exception]:
    """Insert `openings` with their keys or queue places (see the module). Returns one
    outcome per opening, in order."""
    keys = sorted({key for opening in openings for key in opening.keys})
    idempotency = sorted({o.idempotency_key for o in openings if o.idempotency_key is not None})
    writer = PlanWriter(connection, explicit=True)
    async with writer.transaction() as pipeline:
        # A cursor per statement whose rows are read: a pipelined cursor keeps only the
        # results of its last execute.
        guard = connection.cursor(row_factory=dict_row)
        await guard.execute(IDLE_LOCK_TRANSACTION)
        await guard.execute(LOCKS.guard_keys, {"keys": keys})
        found = connection.cursor(row_factory=dict_row)
        await found.execute(LOCKS.blockers_of_keys, {"keys": keys, "saga_id": "", "ticket": None})
        known: dict[str, SagaRecord] = {}
        if idempotency:
            started = connection.cursor(row_factory=dict_row)
            await started.execute(SELECT_SAGAS_BY_KEYS, {"keys": idempotency})
            await pipeline.sync()
            for row in await started.fetchall():
                saga = ENCODING.saga_from_row(row)
                known[str(saga.idempotency_key)] = saga
        in_the_way = {
            blocker.key: blocker for blocker in blockers_from_rows(await found.fetchall())
        }
        tickets: list[int] = []
        if openings_may_wait(openings, in_the_way):
            # Drawn in order and under the guard, so tickets order sagas as they came.
            drawn = connection.cursor(row_factory=dict_row)
            await drawn.executemany(LOCKS.new_ticket, [{}] * len(openings), returning=True)
            await pipeline.sync()
            async for result in drawn.results():
                drawn_row = await result.fetchone()
                if drawn_row is not None:
                    tickets.append(int(drawn_row["ticket"]))
        outcomes = decide_openings(openings, in_the_way, known, tickets)
        opened = [outcome for outcome in outcomes if isinstance(outcome, OpenedSaga)]
        written = await writer.queue(
            WritePlan(
                new_sagas=[o.new for o in opened],
                held=[
                    (k, o.new.saga.saga_id) for o in opened if o.attempt.acquired for k in o.keys
                ],
                queued=[
                    (k, o.new.saga.saga_id, o.attempt.ticket)
                    for o in opened
                    if o.waits
                    for k in o.keys
                ],
                locked_at=now,
                announce=False,
                sinks=sinks,
            )
        )
    results = {o.new.saga.saga_id: result for o, result in zip(opened, written, strict=True)}
    return [
        results[outcome.new.saga.saga_id] if isinstance(outcome, OpenedSaga) else outcome
        for outcome in outcomes
    ]
