"""A participant's own durable state: one SQLite file per service.

WAL with synchronous=FULL means a transaction is on disk when COMMIT returns,
so a command acknowledged (or merely committed before a crash) is never lost.
The file is created, given its schema and seeded in one transaction, once;
later starts keep whatever is there.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class LocalState:
    """One open SQLite connection and the only way to run a transaction on it.

    The connection belongs to the event loop's thread. Operations are tiny, so
    servicers call it inline; with no `await` inside a transaction, commands of
    one service never interleave.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(
        cls,
        path: Path,
        schema: Sequence[str],
        seed: Callable[[sqlite3.Connection], None],
    ) -> LocalState:
        """Open (creating and seeding on first use) the state file at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        state = cls(path, connection)
        state._create_once(schema, seed)
        return state

    def _create_once(
        self, schema: Sequence[str], seed: Callable[[sqlite3.Connection], None]
    ) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version != 0:
                raise RuntimeError(
                    f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}"
                )
            for statement in schema:
                db.execute(statement)
            seed(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            logger.info("created state file %s", self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read-only transaction: several SELECTs see one consistent state."""
        self._db.execute("BEGIN DEFERRED")
        try:
            yield self._db
        finally:
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self, name: str = "command") -> Iterator[None]:
        """A nested unit inside `transaction`: undone alone when the block raises."""
        self._db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._db.execute(f"ROLLBACK TO {name}")
            self._db.execute(f"RELEASE {name}")
            raise
        self._db.execute(f"RELEASE {name}")

    def close(self) -> None:
        """Close the connection; committed data is already durable."""
        self._db.close()
