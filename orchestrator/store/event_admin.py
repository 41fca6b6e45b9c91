"""What operators read and change in the outbox (docs/events.md, "Operating the sinks").

The partition leases and live relays of every sink, the dead letters a page at a time,
requeueing dead letters into the outbox, replaying events into it, and the log read a
replay since a time needs. The statements are written once for both dialects, like
`_statements.py`; `EventAdmin` runs them over a back end's `_rows` and `_transaction`,
and `SqlStore` mixes it in.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from orchestrator.core.events import DeadLetter, OutboxEvent, PartitionLease
from orchestrator.core.records import Lease, TransitionRecord
from orchestrator.store._rows import Row, RowEncoding, aware
from orchestrator.store._statements import OUTBOX, TRANSITION_COLUMNS, Dialect, Statements
from orchestrator.store.locks import Transaction

DEAD_COLUMNS = "id, sink, partition_no, saga_id, seq, event_type, created_at, attempts, error"


@dataclass(frozen=True, slots=True)
class AdminStatements:
    """The operators' statements, rendered for one dialect."""

    partition_leases: str
    live_relays: str
    dead_events: str
    dead_events_of_sink: str
    take_dead_events: str
    take_all_dead_events: str


@functools.cache
def admin_statements(dialect: Dialect) -> AdminStatements:
    p = dialect.param
    taken = f"RETURNING {OUTBOX.columns}"
    return AdminStatements(
        partition_leases=(
            "SELECT sink, partition_no, owner, expires_at FROM saga_event_partitions"
            " ORDER BY sink, partition_no"
        ),
        live_relays=(
            f"SELECT owner FROM saga_event_relays WHERE expires_at >= {dialect.now} ORDER BY owner"
        ),
        dead_events=(
            f"SELECT {DEAD_COLUMNS}, dead_at FROM saga_dead_events WHERE id > {p('after')}"
            f" ORDER BY id LIMIT {p('limit')}"
        ),
        dead_events_of_sink=(
            f"SELECT {DEAD_COLUMNS}, dead_at FROM saga_dead_events"
            f" WHERE sink = {p('sink')} AND id > {p('after')} ORDER BY id LIMIT {p('limit')}"
        ),
        # Deleted first and re-inserted from what the delete returned: a letter buried
        # meanwhile is either moved whole or left alone, never copied and kept.
        take_dead_events=(
            f"DELETE FROM saga_dead_events WHERE sink = {p('sink')}"
            f" AND id {dialect.in_list('ids')} {taken}, id"
        ),
        take_all_dead_events=f"DELETE FROM saga_dead_events WHERE sink = {p('sink')} {taken}, id",
    )


def transitions_since(
    dialect: Dialect,
    since: datetime,
    after: tuple[datetime, str, int] | None,
    namespaces: Sequence[str] | None,
) -> tuple[str, dict[str, object]]:
    """The log rows at or after `since`, in (time, saga id, seq) order, strictly after
    `after`, of sagas in `namespaces` (None: all); its parameters but for `limit`."""
    p, to_db = dialect.param, dialect.time_to_db
    params: dict[str, object] = {"since": to_db(aware(since))}
    conditions = [f"time >= {p('since')}"]
    if after is not None:
        conditions.append(
            f"(time, saga_id, seq) > ({p('after_time')}, {p('after_id')}, {p('after_seq')})"
        )
        params.update(after_time=to_db(aware(after[0])), after_id=after[1], after_seq=after[2])
    if namespaces is not None:
        names = {f"namespace_{n}": namespace for n, namespace in enumerate(namespaces)}
        listed = ", ".join(p(name) for name in names) or "NULL"
        conditions.append(f"saga_id IN (SELECT saga_id FROM sagas WHERE namespace IN ({listed}))")
        params.update(names)
    query = (
        f"SELECT {TRANSITION_COLUMNS} FROM saga_transitions WHERE {' AND '.join(conditions)}"
        f" ORDER BY time, saga_id, seq LIMIT {p('limit')}"
    )
    return query, params


class EventAdmin:
    """The operators' side of the outbox, over a back end's primitives (see the module)."""

    _statements: ClassVar[Statements]
    _encoding: ClassVar[RowEncoding]

    if TYPE_CHECKING:  # supplied by the store this is mixed into

        async def _rows(
            self, query: str, params: Mapping[str, object], *, write: bool = False
        ) -> list[Row]: ...

        def _transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]: ...

        def _written(self, sinks: Iterable[str]) -> None: ...

    @property
    def _admin(self) -> AdminStatements:
        return admin_statements(self._statements.dialect)

    async def event_partition_leases(self) -> list[PartitionLease]:
        """Every sink's partitions the database knows, with their owners, in order."""
        rows = await self._rows(self._admin.partition_leases, {})
        time = self._encoding.time_from_db
        return [
            PartitionLease(
                str(row["sink"]),
                int(row["partition_no"]),
                row["owner"],
                None if row["expires_at"] is None else time(row["expires_at"]),
            )
            for row in rows
        ]

    async def live_event_relays(self) -> list[str]:
        """The replicas whose relay announcement has not expired, by id."""
        params = self._statements.dialect.lease_params(Lease("", 1.0))
        return [str(row["owner"]) for row in await self._rows(self._admin.live_relays, params)]

    async def dead_events(self, sink: str | None, after: int, limit: int) -> list[DeadLetter]:
        """Up to `limit` dead letters (of `sink`, or of every sink) with ids above `after`,
        in id order."""
        admin = self._admin
        params: dict[str, object] = {"after": after, "limit": limit}
        if sink is not None:
            params["sink"] = sink
        rows = await self._rows(
            admin.dead_events if sink is None else admin.dead_events_of_sink, params
        )
        time = self._encoding.time_from_db
        return [
            DeadLetter(
                id=int(row["id"]),
                sink=str(row["sink"]),
                partition=int(row["partition_no"]),
                saga_id=str(row["saga_id"]),
                seq=int(row["seq"]),
                event_type=str(row["event_type"]),
                attempts=int(row["attempts"]),
                error=str(row["error"]),
                created_at=time(row["created_at"]),
                dead_at=time(row["dead_at"]),
            )
            for row in rows
        ]

    async def requeue_dead_events(self, sink: str, ids: Sequence[int] | None) -> int:
        """Move `sink`'s dead letters `ids` (None: all of them) back into the outbox, in
        their order, in one transaction; returns how many moved. Each gets a new outbox
        row (its event id, `{saga_id}:{seq}`, is unchanged); ids of another sink or gone
        are ignored."""
        admin, statements = self._admin, self._statements
        async with self._transaction() as tx:
            if ids is None:
                taken = await tx.rows(admin.take_all_dead_events, {"sink": sink})
            else:
                params = {"sink": sink, "ids": statements.dialect.id_list(list(ids))}
                taken = await tx.rows(admin.take_dead_events, params)
            for row in sorted(taken, key=lambda row: int(row["id"])):
                values = {column: row[column] for column in OUTBOX.types}
                await tx.rows(statements.insert_outbox_event, values)
        if taken:
            self._written([sink])
        return len(taken)

    async def enqueue_events(self, events: Sequence[OutboxEvent]) -> int:
        """Write `events` to the outbox in one transaction (a replay); returns how many."""
        if not events:
            return 0
        statements, encoding = self._statements, self._encoding
        async with self._transaction() as tx:
            for event in events:
                await tx.rows(statements.insert_outbox_event, encoding.event_params(event))
        self._written(event.sink for event in events)
        return len(events)

    async def transitions_since(
        self,
        since: datetime,
        after: tuple[datetime, str, int] | None,
        namespaces: Sequence[str] | None,
        limit: int,
    ) -> list[TransitionRecord]:
        """Up to `limit` log rows at or after `since` in (time, saga id, seq) order,
        strictly after `after`, of sagas in `namespaces` (None: every namespace)."""
        query, params = transitions_since(self._statements.dialect, since, after, namespaces)
        rows = await self._rows(query, {**params, "limit": limit})
        return [self._encoding.transition_from_row(row) for row in rows]
