"""ExecuteSaga against real orchestrator processes on SQLite and PostgreSQL: the ended
saga in one call, repeats by idempotency key, bad input, the deadline, the waiting
calls' budget, and the client's `execute` across an orchestrator killed and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrator.client import SagaClient
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS
from tests.e2e.test_client import orchestrator_at, port_of, trip, wait_exit
from tests.support.payloads import travel
from tools.processes import ChildProcess, orchestrator_process

pytestmark = pytest.mark.e2e


def execute_request(correlation_id: str, key: str = "", **changes: object) -> pb.ExecuteSagaRequest:
    payload = struct_pb2.Struct()
    payload.update({**travel(), **changes})
    start = pb.StartSagaRequest(
        saga_type="travel_booking",
        correlation_id=correlation_id,
        payload=payload,
        idempotency_key=key,
    )
    return pb.ExecuteSagaRequest(start=start)


async def sagas_of(stub: pb_grpc.SagaOrchestratorStub, correlation_id: str) -> list[pb.Saga]:
    listed = await stub.ListSagas(pb.ListSagasRequest(correlation_id=correlation_id), timeout=5)
    return list(listed.sagas)


async def test_execute_saga_answers_the_completed_saga_and_a_repeat_the_same_one(stub):
    request = execute_request("exec-ok", key="exec-ok-1")

    first = await stub.ExecuteSaga(request, timeout=30)
    again = await stub.ExecuteSaga(request, timeout=30)
    shown = await stub.GetSaga(pb.GetSagaRequest(saga_id=first.saga.saga_id), timeout=5)

    assert first.created and not again.created
    assert first.saga.status == pb.SAGA_STATUS_COMPLETED
    assert first.saga.output.Is(TravelBookingOutput.DESCRIPTOR)
    assert all(step.status == pb.STEP_STATUS_COMPLETED for step in first.saga.steps)
    assert first.saga == shown == again.saga
    assert [s.saga_id for s in await sagas_of(stub, "exec-ok")] == [first.saga.saga_id]


async def test_execute_saga_answers_a_failed_saga_after_its_compensations(stub):
    reply = await stub.ExecuteSaga(
        execute_request("exec-fail", car_class=FAIL_CAR_CLASS), timeout=30
    )

    saga = reply.saga
    assert reply.created and saga.status == pb.SAGA_STATUS_FAILED
    assert saga.failed_step == "rent_car" and not saga.needs_intervention
    compensated = {s.name for s in saga.steps if s.status == pb.STEP_STATUS_COMPENSATED}
    assert compensated == {"book_flight", "book_hotel"}


async def test_execute_saga_with_bad_input_is_invalid_and_stores_nothing(stub):
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.ExecuteSaga(pb.ExecuteSagaRequest(), timeout=5)
    bad = execute_request("exec-bad")
    del bad.start.payload.fields["hotel_id"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ExecuteSaga(bad, timeout=5)

    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "saga_type" in (empty.value.details() or "")
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hotel_id" in (missing.value.details() or "")
    assert await sagas_of(stub, "exec-bad") == []
    served = await stub.ExecuteSaga(execute_request("exec-after-bad"), timeout=30)
    assert served.saga.status == pb.SAGA_STATUS_COMPLETED


@contextlib.asynccontextmanager
async def orchestrator_without_flight(tmp_path, database_url, participants, **env: str):
    """An orchestrator whose flight participant never answers: its sagas wait out each
    attempt of the first step and stay RUNNING. The port listens but nothing accepts or
    speaks on it (a refused connection would fail each attempt at once, and the saga
    would soon be compensating)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(64)
    addresses = {
        **participants.info["services"],
        "flight": f"127.0.0.1:{held.getsockname()[1]}",
    }
    process: ChildProcess = orchestrator_process(
        tmp_path, database_url, addresses, env=env, name="exec-no-flight"
    )
    try:
        process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            yield pb_grpc.SagaOrchestratorStub(channel)
    finally:
        process.stop()
        held.close()


async def test_execute_saga_past_its_deadline_leaves_the_saga_running(
    tmp_path, database_url, participants
):
    async with orchestrator_without_flight(tmp_path, database_url, participants) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.ExecuteSaga(execute_request("exec-late", key="late-1"), timeout=1.0)
        [saga] = await sagas_of(stub, "exec-late")
        repeat = await stub.StartSaga(execute_request("exec-late", key="late-1").start, timeout=5)

    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert saga.status == pb.SAGA_STATUS_RUNNING
    assert repeat.saga_id == saga.saga_id and not repeat.created


async def test_waiting_execute_calls_are_bounded_and_a_refused_one_starts_nothing(
    tmp_path, database_url, participants
):
    async with orchestrator_without_flight(
        tmp_path, database_url, participants, SAGA_MAX_WATCH_STREAMS="1"
    ) as stub:
        waiting = stub.ExecuteSaga(execute_request("exec-1"), timeout=30)
        try:
            for _ in range(200):  # the first call holds its slot once its saga is stored
                if await sagas_of(stub, "exec-1"):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the first ExecuteSaga's saga was never stored")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ExecuteSaga(execute_request("exec-2"), timeout=5)
            assert await sagas_of(stub, "exec-2") == []
        finally:
            waiting.cancel()

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max watch streams" in (refused.value.details() or "")


async def test_client_execute_survives_the_orchestrator_killed_and_restarted(
    tmp_path, database_url, participants
):
    """The orchestrator dies (as by SIGKILL) while `execute` waits; the client sends the
    same request (its own idempotency key) to the successor and gets the one saga's
    output: no second saga."""
    addresses = participants.info["services"]
    doomed = orchestrator_at(
        tmp_path, 0, database_url, addresses, SAGA_FAILPOINT="reply_received:4"
    )
    survivor: ChildProcess | None = None
    try:
        doomed.start()
        survivor = orchestrator_at(tmp_path, port_of(doomed), database_url, addresses)
        async with SagaClient(doomed.address) as client:
            waiting = asyncio.create_task(
                client.execute(trip(), correlation_id="exec-kill", timeout=60)
            )
            assert await asyncio.to_thread(wait_exit, doomed) == 137
            assert not waiting.done()
            survivor.start()
            booked = await waiting
            started = await sagas_of(client.stub, "exec-kill")
        assert isinstance(booked, TravelBookingOutput) and booked.payment_id
        assert len(started) == 1 and started[0].status == pb.SAGA_STATUS_COMPLETED
    finally:
        doomed.kill()
        if survivor is not None:
            survivor.stop()
