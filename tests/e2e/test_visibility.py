"""ListSagas, GetSagaHistory and WatchSaga over real gRPC, on both back ends."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import timestamp_pb2

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, wait_terminal
from tests.support.payloads import travel
from tests.support.starting import start_saga
from tools.processes import orchestrator_process, participants_process

pytestmark = pytest.mark.e2e


async def start(stub, correlation_id: str, **payload) -> str:
    return await start_saga(stub, travel(**payload), correlation_id, timeout=5)


async def list_all(stub, page_size: int, **filters) -> list[str]:
    seen, token = [], ""
    while True:
        page = await stub.ListSagas(
            pb.ListSagasRequest(page_size=page_size, page_token=token, **filters), timeout=5
        )
        seen += [s.saga_id for s in page.sagas]
        token = page.next_page_token
        if not token:
            return seen


async def test_list_pages_have_no_duplicates_or_gaps_under_concurrent_starts(stub):
    first = [await start(stub, f"page-{n}") for n in range(12)]
    seen, token = [], ""
    while True:
        page = await stub.ListSagas(pb.ListSagasRequest(page_size=5, page_token=token), timeout=5)
        seen += [s.saga_id for s in page.sagas]
        await start(stub, f"during-{len(seen)}")  # newer than every page already issued
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(first))
    assert len(set(seen)) == len(seen)


async def test_every_list_filter(stub):
    ok = await start(stub, "filter-ok")
    bad = await start(stub, "filter-bad", car_class=FAIL_CAR_CLASS)
    await wait_terminal(stub, ok)
    failed = await wait_terminal(stub, bad)
    assert await list_all(stub, 10, status=pb.SAGA_STATUS_FAILED) == [bad]
    assert await list_all(stub, 10, status=pb.SAGA_STATUS_COMPLETED) == [ok]
    assert await list_all(stub, 10, correlation_id="filter-ok") == [ok]
    assert await list_all(stub, 10, saga_id_prefix=ok[:-1]) == [ok]
    assert await list_all(stub, 10, saga_id_prefix=ok.upper()) == [ok]
    assert await list_all(stub, 10, saga_type="travel_booking") == [bad, ok]
    assert await list_all(stub, 10, saga_type="order_fulfillment") == []
    assert await list_all(stub, 10, needs_intervention=False) == [bad, ok]
    assert await list_all(stub, 10, needs_intervention=True) == []
    after = timestamp_pb2.Timestamp()
    after.CopyFrom(failed.create_time)
    assert await list_all(stub, 10, create_time_after=after) == [bad]
    assert await list_all(stub, 10, create_time_before=after) == [ok]


@pytest.mark.parametrize(
    "request_fields",
    [
        {"page_token": "not-a-token"},
        {"page_size": -1},
        {"saga_type": "bad\ttype"},
        {"saga_id_prefix": "01a%"},
        {"saga_id_prefix": "0" * 37},
    ],
)
async def test_bad_list_requests_are_invalid_arguments(stub, request_fields):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListSagas(pb.ListSagasRequest(**request_fields), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_page_token_only_works_with_its_own_filters(stub):
    for n in range(3):
        await start(stub, f"token-{n}")
    page = await stub.ListSagas(pb.ListSagasRequest(page_size=1), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListSagas(
            pb.ListSagasRequest(page_size=1, page_token=page.next_page_token, saga_type="x"),
            timeout=5,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_history_is_the_whole_log_in_order_and_pages(stub, store):
    saga_id = await start(stub, "history", car_class=FAIL_CAR_CLASS)
    await wait_terminal(stub, saga_id)
    stored = await store.get_transitions(saga_id)
    history = await stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=5)
    assert [(t.seq, pb.TransitionEvent.Name(t.event), t.step) for t in history.transitions] == [
        (t.seq, f"TRANSITION_EVENT_{t.event.value}", t.step) for t in stored
    ]
    assert history.transitions[-1].saga_status == pb.SAGA_STATUS_FAILED
    assert all(t.actor == "engine" for t in history.transitions)
    paged, token = [], ""
    while True:
        page = await stub.GetSagaHistory(
            pb.GetSagaHistoryRequest(saga_id=saga_id, page_size=4, page_token=token), timeout=5
        )
        paged += [t.seq for t in page.transitions]
        token = page.next_page_token
        if not token:
            break
    assert paged == [t.seq for t in stored]


async def collect(stub, saga_id: str, after_seq: int = 0) -> list[pb.Transition]:
    return [
        reply.transition
        async for reply in stub.WatchSaga(
            pb.WatchSagaRequest(saga_id=saga_id, after_seq=after_seq), timeout=30
        )
    ]


async def test_watch_from_the_start_and_from_the_middle(stub):
    saga_id = await start(stub, "watch")
    live = await collect(stub, saga_id)
    assert [t.seq for t in live] == list(range(1, len(live) + 1))
    assert live[-1].event == pb.TRANSITION_EVENT_SAGA_COMPLETED
    rest = await collect(stub, saga_id, after_seq=3)
    assert [t.seq for t in rest] == [t.seq for t in live[3:]]
    assert await collect(stub, saga_id, after_seq=len(live)) == []


async def test_watch_of_an_unknown_saga_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub, "00000000-0000-4000-8000-000000000000")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.postgres
@pytest.mark.slow
async def test_watch_on_one_replica_follows_a_takeover_by_another(tmp_path, postgres_url):
    lease = {"SAGA_LEASE_SECONDS": "1"}
    slow = participants_process(
        tmp_path,
        ["flight", "hotel", "car_rental", "payment", "inventory", "shipping", "notification"],
        ["--latency-ms", "400"],
        name="slow",
    )
    driver = watcher = None
    try:
        addresses = slow.start().info["services"]
        driver = orchestrator_process(tmp_path, postgres_url, addresses, env=lease, name="driver")
        watcher = orchestrator_process(tmp_path, postgres_url, addresses, env=lease, name="watcher")
        driver.start()
        watcher.start()
        async with (
            grpc.aio.insecure_channel(driver.address) as driving,
            grpc.aio.insecure_channel(watcher.address) as watching,
        ):
            saga_id = await start(pb_grpc.SagaOrchestratorStub(driving), "takeover")
            watcher_stub = pb_grpc.SagaOrchestratorStub(watching)
            watch = asyncio.create_task(collect(watcher_stub, saga_id))
            # Kill the driver while the bookings are in flight (the participants are slow).
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                saga = await watcher_stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
                if any(s.status == pb.STEP_STATUS_STARTED for s in saga.steps):
                    break
                assert asyncio.get_running_loop().time() < deadline, "no step ever started"
                await asyncio.sleep(0.02)
            driver.kill()
            transitions = await watch
    finally:
        for process in (driver, watcher):
            if process is not None:
                process.kill()
        slow.stop()
    assert [t.seq for t in transitions] == list(range(1, len(transitions) + 1))
    assert transitions[-1].event == pb.TRANSITION_EVENT_SAGA_COMPLETED
    assert any("restart" in t.error for t in transitions), "the survivor resent a step"
