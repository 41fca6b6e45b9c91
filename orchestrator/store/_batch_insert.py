"""PostgreSQL's rows by the batch: one statement per table, whatever the batch's length.

The group-commit `write` sends one INSERT per row (pipelined): fine for the few sagas
ready at one moment, but a batch of 500 sagas is some 4,000 statements, and their
per-statement cost, in psycopg and in the server, was most of a batch start's time.
Here each table's rows travel as one JSON array, expanded by `jsonb_to_recordset`, so a
batch is four statements: sagas (ON CONFLICT on the idempotency key, as `write`), the
existing sagas of the keys that were taken, then steps and first log rows of the sagas
created. Only what a new saga holds is sent: no step result and no output yet (a batch
with either goes through `write`).

The group-commit `write` and the batched locked openings use the same form for their
step rows and log rows (`write_steps_and_log`): each pipelined statement costs psycopg a
send and a poll of the socket, and they were most of the orchestrator's time in psycopg.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from orchestrator.core.records import NewSaga
from orchestrator.store._rows import RowEncoding
from orchestrator.store._statements import Statements

_SAGA_TYPES = {
    "saga_id": "text",
    "saga_type": "text",
    "definition_version": "integer",
    "correlation_id": "text",
    "idempotency_key": "text",
    "request_fingerprint": "text",
    "payload": "jsonb",
    "status": "text",
    "failure_reason": "text",
    "failed_step": "text",
    "needs_intervention": "boolean",
    "create_time": "timestamptz",
    "update_time": "timestamptz",
    "version": "integer",
    "deadline_time": "timestamptz",
    "lock_keys": "text",
    "locks_held": "boolean",
    "lock_wait_since": "timestamptz",
}
_STEP_TYPES = {
    "saga_id": "text",
    "step_index": "integer",
    "name": "text",
    "status": "text",
    "attempts": "integer",
    "compensation_attempts": "integer",
    "error": "text",
    "start_time": "timestamptz",
    "update_time": "timestamptz",
    "next_attempt_time": "timestamptz",
}
_TRANSITION_TYPES = {
    "saga_id": "text",
    "seq": "integer",
    "event": "text",
    "time": "timestamptz",
    "saga_status": "text",
    "step": "text",
    "step_status": "text",
    "attempt": "integer",
    "error": "text",
    "actor": "text",
    "reason": "text",
}


def _from_json(
    table: str, types: dict[str, str], *, more: dict[str, str] | None = None, tail: str = ""
) -> str:
    """INSERT of the rows in the JSON array bound as `rows`, with `more` columns set to
    the same expression in every row."""
    more = more or {}
    record = ", ".join(f"{name} {kind}" for name, kind in types.items())
    return (
        f"INSERT INTO {table} ({', '.join([*types, *more])})"
        f" SELECT {', '.join([*types, *more.values()])}"
        f" FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({record}){tail}"
    )


INSERT_SAGAS = _from_json(
    "sagas",
    _SAGA_TYPES,
    more={
        "lease_owner": "%(owner)s::text",
        "lease_expires_at": "clock_timestamp() + make_interval(secs => %(seconds)s::float8)",
    },
    tail=" ON CONFLICT (idempotency_key) DO NOTHING RETURNING saga_id",
)
INSERT_STEPS = _from_json("saga_steps", _STEP_TYPES)
_STEP_RESULT_TYPES = {**_STEP_TYPES, "result": "text"}
UPSERT_STEPS = f"""
INSERT INTO saga_steps ({", ".join(_STEP_RESULT_TYPES)})
SELECT {", ".join("decode(result, 'hex')" if n == "result" else n for n in _STEP_RESULT_TYPES)}
FROM jsonb_to_recordset(%(rows)s::jsonb)
    AS r({", ".join(f"{name} {kind}" for name, kind in _STEP_RESULT_TYPES.items())})
ON CONFLICT (saga_id, name) DO UPDATE
SET step_index = excluded.step_index, status = excluded.status,
    attempts = excluded.attempts, compensation_attempts = excluded.compensation_attempts,
    error = excluded.error, result = excluded.result, start_time = excluded.start_time,
    update_time = excluded.update_time, next_attempt_time = excluded.next_attempt_time
"""
"""Step rows as `Statements.upsert_step` writes them one by one; the reply travels as hex.
One statement may not update a row twice, so a step may appear only once (`last_step_rows`)."""
INSERT_TRANSITIONS = _from_json("saga_transitions", _TRANSITION_TYPES)


def fits(new_sagas: Sequence[NewSaga]) -> bool:
    """True when the batch holds only what these statements carry: one lease for all,
    no output, no step result (a new saga has neither)."""
    return (
        len({new.lease for new in new_sagas}) == 1
        and all(new.saga.output is None for new in new_sagas)
        and all(step.result is None for new in new_sagas for step in new.steps)
    )


def _json(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not stored as JSON: {type(value).__name__}")


def rows_json(rows: list[dict[str, object]], types: dict[str, str]) -> str:
    return json.dumps([{name: row[name] for name in types} for row in rows], default=_json)


def saga_rows(encoding: RowEncoding, new_sagas: Sequence[NewSaga]) -> str:
    rows = [{**encoding.saga_params(new.saga), "payload": new.saga.payload} for new in new_sagas]
    return rows_json(rows, _SAGA_TYPES)


def step_rows(encoding: RowEncoding, new_sagas: Sequence[NewSaga]) -> str:
    rows = [encoding.step_params(step) for new in new_sagas for step in new.steps]
    return rows_json(rows, _STEP_TYPES)


def transition_rows(encoding: RowEncoding, new_sagas: Sequence[NewSaga]) -> str:
    rows = [encoding.transition_params(t) for new in new_sagas for t in new.transitions]
    return rows_json(rows, _TRANSITION_TYPES)


def last_step_rows(step_params: list[dict[str, object]]) -> str:
    """`UPSERT_STEPS`'s rows: of a step written twice (two commits of one saga), its last
    row, which is what upserting the rows one after another leaves stored."""
    last = {(row["saga_id"], row["name"]): row for row in step_params}
    return rows_json(list(last.values()), _STEP_RESULT_TYPES)


def transition_param_rows(transition_params: list[dict[str, object]]) -> str:
    return rows_json(transition_params, _TRANSITION_TYPES)


async def write_steps_and_log(
    cursor: psycopg.AsyncCursor[Any],
    statements: Statements,
    step_params: list[dict[str, object]],
    transition_params: list[dict[str, object]],
) -> None:
    """Queue the step rows (upserted) and log rows of a transaction: one row as the plain
    statement, more as one statement per table."""
    if len(step_params) == 1:
        await cursor.execute(statements.upsert_step, step_params[0])
    elif step_params:
        await cursor.execute(UPSERT_STEPS, {"rows": last_step_rows(step_params)})
    if len(transition_params) == 1:
        await cursor.execute(statements.insert_transition, transition_params[0])
    elif transition_params:
        await cursor.execute(INSERT_TRANSITIONS, {"rows": transition_param_rows(transition_params)})
