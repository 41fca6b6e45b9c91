"""PostgreSQL back end: psycopg 3 over an async connection pool.

Each unit of work is one transaction on one pooled connection, and parameters
are always bound. A group commit is one pipeline, BEGIN to COMMIT, so it costs
one round trip however many sagas it carries: a commit whose expected version is
stale fails its transaction at the server (see _UPDATE_SAGA_LOGGING_FIRST), so
nothing needs checking before COMMIT. New sagas with an idempotency key add a
round trip, to learn whether the key was taken. Pooled connections are in
autocommit mode, so a read of one SELECT costs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrator.core.clock import utc_now
from orchestrator.core.errors import ConfigurationError, StaleSagaVersion, StoreUnavailable
from orchestrator.core.records import CreateSagaResult, Lease, LockAttempt, NewSaga, SagaCommit
from orchestrator.store import _batch_insert as batch_insert
from orchestrator.store._rows import Row, RowEncoding, aware, duplicate_transition, stale_version
from orchestrator.store._statements import SAGA_COLUMNS, TRANSITION_COLUMNS, Dialect, Statements
from orchestrator.store.locks import (
    RELEASE_CHANNEL,
    LockedOpening,
    LockStatements,
    OpeningBatches,
)
from orchestrator.store.migrations import load_migrations, next_migration
from orchestrator.store.postgres_lock_takes import LockTakeStatements
from orchestrator.store.postgres_lock_takes import take_locks as take_locks_pipelined
from orchestrator.store.postgres_openings import write_openings
from orchestrator.store.sql_store import SqlStore

logger = logging.getLogger(__name__)

_Connection = psycopg.AsyncConnection[TupleRow]

PROBE_INTERVAL_SECONDS = 0.5
"""While the server is lost, it is probed at most this often; calls in between fail at once."""
PROBE_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's connect_timeout for a probe (libpq treats anything below 2 as 2)."""

FOLLOW_RETRY_SECONDS = 1.0
"""After the commit listener loses its connection, it reconnects this often."""
COMMITS_CHANNEL = "saga_commits"
"""The NOTIFY channel, suffixed with the schema: replicas of one schema hear each other."""
_NOTIFY_COMMITS = (
    "SELECT pg_notify('saga_commits.' || current_schema(), saga_id)"
    " FROM unnest(%(saga_ids)s::text[]) AS saga_id"
)
"""One notification per saga, all from one statement however many sagas a write carries."""
_SELECT_SAGAS_BY_KEYS = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key = ANY(%(keys)s)"

DEFAULT_POOL_MIN_SIZE = 2
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_POOL_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class PoolConfig:
    """The connection pool of one orchestrator process (see docs/limits.md for sizing).

    `max_size` bounds the connections one replica holds (replicas x max_size must
    stay under the server's max_connections, less what else uses it); `timeout` is
    how long a unit of work waits for a connection before StoreUnavailable.
    """

    min_size: int = DEFAULT_POOL_MIN_SIZE
    max_size: int = DEFAULT_POOL_MAX_SIZE
    timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ConfigurationError(
                f"pool sizes need 1 <= min ({self.min_size}) <= max ({self.max_size})"
            )
        if not self.timeout > 0:
            raise ConfigurationError(f"pool timeout must be positive, got {self.timeout:g}")


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


def _lease_params(lease: Lease | None) -> dict[str, object]:
    """The owner and the lease's length: the server's clock decides, shared by replicas."""
    return {
        "owner": None if lease is None else lease.owner,
        "seconds": None if lease is None else lease.seconds,
    }


DIALECT = Dialect(
    param=lambda name: f"%({name})s",
    now="clock_timestamp()",
    lease_expiry="clock_timestamp() + make_interval(secs => %(seconds)s::float8)",
    lease_params=_lease_params,
    in_ids="= ANY(%(saga_ids)s)",
    id_list=list,
    skip_locked="FOR UPDATE SKIP LOCKED",
    lock_in_id_order='ORDER BY saga_id COLLATE "C" FOR UPDATE',
)
"""How PostgreSQL spells the shared SQL: the server's clock decides leases, shared by replicas."""
_STATEMENTS = Statements.render(DIALECT)
_UPDATED = f"""updated AS ({_STATEMENTS.update_saga.strip()}
    RETURNING saga_id)"""
_LOG_FIRST = f"""INSERT INTO saga_transitions ({TRANSITION_COLUMNS})
VALUES ({
    ", ".join(
        "(SELECT saga_id FROM updated)" if column == "saga_id" else DIALECT.param(column)
        for column in (name.strip() for name in TRANSITION_COLUMNS.split(","))
    )
})"""
_UPDATE_SAGA_LOGGING_FIRST = f"WITH {_UPDATED}\n{_LOG_FIRST}"
"""A commit's saga update and its first log row, whose saga_id is the updated row's:
NULL, which the column refuses, when the commit's expected version is not stored."""
_UPDATE_SAGA_LOGGING_FIRST_AND_NOTIFYING = f"""WITH {_UPDATED},
logged AS ({_LOG_FIRST}
    RETURNING saga_id)
SELECT pg_notify('saga_commits.' || current_schema(), saga_id) FROM logged"""
"""The same, and the saga's commit notification (`_NOTIFY_COMMITS`), sent at COMMIT: a
write of commits alone, each logging, needs no statement of its own for them."""
# Takers of one key serialize on an advisory lock held to the end of their transaction.
# All of a transaction's keys are taken in one statement, ordered by the lock's id (the
# subquery's ORDER BY is kept, so the locks are taken in that order): two transactions
# never wait for each other in a cycle.
_LOCKS = LockStatements.render(
    DIALECT,
    guard_keys="""
SELECT pg_advisory_xact_lock(lock_id) FROM (
    SELECT DISTINCT hashtextextended(current_setting('search_path') || '/' || lock_key, 0)
           AS lock_id
    FROM unnest(%(keys)s::text[]) AS lock_key ORDER BY lock_id
) AS ids
""",
    next_ticket="nextval('saga_lock_tickets')",
    blockers_of_keys="""
SELECT k.lock_key, l.saga_id AS holder, w.saga_id AS waiter
FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k (lock_key, n)
LEFT JOIN saga_locks l ON l.lock_key = k.lock_key AND l.saga_id <> %(saga_id)s
LEFT JOIN LATERAL (
    SELECT q.saga_id FROM saga_lock_queue q
    WHERE q.lock_key = k.lock_key AND q.saga_id <> %(saga_id)s
      AND (%(ticket)s::bigint IS NULL OR q.ticket < %(ticket)s::bigint
           OR (q.ticket = %(ticket)s::bigint AND q.saga_id < %(saga_id)s))
    ORDER BY q.ticket, q.saga_id LIMIT 1
) w ON l.saga_id IS NULL
ORDER BY k.n
""",
)
LOCK_TRANSACTION_IDLE_MS = 2000
"""How long a lock transaction may sit idle (its process frozen) before the server ends it."""
_IDLE_LOCK_TRANSACTION = (
    f"SET LOCAL idle_in_transaction_session_timeout = {LOCK_TRANSACTION_IDLE_MS}"
)
# The released sagas' held keys and queue places go, and each key freed is announced.
_RELEASE_AND_NOTIFY = f"""
WITH held AS (DELETE FROM saga_locks WHERE saga_id = ANY(%(saga_ids)s)),
     queued AS (DELETE FROM saga_lock_queue WHERE saga_id = ANY(%(saga_ids)s))
SELECT pg_notify('{RELEASE_CHANNEL}', lock_key) FROM unnest(%(keys)s::text[]) AS lock_key
"""
_LOCK_TAKES = LockTakeStatements(
    setup=_IDLE_LOCK_TRANSACTION,
    guard_keys=_LOCKS.guard_keys,
    update_logging_first=_UPDATE_SAGA_LOGGING_FIRST,
    release_and_notify=_RELEASE_AND_NOTIFY,
)


class PostgresStore(SqlStore):
    """A `Store` in PostgreSQL, shared safely by several orchestrator processes.

    `url` is a libpq URL (`postgresql://user@host:5432/db`); a schema may be chosen
    in it (`?options=-csearch_path%3Dmyschema`, which must exist) or with `schema`,
    which is created if missing. `timeout` bounds, in seconds, the wait for a
    connection: at `open()` and for every unit of work. When it runs out, or the
    server is lost, the call raises `StoreUnavailable`.

    Outages: once a unit of work finds the server gone (a broken connection, or no
    connection within `timeout`), later calls do not queue on the pool; they probe
    the server with one direct connection (at most every PROBE_INTERVAL_SECONDS)
    and fail at once with `StoreUnavailable` while it refuses. The first probe that
    connects drains the pool (psycopg_pool's `drain()`), so the idle connections
    that died with the old server are all dropped at once, those in use are
    replaced when they come back, and the store serves again within a probe
    interval of the server's return.
    """

    _statements = _STATEMENTS
    _encoding = _ENCODING
    _locks = _LOCKS

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
        # when it last came back, when it was last probed and what the probe said.
        self._lost_since: float | None = None
        self._recovered_at = 0.0
        self._probed_at = 0.0
        self._probe_error = ""
        self._recovery = asyncio.Lock()
        self._openings: OpeningBatches | None = None

    async def open(self) -> None:
        """Fill the pool and migrate; raises StoreUnavailable if the server cannot be reached."""
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        pool = AsyncConnectionPool(
            self._url,
            kwargs=self._connection_kwargs,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            # A lost connection is re-added for as long as a call waits for one, not
            # the default five minutes of backoff: the probe watches the server, and
            # a slot held by a sleeping retry could not serve once it is back.
            reconnect_timeout=self._timeout,
            name="saga-store",
            open=False,
        )
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

    def pool_stats(self) -> dict[str, int]:
        # get_stats() only copies counts, so the metrics scrape thread may call it.
        return {} if self._pool is None else self._pool.get_stats()

    async def schema_version(self) -> int:
        async with self._connection() as connection:
            return await _applied_version(connection)

    async def write(
        self, new_sagas: Sequence[NewSaga], commits: Sequence[SagaCommit]
    ) -> list[CreateSagaResult]:
        # In saga_id order (stable: one saga's commits keep theirs), the order in which
        # renewing leases locks rows too, so the two never deadlock.
        commits = sorted(commits, key=lambda commit: commit.saga.saga_id)
        saga_params = [self._encoding.commit_params(commit) for commit in commits]
        # A round trip inside the transaction (an idempotency key's insert answered, or
        # the row counts of updates that log nothing) needs BEGIN and COMMIT around it;
        # without one, the pipeline's closing Sync commits all of it.
        explicit = any(new.saga.idempotency_key is not None for new in new_sagas) or not all(
            commit.transitions for commit in commits
        )
        async with self._connection() as connection:
            try:
                async with _pipelined_transaction(connection, explicit=explicit) as pipeline:
                    return await self._write_statements(
                        connection, pipeline, new_sagas, commits, saga_params
                    )
            except (
                _StaleBatch,
                psycopg.errors.NotNullViolation,
                psycopg.errors.UniqueViolation,
                psycopg.errors.ForeignKeyViolation,
            ) as error:
                if (
                    isinstance(
                        error, psycopg.errors.UniqueViolation | psycopg.errors.NotNullViolation
                    )
                    and error.diag.table_name != "saga_transitions"
                ):
                    raise
                # Rolled back by now: the stored versions are the other writers'. A log
                # row keyed NULL (its saga update matched nothing), a row of a saga that
                # is not stored, a seq already logged: all are a stale commit's.
                stale = await _stale(connection, saga_params)
                if stale is not None:
                    raise stale from None
                if isinstance(error, psycopg.errors.UniqueViolation):
                    raise duplicate_transition(error.diag.message_detail or str(error)) from error
                if isinstance(error, _StaleBatch | psycopg.errors.NotNullViolation):
                    raise StaleSagaVersion(
                        f"a commit of {len(saga_params)} expected a version the store"
                        " no longer held"
                    ) from None
                raise

    async def _write_statements(
        self,
        connection: _Connection,
        pipeline: psycopg.AsyncPipeline,
        new_sagas: Sequence[NewSaga],
        commits: Sequence[SagaCommit],
        saga_params: list[dict[str, object]],
    ) -> list[CreateSagaResult]:
        """`write`'s statements, queued in its pipelined transaction; raises _StaleBatch
        (before anything is committed) if a commit's saga update matched no row."""
        statements, encoding = self._statements, self._encoding
        step_params = [encoding.step_params(s) for commit in commits for s in commit.steps]
        transition_params = [
            encoding.transition_params(t) for commit in commits for t in commit.transitions[1:]
        ]
        cursor = connection.cursor(row_factory=dict_row)
        notify_with_updates = not new_sagas and all(commit.transitions for commit in commits)
        results = await self._insert_sagas(cursor, pipeline, new_sagas)
        for new, result in zip(new_sagas, results, strict=True):
            if result.created:
                step_params += [encoding.step_params(s) for s in new.steps]
                transition_params += [encoding.transition_params(t) for t in new.transitions]
        # Statements run in order, so two commits of one saga chain versions. A commit
        # that logs something updates its saga in the statement that logs the first row,
        # keyed by the updated row: a stale commit updates none and the NULL key fails
        # the transaction at the server, so nothing has to be checked before COMMIT.
        # Others have a cursor per run of them, whose rows updated are summed; runs keep
        # the saga_id order of the updates.
        unlogged: list[tuple[psycopg.AsyncCursor[Any], int]] = []
        ordered = zip(saga_params, commits, strict=True)
        for logs, run in itertools.groupby(ordered, key=lambda pair: bool(pair[1].transitions)):
            pairs = list(run)
            if logs:
                await cursor.executemany(
                    _UPDATE_SAGA_LOGGING_FIRST_AND_NOTIFYING
                    if notify_with_updates
                    else _UPDATE_SAGA_LOGGING_FIRST,
                    [{**p, **encoding.transition_params(c.transitions[0])} for p, c in pairs],
                )
            else:
                updates = connection.cursor()
                await updates.executemany(statements.update_saga, [p for p, _ in pairs])
                unlogged.append((updates, len(pairs)))
        released = [c for c in commits if c.released_locks]
        if released:
            # One statement for the whole batch; the NOTIFY is delivered when (and only
            # if) the transaction commits.
            freed = {
                "saga_ids": [c.saga.saga_id for c in released],
                "keys": sorted({key for c in released for key in c.released_locks}),
            }
            await cursor.execute(_RELEASE_AND_NOTIFY, freed)
        await batch_insert.write_steps_and_log(cursor, statements, step_params, transition_params)
        if not notify_with_updates:
            # Delivered at COMMIT, to every replica's listener (follow_commits).
            changed = dict.fromkeys(
                [new.saga.saga_id for new in new_sagas]
                + [commit.saga.saga_id for commit in commits]
            )
            await cursor.execute(_NOTIFY_COMMITS, {"saga_ids": list(changed)})
        if unlogged:
            await pipeline.sync()  # a round trip before COMMIT, to check the row counts
            if any(updates.rowcount != count for updates, count in unlogged):
                raise _StaleBatch
        return results

    async def _insert_sagas(
        self,
        cursor: psycopg.AsyncCursor[dict[str, Any]],
        pipeline: psycopg.AsyncPipeline,
        new_sagas: Sequence[NewSaga],
    ) -> list[CreateSagaResult]:
        """Queue the inserts of new sagas. Only a saga with an idempotency key can be
        skipped (the key is taken): if one has a key, wait for the answers (a round
        trip) and read each existing saga in place of its skipped insert."""
        statements, encoding = self._statements, self._encoding
        if not new_sagas:
            return []
        insert_params = [
            {**encoding.saga_params(new.saga), **_lease_params(new.lease)} for new in new_sagas
        ]
        if all(new.saga.idempotency_key is None for new in new_sagas):
            await cursor.executemany(statements.insert_saga, insert_params)
            return [CreateSagaResult(new.saga, created=True) for new in new_sagas]
        await cursor.executemany(statements.insert_saga, insert_params, returning=True)
        await pipeline.sync()
        inserted = [await result.fetchone() async for result in cursor.results()]
        results = []
        for new, row in zip(new_sagas, inserted, strict=True):
            if row is not None:
                results.append(CreateSagaResult(new.saga, created=True))
                continue
            # The key is taken (an insert racing with ours waited for it).
            await cursor.execute(
                statements.select_saga_by_key, {"idempotency_key": new.saga.idempotency_key}
            )
            existing = await cursor.fetchone()
            if existing is None:
                raise RuntimeError(f"saga {new.saga.saga_id}: insert skipped but no saga found")
            results.append(CreateSagaResult(encoding.saga_from_row(existing), created=False))
        return results

    async def create_locked_saga(
        self,
        idempotency_key: str | None,
        keys: Sequence[str],
        open_saga: Callable[[LockAttempt], NewSaga],
    ) -> CreateSagaResult:
        """As the base, but batched: openings queued meanwhile share one transaction
        (`OpeningBatches`, written by `write_openings`)."""
        if self._openings is None:
            self._openings = OpeningBatches(self._write_openings)
        return await self._openings.create(LockedOpening(idempotency_key, tuple(keys), open_saga))

    async def take_locks(
        self,
        saga_id: str,
        keys: Sequence[str],
        version: int,
        decide: Callable[[LockAttempt], SagaCommit | None],
    ) -> LockAttempt:
        """As the base, in one pipelined transaction of two round trips (see
        `postgres_lock_takes`)."""
        async with self._connection() as connection:
            try:
                async with _pipelined_transaction(connection) as pipeline:
                    return await take_locks_pipelined(
                        connection,
                        pipeline,
                        self._statements,
                        _LOCK_TAKES,
                        self._encoding,
                        saga_id,
                        keys,
                        version,
                        decide,
                        utc_now(),
                    )
            except psycopg.errors.NotNullViolation as error:
                if error.diag.table_name != "saga_transitions":
                    raise
                # Rolled back: the commit's update matched no row at its version.
                cursor = connection.cursor(row_factory=dict_row)
                await cursor.execute(self._statements.select_version, {"saga_id": saga_id})
                stored = await cursor.fetchone()
                raise stale_version(
                    saga_id, version, None if stored is None else stored["version"]
                ) from None

    async def _write_openings(
        self, openings: Sequence[LockedOpening]
    ) -> list[CreateSagaResult | Exception]:
        async with self._connection() as connection:
            return await write_openings(
                connection,
                self._statements,
                self._locks,
                self._encoding,
                openings,
                _lease_params,
                utc_now(),
                setup=_IDLE_LOCK_TRANSACTION,
            )

    async def create_sagas(self, new_sagas: Sequence[NewSaga]) -> list[CreateSagaResult]:
        """A batch in one transaction of four statements (see `_batch_insert`), with the
        results `write` would give; a batch those statements cannot carry goes to `write`."""
        if not new_sagas or not batch_insert.fits(new_sagas):
            return await super().create_sagas(new_sagas)
        encoding = self._encoding
        lease = _lease_params(new_sagas[0].lease)
        try:
            async with self._connection() as connection, connection.transaction():
                cursor = connection.cursor(row_factory=dict_row)
                await cursor.execute(
                    batch_insert.INSERT_SAGAS,
                    {"rows": batch_insert.saga_rows(encoding, new_sagas), **lease},
                )
                inserted = {str(row["saga_id"]) for row in await cursor.fetchall()}
                created = [new for new in new_sagas if new.saga.saga_id in inserted]
                taken = [
                    new.saga.idempotency_key
                    for new in new_sagas
                    if new.saga.saga_id not in inserted
                ]
                existing: dict[str, CreateSagaResult] = {}
                if taken:
                    await cursor.execute(_SELECT_SAGAS_BY_KEYS, {"keys": taken})
                    for row in await cursor.fetchall():
                        saga = encoding.saga_from_row(row)
                        existing[str(saga.idempotency_key)] = CreateSagaResult(saga, False)
                if created:
                    for statement, rows in (
                        (batch_insert.INSERT_STEPS, batch_insert.step_rows(encoding, created)),
                        (
                            batch_insert.INSERT_TRANSITIONS,
                            batch_insert.transition_rows(encoding, created),
                        ),
                    ):
                        await cursor.execute(statement, {"rows": rows})
                    ids = [new.saga.saga_id for new in created]
                    await cursor.execute(_NOTIFY_COMMITS, {"saga_ids": ids})
        except psycopg.errors.UniqueViolation as error:
            if error.diag.table_name != "saga_transitions":
                raise
            raise duplicate_transition(error.diag.message_detail or str(error)) from error
        return [
            CreateSagaResult(new.saga, True)
            if new.saga.saga_id in inserted
            else existing[str(new.saga.idempotency_key)]
            for new in new_sagas
        ]

    async def follow_commits(
        self, committed: Callable[[str], None], live: Callable[[bool], None]
    ) -> None:
        """LISTEN on one connection of its own (outside the pool) and report every saga
        any replica commits in this schema; reconnect after losing it, reporting the gap."""
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._url, **self._connection_kwargs
                )
                async with connection:
                    cursor = await connection.execute("SELECT current_schema()")
                    row = await cursor.fetchone()
                    channel = f"{COMMITS_CHANNEL}.{row[0] if row else 'public'}"
                    await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    live(True)
                    async for notice in connection.notifies():
                        committed(notice.payload)
            except psycopg.Error as error:
                logger.warning(
                    "commit listener lost its connection; watchers poll until it is back: %s",
                    str(error).strip(),
                )
            finally:
                live(False)
            await asyncio.sleep(FOLLOW_RETRY_SECONDS)

    async def _rows(
        self, query: str, params: Mapping[str, object], *, write: bool = False
    ) -> list[Row]:
        # Autocommit: one statement is one transaction, written or not.
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(query, params)
            return list(await cursor.fetchall()) if cursor.description else []

    async def _reads(
        self, statements: Sequence[tuple[str, Mapping[str, object]]]
    ) -> list[list[Row]]:
        # Pipelined: every read goes out before the first answer is awaited.
        async with self._connection() as connection:
            cursors = [connection.cursor(row_factory=dict_row) for _ in statements]
            async with connection.pipeline():
                for cursor, (query, params) in zip(cursors, statements, strict=True):
                    await cursor.execute(query, params)
            return [list(await cursor.fetchall()) for cursor in cursors]

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Transaction]:
        async with self._connection() as connection, connection.transaction():
            cursor = connection.cursor(row_factory=dict_row)
            # A lock transaction holds its keys' advisory locks: if its process freezes
            # mid-way, the server ends the transaction instead of blocking every taker.
            await cursor.execute(_IDLE_LOCK_TRANSACTION)
            yield _Transaction(cursor)

    async def lock_releases(self) -> AsyncIterator[str]:
        """LISTEN on the release channel over one connection of its own (not pooled)."""
        connection = await psycopg.AsyncConnection.connect(self._url, **self._connection_kwargs)
        try:
            await connection.execute(f"LISTEN {RELEASE_CHANNEL}")
            async for notification in connection.notifies():
                yield notification.payload
        finally:
            await connection.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        """A pooled connection; losing the server or waiting too long is StoreUnavailable."""
        pool = await self._reachable_pool()
        asked_at = time.monotonic()
        try:
            async with pool.connection() as connection:
                try:
                    yield connection
                except psycopg.OperationalError:
                    if connection.broken:
                        self._server_lost(asked_at)
                    raise
        except PoolTimeout as error:
            self._server_lost(asked_at)
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error

    def _server_lost(self, asked_at: float) -> None:
        """Note that the server went away, unless the failing call began before the server
        last came back (a late failure of a drained connection is old news)."""
        if asked_at >= self._recovered_at and self._lost_since is None:
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
            # Idle connections are closed and replaced now; those in use, when returned.
            await self._pool.drain()
            self._lost_since, self._recovered_at = None, time.monotonic()
            logger.warning(
                "PostgreSQL answers again after %.1fs; connection pool drained", lost_for
            )
            return self._pool

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


@contextlib.asynccontextmanager
async def _pipelined_transaction(
    connection: _Connection, *, explicit: bool = True
) -> AsyncIterator[psycopg.AsyncPipeline]:
    """One transaction in one pipeline: BEGIN is queued with the statements after it,
    and COMMIT goes out with the pipeline's closing sync, so neither costs a round trip
    of its own (psycopg's `transaction()` waits for its BEGIN). If the block raises,
    nothing is committed: the transaction is rolled back.

    Not `explicit`: no BEGIN and no COMMIT, two statements fewer to send. The statements
    before a Sync run as one implicit transaction, which the Sync commits if all of
    them succeeded and rolls back if one failed (the protocol's pipelining rule); so
    the block must not sync before its end."""
    try:
        async with connection.pipeline() as pipeline:
            if explicit:
                await connection.execute("BEGIN", prepare=False)
            yield pipeline
            if explicit:
                await connection.execute("COMMIT", prepare=False)
    except BaseException:
        if not connection.broken and (
            connection.info.transaction_status is not psycopg.pq.TransactionStatus.IDLE
        ):
            # If this fails too, the pool rolls back or discards the connection when it
            # is returned; the error that matters is the one being raised.
            with contextlib.suppress(Exception):
                await connection.execute("ROLLBACK", prepare=False)
        raise


class _StaleBatch(Exception):
    """A commit of the batch updated no saga row: the write is rolled back."""


async def _stale(
    connection: _Connection, saga_params: Sequence[Mapping[str, Any]]
) -> StaleSagaVersion | None:
    """The error naming the first commit whose expected version the store does not hold
    (commits of one saga in one batch chain their versions), or None if every one does."""
    cursor = connection.cursor(row_factory=dict_row)
    stored: dict[object, object] = {}
    for params in saga_params:
        saga_id = params["saga_id"]
        if saga_id not in stored:
            await cursor.execute(_STATEMENTS.select_version, params)
            row = await cursor.fetchone()
            stored[saga_id] = None if row is None else row["version"]
        if stored[saga_id] != params["expected_version"]:
            return stale_version(saga_id, params["expected_version"], stored[saga_id])
        stored[saga_id] = params["version"]
    return None


async def _applied_version(connection: _Connection) -> int:
    cursor = await connection.execute(_APPLIED_VERSION)
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


class _Transaction:
    """Statements of one `PostgresStore._transaction`, on its connection's cursor."""

    def __init__(self, cursor: psycopg.AsyncCursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    async def rows(self, query: str, params: Mapping[str, object]) -> list[Row]:
        await self._cursor.execute(query, params)
        return list(await self._cursor.fetchall()) if self._cursor.description else []


def _connection_kwargs(url: str, schema: str | None, timeout: float) -> dict[str, Any]:
    """Connection settings added to the URL's: autocommit, a connect timeout, the schema,
    and a bound on a transaction left open by a client that stopped.

    Every unit of work here is a few statements in a row; a transaction idle for
    `timeout` belongs to a frozen or wedged process (SIGSTOP, a paused VM). Its row
    locks would keep other replicas from taking over its sagas (claims skip locked
    rows), so the server ends that session instead, and the frozen replica, if it
    wakes, finds its connection gone and its sagas fenced.
    """
    try:
        in_url = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ConfigurationError(f"invalid PostgreSQL URL: {error}") from error
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in in_url:
        kwargs["connect_timeout"] = max(2, math.ceil(timeout))
    options = [str(in_url.get("options") or "")]
    if "idle_in_transaction_session_timeout" not in options[0]:
        options.append(f"-cidle_in_transaction_session_timeout={math.ceil(timeout * 1000)}")
    if schema is not None:
        options.append(f"-csearch_path={schema}")
    kwargs["options"] = " ".join(part for part in options if part)
    return kwargs
