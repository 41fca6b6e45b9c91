"""PostgreSQL: a batch of new sagas that lock from their first step, in one transaction.

The transaction is pipelined: BEGIN, the keys' guard, who is in the way of each key and
what the idempotency keys already started go in one round trip; the batch is decided
(`decide_openings`); tickets, when an opening may wait, take one more; then the inserts
(whose rows say which went in), and the steps, log rows, held keys and queue places
with COMMIT. So a batch costs three or four round trips and one commit, however many
sagas it carries, where one saga alone used to cost a dozen and a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from orchestrator.core.records import CreateSagaResult, SagaRecord
from orchestrator.store import _batch_insert as batch_insert
from orchestrator.store._rows import RowEncoding
from orchestrator.store._statements import Statements
from orchestrator.store.locks import (
    LockedOpening,
    LockStatements,
    Opened,
    OpenedSaga,
    blockers_from_rows,
    decide_openings,
    openings_may_wait,
)

_Cursor = psycopg.AsyncCursor[dict[str, Any]]

_TAKE_OPENED_KEYS = """
INSERT INTO saga_locks (lock_key, saga_id, acquire_time)
SELECT lock_key, saga_id, %(now)s
FROM unnest(%(keys)s::text[], %(saga_ids)s::text[]) AS held(lock_key, saga_id)
"""
"""The keys the batch's sagas took, one statement for the whole batch."""

_ENQUEUE_OPENED_KEYS = """
INSERT INTO saga_lock_queue (lock_key, saga_id, ticket, enqueue_time)
SELECT lock_key, saga_id, ticket, %(now)s
FROM unnest(%(keys)s::text[], %(saga_ids)s::text[], %(tickets)s::bigint[])
    AS place(lock_key, saga_id, ticket)
"""
"""The queue places of the batch's waiting sagas, one statement for the whole batch."""


def _columns(rows: list[dict[str, Any]], at: object) -> dict[str, object]:
    """Rows of (key, saga_id, ticket) as the arrays the statements above unnest."""
    return {
        "keys": [row["key"] for row in rows],
        "saga_ids": [row["saga_id"] for row in rows],
        "tickets": [row["ticket"] for row in rows],
        "now": at,
    }


async def write_openings(
    connection: psycopg.AsyncConnection[Any],
    statements: Statements,
    locks: LockStatements,
    encoding: RowEncoding,
    openings: Sequence[LockedOpening],
    lease_params: Any,
    now: datetime,
    setup: str,
) -> list[CreateSagaResult | Exception]:
    """Insert `openings` with their keys or queue places (see the module); `setup` runs
    first in the transaction. Returns one outcome per opening, in order."""
    keys = sorted({key for opening in openings for key in opening.keys})
    idempotency = sorted({o.idempotency_key for o in openings if o.idempotency_key is not None})
    async with connection.pipeline() as pipeline, connection.transaction():
        # A cursor per statement whose rows are read: a pipelined cursor keeps only the
        # results of its last execute.
        guard = connection.cursor(row_factory=dict_row)
        await guard.execute(setup)
        await guard.execute(locks.guard_keys, {"keys": keys})
        found = connection.cursor(row_factory=dict_row)
        await found.execute(locks.blockers_of_keys, {"keys": keys, "saga_id": "", "ticket": None})
        known: dict[str, SagaRecord] = {}
        if idempotency:
            cursor: _Cursor = connection.cursor(row_factory=dict_row)
            params = [{"idempotency_key": key} for key in idempotency]
            await cursor.executemany(statements.select_saga_by_key, params, returning=True)
            await pipeline.sync()
            async for result in cursor.results():
                for row in await result.fetchall():
                    saga = encoding.saga_from_row(row)
                    if saga.idempotency_key is not None:
                        known[saga.idempotency_key] = saga
        in_the_way = {
            blocker.key: blocker for blocker in blockers_from_rows(await found.fetchall())
        }
        tickets: list[int] = []
        if openings_may_wait(openings, in_the_way):
            # Drawn in order and under the guard, so tickets order sagas as they came.
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.executemany(locks.new_ticket, [{}] * len(openings), returning=True)
            await pipeline.sync()
            tickets = [int(row["ticket"]) async for row in _first_rows(cursor)]
        outcomes = decide_openings(openings, in_the_way, known, tickets)
        return await _insert(
            connection.cursor(row_factory=dict_row),
            pipeline,
            statements,
            encoding,
            outcomes,
            lease_params,
            now,
        )


async def _first_rows(cursor: _Cursor) -> Any:
    async for result in cursor.results():
        row = await result.fetchone()
        if row is not None:
            yield row


async def _insert(
    cursor: _Cursor,
    pipeline: psycopg.AsyncPipeline,
    statements: Statements,
    encoding: RowEncoding,
    outcomes: list[Opened],
    lease_params: Any,
    now: datetime,
) -> list[CreateSagaResult | Exception]:
    """Insert the opened sagas, then the steps, log rows, keys and queue places of those
    that went in (a saga whose idempotency key a racing insert took is answered instead)."""
    new = [outcome for outcome in outcomes if isinstance(outcome, OpenedSaga)]
    if not new:
        return [o for o in outcomes if not isinstance(o, OpenedSaga)]
    params = [{**encoding.saga_params(n.new.saga), **lease_params(n.new.lease)} for n in new]
    await cursor.executemany(statements.insert_saga, params, returning=True)
    await pipeline.sync()
    inserted = [await result.fetchone() is not None async for result in cursor.results()]
    written: dict[str, CreateSagaResult] = {}
    steps, transitions, taken, enqueued = [], [], [], []
    at = encoding.time_to_db(now)
    for opened, went_in in zip(new, inserted, strict=True):
        saga = opened.new.saga
        if not went_in:
            await cursor.execute(
                statements.select_saga_by_key, {"idempotency_key": saga.idempotency_key}
            )
            row = await cursor.fetchone()
            if row is None:
                raise RuntimeError(f"saga {saga.saga_id}: insert skipped but no saga found")
            written[saga.saga_id] = CreateSagaResult(encoding.saga_from_row(row), created=False)
            continue
        written[saga.saga_id] = CreateSagaResult(saga, created=True)
        steps += [encoding.step_params(step) for step in opened.new.steps]
        transitions += [encoding.transition_params(t) for t in opened.new.transitions]
        place = {"saga_id": saga.saga_id, "now": at, "ticket": opened.attempt.ticket}
        if opened.attempt.acquired:
            taken += [{**place, "key": key} for key in opened.keys]
        elif opened.waits:
            enqueued += [{**place, "key": key} for key in opened.keys]
    await batch_insert.write_steps_and_log(cursor, statements, steps, transitions)
    for statement, rows in ((_TAKE_OPENED_KEYS, taken), (_ENQUEUE_OPENED_KEYS, enqueued)):
        if rows:
            await cursor.execute(statement, _columns(rows, at))
    return [
        written[outcome.new.saga.saga_id] if isinstance(outcome, OpenedSaga) else outcome
        for outcome in outcomes
    ]
