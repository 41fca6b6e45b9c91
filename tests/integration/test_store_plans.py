"""The write paths agree: every plan of PostgreSQL's writer stores the rows the general
write stores, and both back ends store the same rows for the same calls.

Each test runs on SQLite and on PostgreSQL (the `store` fixture). On PostgreSQL a batch
of new sagas goes in as rows of JSON, a commit's step and log rows likewise, and locked
openings queued together are one transaction: the sagas written one call at a time are
the reference they are compared with.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.records import (
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
from orchestrator.store import Store
from tests.integration.test_store import STEP_NAMES, T0, new_saga, saga_record

pytestmark = pytest.mark.integration


async def stored_rows(store: Store, saga_id: str) -> tuple[object, ...]:
    """What the store holds of one saga, with its id taken out, to compare two sagas."""
    saga = await store.get_saga(saga_id)
    assert saga is not None
    steps = await store.get_steps(saga_id)
    log = await store.get_transitions(saga_id)
    return (
        dataclasses.replace(saga, saga_id="", correlation_id="", idempotency_key=None),
        [dataclasses.replace(step, saga_id="") for step in steps],
        [dataclasses.replace(transition, saga_id="") for transition in log],
        await store.lock_holdings(saga_id),
    )


def two_steps_on(saga: SagaRecord, seq: int) -> SagaCommit:
    """A commit of two step rows and three log rows: more than one row per table."""
    moment = saga.update_time + timedelta(seconds=1)
    done = StepRecord(saga.saga_id, 0, STEP_NAMES[0], StepStatus.COMPLETED, 1, result=b"\x00r")
    started = StepRecord(saga.saga_id, 1, STEP_NAMES[1], StepStatus.STARTED, 1, start_time=moment)
    log = tuple(
        TransitionRecord(saga.saga_id, seq + n, event, moment, SagaStatus.RUNNING, step=step)
        for n, (event, step) in enumerate(
            [
                (TransitionEvent.STEP_COMPLETED, STEP_NAMES[0]),
                (TransitionEvent.STEP_STARTED, STEP_NAMES[1]),
                (TransitionEvent.STEP_STARTED, STEP_NAMES[1]),
            ]
        )
    )
    changed = dataclasses.replace(saga, update_time=moment, version=saga.version + 1)
    return SagaCommit(changed, saga.version, (done, started), log)


async def test_a_batch_of_new_sagas_stores_what_one_create_at_a_time_stores(store: Store):
    batch = [new_saga(f"batch-{n}", key=f"k-{n}" if n % 2 else None) for n in range(4)]
    assert all(result.created for result in await store.create_sagas(batch))
    for n in range(4):
        single = new_saga(f"single-{n}", key=f"s-{n}" if n % 2 else None)
        assert (await store.create_sagas([single]))[0].created

    for n in range(4):
        assert await stored_rows(store, f"batch-{n}") == await stored_rows(store, f"single-{n}")


async def test_commits_written_together_store_what_commits_one_at_a_time_store(store: Store):
    together = [new_saga(f"together-{n}") for n in range(3)]
    alone = [new_saga(f"alone-{n}") for n in range(3)]
    await store.create_sagas(together + alone)

    await store.write((), [two_steps_on(new.saga, seq=2) for new in together])
    for new in alone:
        await store.write((), [two_steps_on(new.saga, seq=2)])

    for n in range(3):
        assert await stored_rows(store, f"together-{n}") == await stored_rows(store, f"alone-{n}")


async def test_locked_openings_queued_together_store_what_one_at_a_time_store(store: Store):
    """Openings of one moment (one transaction on PostgreSQL) decide as if each had
    committed alone: the first takes the key, the next queue behind it in order, a
    repeated idempotency key answers its saga and stores nothing."""

    def opener(saga_id: str, key: str | None = None):
        def open_saga(attempt: LockAttempt) -> NewSaga:
            saga = dataclasses.replace(
                saga_record(saga_id, key=key),
                lock_keys=("sku:1",),
                locks_held=attempt.acquired,
                lock_wait_since=None if attempt.acquired else T0,
            )
            return NewSaga(saga, new_saga(saga_id).steps, new_saga(saga_id).transitions)

        return store.create_locked_saga(key, ("sku:1",), open_saga)

    together = await asyncio.gather(
        opener("first", key="k"), opener("second"), opener("third"), opener("again", key="k")
    )
    assert [result.created for result in together] == [True, True, True, False]
    assert together[3].saga.saga_id == "first"
    assert await store.get_saga("again") is None
    assert await store.lock_holdings("first") == [LockHolding("sku:1", True, 0)]
    assert await store.lock_holdings("second") == [LockHolding("sku:1", False, 0)]
    assert await store.lock_holdings("third") == [LockHolding("sku:1", False, 1)]
    alone = [await opener(saga_id) for saga_id in ("fourth", "fifth")]
    assert all(result.created for result in alone)
    assert await store.lock_holdings("fifth") == [LockHolding("sku:1", False, 3)]
    assert (await stored_rows(store, "third"))[:3] == (await stored_rows(store, "fifth"))[:3]
