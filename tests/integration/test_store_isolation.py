"""One caller's write cannot fail another's, and a failed write leaves nothing behind.

Writes of many sagas share a transaction (group commit, a StartSagas batch); a value the
database refuses to store (a NUL, an unpaired surrogate) in one of them must fail that
write alone, on both back ends, with nothing of it stored and the others committed. On
PostgreSQL a failed pipeline must also leave its connection usable: psycopg may believe a
statement the server skipped is prepared, so every later use of it there would fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import timedelta

import psycopg
import pytest

from orchestrator.core.errors import DataRefused, StaleSagaVersion
from orchestrator.core.records import (
    CreateSagaResult,
    LockAttempt,
    LockHolding,
    NewSaga,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.store import PostgresStore, Store
from orchestrator.store._rows import data_refused
from tests.integration.test_store import STEP_NAMES, new_saga

pytestmark = pytest.mark.integration

FAULTS = {"nul": "\x00", "surrogate": "\ud800"}
"""Characters a store may refuse: PostgreSQL neither (text cannot hold NUL, jsonb neither
NUL nor a lone surrogate), SQLite only the surrogate (its text holds NUL)."""


def refuses(store: Store, fault: str) -> bool:
    return isinstance(store, PostgresStore) or fault == "surrogate"


def step_completed(saga: SagaRecord, *, seq: int, poison: str = "", where: str = "") -> SagaCommit:
    """The first step completed and the second started: two step rows and two log rows;
    `poison` goes into the text of the saga's row, of a step row or of the log (`where`)."""
    moment = saga.update_time + timedelta(seconds=1)

    def text(place: str) -> str:
        return f"slow{poison}" if where == place else ""

    done = StepRecord(saga.saga_id, 0, STEP_NAMES[0], StepStatus.COMPLETED, 1, result=b"ok")
    started = StepRecord(
        saga.saga_id, 1, STEP_NAMES[1], StepStatus.STARTED, 1, error=text("step"), start_time=moment
    )
    log = (
        TransitionRecord(
            saga.saga_id,
            seq,
            TransitionEvent.STEP_COMPLETED,
            moment,
            SagaStatus.RUNNING,
            step=STEP_NAMES[0],
            error=text("log"),
        ),
        TransitionRecord(
            saga.saga_id, seq + 1, TransitionEvent.STEP_STARTED, moment, SagaStatus.RUNNING
        ),
    )
    changed = dataclasses.replace(
        saga, failure_reason=text("saga"), update_time=moment, version=saga.version + 1
    )
    return SagaCommit(changed, saga.version, (done, started), log)


def poisoned_saga(saga_id: str, poison: str) -> NewSaga:
    new = new_saga(saga_id)
    saga = dataclasses.replace(new.saga, payload={**new.saga.payload, "traveller": f"A{poison}"})
    return dataclasses.replace(new, saga=saga)


async def assert_untouched(store: Store, saga: SagaRecord) -> None:
    assert await store.get_saga(saga.saga_id) == saga
    assert len(await store.get_transitions(saga.saga_id)) == 1


@pytest.mark.parametrize("where", ["saga", "step", "log"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_write_the_database_refuses_fails_alone_among_concurrent_writers(
    store: Store, fault: str, where: str
):
    running = [new_saga(f"running-{n}") for n in range(24)]
    for new in running:
        assert (await store.create_sagas([new]))[0] == CreateSagaResult(new.saga, created=True)
    bad = {5, 17}
    commits = [
        step_completed(new.saga, seq=2, poison=FAULTS[fault] if n in bad else "", where=where)
        for n, new in enumerate(running)
    ]
    starts = [
        poisoned_saga(f"new-{n}", FAULTS[fault]) if n == 3 else new_saga(f"new-{n}")
        for n in range(6)
    ]

    # Started together, so the group commit takes them all into one batch.
    outcomes = await asyncio.gather(
        *(store.commit([commit]) for commit in commits),
        *(store.create_saga(n.saga, n.steps, n.transitions) for n in starts),
        return_exceptions=True,
    )

    committed, started = outcomes[: len(commits)], outcomes[len(commits) :]
    for n, (commit, outcome) in enumerate(zip(commits, committed, strict=True)):
        if n in bad and refuses(store, fault):
            assert isinstance(outcome, DataRefused), outcome
            assert FAULTS[fault] not in outcome.message
            await assert_untouched(store, running[n].saga)
        else:
            assert outcome is None, outcome
            assert await store.get_saga(commit.saga.saga_id) == commit.saga
            assert len(await store.get_transitions(commit.saga.saga_id)) == 3
    for n, (new, outcome) in enumerate(zip(starts, started, strict=True)):
        if n == 3 and refuses(store, fault):
            assert isinstance(outcome, DataRefused), outcome
            assert await store.get_saga(new.saga.saga_id) is None
        else:
            assert outcome == CreateSagaResult(new.saga, created=True), outcome
            assert await store.get_saga(new.saga.saga_id) == new.saga


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_start_sagas_batch_stores_every_saga_but_the_one_refused(store: Store, fault: str):
    batch = [
        poisoned_saga(f"saga-{n}", FAULTS[fault]) if n in (2, 6) else new_saga(f"saga-{n}")
        for n in range(9)
    ]

    results = await store.create_sagas(batch)

    for n, (new, result) in enumerate(zip(batch, results, strict=True)):
        if n in (2, 6) and refuses(store, fault):
            assert isinstance(result, DataRefused), result
            assert await store.get_saga(new.saga.saga_id) is None
            assert await store.get_steps(new.saga.saga_id) == []
        else:
            assert result == CreateSagaResult(new.saga, created=True), result
            assert await store.get_saga(new.saga.saga_id) == new.saga
            assert await store.get_transitions(new.saga.saga_id) == list(new.transitions)


async def test_a_write_refused_half_way_stores_nothing_of_it(store: Store):
    """The driver refuses the second commit's log text while the first commit's statement
    is already on its way: neither may be stored (a write is all or nothing)."""
    first, second = new_saga("first"), new_saga("second")
    await store.create_sagas([first, second])
    good = step_completed(first.saga, seq=2)
    bad = step_completed(second.saga, seq=2, poison=FAULTS["surrogate"], where="log")

    with pytest.raises((UnicodeEncodeError, psycopg.DataError)):
        await store.write((), [good, bad])

    await assert_untouched(store, first.saga)
    await assert_untouched(store, second.saga)
    await store.commit([good])  # the good commit is still the next one
    assert await store.get_saga("first") == good.saga


def stale(commit: SagaCommit) -> SagaCommit:
    """`commit` expecting the version before the stored one: another writer's, long gone."""
    saga = dataclasses.replace(commit.saga, version=commit.expected_version)
    return dataclasses.replace(commit, saga=saga, expected_version=commit.expected_version - 1)


@pytest.mark.postgres
@pytest.mark.parametrize("failure", ["stale commit", "refused value"])
async def test_a_failed_pipeline_leaves_no_connection_believing_in_unprepared_statements(
    postgres_url: str, failure: str
):
    """One connection (a pool of one). Writes that fail at their first statement (a stale
    commit's saga update, a new saga's insert), each skipping the statements after it,
    until psycopg prepares those (on their sixth use): then a thousand writes on the same
    pool, none of which may meet InvalidSqlStatementName."""
    store = PostgresStore(postgres_url, min_size=1, max_size=1)
    await store.open()
    try:
        sagas = [new_saga(f"saga-{n}").saga for n in range(8)]
        await store.create_sagas([new_saga(saga.saga_id) for saga in sagas])
        for _ in range(8):
            if failure == "stale commit":
                with pytest.raises(StaleSagaVersion):
                    await store.write((), [stale(step_completed(sagas[0], seq=2))])
            else:
                with pytest.raises(psycopg.errors.UntranslatableCharacter):
                    await store.write([poisoned_saga("refused", "\x00")], ())

        unprepared = 0
        seqs = dict.fromkeys((saga.saga_id for saga in sagas), 2)
        for n in range(1000):
            saga = sagas[n % len(sagas)]
            commit = step_completed(saga, seq=seqs[saga.saga_id])
            try:
                await store.write((), [commit])
            except psycopg.errors.InvalidSqlStatementName:
                unprepared += 1
                continue
            sagas[n % len(sagas)] = commit.saga
            seqs[saga.saga_id] += 2

        assert unprepared == 0
        for saga in sagas:
            assert await store.get_saga(saga.saga_id) == saga
    finally:
        await store.close()


async def test_a_key_too_long_for_its_index_fails_alone(store: Store):
    """PostgreSQL's btree refuses an index row over about 2.7 kB (SQLSTATE 54000, which
    psycopg raises as an OperationalError): a refusal of that saga, not an outage."""
    long_key = secrets.token_hex(8000)
    batch = [new_saga("before"), new_saga("long", key=long_key), new_saga("after")]

    results = await store.create_sagas(batch)
    alone = await asyncio.gather(
        store.create_saga(batch[1].saga, batch[1].steps, batch[1].transitions),
        store.create_saga(*fresh("beside")),
        return_exceptions=True,
    )

    assert results[0] == CreateSagaResult(batch[0].saga, created=True)
    assert results[2] == CreateSagaResult(batch[2].saga, created=True)
    assert alone[1] == CreateSagaResult(new_saga("beside").saga, created=True)
    if isinstance(store, PostgresStore):
        assert isinstance(results[1], DataRefused) and "54000" in results[1].message
        assert isinstance(alone[0], DataRefused)
        assert await store.get_saga("long") is None
    else:
        assert results[1] == CreateSagaResult(batch[1].saga, created=True)


def fresh(saga_id: str) -> tuple[SagaRecord, tuple[StepRecord, ...], tuple[TransitionRecord, ...]]:
    new = new_saga(saga_id)
    return new.saga, new.steps, new.transitions


async def test_a_locked_opening_the_database_refuses_fails_alone_among_its_batch(
    store: Store,
):
    """Openings of one moment share a transaction on PostgreSQL (`OpeningBatches`): the
    one whose payload the database refuses fails, the others take or queue for the key
    in their order as if it had never come."""
    poison = "\x00" if isinstance(store, PostgresStore) else "\ud800"

    def opener(saga_id: str, bad: bool = False):
        def open_saga(attempt: LockAttempt) -> NewSaga:
            new = poisoned_saga(saga_id, poison) if bad else new_saga(saga_id)
            saga = dataclasses.replace(
                new.saga,
                lock_keys=("sku:1",),
                locks_held=attempt.acquired,
                lock_wait_since=None if attempt.acquired else new.saga.create_time,
            )
            return dataclasses.replace(new, saga=saga)

        return store.create_locked_saga(None, ("sku:1",), open_saga)

    names = ["first", "second", "refused", "third"]
    outcomes = await asyncio.gather(
        *(opener(name, bad=name == "refused") for name in names), return_exceptions=True
    )

    refused = outcomes[2]
    assert isinstance(refused, Exception)
    assert isinstance(refused, DataRefused) or data_refused(refused) is not None
    assert await store.get_saga("refused") is None
    assert [o.created for o in outcomes if not isinstance(o, BaseException)] == [True] * 3
    assert await store.lock_holdings("first") == [LockHolding("sku:1", True, 0)]
    assert await store.lock_holdings("second") == [LockHolding("sku:1", False, 0)]
    assert await store.lock_holdings("third") == [LockHolding("sku:1", False, 1)]
