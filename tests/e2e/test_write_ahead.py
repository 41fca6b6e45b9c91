"""Persist before act: when a command reaches a participant, its intent is already committed.

The flight participant here is a gRPC server inside the test process that, on each
command, reads the orchestrator's database (another process's) and records what it
found. The orchestrator runs as its own process.
"""

from __future__ import annotations

import grpc
import pytest

from orchestrator.core.records import StepStatus, TransitionEvent
from orchestrator.store import Store, open_store
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from tests.e2e.conftest import MAX_CHARGE_MINOR, wait_terminal
from tests.support.payloads import struct, travel
from tools.processes import orchestrator_process

pytestmark = pytest.mark.e2e


class CommittedIntentFlightService(flight_pb2_grpc.FlightServiceServicer):
    """Answers like a flight service and notes, per command, what the store already holds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.observed: list[tuple[str, StepStatus, bool]] = []

    async def _observe(self, method: str, saga_id: str, step: str, event: TransitionEvent) -> None:
        steps = {s.name: s for s in await self.store.get_steps(saga_id)}
        log = await self.store.get_transitions(saga_id)
        logged = any(t.event is event and t.step == step for t in log)
        self.observed.append((method, steps[step].status, logged))

    async def BookFlight(self, request, context):
        await self._observe(
            "BookFlight",
            request.context.saga_id,
            request.context.step,
            TransitionEvent.STEP_STARTED,
        )
        return flight_pb2.BookFlightResponse(
            booking_id=f"b-{request.context.saga_id}",
            flight_number=request.flight_number,
            seats=request.seats,
        )

    async def CancelFlight(self, request, context):
        await self._observe(
            "CancelFlight",
            request.context.saga_id,
            request.context.step,
            TransitionEvent.COMPENSATION_STARTED,
        )
        assert request.booking_id == f"b-{request.context.saga_id}"
        return flight_pb2.CancelFlightResponse(booking_id=request.booking_id, cancelled=True)


async def test_command_arrives_only_after_its_started_transition_is_committed(
    tmp_path, database_url, participants
):
    store = open_store(database_url)
    await store.open()
    flight = CommittedIntentFlightService(store)
    server = grpc.aio.server()
    flight_pb2_grpc.add_FlightServiceServicer_to_server(flight, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    addresses = {**participants.info["services"], "flight": f"127.0.0.1:{port}"}
    orchestrator = orchestrator_process(tmp_path, database_url, addresses)
    try:
        orchestrator.start()
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            from saga.v1 import orchestrator_pb2_grpc as pb_grpc

            stub = pb_grpc.SagaOrchestratorStub(channel)
            started = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id="wal-1",
                    payload=struct(travel(amount_minor=MAX_CHARGE_MINOR + 1)),
                ),
                timeout=5,
            )
            saga = await wait_terminal(stub, started.saga_id)
    finally:
        orchestrator.stop()
        await server.stop(None)
        await store.close()

    assert saga.status == pb.SAGA_STATUS_FAILED
    assert flight.observed == [
        ("BookFlight", StepStatus.STARTED, True),
        ("CancelFlight", StepStatus.COMPENSATING, True),
    ]
