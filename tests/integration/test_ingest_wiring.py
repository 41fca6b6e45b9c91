"""`saga serve`'s --track-* flags and the process's ways in built from them: both broker
consumers started into one ingestor, the compensation publisher chosen, everything
stopped; an unreachable broker is a ConfigurationError that leaves nothing running."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket

import aio_pika
import nats
import pytest

from orchestrator.core.errors import ConfigurationError
from orchestrator.events.ingest.config import IngestConfig, TrackedEventsIn, add_ingest_flags
from orchestrator.events.ingest.jetstream import NatsCommandPublisher
from orchestrator.events.ingest.rabbitmq import RabbitMQCommandPublisher
from tests.support.recording_ingestor import RecordingIngestor

pytestmark = pytest.mark.integration

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


def parse(argv: list[str]) -> IngestConfig:
    parser = argparse.ArgumentParser()
    add_ingest_flags(parser)
    return IngestConfig.from_args(parser.parse_args(argv))


def test_the_flags_default_to_no_broker_and_the_documented_names(monkeypatch):
    for name in ("URL", "EXCHANGE", "QUEUE", "PREFETCH"):
        monkeypatch.delenv(f"SAGA_TRACK_RABBITMQ_{name}", raising=False)
    monkeypatch.delenv("SAGA_TRACK_NATS_URL", raising=False)
    assert parse([]) == IngestConfig()
    assert IngestConfig().rabbitmq_exchange == "saga.choreography"
    assert IngestConfig().rabbitmq_queue == "saga.tracker"
    assert IngestConfig().nats_subjects == ("choreography.>",)


def test_flags_and_environment(monkeypatch):
    monkeypatch.setenv("SAGA_TRACK_RABBITMQ_PREFETCH", "32")
    monkeypatch.setenv("SAGA_TRACK_NATS_URL", "nats://nats:4222")
    config = parse(
        [
            "--track-rabbitmq-url",
            "amqp://rabbit/",
            "--track-rabbitmq-queue",
            "q",
            "--track-nats-subjects",
            "a.>, b.>",
        ]
    )
    assert config.rabbitmq_url == "amqp://rabbit/" and config.rabbitmq_queue == "q"
    assert config.rabbitmq_prefetch == 32
    assert config.nats_url == "nats://nats:4222"
    assert config.nats_subjects == ("a.>", "b.>")
    assert config.rabbitmq(["t.b", "t.a", "t.b"]).event_types == ("t.a", "t.b")
    assert config.nats().publish_prefix == "a"


def dead_url(scheme: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}"


async def test_both_consumers_feed_one_ingestor_until_stopped():
    token = secrets.token_hex(4)
    config = IngestConfig(
        rabbitmq_url=RABBITMQ_URL,
        rabbitmq_exchange=f"test.wiring.{token}",
        rabbitmq_queue=f"test.wiring.{token}",
        nats_url=NATS_URL,
        nats_stream=f"TEST_WIRING_{token}",
        nats_subjects=(f"wiring-{token}.>",),
    )
    ingestor = RecordingIngestor()
    ways_in = TrackedEventsIn(config)
    publisher = await ways_in.connect_publisher()
    assert isinstance(publisher, RabbitMQCommandPublisher)
    nc = await nats.connect(NATS_URL)
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        await ways_in.start(ingestor, ["com.example.a", "com.example.b"])
        channel = await connection.channel()
        exchange = await channel.get_exchange(config.rabbitmq_exchange)
        body = {"specversion": "1.0", "source": "/s", "type": "com.example.a"}
        await exchange.publish(
            aio_pika.Message(
                json.dumps({**body, "id": "via-rabbitmq"}).encode(),
                content_type="application/cloudevents+json",
            ),
            routing_key="com.example.a",
        )
        await nc.jetstream().publish(
            f"wiring-{token}.a",
            json.dumps({**body, "id": "via-nats"}).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        await ingestor.wait_for(lambda i: i.recorded_ids == {"via-rabbitmq", "via-nats"})
        assert {e.id: e.received_via for e in ingestor.events} == {
            "via-rabbitmq": "rabbitmq",
            "via-nats": "nats",
        }
    finally:
        await ways_in.stop()
        cleanup = await connection.channel()
        await cleanup.queue_delete(config.rabbitmq_queue)
        await cleanup.exchange_delete(config.rabbitmq_exchange)
        await connection.close()
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(config.nats_stream)
        await nc.close()
    assert ways_in.publisher is None


async def test_without_rabbitmq_the_publisher_is_nats_and_without_brokers_none():
    token = secrets.token_hex(4)
    config = IngestConfig(
        nats_url=NATS_URL, nats_stream=f"TEST_PUB_{token}", nats_subjects=(f"pub-{token}.>",)
    )
    ways_in = TrackedEventsIn(config)
    try:
        assert isinstance(await ways_in.connect_publisher(), NatsCommandPublisher)
    finally:
        await ways_in.stop()
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(config.nats_stream)
        await nc.close()
    assert await TrackedEventsIn(IngestConfig()).connect_publisher() is None


@pytest.mark.parametrize("broker", ["rabbitmq", "nats"])
async def test_an_unreachable_broker_is_a_configuration_error(broker):
    config = (
        IngestConfig(rabbitmq_url=dead_url("amqp") + "/")
        if broker == "rabbitmq"
        else IngestConfig(nats_url=dead_url("nats"))
    )
    ways_in = TrackedEventsIn(config)
    async with asyncio.timeout(30):
        with pytest.raises(ConfigurationError, match="cannot connect"):
            await ways_in.start(RecordingIngestor(), ["t"])
    await ways_in.stop()
