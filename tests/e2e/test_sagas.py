"""Sagas end to end: orchestrator and participants as separate processes, real gRPC."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from saga.v1 import orchestrator_pb2 as pb
from tests.e2e.conftest import FAIL_CAR_CLASS, MAX_CHARGE_MINOR, wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import order, struct, travel

pytestmark = pytest.mark.e2e

TRAVEL_STEPS = ["book_flight", "book_hotel", "rent_car", "charge_payment"]


async def start(stub, saga_type: str, payload: dict, correlation_id: str = "c-1", key: str = ""):
    return await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type=saga_type,
            correlation_id=correlation_id,
            payload=struct(payload),
            idempotency_key=key,
        ),
        timeout=10,
    )


async def test_travel_booking_completes_with_one_effect_per_participant(stub, participants, store):
    started = await start(stub, "travel_booking", travel(), correlation_id="trip-ok")
    assert started.created and started.saga_id

    saga = await wait_terminal(stub, started.saga_id)

    assert saga.status == pb.SAGA_STATUS_COMPLETED
    assert saga.correlation_id == "trip-ok" and saga.saga_type == "travel_booking"
    assert [s.name for s in saga.steps] == TRAVEL_STEPS
    assert all(s.status == pb.STEP_STATUS_COMPLETED and s.attempts == 1 for s in saga.steps)
    assert saga.create_time.ToDatetime() <= saga.update_time.ToDatetime()
    effects = await effects_of(participants.info["services"], started.saga_id)
    for name in ("flight", "hotel", "car_rental", "payment"):
        assert effects[name] == Counter({"ACTIVE": 1}), name
    log = await store.get_transitions(started.saga_id)
    assert log[0].event is TransitionEvent.SAGA_STARTED
    assert log[-1].event is TransitionEvent.SAGA_COMPLETED
    assert [t.seq for t in log] == list(range(1, len(log) + 1))


async def test_refused_group_member_compensates_its_siblings_in_reverse_order(
    stub, participants, store
):
    started = await start(stub, "travel_booking", travel(car_class=FAIL_CAR_CLASS))

    saga = await wait_terminal(stub, started.saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED
    assert saga.failed_step == "rent_car"
    assert "INJECTED_FAILURE" in saga.failure_reason or "rent_car" in saga.failure_reason
    assert not saga.needs_intervention
    assert [s.status for s in saga.steps] == [
        pb.STEP_STATUS_COMPENSATED,
        pb.STEP_STATUS_COMPENSATED,
        pb.STEP_STATUS_FAILED,
        pb.STEP_STATUS_PENDING,
    ]
    effects = await effects_of(participants.info["services"], started.saga_id)
    assert effects["flight"] == Counter({"CANCELLED": 1})
    assert effects["hotel"] == Counter({"CANCELLED": 1})
    assert effects["car_rental"] == Counter()
    assert effects["payment"] == Counter()
    log = await store.get_transitions(started.saga_id)
    compensations = [t.step for t in log if t.event is TransitionEvent.COMPENSATION_COMPLETED]
    assert compensations == ["book_hotel", "book_flight"]
    events = [(t.event, t.step) for t in log]
    assert events.index((TransitionEvent.STEP_FAILED, "rent_car")) < events.index(
        (TransitionEvent.COMPENSATION_STARTED, "book_hotel")
    )
    assert events[-1] == (TransitionEvent.SAGA_FAILED, "")


async def test_declined_payment_undoes_all_three_bookings(stub, participants, store):
    started = await start(stub, "travel_booking", travel(amount_minor=MAX_CHARGE_MINOR + 1))

    saga = await wait_terminal(stub, started.saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED and saga.failed_step == "charge_payment"
    assert "CARD_DECLINED" in saga.failure_reason or "declined" in saga.failure_reason.lower()
    log = await store.get_transitions(started.saga_id)
    assert [t.step for t in log if t.event is TransitionEvent.COMPENSATION_COMPLETED] == [
        "rent_car",
        "book_hotel",
        "book_flight",
    ]
    effects = await effects_of(participants.info["services"], started.saga_id)
    assert all(effects[n] == Counter({"CANCELLED": 1}) for n in ("flight", "hotel", "car_rental"))


@pytest.mark.parametrize(
    ("address", "expected"),
    [("1 Main St", pb.SAGA_STATUS_COMPLETED), ("Nowhere Lane", pb.SAGA_STATUS_FAILED)],
)
async def test_order_fulfillment_runs_to_its_outcome(stub, participants, store, address, expected):
    started = await start(stub, "order_fulfillment", order(address=address))

    saga = await wait_terminal(stub, started.saga_id)

    assert saga.status == expected
    effects = await effects_of(participants.info["services"], started.saga_id)
    if expected == pb.SAGA_STATUS_COMPLETED:
        assert effects["inventory"] == effects["payment"] == Counter({"ACTIVE": 1})
        assert effects["notification"] == Counter({"SENT": 1})
    else:
        # The third step failed: the two before it are undone, last one first.
        assert saga.failed_step == "schedule_shipping"
        assert effects["inventory"] == effects["payment"] == Counter({"CANCELLED": 1})
        assert effects["shipping"] == effects["notification"] == Counter()
        log = await store.get_transitions(started.saga_id)
        assert [t.step for t in log if t.event is TransitionEvent.COMPENSATION_COMPLETED] == [
            "charge_payment",
            "reserve_inventory",
        ]
        assert [s.status for s in saga.steps] == [
            pb.STEP_STATUS_COMPENSATED,
            pb.STEP_STATUS_COMPENSATED,
            pb.STEP_STATUS_FAILED,
            pb.STEP_STATUS_PENDING,
        ]


async def test_same_idempotency_key_returns_the_first_saga_and_starts_nothing(
    stub, participants, store
):
    first = await start(stub, "travel_booking", travel(), key="checkout-42")
    again = await start(stub, "travel_booking", travel(), key="checkout-42")

    assert again.saga_id == first.saga_id
    assert first.created and not again.created
    await wait_terminal(stub, first.saga_id)
    effects = await effects_of(participants.info["services"], first.saga_id)
    assert effects["flight"] == Counter({"ACTIVE": 1})
    replay = await start(stub, "travel_booking", travel(), key="checkout-42")
    assert replay.saga_id == first.saga_id and replay.status == pb.SAGA_STATUS_COMPLETED


async def test_concurrent_starts_with_one_key_create_one_saga(stub, store):
    replies = await asyncio.gather(
        *(start(stub, "travel_booking", travel(), key="burst-1") for _ in range(10))
    )
    assert len({r.saga_id for r in replies}) == 1
    assert sum(r.created for r in replies) == 1


async def test_many_sagas_run_concurrently(stub, participants):
    replies = await asyncio.gather(
        *(start(stub, "travel_booking", travel(f"c-{i}"), f"trip-{i}") for i in range(20))
    )
    sagas = await asyncio.gather(*(wait_terminal(stub, r.saga_id) for r in replies))
    assert all(s.status == pb.SAGA_STATUS_COMPLETED for s in sagas)


async def test_reused_idempotency_key_with_another_request_is_refused(stub, store):
    first = await start(stub, "travel_booking", travel(), key="reused-1")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start(stub, "travel_booking", travel(customer="someone-else"), key="reused-1")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.saga_id in raised.value.details()
