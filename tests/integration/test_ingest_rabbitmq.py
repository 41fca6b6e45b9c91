"""The tracker's RabbitMQ consumer against the machine's broker: a queue and exchange of
the test's own, bound to the tracked event types; ack only after ingest, malformed
messages refused for good, an ingestor failure redelivered, replicas competing; and the
compensation publisher's confirmed, routed events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest

from orchestrator.core.incoming import CommandEvent
from orchestrator.events.brokers import PublishNacked
from orchestrator.events.ingest.batches import IngestMetrics
from orchestrator.events.ingest.rabbitmq import (
    RabbitMQCommandPublisher,
    RabbitMQIngest,
    RabbitMQIngestSettings,
)
from tests.support.recording_ingestor import RecordingIngestor

pytestmark = pytest.mark.integration

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
BOOKED = "com.example.travel.flight_booked"
STARTED = "com.example.travel.booking_started"


def structured(event_id: str, event_type: str = BOOKED, **data: object) -> aio_pika.Message:
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/flight",
        "type": event_type,
        "data": {"booking_id": "b-1", **data},
    }
    return aio_pika.Message(json.dumps(body).encode(), content_type="application/cloudevents+json")


def binary(event_id: str, event_type: str = BOOKED) -> aio_pika.Message:
    headers = {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": event_id,
        "cloudEvents:source": "/hotel",
        "cloudEvents:type": event_type,
        "cloudEvents:bookingid": "b-2",
    }
    return aio_pika.Message(
        b'{"booking_id": "b-2"}', content_type="application/json", headers=headers
    )


@pytest.fixture
async def names() -> AsyncIterator[RabbitMQIngestSettings]:
    """Settings naming an exchange and a queue of this test's own; both deleted after."""
    token = secrets.token_hex(4)
    settings = RabbitMQIngestSettings(
        url=RABBITMQ_URL,
        exchange=f"test.choreography.{token}",
        queue=f"test.tracker.{token}",
        event_types=(STARTED, BOOKED),
        prefetch=16,
        retry_delay=0.05,
    )
    try:
        yield settings
    finally:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(settings.queue)
            await channel.exchange_delete(settings.exchange)


@pytest.fixture
async def producer(names) -> AsyncIterator[aio_pika.abc.AbstractExchange]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield await channel.declare_exchange(
            names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )


async def consuming(settings, ingestor, metrics=None) -> RabbitMQIngest:
    consumer = RabbitMQIngest(settings, ingestor, metrics)
    await consumer.start()
    return consumer


async def queue_depth(settings) -> tuple[int, int]:
    """(ready messages, consumers) of the tracker's queue, as the broker counts them."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.queue, durable=True, passive=True)
        declared = queue.declaration_result
        return declared.message_count, declared.consumer_count


async def test_structured_and_binary_events_reach_the_ingestor_and_are_acked(names, producer):
    ingestor = RecordingIngestor()
    consumer = await consuming(names, ingestor)
    try:
        await producer.publish(structured("e-1", bookingid="x"), routing_key=BOOKED)
        await producer.publish(binary("e-2", STARTED), routing_key=STARTED)
        await producer.publish(
            structured("e-3", "com.example.other"), routing_key="com.example.other"
        )
        await ingestor.wait_for(lambda i: i.recorded_ids == {"e-1", "e-2"})
    finally:
        await consumer.stop()
    by_id = {event.id: event for event in ingestor.events}
    assert by_id["e-1"].data == {"booking_id": "b-1", "bookingid": "x"}
    assert by_id["e-1"].received_via == "rabbitmq"
    assert by_id["e-2"].source == "/hotel"
    assert by_id["e-2"].extensions["bookingid"] == "b-2"
    assert by_id["e-2"].data == {"booking_id": "b-2"}
    # Acknowledged: nothing is left in the queue for the next consumer (the unbound type
    # never reached it).
    assert await queue_depth(names) == (0, 0)


async def test_a_malformed_message_is_rejected_for_good_logged_and_counted(names, producer, caplog):
    ingestor = RecordingIngestor()
    metrics = IngestMetrics()
    consumer = await consuming(names, ingestor, metrics)
    try:
        bad = aio_pika.Message(
            b"not json", content_type="application/cloudevents+json", message_id="m-bad"
        )
        await producer.publish(bad, routing_key=BOOKED)
        await producer.publish(structured("e-after"), routing_key=BOOKED)
        await ingestor.wait_for(lambda i: "e-after" in i.recorded_ids)
    finally:
        await consumer.stop()
    assert metrics.malformed.labels("rabbitmq")._value.get() == 1
    refusals = [r for r in caplog.records if "m-bad" in r.getMessage()]
    assert len(refusals) == 1 and "the body is not JSON" in refusals[0].getMessage()
    assert await queue_depth(names) == (0, 0)  # rejected without requeue: gone


async def test_an_ingestor_failure_hands_the_batch_back_and_it_is_redelivered(names, producer):
    ingestor = RecordingIngestor()
    ingestor.fail_next(2)
    consumer = await consuming(names, ingestor)
    try:
        for n in range(5):
            await producer.publish(structured(f"e-{n}"), routing_key=BOOKED)
        await ingestor.wait_for(lambda i: i.recorded_ids == {f"e-{n}" for n in range(5)})
    finally:
        await consumer.stop()
    assert ingestor.failed_calls == 2
    assert await queue_depth(names) == (0, 0)


async def test_unacknowledged_messages_go_back_to_the_queue_when_the_consumer_stops(
    names, producer
):
    """Ack comes only after ingest returned: a consumer stopped while its ingestor is
    stuck leaves the message in the queue for another replica."""
    entered, release = asyncio.Event(), asyncio.Event()

    class Stuck(RecordingIngestor):
        async def ingest(self, events):
            entered.set()
            await release.wait()
            return await super().ingest(events)

    consumer = await consuming(dataclasses.replace(names, stop_grace=0.1), Stuck())
    try:
        await producer.publish(structured("e-stuck"), routing_key=BOOKED)
        async with asyncio.timeout(10):
            await entered.wait()
    finally:
        await consumer.stop()
    second = RecordingIngestor()
    consumer = await consuming(names, second)
    try:
        await second.wait_for(lambda i: i.recorded_ids == {"e-stuck"})
    finally:
        await consumer.stop()


async def test_stopping_lets_the_batch_in_hand_be_acknowledged(names, producer):
    """A stop while the ingestor commits waits for it and acks: nothing comes again."""
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(RecordingIngestor):
        async def ingest(self, events):
            entered.set()
            await release.wait()
            return await super().ingest(events)

    ingestor = Slow()
    consumer = await consuming(names, ingestor)
    await producer.publish(structured("e-slow"), routing_key=BOOKED)
    async with asyncio.timeout(10):
        await entered.wait()
    stopping = asyncio.create_task(consumer.stop())
    for _ in range(200):  # stop has cancelled the consumer: it now waits for the batch
        if (await queue_depth(names))[1] == 0:
            break
        await asyncio.sleep(0.05)
    assert not stopping.done()
    release.set()
    await stopping
    assert ingestor.recorded_ids == {"e-slow"}
    assert await queue_depth(names) == (0, 0)


async def test_two_replicas_share_the_queue_each_message_to_one_of_them(names, producer):
    changed = asyncio.Condition()
    first, second = RecordingIngestor(changed), RecordingIngestor(changed)
    consumers = [await consuming(names, first), await consuming(names, second)]
    try:
        for n in range(200):
            await producer.publish(structured(f"e-{n}"), routing_key=BOOKED)
        expected = {f"e-{n}" for n in range(200)}
        await first.wait_for(lambda _: first.recorded_ids | second.recorded_ids == expected)
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert len(first.events) + len(second.events) == 200
    assert not first.recorded_ids & second.recorded_ids


async def test_batches_are_bounded_by_the_prefetch(names, producer):
    ingestor = RecordingIngestor()
    # The queue exists once a consumer declared it; the 40 wait there for the next one.
    consumer = await consuming(names, ingestor)
    await consumer.stop()
    for n in range(40):
        await producer.publish(structured(f"e-{n}"), routing_key=BOOKED)
    consumer = await consuming(names, ingestor)
    try:
        await ingestor.wait_for(lambda i: len(i.events) == 40)
    finally:
        await consumer.stop()
    assert max(len(batch) for batch in ingestor.batches) <= names.prefetch
    assert len(ingestor.batches) >= 3  # 40 messages, 16 at a time


def command_event(event_type: str) -> CommandEvent:
    return CommandEvent(
        id="saga-1:book_flight:compensate",
        type=event_type,
        source="saga-orchestrator",
        subject="saga-1",
        data={"saga_id": "saga-1", "step": "book_flight", "correlation": "b-1", "result": {}},
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


async def test_the_command_publisher_sends_a_confirmed_structured_event_routed_by_type(names):
    publisher = RabbitMQCommandPublisher(names)
    await publisher.connect()
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(names.exchange, "com.example.travel.cancel_flight")
        await publisher.publish(command_event("com.example.travel.cancel_flight"))
        message = await queue.get(timeout=10)
        await message.ack()
        with pytest.raises(PublishNacked, match="no queue is bound"):
            await publisher.publish(command_event("com.example.travel.nobody_listens"))
    finally:
        await publisher.close()
        await connection.close()
    assert message.content_type == "application/cloudevents+json"
    assert message.message_id == "saga-1:book_flight:compensate"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    document = json.loads(message.body)
    assert document["type"] == "com.example.travel.cancel_flight"
    assert document["specversion"] == "1.0" and document["subject"] == "saga-1"
    assert document["time"] == "2026-01-02T03:04:05Z"
    assert document["data"]["step"] == "book_flight"
