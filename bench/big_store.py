"""`make bench-big`: ListSagas, GetSaga and StartSaga with 1,000,000 sagas stored.

Issue 6 asks that a filtered ListSagas page come back in tens of milliseconds
with a million sagas in PostgreSQL, from an index; issue 7 asks that StartSaga
throughput and GetSaga latency stay within 10 % of an empty store. One run:

1. A throwaway database, migrated by opening PostgresStore, is filled with N
   finished sagas by server-side SQL (FILL_* below say what the rows hold). The
   tables' indexes and constraints are read from the catalog, dropped, and
   rebuilt after the fill from the same definitions (checked equal afterwards):
   building an index once is far cheaper than growing it row by row.
2. The light participants (bench.participant) and our orchestrator
   (bench.serve_orchestrator) run on it. Measured over gRPC from this process,
   one call at a time: ListSagas first pages per filter, pages 2 to 21 of a
   listing followed by next_page_token, GetSaga on random stored sagas. StartSaga
   throughput is bench.loadgen's closed loop (grpc.aio, concurrency 64, each
   saga started and polled to its terminal commit), as in `make bench`.
3. The same StartSaga and GetSaga measurements run on empty databases (fresh,
   same orchestrator), the sessions in ABBA order (big, empty, empty, big) so
   that drift of a shared machine falls on both sides of the ratio.
4. Each listing query, built as PostgresStore.list_sagas builds it (the store's
   own saga_listing), is run under EXPLAIN (ANALYZE, BUFFERS) with its values
   bound, as the first executions of a statement are planned (custom plan),
   and again as a prepared statement's generic plan, which PostgreSQL may switch
   to after five executions of a statement psycopg has prepared.
5. Results go to .bench/big-store-<time>.json and .bench/big-store-latest.json;
   every process is stopped by PID and every database dropped, also on failure.

Autovacuum is off on both databases' tables while measuring, as in `make bench`
(a visit is chance and would be noise); the filled tables are vacuumed and
analyzed once after the fill, as a long-lived store would have been.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import psycopg
from google.protobuf.message import Message
from psycopg import sql

from bench.harness import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, _source_version
from bench.pg import (
    INFO_SETTINGS,
    Admin,
    DurabilityOff,
    check_durability,
    database_url,
    disable_autovacuum,
)
from bench.report import latency_summary, percentile
from bench.systems import REPO, Launch, Measured
from bench.workload import SAGA_TYPE, TERMINAL_OK
from orchestrator.api.paging import decode_page_token
from orchestrator.core.records import PagePosition, SagaFilter, SagaStatus
from orchestrator.store import PostgresStore
from orchestrator.store._listing import saga_listing
from orchestrator.store.postgres import DIALECT
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import ChildProcess

TABLES = ("sagas", "saga_steps", "saga_transitions")
DAYS = 30
LIST_PAGE_SIZE = 50
GET_KINDS = ("get", "get_recent", "store_get")
"""GetSaga over gRPC on stored sagas, over gRPC on sagas this run started, and the
store's own two reads (no gRPC) on the stored sagas."""
RPC_TIMEOUT_SECONDS = 30.0

# --- the fill ------------------------------------------------------------------------
#
# Every value derives from the row number i through hashint4, so a run is
# repeatable except for the saga ids (gen_random_uuid, as the engine's uuid4).
# Saga types: travel_booking 60 %, order_fulfillment 40 %, with their real step
# names; neither is served by the bench orchestrator, and every saga is
# COMPLETED or FAILED, so the orchestrator has nothing to resume at start.
# Outcomes: 94 % COMPLETED, 5.9 % FAILED after compensating, 0.1 % FAILED with
# needs_intervention (a compensation gave up). create_time runs evenly over the
# 30 days before the fill; correlation ids are unique except that 3 % of the
# sagas share theirs with two others (a business object retried). 30 % carry an
# idempotency key. The payload is the saga type's input as the engine stores it.

FILL_SAGAS = """
INSERT INTO sagas (saga_id, saga_type, definition_version, correlation_id, idempotency_key,
    request_fingerprint, payload, status, failure_reason, failed_step, needs_intervention,
    create_time, update_time, version)
SELECT gen_random_uuid()::text, k.saga_type, 1, k.correlation_id,
    CASE WHEN mod(r.h, 10) < 3 THEN 'key-' || md5(i::text) END,
    CASE WHEN mod(r.h, 10) < 3 THEN md5('request-' || i) ELSE '' END,
    CASE WHEN k.saga_type = 'travel_booking' THEN jsonb_build_object(
        'customer_id', 'customer-' || lpad(mod(r.h, 200000)::text, 6, '0'),
        'traveller_name', (ARRAY['Ada Lovelace', 'Grace Hopper', 'Alan Turing',
            'Edsger Dijkstra', 'Barbara Liskov', 'Donald Knuth', 'Margaret Hamilton',
            'Ken Thompson'])[1 + mod(r.h / 8, 8)],
        'flight_number', (ARRAY['LH', 'BA', 'AF', 'KL', 'IB', 'LX'])[1 + mod(r.h / 64, 6)]
            || (100 + mod(r.h / 384, 900)),
        'seats', 1 + mod(r.h / 7, 3),
        'hotel_id', (ARRAY['berlin-central', 'paris-opera', 'london-bridge', 'rome-termini',
            'madrid-sol', 'vienna-ring'])[1 + mod(r.h / 11, 6)],
        'nights', 1 + mod(r.h / 13, 9),
        'rooms', 1,
        'car_location', (ARRAY['BER', 'CDG', 'LHR', 'FCO', 'MAD', 'VIE'])[1 + mod(r.h / 17, 6)],
        'car_class', (ARRAY['compact', 'economy', 'suv', 'van'])[1 + mod(r.h / 19, 4)],
        'car_days', 1 + mod(r.h / 23, 7),
        'amount', jsonb_build_object('currency_code', 'EUR',
            'amount_minor', (20000 + mod(r.h, 380000))::text))
    ELSE jsonb_build_object(
        'order_id', k.correlation_id,
        'customer_id', 'customer-' || lpad(mod(r.h, 200000)::text, 6, '0'),
        'items', CASE mod(r.h / 5, 3) WHEN 0 THEN jsonb_build_array(o.first)
            WHEN 1 THEN jsonb_build_array(o.first, o.second)
            ELSE jsonb_build_array(o.first, o.second, o.third) END,
        'shipping_address', (1 + mod(r.h / 29, 199)) || ' '
            || (ARRAY['Hauptstrasse', 'Rue de Rivoli', 'Baker Street', 'Via Roma',
                'Gran Via', 'Ringstrasse'])[1 + mod(r.h / 53, 6)] || ', '
            || (ARRAY['Berlin', 'Paris', 'London', 'Rome', 'Madrid',
                'Vienna'])[1 + mod(r.h / 59, 6)],
        'amount', jsonb_build_object('currency_code', 'EUR',
            'amount_minor', (1500 + mod(r.h, 60000))::text))
    END,
    CASE k.outcome WHEN 'ok' THEN 'COMPLETED' ELSE 'FAILED' END,
    CASE k.outcome WHEN 'ok' THEN ''
        ELSE 'step ' || k.failed_step || ' failed: FAILED_PRECONDITION: '
            || CASE k.saga_type WHEN 'travel_booking' THEN 'no car available'
                ELSE 'address not deliverable' END
            || CASE k.outcome WHEN 'stuck' THEN '; compensation of step '
                || CASE k.saga_type WHEN 'travel_booking' THEN 'book_flight'
                    ELSE 'reserve_inventory' END
                || ' gave up after 10 attempts: UNAVAILABLE: connection refused' ELSE '' END
    END,
    CASE k.outcome WHEN 'ok' THEN '' ELSE k.failed_step END,
    k.outcome = 'stuck',
    k.created,
    k.created + make_interval(secs => 0.3 + mod(r.h, 3000) / 1000.0
        + CASE k.outcome WHEN 'stuck' THEN 90 ELSE 0 END),
    CASE k.outcome WHEN 'ok' THEN 4 ELSE 6 END
FROM generate_series(1, %(n)s) AS i,
LATERAL (SELECT
    -- Three sagas in every 99 share one business object, hence one correlation id.
    CASE WHEN mod(i / 3, 33) = 0 THEN i / 3 * 3 ELSE i END AS business,
    hashint4(i) & 2147483647 AS h,
    mod(hashint4(i # 1431655765) & 2147483647, 1000) AS outcome_draw
) AS r,
LATERAL (SELECT
    t.saga_type,
    CASE t.saga_type WHEN 'travel_booking' THEN 'trip-' ELSE 'order-' END
        || lpad(r.business::text, 8, '0') AS correlation_id,
    CASE WHEN r.outcome_draw < 1 THEN 'stuck' WHEN r.outcome_draw < 60 THEN 'failed'
        ELSE 'ok' END AS outcome,
    CASE t.saga_type WHEN 'travel_booking' THEN 'rent_car'
        ELSE 'schedule_shipping' END AS failed_step,
    %(start)s::timestamptz + make_interval(secs => (i - 1) * %(spacing)s::float8) AS created
    FROM (SELECT CASE WHEN mod(hashint4(r.business) & 2147483647, 10) < 6
        THEN 'travel_booking' ELSE 'order_fulfillment' END AS saga_type) AS t
) AS k,
LATERAL (SELECT
    jsonb_build_object('sku', 'SKU-' || lpad(mod(r.h / 31, 5000)::text, 5, '0'),
        'quantity', 1 + mod(r.h / 37, 4)) AS first,
    jsonb_build_object('sku', 'SKU-' || lpad(mod(r.h / 41, 5000)::text, 5, '0'),
        'quantity', 1 + mod(r.h / 43, 3)) AS second,
    jsonb_build_object('sku', 'SKU-' || lpad(mod(r.h / 47, 5000)::text, 5, '0'),
        'quantity', 1) AS third
) AS o
"""

STEP_NAMES = {
    "travel_booking": ("book_flight", "book_hotel", "rent_car", "charge_payment"),
    "order_fulfillment": (
        "reserve_inventory",
        "charge_payment",
        "schedule_shipping",
        "send_confirmation",
    ),
}
"""The example definitions' steps in order; the third is the one that fails."""

_STEP_VALUES = ", ".join(
    f"('{saga_type}', {index}, '{name}')"
    for saga_type, names in STEP_NAMES.items()
    for index, name in enumerate(names)
)

# Four steps per saga. COMPLETED: all four completed, each with a stored reply.
# FAILED: the first two compensated, the third failed, the fourth never started;
# with needs_intervention the first step's compensation gave up after 10 attempts.
FILL_STEPS = f"""
INSERT INTO saga_steps (saga_id, step_index, name, status, attempts, compensation_attempts,
    error, result, start_time, update_time)
SELECT s.saga_id, d.step_index, d.name, x.status,
    CASE x.status WHEN 'PENDING' THEN 0 ELSE 1 END,
    CASE x.status WHEN 'COMPENSATED' THEN 1 WHEN 'COMPENSATION_FAILED' THEN 10 ELSE 0 END,
    CASE x.status WHEN 'FAILED' THEN 'FAILED_PRECONDITION: rejected by the participant'
        WHEN 'COMPENSATION_FAILED' THEN 'UNAVAILABLE: connection refused' ELSE '' END,
    CASE WHEN x.status IN ('COMPLETED', 'COMPENSATED', 'COMPENSATION_FAILED')
        THEN decode(md5(s.saga_id || d.name), 'hex') || decode(md5(d.name || s.saga_id), 'hex')
    END,
    CASE WHEN x.status <> 'PENDING'
        THEN s.create_time + make_interval(secs => 0.01 + d.step_index * 0.05) END,
    CASE WHEN x.status <> 'PENDING' THEN s.update_time END
FROM sagas s
JOIN (VALUES {_STEP_VALUES}) AS d (saga_type, step_index, name) ON d.saga_type = s.saga_type,
LATERAL (SELECT CASE
    WHEN s.status = 'COMPLETED' THEN 'COMPLETED'
    WHEN d.step_index = 0 AND s.needs_intervention THEN 'COMPENSATION_FAILED'
    WHEN d.step_index < 2 THEN 'COMPENSATED'
    WHEN d.step_index = 2 THEN 'FAILED'
    ELSE 'PENDING' END AS status) AS x
"""

# Six log rows per saga: the saga's start and end, and four step events between.
# (A complete log of a four-step saga has about ten; six keeps the fill of a
# million sagas within a few minutes on two cores, and GetSaga, ListSagas and
# StartSaga never read the log.)
_TRANSITION_PATTERNS = {
    "ok": (
        ("SAGA_STARTED", None, "RUNNING", None, 0),
        ("STEP_STARTED", 0, "RUNNING", "STARTED", 1),
        ("STEP_COMPLETED", 0, "RUNNING", "COMPLETED", 1),
        ("STEP_STARTED", 3, "RUNNING", "STARTED", 1),
        ("STEP_COMPLETED", 3, "RUNNING", "COMPLETED", 1),
        ("SAGA_COMPLETED", None, "COMPLETED", None, 0),
    ),
    "failed": (
        ("SAGA_STARTED", None, "RUNNING", None, 0),
        ("STEP_STARTED", 2, "RUNNING", "STARTED", 1),
        ("STEP_FAILED", 2, "RUNNING", "FAILED", 1),
        ("SAGA_COMPENSATING", None, "COMPENSATING", None, 0),
        ("COMPENSATION_COMPLETED", 0, "COMPENSATING", "COMPENSATED", 1),
        ("SAGA_FAILED", None, "FAILED", None, 0),
    ),
    "stuck": (
        ("SAGA_STARTED", None, "RUNNING", None, 0),
        ("STEP_STARTED", 2, "RUNNING", "STARTED", 1),
        ("STEP_FAILED", 2, "RUNNING", "FAILED", 1),
        ("SAGA_COMPENSATING", None, "COMPENSATING", None, 0),
        ("COMPENSATION_FAILED", 0, "COMPENSATING", "COMPENSATION_FAILED", 10),
        ("SAGA_FAILED", None, "FAILED", None, 0),
    ),
}
TRANSITIONS_PER_SAGA = 6
STEPS_PER_SAGA = 4


def _sql_text(value: object) -> str:
    return "NULL" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


_PATTERN_VALUES = ", ".join(
    "(" + ", ".join(_sql_text(v) for v in (outcome, seq, event, step, saga_status, status, n)) + ")"
    for outcome, rows in _TRANSITION_PATTERNS.items()
    for seq, (event, step, saga_status, status, n) in enumerate(rows, start=1)
)
_STEP_ARRAYS = " ".join(
    f"WHEN '{saga_type}' THEN ARRAY[{', '.join(repr(name) for name in names)}]"
    for saga_type, names in STEP_NAMES.items()
)

FILL_TRANSITIONS = f"""
INSERT INTO saga_transitions (saga_id, seq, event, time, saga_status, step, step_status,
    attempt, error, actor)
SELECT s.saga_id, p.seq, p.event, s.create_time + make_interval(secs => p.seq * 0.04),
    p.saga_status,
    coalesce((CASE s.saga_type {_STEP_ARRAYS} END)[p.step_index + 1], ''),
    p.step_status, p.attempt,
    CASE WHEN p.event IN ('STEP_FAILED', 'SAGA_COMPENSATING', 'SAGA_FAILED',
        'COMPENSATION_FAILED') THEN s.failure_reason ELSE '' END,
    'engine'
FROM sagas s
JOIN (VALUES {_PATTERN_VALUES})
    AS p (outcome, seq, event, step_index, saga_status, step_status, attempt)
    ON p.outcome = CASE WHEN s.needs_intervention THEN 'stuck'
        WHEN s.status = 'FAILED' THEN 'failed' ELSE 'ok' END
"""


@dataclass(frozen=True)
class TableDdl:
    """The indexes and constraints of the saga tables, as the catalog spells them."""

    keys: tuple[tuple[str, str, str], ...]
    """(table, constraint, definition) of primary keys and unique constraints."""
    indexes: tuple[tuple[str, str], ...]
    """(index, CREATE INDEX statement) of indexes that back no constraint."""
    foreign_keys: tuple[tuple[str, str, str], ...]

    @classmethod
    def read(cls, connection: psycopg.Connection[Any]) -> TableDdl:
        constraints = connection.execute(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE (conrelid = ANY(%s::regclass[])"
            " AND contype IN ('p', 'u', 'f'))"
            # Other tables' foreign keys into these (the lock tables') go and come back too.
            " OR (contype = 'f' AND confrelid = ANY(%s::regclass[])) ORDER BY 1, 2",
            (list(TABLES), list(TABLES)),
        ).fetchall()
        indexes = connection.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
            " WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x')) ORDER BY 1",
            (list(TABLES),),
        ).fetchall()
        return cls(
            keys=tuple((t, n, d) for t, n, kind, d in constraints if kind in ("p", "u")),
            indexes=tuple((n, d) for n, d in indexes),
            foreign_keys=tuple((t, n, d) for t, n, kind, d in constraints if kind == "f"),
        )

    def drop(self, connection: psycopg.Connection[Any]) -> None:
        for table, name, _ in (*self.foreign_keys, *self.keys):
            connection.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
        for name, _ in self.indexes:
            connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))

    def statements(self) -> tuple[list[str], list[str]]:
        """What rebuilds them: keys and indexes (independent), then foreign keys."""
        builds = [f'ALTER TABLE "{t}" ADD CONSTRAINT "{n}" {d}' for t, n, d in self.keys]
        builds += [definition for _, definition in self.indexes]
        foreign = [f'ALTER TABLE "{t}" ADD CONSTRAINT "{n}" {d}' for t, n, d in self.foreign_keys]
        return builds, foreign


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    phases[name] = round(time.perf_counter() - began, 2)


def _bulk_session(url: str) -> psycopg.Connection[Any]:
    """A connection for the fill: big sort memory for index builds, no commit wait."""
    connection = psycopg.connect(url, autocommit=True)
    connection.execute("SET maintenance_work_mem = '512MB'")
    connection.execute("SET work_mem = '256MB'")
    connection.execute("SET synchronous_commit = off")
    return connection


def _run_parallel(url: str, statements: Sequence[str], workers: int) -> None:
    """Run independent DDL statements on `workers` connections (index builds in parallel)."""

    def run(statement: str) -> None:
        with _bulk_session(url) as connection:
            connection.execute(statement)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, statement) for statement in statements]:
            future.result()


def migrate(url: str) -> int:
    """Create the schema as the orchestrator does: open a PostgresStore; its version."""

    async def run() -> int:
        store = PostgresStore(url)
        await store.open()
        try:
            return await store.schema_version()
        finally:
            await store.close()

    return asyncio.run(run())


def fill(url: str, sagas: int, *, workers: int = 2) -> dict[str, Any]:
    """Fill a migrated, empty database with `sagas` finished sagas; timings and sizes.

    The catalog's index and constraint definitions are dropped before the
    inserts and rebuilt after them, then compared with what was read first.
    """
    phases: dict[str, float] = {}
    start = datetime.now(UTC) - timedelta(days=DAYS)
    spacing = DAYS * 86400.0 / sagas
    began = time.perf_counter()
    disable_autovacuum(url)  # off from here on: a visit during the measurements is noise
    with _bulk_session(url) as connection:
        ddl = TableDdl.read(connection)
        ddl.drop(connection)
        with _timed(phases, "insert_sagas"):
            connection.execute(FILL_SAGAS, {"n": sagas, "start": start, "spacing": spacing})
        with _timed(phases, "insert_steps_and_transitions"):
            _run_parallel(url, [FILL_STEPS, FILL_TRANSITIONS], workers)
    builds, foreign_keys = ddl.statements()
    with _timed(phases, "build_indexes_and_keys"):
        _run_parallel(url, builds, workers)
        _run_parallel(url, foreign_keys, workers)
    with _timed(phases, "vacuum_analyze"):
        _run_parallel(url, [f"VACUUM (ANALYZE) {table}" for table in TABLES], workers)
    total = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as connection:
        rebuilt = TableDdl.read(connection)
        counts: dict[str, int] = dict(
            connection.execute(
                "SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(%s)",
                (list(TABLES),),
            ).fetchall()
        )
        sizes: dict[str, int] = dict(
            connection.execute(
                "SELECT relname, round(pg_total_relation_size(oid) / 1048576.0)::int"
                " FROM pg_class WHERE relname = ANY(%s)",
                (list(TABLES),),
            ).fetchall()
        )
    if rebuilt != ddl:
        raise RuntimeError(f"rebuilt schema differs from the migrated one:\n{ddl}\n{rebuilt}")
    return {
        "sagas": sagas,
        "rows_estimated": counts,
        "steps_per_saga": STEPS_PER_SAGA,
        "transitions_per_saga": TRANSITIONS_PER_SAGA,
        "create_time_from": start.isoformat(),
        "create_time_days": DAYS,
        "seconds": round(total, 2),
        "phases_s": phases,
        "total_mib": sizes,
        "indexes_rebuilt": [name for name, _ in ddl.indexes]
        + [name for _, name, _ in (*ddl.keys, *ddl.foreign_keys)],
    }


# --- listing cases and their SQL --------------------------------------------------------


@dataclass(frozen=True)
class ListCase:
    """One ListSagas filter measured on the big store."""

    name: str
    where: SagaFilter


def list_cases(url: str, fill_info: dict[str, Any]) -> list[ListCase]:
    """One case per filter; the correlation id is one that three sagas share."""
    start = datetime.fromisoformat(fill_info["create_time_from"])
    middle = start + timedelta(days=DAYS / 2)
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT correlation_id FROM sagas WHERE create_time >= %s AND create_time < %s"
            " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            (middle, middle + timedelta(hours=6)),
        ).fetchone()
    correlation_id = str(row[0]) if row else "trip-00000000"
    return [
        ListCase("no filter", SagaFilter()),
        ListCase("status=FAILED", SagaFilter(status=SagaStatus.FAILED)),
        ListCase("saga_type=order_fulfillment", SagaFilter(saga_type="order_fulfillment")),
        ListCase(f"correlation_id={correlation_id}", SagaFilter(correlation_id=correlation_id)),
        ListCase("needs_intervention=true", SagaFilter(needs_intervention=True)),
        ListCase(
            "create_time in middle day",
            SagaFilter(
                created_after=middle - timedelta(hours=12),
                created_before=middle + timedelta(hours=12),
            ),
        ),
    ]


def list_request(where: SagaFilter, page_size: int, token: str = "") -> pb.ListSagasRequest:
    request = pb.ListSagasRequest(page_size=page_size, page_token=token)
    if where.status is not None:
        request.status = getattr(pb, f"SAGA_STATUS_{where.status.value}")
    if where.saga_type is not None:
        request.saga_type = where.saga_type
    if where.correlation_id is not None:
        request.correlation_id = where.correlation_id
    if where.needs_intervention is not None:
        request.needs_intervention = where.needs_intervention
    if where.created_after is not None:
        request.create_time_after.FromDatetime(where.created_after)
    if where.created_before is not None:
        request.create_time_before.FromDatetime(where.created_before)
    return request


def store_listing(
    where: SagaFilter, after: PagePosition | None, limit: int
) -> tuple[str, dict[str, object]]:
    """The listing query and parameters exactly as PostgresStore.list_sagas binds them."""
    query, params = saga_listing(DIALECT, where, after)
    return query, {**params, "limit": limit}


def prepared_listing(
    where: SagaFilter, after: PagePosition | None, limit: int
) -> tuple[str, list[object]]:
    """The same query with $1..$n placeholders for PREPARE, and its values in order."""
    names: list[str] = []

    def numbered(name: str) -> str:
        names.append(name)
        return f"${len(names)}"

    query, params = saga_listing(dataclasses.replace(DIALECT, param=numbered), where, after)
    values = {**params, "limit": limit}
    return query, [values[name] for name in names]


_INDEX_USE = re.compile(r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? using (\S+)")
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def _plan_summary(lines: list[str], head: int) -> dict[str, Any]:
    text = "\n".join(lines)
    execution = _EXECUTION.search(text)
    return {
        "uses_index": bool(_INDEX_USE.search(text)) and "Seq Scan" not in text,
        "indexes": sorted({match.group(2) for match in _INDEX_USE.finditer(text)}),
        "execution_ms": float(execution.group(1)) if execution else None,
        "first_lines": lines[:head],
        "plan": lines,
    }


def explain(
    url: str, where: SagaFilter, after: PagePosition | None, limit: int, head: int = 4
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of a listing: the custom plan and the generic plan."""
    query, params = store_listing(where, after, limit)
    prepared, values = prepared_listing(where, after, limit)
    with psycopg.connect(url, autocommit=True) as connection:
        custom = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params).fetchall()
        rows = connection.execute(query, params).fetchall()
        connection.execute(sql.SQL("PREPARE bench_listing AS {}").format(sql.SQL(prepared)))
        connection.execute("SET plan_cache_mode = force_generic_plan")
        generic = connection.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_listing ({})").format(
                sql.SQL(", ").join(sql.Literal(value) for value in values)
            )
        ).fetchall()
        connection.execute("DEALLOCATE bench_listing")
    return {
        "sql": query,
        "params": {key: str(value) for key, value in params.items()},
        "page_ids": [row[0] for row in rows],
        "custom": _plan_summary([str(row[0]) for row in custom], head),
        "generic": _plan_summary([str(row[0]) for row in generic], head),
    }


# --- measurements over gRPC -------------------------------------------------------------


def _ms_summary(samples: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "p50_ms": round(percentile(ordered, 0.5), 3),
        "p95_ms": round(percentile(ordered, 0.95), 3),
        "max_ms": round(ordered[-1], 3),
    }


def _timed_call(method: Callable[..., Any], request: Message) -> tuple[Any, float]:
    """One unary call with a deadline; its reply and its latency in milliseconds."""
    began = time.perf_counter()
    reply = method(request, timeout=RPC_TIMEOUT_SECONDS)
    return reply, (time.perf_counter() - began) * 1000.0


def measure_lists(
    stub: pb_grpc.SagaOrchestratorStub, cases: Sequence[ListCase], repeats: int
) -> list[dict[str, Any]]:
    """First page (page_size 50) of each filter, `repeats` times, interleaved across filters.

    Interleaving spreads a noisy moment of the machine over every filter alike.
    The JSON keeps the first ten calls apart: a statement may change plans after
    psycopg prepares it (fifth call on a connection) and PostgreSQL then weighs
    its generic plan (after five more).
    """
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    first_pages: dict[str, list[str]] = {}
    for _ in range(repeats):
        for case in cases:
            request = list_request(case.where, LIST_PAGE_SIZE)
            reply, ms = _timed_call(stub.ListSagas, request)
            samples[case.name].append(ms)
            first_pages[case.name] = [saga.saga_id for saga in reply.sagas]
    return [
        {
            "name": case.name,
            "rows": len(first_pages[case.name]),
            **_ms_summary(samples[case.name]),
            "first_10_p50_ms": round(statistics.median(samples[case.name][:10]), 3),
            "after_10_p50_ms": (
                round(statistics.median(samples[case.name][10:]), 3)
                if len(samples[case.name]) > 10
                else None
            ),
            "page_ids": first_pages[case.name],
        }
        for case in cases
    ]


def measure_deep(
    stub: pb_grpc.SagaOrchestratorStub, case: ListCase, pages: int, repeats: int
) -> dict[str, Any]:
    """Follow up to `pages` next_page_tokens from the first page, `repeats` times.

    Latency per page number; a small store's listing may end sooner, and then
    `pages` says how far it went.
    """
    per_page: list[list[float]] = [[] for _ in range(pages)]
    last_token = ""
    for _ in range(repeats):
        token = stub.ListSagas(
            list_request(case.where, LIST_PAGE_SIZE), timeout=RPC_TIMEOUT_SECONDS
        ).next_page_token
        for page in range(pages):
            if not token:
                break
            last_token = token
            request = list_request(case.where, LIST_PAGE_SIZE, token)
            reply, ms = _timed_call(stub.ListSagas, request)
            per_page[page].append(ms)
            token = reply.next_page_token
    per_page = [page for page in per_page if page]
    if not per_page:
        raise RuntimeError(f"{case.name}: the listing has a single page")
    every = [ms for page in per_page for ms in page]
    return {
        "name": f"pages 2-{len(per_page) + 1}, {case.name}",
        "filter": case.name,
        "pages": len(per_page),
        "passes": repeats,
        **_ms_summary(every),
        "last_page_p50_ms": round(statistics.median(per_page[-1]), 3),
        "per_page_p50_ms": [round(statistics.median(page), 3) for page in per_page],
        "last_token": last_token,
    }


def measure_gets(
    stub: pb_grpc.SagaOrchestratorStub, saga_ids: Sequence[str], calls: int
) -> dict[str, Any]:
    """GetSaga one call at a time, each on the next of `saga_ids` (random stored sagas)."""
    samples = []
    for index in range(calls):
        request = pb.GetSagaRequest(saga_id=saga_ids[index % len(saga_ids)])
        reply, ms = _timed_call(stub.GetSaga, request)
        if len(reply.steps) == 0:
            raise RuntimeError(f"GetSaga {request.saga_id}: no steps")
        samples.append(ms)
    return {**_ms_summary(samples), "samples_ms": [round(ms, 4) for ms in samples]}


def measure_store_gets(url: str, saga_ids: Sequence[str], calls: int) -> dict[str, Any]:
    """GetSaga's two reads through PostgresStore itself, without gRPC: the database's share."""

    async def run() -> list[float]:
        store = PostgresStore(url)
        await store.open()
        samples = []
        try:
            for index in range(calls):
                saga_id = saga_ids[index % len(saga_ids)]
                began = time.perf_counter()
                saga = await store.get_saga(saga_id)
                steps = await store.get_steps(saga_id)
                samples.append((time.perf_counter() - began) * 1000.0)
                if saga is None or not steps:
                    raise RuntimeError(f"saga {saga_id}: not found, or no steps")
        finally:
            await store.close()
        return samples

    samples = asyncio.run(run())
    return {**_ms_summary(samples), "samples_ms": [round(ms, 4) for ms in samples]}


def random_saga_ids(url: str, count: int, seed: int, saga_type: str | None = None) -> list[str]:
    """`count` stored sagas drawn at random, of one type or of any."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT setseed(%s)", (seed / 2**31,))
        rows = connection.execute(
            "SELECT saga_id FROM sagas WHERE %(type)s::text IS NULL OR saga_type = %(type)s"
            " ORDER BY random() LIMIT %(count)s",
            {"type": saga_type, "count": count},
        ).fetchall()
    return [str(row[0]) for row in rows]


# --- sessions: one orchestrator on one database -------------------------------------------


@dataclass
class Session:
    """One orchestrator process on one database, with bench.loadgen waiting to start sagas."""

    store: str
    database: str
    url: str
    run: Measured
    address: str = ""
    results: dict[str, Any] = field(default_factory=dict)


def start_session(
    store: str, database: str, url: str, participants: str, workdir: Path, args: argparse.Namespace
) -> Session:
    """Start the orchestrator and the load generator; return once the warm-up sagas are done."""
    workdir.mkdir(parents=True, exist_ok=True)
    launch = Launch(
        system="ours",
        python=sys.executable,
        database_url=url,
        participants=participants,
        workdir=workdir,
        log_level=args.log_level,
    )
    run = launch.measured("success", args.start_sagas, args.concurrency, args.start_warmup)
    session = Session(store, database, url, run)
    try:
        run.start()
        session.address = str(run.system.info["address"])
        warm = run.driver.read_event("warm", 120.0 + args.start_warmup / 10.0)
    except BaseException:
        run.stop()
        raise
    session.results["warmup"] = {"sagas": args.start_warmup, "statuses": warm.get("statuses")}
    return session


STATS_SETTLE_SECONDS = 1.5
"""A backend flushes its statistics within a second of going idle (PostgreSQL 15)."""

_DATABASE_IO = """
SELECT blks_read, blks_hit, tup_inserted FROM pg_stat_database WHERE datname = %s
"""
_CLUSTER_WAL = "SELECT wal_bytes, wal_fpi FROM pg_stat_wal"


def io_counters(admin: Admin, database: str) -> dict[str, float]:
    """Block reads and hits of one database, and the WAL of the whole server (shared).

    A block read is one PostgreSQL had to fetch from outside shared_buffers
    (the OS cache, or disk); WAL full-page images are written for the first
    change of each page after a checkpoint, so a write spread over many pages
    costs more WAL. The WAL figures include other databases' work on the server.
    """
    time.sleep(STATS_SETTLE_SECONDS)
    admin.connection.execute("SELECT pg_stat_clear_snapshot()")
    io = admin.connection.execute(_DATABASE_IO, (database,)).fetchone()
    wal = admin.connection.execute(_CLUSTER_WAL).fetchone()
    values = [*(io or (0, 0, 0)), *(wal or (0, 0))]
    names = ("blocks_read", "blocks_hit", "tuples_inserted", "server_wal_bytes", "server_wal_fpi")
    return {name: float(value) for name, value in zip(names, values, strict=True)}


def measure_starts(session: Session, args: argparse.Namespace, admin: Admin) -> dict[str, Any]:
    """bench.loadgen's measured load: closed loop, start to committed terminal status."""
    before = io_counters(admin, session.database)
    session.run.driver.send("go")
    result = session.run.driver.read_event("result", 120.0 + args.start_sagas / 10.0)
    after = io_counters(admin, session.database)
    per_saga = {
        f"{name}_per_saga": round((after[name] - before[name]) / args.start_sagas, 2)
        for name in after
    }
    statuses = {str(key): int(value) for key, value in result["statuses"].items()}
    elapsed = float(result["elapsed_s"])
    latency = latency_summary(result["latencies_ms"])
    return {
        "sagas": args.start_sagas,
        "concurrency": args.concurrency,
        "elapsed_s": round(elapsed, 3),
        "sagas_per_s": round(args.start_sagas / elapsed, 1),
        "p50_ms": round(latency["p50"], 2),
        "p95_ms": round(latency["p95"], 2),
        "statuses": statuses,
        "all_completed": statuses.get(TERMINAL_OK, 0) == args.start_sagas,
        "io": per_saga,
        "latencies_ms": result["latencies_ms"],
    }


def stop_session(session: Session) -> dict[str, int | None]:
    """Tell the load generator to exit (it may be gone already), then stop both processes."""
    with contextlib.suppress(OSError, AssertionError):
        session.run.driver.send("exit")
    return session.run.stop()


# --- the run ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.big_store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sagas", type=int, default=1_000_000, help="sagas stored in the big store"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL,
        help=f"a maintenance database on the server (env {POSTGRES_URL_ENV})",
    )
    parser.add_argument("--list-repeats", type=int, default=200, help="calls per ListSagas filter")
    parser.add_argument("--deep-pages", type=int, default=20, help="next_page_tokens followed")
    parser.add_argument("--deep-repeats", type=int, default=10, help="passes over the deep pages")
    parser.add_argument("--get-calls", type=int, default=2000, help="GetSaga calls per session")
    parser.add_argument("--start-sagas", type=int, default=2000, help="measured StartSagas")
    parser.add_argument("--start-warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="sessions per store, in ABBA order (2: big, empty, empty, big)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-level", default="WARNING", help="the orchestrator's log level")
    parser.add_argument("--out-dir", type=Path, default=REPO / ".bench")
    args = parser.parse_args(argv)
    if args.sagas < 1000:
        parser.error("--sagas must be at least 1000")
    return args


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Run:
    """Owns every process and database of one run; `close` stops and drops them all."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.admin = Admin(args.postgres_url)
        self.databases: list[str] = []
        self.sessions: list[Session] = []
        self.participants = ChildProcess(
            "participants",
            [sys.executable, "-m", "bench.participant"],
            workdir,
            env={"PYTHONPATH": str(REPO)},
            cwd=REPO,
            ready_file=True,
        )

    def new_database(self) -> tuple[str, str]:
        name = self.admin.create_database()
        self.databases.append(name)
        return name, database_url(self.args.postgres_url, name)

    def drop(self, name: str) -> None:
        self.admin.drop_database(name)
        self.databases.remove(name)

    def close(self) -> None:
        for session in self.sessions:
            session.run.stop()
        self.participants.stop()
        for name in list(self.databases):
            self.drop(name)
        self.admin.close()

    def session(self, store: str, database: str, url: str, label: str) -> Session:
        session = start_session(
            store,
            database,
            url,
            str(self.participants.info["address"]),
            self.workdir / label,
            self.args,
        )
        self.sessions.append(session)
        return session


def execute(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """Fill, measure both stores in ABBA order, explain the listings; the results."""
    results: dict[str, Any] = {"load_average": {"before": _load()}}
    durability = check_durability(args.postgres_url)
    results["postgres"] = {**durability, **run.admin.settings(INFO_SETTINGS)}
    run.participants.start()

    big, big_url = run.new_database()
    print(f"big-store: filling {big} with {args.sagas:,} sagas ...", flush=True)
    results["schema_version"] = migrate(big_url)
    results["fill"] = fill(big_url, args.sagas)
    print(
        f"big-store: filled in {results['fill']['seconds']:.0f}s "
        f"({results['fill']['phases_s']}); sizes MiB {results['fill']['total_mib']}",
        flush=True,
    )
    results["load_average"]["after_fill"] = _load()
    cases = list_cases(big_url, results["fill"])
    big_ids = random_saga_ids(big_url, min(args.get_calls, args.sagas), args.seed)

    # ABBA: big, empty, then empty, big, and so on, so drift falls on both sides alike.
    order = [
        store
        for round_number in range(args.rounds)
        for store in (("big", "empty") if round_number % 2 == 0 else ("empty", "big"))
    ]
    sessions: list[dict[str, Any]] = []
    for number, store in enumerate(order, start=1):
        if store == "big":
            database, url = big, big_url
        else:
            database, url = run.new_database()
            migrate(url)
            disable_autovacuum(url)
        load = _load()
        session = run.session(store, database, url, f"{number}-{store}")
        channel = grpc.insecure_channel(session.address)
        stub = pb_grpc.SagaOrchestratorStub(channel)
        try:
            if store == "big" and "lists" not in results:
                print("big-store: ListSagas per filter ...", flush=True)
                results["lists"] = measure_lists(stub, cases, args.list_repeats)
                results["deep"] = [
                    measure_deep(stub, case, args.deep_pages, args.deep_repeats)
                    for case in cases[:2]
                ]
                results["plans"] = explain_all(big_url, cases, results)
            print(f"big-store: session {number} ({store}): StartSaga ...", flush=True)
            starts = measure_starts(session, args, run.admin)
            # On both stores: sagas of the shape this run starts (bench_trip, three
            # steps); on the big one also the filled sagas (older, four steps, cold).
            recent = random_saga_ids(url, args.get_calls, args.seed, SAGA_TYPE)
            gets_recent = measure_gets(stub, recent, args.get_calls)
            gets = measure_gets(stub, big_ids, args.get_calls) if store == "big" else gets_recent
            store_gets = measure_store_gets(
                url, big_ids if store == "big" else recent, args.get_calls
            )
        finally:
            channel.close()
            exit_codes = stop_session(session)
            run.sessions.remove(session)
        sessions.append(
            {
                "number": number,
                "store": store,
                "database": database,
                "load_average_before": load,
                "start": starts,
                "get": gets,
                "get_recent": gets_recent,
                "store_get": store_gets,
                "exit_codes": exit_codes,
            }
        )
        print(
            f"big-store: session {number} ({store}): {starts['sagas_per_s']:.0f} sagas/s, "
            f"GetSaga p50 {gets['p50_ms']:.2f} ms (bench sagas {gets_recent['p50_ms']:.2f} ms)",
            flush=True,
        )
        if store == "empty":
            run.drop(database)
    results["sessions"] = sessions
    results["stores"] = {store: _pooled(sessions, store) for store in ("big", "empty")}
    big_side, empty_side = results["stores"]["big"], results["stores"]["empty"]
    results["ratios_big_over_empty"] = {
        key: round(big_side[key] / empty_side[key], 3)
        for key in (
            "sagas_per_s",
            "start_p50_ms",
            "start_p95_ms",
            *(f"{get}_{q}_ms" for get in GET_KINDS for q in ("p50", "p95")),
        )
    }
    results["load_average"]["after"] = _load()
    return results


def explain_all(
    url: str, cases: Sequence[ListCase], results: dict[str, Any]
) -> list[dict[str, Any]]:
    """Plans of every first page and of the deep pages' last page; checks the same rows."""
    served = {row["name"]: row["page_ids"] for row in results["lists"]}
    plans = []
    for case in cases:
        plan = explain(url, case.where, None, LIST_PAGE_SIZE + 1)
        plan["name"] = case.name
        plan["same_page_as_grpc"] = plan.pop("page_ids")[:LIST_PAGE_SIZE] == served[case.name]
        plans.append(plan)
    for deep in results["deep"]:
        case = next(case for case in cases if case.name == deep["filter"])
        after = decode_page_token(deep["last_token"], case.where)
        plan = explain(url, case.where, after, LIST_PAGE_SIZE + 1)
        plan.pop("page_ids")
        plan["name"] = f"page {deep['pages'] + 1}, {case.name}"
        plans.append(plan)
    return plans


def _pooled(sessions: Sequence[dict[str, Any]], store: str) -> dict[str, Any]:
    """One store's figures over its sessions: total sagas / total time, pooled latencies."""
    mine = [session for session in sessions if session["store"] == store]
    sagas = sum(session["start"]["sagas"] for session in mine)
    elapsed = sum(session["start"]["elapsed_s"] for session in mine)
    latencies = sorted(ms for session in mine for ms in session["start"]["latencies_ms"])
    pooled: dict[str, Any] = {
        "sessions": len(mine),
        "sagas_per_s": round(sagas / elapsed, 1),
        "start_p50_ms": round(percentile(latencies, 0.5), 2),
        "start_p95_ms": round(percentile(latencies, 0.95), 2),
        "all_completed": all(session["start"]["all_completed"] for session in mine),
    }
    for key in GET_KINDS:
        samples = sorted(ms for session in mine for ms in session[key]["samples_ms"])
        pooled[f"{key}_p50_ms"] = round(percentile(samples, 0.5), 3)
        pooled[f"{key}_p95_ms"] = round(percentile(samples, 0.95), 3)
    pooled["io"] = {
        name: round(statistics.mean(session["start"]["io"][name] for session in mine), 2)
        for name in mine[0]["start"]["io"]
    }
    return pooled


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if column < left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """The tables printed at the end: listings and plans, then big against empty."""
    fill_info = results["fill"]
    plans = {plan["name"]: plan for plan in results["plans"]}
    text = [
        f"{fill_info['sagas']:,} sagas ({fill_info['steps_per_saga']} steps, "
        f"{fill_info['transitions_per_saga']} transitions each) filled in "
        f"{fill_info['seconds']:.0f}s; MiB {fill_info['total_mib']}; load average "
        f"{results['load_average']}",
        "",
    ]

    def plan_cells(name: str) -> list[str]:
        plan = plans.get(name)
        if plan is None:
            return ["-", "-", "-"]
        custom, generic = plan["custom"], plan["generic"]
        return [
            ",".join(custom["indexes"]) or "NO INDEX",
            f"{custom['execution_ms']:.2f}",
            f"{generic['execution_ms']:.2f}" + ("" if generic["uses_index"] else " (no index)"),
        ]

    header = ["ListSagas (page 50)", "rows", "p50 ms", "p95 ms", "index (custom plan)"]
    header += ["sql ms", "generic sql ms"]
    rows = [
        [
            row["name"],
            str(row["rows"]),
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            *plan_cells(row["name"]),
        ]
        for row in results["lists"]
    ]
    for deep in results["deep"]:
        rows.append(
            [
                deep["name"],
                "50",
                f"{deep['p50_ms']:.2f}",
                f"{deep['p95_ms']:.2f}",
                *plan_cells(f"page {deep['pages'] + 1}, {deep['filter']}"),
            ]
        )
    text.append(_table(header, rows))
    text.append("")
    ratio = results["ratios_big_over_empty"]
    header = ["StartSaga, c=64", "sagas/s", "start->done p50 ms", "p95 ms"]
    header += ["blocks read/saga", "server WAL KiB/saga"]
    rows = []
    for session in results["sessions"]:
        start = session["start"]
        rows.append(
            [
                f"{session['number']}. {session['store']}",
                f"{start['sagas_per_s']:.1f}",
                f"{start['p50_ms']:.2f}",
                f"{start['p95_ms']:.2f}",
                f"{start['io']['blocks_read_per_saga']:.1f}",
                f"{start['io']['server_wal_bytes_per_saga'] / 1024:.1f}",
            ]
        )
    for store in ("big", "empty"):
        pooled = results["stores"][store]
        rows.append(
            [
                f"{store} (all)",
                f"{pooled['sagas_per_s']:.1f}",
                f"{pooled['start_p50_ms']:.2f}",
                f"{pooled['start_p95_ms']:.2f}",
                f"{pooled['io']['blocks_read_per_saga']:.1f}",
                f"{pooled['io']['server_wal_bytes_per_saga'] / 1024:.1f}",
            ]
        )
    rows.append(
        [
            "big / empty",
            f"{ratio['sagas_per_s']:.3f}",
            f"{ratio['start_p50_ms']:.3f}",
            f"{ratio['start_p95_ms']:.3f}",
            "",
            "",
        ]
    )
    text.append(_table(header, rows))
    text.append("")
    header = ["GetSaga, one at a time", "gRPC stored p50 ms", "p95 ms", "gRPC bench p50 ms"]
    header += ["p95 ms", "store only p50 ms", "p95 ms"]
    rows = [
        [
            f"{session['number']}. {session['store']}",
            *(
                f"{session[kind][q]:.3f}"
                for kind in ("get", "get_recent", "store_get")
                for q in ("p50_ms", "p95_ms")
            ),
        ]
        for session in results["sessions"]
    ]
    for store in ("big", "empty"):
        pooled = results["stores"][store]
        rows.append(
            [
                f"{store} (all)",
                *(f"{pooled[f'{kind}_{q}_ms']:.3f}" for kind in GET_KINDS for q in ("p50", "p95")),
            ]
        )
    rows.append(
        [
            "big / empty",
            *(f"{ratio[f'{kind}_{q}_ms']:.3f}" for kind in GET_KINDS for q in ("p50", "p95")),
        ]
    )
    text.append(_table(header, rows))
    text.append("")
    text.append("EXPLAIN (ANALYZE, BUFFERS), first lines of the custom plan:")
    for plan in results["plans"]:
        text.append(f"  {plan['name']}:")
        text.extend(f"    {line}" for line in plan["custom"]["first_lines"])
    return "\n".join(text)


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"big-store-{stamp}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    (out_dir / "big-store-latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run once; every process started is stopped and every database dropped, always."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = args.out_dir / "big-store-runs" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        run = Run(args, workdir)
    except psycopg.OperationalError as error:
        print(f"big-store: cannot connect to PostgreSQL at {args.postgres_url}: {error}")
        return 2
    try:
        results = execute(args, run)
    except DurabilityOff as error:
        print(f"big-store: {error}", flush=True)
        return 2
    finally:
        run.close()
    results = {
        "time": stamp,
        "source": _source_version(),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "methodology": __doc__,
        **results,
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    path = write(results, args.out_dir, stamp)
    print()
    print(render(results))
    print(f"\nbig-store: {results['wall_seconds']:.0f}s; results in {path}")
    ok = all(plan["custom"]["uses_index"] for plan in results["plans"])
    ok = ok and all(results["stores"][store]["all_completed"] for store in ("big", "empty"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("big-store: interrupted; every process stopped and every database dropped")
        sys.exit(130)
