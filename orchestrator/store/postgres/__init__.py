"""The PostgreSQL back end: psycopg 3 over an async connection pool.

- `connection`: the pool, the probe after an outage, migrations, the pipelined transaction;
- `sql`: the shared statements rendered for PostgreSQL, and its own, each written once;
- `writer`: the one writer; every write is a `WritePlan` it queues in one transaction;
- `lock_plans`: the reads before a lock take's or a batch of locked openings' plan;
- `store`: `PostgresStore`, the `Store` over all of them.
"""

from orchestrator.store.postgres.connection import (
    DEFAULT_POOL_MAX_SIZE,
    DEFAULT_POOL_MIN_SIZE,
    DEFAULT_POOL_TIMEOUT_SECONDS,
    PoolConfig,
)
from orchestrator.store.postgres.sql import DIALECT
from orchestrator.store.postgres.store import PostgresStore

__all__ = [
    "DEFAULT_POOL_MAX_SIZE",
    "DEFAULT_POOL_MIN_SIZE",
    "DEFAULT_POOL_TIMEOUT_SECONDS",
    "DIALECT",
    "PoolConfig",
    "PostgresStore",
]
