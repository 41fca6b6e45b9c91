"""The demo's approval scene: trips over the approval limit wait for a manager.

Two expensive_trip sagas (orchestrator/examples/expensive_trip.py) book their travel
and stop at `approve_booking`, a human task: the scene shows them WAITING in
`saga tasks` and GetSaga, then a manager approves one (`saga complete`) and rejects the
other (`saga reject`) from the CLI, run as the commands a reader would type. The
approved trip is charged and completes; the rejected one undoes its bookings.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from google.protobuf import struct_pb2

from orchestrator.examples.expensive_trip import APPROVAL_LIMIT_MINOR
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from saga.v1 import tasks_pb2, tasks_pb2_grpc
from tools.demo_security import DemoSecurity
from tools.processes import ChildProcess, orchestrator_process, participants_process

STEP = "approve_booking"
MANAGER = "manager-maria"
WAIT_SECONDS = 30.0
CLI_TIMEOUT_SECONDS = 30.0
Settle = Callable[[str, list[str]], Mapping[str, pb.Saga]]


def _trip(number: int, amount_minor: int) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(
        {
            "customer_id": f"customer-vip-{number}",
            "traveller_name": f"Director {number}",
            "flight_number": "LH400",
            "hotel_id": "berlin-central",
            "nights": 3,
            "car_location": "BER",
            "car_class": "compact",
            "car_days": 3,
            "amount": {"currency_code": "EUR", "amount_minor": amount_minor},
        }
    )
    return payload


def _line(saga: pb.Saga) -> str:
    status = pb.SagaStatus.Name(saga.status).removeprefix("SAGA_STATUS_")
    steps = "  ".join(
        f"{s.name}={pb.StepStatus.Name(s.status).removeprefix('STEP_STATUS_').lower()}"
        for s in saga.steps
    )
    return f"  {saga.correlation_id} ({saga.saga_id[-8:]}): {status}  {steps}"


def _saga_command(address: str, security: DemoSecurity, args: list[str]) -> str:
    """Run `saga ARGS` as the manager would, printing the command and its output."""
    print(f"  $ saga {shlex.join(args)}")
    argv = [sys.executable, "-m", "orchestrator", *args, "--address", address]
    done = subprocess.run(
        argv + security.cli_args("approver"),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        env={**os.environ, "COLUMNS": "150"},
    )
    for line in (done.stdout + done.stderr).splitlines():
        print(f"    {line}")
    if done.returncode != 0:
        return f"`saga {args[0]}` exited {done.returncode}"
    return ""


def _decide(address: str, security: DemoSecurity, approved: str, rejected: str) -> list[str]:
    """The manager approves one trip and rejects the other, from the CLI."""
    note = json.dumps({"note": "within the travel budget"})
    approve = ["complete", approved, STEP, "--result", note]
    reject = ["reject", rejected, STEP]
    return [
        _saga_command(address, security, [*approve, "--reason", "client meeting", "--by", MANAGER]),
        _saga_command(address, security, [*reject, "--reason", "over budget", "--by", MANAGER]),
    ]


def _wait_for_tasks(stub: tasks_pb2_grpc.SagaTasksStub, saga_ids: list[str]) -> bool:
    """True once every saga is listed waiting at its approval (bounded by WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        listed = stub.ListTasks(tasks_pb2.ListTasksRequest(), timeout=10).tasks
        if {t.saga_id for t in listed if t.step == STEP} >= set(saga_ids):
            return True
        time.sleep(0.1)
    return False


def approval_scenario(
    workdir: Path, database_url: str, security: DemoSecurity, settle: Settle
) -> list[str]:
    """Run the scene with its own participants and orchestrator; return problems."""
    limit = f"{APPROVAL_LIMIT_MINOR / 100:.2f} EUR"
    print(f"\nApproval scenario: two trips over {limit} wait for a manager's approval")
    home = workdir / "approvals"
    participants = participants_process(
        home, ["flight", "hotel", "car_rental", "payment", "notification"], name="travel-4"
    )
    participants.argv += security.server_args()
    orchestrator: ChildProcess | None = None
    try:
        addresses = participants.start().info["services"]
        orchestrator = orchestrator_process(
            home,
            database_url,
            addresses,
            env={"SAGA_DEFINITIONS": "orchestrator.examples.expensive_trip"},
            name="orchestrator-4",
        )
        orchestrator.argv += security.orchestrator_args()
        address = orchestrator.start().address
        with (
            security.channel(address, "client") as client_channel,
            security.channel(address, "approver") as approver_channel,
        ):
            sagas = pb_grpc.SagaOrchestratorStub(client_channel)
            saga_ids = [
                sagas.StartSaga(
                    pb.StartSagaRequest(
                        saga_type="expensive_trip",
                        correlation_id=f"big-trip-{number}",
                        payload=_trip(number, amount),
                        idempotency_key=f"demo-big-trip-{number}-{os.getpid()}",
                    ),
                    timeout=10,
                ).saga_id
                for number, amount in ((1, 120_000), (2, 135_000))
            ]
            if not _wait_for_tasks(tasks_pb2_grpc.SagaTasksStub(approver_channel), saga_ids):
                return [f"the expensive trips did not wait for approval in {WAIT_SECONDS}s"]
            problems = [_saga_command(address, security, ["tasks"])]
            for saga_id in saga_ids:
                print(_line(sagas.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=10)))
            approved, rejected = saga_ids
            problems += _decide(address, security, approved, rejected)
            done = settle(address, saga_ids)
            for saga_id in saga_ids:
                print(_line(done[saga_id]))
                history = sagas.GetSagaHistory(
                    pb.GetSagaHistoryRequest(saga_id=saga_id), timeout=10
                ).transitions
                for t in history:
                    if t.actor != "engine":
                        event = pb.TransitionEvent.Name(t.event).removeprefix("TRANSITION_EVENT_")
                        print(f"    log #{t.seq}: {event} {t.step} by {t.actor}: {t.reason}")
        problems = [p for p in problems if p]
        if done[approved].status != pb.SAGA_STATUS_COMPLETED:
            problems.append(f"the approved trip {approved} did not complete")
        if done[rejected].status != pb.SAGA_STATUS_FAILED:
            problems.append(f"the rejected trip {rejected} did not fail and compensate")
        undone = {s.name: s.status for s in done[rejected].steps}
        for step in ("book_flight", "book_hotel", "rent_car"):
            if undone.get(step) != pb.STEP_STATUS_COMPENSATED:
                problems.append(f"the rejected trip's {step} was not undone")
        return problems
    finally:
        for process in (orchestrator, participants):
            if process is not None:
                process.stop()
