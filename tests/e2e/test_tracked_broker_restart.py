"""A `saga serve` tracking a choreography across a restart of its RabbitMQ (a private
node: the machine's broker serves other tests) while the services' events flow: the
services publish with confirms and publish again what the broker did not confirm; the
tracker reconnects on its own and consumes again. No booking is lost, none is recorded
twice, and every one completes once the broker is back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import aio_pika
import pytest

from tests.e2e.tracked_support import (
    COMPLETED_RUN,
    Choreography,
    Recorded,
    full_run,
    moves,
    wait_for,
)
from tools import rabbitmq_node

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

BOOKINGS = 60
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


@pytest.mark.timeout(240)
async def test_tracking_survives_a_broker_restart_under_load(tmp_path, postgres_url, broker_node):
    choreography = Choreography(url=broker_node.url)
    recorded = Recorded(postgres_url)
    tracker = choreography.tracker(tmp_path, postgres_url, "tracker")
    published: list[str] = []
    try:
        await choreography.declare()
        tracker.start()
        publishing = asyncio.create_task(services_publishing(choreography, published))

        async def some_recorded():
            return len(await recorded.sagas()) >= 10 or None

        await wait_for(some_recorded, "the first bookings tracked")
        await asyncio.to_thread(broker_node.stop_app)
        await asyncio.to_thread(broker_node.start_app)
        failed = await asyncio.wait_for(publishing, 120)
        assert failed > 0  # the services published into the outage, and again after

        async def all_completed():
            sagas = await recorded.sagas()
            done = len(sagas) >= BOOKINGS and all(s.status == "COMPLETED" for s in sagas)
            return sagas if done else None

        sagas = await wait_for(all_completed, f"{BOOKINGS} bookings completed", timeout=120)
        assert sorted(s.correlation for s in sagas) == sorted(published)
        assert len(sagas) == BOOKINGS
        logs = await recorded.logs()
        for saga in sagas:
            assert moves(logs[saga.saga_id]) == COMPLETED_RUN, saga.correlation
    finally:
        tracker.stop()
        await choreography.delete()
