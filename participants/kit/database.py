"""A participant's own database, SQLite or PostgreSQL (psycopg), behind one small interface.

Handlers write through a `Tx`; the kit's records (`kit_commands`, `kit_tombstones`) live in
the same database, so the business write and the record commit together.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
import psycopg_pool

T = TypeVar("T")


class Tx:
    """The transaction a handler writes through. SQL uses `%s` placeholders on both
    databases; `connection` is the driver's own (sqlite3 or psycopg) for anything else."""

    def __init__(self, connection: Any, placeholder: str) -> None:
        self.connection = connection
        self._placeholder = placeholder

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement with bound parameters; returns the driver's cursor."""
        return self.connection.execute(sql.replace("%s", self._placeholder), params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)


class Database(abc.ABC):
    """Where a participant keeps its state and the kit its records; see `open_database`."""

    binary = "BLOB"

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    @abc.abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction: several SELECTs see one consistent state."""

    @abc.abstractmethod
    def savepoint(self, tx: Tx) -> contextlib.AbstractContextManager[None]:
        """A nested unit inside `transaction`, undone alone when its block raises."""

    @abc.abstractmethod
    def close(self) -> None: ...

    async def call(self, work: Callable[[], T]) -> T:
        """Run blocking database work from the event loop: in a worker thread here."""
        return await asyncio.to_thread(work)

    def create(self, *statements: str) -> None:
        """Create the kit's tables and the caller's (`CREATE TABLE IF NOT EXISTS ...`)."""
        with self.transaction() as tx:
            for statement in (*_kit_schema(self.binary), *statements):
                tx.execute(statement)


class SqliteDatabase(Database):
    """One SQLite file in WAL mode, synchronous=FULL: committed means on disk. Rows are
    `sqlite3.Row` (by index or by column name); foreign keys are enforced."""

    def __init__(self, path: str) -> None:
        # Private to this user (SQLite gives the -wal and -shm files the file's mode).
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db, "?")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Tx]:
        with self._lock:
            self._db.execute("BEGIN DEFERRED")
            try:
                yield Tx(self._db, "?")
            finally:
                self._db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self, tx: Tx) -> Iterator[None]:
        tx.execute("SAVEPOINT handler")
        try:
            yield
        except BaseException:
            tx.execute("ROLLBACK TO handler")
            raise
        finally:
            tx.execute("RELEASE handler")

    async def call(self, work: Callable[[], T]) -> T:
        """On the loop itself: SQLite runs one transaction at a time anyway, and the hop
        to a thread cost more CPU than a whole command (a quarter more per command)."""
        return work()

    def close(self) -> None:
        self._db.close()


class PostgresDatabase(Database):
    """A psycopg_pool pool; each transaction takes a connection of its own."""

    binary = "BYTEA"

    def __init__(self, url: str, max_size: int = 4) -> None:
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=True
        )
        self._pool.wait()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._pool.connection() as connection, connection.transaction():
            yield Tx(connection, "%s")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Tx]:
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Tx(connection, "%s")

    @contextlib.contextmanager
    def savepoint(self, tx: Tx) -> Iterator[None]:
        with cast(psycopg.Connection[Any], tx.connection).transaction():
            yield

    def close(self) -> None:
        self._pool.close()


def open_database(url: str) -> Database:
    """`sqlite:///path/to/file` or `postgresql://...`."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise ValueError(f"not a sqlite:/// or postgresql:// URL: {url!r}")


def _kit_schema(binary: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS kit_commands (
            idempotency_key TEXT PRIMARY KEY,
            saga_id TEXT NOT NULL,
            method TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status_code INTEGER NOT NULL,
            outcome {binary} NOT NULL,
            create_time TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS kit_tombstones (
            action_key TEXT PRIMARY KEY,
            saga_id TEXT NOT NULL,
            compensation_key TEXT NOT NULL,
            create_time TEXT NOT NULL
        )""",
    )
