"""Escalation against a participant that refuses connections, with the default policy.

The flight service dies (a failpoint) as the saga's rollback sends it CancelFlight, and
is not restarted: every further compensation attempt meets a refused connection. The
saga must still spend its ten attempts and end FAILED with needs_intervention; once the
service is back on the same port, an operator's retry reaches it and the saga finishes
its rollback. The time from the participant's exit to needs_intervention is printed,
not asserted (it depends on the machine; docs/failure-policy.md gives the bound).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from participants.kit.failpoints import BEFORE_COMMIT, FAILPOINT_EXIT_CODE, FAILPOINT_VAR
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import MAX_CHARGE_MINOR, wait_terminal
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ESCALATION_WAIT_SECONDS = 150.0
"""A bound on the wait, far above the default policy's worst case (about 76 s)."""


def flight_process(workdir: Path, name: str, port: int = 0) -> ChildProcess:
    """The flight service alone, its state under `workdir` (the same for a restart)."""
    return participants_process(workdir, ["flight"], ["--port", str(port)], name=name)


async def wait_exit(process: ChildProcess) -> int:
    """The process's exit code, once its failpoint ended it (bounded)."""
    assert process.process is not None
    for _ in range(2000):
        code = process.process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{process.name} did not reach its failpoint:\n{process.log_tail()}")


async def test_a_compensation_refused_by_a_stopped_participant_escalates_then_resumes(
    tmp_path, database_url, participants
):
    flight_dir = tmp_path / "flight"
    dying = flight_process(flight_dir, "flight-dying")
    # Recorded command 2 is CancelFlight: the process ends before committing it.
    dying.env[FAILPOINT_VAR] = f"{BEFORE_COMMIT}:2"
    dying.start()
    port = int(dying.address.rsplit(":", 1)[1])
    restarted = flight_process(flight_dir, "flight-restarted", port)
    addresses = {**participants.info["services"], "flight": dying.address}
    orchestrator = orchestrator_process(tmp_path, database_url, addresses, name="escalation")
    try:
        orchestrator.start()
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            started = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id="escalation-refused",
                    payload=struct(travel(amount_minor=MAX_CHARGE_MINOR + 1)),
                ),
                timeout=5,
            )
            assert await wait_exit(dying) == FAILPOINT_EXIT_CODE, dying.log_tail()
            stopped_at = time.monotonic()
            saga = await wait_terminal(stub, started.saga_id, ESCALATION_WAIT_SECONDS)
            elapsed = time.monotonic() - stopped_at
            print(
                f"\nescalation: participant stopped -> needs_intervention in {elapsed:.1f} s "
                f"({database_url.split(':', 1)[0]})"
            )
            flight = next(step for step in saga.steps if step.name == "book_flight")
            assert saga.status == pb.SAGA_STATUS_FAILED, saga
            assert saga.needs_intervention, saga
            assert flight.status == pb.STEP_STATUS_COMPENSATION_FAILED, flight
            assert flight.compensation_attempts == 10, flight
            assert flight.error == (
                f"UNAVAILABLE: participant flight unreachable at {dying.address} "
                "(connection refused)"
            ), flight

            # Back on the same port: the operator's retry reaches it (the channel's
            # reconnect backoff is capped at 2 s, well inside the fresh attempts).
            restarted.start()
            retried = await stub.RetrySaga(
                pb.RetrySagaRequest(
                    saga_id=started.saga_id, reason="flight is back", requested_by="on-call"
                ),
                timeout=5,
            )
            saga = await wait_terminal(stub, started.saga_id, ESCALATION_WAIT_SECONDS)
            history = await stub.GetSagaHistory(
                pb.GetSagaHistoryRequest(saga_id=started.saga_id), timeout=5
            )
    finally:
        orchestrator.stop()
        dying.kill()
        restarted.stop()

    # The retry shows no stale error, and the log reads retried, started, completed.
    in_flight = next(step for step in retried.saga.steps if step.name == "book_flight")
    assert (in_flight.status, in_flight.error) == (pb.STEP_STATUS_COMPENSATING, ""), in_flight
    retry_seq = next(
        t.seq for t in history.transitions if t.event == pb.TRANSITION_EVENT_SAGA_RETRIED
    )
    after = [
        (pb.TransitionEvent.Name(t.event).removeprefix("TRANSITION_EVENT_"), t.attempt)
        for t in history.transitions
        if t.seq > retry_seq and t.step == "book_flight"
    ]
    # (retries in between while the restarted participant's channel reconnects)
    assert after[0] == ("COMPENSATION_STARTED", 1), after
    assert after[-1][0] == "COMPENSATION_COMPLETED", after
    assert {event for event, _ in after[1:-1]} <= {"COMPENSATION_RETRY_SCHEDULED"}, after
    flight = next(step for step in saga.steps if step.name == "book_flight")
    assert saga.status == pb.SAGA_STATUS_FAILED, saga
    assert not saga.needs_intervention, saga
    assert flight.status == pb.STEP_STATUS_COMPENSATED, flight
