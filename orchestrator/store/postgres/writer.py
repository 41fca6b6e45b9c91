"""The one writer of the PostgreSQL back end: every write is a `WritePlan` it queues.

A plan says what one transaction writes: new sagas (each with its steps and first log
rows), commits (each a version-checked saga update with its steps, log rows and
released keys), held keys and queue places, and whether the sagas written are
announced on the commit channel, and the event sinks whose outbox rows it adds. The
writer turns it into statements, each written once (`sql.py`), in one order: sagas
inserted, sagas updated, keys released, steps, log rows, outbox rows, ingested events
(with the events held and applied), keys held, queue places, the announcement. A row
every commit gains is one change here.

Outbox rows (`orchestrator.core.events`): one per logged transition a sink selects, in
the transaction of the transition, so an event exists if and only if its transition
committed; no sinks, no statement.

Round trips: the statements go out in one pipeline and nothing is awaited between them,
unless the plan reads something back (`reads_back`): whether an idempotency key was
taken, or the row counts of updates that log nothing. Such a plan needs BEGIN and COMMIT
around it; any other closes with the pipeline's Sync, which commits it. A commit that
logs updates its saga in the statement that logs its first row, keyed by the updated
row: a stale commit updates none and the NULL key fails the transaction at the server,
so nothing is checked before COMMIT. Rows of a table go in one statement however many
(rows as JSON, keys as arrays); a lone row uses the plain statement.

The database's refusal of a plan (a stale commit, a seq already logged) becomes
`StaleSagaVersion` in one place, `PlanWriter.transaction`, through `write_refused`.
After any error the connection is closed and the pool replaces it (`connection.py`):
the failed pipeline may have left psycopg believing statements prepared that are not.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from orchestrator import failpoints
from orchestrator.core.events import EventSink, OutboxEvent, outbox_events
from orchestrator.core.ingested import IngestedRows, InstanceGuard
from orchestrator.core.records import CreateSagaResult, NewSaga, SagaCommit
from orchestrator.store._rows import write_refused
from orchestrator.store._statements import OUTBOX, TRANSITIONS
from orchestrator.store.postgres.connection import (
    Connection,
    discarded_on_error,
    pipelined_transaction,
)
from orchestrator.store.postgres.sql import (
    ENCODING,
    ENQUEUE_KEYS,
    INSERT_INGESTED,
    INSERT_OUTBOX_EVENTS,
    INSERT_SAGAS,
    INSERT_TRANSITIONS,
    NEW_SAGA_ROW,
    NOTIFY_COMMITS,
    RELEASE_AND_NOTIFY,
    SELECT_SAGAS_BY_KEYS,
    SELECT_VERSIONS,
    STATEMENTS,
    TAKE_KEYS,
    TRACKED,
    UPDATE_LOGGING_FIRST,
    UPDATE_LOGGING_FIRST_AND_NOTIFYING,
    UPSERT_STEPS,
    last_step_rows,
    lease_params,
    rows_json,
)
from orchestrator.store.tracked_events import (
    INGESTED,
    duplicate_event,
    guard_params,
    held_meanwhile,
    ingested_row_writes,
)

_Cursor = psycopg.AsyncCursor[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What one transaction writes (see the module)."""

    new_sagas: Sequence[NewSaga] = ()
    commits: Sequence[SagaCommit] = ()
    held: Sequence[tuple[str, str]] = ()
    """Keys taken, as (key, saga_id); a new saga's only if it is inserted."""
    leaving_queue: Sequence[str] = ()
    """Sagas whose queue places go with the keys they take."""
    queued: Sequence[tuple[str, str, int]] = ()
    """Queue places, as (key, saga_id, ticket); a new saga's only if it is inserted."""
    locked_at: datetime | None = None
    """When the keys were taken or queued for."""
    announce: bool = True
    """Notify the commit channel of the sagas written (`follow_commits` hears it)."""
    sinks: Collection[EventSink] = ()
    """The event sinks whose outbox rows the plan's logged transitions add."""

    @property
    def reads_back(self) -> bool:
        """Whether the writer waits for an answer before COMMIT (see the module)."""
        return any(new.saga.idempotency_key is not None for new in self.new_sagas) or not all(
            commit.transitions for commit in self.commits
        )


class _StaleBatch(Exception):
    """A commit's saga update that logs nothing matched no row: the write is rolled back."""


class PlanWriter:
    """Queues plans on one connection, in the pipelined transaction of `transaction()`.

    `explicit`: the transaction has BEGIN and COMMIT, so statements may be read back
    before its end (a plan that `reads_back` needs it, and so do reads queued before a
    plan in the same transaction).
    """

    def __init__(self, connection: Connection, *, explicit: bool) -> None:
        self._connection = connection
        self._explicit = explicit
        self._pipeline: psycopg.AsyncPipeline | None = None
        self._commits: list[dict[str, object]] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncPipeline]:
        """The transaction, committed when the block ends; a refusal of what it queued
        that stands for another writer's work is raised as `StaleSagaVersion`."""
        async with discarded_on_error(self._connection):
            try:
                async with pipelined_transaction(
                    self._connection, explicit=self._explicit
                ) as pipeline:
                    self._pipeline = pipeline
                    yield pipeline
            except (_StaleBatch, psycopg.IntegrityError) as error:
                refused = None if self._connection.closed else await self._refusal(error)
                if refused is None:
                    raise
                if isinstance(error, psycopg.errors.UniqueViolation):
                    raise refused from error
                raise refused from None

    async def _refusal(self, error: Exception) -> Exception | None:
        """What a refused transaction stands for (see `write_refused`); rolled back by now,
        so the stored versions read are the other writers'. A log row keyed NULL (its
        saga update matched nothing), a row of a saga not stored, a seq already logged:
        each is a stale commit's, or two writers'."""
        if isinstance(error, psycopg.errors.UniqueViolation) and error.diag.table_name in (
            INGESTED.name,
            "held_events",
        ):
            return duplicate_event(error.diag.message_detail or str(error))
        if isinstance(error, psycopg.errors.NotNullViolation | psycopg.errors.UniqueViolation):
            if error.diag.table_name != "saga_transitions":
                return None
        elif not isinstance(error, _StaleBatch | psycopg.errors.ForeignKeyViolation):
            return None
        cursor = self._connection.cursor(row_factory=dict_row)
        ids = list(dict.fromkeys(str(params["saga_id"]) for params in self._commits))
        # Not prepared: psycopg's prepared statements are not to be trusted on this
        # connection any more (it is discarded after this; see `connection.py`).
        await cursor.execute(SELECT_VERSIONS, {"saga_ids": ids}, prepare=False)
        stored = {row["saga_id"]: row["version"] for row in await cursor.fetchall()}
        duplicate = None
        if isinstance(error, psycopg.errors.UniqueViolation):
            duplicate = error.diag.message_detail or str(error)
        stale = not isinstance(error, psycopg.errors.ForeignKeyViolation)
        return write_refused(self._commits, stored, duplicate=duplicate, stale=stale)

    async def queue(self, plan: WritePlan) -> list[CreateSagaResult]:
        """Queue `plan`'s statements (see the module); one result per new saga, in order.
        Raises _StaleBatch, before anything is committed, if an update matched no row."""
        if self._pipeline is None:
            raise RuntimeError("PlanWriter.queue outside its transaction")
        if plan.reads_back and not self._explicit:
            raise RuntimeError("a plan that reads back needs an explicit transaction")
        # In saga_id order (stable: one saga's commits keep theirs), the order in which
        # renewing leases locks rows too, so the two never deadlock.
        commits = sorted(plan.commits, key=lambda commit: commit.saga.saga_id)
        saga_params = [ENCODING.commit_params(commit) for commit in commits]
        self._commits += saga_params
        cursor = self._connection.cursor(row_factory=dict_row)
        guarded = await self._guard_instances(plan.new_sagas)
        results = await self._insert_sagas(cursor, plan.new_sagas)
        created = [
            new for new, result in zip(plan.new_sagas, results, strict=True) if result.created
        ]
        await self._check_guards(guarded, {new.saga.saga_id for new in created})
        announced_by_updates = plan.announce and not plan.new_sagas and not plan.reads_back
        unlogged = await self._update_sagas(cursor, commits, saga_params, announced_by_updates)
        released = [commit for commit in commits if commit.released_locks]
        if released:
            # The NOTIFY is delivered when (and only if) the transaction commits.
            freed = {
                "saga_ids": [commit.saga.saga_id for commit in released],
                "keys": sorted({key for commit in released for key in commit.released_locks}),
            }
            await cursor.execute(RELEASE_AND_NOTIFY, freed)
        steps = [step for commit in commits for step in commit.steps]
        log = [t for commit in commits for t in commit.transitions[1:]]
        steps += [step for new in created for step in new.steps]
        log += [t for new in created for t in new.transitions]
        await self._steps_and_log(cursor, steps, log)
        if plan.sinks:
            # New sagas first: a saga created and committed in one plan logs in that order.
            events = [
                event
                for new in created
                for event in outbox_events(plan.sinks, new.saga, new.transitions, new.steps)
            ] + [
                event
                for commit in commits
                for event in outbox_events(
                    plan.sinks, commit.saga, commit.transitions, commit.steps
                )
            ]
            await self._outbox(cursor, events)
        await self._ingested(
            cursor, [new.ingested for new in created] + [c.ingested for c in commits]
        )
        skipped = {new.saga.saga_id for new in plan.new_sagas} - {n.saga.saga_id for n in created}
        await self._lock_rows(cursor, plan, skipped)
        changed = [new.saga.saga_id for new in created] + [c.saga.saga_id for c in commits]
        if plan.announce and not announced_by_updates and changed:
            # Delivered at COMMIT, to every replica's listener (follow_commits).
            await cursor.execute(NOTIFY_COMMITS, {"saga_ids": list(dict.fromkeys(changed))})
        if unlogged:
            await self._pipeline.sync()  # a round trip before COMMIT, to check the row counts
            if any(updates.rowcount != count for updates, count in unlogged):
                raise _StaleBatch
        failpoints.hit("plan_sent")
        return results

    async def _guard_instances(
        self, new_sagas: Sequence[NewSaga]
    ) -> list[tuple[str, InstanceGuard, psycopg.AsyncCursor[dict[str, Any]]]]:
        """Queue the lock of the tracked instances the new sagas start, and the reads of
        the events held for them (`InstanceGuard`); their answers come with the inserts'
        (a tracked instance has an idempotency key, so its plan reads back)."""
        guards = [(new.saga.saga_id, g) for new in new_sagas for g in new.ingested.guards]
        if not guards:
            return []
        if not all(new.saga.idempotency_key for new in new_sagas):
            raise ValueError("a guarded start needs its idempotency key (the plan reads back)")
        keys = sorted({guard.key for _, guard in guards})
        await self._connection.cursor().execute(TRACKED.lock_instances, {"keys": keys})
        reads = []
        for saga_id, guard in guards:
            held = self._connection.cursor(row_factory=dict_row)
            await held.execute(TRACKED.held_keys_of_instance, guard_params(guard))
            reads.append((saga_id, guard, held))
        return reads

    @staticmethod
    async def _check_guards(
        guarded: Sequence[tuple[str, InstanceGuard, psycopg.AsyncCursor[dict[str, Any]]]],
        created: set[str],
    ) -> None:
        """Refuse the write when an instance it starts has events held it did not read."""
        for saga_id, guard, held in guarded:
            rows = await held.fetchall()
            refused = held_meanwhile(guard, rows) if saga_id in created else None
            if refused is not None:
                raise refused

    async def _insert_sagas(
        self, cursor: _Cursor, new_sagas: Sequence[NewSaga]
    ) -> list[CreateSagaResult]:
        """Queue the inserts of new sagas: more than one of one lease and no output as one
        statement of JSON rows, others one by one. Only a saga with an idempotency key can
        be skipped (the key is taken): if one has a key, wait for the answers (a round
        trip) and read the sagas of the keys taken (one more, only then)."""
        if not new_sagas or self._pipeline is None:
            return []
        keyed = any(new.saga.idempotency_key is not None for new in new_sagas)
        inserted: set[str] = set()
        if len(new_sagas) > 1 and _one_statement_carries(new_sagas):
            rows = [ENCODING.saga_params(new.saga) for new in new_sagas]
            params = {"rows": rows_json(rows, NEW_SAGA_ROW), **lease_params(new_sagas[0].lease)}
            await cursor.execute(INSERT_SAGAS, params)
            if keyed:
                await self._pipeline.sync()
                inserted = {str(row["saga_id"]) for row in await cursor.fetchall()}
        else:
            each = [
                {**ENCODING.saga_params(new.saga), **lease_params(new.lease)} for new in new_sagas
            ]
            await cursor.executemany(STATEMENTS.insert_saga, each, returning=keyed)
            if keyed:
                await self._pipeline.sync()
                answers = [await result.fetchone() async for result in cursor.results()]
                inserted = {
                    new.saga.saga_id
                    for new, row in zip(new_sagas, answers, strict=True)
                    if row is not None
                }
        if not keyed:
            return [CreateSagaResult(new.saga, created=True) for new in new_sagas]
        taken = [new.saga.idempotency_key for new in new_sagas if new.saga.saga_id not in inserted]
        existing: dict[str, CreateSagaResult] = {}
        if taken:
            # Inserted meanwhile by a repeat of the request, or earlier in this write.
            await cursor.execute(SELECT_SAGAS_BY_KEYS, {"keys": taken})
            await self._pipeline.sync()
            for row in await cursor.fetchall():
                saga = ENCODING.saga_from_row(row)
                existing[str(saga.idempotency_key)] = CreateSagaResult(saga, created=False)
        results = []
        for new in new_sagas:
            if new.saga.saga_id in inserted:
                results.append(CreateSagaResult(new.saga, created=True))
                continue
            found = existing.get(str(new.saga.idempotency_key))
            if found is None:
                raise RuntimeError(f"saga {new.saga.saga_id}: insert skipped but no saga found")
            results.append(found)
        return results

    async def _update_sagas(
        self,
        cursor: _Cursor,
        commits: Sequence[SagaCommit],
        saga_params: Sequence[Mapping[str, object]],
        announce: bool,
    ) -> list[tuple[psycopg.AsyncCursor[Any], int]]:
        """Queue the commits' version-checked updates; return the cursors of those that
        log nothing, with how many rows each must have updated.

        Statements run in order, so two commits of one saga chain versions. A commit that
        logs updates its saga in the statement logging its first row (and, `announce`,
        notifying); others have a cursor per run of them, whose rows updated are summed;
        runs keep the saga_id order of the updates."""
        unlogged: list[tuple[psycopg.AsyncCursor[Any], int]] = []
        ordered = zip(saga_params, commits, strict=True)
        for logs, run in itertools.groupby(ordered, key=lambda pair: bool(pair[1].transitions)):
            pairs = list(run)
            if logs:
                await cursor.executemany(
                    UPDATE_LOGGING_FIRST_AND_NOTIFYING if announce else UPDATE_LOGGING_FIRST,
                    [{**p, **ENCODING.transition_params(c.transitions[0])} for p, c in pairs],
                )
            else:
                updates = self._connection.cursor()
                await updates.executemany(STATEMENTS.update_saga, [p for p, _ in pairs])
                unlogged.append((updates, len(pairs)))
        return unlogged

    @staticmethod
    async def _steps_and_log(cursor: _Cursor, steps: Sequence[Any], log: Sequence[Any]) -> None:
        """Queue step rows (upserted) and log rows: a lone row as the plain statement, more
        as one statement per table."""
        step_params = [ENCODING.step_params(step) for step in steps]
        if len(step_params) == 1:
            await cursor.execute(STATEMENTS.upsert_step, step_params[0])
        elif step_params:
            await cursor.execute(UPSERT_STEPS, {"rows": last_step_rows(step_params)})
        log_params = [ENCODING.transition_params(transition) for transition in log]
        if len(log_params) == 1:
            await cursor.execute(STATEMENTS.insert_transition, log_params[0])
        elif log_params:
            rows = rows_json(log_params, list(TRANSITIONS.types))
            await cursor.execute(INSERT_TRANSITIONS, {"rows": rows})

    @staticmethod
    async def _outbox(cursor: _Cursor, events: Sequence[OutboxEvent]) -> None:
        """Queue the outbox rows: a lone row as the plain statement, more as one."""
        if len(events) == 1:
            await cursor.execute(STATEMENTS.insert_outbox_event, ENCODING.event_params(events[0]))
        elif events:
            rows = rows_json([ENCODING.event_params(e) for e in events], list(OUTBOX.types))
            await cursor.execute(INSERT_OUTBOX_EVENTS, {"rows": rows})

    @staticmethod
    async def _ingested(cursor: _Cursor, rows: Sequence[IngestedRows]) -> None:
        """Queue the tracked events' rows (`ingested_row_writes`): the ingested keys as one
        statement, the rest (rare: events held, applied, anomalies) row by row."""
        if not any(rows):
            return
        for query, params in ingested_row_writes(TRACKED, ENCODING, rows):
            if query == TRACKED.insert_ingested and len(params) > 1:
                await cursor.execute(
                    INSERT_INGESTED, {"rows": rows_json(params, list(INGESTED.types))}
                )
            else:
                await cursor.executemany(query, params)

    @staticmethod
    async def _lock_rows(cursor: _Cursor, plan: WritePlan, skipped: set[str]) -> None:
        """Queue the keys held and the queue places, of sagas written (not `skipped`)."""
        held = [(key, saga_id) for key, saga_id in plan.held if saga_id not in skipped]
        queued = [place for place in plan.queued if place[1] not in skipped]
        if not held and not queued:
            return
        if plan.locked_at is None:
            raise ValueError("a plan that takes or queues for keys needs its locked_at time")
        at = ENCODING.time_to_db(plan.locked_at)
        if held:
            keys, saga_ids = zip(*held, strict=True)
            rows = {"keys": list(keys), "saga_ids": list(saga_ids), "now": at}
            await cursor.execute(TAKE_KEYS, {**rows, "leaving": list(plan.leaving_queue)})
        if queued:
            keys, saga_ids, tickets = zip(*queued, strict=True)
            places = {"keys": list(keys), "saga_ids": list(saga_ids), "tickets": list(tickets)}
            await cursor.execute(ENQUEUE_KEYS, {**places, "now": at})


def _one_statement_carries(new_sagas: Sequence[NewSaga]) -> bool:
    """True when `INSERT_SAGAS` carries the batch: one lease for all, no output yet."""
    return len({new.lease for new in new_sagas}) == 1 and all(
        new.saga.output is None for new in new_sagas
    )


async def write_plan(connection: Connection, plan: WritePlan) -> list[CreateSagaResult]:
    """`plan` in a transaction of its own: one round trip unless it reads back."""
    writer = PlanWriter(connection, explicit=plan.reads_back)
    async with writer.transaction():
        return await writer.queue(plan)
