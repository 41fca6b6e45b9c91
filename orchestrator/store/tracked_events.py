"""The tables of tracked sagas' incoming events (0013_tracked_events.sql), with the
statements both back ends run, written once over their `Dialect`.

`ingested_events` rows are written by the saga writes themselves (each back end's
`write` adds a commit's `IngestedRows` in its transaction, `ingested_row_writes`); what
is here reads them, writes the rows of events that touch no saga (held before their
instance started), moves expired held events to `event_anomalies`, and lists those.

A key already ingested is refused (a plain INSERT, no ON CONFLICT): two replicas that
both took an event for new find out at commit, and the second writes nothing of it
(`StaleSagaVersion`: it reloads and finds the event a duplicate).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.ingested import (
    AnomalyFilter,
    AnomalyPosition,
    EventAnomaly,
    EventKey,
    HeldEvent,
    IngestedEvent,
    IngestedRows,
    InstanceGuard,
)
from orchestrator.core.records import StepRecord, StoredSaga
from orchestrator.store._rows import Row, RowEncoding, aware
from orchestrator.store._statements import (
    SAGA_COLUMNS,
    STEP_COLUMNS,
    Dialect,
    Statements,
    Table,
    one_row,
)
from orchestrator.store.locks import Transaction
from orchestrator.store.tracked_base import EventLookup

INGESTED = Table(
    "ingested_events",
    {
        "source": "text",
        "event_id": "text",
        "saga_id": "text",
        "verdict": "text",
        "time": "timestamptz",
    },
)
HELD = Table(
    "held_events",
    {
        "source": "text",
        "event_id": "text",
        "saga_type": "text",
        "namespace": "text",
        "correlation": "text",
        "event_type": "text",
        "payload": "jsonb",
        "received_time": "timestamptz",
        "expire_time": "timestamptz",
    },
)
ANOMALIES = Table(
    "event_anomalies",
    {
        "source": "text",
        "event_id": "text",
        "event_type": "text",
        "correlation": "text",
        "saga_type": "text",
        "reason": "text",
        "payload": "jsonb",
        "time": "timestamptz",
    },
)
APPLIED_VERDICT = "RECORDED"
"""The verdict an applied held event's ingested row takes."""
NEVER_STARTED = "its saga instance did not start before the wait for it ran out"
NEVER_EXPECTED = "held until the wait ran out: its step was never expected"


@dataclass(frozen=True, slots=True)
class KeySpelling:
    """How a back end matches a list of event keys: the condition on (source, event_id)
    and the parameters that bind the keys to it."""

    condition: str
    params: Callable[[Sequence[EventKey]], dict[str, object]]


@dataclass(frozen=True, slots=True)
class TrackedStatements:
    """Every statement on the three tables, rendered for one dialect."""

    insert_ingested: str
    insert_held: str
    delete_applied: str
    mark_applied: str
    insert_anomaly: str
    verdicts: str
    held_of_instances: str
    held_keys_of_instance: str
    sagas_of_keys: str
    steps_of_keys: str
    last_seqs_of_keys: str
    instances_started: str
    lock_instances: str
    expired_held: str
    move_expired: str
    delete_moved: str
    delete_loose: str
    keys: KeySpelling
    dialect: Dialect

    @classmethod
    def render(
        cls, dialect: Dialect, keys: KeySpelling, lock_instances: str = ""
    ) -> TrackedStatements:
        """`lock_instances`: a statement taking a transaction-level lock on each of the
        instance keys bound as `keys` (in one order); empty where one writer runs at a
        time (SQLite)."""
        p = dialect.param
        key = f"source = {p('source')} AND event_id = {p('event_id')}"
        of_keys = dialect.in_list("keys")
        return cls(
            insert_ingested=INGESTED.insert(one_row(dialect, INGESTED)),
            insert_held=HELD.insert(one_row(dialect, HELD)),
            delete_applied=f"DELETE FROM held_events WHERE {key}",
            mark_applied=(
                f"UPDATE ingested_events SET saga_id = {p('saga_id')},"
                f" verdict = '{APPLIED_VERDICT}' WHERE {key}"
            ),
            insert_anomaly=ANOMALIES.insert(
                f"{one_row(dialect, ANOMALIES)}\nON CONFLICT (source, event_id) DO NOTHING"
            ),
            verdicts=(
                f"SELECT source, event_id, verdict FROM ingested_events WHERE {keys.condition}"
            ),
            sagas_of_keys=f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key {of_keys}",
            steps_of_keys=(
                f"SELECT {STEP_COLUMNS} FROM saga_steps WHERE saga_id IN"
                f" (SELECT saga_id FROM sagas WHERE idempotency_key {of_keys})"
                " ORDER BY saga_id, step_index"
            ),
            last_seqs_of_keys=(
                "SELECT saga_id, max(seq) AS last_seq FROM saga_transitions WHERE saga_id IN"
                f" (SELECT saga_id FROM sagas WHERE idempotency_key {of_keys}) GROUP BY saga_id"
            ),
            held_keys_of_instance=(
                "SELECT source, event_id FROM held_events"
                f" WHERE saga_type = {p('saga_type')} AND namespace = {p('namespace')}"
                f" AND correlation = {p('correlation')}"
            ),
            instances_started=(
                f"SELECT idempotency_key FROM sagas WHERE idempotency_key {dialect.in_list('keys')}"
            ),
            lock_instances=lock_instances,
            held_of_instances=f"""
SELECT {HELD.columns} FROM held_events
WHERE saga_type = {p("saga_type")} AND namespace = {p("namespace")}
  AND correlation {dialect.in_list("correlations")}
ORDER BY received_time, source, event_id
""",
            # Locked, so two replicas' sweeps move each row once (PostgreSQL).
            expired_held=f"""
SELECT source, event_id FROM held_events
WHERE expire_time <= {p("now")}
ORDER BY expire_time, source, event_id
LIMIT {p("limit")}
{dialect.skip_locked}
""",
            move_expired=ANOMALIES.insert(
                f"""SELECT h.source, h.event_id, h.event_type, h.correlation, h.saga_type,
    CASE WHEN EXISTS (
        SELECT 1 FROM sagas s
        WHERE s.correlation_id = h.correlation AND s.saga_type = h.saga_type
          AND s.namespace = h.namespace
    ) THEN '{NEVER_EXPECTED}' ELSE '{NEVER_STARTED}' END,
    h.payload, h.expire_time
FROM held_events h
WHERE {keys.condition.replace("(source, event_id)", "(h.source, h.event_id)")}
ON CONFLICT (source, event_id) DO NOTHING
RETURNING {ANOMALIES.columns}"""
            ),
            delete_moved=f"DELETE FROM held_events WHERE {keys.condition}",
            # Rows of no saga (held, then applied or expired): by time, as the partial
            # index (0013) has them. Rows naming a saga go with it (ON DELETE CASCADE).
            delete_loose=f"""
DELETE FROM ingested_events
WHERE (source, event_id) IN (
    SELECT source, event_id FROM ingested_events
    WHERE saga_id IS NULL AND time < {p("before")}
    ORDER BY time
    LIMIT {p("limit")}
)
RETURNING source
""",
            keys=keys,
            dialect=dialect,
        )


def ingested_params(event: IngestedEvent, encoding: RowEncoding) -> dict[str, object]:
    return {
        "source": event.source,
        "event_id": event.event_id,
        "saga_id": event.saga_id,
        "verdict": event.verdict,
        "time": encoding.time_to_db(event.time),
    }


def held_params(event: HeldEvent, encoding: RowEncoding) -> dict[str, object]:
    return {
        "source": event.source,
        "event_id": event.event_id,
        "saga_type": event.saga_type,
        "namespace": event.namespace,
        "correlation": event.correlation,
        "event_type": event.event_type,
        "payload": encoding.payload_to_db(event.payload),
        "received_time": encoding.time_to_db(event.received_time),
        "expire_time": encoding.time_to_db(event.expire_time),
    }


def anomaly_params(anomaly: EventAnomaly, encoding: RowEncoding) -> dict[str, object]:
    return {
        "source": anomaly.source,
        "event_id": anomaly.event_id,
        "event_type": anomaly.event_type,
        "correlation": anomaly.correlation,
        "saga_type": anomaly.saga_type,
        "reason": anomaly.reason,
        "payload": encoding.payload_to_db(anomaly.payload),
        "time": encoding.time_to_db(anomaly.time),
    }


def ingested_row_writes(
    statements: TrackedStatements, encoding: RowEncoding, rows: Sequence[IngestedRows]
) -> list[tuple[str, list[dict[str, object]]]]:
    """The statements (each with its rows of parameters) that write `rows`, in the order
    a write runs them: ingested keys first (a duplicate fails the write before anything
    else of these rows), then held rows, applied held rows, anomalies."""
    ingested = [ingested_params(e, encoding) for r in rows for e in r.ingested]
    held = [held_params(e, encoding) for r in rows for e in r.held]
    applied: list[dict[str, object]] = [
        {"source": key[0], "event_id": key[1], "saga_id": saga_id}
        for r in rows
        for key, saga_id in r.applied
    ]
    anomalies = [anomaly_params(a, encoding) for r in rows for a in r.anomalies]
    writes: list[tuple[str, list[dict[str, object]]]] = [
        (statements.insert_ingested, ingested),
        (statements.insert_held, held),
        (statements.delete_applied, applied),
        (statements.mark_applied, applied),
        (statements.insert_anomaly, anomalies),
    ]
    return [(query, params) for query, params in writes if params]


def guard_params(guard: InstanceGuard) -> dict[str, object]:
    return {
        "saga_type": guard.saga_type,
        "namespace": guard.namespace,
        "correlation": guard.correlation,
    }


def held_meanwhile(guard: InstanceGuard, held: Sequence[Row]) -> StaleSagaVersion | None:
    """The refusal of an instance's start that did not read every event held for it
    (`held`: the keys held now), or None."""
    known = set(guard.known_held)
    strays = [(str(row["source"]), str(row["event_id"])) for row in held]
    if all(key in known for key in strays):
        return None
    return StaleSagaVersion(
        f"events were held for {guard.saga_type} {guard.correlation!r} while it started; "
        "starting it again with them"
    )


def started_meanwhile(started: Sequence[Row]) -> StaleSagaVersion | None:
    """The refusal of events held before their start when the instance exists by now."""
    if not started:
        return None
    return StaleSagaVersion(
        f"{len(started)} instance(s) started while their events were held; applying them"
    )


def duplicate_event(detail: str) -> StaleSagaVersion:
    """What a write that met an event key already ingested raises: another writer applied
    the event first; the caller reloads and finds it a duplicate."""
    return StaleSagaVersion(f"an event was ingested by another writer first: {detail}")


class TrackedEventRows:
    """The incoming-event methods of a SQL store (mixed into `SqlStore`)."""

    _encoding: ClassVar[RowEncoding]
    _statements: ClassVar[Statements]
    _tracked: ClassVar[TrackedStatements]
    _rows: Callable[..., Awaitable[list[Row]]]
    _transaction: Callable[[], contextlib.AbstractAsyncContextManager[Transaction]]
    _reads: Callable[[Sequence[tuple[str, Mapping[str, object]]]], Awaitable[list[list[Row]]]]

    async def ingested_verdicts(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        if not keys:
            return {}
        rows = await self._rows(self._tracked.verdicts, self._tracked.keys.params(keys))
        return {(str(row["source"]), str(row["event_id"])): str(row["verdict"]) for row in rows}

    async def sagas_by_keys(self, keys: Sequence[str]) -> dict[str, StoredSaga]:
        return (await self.look_up_events((), keys, {}, "")).sagas

    async def look_up_events(
        self,
        event_keys: Sequence[EventKey],
        instance_keys: Sequence[str],
        held_of: Mapping[str, Sequence[str]],
        namespace: str,
    ) -> EventLookup:
        tracked, encoding = self._tracked, self._encoding
        reads: list[tuple[str, Mapping[str, object]]] = []
        if event_keys:
            reads.append((tracked.verdicts, tracked.keys.params(event_keys)))
        if instance_keys:
            keys = {"keys": tracked.dialect.id_list(list(dict.fromkeys(instance_keys)))}
            reads += [
                (tracked.sagas_of_keys, keys),
                (tracked.steps_of_keys, keys),
                (tracked.last_seqs_of_keys, keys),
            ]
        for saga_type, correlations in held_of.items():
            params = {
                "saga_type": saga_type,
                "namespace": namespace,
                "correlations": tracked.dialect.id_list(list(dict.fromkeys(correlations))),
            }
            reads.append((tracked.held_of_instances, params))
        answers = iter(await self._reads(reads) if reads else [])
        verdicts = {
            (str(row["source"]), str(row["event_id"])): str(row["verdict"])
            for row in (next(answers) if event_keys else ())
        }
        sagas: dict[str, StoredSaga] = {}
        if instance_keys:
            saga_rows, step_rows, seq_rows = next(answers), next(answers), next(answers)
            steps: dict[str, list[StepRecord]] = {}
            for row in step_rows:
                steps.setdefault(str(row["saga_id"]), []).append(encoding.step_from_row(row))
            seqs = {str(row["saga_id"]): int(row["last_seq"]) for row in seq_rows}
            for row in saga_rows:
                saga = encoding.saga_from_row(row)
                stored = StoredSaga(
                    saga, tuple(steps.get(saga.saga_id, ())), seqs.get(saga.saga_id, 0)
                )
                sagas[str(saga.idempotency_key)] = stored
        held = [self._held_from_row(row) for rows in answers for row in rows]
        return EventLookup(verdicts, sagas, held)

    async def held_events(
        self, saga_type: str, namespace: str, correlations: Sequence[str]
    ) -> list[HeldEvent]:
        if not correlations:
            return []
        params = {
            "saga_type": saga_type,
            "namespace": namespace,
            "correlations": self._tracked.dialect.id_list(list(dict.fromkeys(correlations))),
        }
        rows = await self._rows(self._tracked.held_of_instances, params)
        return [self._held_from_row(row) for row in rows]

    async def record_ingested(self, rows: IngestedRows) -> None:
        if not rows:
            return
        tracked = self._tracked
        writes = ingested_row_writes(tracked, self._encoding, [rows])
        async with self._transaction() as tx:
            if rows.guards:
                keys = sorted({guard.key for guard in rows.guards})
                if tracked.lock_instances:
                    await tx.rows(tracked.lock_instances, {"keys": keys})
                started = await tx.rows(
                    tracked.instances_started, {"keys": tracked.dialect.id_list(keys)}
                )
                refused = started_meanwhile(started)
                if refused is not None:
                    raise refused
            for query, params in writes:
                for one in params:
                    try:
                        await tx.rows(query, one)
                    except Exception as error:
                        if _is_duplicate_key(error):
                            raise duplicate_event(str(error).strip()) from error
                        raise

    async def expire_held_events(self, now: datetime, limit: int) -> list[EventAnomaly]:
        tracked = self._tracked
        async with self._transaction() as tx:
            expired = await tx.rows(
                tracked.expired_held,
                {"now": tracked.dialect.time_to_db(aware(now)), "limit": limit},
            )
            if not expired:
                return []
            keys = tracked.keys.params(
                [(str(row["source"]), str(row["event_id"])) for row in expired]
            )
            moved = await tx.rows(tracked.move_expired, keys)
            await tx.rows(tracked.delete_moved, keys)
        return [self._anomaly_from_row(row) for row in moved]

    async def list_event_anomalies(
        self, where: AnomalyFilter, limit: int, after: AnomalyPosition | None = None
    ) -> list[EventAnomaly]:
        dialect = self._tracked.dialect
        p = dialect.param
        conditions: list[str] = []
        params: dict[str, object] = {"limit": limit}
        for column in ("saga_type", "correlation", "source", "event_type"):
            value = getattr(where, column)
            if value is not None:
                conditions.append(f"{column} = {p(column)}")
                params[column] = value
        if where.after_time is not None:
            conditions.append(f"time > {p('after_time')}")
            params["after_time"] = dialect.time_to_db(aware(where.after_time))
        if where.before_time is not None:
            conditions.append(f"time < {p('before_time')}")
            params["before_time"] = dialect.time_to_db(aware(where.before_time))
        if after is not None:
            conditions.append(
                f"(time, source, event_id) < ({p('at_time')}, {p('at_source')}, {p('at_id')})"
            )
            params.update(
                at_time=dialect.time_to_db(aware(after.time)),
                at_source=after.source,
                at_id=after.event_id,
            )
        where_sql = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = (
            f"SELECT {ANOMALIES.columns} FROM event_anomalies {where_sql}"
            f" ORDER BY time DESC, source DESC, event_id DESC LIMIT {p('limit')}"
        )
        rows = await self._rows(query, params)
        return [self._anomaly_from_row(row) for row in rows]

    async def delete_loose_ingested(self, before: datetime, limit: int) -> int:
        params = {"before": self._tracked.dialect.time_to_db(aware(before)), "limit": limit}
        return len(await self._rows(self._tracked.delete_loose, params, write=True))

    def _held_from_row(self, row: Row) -> HeldEvent:
        encoding = self._encoding
        return HeldEvent(
            source=str(row["source"]),
            event_id=str(row["event_id"]),
            saga_type=str(row["saga_type"]),
            namespace=str(row["namespace"]),
            correlation=str(row["correlation"]),
            event_type=str(row["event_type"]),
            payload=encoding.payload_from_db(row["payload"]),
            received_time=encoding.time_from_db(row["received_time"]),
            expire_time=encoding.time_from_db(row["expire_time"]),
        )

    def _anomaly_from_row(self, row: Row) -> EventAnomaly:
        encoding = self._encoding
        return EventAnomaly(
            source=str(row["source"]),
            event_id=str(row["event_id"]),
            event_type=str(row["event_type"]),
            correlation=str(row["correlation"]),
            saga_type=str(row["saga_type"]),
            reason=str(row["reason"]),
            payload=encoding.payload_from_db(row["payload"]),
            time=encoding.time_from_db(row["time"]),
        )


def _is_duplicate_key(error: BaseException) -> bool:
    """A unique violation of an event table's key (either back end's error)."""
    text = str(error)
    return ("UNIQUE constraint failed" in text and "_events." in text) or (
        getattr(getattr(error, "diag", None), "table_name", None)
        in ("ingested_events", "held_events")
        and getattr(error, "sqlstate", None) == "23505"
    )
