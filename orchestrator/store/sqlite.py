"""SQLite back end: one connection, owned by one worker thread, awaited from asyncio.

A sqlite3 connection must stay on one thread and SQLite admits one writer at a
time anyway, so every call runs on a single dedicated thread; calls queue in
order. Writes take the write lock up front (BEGIN IMMEDIATE) so a transaction
never fails half way on lock upgrade. WAL with synchronous=FULL makes a commit
durable when the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from orchestrator.core.errors import StoreUnavailable
from orchestrator.core.events import EventSink, outbox_events
from orchestrator.core.records import CreateSagaResult, Lease, NewSaga, SagaCommit, SagaRecord
from orchestrator.store._rows import Row, RowEncoding, aware, write_refused
from orchestrator.store._statements import Dialect, Statements
from orchestrator.store.locks import LockStatements
from orchestrator.store.migrations import APPLIED_VERSION, load_migrations, next_migration
from orchestrator.store.sql_store import SqlStore, checked_sinks
from orchestrator.store.tracked_events import (
    KeySpelling,
    TrackedStatements,
    duplicate_event,
    guard_params,
    held_meanwhile,
    ingested_row_writes,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5000
_WAL_RETRY_SECONDS = 0.01

# Primary result codes meaning the database cannot be used right now (locked,
# unreadable, disk full), as opposed to a bug in a statement.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def _time_to_text(moment: datetime) -> str:
    return aware(moment).astimezone(UTC).isoformat(timespec="microseconds")


def _lease_expiry(lease: Lease) -> str:
    return _time_to_text(datetime.now(UTC) + timedelta(seconds=lease.seconds))


def _payload_to_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


_ENCODING = RowEncoding(
    time_to_db=_time_to_text,
    time_from_db=datetime.fromisoformat,
    payload_to_db=_payload_to_text,
    payload_from_db=json.loads,
)

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      INTEGER PRIMARY KEY NOT NULL,
    name         TEXT    NOT NULL,
    applied_time TEXT    NOT NULL
)
"""
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_time) VALUES (?, ?, ?)"


def _lease_params(lease: Lease | None) -> dict[str, object]:
    """The owner, and an expiry and a now by this process's clock (SQLite has one writer)."""
    return {
        "owner": None if lease is None else lease.owner,
        "expires": None if lease is None else _lease_expiry(lease),
        "now": _time_to_text(datetime.now(UTC)),
    }


DIALECT = Dialect(
    param=lambda name: f":{name}",
    now=":now",
    lease_expiry=":expires",
    lease_params=_lease_params,
    in_ids="IN (SELECT value FROM json_each(:saga_ids))",
    id_list=json.dumps,
    in_list=lambda name: f"IN (SELECT value FROM json_each(:{name}))",
    time_to_db=_time_to_text,
    number_series=lambda name: (
        "WITH RECURSIVE series(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM series"
        f" WHERE value + 1 < :{name}) SELECT value FROM series"
    ),
    contains=lambda column, param: f"instr({column}, {param}) > 0",
)
"""How SQLite spells the shared SQL: leases by this process's clock, ids as a JSON array."""
_STATEMENTS = Statements.render(DIALECT)
# One writer at a time already serializes takers of a key: no guard statement. A new
# ticket is one more than the highest still queued, which keeps the queues' order.
_LOCKS = LockStatements.render(
    DIALECT,
    guard_keys="",
    next_ticket="(SELECT coalesce(max(ticket), 0) + 1 FROM saga_lock_queue)",
)


_TRACKED = TrackedStatements.render(
    DIALECT,
    KeySpelling(
        condition=(
            "(source, event_id) IN (SELECT json_extract(value, '$[0]'),"
            " json_extract(value, '$[1]') FROM json_each(:keys))"
        ),
        params=lambda keys: {"keys": json.dumps([list(key) for key in keys])},
    ),
)


class SqliteStore(SqlStore):
    """A `Store` in one SQLite file (or in memory, for tests).

    `path` is a file path; its parent directory is created if missing. ":memory:"
    gives a private database that disappears on `close()`. `event_sinks`: every write
    adds the outbox rows of the transitions they select.
    """

    _statements = _STATEMENTS
    _encoding = _ENCODING
    _locks = _LOCKS
    _tracked = _TRACKED

    def __init__(self, path: str, *, event_sinks: Sequence[EventSink] = ()) -> None:
        self._path = path
        self._event_sinks = checked_sinks(event_sinks)
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        # Held by every call, and by a multi-statement transaction (`_transaction`) for
        # its whole length, so no other call's statement runs inside it.
        self._turn = asyncio.Lock()

    async def open(self) -> None:
        """Open the file in WAL mode and migrate it; raises StoreUnavailable if it cannot."""
        if self._executor is not None:
            raise RuntimeError("SqliteStore is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
            await self._run(_migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)

    async def schema_version(self) -> int:
        return await self._run(_applied_version)

    async def write(
        self, new_sagas: Sequence[NewSaga], commits: Sequence[SagaCommit]
    ) -> list[CreateSagaResult]:
        statements, encoding, sinks = self._statements, self._encoding, self._event_sinks

        def events(saga: SagaRecord, changes: SagaCommit | NewSaga) -> list[dict[str, object]]:
            rows = outbox_events(sinks, saga, changes.transitions, changes.steps)
            return [encoding.event_params(event) for event in rows]

        inserts = [
            (
                new,
                {**encoding.saga_params(new.saga), **_lease_params(new.lease)},
                [encoding.step_params(step) for step in new.steps],
                [encoding.transition_params(t) for t in new.transitions],
                events(new.saga, new),
                ingested_row_writes(_TRACKED, encoding, [new.ingested]),
            )
            for new in new_sagas
        ]
        updates = [
            (
                encoding.commit_params(commit),
                [encoding.step_params(step) for step in commit.steps],
                [encoding.transition_params(t) for t in commit.transitions],
                bool(commit.released_locks),
                events(commit.saga, commit),
                ingested_row_writes(_TRACKED, encoding, [commit.ingested]),
            )
            for commit in commits
        ]

        def apply(connection: sqlite3.Connection) -> list[CreateSagaResult]:
            results: list[CreateSagaResult] = []
            with _write_transaction(connection):
                for new, saga_params, step_params, transition_params, event_params, rows in inserts:
                    if not connection.execute(statements.insert_saga, saga_params).fetchall():
                        row = connection.execute(
                            statements.select_saga_by_key,
                            {"idempotency_key": new.saga.idempotency_key},
                        ).fetchone()
                        results.append(CreateSagaResult(encoding.saga_from_row(row), created=False))
                        continue
                    connection.executemany(statements.upsert_step, step_params)
                    connection.executemany(statements.insert_transition, transition_params)
                    if event_params:  # no sinks, no statement
                        connection.executemany(statements.insert_outbox_event, event_params)
                    for guard in new.ingested.guards:
                        held = connection.execute(
                            _TRACKED.held_keys_of_instance, guard_params(guard)
                        ).fetchall()
                        refused = held_meanwhile(guard, held)
                        if refused is not None:
                            raise refused
                    _write_ingested(connection, rows)
                    results.append(CreateSagaResult(new.saga, created=True))
                for (
                    saga_params,
                    step_params,
                    transition_params,
                    releases,
                    event_params,
                    rows,
                ) in updates:
                    if connection.execute(statements.update_saga, saga_params).rowcount == 0:
                        row = connection.execute(statements.select_version, saga_params).fetchone()
                        stored = {} if row is None else {saga_params["saga_id"]: row[0]}
                        raise write_refused([saga_params], stored)
                    connection.executemany(statements.upsert_step, step_params)
                    try:
                        connection.executemany(statements.insert_transition, transition_params)
                    except sqlite3.IntegrityError as error:
                        detail = f"saga {saga_params['saga_id']}"
                        raise write_refused([], {}, duplicate=detail) from error
                    if event_params:
                        connection.executemany(statements.insert_outbox_event, event_params)
                    if releases:
                        for statement in _LOCKS.release:
                            connection.execute(statement, {"saga_id": saga_params["saga_id"]})
                    _write_ingested(connection, rows)
            return results

        return await self._run(apply)

    async def _rows(
        self, query: str, params: Mapping[str, object], *, write: bool = False
    ) -> list[Row]:
        def run(connection: sqlite3.Connection) -> list[Row]:
            if not write:
                return connection.execute(query, params).fetchall()
            with _write_transaction(connection):
                return connection.execute(query, params).fetchall()

        return await self._run(run)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the store's thread; calls queue and run one at a time."""
        async with self._turn:
            return await self._run_in_turn(work)

    async def _run_in_turn(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise RuntimeError("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Transaction]:
        async with self._turn:
            await self._run_in_turn(lambda connection: connection.execute("BEGIN IMMEDIATE"))
            try:
                yield _Transaction(self)
            except BaseException:
                await asyncio.shield(self._run_in_turn(_rollback))
                raise
            await self._run_in_turn(lambda connection: connection.execute("COMMIT"))

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with _unavailable_when_unusable(self._path):
            return work(self._connection_or_raise())

    def _connection_or_raise(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("SqliteStore is not connected")
        return self._connection

    def _connect(self) -> None:
        """Runs on the store's thread, which then owns the connection."""
        if self._path != MEMORY:
            parent = os.path.dirname(os.path.abspath(self._path))
            try:
                # Private to this user: the file holds every saga's payload. SQLite
                # gives the -wal and -shm files the database file's own mode.
                os.makedirs(parent, mode=0o700, exist_ok=True)
                os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as error:
                raise StoreUnavailable(
                    f"cannot create the SQLite database {self._path}: {error}"
                ) from error
        with _unavailable_when_unusable(self._path):
            connection = sqlite3.connect(self._path, isolation_level=None)
            self._connection = connection
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            _enable_wal(connection)
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class _Transaction:
    """Statements of one `SqliteStore._transaction`, run on the store's thread in turn."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def rows(self, query: str, params: Mapping[str, object]) -> list[Row]:
        return await self._store._run_in_turn(
            lambda connection: connection.execute(query, params).fetchall()
        )


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL. The switch answers "locked" at once, without the busy
    handler, while another connection holds a lock it needs (the first opens of a new
    file side by side, one of them migrating): retried until the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            busy = getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(_WAL_RETRY_SECONDS)


def _write_ingested(
    connection: sqlite3.Connection, writes: Sequence[tuple[str, Sequence[Mapping[str, object]]]]
) -> None:
    """A write's tracked-event rows (`ingested_row_writes`); a key already ingested
    refuses the whole write (rolled back by the caller's transaction)."""
    for query, params in writes:
        try:
            connection.executemany(query, params)
        except sqlite3.IntegrityError as error:
            raise duplicate_event(str(error)) from error


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


@contextlib.contextmanager
def _unavailable_when_unusable(path: str) -> Iterator[None]:
    """Turn "cannot use the file right now" (locked, unreadable, full) into StoreUnavailable."""
    try:
        yield
    except sqlite3.Error as error:
        # Errors raised by the sqlite3 module itself carry no result code.
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
            raise StoreUnavailable(f"SQLite database {path} is unavailable: {error}") from error
        raise


@contextlib.contextmanager
def _write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction holding the write lock from its first statement."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _applied_version(connection: sqlite3.Connection) -> int:
    version: int = connection.execute(APPLIED_VERSION).fetchone()[0]
    return version


def _migrate(connection: sqlite3.Connection) -> None:
    """Apply pending migrations, each with its version row in one transaction.

    The version is re-read after taking the write lock, so a second process
    opening the same file at the same moment applies nothing twice.
    """
    migrations = load_migrations("sqlite")
    while True:
        with _write_transaction(connection):
            connection.execute(_CREATE_MIGRATIONS_TABLE)
            migration = next_migration(migrations, _applied_version(connection))
            if migration is None:
                return
            logger.info("applying SQLite migration %s", migration.name)
            for statement in _statements(migration.sql):
                connection.execute(statement)
            connection.execute(
                _RECORD_MIGRATION,
                (migration.version, migration.name, _time_to_text(datetime.now(UTC))),
            )


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements; `executescript` would commit our transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip() and not _only_comments(statement):
        raise ValueError(f"unterminated SQL statement in migration: {statement.strip()[:80]}")


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())
