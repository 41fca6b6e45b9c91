"""The one latency definition of `make bench`: start to terminal commit, as each system recorded it.

After a run, before its database is dropped, the harness reads every measured
saga's two timestamps from the system's own table:

    ours      sagas.create_time -> sagas.update_time of the terminal status
    ceilings  ceiling_sagas.create_time -> update_time of the terminal status
    dbos      dbos.workflow_status.created_at -> updated_at (epoch ms)

Each pair is written by the system in the transaction that commits the saga's
first and its terminal state, so the latency covers the same span everywhere:
from the saga's durable start to its durable end, server side, with no client
round trip and no polling delay in it. Only the measured sagas count (the
driver reports their ids); the reads come after the commit counter was read.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

_QUERIES = {
    "ours": "SELECT extract(epoch FROM update_time - create_time) * 1000.0 FROM sagas "
    "WHERE saga_id::text = ANY(%s)",
    "ceiling": "SELECT extract(epoch FROM update_time - create_time) * 1000.0 "
    "FROM ceiling_sagas WHERE saga_id = ANY(%s)",
    "dbos": "SELECT (updated_at - created_at)::float8 FROM dbos.workflow_status "
    "WHERE workflow_uuid = ANY(%s)",
}
TABLE_OF_SYSTEM = {
    "ours": "ours",
    "ours2": "ours",
    "group": "ceiling",
    "loop": "ceiling",
    "dbos": "dbos",
}


def committed_latencies_ms(system: str, url: str, saga_ids: Sequence[str]) -> list[float]:
    """Start-to-terminal-commit latency of each given saga that `system` stored, in ms."""
    ids = [saga_id for saga_id in saga_ids if saga_id]
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(_QUERIES[TABLE_OF_SYSTEM[system]], (ids,)).fetchall()
    return [float(row[0]) for row in rows]
