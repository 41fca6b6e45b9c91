"""A `saga serve` tracking a choreography across a restart of its RabbitMQ (a private
node: the machine's broker serves other tests) while the services' events flow: the
services publish with confirms and publish again what the broker did not confirm; the
tracker reconnects on its own and consumes again. No booking is lost, none is recorded
twice, and every one completes once the broker is back; a stalled one is then rescued,
its compensation event published once through the publisher that lived through it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import aio_pika
import grpc
import pytest

from orchestrator.client import SagaClient
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.tracked_support import (
    COMPLETED_RUN,
    Choreography,
    Recorded,
    moves,
    wait_for,
)
from tests.support.tracked_sagas import T, full_run, travel_event
from tools import rabbitmq_node
from tools.processes import ChildProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

BOOKINGS = 60
STALLED = "stalled"
PACE = 0.1


@pytest.fixture(scope="module")
def broker_node() -> Iterator[rabbitmq_node.PrivateRabbitMQ]:
    missing = rabbitmq_node.missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; a private RabbitMQ node is required under CI=true")
        pytest.skip(missing)
    with rabbitmq_node.private_rabbitmq() as node:
        yield node


async def services_publishing(choreography: Choreography, published: list[str]) -> int:
    """Each booking's four events, a booking every PACE seconds; a publish the broker did
    not confirm (it went away) is made again, same event ids, until it is confirmed.
    Returns how many publishes failed."""
    failed = 0
    for n in range(BOOKINGS):
        booking = f"trip-{n}"
        while True:
            try:
                await choreography.publish(full_run(booking), attempts=1)
                break
            except (OSError, aio_pika.exceptions.AMQPError, RuntimeError, TimeoutError):
                failed += 1
                await asyncio.sleep(0.2)
        published.append(booking)
        await asyncio.sleep(PACE)
    return failed


async def rescue_after_the_restart(
    choreography: Choreography, recorded: Recorded, tracker: ChildProcess, flight_inbox: str
) -> None:
    """An operator aborts the stalled booking: the rescue's cancel_flight goes out through
    the publisher that lived through the restart, once; the flight's answer ends it."""
    [stalled] = [s for s in await recorded.sagas() if s.correlation == STALLED]
    async with grpc.aio.insecure_channel(tracker.address) as channel:
        await SagaClient.over(pb_grpc.SagaOrchestratorStub(channel), timeout=10).abort(
            stalled.saga_id, reason="the flight service is silent", requested_by="olga"
        )
    cancels: list[dict[str, Any]] = []

    async def told():
        cancels.extend(await choreography.received(flight_inbox))
        return cancels or None

    await wait_for(told, "cancel_flight published after the restart")
    assert [event["id"] for event in cancels] == [f"{stalled.saga_id}:book_flight:compensate"]
    await choreography.publish([travel_event("flight_cancelled", STALLED)])

    async def failed():
        [now] = [s for s in await recorded.sagas() if s.correlation == STALLED]
        return now if now.status == "FAILED" else None

    assert not (await wait_for(failed, "the stalled booking rescued")).needs_intervention


@pytest.mark.timeout(240)
async def test_tracking_survives_a_broker_restart_under_load(tmp_path, postgres_url, broker_node):
    choreography = Choreography(url=broker_node.url)
    recorded = Recorded(postgres_url)
    tracker = choreography.tracker(tmp_path, postgres_url, "tracker")
    published: list[str] = []
    try:
        flight_inbox = await choreography.listen(
            f"{choreography.exchange}.flight", T + "cancel_flight"
        )
        await choreography.declare()
        tracker.start()
        # One booking stalls before the restart: its flight never answers.
        await choreography.publish([travel_event("booking_started", STALLED)])
        publishing = asyncio.create_task(services_publishing(choreography, published))

        async def some_recorded():
            return len(await recorded.sagas()) >= 10 or None

        await wait_for(some_recorded, "the first bookings tracked")
        await asyncio.to_thread(broker_node.stop_app)
        await asyncio.to_thread(broker_node.start_app)
        failed = await asyncio.wait_for(publishing, 120)
        assert failed > 0  # the services published into the outage, and again after

        async def all_completed():
            sagas = [s for s in await recorded.sagas() if s.correlation != STALLED]
            done = len(sagas) >= BOOKINGS and all(s.status == "COMPLETED" for s in sagas)
            return sagas if done else None

        sagas = await wait_for(all_completed, f"{BOOKINGS} bookings completed", timeout=120)
        assert sorted(s.correlation for s in sagas) == sorted(published)
        assert len(sagas) == BOOKINGS
        logs = await recorded.logs()
        for saga in sagas:
            assert moves(logs[saga.saga_id]) == COMPLETED_RUN, saga.correlation
        await rescue_after_the_restart(choreography, recorded, tracker, flight_inbox)
    finally:
        tracker.stop()
        await choreography.delete()
