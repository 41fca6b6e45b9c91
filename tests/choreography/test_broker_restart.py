"""The choreographed services survive a RabbitMQ restart: on a private node (never the
shared broker), a booking flows, the broker goes down and comes back, and the services
reconnect by themselves and carry the next booking through."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from participants.choreography import events as ev
from participants.choreography.services import SERVICES
from tests.choreography.conftest import FRONT_END, Choreography, count
from tools import rabbitmq_node
from tools.choreography_demo import service_process, trip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def broker_node() -> Iterator[rabbitmq_node.PrivateRabbitMQ]:
    missing = rabbitmq_node.missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; a private RabbitMQ node is required under CI=true")
        pytest.skip(missing)
    with rabbitmq_node.private_rabbitmq() as node:
        yield node


async def observe(
    connection: aio_pika.abc.AbstractConnection, exchange: str, workdir: Path
) -> Choreography:
    """The exchange and a durable observer queue on the private node."""
    channel = await connection.channel()
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    observer = await channel.declare_queue(f"{exchange}.observer", durable=True)
    await observer.bind(declared, routing_key=f"{ev.PREFIX}#")
    return Choreography(workdir, exchange, channel, observer)


async def test_the_services_reconnect_after_a_broker_restart(broker_node, tmp_path):
    exchange = "restart-choreography"
    connection = await aio_pika.connect(broker_node.url)
    watching = await observe(connection, exchange, tmp_path)
    processes = [
        service_process(tmp_path, name, broker_node.url, exchange).start() for name in SERVICES
    ]
    try:
        await watching.start_booking(trip("before"))
        await watching.wait_for(lambda seen: count(seen, "car_rented", "before") == 1)
        await connection.close()

        broker_node.stop_app()
        broker_node.start_app()

        seen = watching.seen
        connection = await aio_pika.connect(broker_node.url)
        watching = await observe(connection, exchange, tmp_path)
        watching.seen = seen
        await watching.start_booking(trip("after"))
        await watching.wait_for(lambda seen: count(seen, "car_rented", "after") == 1)
        assert [e.short_type for e in watching.of("after")] == [
            "flight_booked",
            "hotel_booked",
            "car_rented",
        ]
        assert all(p.returncode is None for p in processes)  # reconnected, not restarted
        assert watching.held("car_rental")["compact"] == 2
        assert all(e.source != FRONT_END for e in watching.of("after"))
    finally:
        for process in processes:
            process.stop()
        await connection.close()
