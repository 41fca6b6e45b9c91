"""Takeovers are counted: the alerts on lease claims and lost leases read these counters.

A real store (SQLite and PostgreSQL) holds the leases; the `LeaseKeeper` under test is
the executor's own, with metrics, and no participant is involved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.core.records import Lease, StoredSaga
from orchestrator.engine.admission import SagaSlots
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.store import Store
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.metrics import SagaMetrics
from tests.integration.test_store import create_leased

DEAD = Lease("replica-dead", seconds=0)
"""A replica whose leases have all expired: its sagas are orphans."""


def keeper_with_metrics(
    store: Store, lease: Lease, driven: dict[str, Any], drive: Any = None
) -> tuple[LeaseKeeper, SagaMetrics]:
    metrics = SagaMetrics(process_collectors=False)

    def run_of(stored: StoredSaga) -> Any:
        raise LookupError("not built here: its own task would load it")

    keeper = LeaseKeeper(
        store,
        lease,
        driven=driven,
        slots=SagaSlots(20, driven),
        run_of=run_of,
        drive=drive or (lambda saga_id, run: None),
        telemetry=EngineTelemetry(metrics),
    )
    return keeper, metrics


async def test_orphans_claimed_from_a_dead_replica_are_counted_as_takeovers(store: Store):
    for saga_id in ("orphan-1", "orphan-2"):
        await create_leased(store, saga_id, DEAD)
    await create_leased(store, "held", Lease("replica-alive", seconds=30))
    driven_here: list[str] = []
    keeper, metrics = keeper_with_metrics(
        store, Lease("replica-new", 30), {}, lambda saga_id, run: driven_here.append(saga_id)
    )
    assert metrics.registry.get_sample_value("saga_lease_claims_total") == 0

    assert await keeper.claim_orphans() == 2

    assert sorted(driven_here) == ["orphan-1", "orphan-2"]
    assert metrics.registry.get_sample_value("saga_lease_claims_total") == 2
    assert await keeper.claim_orphans() == 0
    assert metrics.registry.get_sample_value("saga_lease_claims_total") == 2


async def test_a_drive_stopped_because_another_replica_took_the_lease_is_counted(store: Store):
    alice = Lease("replica-alice", seconds=0.3)
    await create_leased(store, "taken", Lease(alice.owner, seconds=0))
    assert [s.saga_id for s in await store.claim_sagas(Lease("replica-bob", 30), 10)] == ["taken"]
    drive = asyncio.create_task(asyncio.Event().wait())
    keeper, metrics = keeper_with_metrics(store, alice, {"taken": drive})
    keeping = asyncio.create_task(keeper.keep())
    try:
        # The renewal finds the lease gone and stops the drive: the observable event.
        await asyncio.wait_for(asyncio.wait({drive}), 10)
    finally:
        keeping.cancel()
        drive.cancel()
        await asyncio.gather(keeping, drive, return_exceptions=True)

    assert drive.cancelled()
    assert metrics.registry.get_sample_value("saga_leases_lost_total") == 1
