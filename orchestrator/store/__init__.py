"""Saga persistence: one `Store` interface, a PostgreSQL and a SQLite back end.

`open_store(url)` picks the back end from the URL; the caller awaits `open()`,
which connects and migrates the schema, and `close()` at shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.events import EventSink
from orchestrator.store.base import Store
from orchestrator.store.postgres import PoolConfig, PostgresStore
from orchestrator.store.sqlite import MEMORY, SqliteStore

__all__ = ["PoolConfig", "PostgresStore", "SqliteStore", "Store", "open_store"]

_SQLITE_PREFIX = "sqlite://"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def open_store(
    url: str,
    pool: PoolConfig | None = None,
    *,
    replica_id: str | None = None,
    event_sinks: Sequence[EventSink] = (),
) -> Store:
    """An unopened store for `url`; raises `ConfigurationError` for a URL it cannot use.
    `pool` sizes PostgreSQL's connection pool (SQLite has one connection); `replica_id`
    names PostgreSQL sessions after the lease owner using them; every write adds the
    outbox rows of the transitions the `event_sinks` select (none by default: no rows,
    no statement).

    - `postgresql://...` or `postgres://...`: PostgreSQL (a libpq URL).
    - `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`: a SQLite file.
    - `sqlite://:memory:` (or `sqlite:///:memory:`): a private in-memory SQLite database.
    """
    if url.startswith(_POSTGRES_PREFIXES):
        pool = pool or PoolConfig()
        return PostgresStore(
            url,
            min_size=pool.min_size,
            max_size=pool.max_size,
            timeout=pool.timeout,
            replica_id=replica_id,
            event_sinks=event_sinks,
        )
    if url.startswith(_SQLITE_PREFIX):
        return SqliteStore(_sqlite_path(url), event_sinks=event_sinks)
    # Only the scheme is echoed: the rest of a URL may hold a password.
    scheme, separator, _ = url.partition("://")
    shown = f"scheme {scheme + separator!r}" if separator else "a URL without a scheme"
    raise ConfigurationError(
        f"unsupported store URL, {shown}: expected postgresql://..., "
        "sqlite:///relative/path, sqlite:////absolute/path or sqlite://:memory:"
    )


def _sqlite_path(url: str) -> str:
    rest = url.removeprefix(_SQLITE_PREFIX)
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    if not rest.startswith("/"):
        raise ConfigurationError(
            "a SQLite store URL has no host: write sqlite:///relative/path or "
            "sqlite:////absolute/path"
        )
    path = rest.removeprefix("/")
    if not path or path.endswith("/"):
        raise ConfigurationError("a SQLite store URL must name a file, e.g. sqlite:///sagas.db")
    return path
