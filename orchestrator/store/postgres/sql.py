"""How PostgreSQL spells the store's SQL: the shared statements rendered for it, and the
statements only PostgreSQL runs, each written once.

Three forms PostgreSQL adds to the shared statements, all used by the plans of
`writer.py`:
- rows as one JSON array (`jsonb_to_recordset`): a table's rows of a write are one
  statement, however many (each pipelined statement costs psycopg a send and a poll);
- set-based lock rows (`unnest` of parallel arrays): a saga's keys, or a batch's, are
  one statement, however many keys;
- a commit's saga update and its first log row in one statement, keyed by the updated
  row, so a stale commit fails its transaction at the server (`UPDATE_LOGGING_FIRST`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from orchestrator.core.records import Lease
from orchestrator.store._rows import RowEncoding, aware
from orchestrator.store._statements import (
    HELD_KEYS,
    NEW_SAGA_COLUMNS,
    OUTBOX,
    QUEUE_PLACES,
    SAGA_COLUMNS,
    SAGA_KEY_TAKEN,
    SAGAS,
    STEP_UPSERT,
    STEPS,
    TRANSITIONS,
    Dialect,
    Statements,
    Table,
    one_row,
)
from orchestrator.store.locks import RELEASE_CHANNEL, LockStatements
from orchestrator.store.tracked_events import INGESTED, KeySpelling, TrackedStatements


def lease_params(lease: Lease | None) -> dict[str, object]:
    """The owner and the lease's length: the server's clock decides, shared by replicas."""
    return {
        "owner": None if lease is None else lease.owner,
        "seconds": None if lease is None else lease.seconds,
    }


def _time_from_db(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _payload_from_db(value: Any) -> dict[str, Any]:
    return dict(value)


ENCODING = RowEncoding(
    time_to_db=aware,
    time_from_db=_time_from_db,
    payload_to_db=Jsonb,
    payload_from_db=_payload_from_db,
)
LEASE_EXPIRY = "clock_timestamp() + make_interval(secs => %(seconds)s::float8)"
DIALECT = Dialect(
    param=lambda name: f"%({name})s",
    now="clock_timestamp()",
    lease_expiry=LEASE_EXPIRY,
    lease_params=lease_params,
    in_ids="= ANY(%(saga_ids)s)",
    id_list=list,
    in_list=lambda name: f"= ANY(%({name})s)",
    skip_locked="FOR UPDATE SKIP LOCKED",
    lock_in_id_order='ORDER BY saga_id COLLATE "C" FOR UPDATE',
)
"""How PostgreSQL spells the shared SQL: the server's clock decides leases, shared by replicas."""
STATEMENTS = Statements.render(DIALECT)
TRACKED = TrackedStatements.render(
    DIALECT,
    KeySpelling(
        condition=(
            "(source, event_id) IN"
            " (SELECT * FROM unnest(%(sources)s::text[], %(event_ids)s::text[]))"
        ),
        params=lambda keys: {
            "sources": [source for source, _ in keys],
            "event_ids": [event_id for _, event_id in keys],
        },
    ),
    # Apart from the lock keys' own (a prefix of their own), in the schema's name space.
    lock_instances="""
SELECT pg_advisory_xact_lock(lock_id) FROM (
    SELECT DISTINCT hashtextextended(current_setting('search_path') || '/tracked/' || key, 0)
           AS lock_id
    FROM unnest(%(keys)s::text[]) AS key ORDER BY lock_id
) AS ids
""",
)
"""The incoming events' statements (`tracked_events.py`), event keys as parallel arrays."""

COMMITS_CHANNEL = "saga_commits"
"""The NOTIFY channel, suffixed with the schema: replicas of one schema hear each other."""
_NOTIFY_COMMIT = f"pg_notify('{COMMITS_CHANNEL}.' || current_schema(), saga_id)"
NOTIFY_COMMITS = f"SELECT {_NOTIFY_COMMIT} FROM unnest(%(saga_ids)s::text[]) AS saga_id"
"""One notification per saga, all from one statement however many sagas a write carries."""
SELECT_SAGAS_BY_KEYS = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key = ANY(%(keys)s)"
SELECT_VERSIONS = "SELECT saga_id, version FROM sagas WHERE saga_id = ANY(%(saga_ids)s)"

_UPDATED = f"updated AS ({STATEMENTS.update_saga.strip()}\n    RETURNING saga_id)"
_LOG_FIRST = TRANSITIONS.insert(
    one_row(DIALECT, TRANSITIONS, given={"saga_id": "(SELECT saga_id FROM updated)"})
)
UPDATE_LOGGING_FIRST = f"WITH {_UPDATED}\n{_LOG_FIRST}"
"""A commit's saga update and its first log row, whose saga_id is the updated row's:
NULL, which the column refuses, when the commit's expected version is not stored."""
UPDATE_LOGGING_FIRST_AND_NOTIFYING = f"""WITH {_UPDATED},
logged AS ({_LOG_FIRST}
    RETURNING saga_id)
SELECT {_NOTIFY_COMMIT} FROM logged"""
"""The same, and the saga's commit notification (`NOTIFY_COMMITS`), sent at COMMIT: a
write of commits alone, each logging, needs no statement of its own for them."""

LOCK_TRANSACTION_IDLE_MS = 2000
"""How long a lock transaction may sit idle (its process frozen) before the server ends it."""
IDLE_LOCK_TRANSACTION = (
    f"SET LOCAL idle_in_transaction_session_timeout = {LOCK_TRANSACTION_IDLE_MS}"
)


def _leave_queues(saga_ids: str) -> str:
    """Delete the queue places of the sagas in the text array bound as `saga_ids`."""
    return f"DELETE FROM saga_lock_queue WHERE saga_id = ANY(%({saga_ids})s::text[])"


RELEASE_AND_NOTIFY = f"""
WITH held AS (DELETE FROM saga_locks WHERE saga_id = ANY(%(saga_ids)s)),
     queued AS ({_leave_queues("saga_ids")})
SELECT pg_notify('{RELEASE_CHANNEL}', lock_key) FROM unnest(%(keys)s::text[]) AS lock_key
"""
"""The released sagas' held keys and queue places go, and each key freed is announced."""


def _in_the_way(mine: str) -> str:
    """CTEs `mine` (the taker's ticket, from `mine`) and `in_the_way`: who holds each of
    `keys` (a list), or else is first in its queue ahead of that ticket (of anyone, for
    NULL), in the keys' order; keys nobody is in the way of are left out."""
    return f"""mine AS ({mine}), in_the_way AS (
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
)"""


# Takers of one key serialize on an advisory lock held to the end of their transaction.
# All of a transaction's keys are taken in one statement, ordered by the lock's id (the
# subquery's ORDER BY is kept, so the locks are taken in that order): two transactions
# never wait for each other in a cycle.
LOCKS = LockStatements.render(
    DIALECT,
    guard_keys="""
SELECT pg_advisory_xact_lock(lock_id) FROM (
    SELECT DISTINCT hashtextextended(current_setting('search_path') || '/' || lock_key, 0)
           AS lock_id
    FROM unnest(%(keys)s::text[]) AS lock_key ORDER BY lock_id
) AS ids
""",
    next_ticket="nextval('saga_lock_tickets')",
    blockers_of_keys=f"""
WITH {_in_the_way("SELECT %(ticket)s::bigint AS ticket")}
SELECT lock_key, holder, waiter FROM in_the_way ORDER BY n
""",
)
LOOK_AT_KEYS = f"""
WITH {_in_the_way("SELECT min(ticket) AS ticket FROM saga_lock_queue WHERE saga_id = %(saga_id)s")}
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
"""Everything a saga's lock take decides on, in one row, for `keys` (a list) of `saga_id`:
its queue ticket, a new one if it must queue, its stored version, who is in the way."""

TAKE_KEYS = f"""
WITH left_queue AS ({_leave_queues("leaving")})
{
    HELD_KEYS.insert(
        "SELECT lock_key, saga_id, %(now)s"
        " FROM unnest(%(keys)s::text[], %(saga_ids)s::text[]) AS held(lock_key, saga_id)"
    )
}"""
"""Keys held (`keys` and `saga_ids` in parallel), and the queue places of the sagas
`leaving` their queues for them, in one statement."""
ENQUEUE_KEYS = QUEUE_PLACES.insert(
    "SELECT lock_key, saga_id, ticket, %(now)s"
    " FROM unnest(%(keys)s::text[], %(saga_ids)s::text[], %(tickets)s::bigint[])"
    " AS place(lock_key, saga_id, ticket)"
)
"""Queue places (`keys`, `saga_ids` and `tickets` in parallel), in one statement."""


def _from_json(table: Table, columns: Sequence[str], *more: str) -> str:
    """A SELECT of `columns` of `table` from the JSON array bound as `rows`, then `more`
    expressions; a bytea column travels as hex."""
    record = ", ".join(
        f"{name} {'text' if table.types[name] == 'bytea' else table.types[name]}"
        for name in columns
    )
    values = [f"decode({n}, 'hex')" if table.types[n] == "bytea" else n for n in columns]
    return (
        f"SELECT {', '.join([*values, *more])}"
        f" FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({record})"
    )


NEW_SAGA_ROW = [column for column in SAGAS.types if column != "output"]
"""What a new saga's JSON row holds: every column but the output it has not yet."""
INSERT_SAGAS = SAGAS.insert(
    f"{_from_json(SAGAS, NEW_SAGA_ROW, '%(owner)s::text', LEASE_EXPIRY)}"
    f"\n{SAGA_KEY_TAKEN} RETURNING saga_id",
    [*NEW_SAGA_ROW, *NEW_SAGA_COLUMNS],
)
"""New sagas of one lease, as `Statements.insert_saga` inserts them one by one."""
UPSERT_STEPS = STEPS.insert(f"{_from_json(STEPS, list(STEPS.types))}\n{STEP_UPSERT}")
"""Step rows as `Statements.upsert_step` writes them one by one. One statement may not
update a row twice, so a step may appear only once (`last_step_rows`)."""
INSERT_TRANSITIONS = TRANSITIONS.insert(_from_json(TRANSITIONS, list(TRANSITIONS.types)))
INSERT_INGESTED = INGESTED.insert(_from_json(INGESTED, list(INGESTED.types)))
"""Ingested event keys as `TrackedStatements.insert_ingested` writes them one by one."""
INSERT_OUTBOX_EVENTS = OUTBOX.insert(
    "SELECT "
    + ", ".join(
        f"decode(r->>'{name}', 'hex')" if kind == "bytea" else f"(r->>'{name}')::{kind}"
        for name, kind in OUTBOX.types.items()
    )
    + " FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e (r, n) ORDER BY n"
)
"""Outbox rows (`rows_json`), their ids drawn in the order of the array, so a saga's
events are numbered in its log's order."""


def _json(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Jsonb):
        return value.obj
    raise TypeError(f"not stored as JSON: {type(value).__name__}")


def rows_json(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """`rows` (parameters keyed by column) as the JSON array `_from_json` reads."""
    return json.dumps([{name: row[name] for name in columns} for row in rows], default=_json)


def last_step_rows(step_params: Sequence[Mapping[str, object]]) -> str:
    """`UPSERT_STEPS`'s rows: of a step written twice (two commits of one saga), its last
    row, which is what upserting the rows one after another leaves stored."""
    last = {(row["saga_id"], row["name"]): row for row in step_params}
    return rows_json(list(last.values()), list(STEPS.types))
