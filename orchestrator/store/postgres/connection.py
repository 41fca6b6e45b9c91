"""PostgreSQL connections: the pool, the probe after an outage, and migrations.

Every unit of work takes a pooled connection (psycopg_pool, autocommit) through
`Connections.connection()`, which turns a lost server or a long wait into
`StoreUnavailable`. Once a unit of work finds the server gone, later calls do not queue
on the pool: they probe the server with one direct connection (at most every
PROBE_INTERVAL_SECONDS) and fail at once while it refuses; the first probe that connects
drains the pool (`drain()`), so the store serves again within a probe interval of the
server's return. `pipelined_transaction` is the transaction every write runs in.

A connection on which a pipeline failed is closed (`discarded_on_error`), and the pool
replaces it. When a statement of a pipeline fails, the server skips the rest up to the
next Sync, the parsing of a statement psycopg prepares there included, while psycopg
(3.3) already counts that statement as prepared on the connection: every later use of it
there would fail with InvalidSqlStatementName ("prepared statement "_pg3_6" does not
exist"). A stale commit fails its pipeline on purpose (see `writer.py`), so this is not
rare. Closing costs a new connection after a failed write, and holds whatever else a
failed pipeline may leave behind; forgetting the prepared statements instead would need
psycopg's private cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrator.core.errors import ConfigurationError, StoreUnavailable
from orchestrator.store._rows import fails_alone
from orchestrator.store.migrations import APPLIED_VERSION, load_migrations, next_migration

logger = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

PROBE_INTERVAL_SECONDS = 0.5
"""While the server is lost, it is probed at most this often; calls in between fail at once."""
PROBE_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's connect_timeout for a probe (libpq treats anything below 2 as 2)."""

SESSION_NAME_PREFIX = "saga-orchestrator/"
"""Every session of a replica is named `SESSION_NAME_PREFIX` + its replica id (its lease
owner), so `pg_stat_activity` tells whose it is and a replica's sessions can be ended
when its leases show it lost (see `session_name`)."""
UNNAMED_SESSION = "saga-orchestrator"
"""The sessions of a store opened without a replica id (tools, tests), unless its URL
names them: never ended, as no replica id maps to it."""
_APPLICATION_NAME_BYTES = 63  # NAMEDATALEN - 1: the server cuts longer names short

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


def session_name(replica_id: str) -> str:
    """The application_name of a replica's sessions, as the server stores it.

    The prefix and the replica id when they fit in 63 printable ASCII characters (what
    the server keeps); otherwise the prefix, the id's start and a digest of the whole
    id, so two replica ids never share a name and every replica computes the same."""
    name = SESSION_NAME_PREFIX + replica_id
    if len(name) <= _APPLICATION_NAME_BYTES and all(" " <= c <= "~" for c in name):
        return name
    digest = "~" + hashlib.sha256(replica_id.encode()).hexdigest()[:16]
    printable = "".join(c if " " <= c <= "~" else "?" for c in replica_id)
    room = _APPLICATION_NAME_BYTES - len(SESSION_NAME_PREFIX) - len(digest)
    return SESSION_NAME_PREFIX + printable[:room] + digest


# Unquoted, so it means the same in search_path (which folds case) and in CREATE SCHEMA.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

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
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"


class Connections:
    """The pool of one `PostgresStore`, and what it knows of the server's health.

    `url` is a libpq URL; `schema`, if given, is created when missing and searched
    first; `timeout` bounds the wait for a connection, at `open()` and for every unit
    of work; every session is named `application_name` (see `session_name`) when given,
    else as the URL names it, else UNNAMED_SESSION.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int,
        max_size: int,
        schema: str | None,
        timeout: float,
        application_name: str | None = None,
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
        self._kwargs = _connection_kwargs(url, schema, timeout, application_name)
        self._pool: AsyncConnectionPool[Connection] | None = None
        # Outage state: when the server was found lost (None while it is fine),
        # when it last came back, when it was last probed and what the probe said.
        self._lost_since: float | None = None
        self._recovered_at = 0.0
        self._probed_at = 0.0
        self._probe_error = ""
        self._recovery = asyncio.Lock()

    async def open(self) -> None:
        """Fill the pool and migrate; raises StoreUnavailable if the server cannot be reached."""
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        pool = AsyncConnectionPool(
            self._url,
            kwargs=self._kwargs,
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

    def stats(self) -> dict[str, int]:
        """The pool's counts, and `server_lost` (1 while the server is found gone)."""
        # get_stats() only copies counts, so the metrics scrape thread may call it.
        if self._pool is None:
            return {}
        return {**self._pool.get_stats(), "server_lost": int(self._lost_since is not None)}

    async def connect(self) -> Connection:
        """A connection of its own, outside the pool (a listener's)."""
        return await psycopg.AsyncConnection.connect(self._url, **self._kwargs)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; losing the server or waiting too long is StoreUnavailable."""
        pool = await self._reachable_pool()
        asked_at = time.monotonic()
        refused = False
        try:
            async with pool.connection() as connection:
                try:
                    yield connection
                except psycopg.OperationalError as error:
                    if connection.broken:
                        self._server_lost(asked_at)
                    else:  # the server refused what was sent (a key too long for its index)?
                        refused = fails_alone(error)
                    raise
        except PoolTimeout as error:
            self._server_lost(asked_at)
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error
        except psycopg.OperationalError as error:
            if refused:
                raise
            raise StoreUnavailable(f"PostgreSQL is unavailable: {error}") from error

    def _server_lost(self, asked_at: float) -> None:
        """Note that the server went away, unless the failing call began before the server
        last came back (a late failure of a drained connection is old news)."""
        if asked_at >= self._recovered_at and self._lost_since is None:
            self._lost_since = time.monotonic()
            self._probed_at = 0.0
            logger.warning("PostgreSQL connection lost; probing before using the pool again")

    async def _reachable_pool(self) -> AsyncConnectionPool[Connection]:
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
                    **{**self._kwargs, "connect_timeout": PROBE_CONNECT_TIMEOUT_SECONDS},
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

    async def schema_version(self) -> int:
        async with self.connection() as connection:
            return await _applied_version(connection)

    async def _migrate(self) -> None:
        """Apply pending migrations, each with its version row in one transaction.

        An advisory lock held to the end of each transaction serializes processes
        starting at once on one schema; the version is re-read under it.
        """
        migrations = load_migrations("postgres")
        while True:
            async with self.connection() as connection, connection.transaction():
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
async def pipelined_transaction(
    connection: Connection, *, explicit: bool = True
) -> AsyncIterator[psycopg.AsyncPipeline]:
    """One transaction in one pipeline: BEGIN is queued with the statements after it,
    and COMMIT goes out with the pipeline's closing sync, so neither costs a round trip
    of its own (psycopg's `transaction()` waits for its BEGIN). If the block raises,
    nothing is committed: the transaction is rolled back. The caller discards the
    connection after an error (`discarded_on_error`, see the module).

    Not `explicit`: no BEGIN and no COMMIT, two statements fewer to send. The statements
    before a Sync run as one implicit transaction, which the Sync commits if all of
    them succeeded and rolls back if one failed (the protocol's pipelining rule); so
    the block must not sync before its end. If it raises for a reason of its own (a
    value the driver cannot send, a cancellation) rather than for the server's error,
    which has failed the transaction already, the connection is closed before the
    pipeline's closing Sync could commit the statements queued before the error: the
    server rolls them back."""
    try:
        async with connection.pipeline() as pipeline:
            if explicit:
                await connection.execute("BEGIN", prepare=False)
            try:
                yield pipeline
            except BaseException as error:
                if not explicit and not connection.broken and not _failed_at_server(error):
                    await connection.close()
                raise
            if explicit:
                await connection.execute("COMMIT", prepare=False)
    except BaseException:
        if not connection.closed and (
            connection.info.transaction_status is not psycopg.pq.TransactionStatus.IDLE
        ):
            # If this fails too, the pool rolls back or discards the connection when it
            # is returned; the error that matters is the one being raised.
            with contextlib.suppress(Exception):
                await connection.execute("ROLLBACK", prepare=False)
        raise


def _failed_at_server(error: BaseException) -> bool:
    """Whether `error` is the server's answer to a statement (which fails the transaction)."""
    return isinstance(error, psycopg.Error) and (
        error.sqlstate is not None or isinstance(error, psycopg.errors.PipelineAborted)
    )


@contextlib.asynccontextmanager
async def discarded_on_error(connection: Connection) -> AsyncIterator[None]:
    """Close `connection` if the block raises, so its pool replaces it: after an error in
    a pipeline, psycopg's prepared statements may not be the server's (see the module)."""
    try:
        yield
    except BaseException:
        if not connection.broken:  # a broken one the pool discards, and the server is lost
            await connection.close()
        raise


async def _applied_version(connection: Connection) -> int:
    cursor = await connection.execute(APPLIED_VERSION)
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


def _connection_kwargs(
    url: str, schema: str | None, timeout: float, application_name: str | None
) -> dict[str, Any]:
    """Connection settings added to the URL's: autocommit, a connect timeout, the schema,
    the session's name (a replica's replaces the URL's own: a replica is known by its
    name), and a bound on a transaction left open by a client that stopped.

    Every unit of work here is a few statements in a row; a transaction idle for
    `timeout` belongs to a frozen or wedged process (SIGSTOP, a paused VM). Its row
    locks would keep other replicas from taking over its sagas (claims skip locked
    rows), so the server ends that session instead, and the frozen replica, if it
    wakes, finds its connection gone and its sagas fenced. A client stopped in the middle
    of a pipeline is not idle to the server (it waits for the rest of the pipeline, its
    session "active"), so no timeout of PostgreSQL 15 or 16 ends it: another replica does,
    by name, once the stopped replica's leases have all expired (`Store.end_lost_sessions`).
    """
    try:
        in_url = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ConfigurationError(f"invalid PostgreSQL URL: {error}") from error
    kwargs: dict[str, Any] = {"autocommit": True}
    if application_name is not None or "application_name" not in in_url:
        kwargs["application_name"] = application_name or UNNAMED_SESSION
    if "connect_timeout" not in in_url:
        kwargs["connect_timeout"] = max(2, math.ceil(timeout))
    options = [str(in_url.get("options") or "")]
    if "idle_in_transaction_session_timeout" not in options[0]:
        options.append(f"-cidle_in_transaction_session_timeout={math.ceil(timeout * 1000)}")
    if schema is not None:
        options.append(f"-csearch_path={schema}")
    kwargs["options"] = " ".join(part for part in options if part)
    return kwargs
