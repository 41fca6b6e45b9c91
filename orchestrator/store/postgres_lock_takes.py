"""PostgreSQL: a saga takes its keys (or queues) with its commit, in two round trips.

The shared `take_locks` runs one statement at a time, about eight round trips while
the keys' guard is held. Here the transaction is pipelined: BEGIN, its setup, the
keys' guard and one look at everything the machine needs (the saga's queue ticket,
who is in the way of each key, a new ticket when it must queue for the first time,
the stored version) go in the first round trip; `decide` runs on what came back;
the saga's commit, the keys taken (and the queue left) or the queue places, and
COMMIT go in the second, as set-based statements whatever the number of keys. The
look is one statement and runs after the guard, so it sees every taker of these
keys that committed before: the same all-or-nothing, FIFO answer as the shared path.
The saga's update carries its first log row (`update_logging_first`): a stale
version fails the transaction at the server, so nothing waits for a check before
COMMIT, and the version read in the first round trip turns an already stale saga
away before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from orchestrator.core.records import LockAttempt, SagaCommit
from orchestrator.store._rows import RowEncoding, stale_version
from orchestrator.store._statements import Statements
from orchestrator.store.locks import Decide, blockers_from_rows

_LOOK = """
WITH mine AS (
    SELECT min(ticket) AS ticket FROM saga_lock_queue WHERE saga_id = %(saga_id)s
), in_the_way AS (
    SELECT k.n, k.lock_key, l.saga_id AS holder, w.saga_id AS waiter
    FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k (lock_key, n)
    CROSS JOIN mine
    LEFT JOIN saga_locks l ON l.lock_key = k.lock_key AND l.saga_id <> %(saga_id)s
    LEFT JOIN LATERAL (
        SELECT q.saga_id FROM saga_lock_queue q
        WHERE q.lock_key = k.lock_key AND q.saga_id <> %(saga_id)s
          AND (mine.ticket IS NULL OR q.ticket < mine.ticket
               OR (q.ticket = mine.ticket AND q.saga_id < %(saga_id)s))
        ORDER BY q.ticket, q.saga_id LIMIT 1
    ) w ON l.saga_id IS NULL
    WHERE l.saga_id IS NOT NULL OR w.saga_id IS NOT NULL
)
SELECT
    (SELECT ticket FROM mine) AS queued_ticket,
    -- One ticket for all the saga's keys, drawn under their guard, only when it queues
    -- for the first time (CASE evaluates nextval only then).
    CASE WHEN (SELECT ticket FROM mine) IS NULL AND EXISTS (SELECT 1 FROM in_the_way)
         THEN nextval('saga_lock_tickets') END AS new_ticket,
    (SELECT version FROM sagas WHERE saga_id = %(saga_id)s) AS version,
    coalesce(
        (SELECT json_agg(json_build_object(
                    'lock_key', lock_key, 'holder', holder, 'waiter', waiter) ORDER BY n)
         FROM in_the_way),
        '[]'::json
    ) AS blockers
"""
"""Everything `decide` needs, in one row, for `keys` (a list) of `saga_id`."""

_TAKE_KEYS = """
WITH left_queue AS (DELETE FROM saga_lock_queue WHERE saga_id = %(saga_id)s)
INSERT INTO saga_locks (lock_key, saga_id, acquire_time)
SELECT lock_key, %(saga_id)s, %(now)s FROM unnest(%(keys)s::text[]) AS lock_key
"""
"""Every key held by the saga, and its queue places (if any) left, in one statement."""

_ENQUEUE_KEYS = """
INSERT INTO saga_lock_queue (lock_key, saga_id, ticket, enqueue_time)
SELECT lock_key, %(saga_id)s, %(ticket)s, %(now)s FROM unnest(%(keys)s::text[]) AS lock_key
"""
"""The saga's place in the queue of every key, all with one ticket."""


@dataclass(frozen=True, slots=True)
class LockTakeStatements:
    """The back end's statements a take runs besides this module's own."""

    setup: str
    """Runs first in the transaction (bounds how long it may sit idle)."""
    guard_keys: str
    """Serializes takers of `keys` (a list) to the end of the transaction."""
    update_logging_first: str
    """A commit's saga update with its first log row, which fails when stale."""
    release_and_notify: str
    """Deletes the held keys and queue places of `saga_ids`, announcing `keys`."""


async def take_locks(
    connection: psycopg.AsyncConnection[Any],
    pipeline: psycopg.AsyncPipeline,
    statements: Statements,
    sql: LockTakeStatements,
    encoding: RowEncoding,
    saga_id: str,
    keys: Sequence[str],
    version: int,
    decide: Decide,
    now: datetime,
) -> LockAttempt:
    """As the shared `take_locks` (see the module), inside the pipelined transaction the
    caller began and commits: the attempt the machine decided on, its commit queued with
    the keys or the queue places. StaleSagaVersion if the saga is not at `version`; a
    commit found stale at the server fails the transaction (see the module)."""
    cursor = connection.cursor(row_factory=dict_row)
    await cursor.execute(sql.setup)
    await cursor.execute(sql.guard_keys, {"keys": list(keys)})
    look = connection.cursor(row_factory=dict_row)
    await look.execute(_LOOK, {"saga_id": saga_id, "keys": list(keys)})
    await pipeline.sync()
    found = await look.fetchone()
    if found is None:  # a SELECT of aggregates and subqueries returns one row
        raise RuntimeError(f"saga {saga_id}: the lock look returned no row")
    queued = found["queued_ticket"] is not None
    ticket = found["queued_ticket"] if queued else found["new_ticket"]
    attempt = LockAttempt(
        tuple(blockers_from_rows(found["blockers"])), queued=queued, ticket=int(ticket or 0)
    )
    if found["version"] != version:
        raise stale_version(saga_id, version, found["version"])
    commit = decide(attempt)
    unlogged = None
    if commit is not None:
        unlogged = await _write_commit(connection, cursor, statements, sql, encoding, commit)
    place = {"saga_id": saga_id, "keys": list(keys), "now": encoding.time_to_db(now)}
    # The machine decided to wait (under the reject policy it fails the saga instead).
    waits = commit is not None and commit.saga.lock_wait_since is not None
    if attempt.acquired:
        await cursor.execute(_TAKE_KEYS, place)
    elif not queued and waits:
        await cursor.execute(_ENQUEUE_KEYS, {**place, "ticket": attempt.ticket})
    if unlogged is not None:
        await pipeline.sync()  # a round trip before COMMIT, to check the row count
        if unlogged.rowcount != 1:
            await cursor.execute(statements.select_version, {"saga_id": saga_id})
            await pipeline.sync()
            stored = await cursor.fetchone()
            raise stale_version(saga_id, version, None if stored is None else stored["version"])
    return attempt


async def _write_commit(
    connection: psycopg.AsyncConnection[Any],
    cursor: psycopg.AsyncCursor[dict[str, Any]],
    statements: Statements,
    sql: LockTakeStatements,
    encoding: RowEncoding,
    commit: SagaCommit,
) -> psycopg.AsyncCursor[Any] | None:
    """Queue the saga's commit: the version-checked update (with its first log row, when
    it logs one), its steps, the rest of its log, and its releases. Returns the cursor of
    an update that logs nothing, whose row count must be checked before COMMIT."""
    params = encoding.commit_params(commit)
    transitions = [encoding.transition_params(t) for t in commit.transitions]
    unlogged = None
    if transitions:
        await cursor.execute(sql.update_logging_first, {**params, **transitions[0]})
    else:
        unlogged = connection.cursor()
        await unlogged.execute(statements.update_saga, params)
    if commit.steps:
        await cursor.executemany(
            statements.upsert_step, [encoding.step_params(step) for step in commit.steps]
        )
    if transitions[1:]:
        await cursor.executemany(statements.insert_transition, transitions[1:])
    if commit.released_locks:
        released = {"saga_ids": [commit.saga.saga_id], "keys": sorted(commit.released_locks)}
        await cursor.execute(sql.release_and_notify, released)
    return unlogged
