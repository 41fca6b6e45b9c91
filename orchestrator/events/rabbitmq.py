"""RabbitMQ: a durable topic exchange, persistent messages, publisher confirms per batch
(see `brokers.py` for the contract every publisher keeps)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from orchestrator import failpoints
from orchestrator.events.brokers import (
    AMQP_MAX_ROUTING_KEY,
    BrokerUnavailable,
    EventRefused,
    OutgoingEvent,
    PublishError,
    PublishNacked,
    PublishTimeout,
    confirmed_prefix,
    routing_key,
    safe_url,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RabbitMQSettings:
    """Where and how to publish to RabbitMQ.

    The topic exchange `exchange` gets an alternate exchange `<exchange>.unrouted`
    (fanout) bound to the queue `<exchange>.unrouted`, which keeps the newest
    `unrouted_max_length` messages (overflow drops the oldest): an event no binding
    matches lands there instead of being dropped or returned.
    """

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "saga.events"
    unrouted_max_length: int = 10_000
    confirm_timeout: float = 10.0
    connect_timeout: float = 5.0
    reconnect_interval: float = 2.0

    @property
    def unrouted(self) -> str:
        return f"{self.exchange}.unrouted"


class RabbitMQPublisher:
    """Publishes to a durable topic exchange on a channel with publisher confirms.

    Messages are persistent (delivery mode 2) with `message_id` = event id, `type` =
    event type, `content_type`, `timestamp` and a `subject` header. A batch is written in
    order and its confirms awaited together (one round trip per batch, not per
    message). The connection is robust: aio-pika reconnects in the background after a
    loss, while the batch in flight fails with `BrokerUnavailable` (its unconfirmed
    items are the relay's to publish again); a publish while reconnecting fails the
    same way rather than waiting.

    A message over the broker's `max_message_size` (16 MiB by default on RabbitMQ 4)
    makes the broker close the channel with PRECONDITION_FAILED; that becomes
    `EventRefused` naming the first item over the size the broker stated, and a new
    channel is opened for the next batch.
    """

    def __init__(self, settings: RabbitMQSettings) -> None:
        self.settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self) -> None:
        s = self.settings
        try:
            self._connection = await aio_pika.connect_robust(
                s.url, timeout=s.connect_timeout, reconnect_interval=s.reconnect_interval
            )
            await self._open_channel(declare=True)
        except (OSError, TimeoutError, aiormq.exceptions.AMQPConnectionError) as exc:
            await self.close()
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {safe_url(s.url)}: {exc!r}"
            ) from exc

    async def _open_channel(self, *, declare: bool) -> AbstractExchange:
        assert self._connection is not None
        s = self.settings
        channel = await self._connection.channel(publisher_confirms=True)
        if declare:
            unrouted = await channel.declare_exchange(
                s.unrouted, aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(
                s.unrouted,
                durable=True,
                arguments={"x-max-length": s.unrouted_max_length, "x-overflow": "drop-head"},
            )
            await queue.bind(unrouted)
        exchange = await channel.declare_exchange(
            s.exchange,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": s.unrouted},
        )
        self._channel, self._exchange = channel, exchange
        return exchange

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        if not batch:
            return
        messages = [(self._message(event), routing_key(event)) for event in batch]
        for index, (event, (_, key)) in enumerate(zip(batch, messages, strict=True)):
            if len(key.encode()) > AMQP_MAX_ROUTING_KEY:
                # Checked before anything is sent: nothing of this batch is confirmed.
                raise EventRefused(
                    f"routing key of event {event.event_id} is over {AMQP_MAX_ROUTING_KEY} "
                    "bytes (saga type too long)",
                    event_id=event.event_id,
                    confirmed=index,
                )
        exchange = await self._usable_exchange()
        tasks = [
            asyncio.ensure_future(exchange.publish(message, routing_key=key, mandatory=False))
            for message, key in messages
        ]
        for task in tasks:
            task.add_done_callback(_item_confirmed)
        _, pending = await asyncio.wait(tasks, timeout=self.settings.confirm_timeout)
        for task in pending:
            task.cancel()
        results: list[object | BaseException | None] = []
        for task in tasks:
            if task in pending or task.cancelled():
                results.append(None)
            else:
                results.append(task.exception() or task.result())
        confirmed = confirmed_prefix(results)
        if confirmed == len(batch):
            return
        raise self._failure(batch, results, confirmed, timed_out=bool(pending))

    def _failure(
        self,
        batch: Sequence[OutgoingEvent],
        results: Sequence[object | BaseException | None],
        confirmed: int,
        *,
        timed_out: bool,
    ) -> PublishError:
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            refused = self._refusal(batch, error, confirmed)
            if refused is not None:
                return refused
        if any(isinstance(e, aio_pika.exceptions.DeliveryError) for e in errors):
            return PublishNacked(
                f"RabbitMQ nacked item {confirmed} of {len(batch)} "
                f"(event {batch[confirmed].event_id})",
                confirmed=confirmed,
            )
        if errors:
            return BrokerUnavailable(
                f"RabbitMQ publish failed at item {confirmed} of {len(batch)}: {errors[0]!r}",
                confirmed=confirmed,
            )
        assert timed_out
        return PublishTimeout(
            f"RabbitMQ confirmed {confirmed} of {len(batch)} items within "
            f"{self.settings.confirm_timeout} s",
            confirmed=confirmed,
        )

    @staticmethod
    def _refusal(
        batch: Sequence[OutgoingEvent], error: BaseException, confirmed: int
    ) -> EventRefused | None:
        """The broker's size refusal (channel closed, 406, "... larger than configured
        max size N"), pinned on the first item whose body exceeds N."""
        if not isinstance(error, aiormq.exceptions.ChannelPreconditionFailed):
            return None
        match = re.search(r"larger than configured max size (\d+)", str(error))
        if match is None:
            return None
        limit = int(match.group(1))
        for index, event in enumerate(batch):
            if len(event.body) > limit:
                return EventRefused(
                    f"RabbitMQ refused event {event.event_id}: {len(event.body)} bytes, "
                    f"over the broker's max_message_size {limit}",
                    event_id=event.event_id,
                    confirmed=min(confirmed, index),
                )
        return None

    async def _usable_exchange(self) -> AbstractExchange:
        """The exchange on an open channel; a new channel after the broker closed one."""
        connection = self._connection
        if connection is None or connection.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        if not connection.connected.is_set():
            raise BrokerUnavailable("the connection to RabbitMQ is lost; reconnecting")
        channel, exchange = self._channel, self._exchange
        if channel is not None and exchange is not None and not channel.is_closed:
            return exchange
        if channel is not None:
            # Closed by the broker (a refused message): a fresh one replaces it.
            with contextlib.suppress(Exception):
                await channel.close()
        try:
            return await self._open_channel(declare=False)
        except (OSError, aiormq.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(f"cannot open a RabbitMQ channel: {exc!r}") from exc

    @staticmethod
    def _message(event: OutgoingEvent) -> aio_pika.Message:
        return aio_pika.Message(
            event.body,
            content_type=event.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.event_id,
            type=event.event_type,
            timestamp=event.time or datetime.now(UTC),
            headers={"subject": event.subject},
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def _item_confirmed(task: asyncio.Future[Any]) -> None:
    """The crash tests' mid-batch point: one item's confirm is in (see `failpoints`)."""
    if not task.cancelled() and task.exception() is None:
        failpoints.hit("relay_item_confirmed")


__all__ = ["RabbitMQPublisher", "RabbitMQSettings"]
