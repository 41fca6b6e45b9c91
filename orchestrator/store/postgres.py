"""PostgreSQL back end: psycopg 3 over an async connection pool.

Each unit of work is one transaction on one pooled connection, and parameters
are always bound. Statements inside a transaction are pipelined, so a group
commit costs four round trips however many sagas it carries: BEGIN, the saga
updates (whose row counts are checked), the steps and log rows together, COMMIT.
Pooled connections are in autocommit mode, so a read of one SELECT costs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrator.errors import ConfigurationError, StoreUnavailable
from orchestrator.records import (
    CreateSagaResult,
    Lease,
    NewSaga,
    PagePosition,
    SagaCommit,
    SagaFilter,
    SagaRecord,
    StepRecord,
    TransitionRecord,
)
from orchestrator.store._rows import (
    SAGA_COLUMNS,
    STEP_COLUMNS,
    TRANSITION_COLUMNS,
    UNFINISHED_STATUSES,
    RowEncoding,
    aware,
    duplicate_transition,
    list_query,
    stale_version,
)
from orchestrator.store.base import Store
from orchestrator.store.migrations import load_migrations, next_migration

logger = logging.getLogger(__name__)

_Connection = psycopg.AsyncConnection[TupleRow]

PROBE_INTERVAL_SECONDS = 0.5
"""While the server is lost, it is probed at most this often; calls in between fail at once."""
PROBE_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's connect_timeout for a probe (libpq treats anything below 2 as 2)."""

# Unquoted, so it means the same in search_path (which folds case) and in CREATE SCHEMA.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _time_from_db(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _payload_from_db(value: Any) -> dict[str, Any]:
    return dict(value)


_ENCODING = RowEncoding(
    time_to_db=aware,
    time_from_db=_time_from_db,
    payload_to_db=Jsonb,
    payload_from_db=_payload_from_db,
)

# Serializes migrations of one schema across processes; other schemas are not blocked.
_LOCK_MIGRATIONS = """
SELECT pg_advisory_xact_lock(
    hashtext('saga-orchestrator schema migrations'), hashtext(current_setting('search_path'))
)
"""
_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      integer     PRIMARY KEY,
    name         text        NOT NULL,
    applied_time timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"

_INSERT_SAGA = f"""
INSERT INTO sagas ({SAGA_COLUMNS}, lease_owner, lease_expires_at)
VALUES (%(saga_id)s, %(saga_type)s, %(definition_version)s, %(correlation_id)s,
        %(idempotency_key)s, %(request_fingerprint)s, %(payload)s, %(status)s,
        %(failure_reason)s, %(failed_step)s, %(needs_intervention)s, %(create_time)s,
        %(update_time)s, %(version)s, %(deadline_time)s, %(lease_owner)s,
        clock_timestamp() + make_interval(secs => %(lease_seconds)s::float8))
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING saga_id
"""
_UPDATE_SAGA = """
UPDATE sagas
SET status = %(status)s, failure_reason = %(failure_reason)s, failed_step = %(failed_step)s,
    needs_intervention = %(needs_intervention)s, update_time = %(update_time)s,
    version = %(version)s,
    -- A finished saga needs no driver; an operator's retry makes it claimable at once.
    lease_owner = CASE WHEN %(status)s IN ('COMPLETED', 'FAILED') THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN %(status)s IN ('COMPLETED', 'FAILED') THEN NULL
                            ELSE lease_expires_at END
WHERE saga_id = %(saga_id)s AND version = %(expected_version)s
"""
_UPSERT_STEP = f"""
INSERT INTO saga_steps ({STEP_COLUMNS})
VALUES (%(saga_id)s, %(step_index)s, %(name)s, %(status)s, %(attempts)s,
        %(compensation_attempts)s, %(error)s, %(result)s, %(start_time)s, %(update_time)s,
        %(next_attempt_time)s)
ON CONFLICT (saga_id, name) DO UPDATE
SET step_index = excluded.step_index, status = excluded.status,
    attempts = excluded.attempts, compensation_attempts = excluded.compensation_attempts,
    error = excluded.error, result = excluded.result, start_time = excluded.start_time,
    update_time = excluded.update_time, next_attempt_time = excluded.next_attempt_time
"""
_INSERT_TRANSITION = f"""
INSERT INTO saga_transitions ({TRANSITION_COLUMNS})
VALUES (%(saga_id)s, %(seq)s, %(event)s, %(time)s, %(saga_status)s, %(step)s,
        %(step_status)s, %(attempt)s, %(error)s, %(actor)s, %(reason)s)
"""
_CLAIM_SAGAS = f"""
UPDATE sagas SET lease_owner = %(owner)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(seconds)s),
    version = version + 1
WHERE saga_id IN (
    SELECT saga_id FROM sagas
    WHERE status IN {UNFINISHED_STATUSES}
      AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
    ORDER BY create_time, saga_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING {SAGA_COLUMNS}
"""
_CLAIM_SAGA = f"""
UPDATE sagas SET lease_owner = %(owner)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(seconds)s),
    version = version + 1
WHERE saga_id = %(saga_id)s AND status IN {UNFINISHED_STATUSES}
  AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()
       OR lease_owner = %(owner)s)
RETURNING {SAGA_COLUMNS}
"""
_RENEW_LEASES = """
UPDATE sagas SET lease_expires_at = clock_timestamp() + make_interval(secs => %(seconds)s)
WHERE lease_owner = %(owner)s AND saga_id = ANY(%(saga_ids)s)
RETURNING saga_id
"""
_RELEASE_LEASES = """
UPDATE sagas SET lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = %(owner)s AND saga_id = ANY(%(saga_ids)s)
"""
_SELECT_SAGA = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = %s"
_SELECT_SAGA_BY_KEY = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key = %s"
_SELECT_VERSION = "SELECT version FROM sagas WHERE saga_id = %s"
_SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM saga_steps WHERE saga_id = %s ORDER BY step_index"
_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM saga_transitions WHERE saga_id = %s"
_SELECT_TRANSITIONS = f"""
SELECT {TRANSITION_COLUMNS} FROM saga_transitions
WHERE saga_id = %s AND seq > %s ORDER BY seq
"""
_COUNT_UNFINISHED_BY_DEFINITION = f"""
SELECT saga_type, definition_version, count(*) AS sagas FROM sagas
WHERE status IN {UNFINISHED_STATUSES}
GROUP BY saga_type, definition_version
"""

_SELECT_UNFINISHED = f"""
SELECT {SAGA_COLUMNS} FROM sagas
WHERE status IN {UNFINISHED_STATUSES}
ORDER BY create_time, saga_id
LIMIT %s
"""


def _insert_params(new: NewSaga) -> dict[str, object]:
    lease = new.lease
    return {
        **_ENCODING.saga_params(new.saga),
        "lease_owner": None if lease is None else lease.owner,
        "lease_seconds": None if lease is None else lease.seconds,
    }


class PostgresStore(Store):
    """A `Store` in PostgreSQL, shared safely by several orchestrator processes.

    `url` is a libpq URL (`postgresql://user@host:5432/db`); a schema may be chosen
    in it (`?options=-csearch_path%3Dmyschema`, which must exist) or with `schema`,
    which is created if missing. `timeout` bounds, in seconds, the wait for a
    connection: at `open()` and for every unit of work. When it runs out, or the
    server is lost, the call raises `StoreUnavailable`.

    Outages: once a unit of work finds the server gone (a broken connection, or no
    connection within `timeout`), later calls do not queue on the pool, whose own
    reconnection backs off for up to minutes; they probe the server with one
    direct connection (at most every PROBE_INTERVAL_SECONDS) and fail at once with
    `StoreUnavailable` while it refuses. The first probe that connects replaces the
    pool, so the connections that died with the old server are all dropped at once
    and the store serves again within a probe interval of the server's return.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        schema: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(
                f"PostgreSQL schema name {schema!r} must be lower case letters, digits and _"
            )
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._schema = schema
        self._timeout = timeout
        self._connection_kwargs = _connection_kwargs(url, schema, timeout)
        self._pool: AsyncConnectionPool[_Connection] | None = None
        # Outage state: when the server was found lost (None while it is fine),
        # when it was last probed and what the probe said.
        self._lost_since: float | None = None
        self._probed_at = 0.0
        self._probe_error = ""
        self._recovery = asyncio.Lock()

    async def open(self) -> None:
        """Fill the pool and migrate; raises StoreUnavailable if the server cannot be reached."""
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        pool = self._new_pool()
        self._pool = pool
        try:
            try:
                await pool.open(wait=True, timeout=self._timeout)
            except psycopg.OperationalError as error:
                raise StoreUnavailable(f"cannot connect to PostgreSQL: {error}") from error
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _new_pool(self) -> AsyncConnectionPool[_Connection]:
        return AsyncConnectionPool(
            self._url,
            kwargs=self._connection_kwargs,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            name="saga-store",
            open=False,
        )

    async def schema_version(self) -> int:
        async with self._connection() as connection:
            return await _applied_version(connection)

    async def write(
        self, new_sagas: Sequence[NewSaga], commits: Sequence[SagaCommit]
    ) -> list[CreateSagaResult]:
        insert_params = [_insert_params(new) for new in new_sagas]
        saga_params = [_ENCODING.commit_params(commit) for commit in commits]
        step_params = [_ENCODING.step_params(s) for commit in commits for s in commit.steps]
        transition_params = [
            _ENCODING.transition_params(t) for commit in commits for t in commit.transitions
        ]
        results: list[CreateSagaResult] = []
        try:
            async with (
                self._connection() as connection,
                connection.transaction(),
                connection.pipeline() as pipeline,
            ):
                cursor = connection.cursor(row_factory=dict_row)
                if insert_params:
                    await cursor.executemany(_INSERT_SAGA, insert_params, returning=True)
                    await pipeline.sync()
                    inserted = [await result.fetchone() async for result in cursor.results()]
                    for new, row in zip(new_sagas, inserted, strict=True):
                        if row is not None:
                            results.append(CreateSagaResult(new.saga, created=True))
                            step_params += [_ENCODING.step_params(s) for s in new.steps]
                            transition_params += [
                                _ENCODING.transition_params(t) for t in new.transitions
                            ]
                            continue
                        # The key is taken (an insert racing with ours waited for it).
                        await cursor.execute(_SELECT_SAGA_BY_KEY, (new.saga.idempotency_key,))
                        existing = await cursor.fetchone()
                        if existing is None:
                            raise RuntimeError(
                                f"saga {new.saga.saga_id}: insert skipped but no saga found"
                            )
                        results.append(
                            CreateSagaResult(_ENCODING.saga_from_row(existing), created=False)
                        )
                if saga_params:
                    # Statements run in order, so two commits of one saga chain versions.
                    await cursor.executemany(_UPDATE_SAGA, saga_params, returning=True)
                    await pipeline.sync()
                    updated = [result.rowcount async for result in cursor.results()]
                    for params, rowcount in zip(saga_params, updated, strict=True):
                        if rowcount == 0:
                            await cursor.execute(_SELECT_VERSION, (params["saga_id"],))
                            row = await cursor.fetchone()
                            raise stale_version(
                                params["saga_id"],
                                params["expected_version"],
                                None if row is None else row["version"],
                            )
                if step_params:
                    await cursor.executemany(_UPSERT_STEP, step_params)
                if transition_params:
                    await cursor.executemany(_INSERT_TRANSITION, transition_params)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.table_name != "saga_transitions":
                raise
            raise duplicate_transition(error.diag.message_detail or str(error)) from error
        return results

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_SELECT_SAGA, (saga_id,))
            row = await cursor.fetchone()
        return None if row is None else _ENCODING.saga_from_row(row)

    async def get_steps(self, saga_id: str) -> list[StepRecord]:
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_SELECT_STEPS, (saga_id,))
            rows = await cursor.fetchall()
        return [_ENCODING.step_from_row(row) for row in rows]

    async def last_seq(self, saga_id: str) -> int:
        async with self._connection() as connection:
            cursor = await connection.execute(_LAST_SEQ, (saga_id,))
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def get_transitions(self, saga_id: str, after_seq: int = 0) -> list[TransitionRecord]:
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_SELECT_TRANSITIONS, (saga_id, after_seq))
            rows = await cursor.fetchall()
        return [_ENCODING.transition_from_row(row) for row in rows]

    async def list_unfinished(self, limit: int = 1000) -> list[SagaRecord]:
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_SELECT_UNFINISHED, (limit,))
            rows = await cursor.fetchall()
        return [_ENCODING.saga_from_row(row) for row in rows]

    async def list_sagas(
        self, where: SagaFilter, limit: int, after: PagePosition | None = None
    ) -> list[SagaRecord]:
        clause, params = list_query(where, after, lambda name: f"%({name})s", lambda t: t)
        query = (
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE {clause}"
            " ORDER BY create_time DESC, saga_id DESC LIMIT %(limit)s"
        )
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(query, {**params, "limit": limit})
            rows = await cursor.fetchall()
        return [_ENCODING.saga_from_row(row) for row in rows]

    async def claim_sagas(self, lease: Lease, limit: int) -> list[SagaRecord]:
        params = {"owner": lease.owner, "seconds": lease.seconds, "limit": limit}
        async with self._connection() as connection, connection.transaction():
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_CLAIM_SAGAS, params)
            rows = await cursor.fetchall()
        sagas = [_ENCODING.saga_from_row(row) for row in rows]
        return sorted(sagas, key=lambda s: (s.create_time, s.saga_id))

    async def claim_saga(self, lease: Lease, saga_id: str) -> SagaRecord | None:
        params = {"owner": lease.owner, "seconds": lease.seconds, "saga_id": saga_id}
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(_CLAIM_SAGA, params)
            row = await cursor.fetchone()
        return None if row is None else _ENCODING.saga_from_row(row)

    async def renew_leases(self, lease: Lease, saga_ids: Sequence[str]) -> set[str]:
        if not saga_ids:
            return set()
        params = {"owner": lease.owner, "seconds": lease.seconds, "saga_ids": list(saga_ids)}
        async with self._connection() as connection:
            cursor = await connection.execute(_RENEW_LEASES, params)
            rows = await cursor.fetchall()
        return {str(row[0]) for row in rows}

    async def release_leases(self, owner: str, saga_ids: Sequence[str]) -> None:
        if not saga_ids:
            return
        async with self._connection() as connection:
            await connection.execute(_RELEASE_LEASES, {"owner": owner, "saga_ids": list(saga_ids)})

    async def unfinished_definitions(self) -> dict[tuple[str, int], int]:
        async with self._connection() as connection:
            cursor = await connection.execute(_COUNT_UNFINISHED_BY_DEFINITION)
            rows = await cursor.fetchall()
        return {(str(row[0]), int(row[1])): int(row[2]) for row in rows}

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        """A pooled connection; losing the server or waiting too long is StoreUnavailable."""
        pool = await self._reachable_pool()
        try:
            async with pool.connection() as connection:
                try:
                    yield connection
                except psycopg.OperationalError:
                    if connection.broken:
                        self._server_lost(pool)
                    raise
        except PoolTimeout as error:
            self._server_lost(pool)
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error

    def _server_lost(self, pool: AsyncConnectionPool[_Connection]) -> None:
        """Note that `pool`'s server went away (a late failure on a replaced pool is old news)."""
        if pool is self._pool and self._lost_since is None:
            self._lost_since = time.monotonic()
            self._probed_at = 0.0
            logger.warning("PostgreSQL connection lost; probing before using the pool again")

    async def _reachable_pool(self) -> AsyncConnectionPool[_Connection]:
        """The pool, once the server is known to answer; StoreUnavailable at once if not.

        After an outage one caller probes with a direct connection while the others
        wait for its verdict; a probe younger than PROBE_INTERVAL_SECONDS is trusted.
        """
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open")
        if self._lost_since is None:
            return self._pool
        async with self._recovery:
            if self._pool is None:
                raise RuntimeError("PostgresStore is not open")
            if self._lost_since is None:
                return self._pool
            now = time.monotonic()
            if now - self._probed_at < PROBE_INTERVAL_SECONDS:
                raise StoreUnavailable(f"PostgreSQL is unavailable: {self._probe_error}")
            self._probed_at = now
            try:
                probe = await psycopg.AsyncConnection.connect(
                    self._url,
                    **{**self._connection_kwargs, "connect_timeout": PROBE_CONNECT_TIMEOUT_SECONDS},
                )
            except psycopg.OperationalError as error:
                self._probe_error = str(error).strip()
                raise StoreUnavailable(f"PostgreSQL is unavailable: {self._probe_error}") from error
            await probe.close()
            lost_for = now - self._lost_since
            old, fresh = self._pool, self._new_pool()
            await fresh.open(wait=False)
            self._pool, self._lost_since = fresh, None
            logger.warning(
                "PostgreSQL answers again after %.1fs; connection pool renewed", lost_for
            )
        # Connections of the old pool still in use are closed when they come back.
        await old.close(timeout=1.0)
        return fresh

    async def _migrate(self) -> None:
        """Apply pending migrations, each with its version row in one transaction.

        An advisory lock held to the end of each transaction serializes processes
        starting at once on one schema; the version is re-read under it.
        """
        migrations = load_migrations("postgres")
        while True:
            async with self._connection() as connection, connection.transaction():
                await connection.execute(_LOCK_MIGRATIONS)
                if self._schema is not None:
                    await connection.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self._schema)
                        )
                    )
                await connection.execute(_CREATE_MIGRATIONS_TABLE)
                migration = next_migration(migrations, await _applied_version(connection))
                if migration is None:
                    return
                logger.info("applying PostgreSQL migration %s", migration.name)
                await connection.execute(migration.sql)
                await connection.execute(_RECORD_MIGRATION, (migration.version, migration.name))


async def _applied_version(connection: _Connection) -> int:
    cursor = await connection.execute(_APPLIED_VERSION)
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


def _connection_kwargs(url: str, schema: str | None, timeout: float) -> dict[str, Any]:
    """Connection settings added to the URL's: autocommit, a connect timeout, the schema."""
    try:
        in_url = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ConfigurationError(f"invalid PostgreSQL URL: {error}") from error
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in in_url:
        kwargs["connect_timeout"] = max(2, math.ceil(timeout))
    if schema is not None:
        kwargs["options"] = f"{in_url.get('options') or ''} -csearch_path={schema}".strip()
    return kwargs
