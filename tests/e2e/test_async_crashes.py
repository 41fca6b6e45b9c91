"""Crashes around asynchronous steps, with real processes (the rig of test_async_steps).

The orchestrator dies after a completion is committed and before its caller is answered;
after an asynchronous step started and before its command left (before and after its
token was drawn); and the replica owning waiting sagas is killed while another runs on
the same PostgreSQL database.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from orchestrator.core.tokens import token_digest
from orchestrator.store import open_store
from saga.participants.common.v1 import callbacks_pb2 as cb
from saga.participants.common.v1 import callbacks_pb2_grpc as cb_grpc
from saga.participants.flight.v1 import flight_pb2
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_async_steps import ENV, Rig, complete, confirmed, rig, status_of
from tests.support.payloads import struct, travel
from tools.processes import orchestrator_process

pytestmark = [pytest.mark.e2e]

CRASHED = 137
"""The failpoint's exit code, as a SIGKILL would leave it."""
ENDINGS = {
    TransitionEvent.STEP_COMPLETED,
    TransitionEvent.STEP_FAILED,
    TransitionEvent.STEP_COMPLETED_LATE,
}


async def restart_after_crash(r: Rig) -> None:
    assert r.orchestrator is not None
    assert r.orchestrator.wait(15) == CRASHED, r.orchestrator.log_tail()
    assert "failpoint" in r.orchestrator.log_tail()
    await r.serve("orchestrator-again")


def finish_call(callbacks: cb_grpc.SagaCallbacksStub, outcome: str, token: str):
    """CompleteStep or FailStep with completion id "c-1"."""
    if outcome == "completed":
        return callbacks.CompleteStep(complete(token, "c-1", confirmed("F-first")), timeout=15)
    request = cb.FailStepRequest(token=token, completion_id="c-1", reason="no seats")
    return callbacks.FailStep(request, timeout=15)


@pytest.mark.parametrize("outcome", ["completed", "failed"])
async def test_a_completion_committed_but_unanswered_is_retried_with_its_id_and_counts_once(
    tmp_path, database_url, outcome
):
    """The orchestrator dies after committing a completion, before answering it: the
    caller sees the call fail, retries with the same id and token against the next
    orchestrator, and gets OK; the step took that one completion, logged once."""
    async with rig(tmp_path, database_url) as r:
        assert r.orchestrator is not None
        r.orchestrator.stop()
        await r.serve("orchestrator-crashing", SAGA_FAILPOINT="completion_committed")
        saga_id, token = await r.start()
        await r.waiting(saga_id)
        code, _ = await status_of(finish_call(r.callbacks, outcome, token))
        assert code is not grpc.StatusCode.OK
        await restart_after_crash(r)
        # Committed before the (lost) answer: the log holds it before anyone retries.
        before = [t.event for t in await r.log(saga_id) if t.step == "confirm_flight"]
        assert len([event for event in before if event in ENDINGS]) == 1, before

        assert r.callbacks is not None
        again = await finish_call(r.callbacks, outcome, token)
        assert (again.saga_id, again.step) == (saga_id, "confirm_flight")
        saga = await wait_terminal(r.stub, saga_id)
        log = await r.log(saga_id)
        flight = [t.event for t in log if t.step == "confirm_flight"]
        assert len([event for event in flight if event in ENDINGS]) == 1, flight
        finished = [t.event for t in log if t.event.name.startswith("SAGA_")]
        if outcome == "completed":
            assert saga.status == pb.SAGA_STATUS_COMPLETED
            assert flight.count(TransitionEvent.STEP_COMPLETED) == 1
            assert finished.count(TransitionEvent.SAGA_COMPLETED) == 1
            result = flight_pb2.BookFlightResponse()
            assert (await r.step(saga_id)).reply.Unpack(result)
            assert result.booking_id == "F-first"
        else:
            assert saga.status == pb.SAGA_STATUS_FAILED and "no seats" in saga.failure_reason
            assert flight.count(TransitionEvent.STEP_FAILED) == 1
            assert finished.count(TransitionEvent.SAGA_FAILED) == 1
        # Another id now is a second completion: refused, naming the first.
        late_code, details = await status_of(
            r.callbacks.CompleteStep(complete(token, "c-2"), timeout=5)
        )
        assert late_code is grpc.StatusCode.FAILED_PRECONDITION and "c-1" in details


@pytest.mark.parametrize("point", ["step_started:2", "token_issued"])
async def test_a_crash_before_an_asynchronous_command_leaves_sends_it_again_with_a_new_token(
    tmp_path, database_url, point
):
    """The orchestrator dies once the flight step started (`step_started:2`: the hotel
    is the first start), before or after its token was drawn and committed, and before
    the command left. The next one sends it, same key, with a token of its own, which
    completes the step. A token drawn but never sent is held by nobody: only its digest
    is stored, and nothing can present it."""
    async with rig(tmp_path, database_url) as r:
        assert r.orchestrator is not None and r.stub is not None
        r.orchestrator.stop()
        await r.serve("orchestrator-crashing", SAGA_FAILPOINT=point)
        reply = await r.stub.StartSaga(
            pb.StartSagaRequest(
                saga_type="async_trip", correlation_id="trip", payload=struct(travel())
            ),
            timeout=5,
        )
        saga_id = reply.saga_id
        await restart_after_crash(r)
        assert r.airline.keys == []  # the command never left the crashed process
        token = await r.token_of(saga_id)
        assert r.airline.keys == [f"{saga_id}:confirm_flight"]
        await r.waiting(saga_id)
        stored = await stored_tokens(r.database_url, saga_id)
        assert token_digest(token) in stored
        assert len(stored) == (2 if point == "token_issued" else 1), stored

        assert r.callbacks is not None
        await r.callbacks.CompleteStep(complete(token, "c-1"), timeout=5)
        assert (await wait_terminal(r.stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
        assert r.airline.keys == [f"{saga_id}:confirm_flight"]


async def stored_tokens(database_url: str, saga_id: str) -> tuple[str, ...]:
    """The token digests the store keeps for the flight step."""
    store = open_store(database_url)
    await store.open()
    try:
        (stored,) = await store.load_sagas([saga_id])
    finally:
        await store.close()
    return next(step for step in stored.steps if step.name == "confirm_flight").completion_tokens


@pytest.mark.postgres
async def test_waiting_sagas_of_a_killed_replica_are_finished_and_timed_out_by_the_other(
    tmp_path, postgres_url
):
    """Two orchestrators on one database; the one that started (and parked) the sagas is
    killed while they wait. The survivor applies their completions and finishes each
    once, and times out the one nobody completes, at its deadline."""
    async with rig(tmp_path, postgres_url) as r:
        survivor = orchestrator_process(
            tmp_path, postgres_url, r.addresses, env=ENV, name="orchestrator-b"
        ).start()
        channel = grpc.aio.insecure_channel(survivor.address)
        try:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            callbacks = cb_grpc.SagaCallbacksStub(channel)
            started = [await r.start() for _ in range(3)]
            timed_id, _ = await r.start("timed_trip")
            for saga_id in [*(saga_id for saga_id, _ in started), timed_id]:
                await r.waiting(saga_id)
            assert r.orchestrator is not None
            r.orchestrator.kill()
            # Killed before the deadline: the survivor is the one to time it out.
            timed = await stub.GetSaga(pb.GetSagaRequest(saga_id=timed_id), timeout=5)
            flight_step = next(step for step in timed.steps if step.name == "confirm_flight")
            assert flight_step.status == pb.STEP_STATUS_WAITING

            await asyncio.gather(
                *(
                    callbacks.CompleteStep(complete(token, f"c-{n}"), timeout=15)
                    for n, (_, token) in enumerate(started)
                )
            )
            for saga_id, _ in started:
                assert (await wait_terminal(stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
                log = await r.log(saga_id)
                events = [t.event for t in log]
                assert events.count(TransitionEvent.SAGA_COMPLETED) == 1
                flight = [t.event for t in log if t.step == "confirm_flight"]
                assert flight.count(TransitionEvent.STEP_COMPLETED) == 1
            timed = await wait_terminal(stub, timed_id)
            assert timed.status == pb.SAGA_STATUS_FAILED
            assert "no completion" in timed.failure_reason
            assert f"{timed_id}:confirm_flight" in r.airline.cancelled
        finally:
            await channel.close()
            survivor.stop()
