"""Asynchronous steps end to end: an orchestrator process, the hotel participant process,
and an airline (served by the test) that accepts a flight and confirms it later through
SagaCallbacks with the token its command carried.

Completed, failed, timed out then completed late, aborted while waiting, completed
before the acceptance was stored, raced by 50 completions, and finished by another
orchestrator after the first was killed while the saga waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from orchestrator.core.records import TransitionEvent
from orchestrator.core.tokens import make_token
from orchestrator.store import open_store
from participants.kit import CompletionRefused, StepCompleter
from saga.participants.common.v1 import callbacks_pb2 as cb
from saga.participants.common.v1 import callbacks_pb2_grpc as cb_grpc
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from saga.v1 import tasks_pb2 as tasks_pb
from saga.v1 import tasks_pb2_grpc as tasks_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_cli import saga_cli
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e]

ENV = {"SAGA_DEFINITIONS": "tests.support.async_sagas", "SAGA_LEASE_SECONDS": "1"}


class Airline(flight_pb2_grpc.FlightServiceServicer):
    """Accepts every booking (the reply only says so) and hands its token to the test;
    records cancellations. `complete_first`, if set, completes the step before replying."""

    def __init__(self) -> None:
        self.tokens: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.cancelled: list[str] = []
        self.keys: list[str] = []
        self.complete_first: cb_grpc.SagaCallbacksStub | None = None

    async def BookFlight(self, request, context):
        token = request.context.completion_token
        self.keys.append(request.context.idempotency_key)
        if self.complete_first is not None:
            await self.complete_first.CompleteStep(complete(token, "early"), timeout=5)
        await self.tokens.put((request.context.saga_id, token))
        return flight_pb2.BookFlightResponse()

    async def CancelFlight(self, request, context):
        self.cancelled.append(request.context.compensated_idempotency_key)
        return flight_pb2.CancelFlightResponse()


def confirmed(booking_id: str = "F-77") -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(flight_pb2.BookFlightResponse(booking_id=booking_id, flight_number="XY1"))
    return packed


def complete(token: str, completion_id: str, result: any_pb2.Any | None = None):
    return cb.CompleteStepRequest(
        token=token, completion_id=completion_id, result=result or confirmed()
    )


@dataclass
class Rig:
    workdir: Path
    database_url: str
    airline: Airline
    hotel: ChildProcess
    addresses: dict[str, str]
    orchestrator: ChildProcess | None = None
    stub: pb_grpc.SagaOrchestratorStub | None = None
    callbacks: cb_grpc.SagaCallbacksStub | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def serve(self, name: str = "orchestrator", **env: str) -> None:
        self.orchestrator = orchestrator_process(
            self.workdir, self.database_url, self.addresses, env={**ENV, **env}, name=name
        ).start()
        channel = grpc.aio.insecure_channel(self.orchestrator.address)
        self.channels.append(channel)
        self.stub = pb_grpc.SagaOrchestratorStub(channel)
        self.callbacks = cb_grpc.SagaCallbacksStub(channel)

    async def start(self, saga_type: str = "async_trip") -> tuple[str, str]:
        """Start a saga; its id and the token its flight command carried."""
        assert self.stub is not None
        reply = await self.stub.StartSaga(
            pb.StartSagaRequest(
                saga_type=saga_type, correlation_id="trip", payload=struct(travel())
            ),
            timeout=5,
        )
        return reply.saga_id, await self.token_of(reply.saga_id)

    async def token_of(self, expected_saga: str) -> str:
        """The token of the next flight command the airline receives (of that saga)."""
        saga_id, token = await asyncio.wait_for(self.airline.tokens.get(), 15)
        assert saga_id == expected_saga
        return token

    async def step(self, saga_id: str, name: str = "confirm_flight") -> pb.Step:
        assert self.stub is not None
        saga = await self.stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
        return next(step for step in saga.steps if step.name == name)

    async def waiting(self, saga_id: str) -> None:
        """Until the flight's acceptance is stored (followed on the saga's watch)."""
        assert self.stub is not None
        stream = self.stub.WatchSaga(pb.WatchSagaRequest(saga_id=saga_id), timeout=15)
        async for update in stream:
            if update.transition.event == pb.TRANSITION_EVENT_STEP_WAITING:
                stream.cancel()
                return

    async def log(self, saga_id: str):
        store = open_store(self.database_url)
        await store.open()
        try:
            return await store.get_transitions(saga_id)
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, database_url: str) -> AsyncIterator[Rig]:
    airline = Airline()
    server = grpc.aio.server()
    flight_pb2_grpc.add_FlightServiceServicer_to_server(airline, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hotel = participants_process(tmp_path, ["hotel"], name="hotel").start()
    opened = Rig(
        tmp_path,
        database_url,
        airline,
        hotel,
        {"hotel": hotel.address, "flight": f"127.0.0.1:{port}"},
    )
    try:
        await opened.serve()
        yield opened
    finally:
        for channel in opened.channels:
            await channel.close()
        if opened.orchestrator is not None:
            opened.orchestrator.stop()
        hotel.stop()
        await server.stop(None)


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_a_completed_step_feeds_its_result_on_and_a_repeat_gets_the_first_answer(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        await r.waiting(saga_id)
        reply = await r.callbacks.CompleteStep(complete(token, "c-1"), timeout=5)
        assert (reply.saga_id, reply.step) == (saga_id, "confirm_flight")
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_COMPLETED
        step = await r.step(saga_id)
        booked = flight_pb2.BookFlightResponse()
        assert step.reply.Unpack(booked) and booked.booking_id == "F-77"
        # The same completion again: OK; another one: refused, naming the first.
        again = await r.callbacks.CompleteStep(complete(token, "c-1"), timeout=5)
        assert again.saga_id == saga_id
        code, details = await status_of(
            r.callbacks.FailStep(
                cb.FailStepRequest(token=token, completion_id="c-2", reason="no"), timeout=5
            )
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "'c-1'" in details
        log = await r.log(saga_id)
        assert [t.event for t in log].count(TransitionEvent.STEP_COMPLETED) == 2  # hotel, flight
        assert token not in r.orchestrator.log_tail(400)


async def test_a_failed_step_compensates_the_hotel(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        await r.callbacks.FailStep(
            cb.FailStepRequest(token=token, completion_id="f-1", reason="no seats"), timeout=5
        )
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_FAILED
        assert "no seats" in saga.failure_reason
        statuses = {s.name: s.status for s in saga.steps}
        assert statuses == {
            "book_hotel": pb.STEP_STATUS_COMPENSATED,
            "confirm_flight": pb.STEP_STATUS_FAILED,
        }


async def test_bad_tokens_and_bad_results_are_refused_and_change_nothing(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        other_saga, other_token = await r.start()
        await r.waiting(saga_id)
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        # The other saga's secret presented for this saga.
        borrowed = make_token(saga_id, 1, other_token.rsplit(".", 1)[1])
        for bad in (forged, "not-a-token", borrowed):
            code, details = await status_of(r.callbacks.CompleteStep(complete(bad, "x"), timeout=5))
            assert code is grpc.StatusCode.PERMISSION_DENIED, details
            assert bad not in details
            code, _ = await status_of(
                r.callbacks.HeartbeatStep(cb.HeartbeatStepRequest(token=bad), timeout=5)
            )
            assert code is grpc.StatusCode.PERMISSION_DENIED
        wrong = any_pb2.Any()
        wrong.Pack(flight_pb2.CancelFlightResponse())
        code, details = await status_of(
            r.callbacks.CompleteStep(complete(token, "x", wrong), timeout=5)
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "BookFlightResponse" in details
        huge = confirmed("F" * 300_000)
        code, details = await status_of(
            r.callbacks.CompleteStep(complete(token, "x", huge), timeout=5)
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "bytes" in details
        assert (await r.step(saga_id)).status == pb.STEP_STATUS_WAITING
        # The other saga's token still completes the other saga only.
        await r.callbacks.CompleteStep(complete(other_token, "ok"), timeout=5)
        assert (await wait_terminal(r.stub, other_saga)).status == pb.SAGA_STATUS_COMPLETED
        assert (await r.step(saga_id)).status == pb.STEP_STATUS_WAITING


async def test_a_timed_out_step_is_compensated_and_a_late_completion_is_refused_and_logged(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start("hasty_trip")
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_FAILED
        assert "no completion within 1s" in saga.failure_reason
        assert f"{saga_id}:confirm_flight" in r.airline.cancelled
        code, details = await status_of(
            r.callbacks.CompleteStep(complete(token, "late"), timeout=5)
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "no completion" in details
        log = await r.log(saga_id)
        late = [t for t in log if t.event is TransitionEvent.STEP_COMPLETED_LATE]
        assert len(late) == 1 and "late" in late[0].reason


async def test_an_abort_while_waiting_asks_the_heartbeat_to_stop_and_compensates(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start("heartbeat_trip")
        await r.waiting(saga_id)
        beat = await r.callbacks.HeartbeatStep(cb.HeartbeatStepRequest(token=token), timeout=5)
        assert not beat.cancel_requested and beat.HasField("wait_deadline")
        await r.stub.AbortSaga(
            pb.AbortSagaRequest(saga_id=saga_id, reason="customer called", requested_by="alice"),
            timeout=5,
        )
        beat = await r.callbacks.HeartbeatStep(cb.HeartbeatStepRequest(token=token), timeout=5)
        assert beat.cancel_requested
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_FAILED
        assert f"{saga_id}:confirm_flight" in r.airline.cancelled


async def test_a_completion_before_the_acceptance_is_stored_counts(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        r.airline.complete_first = r.callbacks
        saga_id, _ = await r.start()
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_COMPLETED
        assert (await r.step(saga_id)).status == pb.STEP_STATUS_COMPLETED


async def test_fifty_concurrent_completions_one_wins_and_one_transition(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        await r.waiting(saga_id)
        answers = await asyncio.gather(
            *(
                status_of(r.callbacks.CompleteStep(complete(token, f"c-{n}"), timeout=15))
                for n in range(50)
            )
        )
        codes = [code for code, _ in answers]
        assert codes.count(grpc.StatusCode.OK) == 1, answers
        assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 49, answers
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
        log = await r.log(saga_id)
        flight = [t for t in log if t.step == "confirm_flight"]
        assert [t.event for t in flight].count(TransitionEvent.STEP_COMPLETED) == 1


async def test_a_saga_waiting_when_its_orchestrator_is_killed_is_finished_by_another(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        await r.waiting(saga_id)
        r.orchestrator.kill()
        await r.serve("orchestrator-again")
        await r.callbacks.CompleteStep(complete(token, "c-1"), timeout=5)
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
        # And a wait that runs out while nobody drives the saga is timed out by the replica.
        saga_id, _ = await r.start("hasty_trip")
        await r.waiting(saga_id)
        r.orchestrator.kill()
        await r.serve("orchestrator-third")
        saga = await wait_terminal(r.stub, saga_id)
        assert saga.status == pb.SAGA_STATUS_FAILED and "no completion" in saga.failure_reason


async def test_a_crash_after_the_acceptance_and_before_waiting_is_stored_loses_nothing(
    tmp_path, database_url
):
    """The orchestrator dies once the airline accepted, before WAITING is committed: the
    next one sends the command again with a new token; the first still completes it."""
    async with rig(tmp_path, database_url) as r:
        r.orchestrator.stop()
        await r.serve("orchestrator-crashing", SAGA_FAILPOINT="step_accepted")
        saga_id, first = await r.start()
        assert r.orchestrator.wait(15) == 137
        await r.serve("orchestrator-again")
        second = await r.token_of(saga_id)
        assert second != first
        await r.waiting(saga_id)
        await r.callbacks.CompleteStep(complete(first, "c-1"), timeout=5)
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED


async def test_the_kits_completer_completes_once_and_its_retries_get_the_first_answer(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        saga_id, token = await r.start()
        await r.waiting(saga_id)
        async with StepCompleter(r.orchestrator.address) as completer:
            assert not await completer.heartbeat(token)
            booked = flight_pb2.BookFlightResponse(booking_id="F-9")
            await completer.complete(token, booked)
            await completer.complete(token, booked)  # a retry: the same derived id
            with pytest.raises(CompletionRefused) as refused:
                await completer.fail(token, "too late to change my mind")
            assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(CompletionRefused) as denied:
                await completer.complete(token + "x", booked)
            assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED


async def test_a_person_lists_approves_and_rejects_waiting_steps_and_the_log_names_them(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url) as r:
        approved, _ = await r.start()
        rejected, _ = await r.start()
        await r.waiting(approved)
        await r.waiting(rejected)
        tasks = tasks_grpc.SagaTasksStub(r.channels[-1])
        listed = await tasks.ListTasks(tasks_pb.ListTasksRequest(), timeout=5)
        assert [(t.saga_id, t.step) for t in listed.tasks] == [
            (approved, "confirm_flight"),
            (rejected, "confirm_flight"),
        ]
        assert listed.tasks[0].result_type == "saga.participants.flight.v1.BookFlightResponse"
        await tasks.CompleteTask(
            tasks_pb.CompleteTaskRequest(
                saga_id=approved,
                step="confirm_flight",
                result_json='{"bookingId": "F-manual"}',
                reason="the airline confirmed by phone",
                requested_by="maria",
            ),
            timeout=5,
        )
        await tasks.RejectTask(
            tasks_pb.RejectTaskRequest(
                saga_id=rejected,
                step="confirm_flight",
                reason="over the travel budget",
                requested_by="maria",
            ),
            timeout=5,
        )
        assert (await wait_terminal(r.stub, approved)).status == pb.SAGA_STATUS_COMPLETED
        failed = await wait_terminal(r.stub, rejected)
        assert failed.status == pb.SAGA_STATUS_FAILED
        assert "rejected by approver:maria: over the travel budget" in failed.failure_reason
        booked = flight_pb2.BookFlightResponse()
        assert (await r.step(approved)).reply.Unpack(booked)
        assert booked.booking_id == "F-manual"
        completed = [t for t in await r.log(approved) if t.event is TransitionEvent.STEP_COMPLETED][
            -1
        ]
        assert (completed.actor, completed.reason) == (
            "approver:maria",
            "the airline confirmed by phone",
        )
        assert not (await tasks.ListTasks(tasks_pb.ListTasksRequest(), timeout=5)).tasks


async def test_the_cli_lists_tasks_and_completes_and_rejects_them(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        approved, _ = await r.start()
        rejected, _ = await r.start()
        await r.waiting(approved)
        await r.waiting(rejected)
        address = ["--address", r.orchestrator.address]
        listed = await asyncio.to_thread(saga_cli, "tasks", "--json", *address)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [row["sagaId"] for row in rows] == [approved, rejected]
        done = await asyncio.to_thread(
            saga_cli, "complete", approved, "confirm_flight", "--result", '{"bookingId": "F-cli"}',
            "--reason", "confirmed by phone", "--by", "maria", *address,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        refused = await asyncio.to_thread(
            saga_cli, "reject", rejected, "confirm_flight", "--reason", "over budget",
            "--by", "maria", *address,
        )  # fmt: skip
        assert refused.returncode == 0, refused.stderr
        assert (await wait_terminal(r.stub, approved)).status == pb.SAGA_STATUS_COMPLETED
        assert (await wait_terminal(r.stub, rejected)).status == pb.SAGA_STATUS_FAILED
        again = await asyncio.to_thread(
            saga_cli, "reject", approved, "confirm_flight", "--reason", "changed my mind",
            "--by", "maria", *address,
        )  # fmt: skip
        assert again.returncode != 0 and "FAILED_PRECONDITION" in again.stderr


async def test_after_an_operators_retry_the_previous_waits_token_is_denied(tmp_path, database_url):
    async with rig(tmp_path, database_url) as r:
        saga_id, first = await r.start("supervised_trip")
        halted = await wait_terminal(r.stub, saga_id)
        assert halted.needs_intervention and "no completion within 1s" in halted.failure_reason
        await r.stub.RetrySaga(
            pb.RetrySagaRequest(saga_id=saga_id, reason="airline is back", requested_by="ops"),
            timeout=5,
        )
        second = await r.token_of(saga_id)
        code, _ = await status_of(r.callbacks.CompleteStep(complete(first, "old"), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        await r.callbacks.CompleteStep(complete(second, "new"), timeout=5)
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
