"""A call the participant's side answers CANCELLED is resent with the same idempotency key,
as DEADLINE_EXCEEDED is; a call the engine itself cuts short (it stops driving the saga)
is recorded as nobody's outcome.

The engine runs in the test, on both back ends, against a real participant: the example
flight service served by the kit on 127.0.0.1:0, with a hook that answers or holds the
calls as each test needs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from orchestrator.core.definition import RetryPolicy, SagaDefinition
from orchestrator.core.records import Lease, SagaStatus, StepStatus, TransitionEvent
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.store import Store, open_store
from participants.common.config import ParticipantConfig
from participants.common.failures import FailureInjector
from participants.flight.service import Flight
from participants.kit.server import create_server
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tests.support.payloads import travel
from tests.support.policy_sagas import FLIGHT_STEP

pytestmark = pytest.mark.e2e

ONE_FLIGHT = SagaDefinition(
    name="one_flight",
    version=1,
    input_type=TravelBookingInput,
    description="One flight booking, retried quickly.",
    retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1, jitter=0.0),
    steps=(FLIGHT_STEP,),
)

Hook = Callable[[str, int, grpc.aio.ServicerContext], Any]


class HookedFlight(Flight):
    """The flight service, with `hook(key, delivery, context)` awaited before each action."""

    def __init__(self, state_dir: Path, hook: Hook) -> None:
        super().__init__(
            ParticipantConfig(state_dir=state_dir, services=("flight",)), FailureInjector()
        )
        self.deliveries: Counter[str] = Counter()
        self._hook = hook

    async def before_command(
        self,
        method: str,
        request: Message,
        context: grpc.aio.ServicerContext,
        *,
        compensating: bool,
    ) -> None:
        if not compensating:
            key = request.context.idempotency_key  # type: ignore[attr-defined]
            self.deliveries[key] += 1
            await self._hook(key, self.deliveries[key], context)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = open_store(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def serve_flight(participant: HookedFlight) -> tuple[grpc.aio.Server, str]:
    server, port = await create_server([participant], reflection_on=False)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_an_attempt_answered_cancelled_is_sent_again_with_the_same_key(store, tmp_path):
    async def cancel_the_first(key: str, delivery: int, context: grpc.aio.ServicerContext):
        if delivery == 1:
            await context.abort(grpc.StatusCode.CANCELLED, "cancelled on the participant's side")

    flight = HookedFlight(tmp_path, cancel_the_first)
    server, address = await serve_flight(flight)
    participants = ParticipantClient({"flight": address})
    executor = Executor(store, Registry([ONE_FLIGHT]), participants, lease=Lease("r", 10.0))
    try:
        started = await executor.start_saga(ONE_FLIGHT, "c-cancelled", travel(), None)
        run = await executor.drive_stopped(started.saga.saga_id)
    finally:
        await executor.stop()
        await participants.close()
        await server.stop(None)
    saga_id = started.saga.saga_id
    assert run is not None and run.status is SagaStatus.COMPLETED, run and run.saga
    assert flight.deliveries == {f"{saga_id}:book_flight": 2}
    history = await store.get_transitions(saga_id)
    retried = [t for t in history if t.event is TransitionEvent.STEP_RETRY_SCHEDULED]
    assert len(retried) == 1 and retried[0].error.startswith("CANCELLED"), retried


async def test_a_drive_stopped_mid_call_records_no_outcome_for_the_participant(store, tmp_path):
    received = asyncio.Event()
    cancelled = asyncio.Event()

    async def hold(key: str, delivery: int, context: grpc.aio.ServicerContext):
        received.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flight = HookedFlight(tmp_path, hold)
    server, address = await serve_flight(flight)
    participants = ParticipantClient({"flight": address})
    executor = Executor(store, Registry([ONE_FLIGHT]), participants, lease=Lease("r", 10.0))
    try:
        started = await executor.start_saga(ONE_FLIGHT, "c-stopped", travel(), None)
        await asyncio.wait_for(received.wait(), 10)
        await executor.stop()  # as at shutdown: every drive cancelled, leases handed back
        await asyncio.wait_for(cancelled.wait(), 10)  # the call really was cut short
    finally:
        await executor.stop()
        await participants.close()
        await server.stop(None)
    saga_id = started.saga.saga_id
    history = await store.get_transitions(saga_id)
    assert [t.event for t in history] == [
        TransitionEvent.SAGA_STARTED,
        TransitionEvent.STEP_STARTED,
    ]
    assert all(not t.error for t in history)
    steps = await store.get_steps(saga_id)
    assert [(s.status, s.attempts, s.error) for s in steps] == [(StepStatus.STARTED, 1, "")], steps
    saga = await store.get_saga(saga_id)
    assert saga is not None and saga.status is SagaStatus.RUNNING
