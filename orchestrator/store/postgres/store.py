"""PostgreSQL back end: `PostgresStore`, the shared queries over psycopg 3's pool.

Each unit of work is one transaction on one pooled connection (`connection.py`), and
parameters are always bound. Every write is a plan of the one writer (`writer.py`):
a group commit, a batch of new sagas, a lock take, a batch of locked openings. Pooled
connections are in autocommit mode, so a read of one SELECT costs one round trip, and
several reads of one call go out together in one pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from orchestrator import failpoints
from orchestrator.core.clock import utc_now
from orchestrator.core.events import EventSink
from orchestrator.core.lock_openings import LockedOpening
from orchestrator.core.records import CreateSagaResult, LockAttempt, NewSaga, SagaCommit
from orchestrator.store._rows import Row
from orchestrator.store._statements import UNFINISHED_STATUSES
from orchestrator.store.locks import RELEASE_CHANNEL, OpeningBatches
from orchestrator.store.postgres import lock_plans
from orchestrator.store.postgres.connection import (
    Connection,
    Connections,
    discarded_on_error,
    session_name,
)
from orchestrator.store.postgres.sql import (
    COMMITS_CHANNEL,
    ENCODING,
    IDLE_LOCK_TRANSACTION,
    LOCKS,
    STATEMENTS,
    TRACKED,
)
from orchestrator.store.postgres.writer import WritePlan, write_plan
from orchestrator.store.sql_store import SqlStore, checked_sinks

logger = logging.getLogger(__name__)

FOLLOW_RETRY_SECONDS = 1.0
"""After the commit listener loses its connection, it reconnects this often."""
TERMINATE_WAIT_MS = 2000
"""How long ending a lost replica's session waits for the session to go."""

LOST_OWNERS = f"""
SELECT lease_owner FROM sagas
WHERE status IN {UNFINISHED_STATUSES} AND lease_owner IS NOT NULL AND lease_owner <> %(owner)s
GROUP BY lease_owner
HAVING max(lease_expires_at) < now() - make_interval(secs => %(grace)s)
"""
"""Replicas holding leases of unfinished sagas, every one expired more than `grace` ago."""

END_SESSIONS = """
WITH named AS MATERIALIZED (
    SELECT pid, application_name FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND application_name = ANY(%(names)s) AND application_name <> %(own)s
)
SELECT application_name, pg_terminate_backend(pid, %(wait_ms)s) AS gone FROM named
"""
"""End the sessions of this database named in `names` (never this one); one row per
session signalled. Materialized, so only the sessions selected are ever signalled."""


class PostgresStore(SqlStore):
    """A `Store` in PostgreSQL, shared safely by several orchestrator processes.

    `url` is a libpq URL (`postgresql://user@host:5432/db`); a schema may be chosen
    in it (`?options=-csearch_path%3Dmyschema`, which must exist) or with `schema`,
    which is created if missing. Its sessions are named after `replica_id` (the lease
    owner of the process using it; see `end_lost_sessions`). `timeout` bounds, in
    seconds, the wait for a connection: at `open()` and for every unit of work. When it
    runs out, or the server is lost, the call raises `StoreUnavailable`; while the server
    stays away, calls fail at once and a probe watches for its return (`connection.py`).
    `event_sinks`: every write adds the outbox rows of the transitions they select.
    """

    _statements = STATEMENTS
    _encoding = ENCODING
    _locks = LOCKS
    _tracked = TRACKED

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        schema: str | None = None,
        timeout: float = 10.0,
        replica_id: str | None = None,
        event_sinks: Sequence[EventSink] = (),
    ) -> None:
        self._event_sinks = checked_sinks(event_sinks)
        self._connections = Connections(
            url,
            min_size=min_size,
            max_size=max_size,
            schema=schema,
            timeout=timeout,
            application_name=None if replica_id is None else session_name(replica_id),
        )
        self._openings: OpeningBatches | None = None

    async def open(self) -> None:
        """Fill the pool and migrate; raises StoreUnavailable if the server cannot be reached."""
        await self._connections.open()

    async def close(self) -> None:
        await self._connections.close()

    def pool_stats(self) -> dict[str, int]:
        return self._connections.stats()

    async def schema_version(self) -> int:
        return await self._connections.schema_version()

    async def write(
        self, new_sagas: Sequence[NewSaga], commits: Sequence[SagaCommit]
    ) -> list[CreateSagaResult]:
        """The group commit's plan: one round trip, one more to learn whether an
        idempotency key was taken (or to check the updates of commits that log nothing)."""
        async with self._connection() as connection:
            with failpoints.scope(_write_scope(commits)):
                plan = WritePlan(new_sagas, commits, sinks=self._event_sinks)
                return await write_plan(connection, plan)

    async def create_locked_saga(
        self,
        idempotency_key: str | None,
        keys: Sequence[str],
        open_saga: Callable[[LockAttempt], NewSaga],
    ) -> CreateSagaResult:
        """As the base, but batched: openings queued meanwhile share one transaction
        (`OpeningBatches`, written by `lock_plans.write_openings`)."""
        if self._openings is None:
            self._openings = OpeningBatches(self._write_openings)
        open_saga, written = self._written_by(open_saga)
        result = await self._openings.create(LockedOpening(idempotency_key, tuple(keys), open_saga))
        written()
        return result

    async def take_locks(
        self,
        saga_id: str,
        keys: Sequence[str],
        version: int,
        decide: Callable[[LockAttempt], SagaCommit | None],
    ) -> LockAttempt:
        """As the base, in one pipelined transaction of two round trips (see `lock_plans`)."""
        decide, written = self._written_by(decide)
        async with self._connection() as connection:
            with failpoints.scope("lock_take"):
                attempt = await lock_plans.take_locks(
                    connection, saga_id, keys, version, decide, utc_now(), self._event_sinks
                )
        written()
        return attempt

    async def _write_openings(
        self, openings: Sequence[LockedOpening]
    ) -> list[CreateSagaResult | Exception]:
        async with self._connection() as connection:
            with failpoints.scope("locked_opening"):
                return await lock_plans.write_openings(
                    connection, openings, utc_now(), self._event_sinks
                )

    async def end_lost_sessions(self, owner: str, grace_seconds: float) -> dict[str, int]:
        """As the base: lost owners are read from the lease rows, and their sessions,
        found by name (`session_name`) among this database's, are ended with
        `pg_terminate_backend`, waiting up to TERMINATE_WAIT_MS for each to go, so the
        claim that follows finds its rows unlocked. Needs the replicas' own role (or
        membership in pg_signal_backend); see docs/security.md."""
        lost = await self._rows(LOST_OWNERS, {"owner": owner, "grace": grace_seconds})
        if not lost:
            return {}
        names = {session_name(str(row["lease_owner"])): str(row["lease_owner"]) for row in lost}
        own = session_name(owner)
        names.pop(own, None)
        if not names:
            return {}
        ended = await self._rows(
            END_SESSIONS,
            {
                "names": list(names),
                "own": own,
                "wait_ms": TERMINATE_WAIT_MS,
            },
        )
        counts: dict[str, int] = {}
        for row in ended:
            lost_owner = names[str(row["application_name"])]
            counts[lost_owner] = counts.get(lost_owner, 0) + 1
        return counts

    async def follow_commits(
        self, committed: Callable[[str], None], live: Callable[[bool], None]
    ) -> None:
        """LISTEN on one connection of its own (outside the pool) and report every saga
        any replica commits in this schema; reconnect after losing it, reporting the gap."""
        while True:
            try:
                connection = await self._connections.connect()
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

    async def lock_releases(self) -> AsyncIterator[str]:
        """LISTEN on the release channel over one connection of its own (not pooled)."""
        connection = await self._connections.connect()
        try:
            await connection.execute(f"LISTEN {RELEASE_CHANNEL}")
            async for notification in connection.notifies():
                yield notification.payload
        finally:
            await connection.close()

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
            async with discarded_on_error(connection), connection.pipeline():
                for cursor, (query, params) in zip(cursors, statements, strict=True):
                    await cursor.execute(query, params)
            return [list(await cursor.fetchall()) for cursor in cursors]

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Transaction]:
        async with self._connection() as connection, connection.transaction():
            cursor = connection.cursor(row_factory=dict_row)
            # A lock transaction holds its keys' advisory locks: if its process freezes
            # mid-way, the server ends the transaction instead of blocking every taker.
            await cursor.execute(IDLE_LOCK_TRANSACTION)
            yield _Transaction(cursor)

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A pooled connection (see `Connections.connection`); every unit of work takes
        its connection here, so a benchmark may trace them all by wrapping this."""
        return self._connections.connection()


def _write_scope(commits: Sequence[SagaCommit]) -> str:
    """The kind of a group commit's write, as failpoints name it."""
    if any(commit.released_locks for commit in commits):
        return "key_release"
    return "group_commit" if commits else "new_sagas"


class _Transaction:
    """Statements of one `PostgresStore._transaction`, on its connection's cursor."""

    def __init__(self, cursor: psycopg.AsyncCursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    async def rows(self, query: str, params: Mapping[str, object]) -> list[Row]:
        await self._cursor.execute(query, params)
        return list(await self._cursor.fetchall()) if self._cursor.description else []
