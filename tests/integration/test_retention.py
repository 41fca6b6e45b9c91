"""Retention deletes exactly the finished sagas older than the cut, with their steps and
log, batch by batch, and never a saga that needs intervention; on both back ends."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.records import SagaRecord, SagaStatus
from orchestrator.engine.retention import sweep
from orchestrator.store import Store
from tests.integration.test_store import pending_steps, saga_record, saga_started

pytestmark = pytest.mark.integration

OLD = utc_now() - timedelta(days=40)
RECENT = utc_now() - timedelta(days=1)


async def put(store: Store, saga_id: str, status: SagaStatus, when, **fields) -> SagaRecord:
    saga = dataclasses.replace(saga_record(saga_id, status=status, create_time=when), **fields)
    result = await store.create_saga(saga, pending_steps(saga_id), [saga_started(saga_id)])
    assert result.created
    return saga


async def test_retention_deletes_exactly_old_finished_sagas_in_batches(store: Store):
    doomed = [f"old-completed-{n}" for n in range(5)] + ["old-compensated"]
    for saga_id in doomed[:-1]:
        await put(store, saga_id, SagaStatus.COMPLETED, OLD)
    await put(store, "old-compensated", SagaStatus.FAILED, OLD)
    kept = {
        "old-needs-operator": await put(
            store, "old-needs-operator", SagaStatus.FAILED, OLD, needs_intervention=True
        ),
        "old-running": await put(store, "old-running", SagaStatus.RUNNING, OLD),
        "old-compensating": await put(store, "old-compensating", SagaStatus.COMPENSATING, OLD),
        "recent-completed": await put(store, "recent-completed", SagaStatus.COMPLETED, RECENT),
    }
    batches: list[int] = []
    deleted = await sweep(store, timedelta(days=30), batch=4, deleted=batches.append)
    assert deleted == len(doomed)
    assert batches == [4, 2]
    for saga_id in doomed:
        assert await store.get_saga(saga_id) is None
        assert await store.get_steps(saga_id) == []
        assert await store.get_transitions(saga_id) == []
    for saga_id in kept:
        assert await store.get_saga(saga_id) is not None
        assert len(await store.get_steps(saga_id)) == 3
        assert len(await store.get_transitions(saga_id)) == 1
    assert await sweep(store, timedelta(days=30), batch=4) == 0
