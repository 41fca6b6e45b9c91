"""A participant that dies after committing a command but before replying, restarted on
the same port: the orchestrator's retry with the same idempotency key gets the stored
result, and the effect exists once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from participants.kit.failpoints import AFTER_COMMIT, FAILPOINT_EXIT_CODE, FAILPOINT_VAR
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import MAX_CHARGE_MINOR, wait_terminal
from tests.e2e.effects import effects_of
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXIT_TIMEOUT_SECONDS = 20.0


def wait_exit(process: ChildProcess, timeout: float = EXIT_TIMEOUT_SECONDS) -> int:
    assert process.process is not None
    deadline = time.monotonic() + timeout
    while process.process.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.name} did not reach its failpoint:\n{process.log_tail()}")
        time.sleep(0.02)
    return process.process.returncode


def flight_process(workdir: Path, name: str, port: int = 0) -> ChildProcess:
    """The flight service alone, its state under `workdir` (the same for a restart)."""
    return participants_process(workdir, ["flight"], ["--port", str(port)], name=name)


@pytest.mark.parametrize(
    ("saga_type", "flight_command", "declined", "expected_flight"),
    [
        # The 1st command is BookFlight: its booking is committed, its reply lost. The
        # saga type retries it after 2 s and 4 s: long enough for the restart (a refused
        # connection fails an attempt at once, so the retries must span the restart).
        pytest.param("patient", 1, False, "ACTIVE", id="booking"),
        # The charge is declined; the 2nd command is CancelFlight, committed, reply lost;
        # the default compensation policy retries for about 20 s.
        pytest.param("travel_booking", 2, True, "CANCELLED", id="cancellation"),
    ],
)
async def test_participant_killed_after_commit_answers_the_retry_with_the_stored_result(
    tmp_path, database_url, participants, saga_type, flight_command, declined, expected_flight
):
    flight_dir = tmp_path / "flight"
    crashing = flight_process(flight_dir, "flight-crashing")
    crashing.env[FAILPOINT_VAR] = f"{AFTER_COMMIT}:{flight_command}"
    crashing.start()
    port = int(crashing.address.rsplit(":", 1)[1])
    restarted = flight_process(flight_dir, "flight-restarted", port)
    addresses = {**participants.info["services"], "flight": crashing.address}
    env = {"SAGA_DEFINITIONS": "orchestrator.examples,tests.support.policy_sagas"}
    orchestrator = orchestrator_process(tmp_path, database_url, addresses, env=env)
    try:
        orchestrator.start()
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            amount = MAX_CHARGE_MINOR + 1 if declined else 100_000
            started = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type=saga_type,
                    correlation_id=f"participant-crash-{flight_command}",
                    payload=struct(travel(amount_minor=amount)),
                ),
                timeout=5,
            )
            assert wait_exit(crashing) == FAILPOINT_EXIT_CODE, crashing.log_tail()
            # Same port and state: the orchestrator's channel finds it again (its
            # reconnect backoff is capped at 2 s).
            restarted.start()
            saga = await wait_terminal(stub, started.saga_id)
        effects = await effects_of(addresses, started.saga_id)
    finally:
        orchestrator.stop()
        crashing.kill()
        restarted.stop()

    flight_step = next(step for step in saga.steps if step.name == "book_flight")
    if declined:
        assert saga.status == pb.SAGA_STATUS_FAILED, saga
        assert saga.failed_step == "charge_payment"
        assert flight_step.status == pb.STEP_STATUS_COMPENSATED
        assert flight_step.compensation_attempts >= 2, flight_step
    else:
        assert saga.status == pb.SAGA_STATUS_COMPLETED, saga
        assert flight_step.attempts >= 2, flight_step
    assert not saga.needs_intervention
    assert effects["flight"] == Counter({expected_flight: 1}), effects
