"""The PostgreSQL side of the harness: durability check, throwaway databases, commit counts.

Commit counts come from pg_stat_database.xact_commit of a database that only
the system under test uses. PostgreSQL updates those counters asynchronously:
a backend holds its counts locally and flushes them at most once a second,
or up to 10 s after it goes idle, or when it exits. pg_stat_force_next_flush()
only flushes the calling session. So the harness reads the counter only when
no backend of the database is alive (every one has exited and flushed), and
reads it twice to see it settled: the counts are exact, not sampled.

What counts: every committed transaction in the database, including the
one each new connection commits at start-up and the one psycopg commits
when it prepares a statement on a connection. A system pays those once per
connection; they are part of its cost, spread over all the sagas of the run.

The harness's own connection is to the maintenance database given in the URL,
never to a throwaway one, so its statements are not counted.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DURABILITY_SETTINGS = ("fsync", "synchronous_commit")
INFO_SETTINGS = ("server_version", "wal_sync_method", "full_page_writes", "shared_buffers")


class DurabilityOff(RuntimeError):
    """fsync or synchronous_commit is off: the numbers would not be about durable sagas."""


def database_url(server_url: str, database: str) -> str:
    """`server_url` pointing at another database (same host, user and options)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class Admin:
    """The harness's autocommit connection to the maintenance database."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.connection = psycopg.connect(server_url, autocommit=True)
        self.has_force_flush = bool(
            self.scalar("SELECT count(*) FROM pg_proc WHERE proname = 'pg_stat_force_next_flush'")
        )

    def close(self) -> None:
        self.connection.close()

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.connection.execute(query, params).fetchone()
        return None if row is None else row[0]

    def settings(self, names: tuple[str, ...]) -> dict[str, str]:
        return {name: str(self.scalar(f"SHOW {name}")) for name in names}

    def backend_pid(self) -> int:
        return int(self.scalar("SELECT pg_backend_pid()"))

    def create_database(self) -> str:
        name = f"saga_bench_{secrets.token_hex(6)}"
        self.connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        self.connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def backends(self, database: str) -> int:
        return int(
            self.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
        )

    def settled_commits(self, database: str, timeout: float = 15.0) -> int:
        """xact_commit of `database` once no backend of it is alive and the count is stable."""
        deadline = time.monotonic() + timeout
        while self.backends(database) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.backends(database):
            raise RuntimeError(f"backends of {database} still alive after {timeout}s")
        previous = -1
        while True:
            if self.has_force_flush:  # PostgreSQL 15+; flushes this session's own counts only
                self.connection.execute("SELECT pg_stat_force_next_flush()")
            self.connection.execute("SELECT pg_stat_clear_snapshot()")
            current = int(
                self.scalar(
                    "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = %s",
                    (database,),
                )
            )
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current
            time.sleep(0.05)


_USER_TABLES = """
SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
"""


def disable_autovacuum(url: str) -> int:
    """Turn autovacuum off for every table in the database; returns how many tables.

    An autovacuum or autoanalyze worker's transactions count in the database's
    xact_commit, and whether one visits a fresh database within a run of a few
    seconds is chance, so its commits and CPU would be noise in every figure.
    Runs are short enough that the dead rows left behind change nothing.
    """
    with psycopg.connect(url, autocommit=True) as connection:
        tables = [row[0] for row in connection.execute(_USER_TABLES).fetchall()]
        for table in tables:
            connection.execute(
                f"ALTER TABLE {table} SET (autovacuum_enabled = off, "
                "toast.autovacuum_enabled = off)"
            )
    return len(tables)


def autovacuum_runs(url: str) -> int:
    """Autovacuum and autoanalyze runs on the database's tables (expected 0)."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables"
        ).fetchone()
    return int(row[0]) if row else 0


def check_durability(url: str) -> dict[str, str]:
    """The durability settings as a session on `url` sees them; DurabilityOff unless all on."""
    with psycopg.connect(url, autocommit=True) as connection:
        values = {}
        for name in DURABILITY_SETTINGS:
            row = connection.execute(f"SHOW {name}").fetchone()
            values[name] = str(row[0]) if row else "?"
    off = {name: value for name, value in values.items() if value != "on"}
    if off:
        raise DurabilityOff(
            "refusing to report: full durability needs "
            + ", ".join(f"{name}=on (is {value})" for name, value in off.items())
        )
    return values
