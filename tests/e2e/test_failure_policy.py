"""Failure policy end to end: retries, deadlines, pivots, stuck compensations and the
operator calls that unstick them. Real processes; outcomes read from the participants'
state and the transition log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from orchestrator.core.records import TransitionEvent, TransitionRecord
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POLICY_ENV = {"SAGA_DEFINITIONS": "tests.support.policy_sagas", "SAGA_LEASE_SECONDS": "1"}
SERVICES = ("hotel", "flight", "payment")


@dataclass
class Rig:
    """Participants (hotel, flight, payment: each its own process) and one orchestrator."""

    workdir: Path
    database_url: str
    participants: dict[str, ChildProcess]
    orchestrator: ChildProcess
    stub: pb_grpc.SagaOrchestratorStub

    @property
    def addresses(self) -> dict[str, str]:
        return {name: p.address for name, p in self.participants.items()}

    async def start(self, saga_type: str, **payload) -> str:
        reply = await self.stub.StartSaga(
            pb.StartSagaRequest(
                saga_type=saga_type,
                correlation_id=f"{saga_type}-test",
                payload=struct(travel(**payload)),
            ),
            timeout=5,
        )
        return reply.saga_id

    async def log(self, saga_id: str) -> list[TransitionRecord]:
        store = open_store(self.database_url)
        await store.open()
        try:
            return await store.get_transitions(saga_id)
        finally:
            await store.close()

    def restart_participant(self, name: str, args: Sequence[str] = ()) -> None:
        """Stop one participant and start it again on the same port and state."""
        old = self.participants[name]
        port = old.address.rsplit(":", 1)[1]
        old.stop()
        self.participants[name] = participants_process(
            self.workdir, [name], ["--port", port, *args], name=f"{name}-again"
        ).start()


@contextlib.asynccontextmanager
async def rig(tmp_path, database_url, **flags: Sequence[str]) -> AsyncIterator[Rig]:
    processes: dict[str, ChildProcess] = {}
    orchestrator = None
    opened: Rig | None = None
    try:
        for name in SERVICES:
            processes[name] = participants_process(
                tmp_path, [name], flags.get(name, ()), name=name
            ).start()
        addresses = {name: p.address for name, p in processes.items()}
        orchestrator = orchestrator_process(
            tmp_path, database_url, addresses, env=POLICY_ENV
        ).start()
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            opened = Rig(
                tmp_path,
                database_url,
                processes,
                orchestrator,
                pb_grpc.SagaOrchestratorStub(channel),
            )
            yield opened
    finally:
        # A test may have replaced the orchestrator (a restart): stop whichever runs now.
        for process in {orchestrator, opened.orchestrator if opened else None} - {None}:
            process.stop()
        for process in processes.values():
            process.stop()


def events(log: list[TransitionRecord]) -> list[tuple[TransitionEvent, str]]:
    return [(t.event, t.step) for t in log]


async def wait_for(condition, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def action_settled(rig: Rig, service: str, method: str, saga_id: str) -> None:
    """Wait until the participant has ended a delivery of the saga's action, however late:
    applied, refused by a compensation's tombstone, or cancelled by the orchestrator's
    deadline before it was applied. Each end is a line of the participant's log; after
    the first, the action's idempotency key holds its final answer (or, cancelled,
    nothing, and the tombstone refuses it from then on)."""
    marker = f"{service} {method} saga={saga_id} key="

    async def ended() -> bool:
        return marker in rig.participants[service].log_file.read_text()

    await wait_for(ended, f"{service} to end a delivery of {method} for saga {saga_id}")


async def test_unavailable_twice_then_success_completes_with_one_effect(tmp_path, database_url):
    async with rig(tmp_path, database_url, flight=["--unavailable-first", "2"]) as r:
        saga_id = await r.start("retry_probe")
        saga = await wait_terminal(r.stub, saga_id)
        effects = await effects_of(r.addresses, saga_id)

    assert saga.status == pb.SAGA_STATUS_COMPLETED
    flight = next(s for s in saga.steps if s.name == "book_flight")
    assert flight.attempts == 3
    assert effects["flight"] == Counter({"ACTIVE": 1})


async def test_participant_that_never_answers_in_time_is_compensated_never_booked(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url, flight=["--latency-ms", "1500"]) as r:
        saga_id = await r.start("impatient")
        saga = await wait_terminal(r.stub, saga_id)
        await action_settled(r, "flight", "BookFlight", saga_id)
        effects = await effects_of(r.addresses, saga_id)
        log = await r.log(saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED and saga.failed_step == "book_flight"
    assert "DEADLINE_EXCEEDED" in saga.failure_reason
    compensated = [t.step for t in log if t.event is TransitionEvent.COMPENSATION_COMPLETED]
    assert compensated == ["book_flight", "book_hotel"], "a timeout may have happened: undo it"
    assert effects["hotel"] == Counter({"CANCELLED": 1})
    assert effects["flight"] == Counter(), "the late booking met the cancellation's tombstone"


async def test_compensation_failing_twice_then_succeeding_finishes_the_saga(tmp_path, database_url):
    async with rig(
        tmp_path,
        database_url,
        hotel=["--compensation-failures", "2"],
        flight=["--fail-ids", "NO-FLY"],
    ) as r:
        saga_id = await r.start("retry_probe", flight="NO-FLY")
        saga = await wait_terminal(r.stub, saga_id)
        effects = await effects_of(r.addresses, saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED and not saga.needs_intervention
    hotel = next(s for s in saga.steps if s.name == "book_hotel")
    assert hotel.status == pb.STEP_STATUS_COMPENSATED and hotel.compensation_attempts == 3
    assert effects["hotel"] == Counter({"CANCELLED": 1})


async def test_compensation_that_always_fails_waits_for_an_operator_to_resolve_it(
    tmp_path, database_url
):
    async with rig(
        tmp_path,
        database_url,
        hotel=["--compensation-failures", "-1"],
        flight=["--fail-ids", "NO-FLY"],
    ) as r:
        saga_id = await r.start("retry_probe", flight="NO-FLY")
        stuck = await wait_terminal(r.stub, saga_id)
        listed = await r.stub.ListSagas(pb.ListSagasRequest(needs_intervention=True), timeout=5)

        resolved = await r.stub.ResolveStep(
            pb.ResolveStepRequest(
                saga_id=saga_id,
                step="book_hotel",
                reason="refunded by phone, ticket 123",
                requested_by="alice",
            ),
            timeout=5,
        )
        done = await wait_terminal(r.stub, saga_id)
        log = await r.log(saga_id)

    assert stuck.status == pb.SAGA_STATUS_FAILED and stuck.needs_intervention
    hotel = next(s for s in stuck.steps if s.name == "book_hotel")
    assert hotel.status == pb.STEP_STATUS_COMPENSATION_FAILED
    assert hotel.compensation_attempts == 4 and "UNAVAILABLE" in hotel.error
    assert [s.saga_id for s in listed.sagas] == [saga_id]
    assert resolved.saga.status == pb.SAGA_STATUS_COMPENSATING
    assert done.status == pb.SAGA_STATUS_FAILED and not done.needs_intervention
    resolution = next(t for t in log if t.event is TransitionEvent.STEP_RESOLVED)
    assert (resolution.step, resolution.actor) == ("book_hotel", "operator:alice")
    assert resolution.reason == "refunded by phone, ticket 123"
    assert events(log)[-1] == (TransitionEvent.SAGA_FAILED, "")


async def test_retry_resumes_a_stuck_compensation_once_the_participant_is_back(
    tmp_path, database_url
):
    async with rig(
        tmp_path,
        database_url,
        hotel=["--compensation-failures", "-1"],
        flight=["--fail-ids", "NO-FLY"],
    ) as r:
        saga_id = await r.start("retry_probe", flight="NO-FLY")
        await wait_terminal(r.stub, saga_id)
        r.restart_participant("hotel")
        await r.stub.RetrySaga(
            pb.RetrySagaRequest(saga_id=saga_id, reason="hotel fixed", requested_by="bob"),
            timeout=5,
        )
        done = await wait_terminal(r.stub, saga_id)
        effects = await effects_of(r.addresses, saga_id)

    assert done.status == pb.SAGA_STATUS_FAILED and not done.needs_intervention
    assert effects["hotel"] == Counter({"CANCELLED": 1})


async def test_abort_mid_run_compensates_and_is_logged_with_who_and_why(tmp_path, database_url):
    slow = ["--latency-ms", "800"]
    async with rig(tmp_path, database_url, hotel=slow, flight=slow) as r:
        saga_id = await r.start("retry_probe")

        async def flight_in_flight():
            saga = await r.stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
            return saga.steps[1].status == pb.STEP_STATUS_STARTED

        await wait_for(flight_in_flight, "the flight step to start")
        aborted = await r.stub.AbortSaga(
            pb.AbortSagaRequest(saga_id=saga_id, reason="customer called", requested_by="carol"),
            timeout=5,
        )
        done = await wait_terminal(r.stub, saga_id)
        await action_settled(r, "flight", "BookFlight", saga_id)
        effects = await effects_of(r.addresses, saga_id)
        log = await r.log(saga_id)
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await r.stub.AbortSaga(
                pb.AbortSagaRequest(saga_id=saga_id, reason="twice", requested_by="carol"),
                timeout=5,
            )

    assert aborted.saga.status == pb.SAGA_STATUS_COMPENSATING
    assert done.status == pb.SAGA_STATUS_FAILED and "customer called" in done.failure_reason
    abort = next(t for t in log if t.event is TransitionEvent.SAGA_ABORTED)
    assert (abort.actor, abort.reason) == ("operator:carol", "customer called")
    assert effects["hotel"] == Counter({"CANCELLED": 1})
    assert effects["flight"].get("ACTIVE", 0) == 0
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"reason": "", "requested_by": "dan"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"reason": "why", "requested_by": ""}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_operator_calls_need_a_reason_and_a_name(
    tmp_path, database_url, request_fields, code
):
    async with rig(tmp_path, database_url) as r:
        saga_id = await r.start("retry_probe")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await r.stub.AbortSaga(
                pb.AbortSagaRequest(saga_id=saga_id, **request_fields), timeout=5
            )
        with pytest.raises(grpc.aio.AioRpcError) as not_stuck:
            await r.stub.RetrySaga(
                pb.RetrySagaRequest(saga_id=saga_id, reason="r", requested_by="dan"), timeout=5
            )
        await wait_terminal(r.stub, saga_id)
    assert raised.value.code() == code
    assert not_stuck.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_saga_deadline_stops_forward_progress_and_compensates(tmp_path, database_url):
    # The hotel answers at once, the flight only after the one-second deadline.
    async with rig(tmp_path, database_url, flight=["--latency-ms", "1500"]) as r:
        saga_id = await r.start("deadline_probe")
        saga = await wait_terminal(r.stub, saga_id)
        # The late flight delivery arrives and meets the tombstone.
        await action_settled(r, "flight", "BookFlight", saga_id)
        effects = await effects_of(r.addresses, saga_id)
        log = await r.log(saga_id)

    assert saga.status == pb.SAGA_STATUS_FAILED
    assert "deadline" in saga.failure_reason
    assert saga.HasField("deadline_time")
    assert TransitionEvent.SAGA_DEADLINE_PASSED in [t.event for t in log]
    assert effects["hotel"] == Counter({"CANCELLED": 1})
    assert effects["flight"].get("ACTIVE", 0) == 0


async def test_restart_keeps_a_scheduled_retry(tmp_path, database_url):
    async with rig(tmp_path, database_url, flight=["--unavailable-first", "1"]) as r:
        saga_id = await r.start("patient")

        async def scheduled():
            saga = await r.stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
            step = saga.steps[0]
            return step if step.HasField("next_attempt_time") else None

        step = await wait_for(scheduled, "a retry to be scheduled")
        due = step.next_attempt_time.ToDatetime()
        r.orchestrator.kill()
        r.orchestrator = orchestrator_process(
            tmp_path, database_url, r.addresses, env=POLICY_ENV, name="restarted"
        ).start()
        async with grpc.aio.insecure_channel(r.orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            saga = await wait_terminal(stub, saga_id)
        log = await r.log(saga_id)

    assert saga.status == pb.SAGA_STATUS_COMPLETED
    assert saga.steps[0].attempts == 2, "the restart neither reset nor added attempts"
    completed = next(t for t in log if t.event is TransitionEvent.STEP_COMPLETED)
    assert completed.time.replace(tzinfo=None) >= due, "the schedule was not skipped"


async def test_after_the_pivot_a_failing_step_is_retried_forward_never_compensated(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url, flight=["--fail-ids", "NO-FLY"]) as r:
        saga_id = await r.start("pivot_probe", flight="NO-FLY")
        halted = await wait_terminal(r.stub, saga_id)
        effects = await effects_of(r.addresses, saga_id)
        await r.stub.ResolveStep(
            pb.ResolveStepRequest(
                saga_id=saga_id,
                step="book_flight",
                reason="booked by the agent by hand",
                requested_by="erin",
            ),
            timeout=5,
        )
        done = await wait_terminal(r.stub, saga_id)
        log = await r.log(saga_id)

    assert halted.status == pb.SAGA_STATUS_FAILED and halted.needs_intervention
    assert halted.failed_step == "book_flight"
    flight = next(s for s in halted.steps if s.name == "book_flight")
    assert flight.attempts == 3, "a retriable step retries even a rejection"
    assert effects["hotel"] == Counter({"ACTIVE": 1}), "nothing before the pivot is undone"
    assert effects["payment"] == Counter({"ACTIVE": 1})
    assert not [t for t in log if t.event is TransitionEvent.COMPENSATION_STARTED]
    assert done.status == pb.SAGA_STATUS_COMPLETED
