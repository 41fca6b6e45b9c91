"""Parallel groups end to end: a failing member, a slow member, compensation of both."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import struct, travel
from tools.processes import orchestrator_process, participants_process

pytestmark = pytest.mark.e2e

SLOW_HOTEL_MS = 1500


async def test_slow_member_finishing_after_a_failed_sibling_is_compensated(
    tmp_path, database_url, participants
):
    slow_hotel = participants_process(
        tmp_path, ["hotel"], ["--latency-ms", str(SLOW_HOTEL_MS)], name="slow-hotel"
    )
    orchestrator = None
    try:
        slow_hotel.start()
        addresses = {**participants.info["services"], **slow_hotel.info["services"]}
        orchestrator = orchestrator_process(tmp_path, database_url, addresses).start()
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            started = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id="slow-1",
                    payload=struct(travel(flight="NO-SUCH-FLIGHT")),
                ),
                timeout=5,
            )
            saga = await wait_terminal(stub, started.saga_id)
        store = open_store(database_url)
        await store.open()
        try:
            log = await store.get_transitions(started.saga_id)
        finally:
            await store.close()
        effects = await effects_of(addresses, started.saga_id)
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        slow_hotel.stop()

    assert saga.status == pb.SAGA_STATUS_FAILED
    assert saga.failed_step == "book_flight"
    assert "UNKNOWN_FLIGHT" in saga.failure_reason or "does not exist" in saga.failure_reason
    events = [(t.event, t.step) for t in log]
    failed_at = events.index((TransitionEvent.STEP_FAILED, "book_flight"))
    hotel_done = events.index((TransitionEvent.STEP_COMPLETED, "book_hotel"))
    assert failed_at < hotel_done, "the hotel answered after the flight had failed"
    compensated = [t.step for t in log if t.event is TransitionEvent.COMPENSATION_COMPLETED]
    assert compensated == ["rent_car", "book_hotel"]
    assert effects["hotel"] == Counter({"CANCELLED": 1})
    assert effects["car_rental"] == Counter({"CANCELLED": 1})
    assert effects["flight"] == Counter()
    assert effects["payment"] == Counter()


async def test_group_members_are_started_together(stub, store):
    started = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="fan-out", payload=struct(travel())
        ),
        timeout=5,
    )
    saga = await wait_terminal(stub, started.saga_id)
    assert saga.status == pb.SAGA_STATUS_COMPLETED
    log = await store.get_transitions(started.saga_id)
    starts = [t for t in log if t.event is TransitionEvent.STEP_STARTED]
    assert [t.step for t in starts] == ["book_flight", "book_hotel", "rent_car", "charge_payment"]
    first_completion = min(t.seq for t in log if t.event is TransitionEvent.STEP_COMPLETED)
    assert all(t.seq < first_completion for t in starts[:3])
    assert starts[3].seq > max(
        t.seq
        for t in log
        if t.event is TransitionEvent.STEP_COMPLETED and t.step != "charge_payment"
    )
