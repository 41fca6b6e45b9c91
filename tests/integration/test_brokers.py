"""The publishers against the real brokers on 127.0.0.1: RabbitMQ (5672, guest/guest)
and NATS with JetStream (4222). Every test declares its own exchange, queues and stream
under a fresh name and deletes them afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import nats
import pytest
from aio_pika.abc import AbstractIncomingMessage

from orchestrator.events.brokers import (
    CLOUDEVENTS_JSON,
    BrokerUnavailable,
    EventRefused,
    OutgoingEvent,
    Publisher,
    PublishError,
    PublishFailed,
    PublishNacked,
    routing_key,
)
from orchestrator.events.jetstream import NatsPublisher, NatsSettings
from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings

pytestmark = pytest.mark.integration

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
EVENT_TYPE = "dev.saga-orchestrator.saga.completed.v1"


def event(n: int, *, saga_type: str = "checkout", body: bytes | None = None) -> OutgoingEvent:
    saga_id = f"saga-{n % 3}"
    return OutgoingEvent(
        event_id=f"{saga_id}:{n}",
        saga_type=saga_type,
        event_type=EVENT_TYPE,
        subject=saga_id,
        body=body if body is not None else json.dumps({"id": f"{saga_id}:{n}"}).encode(),
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def rabbitmq() -> AsyncIterator[tuple[RabbitMQSettings, aio_pika.abc.AbstractChannel]]:
    """Settings naming a fresh exchange, and a consumer channel; deletes what was declared."""
    settings = RabbitMQSettings(
        url=RABBITMQ_URL,
        exchange=f"test.events.{secrets.token_hex(4)}",
        unrouted_max_length=5,
        confirm_timeout=10,
    )
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    try:
        yield settings, channel
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(settings.unrouted)
        await cleanup.exchange_delete(settings.exchange)
        await cleanup.exchange_delete(settings.unrouted)
        await connection.close()


@pytest.fixture
async def rabbit_publisher(rabbitmq) -> AsyncIterator[RabbitMQPublisher]:
    settings, _ = rabbitmq
    publisher = RabbitMQPublisher(settings)
    await publisher.connect()
    try:
        yield publisher
    finally:
        await publisher.close()


async def bound_queue(channel: aio_pika.abc.AbstractChannel, exchange: str, pattern: str):
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, pattern)
    return queue


async def take(queue: aio_pika.abc.AbstractQueue, count: int) -> list[AbstractIncomingMessage]:
    """`count` messages from `queue`, waiting (bounded) for each."""
    received: list[AbstractIncomingMessage] = []
    async with asyncio.timeout(10), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            received.append(message)
            if len(received) == count:
                break
    return received


def test_publishers_satisfy_the_protocol():
    assert isinstance(RabbitMQPublisher(RabbitMQSettings()), Publisher)
    assert isinstance(NatsPublisher(NatsSettings()), Publisher)


def test_routing_key_escapes_dots_and_wildcards_in_the_saga_type():
    assert routing_key(event(1, saga_type="shop.check out#*")) == (
        "shop%2Echeck%20out%23%2A.saga.completed"
    )


async def test_rabbitmq_consumer_receives_the_batch_in_order_with_its_properties(
    rabbitmq, rabbit_publisher
):
    settings, channel = rabbitmq
    queue = await bound_queue(channel, settings.exchange, "checkout.saga.*")
    batch = [event(n) for n in range(50)]

    await rabbit_publisher.publish(batch)

    received = await take(queue, len(batch))
    assert [m.message_id for m in received] == [e.event_id for e in batch]
    assert [m.body for m in received] == [e.body for e in batch]
    first = received[0]
    assert first.routing_key == "checkout.saga.completed"
    assert first.content_type == CLOUDEVENTS_JSON
    assert first.type == EVENT_TYPE
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert first.headers == {"subject": "saga-0"}


async def test_rabbitmq_exchange_and_unrouted_queue_are_durable_and_bounded(
    rabbitmq, rabbit_publisher
):
    settings, channel = rabbitmq
    # Declaring again with the same durable settings passes; any difference is refused
    # with PRECONDITION_FAILED, so this pins what the publisher declared.
    await channel.declare_exchange(
        settings.exchange,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": settings.unrouted},
    )
    await channel.declare_queue(
        settings.unrouted,
        durable=True,
        arguments={"x-max-length": 5, "x-overflow": "drop-head"},
    )


async def test_rabbitmq_unroutable_events_land_in_the_bounded_unrouted_queue(
    rabbitmq, rabbit_publisher
):
    settings, channel = rabbitmq
    await rabbit_publisher.publish([event(n, saga_type="nobody.listens") for n in range(8)])

    unrouted = await channel.declare_queue(settings.unrouted, passive=True)
    received = await take(unrouted, 5)
    # Bounded at 5 with drop-head: the three oldest went, the newest five stayed.
    assert [m.message_id for m in received] == [event(n).event_id for n in range(3, 8)]
    assert received[0].routing_key == "nobody%2Elistens.saga.completed"


async def test_rabbitmq_publish_after_the_connection_closed_raises_unavailable(
    rabbit_publisher,
):
    assert rabbit_publisher._connection is not None
    await rabbit_publisher._connection.close()

    with pytest.raises(BrokerUnavailable) as caught:
        await rabbit_publisher.publish([event(1), event(2)])
    assert caught.value.confirmed == 0


async def test_rabbitmq_nack_fails_the_batch_after_the_confirmed_prefix(rabbitmq, rabbit_publisher):
    settings, channel = rabbitmq
    # A full queue with reject-publish makes RabbitMQ nack whatever it cannot take.
    queue = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
    )
    await queue.bind(settings.exchange, "#")

    with pytest.raises(PublishNacked) as caught:
        await rabbit_publisher.publish([event(n) for n in range(5)])

    assert caught.value.confirmed == 2
    assert "event saga-2:2" in str(caught.value)


class Proxy:
    """A TCP forwarder on 127.0.0.1:0 to a broker, whose connections the test can cut:
    a connection lost the way a network loses it, under the publisher's feet."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()
        await self.server.wait_closed()

    def cut(self) -> None:
        """Aborts every proxied connection (both sides), as a lost network does."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def publish_when_reconnected(publisher: Publisher, batch: list[OutgoingEvent]) -> None:
    """Publishes `batch` as the relay would: again after each transient failure (bounded)."""
    async with asyncio.timeout(20):
        while True:
            try:
                return await publisher.publish(batch)
            except PublishFailed:
                await asyncio.sleep(0.1)


async def test_rabbitmq_connection_lost_under_a_batch_raises_unavailable(rabbitmq):
    settings, _ = rabbitmq
    async with Proxy(5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        publisher = RabbitMQPublisher(
            RabbitMQSettings(
                url=url,
                exchange=settings.exchange,
                unrouted_max_length=5,
                reconnect_interval=0.2,
            )
        )
        await publisher.connect()
        try:
            publishing = asyncio.ensure_future(
                publisher.publish([event(n, body=b"x" * 65536) for n in range(200)])
            )
            await asyncio.sleep(0)  # the batch is on its way when the network goes
            proxy.cut()
            with pytest.raises(BrokerUnavailable) as caught:
                await publishing
            assert 0 <= caught.value.confirmed < 200
            # The connection comes back by itself; the relay's next attempt goes through.
            await publish_when_reconnected(publisher, [event(1000)])
        finally:
            await publisher.close()


async def test_rabbitmq_connect_to_a_dead_port_raises_unavailable():
    publisher = RabbitMQPublisher(
        RabbitMQSettings(url=f"amqp://guest:guest@127.0.0.1:{dead_port()}/", connect_timeout=2)
    )
    with pytest.raises(BrokerUnavailable, match="cannot connect to RabbitMQ"):
        await publisher.connect()
    with pytest.raises(BrokerUnavailable):
        await publisher.publish([event(1)])


async def test_rabbitmq_message_over_the_broker_limit_is_refused_and_named(
    rabbitmq, rabbit_publisher
):
    settings, channel = rabbitmq
    queue = await bound_queue(channel, settings.exchange, "#")
    huge = event(2, body=b"x" * (128 * 1024 * 1024 + 1))
    batch = [event(1), huge, event(3)]

    with pytest.raises(EventRefused) as caught:
        await rabbit_publisher.publish(batch)

    assert caught.value.event_id == huge.event_id
    assert caught.value.confirmed <= 1
    # The publisher goes on with a new channel: the relay can dead-letter and continue.
    await rabbit_publisher.publish([event(4)])
    received = await take(queue, 2)
    assert [m.message_id for m in received] == [event(1).event_id, event(4).event_id]


@pytest.fixture
async def nats_stream() -> AsyncIterator[NatsSettings]:
    token = secrets.token_hex(4)
    settings = NatsSettings(
        servers=NATS_URL,
        stream=f"TEST_EVENTS_{token}",
        subject_prefix=f"test-sagas-{token}",
        ack_timeout=10,
    )
    try:
        yield settings
    finally:
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(settings.stream)
        await nc.close()


@pytest.fixture
async def nats_publisher(nats_stream) -> AsyncIterator[NatsPublisher]:
    publisher = NatsPublisher(nats_stream)
    await publisher.connect()
    try:
        yield publisher
    finally:
        await publisher.close()


async def stream_messages(settings: NatsSettings) -> list[tuple[str, str, bytes]]:
    """(subject, Nats-Msg-Id, body) of every message in the stream, in stream order."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            stored = await js.get_msg(settings.stream, seq)
            assert stored.subject is not None and stored.headers is not None
            messages.append((stored.subject, stored.headers["Nats-Msg-Id"], stored.data or b""))
        return messages
    finally:
        await nc.close()


@pytest.mark.parametrize("max_pending", [1000, 7])
async def test_nats_stream_keeps_the_batch_in_order_and_drops_duplicate_ids(
    nats_stream, max_pending
):
    batch = [event(n) for n in range(40)]
    publisher = NatsPublisher(dataclasses.replace(nats_stream, max_pending=max_pending))
    await publisher.connect()
    try:
        await publisher.publish(batch[:25])
        # The relay goes back to item 10 after a failure: items 10..24 are sent again.
        await publisher.publish(batch[10:])
    finally:
        await publisher.close()

    stored = await stream_messages(nats_stream)
    assert [msg_id for _, msg_id, _ in stored] == [e.event_id for e in batch]
    assert [body for _, _, body in stored] == [e.body for e in batch]
    assert {subject for subject, _, _ in stored} == {
        f"{nats_stream.subject_prefix}.checkout.saga.completed"
    }


async def test_nats_publish_after_the_connection_closed_reconnects_first(
    nats_stream, nats_publisher
):
    assert nats_publisher._nc is not None
    await nats_publisher._nc.close()

    await nats_publisher.publish([event(1)])

    stored = await stream_messages(nats_stream)
    assert [msg_id for _, msg_id, _ in stored] == [event(1).event_id]


async def test_nats_publish_after_close_raises_unavailable(nats_publisher):
    await nats_publisher.close()

    with pytest.raises(BrokerUnavailable):
        await nats_publisher.publish([event(1)])


async def test_nats_connection_lost_with_nothing_listening_raises_unavailable(nats_stream):
    async with Proxy(4222) as proxy:
        settings = NatsSettings(
            servers=f"nats://127.0.0.1:{proxy.port}",
            stream=nats_stream.stream,
            subject_prefix=nats_stream.subject_prefix,
            ack_timeout=2,
            connect_timeout=1,
        )
        publisher = NatsPublisher(settings)
        await publisher.connect()
    # The proxy is gone: the connection is cut and its port refuses.
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            await publisher.publish([event(n) for n in range(20)])
        assert caught.value.confirmed == 0
    finally:
        await publisher.close()


async def test_nats_connection_lost_fails_the_batch_then_recovers(nats_stream):
    async with Proxy(4222) as proxy:
        settings = NatsSettings(
            servers=f"nats://127.0.0.1:{proxy.port}",
            stream=nats_stream.stream,
            subject_prefix=nats_stream.subject_prefix,
            ack_timeout=1,
        )
        publisher = NatsPublisher(settings)
        await publisher.connect()
        try:
            proxy.cut()
            with pytest.raises(PublishFailed) as caught:
                await publisher.publish([event(n) for n in range(20)])
            assert caught.value.confirmed < 20
            await publish_when_reconnected(publisher, [event(n) for n in range(20)])
        finally:
            await publisher.close()
    stored = await stream_messages(nats_stream)
    assert [msg_id for _, msg_id, _ in stored] == [event(n).event_id for n in range(20)]


async def test_nats_connect_to_a_dead_port_raises_unavailable(nats_stream):
    settings = NatsSettings(servers=f"nats://127.0.0.1:{dead_port()}", connect_timeout=1)
    publisher = NatsPublisher(settings)
    with pytest.raises(BrokerUnavailable, match="cannot connect to NATS"):
        await publisher.connect()


async def test_nats_message_over_max_payload_is_refused_and_named(nats_stream, nats_publisher):
    assert nats_publisher._nc is not None
    huge = event(2, body=b"x" * (nats_publisher._nc.max_payload + 1))

    with pytest.raises(EventRefused) as caught:
        await nats_publisher.publish([event(1), huge, event(3)])

    assert caught.value.event_id == huge.event_id
    assert caught.value.confirmed == 1
    await nats_publisher.publish([event(3)])
    stored = await stream_messages(nats_stream)
    assert [msg_id for _, msg_id, _ in stored] == [event(1).event_id, event(3).event_id]


async def test_nats_message_over_the_streams_max_msg_size_is_refused_and_named(nats_stream):
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().add_stream(
            name=nats_stream.stream,
            subjects=[f"{nats_stream.subject_prefix}.>"],
            max_msg_size=1024,
        )
    finally:
        await nc.close()
    publisher = NatsPublisher(nats_stream)
    await publisher.connect()
    try:
        big = event(2, body=b"x" * 2048)
        with pytest.raises(EventRefused) as caught:
            await publisher.publish([event(1), big])
        assert caught.value.event_id == big.event_id
        assert caught.value.confirmed == 1
    finally:
        await publisher.close()


async def test_refusal_is_not_a_transient_failure():
    refused = EventRefused("too large", event_id="s:1")
    assert isinstance(refused, PublishError)
    assert not isinstance(refused, BrokerUnavailable)
