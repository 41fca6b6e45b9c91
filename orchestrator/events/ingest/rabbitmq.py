"""Tracked sagas' events from RabbitMQ, and the orchestrator's own events back to it.

The consumer declares a durable topic exchange (default `saga.choreography`) and a
durable queue (default `saga.tracker`) bound to it once per event type the tracked saga
types declare (routing key = CloudEvent type, as choreographed services publish them).
Replicas share the queue: competing consumers, each message to one of them. Messages
are taken `prefetch` at a time (basic.qos), ingested as one batch, and acknowledged only
once `ingest` returned; see `batches` for what is refused and what is redelivered. The
connection is robust: after a broker restart aio-pika reconnects and re-declares the
exchange, queue, bindings and consumer, and consuming resumes; messages that were in
hand when the connection died are redelivered (the store answers them DUPLICATE).

`RabbitMQCommandPublisher` publishes a rescue's compensation event as a structured
CloudEvent to the same exchange, routing key = its type, persistent and mandatory, and
returns once the broker confirmed it (an unroutable one raises: no service listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.incoming import CommandEvent, EventIngestor
from orchestrator.events.brokers import (
    AMQP_MAX_ROUTING_KEY,
    BrokerUnavailable,
    PublishNacked,
    PublishTimeout,
    safe_url,
)
from orchestrator.events.ingest.batches import (
    IngestMetrics,
    Received,
    Settlement,
    finish_worker,
    ingest_received,
)
from orchestrator.events.ingest.cloudevents import (
    STRUCTURED,
    MalformedEvent,
    parse_message,
    structured_json,
)

logger = logging.getLogger(__name__)

VIA = "rabbitmq"


@dataclass(frozen=True, slots=True)
class RabbitMQIngestSettings:
    """Where the tracker consumes, and how much it takes at once."""

    url: str
    exchange: str = "saga.choreography"
    queue: str = "saga.tracker"
    event_types: tuple[str, ...] = ()
    prefetch: int = 256
    retry_delay: float = 1.0
    """After the ingestor failed, wait this long before the next batch (the broker
    redelivers at once; the store is likely still away)."""
    stop_grace: float = 5.0
    """How long `stop` lets a batch in hand be settled (acked or nacked)."""
    connect_timeout: float = 5.0
    reconnect_interval: float = 2.0
    confirm_timeout: float = 10.0

    def check(self) -> None:
        for event_type in self.event_types:
            if len(event_type.encode()) > AMQP_MAX_ROUTING_KEY:
                raise ConfigurationError(
                    f"event type {event_type[:60]!r}... is over {AMQP_MAX_ROUTING_KEY} bytes: "
                    "it cannot be a RabbitMQ routing key"
                )
        if self.prefetch < 1:
            raise ConfigurationError("the RabbitMQ prefetch must be at least 1")


async def _connect(settings: RabbitMQIngestSettings) -> AbstractRobustConnection:
    try:
        return await aio_pika.connect_robust(
            settings.url,
            timeout=settings.connect_timeout,
            reconnect_interval=settings.reconnect_interval,
        )
    except (OSError, TimeoutError, aiormq.exceptions.AMQPConnectionError) as error:
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {safe_url(settings.url)}: {error!r}"
        ) from error


async def _declare_exchange(
    connection: AbstractRobustConnection, settings: RabbitMQIngestSettings, **channel: bool
) -> AbstractExchange:
    opened = await connection.channel(**channel)
    return await opened.declare_exchange(
        settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


class RabbitMQIngest:
    """Consumes the tracker's queue into the ingestor until `stop`."""

    def __init__(
        self,
        settings: RabbitMQIngestSettings,
        ingestor: EventIngestor,
        metrics: IngestMetrics | None = None,
    ) -> None:
        settings.check()
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics or IngestMetrics()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._settle: Settlement[AbstractIncomingMessage] = Settlement(
            ack=lambda m: m.ack(),
            refuse=lambda m: m.reject(requeue=False),
            retry=lambda m: m.nack(requeue=True),
        )

    async def start(self) -> None:
        """Connect, declare and bind, and start consuming; `BrokerUnavailable` when the
        broker cannot be reached now (later losses are reconnected)."""
        s = self.settings
        self._connection = await _connect(s)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=s.prefetch)
            exchange = await channel.declare_exchange(
                s.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(s.queue, durable=True)
            for event_type in s.event_types:
                await queue.bind(exchange, routing_key=event_type)
            self._worker = asyncio.create_task(self._work(), name=f"ingest {s.queue}")
            self._consumer_tag = await queue.consume(self._inbox.put, no_ack=False)
            self._queue = queue
        except BaseException:
            await self.stop()
            raise
        logger.info(
            "tracking events from RabbitMQ %s: queue %s on exchange %s, %d event types",
            safe_url(s.url),
            s.queue,
            s.exchange,
            len(s.event_types),
        )

    async def _work(self) -> None:
        while True:
            self._idle.set()
            batch = [await self._inbox.get()]
            self._idle.clear()
            while len(batch) < self.settings.prefetch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            ok = await ingest_received(
                [self._received(message) for message in batch],
                self.ingestor,
                self._settle,
                via=VIA,
                metrics=self.metrics,
            )
            if not ok:
                await asyncio.sleep(self.settings.retry_delay)

    @staticmethod
    def _received(message: AbstractIncomingMessage) -> Received[AbstractIncomingMessage]:
        label = message.message_id or f"delivery {message.delivery_tag}"
        try:
            events = parse_message(
                (message.headers or {}).items(), message.content_type, message.body, via=VIA
            )
        except MalformedEvent as problem:
            return Received(message, problem=problem, label=label)
        return Received(message, events, label=label)

    async def stop(self) -> None:
        """Stop consuming and close; messages not yet acknowledged are redelivered."""
        queue, tag, self._queue, self._consumer_tag = self._queue, self._consumer_tag, None, None
        if queue is not None and tag is not None:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        worker, self._worker = self._worker, None
        await finish_worker(worker, self._idle, self.settings.stop_grace)
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


class RabbitMQCommandPublisher:
    """The `CommandEventPublisher` on RabbitMQ: one confirmed publish per event."""

    def __init__(self, settings: RabbitMQIngestSettings) -> None:
        self.settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self) -> None:
        self._connection = await _connect(self.settings)
        try:
            self._exchange = await _declare_exchange(
                self._connection, self.settings, publisher_confirms=True, on_return_raises=True
            )
        except BaseException:
            await self.close()
            raise

    async def publish(self, event: CommandEvent) -> None:
        """Return once RabbitMQ confirmed `event`; raise a `PublishError` otherwise."""
        connection, exchange = self._connection, self._exchange
        if connection is None or exchange is None or not connection.connected.is_set():
            raise BrokerUnavailable("not connected to RabbitMQ (reconnecting)")
        message = aio_pika.Message(
            structured_json(event),
            content_type=STRUCTURED,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.id,
            type=event.type,
            timestamp=event.time,
        )
        try:
            await exchange.publish(
                message,
                routing_key=event.type,
                mandatory=True,
                timeout=self.settings.confirm_timeout,
            )
        except TimeoutError as error:
            raise PublishTimeout(
                f"RabbitMQ did not confirm event {event.id} within "
                f"{self.settings.confirm_timeout} s"
            ) from error
        except aio_pika.exceptions.DeliveryError as error:
            raise PublishNacked(
                f"RabbitMQ did not take event {event.id} (type {event.type}): nacked, or no "
                f"queue is bound to that routing key: {error!r}"
            ) from error
        except (OSError, aiormq.exceptions.AMQPError, RuntimeError) as error:
            raise BrokerUnavailable(
                f"RabbitMQ publish of event {event.id} failed: {error!r}"
            ) from error

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


__all__ = [
    "RabbitMQCommandPublisher",
    "RabbitMQIngest",
    "RabbitMQIngestSettings",
]
