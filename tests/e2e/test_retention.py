"""`saga serve --retention` deletes the finished sagas older than the duration, counts
them in saga_retention_deleted_total, and keeps everything else: unfinished sagas,
recent ones, and any saga that needs intervention."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import grpc
import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.opening import open_saga
from orchestrator.core.records import SagaStatus
from orchestrator.examples.travel_booking import TRAVEL_BOOKING
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_telemetry import scrape, value
from tests.support.payloads import struct, travel
from tools.processes import orchestrator_process

pytestmark = pytest.mark.e2e

LONG_AGO = timedelta(days=3)


async def store_saga(database_url: str, correlation_id: str, **fields) -> str:
    """A saga written straight into the store, as if it had finished days ago."""
    _, _, opening = open_saga(TRAVEL_BOOKING, correlation_id, travel(), None, utc_now())
    when = utc_now() - LONG_AGO
    saga = dataclasses.replace(opening.saga, create_time=when, update_time=when, **fields)
    store = open_store(database_url)
    await store.open()
    try:
        await store.create_saga(saga, [], [])
    finally:
        await store.close()
    return saga.saga_id


async def test_retention_deletes_old_finished_sagas_and_counts_them(
    tmp_path, database_url, participants
):
    old_completed = await store_saga(database_url, "old-done", status=SagaStatus.COMPLETED)
    old_compensated = await store_saga(database_url, "old-failed", status=SagaStatus.FAILED)
    needs_operator = await store_saga(
        database_url, "old-stuck", status=SagaStatus.FAILED, needs_intervention=True
    )
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        env={"SAGA_RETENTION": "1d", "SAGA_METRICS_LISTEN": "127.0.0.1:0"},
    )
    try:
        process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            fresh = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id="fresh", payload=struct(travel())
                ),
                timeout=10,
            )
            await wait_terminal(stub, fresh.saga_id)
            for _ in range(100):  # the first sweep runs at start
                deleted = value(
                    scrape(process.info["metrics_address"]), "saga_retention_deleted_total"
                )
                if deleted == 2:
                    break
                await asyncio.sleep(0.1)
            assert deleted == 2

            async def exists(saga_id: str) -> bool:
                try:
                    await stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND
                    return False
                return True

            kept = {i: await exists(i) for i in (old_completed, old_compensated, needs_operator)}
            assert kept == {old_completed: False, old_compensated: False, needs_operator: True}
            assert await exists(fresh.saga_id)
    finally:
        process.stop()
