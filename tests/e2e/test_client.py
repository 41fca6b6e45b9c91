"""The Python client against real orchestrator processes: typed output, the failure,
an orchestrator killed and restarted under a waiting `result()`, idempotent starts and
deadlines; async and sync."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.client import (
    ClientError,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    SagaClient,
    SagaFailed,
)
from orchestrator.client.sync_client import SyncSagaClient
from orchestrator.core.payload import parse_input
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.v1 import orchestrator_pb2 as pb
from tests.e2e.conftest import FAIL_CAR_CLASS
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process

pytestmark = pytest.mark.e2e


def trip(**changes: object) -> TravelBookingInput:
    message = parse_input(TravelBookingInput, {**travel(), **changes})
    assert isinstance(message, TravelBookingInput)
    return message


async def test_execute_returns_the_typed_output(orchestrator):
    async with SagaClient(orchestrator.address) as client:
        booked = await client.execute(trip(), correlation_id="client-ok", timeout=30)
        assert isinstance(booked, TravelBookingOutput)
        assert booked.booking_id and booked.reservation_id and booked.rental_id
        assert booked.payment_id


async def test_execute_of_a_failing_saga_raises_saga_failed_with_the_failure(orchestrator):
    async with SagaClient(orchestrator.address) as client:
        with pytest.raises(SagaFailed) as raised:
            await client.execute(
                trip(car_class=FAIL_CAR_CLASS), correlation_id="client-fail", timeout=30
            )
    failed = raised.value
    assert failed.failed_step == "rent_car" and failed.failure_reason
    assert failed.saga.status == pb.SAGA_STATUS_FAILED and not failed.needs_intervention


def test_the_sync_client_starts_waits_and_reads_like_the_async_one(orchestrator):
    with SyncSagaClient(orchestrator.address) as client:
        handle = client.start(trip(), correlation_id="client-sync", idempotency_key="sync-1")
        booked = handle.result(timeout=30)
        assert isinstance(booked, TravelBookingOutput) and booked.payment_id
        again = client.start(trip(), correlation_id="client-sync", idempotency_key="sync-1")
        assert again.saga_id == handle.saga_id and handle.created and not again.created
        events = [r.transition.event for r in client.watch(handle.saga_id)]
        assert events[0] == pb.TRANSITION_EVENT_SAGA_STARTED
        assert events[-1] == pb.TRANSITION_EVENT_SAGA_COMPLETED
        assert [t.event for t in client.history(handle.saga_id)] == events
        with pytest.raises(NotFound):
            client.get("00000000-0000-4000-8000-000000000001")


async def test_an_idempotent_start_returns_the_same_saga(orchestrator):
    async with SagaClient(orchestrator.address) as client:
        first = await client.start(trip(), correlation_id="client-idem", idempotency_key="k-1")
        second = await client.start(trip(), correlation_id="client-idem", idempotency_key="k-1")
        assert first.created and not second.created
        assert second.saga_id == first.saga_id
        assert await first.result(timeout=30) == await second.result(timeout=30)


async def test_a_bad_input_is_an_invalid_request_naming_the_field(orchestrator):
    bad = trip()
    bad.ClearField("hotel_id")
    async with SagaClient(orchestrator.address) as client:
        with pytest.raises(InvalidRequest) as raised:
            await client.start(bad, correlation_id="client-bad")
    assert "hotel_id" in str(raised.value) and raised.value.reason == "INVALID_PAYLOAD"


def port_of(process: ChildProcess) -> int:
    """The port a started process was given by the OS (it listened on port 0)."""
    return int(process.address.rsplit(":", 1)[1])


def orchestrator_at(
    workdir: Path, port: int, database_url: str, addresses: dict[str, str], **env: str
) -> ChildProcess:
    """An orchestrator process on `port` (0: one the OS picks); a successor takes its
    predecessor's `port_of`, so a client's channel reaches it at the same address."""
    process = orchestrator_process(
        workdir,
        database_url,
        addresses,
        env={"SAGA_LEASE_SECONDS": "1", **env},
        name=env.get("SAGA_FAILPOINT", "survivor").replace(":", "-"),
    )
    process.argv[process.argv.index("127.0.0.1:0")] = f"127.0.0.1:{port}"
    return process


def wait_exit(process: ChildProcess, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := process.returncode) is None:
        assert time.monotonic() < deadline, process.log_tail()
        time.sleep(0.05)
    return code


async def test_result_survives_the_orchestrator_killed_and_restarted(
    tmp_path, database_url, participants
):
    """The orchestrator dies (as by SIGKILL) with the payment's reply not yet committed;
    the waiting result() reconnects to its successor on the same address."""
    addresses = participants.info["services"]
    doomed = orchestrator_at(
        tmp_path, 0, database_url, addresses, SAGA_FAILPOINT="reply_received:4"
    )
    survivor: ChildProcess | None = None
    try:
        doomed.start()
        survivor = orchestrator_at(tmp_path, port_of(doomed), database_url, addresses)
        async with SagaClient(doomed.address) as client:
            handle = await client.start(trip(), correlation_id="client-kill")
            waiting = asyncio.create_task(handle.result(timeout=60))
            assert await asyncio.to_thread(wait_exit, doomed) == 137
            assert not waiting.done()
            survivor.start()
            booked = await waiting
        assert isinstance(booked, TravelBookingOutput) and booked.payment_id
    finally:
        doomed.kill()
        if survivor is not None:
            survivor.stop()


async def test_result_honours_its_deadline_while_the_orchestrator_is_gone(
    tmp_path, database_url, participants
):
    doomed = orchestrator_at(
        tmp_path,
        0,
        database_url,
        participants.info["services"],
        SAGA_FAILPOINT="reply_received:1",
    )
    try:
        doomed.start()
        async with SagaClient(doomed.address) as client:
            handle = await client.start(trip(), correlation_id="client-deadline")
            assert await asyncio.to_thread(wait_exit, doomed) == 137
            began = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await handle.result(timeout=1.5)
            assert time.monotonic() - began < 5
    finally:
        with contextlib.suppress(Exception):
            doomed.kill()


async def test_a_participant_refusing_connections_is_named_with_its_address(
    tmp_path, database_url, participants
):
    """A refused connection is reported as such, not as gRPC's bare deadline."""
    # Bound and never listening: connections to it are refused, and no other process
    # (a test running beside this one) can take the port meanwhile.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    closed = f"127.0.0.1:{held.getsockname()[1]}"
    addresses = {**participants.info["services"], "flight": closed}
    process = orchestrator_process(tmp_path, database_url, addresses, name="no-flight")
    try:
        process.start()
        async with SagaClient(process.address) as client:
            handle = await client.start(trip(), correlation_id="client-refused")
            async for response in client.watch(handle.saga_id, within=30):
                row = response.transition
                if row.event == pb.TRANSITION_EVENT_STEP_RETRY_SCHEDULED:
                    break
        assert row.step == "book_flight"
        assert row.error == f"UNAVAILABLE: participant flight unreachable at {closed} " + (
            "(connection refused)"
        )
        log = process.log_file.read_text()
        assert "action attempt 1 failed" in log and "attempt 2 at" in log
    finally:
        process.stop()
        held.close()


async def test_an_ambiguous_short_id_is_answered_with_the_candidates(orchestrator):
    async with SagaClient(orchestrator.address) as client:
        ids = [(await client.start(trip(), correlation_id=f"short-{n}")).saga_id for n in range(17)]
        last = [saga_id[-1] for saga_id in ids]
        shared = next(char for char in last if last.count(char) > 1)  # 17 ids, 16 hex digits
        with pytest.raises(InvalidRequest) as raised:
            await client.resolve_saga_id(shared)
        for saga_id in ids:
            assert (saga_id in str(raised.value)) == saga_id.endswith(shared)
        assert await client.resolve_saga_id(ids[3][-12:]) == ids[3]


async def test_list_sagas_iterates_every_page_of_what_the_filters_match(orchestrator):
    correlation_id = f"list-{uuid.uuid4()}"
    async with SagaClient(orchestrator.address) as client:
        before = datetime.now(UTC)
        started = [
            (await client.start(trip(), correlation_id=correlation_id)).saga_id for _ in range(5)
        ]
        await client.wait_all(started, 30)
        listed = [
            saga.saga_id
            async for saga in client.list_sagas(correlation_id=correlation_id, page_size=2)
        ]
        assert sorted(listed) == sorted(started)  # newest first; ids made in one ms may tie
        pages, token = [], ""
        while True:
            page = await client.list_saga_page(
                correlation_id=correlation_id, page_size=2, page_token=token
            )
            pages.append([saga.saga_id for saga in page.sagas])
            if not (token := page.next_page_token):
                break
        assert [len(page) for page in pages] == [2, 2, 1]
        assert [saga_id for page in pages for saga_id in page] == listed
        filters = {"correlation_id": correlation_id, "saga_type": "travel_booking"}
        completed = client.list_sagas(status=pb.SAGA_STATUS_COMPLETED, **filters)
        assert sorted([saga.saga_id async for saga in completed]) == sorted(started)
        assert [s async for s in client.list_sagas(status=pb.SAGA_STATUS_FAILED, **filters)] == []
        assert [s async for s in client.list_sagas(created_before=before, **filters)] == []
        since = [s.saga_id async for s in client.list_sagas(created_after=before, **filters)]
        assert sorted(since) == sorted(started)
        with pytest.raises(TypeError, match="stauts"):
            await client.list_saga_page(stauts=pb.SAGA_STATUS_FAILED)  # type: ignore[call-arg]


async def test_a_handle_started_with_an_output_type_returns_that_type(orchestrator):
    async with SagaClient(orchestrator.address) as client:
        handle = await client.start(
            trip(), correlation_id="client-typed", output_type=TravelBookingOutput
        )
        assert handle.output_type is TravelBookingOutput
        booked = await handle.result(timeout=30)
        assert isinstance(booked, TravelBookingOutput) and booked.payment_id
        again = await client.handle(handle.saga_id, TravelBookingOutput).result(timeout=5)
        assert again == booked
        with pytest.raises(ClientError, match=r"TravelBookingOutput, not saga\.v1\.Saga"):
            await client.handle(handle.saga_id, pb.Saga).result(timeout=5)


def test_the_sync_client_has_the_async_ones_starts_waits_and_look_ups(orchestrator):
    correlation_id = f"sync-twins-{uuid.uuid4()}"
    with SyncSagaClient(orchestrator.address) as client:
        handle = client.start_json(
            "travel_booking", travel(), correlation_id=correlation_id, idempotency_key="twin-1"
        )
        seen: list[int] = []
        followed = client.follow(
            handle.saga_id, within=30, on_transition=lambda t: seen.append(t.seq)
        )
        assert followed.status == pb.SAGA_STATUS_COMPLETED
        assert seen and seen == sorted(set(seen))
        assert client.wait(handle.saga_id, 5) == followed
        (batch_answer,) = client.start_batch(
            [
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id=correlation_id,
                    idempotency_key="twin-1",
                    payload=struct(travel()),
                )
            ]
        )
        assert not isinstance(batch_answer, ClientError)
        assert batch_answer.saga_id == handle.saga_id and not batch_answer.created
        ended, all_ended = client.wait_all([handle.saga_id], 5)
        assert all_ended and ended[handle.saga_id] == followed
        assert client.resolve_saga_id(handle.saga_id[-12:]) == handle.saga_id
        listed = client.list_sagas(correlation_id=correlation_id, page_size=1)
        assert [saga.saga_id for saga in listed] == [handle.saga_id]
        page = client.list_saga_page(correlation_id=correlation_id)
        assert [saga.saga_id for saga in page.sagas] == [handle.saga_id]
        assert page.next_page_token == ""
        client.reconnect()
        assert client.get(handle.saga_id).saga_id == handle.saga_id
        assert client.server_types().FindMessageTypeByName("saga.examples.v1.TravelBookingOutput")
