"""The queries both SQL back ends run, over one primitive each back end supplies.

As DBOS Transact's system database keeps its queries once and lets its SQLite and
PostgreSQL subclasses hold only what differs, `SqlStore` reads, lists, claims and
renews once; a back end supplies its `Statements` (rendered for its dialect), its
`RowEncoding`, and `_rows`, which runs one statement. What stays in each back end
is connecting, migrating, classifying errors, and the group-commit `write`, whose
shape follows what each database does well (PostgreSQL pipelines it).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from orchestrator.core.clock import utc_now
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.events import (
    DeadEvent,
    EventSink,
    PartitionClaim,
    PendingEvent,
    Settlement,
    SinkBacklog,
)
from orchestrator.core.records import (
    CreateSagaResult,
    Lease,
    LockAttempt,
    LockBlocker,
    LockHolding,
    NewSaga,
    PagePosition,
    SagaCommit,
    SagaFilter,
    SagaRecord,
    StepRecord,
    StoredSaga,
    TransitionRecord,
)
from orchestrator.store._listing import saga_count, saga_listing, saga_matching
from orchestrator.store._rows import Row, RowEncoding, aware
from orchestrator.store._statements import Statements
from orchestrator.store.base import Store
from orchestrator.store.event_admin import EventAdmin
from orchestrator.store.locks import LockStatements, Transaction, create_locked, take_locks
from orchestrator.store.tracked_events import TrackedEventRows, TrackedStatements
from orchestrator.store.webhooks import WebhookRows


class SqlStore(TrackedEventRows, WebhookRows, EventAdmin, Store):
    """A `Store` whose back end runs the shared `Statements` through `_rows`; the webhook
    tables' methods come from `WebhookRows`, the event sinks' administration from
    `EventAdmin`."""

    _statements: ClassVar[Statements]
    _encoding: ClassVar[RowEncoding]
    _locks: ClassVar[LockStatements]
    _tracked: ClassVar[TrackedStatements]
    _event_sinks: tuple[EventSink, ...] = ()

    @property
    def event_sinks(self) -> tuple[EventSink, ...]:
        return self._event_sinks

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """One write transaction, committed when the block ends, rolled back if it raises."""

    @abc.abstractmethod
    async def _rows(
        self, query: str, params: Mapping[str, object], *, write: bool = False
    ) -> list[Row]:
        """Run one statement and return its rows (none for a statement without any).

        `write` marks a statement that changes rows: it runs as one transaction
        that takes the write lock up front where the database needs that.
        """

    async def _reads(
        self, statements: Sequence[tuple[str, Mapping[str, object]]]
    ) -> list[list[Row]]:
        """Run several reads and return each one's rows; a back end that can send them
        together (PostgreSQL's pipeline) does so in one round trip."""
        return [await self._rows(query, params) for query, params in statements]

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        rows = await self._rows(self._statements.select_saga, {"saga_id": saga_id})
        return self._encoding.saga_from_row(rows[0]) if rows else None

    async def get_steps(self, saga_id: str) -> list[StepRecord]:
        rows = await self._rows(self._statements.select_steps, {"saga_id": saga_id})
        return [self._encoding.step_from_row(row) for row in rows]

    async def last_seq(self, saga_id: str) -> int:
        rows = await self._rows(self._statements.last_seq, {"saga_id": saga_id})
        return int(rows[0]["last_seq"]) if rows else 0

    async def load_sagas(self, saga_ids: Sequence[str]) -> list[StoredSaga]:
        if not saga_ids:
            return []
        statements, encoding = self._statements, self._encoding
        ids = self._ids(saga_ids)
        saga_rows, step_rows, seq_rows = await self._reads(
            [
                (statements.select_sagas, ids),
                (statements.select_steps_of_sagas, ids),
                (statements.last_seqs, ids),
            ]
        )
        sagas = {str(row["saga_id"]): encoding.saga_from_row(row) for row in saga_rows}
        steps: dict[str, list[StepRecord]] = {}
        for row in step_rows:
            steps.setdefault(str(row["saga_id"]), []).append(encoding.step_from_row(row))
        last_seqs = {str(row["saga_id"]): int(row["last_seq"]) for row in seq_rows}
        return [
            StoredSaga(sagas[saga_id], tuple(steps.get(saga_id, ())), last_seqs.get(saga_id, 0))
            for saga_id in dict.fromkeys(saga_ids)
            if saga_id in sagas
        ]

    async def get_transitions(self, saga_id: str, after_seq: int = 0) -> list[TransitionRecord]:
        params = {"saga_id": saga_id, "after_seq": after_seq}
        rows = await self._rows(self._statements.select_transitions, params)
        return [self._encoding.transition_from_row(row) for row in rows]

    async def list_sagas(
        self, where: SagaFilter, limit: int, after: PagePosition | None = None
    ) -> list[SagaRecord]:
        query, params = saga_listing(self._statements.dialect, where, after)
        rows = await self._rows(query, {**params, "limit": limit})
        return [self._encoding.saga_from_row(row) for row in rows]

    async def match_sagas(
        self, where: SagaFilter, limit: int, after_id: str | None = None
    ) -> list[str]:
        query, params = saga_matching(self._statements.dialect, where, after_id)
        rows = await self._rows(query, {**params, "limit": limit})
        return [str(row["saga_id"]) for row in rows]

    async def count_sagas(self, where: SagaFilter) -> int:
        query, params = saga_count(self._statements.dialect, where)
        rows = await self._rows(query, params)
        return int(rows[0]["matched"])

    async def claim_sagas(self, lease: Lease, limit: int) -> list[SagaRecord]:
        params = {**self._statements.dialect.lease_params(lease), "limit": limit}
        rows = await self._rows(self._statements.claim_sagas, params, write=True)
        sagas = [self._encoding.saga_from_row(row) for row in rows]
        return sorted(sagas, key=lambda s: (s.create_time, s.saga_id))

    async def claim_saga(self, lease: Lease, saga_id: str) -> SagaRecord | None:
        params = {**self._statements.dialect.lease_params(lease), "saga_id": saga_id}
        rows = await self._rows(self._statements.claim_saga, params, write=True)
        return self._encoding.saga_from_row(rows[0]) if rows else None

    async def renew_leases(self, lease: Lease, saga_ids: Sequence[str]) -> set[str]:
        if not saga_ids:
            return set()
        params = {**self._statements.dialect.lease_params(lease), **self._ids(saga_ids)}
        rows = await self._rows(self._statements.renew_leases, params, write=True)
        return {str(row["saga_id"]) for row in rows}

    async def release_leases(self, owner: str, saga_ids: Sequence[str]) -> None:
        if saga_ids:
            params = {"owner": owner, **self._ids(saga_ids)}
            await self._rows(self._statements.release_leases, params, write=True)

    async def take_locks(
        self,
        saga_id: str,
        keys: Sequence[str],
        version: int,
        decide: Callable[[LockAttempt], SagaCommit | None],
    ) -> LockAttempt:
        decide, written = self._written_by(decide)
        async with self._transaction() as tx:
            attempt = await take_locks(
                tx,
                self._statements,
                self._locks,
                self._encoding,
                saga_id,
                keys,
                version,
                decide,
                utc_now(),
                self._event_sinks,
            )
        written()
        return attempt

    async def create_locked_saga(
        self,
        idempotency_key: str | None,
        keys: Sequence[str],
        open_saga: Callable[[LockAttempt], NewSaga],
    ) -> CreateSagaResult:
        open_saga, written = self._written_by(open_saga)
        async with self._transaction() as tx:
            result = await create_locked(
                tx,
                self._statements,
                self._locks,
                self._encoding,
                idempotency_key,
                keys,
                open_saga,
                utc_now(),
                self._event_sinks,
            )
        written()
        return result

    async def lock_blockers(self, saga_id: str, keys: Sequence[str]) -> list[LockBlocker]:
        blockers = []
        for key in keys:
            params = {"key": key, "saga_id": saga_id}
            held = await self._rows(self._locks.holder, params)
            waiting = [] if held else await self._rows(self._locks.first_waiter, params)
            for row in held or waiting:
                blockers.append(LockBlocker(key, str(row["saga_id"]), holds=bool(held)))
        return blockers

    async def lock_holdings(self, saga_id: str) -> list[LockHolding]:
        rows = await self._rows(self._locks.select_holdings, {"saga_id": saga_id})
        return [
            LockHolding(str(row["lock_key"]), bool(row["holds"]), int(row["ahead"])) for row in rows
        ]

    async def waiting_steps(self, limit: int) -> list[tuple[str, int]]:
        p = self._statements.dialect.param
        # Spelled as the partial index's predicate (0011), so the planner uses it.
        query = (
            "SELECT saga_id, step_index FROM saga_steps WHERE status = 'WAITING'"
            f" ORDER BY update_time, saga_id, step_index LIMIT {p('limit')}"
        )
        rows = await self._rows(query, {"limit": limit})
        return [(str(row["saga_id"]), int(row["step_index"])) for row in rows]

    async def unfinished_definitions(self) -> dict[tuple[str, int], int]:
        rows = await self._rows(self._statements.count_unfinished_by_definition, {})
        return {
            (str(row["saga_type"]), int(row["definition_version"])): int(row["sagas"])
            for row in rows
        }

    async def delete_finished(self, before: datetime, limit: int) -> int:
        # Steps and transitions go with their saga (ON DELETE CASCADE).
        params = {"before": self._statements.dialect.time_to_db(aware(before)), "limit": limit}
        rows = await self._rows(self._statements.delete_expired, params, write=True)
        return len(rows)

    async def count_needing_intervention(self) -> dict[str, int]:
        rows = await self._rows(self._statements.count_needing_intervention, {})
        return {str(row["saga_type"]): int(row["sagas"]) for row in rows}

    async def pending_events(self, sink: str, partition: int, limit: int) -> list[PendingEvent]:
        params = {"sink": sink, "partition_no": partition, "limit": limit}
        rows = await self._rows(self._statements.select_pending_events, params)
        return [self._encoding.pending_event_from_row(row) for row in rows]

    async def pending_events_of(
        self, sink: str, partitions: Sequence[int], limit: int
    ) -> list[PendingEvent]:
        if not partitions:
            return []
        chosen = self._statements.dialect.id_list(list(partitions))
        params = {"sink": sink, "partitions": chosen, "limit": limit}
        rows = await self._rows(self._statements.select_pending_events_of, params)
        return [self._encoding.pending_event_from_row(row) for row in rows]

    async def delete_events(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        params = {"ids": self._statements.dialect.id_list(list(ids))}
        return len(await self._rows(self._statements.delete_events, params, write=True))

    async def event_backlog(self) -> dict[str, SinkBacklog]:
        rows = await self._rows(self._statements.event_backlog, {})
        backlogs = [self._encoding.backlog_from_row(row) for row in rows]
        return {backlog.sink: backlog for backlog in backlogs}

    async def claim_event_partitions(
        self, sink: str, partitions: int, lease: Lease, limit: int
    ) -> list[PartitionClaim]:
        if limit <= 0:
            return []
        statements = self._statements
        await self._rows(
            statements.add_event_partitions, {"sink": sink, "partitions": partitions}, write=True
        )
        params = {
            **statements.dialect.lease_params(lease),
            "sink": sink,
            "partitions": partitions,
            "limit": limit,
        }
        rows = await self._rows(statements.claim_event_partitions, params, write=True)
        return sorted(_claims(sink, rows), key=lambda claim: claim.partition)

    async def event_relays(self, lease: Lease) -> int:
        statements = self._statements
        params = statements.dialect.lease_params(lease)
        await self._rows(statements.announce_relay, params, write=True)
        await self._rows(statements.forget_relays, params, write=True)
        rows = await self._rows(statements.count_relays, params)
        return max(1, int(rows[0]["relays"]) if rows else 1)

    async def renew_event_partitions(self, sink: str, lease: Lease) -> list[PartitionClaim]:
        params = {**self._statements.dialect.lease_params(lease), "sink": sink}
        rows = await self._rows(self._statements.renew_event_partitions, params, write=True)
        return sorted(_claims(sink, rows), key=lambda claim: claim.partition)

    async def release_event_partitions(
        self, sink: str, owner: str, partitions: Sequence[int] | None = None
    ) -> None:
        every = range(4096) if partitions is None else partitions
        ids = self._statements.dialect.id_list(list(every))
        params = {"sink": sink, "owner": owner, "partitions": ids}
        await self._rows(self._statements.release_event_partitions, params, write=True)

    async def settle_events(
        self,
        claim: PartitionClaim,
        lease: Lease,
        delivered: Sequence[int],
        dead: DeadEvent | None = None,
    ) -> bool:
        return not await self.settle_partitions(lease, [Settlement(claim, delivered, dead)])

    async def settle_partitions(
        self, lease: Lease, settlements: Sequence[Settlement]
    ) -> list[PartitionClaim]:
        if not settlements:
            return []
        statements = self._statements
        lost: list[PartitionClaim] = []
        async with self._transaction() as tx:
            # In partition order, the order claims take lease rows in.
            for settled in sorted(settlements, key=lambda s: s.claim.partition):
                claim, delivered, dead = settled.claim, settled.delivered, settled.dead
                where = {"sink": claim.sink, "partition_no": claim.partition}
                held = await tx.rows(
                    statements.hold_event_partition,
                    {**statements.dialect.lease_params(lease), **where, "version": claim.version},
                )
                if not held:
                    lost.append(claim)
                    continue
                if dead is not None:
                    params = {**where, "id": dead.id, "attempts": dead.attempts}
                    await tx.rows(statements.bury_event, {**params, "error": dead.error})
                ids = [*delivered, *([dead.id] if dead else [])]
                if ids:
                    params = {**where, "ids": statements.dialect.id_list(ids)}
                    await tx.rows(statements.delete_partition_events, params)
        return lost

    async def dead_event_counts(self) -> dict[str, int]:
        rows = await self._rows(self._statements.count_dead_events, {})
        return {str(row["sink"]): int(row["dead"]) for row in rows}

    def _ids(self, saga_ids: Sequence[str]) -> dict[str, object]:
        return {"saga_ids": self._statements.dialect.id_list(saga_ids)}


def _claims(sink: str, rows: Sequence[Row]) -> list[PartitionClaim]:
    return [PartitionClaim(sink, int(row["partition_no"]), int(row["version"])) for row in rows]


def checked_sinks(sinks: Sequence[EventSink]) -> tuple[EventSink, ...]:
    """The sinks a store writes outbox rows for; each name once (it keys the rows)."""
    names = [sink.name for sink in sinks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"event sink names must differ; repeated: {', '.join(repeated)}")
    return tuple(sinks)
