"""Semantic locks in the store: taking a saga's keys, queueing it, releasing them.

Two tables hold the state (migration 0005): `saga_locks`, one row per held key (its
primary key makes two holders impossible), and `saga_lock_queue`, one row per key a
saga waits for, ordered by a ticket the saga takes once for all its keys. A saga may
take its keys only when nobody holds any of them and nobody queues ahead of it for
any of them; as every queue orders two sagas by the same ticket, the first waiter of
the whole store can always proceed once the holders release: there is no deadlock,
and each key is served first come, first served.

`take_locks` runs in one transaction: find who is in the way, let the machine decide
(`decide`), write the saga's commit (version-checked, so a replica that lost the
saga's lease can neither take nor queue), then take the keys or the queue places.
Releasing is part of the ordinary commit path (`release_statements`), in the commit
that makes the saga terminal. On PostgreSQL the transaction first takes an advisory
lock per key, all in one statement and in one order (by the lock's id), so two takers
of one key serialize and no two transactions wait for each other in a cycle; SQLite
has one writer anyway. PostgreSQL runs the same take in two round trips instead of one
per statement (a plan of its writer, `postgres/lock_plans.py`).

New sagas that lock from their first step are inserted in batches (`OpeningBatches`):
the openings queued while one batch is written go together in the next transaction,
as group commit does for the other writes. `decide_openings` (in the core, pure) decides
the whole batch in arrival order from one look at the keys: a saga in the batch is in
the way of a later one that shares a key, exactly as if each had committed alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from orchestrator.core.events import EventSink, outbox_events
from orchestrator.core.lock_openings import LockedOpening, Open
from orchestrator.core.records import CreateSagaResult, LockAttempt, LockBlocker, SagaCommit
from orchestrator.store._rows import Row, RowEncoding, expected_at, write_refused
from orchestrator.store._statements import HELD_KEYS, QUEUE_PLACES, Dialect, Statements, one_row
from orchestrator.store.group_commit import write_isolated

RELEASE_CHANNEL = "saga_lock_released"
"""The PostgreSQL NOTIFY channel a release announces each freed key on."""

Decide = Callable[[LockAttempt], SagaCommit | None]
"""Given what the store found, the saga's commit to write with it (None: nothing to write)."""


class Transaction(Protocol):
    """One open transaction of a back end: run a statement, get its rows."""

    async def rows(self, query: str, params: Mapping[str, object]) -> list[Row]: ...


@dataclass(frozen=True, slots=True)
class LockStatements:
    """The lock statements, rendered for one dialect."""

    guard_keys: str
    """Serializes takers of the `keys` (a list) for the rest of the transaction ("" where
    not needed)."""
    blockers_of_keys: str
    """Who is in the way of each of `keys` (a list), in one statement ("" where the
    per-key `holder` and `first_waiter_before` do it)."""
    my_ticket: str
    holder: str
    first_waiter: str
    first_waiter_before: str
    take_key: str
    new_ticket: str
    enqueue: str
    leave_queue: str
    release: tuple[str, ...]
    update_saga_checked: str
    select_holdings: str

    @classmethod
    def render(
        cls, dialect: Dialect, guard_keys: str, next_ticket: str, blockers_of_keys: str = ""
    ) -> LockStatements:
        p = dialect.param
        not_me = f"saga_id <> {p('saga_id')}"
        leave_queue = f"DELETE FROM saga_lock_queue WHERE saga_id = {p('saga_id')}"
        return cls(
            guard_keys=guard_keys,
            blockers_of_keys=blockers_of_keys,
            my_ticket=f"SELECT min(ticket) AS ticket FROM saga_lock_queue"
            f" WHERE saga_id = {p('saga_id')}",
            holder=f"SELECT saga_id FROM saga_locks WHERE lock_key = {p('key')} AND {not_me}",
            first_waiter=(
                f"SELECT saga_id FROM saga_lock_queue WHERE lock_key = {p('key')} AND {not_me}"
                " ORDER BY ticket, saga_id LIMIT 1"
            ),
            first_waiter_before=(
                f"SELECT saga_id FROM saga_lock_queue WHERE lock_key = {p('key')} AND {not_me}"
                f" AND (ticket < {p('ticket')} OR (ticket = {p('ticket')}"
                f" AND saga_id < {p('saga_id')})) ORDER BY ticket, saga_id LIMIT 1"
            ),
            take_key=HELD_KEYS.insert(
                one_row(dialect, HELD_KEYS, given={"lock_key": p("key"), "acquire_time": p("now")})
            ),
            new_ticket=f"SELECT {next_ticket} AS ticket",
            enqueue=QUEUE_PLACES.insert(
                one_row(
                    dialect, QUEUE_PLACES, given={"lock_key": p("key"), "enqueue_time": p("now")}
                )
            ),
            leave_queue=leave_queue,
            release=(f"DELETE FROM saga_locks WHERE saga_id = {p('saga_id')}", leave_queue),
            update_saga_checked=(
                Statements.render(dialect).update_saga.rstrip() + "\nRETURNING version\n"
            ),
            select_holdings=f"""
SELECT lock_key, 1 AS holds, 0 AS ahead FROM saga_locks WHERE saga_id = {p("saga_id")}
UNION ALL
SELECT q.lock_key, 0 AS holds,
       (SELECT count(*) FROM saga_lock_queue o
         WHERE o.lock_key = q.lock_key
           AND (o.ticket < q.ticket OR (o.ticket = q.ticket AND o.saga_id < q.saga_id)))
       AS ahead
FROM saga_lock_queue q WHERE q.saga_id = {p("saga_id")}
ORDER BY lock_key
""",
        )


async def _blockers(
    tx: Transaction, locks: LockStatements, saga_id: str, keys: Sequence[str], ticket: int | None
) -> list[LockBlocker]:
    """Who holds any of `keys`, or queues for it ahead of `ticket` (of anyone, for None)."""
    if locks.guard_keys:
        await tx.rows(locks.guard_keys, {"keys": list(keys)})
    if locks.blockers_of_keys:
        found = {"keys": list(keys), "saga_id": saga_id, "ticket": ticket}
        return blockers_from_rows(await tx.rows(locks.blockers_of_keys, found))
    blockers: list[LockBlocker] = []
    for key in keys:
        params: dict[str, object] = {"key": key, "saga_id": saga_id}
        held = await tx.rows(locks.holder, params)
        if held:
            blockers.append(LockBlocker(key, str(held[0]["saga_id"]), holds=True))
            continue
        if ticket is None:
            ahead = await tx.rows(locks.first_waiter, params)
        else:
            ahead = await tx.rows(locks.first_waiter_before, {**params, "ticket": ticket})
        if ahead:
            blockers.append(LockBlocker(key, str(ahead[0]["saga_id"]), holds=False))
    return blockers


def blockers_from_rows(rows: Sequence[Row]) -> list[LockBlocker]:
    """`blockers_of_keys`'s rows (key, holder, waiter; in the keys' order) as blockers."""
    blockers = []
    for row in rows:
        if row["holder"] is not None:
            blockers.append(LockBlocker(str(row["lock_key"]), str(row["holder"]), holds=True))
        elif row["waiter"] is not None:
            blockers.append(LockBlocker(str(row["lock_key"]), str(row["waiter"]), holds=False))
    return blockers


async def _take_or_queue(
    tx: Transaction,
    locks: LockStatements,
    saga_id: str,
    keys: Sequence[str],
    attempt: LockAttempt,
    waits: bool,
    at: object,
) -> None:
    """Take every key, or (a first refusal the machine chose to wait on) queue for each."""
    if attempt.acquired:
        for key in keys:
            await tx.rows(locks.take_key, {"key": key, "saga_id": saga_id, "now": at})
        if attempt.queued:  # a saga that never queued has no place to leave
            await tx.rows(locks.leave_queue, {"saga_id": saga_id})
    elif not attempt.queued and waits:
        for key in keys:
            params = {"key": key, "saga_id": saga_id, "ticket": attempt.ticket, "now": at}
            await tx.rows(locks.enqueue, params)


async def create_locked(
    tx: Transaction,
    statements: Statements,
    locks: LockStatements,
    encoding: RowEncoding,
    idempotency_key: str | None,
    keys: Sequence[str],
    open_saga: Open,
    now: datetime,
    sinks: Collection[EventSink] = (),
) -> CreateSagaResult:
    """Insert a new saga that takes its keys from the start, in one transaction with its
    keys or its queue places (so StartSaga order is queue order); `open_saga` may raise
    to store nothing (the reject policy). A known idempotency key answers its saga."""
    if idempotency_key is not None:
        known = await tx.rows(statements.select_saga_by_key, {"idempotency_key": idempotency_key})
        if known:
            return CreateSagaResult(encoding.saga_from_row(known[0]), created=False)
    blockers = await _blockers(tx, locks, "", keys, None)
    ticket = (await tx.rows(locks.new_ticket, {}))[0]["ticket"] if blockers else 0
    attempt = LockAttempt(tuple(blockers), queued=False, ticket=int(ticket))
    new = open_saga(attempt)
    params = {**encoding.saga_params(new.saga), **statements.dialect.lease_params(new.lease)}
    if not await tx.rows(statements.insert_saga, params):
        # Inserted meanwhile by a repeat of this request (its key is taken).
        key = {"idempotency_key": new.saga.idempotency_key}
        row = (await tx.rows(statements.select_saga_by_key, key))[0]
        return CreateSagaResult(encoding.saga_from_row(row), created=False)
    for step in new.steps:
        await tx.rows(statements.upsert_step, encoding.step_params(step))
    for transition in new.transitions:
        await tx.rows(statements.insert_transition, encoding.transition_params(transition))
    for event in outbox_events(sinks, new.saga, new.transitions, new.steps):
        await tx.rows(statements.insert_outbox_event, encoding.event_params(event))
    waits = new.saga.lock_wait_since is not None
    at = encoding.time_to_db(now)
    await _take_or_queue(tx, locks, new.saga.saga_id, keys, attempt, waits, at)
    return CreateSagaResult(new.saga, created=True)


async def take_locks(
    tx: Transaction,
    statements: Statements,
    locks: LockStatements,
    encoding: RowEncoding,
    saga_id: str,
    keys: Sequence[str],
    version: int,
    decide: Decide,
    now: datetime,
    sinks: Collection[EventSink] = (),
) -> LockAttempt:
    """Take the saga's keys or queue it, with its commit, inside `tx` (see the module)."""
    mine = await tx.rows(locks.my_ticket, {"saga_id": saga_id})
    ticket = mine[0]["ticket"] if mine else None
    blockers = await _blockers(tx, locks, saga_id, keys, ticket)
    queued = ticket is not None
    if blockers and ticket is None:
        # One ticket for all the saga's keys, drawn while their takers are serialized.
        ticket = (await tx.rows(locks.new_ticket, {}))[0]["ticket"]
    attempt = LockAttempt(tuple(blockers), queued=queued, ticket=int(ticket or 0))
    commit = decide(attempt)
    if commit is not None:
        await write_commit(tx, statements, locks, encoding, commit, sinks)
    else:
        stored = await tx.rows(statements.select_version, {"saga_id": saga_id})
        if not stored or stored[0]["version"] != version:
            found = {saga_id: stored[0]["version"]} if stored else {}
            raise write_refused([expected_at(saga_id, version)], found)
    # The machine decided to wait (under the reject policy it fails the saga instead).
    waits = commit is not None and commit.saga.lock_wait_since is not None
    await _take_or_queue(tx, locks, saga_id, keys, attempt, waits, encoding.time_to_db(now))
    return attempt


async def write_commit(
    tx: Transaction,
    statements: Statements,
    locks: LockStatements,
    encoding: RowEncoding,
    commit: SagaCommit,
    sinks: Collection[EventSink] = (),
) -> None:
    """One saga's commit inside `tx`: the version-checked row update, steps, log rows,
    and the outbox rows of the transitions `sinks` select."""
    params = encoding.commit_params(commit)
    if not await tx.rows(locks.update_saga_checked, params):
        stored = await tx.rows(statements.select_version, params)
        raise write_refused([params], {commit.saga.saga_id: stored[0]["version"]} if stored else {})
    for step in commit.steps:
        await tx.rows(statements.upsert_step, encoding.step_params(step))
    # The version check above already fenced any other writer of this saga.
    for transition in commit.transitions:
        await tx.rows(statements.insert_transition, encoding.transition_params(transition))
    for event in outbox_events(sinks, commit.saga, commit.transitions, commit.steps):
        await tx.rows(statements.insert_outbox_event, encoding.event_params(event))
    if commit.released_locks:
        for statement in locks.release:
            await tx.rows(statement, {"saga_id": commit.saga.saga_id})


WriteOpenings = Callable[[Sequence[LockedOpening]], Awaitable[list[CreateSagaResult | Exception]]]


@dataclass(slots=True)
class _QueuedOpening:
    opening: LockedOpening
    done: asyncio.Future[CreateSagaResult] = field(repr=False)


class OpeningBatches:
    """Queues locked openings and writes them through `write`, one batch per transaction.

    Like group commit: no timer, a lone opening is written at once, and the openings
    that queue meanwhile go together next. Each caller awaits its own outcome; an
    opening its opener refused fails alone, and so does one whose values the database
    refuses (`write_isolated`); an error of the database fails the batch.
    """

    def __init__(self, write: WriteOpenings, max_openings: int = 256) -> None:
        self._write = write
        self._max_openings = max_openings
        self._queue: list[_QueuedOpening] = []
        self._writer: asyncio.Task[None] | None = None

    async def create(self, opening: LockedOpening) -> CreateSagaResult:
        loop = asyncio.get_running_loop()
        queued = _QueuedOpening(opening, loop.create_future())
        self._queue.append(queued)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._flush(), name="locked-openings")
        return await queued.done

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_openings]
            del self._queue[: self._max_openings]
            try:
                # A batch the database refuses for one opening's values is halved until
                # that one fails alone (as group commit does).
                await write_isolated(self._write_queued, batch, _answer_openings)
            except BaseException as error:
                for queued in batch:
                    if not queued.done.done():
                        queued.done.set_exception(error)
                raise

    async def _write_queued(
        self, batch: Sequence[_QueuedOpening]
    ) -> list[CreateSagaResult | Exception]:
        return await self._write([queued.opening for queued in batch])


def _answer_openings(
    batch: Sequence[_QueuedOpening], outcomes: Sequence[CreateSagaResult | Exception]
) -> None:
    for queued, outcome in zip(batch, outcomes, strict=True):
        if queued.done.done():
            continue
        if isinstance(outcome, Exception):
            queued.done.set_exception(outcome)
        else:
            queued.done.set_result(outcome)
