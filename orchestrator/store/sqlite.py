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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from orchestrator.errors import StoreUnavailable
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

T = TypeVar("T")

MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5000

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
_APPLIED_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_time) VALUES (?, ?, ?)"

_INSERT_SAGA = f"""
INSERT INTO sagas ({SAGA_COLUMNS}, lease_owner, lease_expires_at)
VALUES (:saga_id, :saga_type, :definition_version, :correlation_id, :idempotency_key,
        :request_fingerprint, :payload, :status, :failure_reason, :failed_step,
        :needs_intervention, :create_time, :update_time, :version, :deadline_time,
        :lease_owner, :lease_expires_at)
ON CONFLICT (idempotency_key) DO NOTHING
"""
_UPDATE_SAGA = """
UPDATE sagas
SET status = :status, failure_reason = :failure_reason, failed_step = :failed_step,
    needs_intervention = :needs_intervention, update_time = :update_time, version = :version,
    -- A finished saga needs no driver; an operator's retry makes it claimable at once.
    lease_owner = CASE WHEN :status IN ('COMPLETED', 'FAILED') THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN :status IN ('COMPLETED', 'FAILED') THEN NULL
                            ELSE lease_expires_at END
WHERE saga_id = :saga_id AND version = :expected_version
"""
_UPSERT_STEP = f"""
INSERT INTO saga_steps ({STEP_COLUMNS})
VALUES (:saga_id, :step_index, :name, :status, :attempts, :compensation_attempts, :error,
        :result, :start_time, :update_time, :next_attempt_time)
ON CONFLICT (saga_id, name) DO UPDATE
SET step_index = excluded.step_index, status = excluded.status,
    attempts = excluded.attempts, compensation_attempts = excluded.compensation_attempts,
    error = excluded.error, result = excluded.result, start_time = excluded.start_time,
    update_time = excluded.update_time, next_attempt_time = excluded.next_attempt_time
"""
_INSERT_TRANSITION = f"""
INSERT INTO saga_transitions ({TRANSITION_COLUMNS})
VALUES (:saga_id, :seq, :event, :time, :saga_status, :step, :step_status, :attempt,
        :error, :actor, :reason)
"""
_CLAIM_SAGAS = f"""
UPDATE sagas SET lease_owner = :owner, lease_expires_at = :expires, version = version + 1
WHERE saga_id IN (
    SELECT saga_id FROM sagas
    WHERE status IN {UNFINISHED_STATUSES}
      AND (lease_expires_at IS NULL OR lease_expires_at < :now)
    ORDER BY create_time, saga_id
    LIMIT :limit
)
RETURNING {SAGA_COLUMNS}
"""
_CLAIM_SAGA = f"""
UPDATE sagas SET lease_owner = :owner, lease_expires_at = :expires, version = version + 1
WHERE saga_id = :saga_id AND status IN {UNFINISHED_STATUSES}
  AND (lease_expires_at IS NULL OR lease_expires_at < :now OR lease_owner = :owner)
RETURNING {SAGA_COLUMNS}
"""
_RENEW_LEASE = """
UPDATE sagas SET lease_expires_at = :expires WHERE lease_owner = :owner AND saga_id = :saga_id
"""
_RELEASE_LEASE = """
UPDATE sagas SET lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = :owner AND saga_id = :saga_id
"""
_SELECT_SAGA = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = ?"
_SELECT_SAGA_BY_KEY = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key = ?"
_SELECT_VERSION = "SELECT version FROM sagas WHERE saga_id = ?"
_SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM saga_steps WHERE saga_id = ? ORDER BY step_index"
_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM saga_transitions WHERE saga_id = ?"
_SELECT_TRANSITIONS = f"""
SELECT {TRANSITION_COLUMNS} FROM saga_transitions
WHERE saga_id = ? AND seq > ? ORDER BY seq
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
LIMIT ?
"""


class SqliteStore(Store):
    """A `Store` in one SQLite file (or in memory, for tests).

    `path` is a file path; its parent directory is created if missing. ":memory:"
    gives a private database that disappears on `close()`.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

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
        inserts = [
            (
                new,
                {
                    **_ENCODING.saga_params(new.saga),
                    "lease_owner": None if new.lease is None else new.lease.owner,
                    "lease_expires_at": None if new.lease is None else _lease_expiry(new.lease),
                },
                [_ENCODING.step_params(step) for step in new.steps],
                [_ENCODING.transition_params(t) for t in new.transitions],
            )
            for new in new_sagas
        ]
        updates = [
            (
                _ENCODING.commit_params(commit),
                [_ENCODING.step_params(step) for step in commit.steps],
                [_ENCODING.transition_params(t) for t in commit.transitions],
            )
            for commit in commits
        ]

        def apply(connection: sqlite3.Connection) -> list[CreateSagaResult]:
            results: list[CreateSagaResult] = []
            with _write_transaction(connection):
                for new, saga_params, step_params, transition_params in inserts:
                    if connection.execute(_INSERT_SAGA, saga_params).rowcount == 0:
                        row = connection.execute(
                            _SELECT_SAGA_BY_KEY, (new.saga.idempotency_key,)
                        ).fetchone()
                        results.append(
                            CreateSagaResult(_ENCODING.saga_from_row(row), created=False)
                        )
                        continue
                    connection.executemany(_UPSERT_STEP, step_params)
                    connection.executemany(_INSERT_TRANSITION, transition_params)
                    results.append(CreateSagaResult(new.saga, created=True))
                for saga_params, step_params, transition_params in updates:
                    if connection.execute(_UPDATE_SAGA, saga_params).rowcount == 0:
                        row = connection.execute(
                            _SELECT_VERSION, (saga_params["saga_id"],)
                        ).fetchone()
                        raise stale_version(
                            saga_params["saga_id"],
                            saga_params["expected_version"],
                            None if row is None else row[0],
                        )
                    connection.executemany(_UPSERT_STEP, step_params)
                    try:
                        connection.executemany(_INSERT_TRANSITION, transition_params)
                    except sqlite3.IntegrityError as error:
                        raise duplicate_transition(f"saga {saga_params['saga_id']}") from error
            return results

        return await self._run(apply)

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        def read(connection: sqlite3.Connection) -> SagaRecord | None:
            row = connection.execute(_SELECT_SAGA, (saga_id,)).fetchone()
            return None if row is None else _ENCODING.saga_from_row(row)

        return await self._run(read)

    async def get_steps(self, saga_id: str) -> list[StepRecord]:
        def read(connection: sqlite3.Connection) -> list[StepRecord]:
            rows = connection.execute(_SELECT_STEPS, (saga_id,)).fetchall()
            return [_ENCODING.step_from_row(row) for row in rows]

        return await self._run(read)

    async def last_seq(self, saga_id: str) -> int:
        def read(connection: sqlite3.Connection) -> int:
            return int(connection.execute(_LAST_SEQ, (saga_id,)).fetchone()[0])

        return await self._run(read)

    async def get_transitions(self, saga_id: str, after_seq: int = 0) -> list[TransitionRecord]:
        def read(connection: sqlite3.Connection) -> list[TransitionRecord]:
            rows = connection.execute(_SELECT_TRANSITIONS, (saga_id, after_seq)).fetchall()
            return [_ENCODING.transition_from_row(row) for row in rows]

        return await self._run(read)

    async def list_unfinished(self, limit: int = 1000) -> list[SagaRecord]:
        def read(connection: sqlite3.Connection) -> list[SagaRecord]:
            rows = connection.execute(_SELECT_UNFINISHED, (limit,)).fetchall()
            return [_ENCODING.saga_from_row(row) for row in rows]

        return await self._run(read)

    async def list_sagas(
        self, where: SagaFilter, limit: int, after: PagePosition | None = None
    ) -> list[SagaRecord]:
        clause, params = list_query(where, after, lambda name: f":{name}", _time_to_text)
        query = (
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE {clause}"
            " ORDER BY create_time DESC, saga_id DESC LIMIT :limit"
        )

        def read(connection: sqlite3.Connection) -> list[SagaRecord]:
            rows = connection.execute(query, {**params, "limit": limit}).fetchall()
            return [_ENCODING.saga_from_row(row) for row in rows]

        return await self._run(read)

    async def claim_sagas(self, lease: Lease, limit: int) -> list[SagaRecord]:
        def claim(connection: sqlite3.Connection) -> list[SagaRecord]:
            params = {
                "owner": lease.owner,
                "expires": _lease_expiry(lease),
                "now": _time_to_text(datetime.now(UTC)),
                "limit": limit,
            }
            with _write_transaction(connection):
                rows = connection.execute(_CLAIM_SAGAS, params).fetchall()
            sagas = [_ENCODING.saga_from_row(row) for row in rows]
            return sorted(sagas, key=lambda s: (s.create_time, s.saga_id))

        return await self._run(claim)

    async def claim_saga(self, lease: Lease, saga_id: str) -> SagaRecord | None:
        def claim(connection: sqlite3.Connection) -> SagaRecord | None:
            params = {
                "owner": lease.owner,
                "expires": _lease_expiry(lease),
                "now": _time_to_text(datetime.now(UTC)),
                "saga_id": saga_id,
            }
            with _write_transaction(connection):
                row = connection.execute(_CLAIM_SAGA, params).fetchone()
            return None if row is None else _ENCODING.saga_from_row(row)

        return await self._run(claim)

    async def renew_leases(self, lease: Lease, saga_ids: Sequence[str]) -> set[str]:
        def renew(connection: sqlite3.Connection) -> set[str]:
            expires = _lease_expiry(lease)
            held: set[str] = set()
            with _write_transaction(connection):
                for saga_id in saga_ids:
                    params = {"owner": lease.owner, "expires": expires, "saga_id": saga_id}
                    if connection.execute(_RENEW_LEASE, params).rowcount:
                        held.add(saga_id)
            return held

        return await self._run(renew) if saga_ids else set()

    async def release_leases(self, owner: str, saga_ids: Sequence[str]) -> None:
        def release(connection: sqlite3.Connection) -> None:
            with _write_transaction(connection):
                connection.executemany(
                    _RELEASE_LEASE, [{"owner": owner, "saga_id": s} for s in saga_ids]
                )

        if saga_ids:
            await self._run(release)

    async def unfinished_definitions(self) -> dict[tuple[str, int], int]:
        def read(connection: sqlite3.Connection) -> dict[tuple[str, int], int]:
            rows = connection.execute(_COUNT_UNFINISHED_BY_DEFINITION).fetchall()
            return {(row[0], int(row[1])): int(row[2]) for row in rows}

        return await self._run(read)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the store's thread; calls queue and run one at a time."""
        if self._executor is None:
            raise RuntimeError("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

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
                os.makedirs(parent, exist_ok=True)
            except OSError as error:
                raise StoreUnavailable(
                    f"cannot create directory {parent} for SQLite database: {error}"
                ) from error
        with _unavailable_when_unusable(self._path):
            connection = sqlite3.connect(self._path, isolation_level=None)
            self._connection = connection
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


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
    version: int = connection.execute(_APPLIED_VERSION).fetchone()[0]
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
