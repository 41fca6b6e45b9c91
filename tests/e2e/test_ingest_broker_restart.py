"""The tracker's RabbitMQ consumer across a broker restart (a private node: the machine's
broker serves other tests): consuming resumes on its own once the broker is back, every
event published before, and after, reaches the ingestor. (Messages whose ack was in flight
when the broker stopped come again: at least once, the store answers them DUPLICATE.)"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import aio_pika
import pytest

from orchestrator.events.ingest.rabbitmq import RabbitMQIngest, RabbitMQIngestSettings
from tests.support.recording_ingestor import RecordingIngestor
from tools import rabbitmq_node

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOOKED = "com.example.travel.flight_booked"


@pytest.fixture(scope="module")
def broker_node() -> Iterator[rabbitmq_node.PrivateRabbitMQ]:
    missing = rabbitmq_node.missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; a private RabbitMQ node is required under CI=true")
        pytest.skip(missing)
    with rabbitmq_node.private_rabbitmq() as node:
        yield node


async def publish(url: str, exchange_name: str, ids: list[str]) -> None:
    """Publish with confirms (and persistent) through a connection of its own; retried
    while the node is still starting its listener."""
    for attempt in range(60):
        try:
            connection = await aio_pika.connect(url, timeout=5)
            break
        except (OSError, aio_pika.exceptions.AMQPConnectionError):
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        for event_id in ids:
            body = {"specversion": "1.0", "id": event_id, "source": "/flight", "type": BOOKED}
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=BOOKED,
            )


@pytest.mark.timeout(240)
async def test_consuming_resumes_after_a_broker_restart(broker_node):
    settings = RabbitMQIngestSettings(
        url=broker_node.url,
        exchange="restart.choreography",
        queue="restart.tracker",
        event_types=(BOOKED,),
        reconnect_interval=0.5,
    )
    ingestor = RecordingIngestor()
    consumer = RabbitMQIngest(settings, ingestor)
    await consumer.start()
    try:
        before = [f"before-{n}" for n in range(20)]
        await publish(broker_node.url, settings.exchange, before)
        await ingestor.wait_for(lambda i: set(before) <= i.recorded_ids)

        await asyncio.to_thread(broker_node.stop_app)
        await asyncio.to_thread(broker_node.start_app)

        after = [f"after-{n}" for n in range(20)]
        await publish(broker_node.url, settings.exchange, after)
        # The robust connection re-declared the queue and its binding and consumes again.
        await ingestor.wait_for(lambda i: set(before + after) <= i.recorded_ids, timeout=120)
    finally:
        await consumer.stop()
    connection = await aio_pika.connect(broker_node.url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(settings.queue)
        await channel.exchange_delete(settings.exchange)
