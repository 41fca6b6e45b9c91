"""The tracker's JetStream consumer against the machine's NATS server: a stream of the
test's own; ack after ingest, malformed messages terminated, an ingestor failure nak'd
and redelivered, replicas sharing the durable consumer; and the compensation publisher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest

from orchestrator.core.incoming import CommandEvent
from orchestrator.events.ingest.batches import IngestMetrics
from orchestrator.events.ingest.jetstream import (
    NatsCommandPublisher,
    NatsIngest,
    NatsIngestSettings,
)
from tests.support.recording_ingestor import RecordingIngestor

pytestmark = pytest.mark.integration

NATS_URL = "nats://127.0.0.1:4222"


def structured(event_id: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/car",
            "type": "com.example.travel.car_rented",
            "data": {"booking_id": "b-1"},
        }
    ).encode()


@pytest.fixture
async def settings() -> AsyncIterator[NatsIngestSettings]:
    """A stream and subjects of this test's own; the stream is deleted after."""
    token = secrets.token_hex(4)
    settings = NatsIngestSettings(
        servers=NATS_URL,
        stream=f"TEST_CHOREO_{token}",
        subjects=(f"choreo-{token}.>",),
        batch=16,
        fetch_wait=0.2,
        retry_delay=0.05,
        publish_prefix=f"choreo-{token}",
    )
    nc = await nats.connect(NATS_URL)
    try:
        yield settings
    finally:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(settings.stream)
        await nc.close()


@pytest.fixture
async def js(settings):
    nc = await nats.connect(NATS_URL)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


def subject(settings: NatsIngestSettings, name: str = "car_rented") -> str:
    return f"{settings.publish_prefix}.{name}"


async def consuming(settings, ingestor, metrics=None) -> NatsIngest:
    consumer = NatsIngest(settings, ingestor, metrics)
    await consumer.start()
    return consumer


async def pending(js, settings) -> tuple[int, int]:
    """(messages not yet delivered, delivered but not acked) of the durable consumer."""
    info = await js.consumer_info(settings.stream, settings.durable)
    return info.num_pending, info.num_ack_pending


async def all_acked(js, settings) -> None:
    """Until the consumer has nothing pending and nothing unacked (bounded)."""
    for _ in range(200):
        if await pending(js, settings) == (0, 0):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still pending after 10 s: {await pending(js, settings)}")


async def test_structured_and_binary_events_are_ingested_and_acked(settings, js):
    ingestor = RecordingIngestor()
    consumer = await consuming(settings, ingestor)
    try:
        await js.publish(
            subject(settings),
            structured("n-1"),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        binary_headers = {
            "ce-specversion": "1.0",
            "ce-id": "n-2",
            "ce-source": "/car",
            "ce-type": "com.example.travel.car_rental_failed",
            "ce-bookingid": "b-9",
            "Content-Type": "application/json",
        }
        await js.publish(
            subject(settings, "failed"), b'{"reason": "no cars"}', headers=binary_headers
        )
        await ingestor.wait_for(lambda i: i.recorded_ids == {"n-1", "n-2"})
        by_id = {event.id: event for event in ingestor.events}
        assert by_id["n-2"].data == {"reason": "no cars"}
        assert by_id["n-2"].extensions["bookingid"] == "b-9"
        assert by_id["n-1"].received_via == "nats"
        await all_acked(js, settings)
    finally:
        await consumer.stop()


async def test_malformed_messages_are_terminated_and_counted(settings, js, caplog):
    ingestor, metrics = RecordingIngestor(), IngestMetrics()
    consumer = await consuming(settings, ingestor, metrics)
    try:
        await js.publish(subject(settings), b"{}", headers={"Nats-Msg-Id": "bad-1"})
        await js.publish(
            subject(settings),
            structured("n-ok"),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        await ingestor.wait_for(lambda i: "n-ok" in i.recorded_ids)
        await all_acked(js, settings)
    finally:
        await consumer.stop()
    assert metrics.malformed.labels("nats")._value.get() == 1
    [line] = [r.getMessage() for r in caplog.records if "bad-1" in r.getMessage()]
    assert "not a CloudEvent" in line


async def test_an_ingestor_failure_naks_and_the_events_come_again(settings, js):
    ingestor = RecordingIngestor()
    ingestor.fail_next(2)
    consumer = await consuming(settings, ingestor)
    try:
        for n in range(5):
            await js.publish(
                subject(settings),
                structured(f"n-{n}"),
                headers={"Content-Type": "application/cloudevents+json"},
            )
        await ingestor.wait_for(lambda i: i.recorded_ids == {f"n-{n}" for n in range(5)})
    finally:
        await consumer.stop()
    assert ingestor.failed_calls == 2


async def test_two_replicas_share_the_durable_consumer(settings, js):
    changed = asyncio.Condition()
    first, second = RecordingIngestor(changed), RecordingIngestor(changed)
    consumers = [await consuming(settings, first), await consuming(settings, second)]
    try:
        for n in range(100):
            await js.publish(
                subject(settings),
                structured(f"n-{n}"),
                headers={"Content-Type": "application/cloudevents+json"},
            )
        expected = {f"n-{n}" for n in range(100)}
        await first.wait_for(lambda _: first.recorded_ids | second.recorded_ids == expected)
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert len(first.events) + len(second.events) == 100


async def test_the_command_publisher_stores_a_structured_event_once_per_id(settings, js):
    publisher = NatsCommandPublisher(settings)
    await publisher.connect()  # the stream is created when missing
    event = CommandEvent(
        id="saga-1:rent_car:compensate",
        type="com.example.travel.cancel_car",
        source="saga-orchestrator",
        subject="saga-1",
        data={"saga_id": "saga-1", "step": "rent_car"},
        time=datetime(2026, 1, 2, tzinfo=UTC),
    )
    try:
        await publisher.publish(event)
        await publisher.publish(event)  # a resend after a crash: deduplicated by its id
    finally:
        await publisher.close()
    info = await js.stream_info(settings.stream)
    assert info.state.messages == 1
    stored = await js.get_last_msg(settings.stream, publisher.subject(event))
    assert json.loads(stored.data)["id"] == "saga-1:rent_car:compensate"
    assert stored.headers["Content-Type"] == "application/cloudevents+json"
