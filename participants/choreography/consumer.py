"""One choreographed service on RabbitMQ: consume, handle in one transaction, publish, ack.

The service's durable queue is bound to the topic exchange with the event types it
handles (routing key = event type). Messages are handled one at a time, in order:

1. parse the CloudEvent (a message that is not one is rejected, not requeued: retrying
   cannot fix it);
2. apply it to the SQLite state and record its (source, id) in the same transaction
   (`ServiceState.handle`);
3. publish the outcome event, persistent, and wait for the broker's confirm;
4. only then ack the incoming message.

A crash anywhere before 4 leaves the message unacked, so the broker redelivers it; step
2 then finds the event's row and step 3 republishes the same outcome (same id). Hence
at least once, with the duplicates carrying the same id, and each effect exactly once.

`CHOREOGRAPHY_FAILPOINT=after_commit[:n]` or `after_publish[:n]` freezes the process
(SIGSTOP to itself) after the n-th newly handled event's commit, or after its outcome's
confirm, before the ack: a test then SIGKILLs it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from participants.choreography import events as ev
from participants.choreography.state import ServiceState

logger = logging.getLogger(__name__)

FAILPOINT_ENV = "CHOREOGRAPHY_FAILPOINT"
FAILPOINTS = ("after_commit", "after_publish")
REPUBLISH_PAUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the service consumes and publishes."""

    url: str
    exchange: str
    queue: str
    prefetch: int = 16
    confirm_timeout: float = 10.0
    connect_timeout: float = 10.0


@dataclass(slots=True)
class Failpoint:
    """Freeze the process at `point` on the `nth` newly handled event."""

    point: str
    nth: int
    seen: int = 0

    @classmethod
    def from_env(cls) -> Failpoint | None:
        text = os.environ.get(FAILPOINT_ENV, "")
        if not text:
            return None
        point, _, nth = text.partition(":")
        if point not in FAILPOINTS:
            raise ValueError(f"{FAILPOINT_ENV}: {point!r} is none of {', '.join(FAILPOINTS)}")
        return cls(point, int(nth or "1"))

    def count(self) -> None:
        self.seen += 1

    def reach(self, point: str) -> None:
        if point == self.point and self.seen == self.nth:
            logger.warning("failpoint %s reached on event %d: stopping", point, self.seen)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGSTOP)


class ServiceConsumer:
    """Runs one service until `stop` is set."""

    def __init__(
        self, settings: Settings, state: ServiceState, failpoint: Failpoint | None = None
    ) -> None:
        self.settings = settings
        self.state = state
        self.service = state.service
        self.failpoint = failpoint

    async def run(self, stop: asyncio.Event, ready: Callable[[], None]) -> None:
        s = self.settings
        connection = await aio_pika.connect_robust(s.url, timeout=s.connect_timeout)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=s.prefetch)
            exchange = await channel.declare_exchange(
                s.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(s.queue, durable=True)
            for event_type in self.service.handles:
                await queue.bind(exchange, routing_key=event_type)
            consuming = asyncio.create_task(self._consume(queue, exchange))
            logger.info("%s consuming %s from exchange %s", self.service.name, s.queue, s.exchange)
            ready()
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (consuming, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            error = consuming.exception() if consuming in done else None
            if error is not None:
                raise error

    async def _consume(self, queue: aio_pika.abc.AbstractQueue, exchange: AbstractExchange) -> None:
        async with queue.iterator() as messages:
            async for message in messages:
                await self._on_message(message, exchange)

    async def _on_message(
        self, message: AbstractIncomingMessage, exchange: AbstractExchange
    ) -> None:
        try:
            event = ev.parse_message(message.body, message.content_type, message.headers)
        except ev.MalformedEvent as error:
            logger.warning(
                "rejected message %s (routing key %s): %s",
                message.message_id,
                message.routing_key,
                error,
            )
            await message.reject(requeue=False)
            return
        handled = self.state.handle(event)
        if self.failpoint is not None and not handled.redelivered:
            self.failpoint.count()
            self.failpoint.reach("after_commit")
        outcome = handled.outcome
        logger.info(
            "%s %s for booking %s -> %s%s",
            event.short_type,
            event.id,
            outcome.subject if outcome else "-",
            outcome.short_type if outcome else "nothing",
            " (again: a redelivery)" if handled.redelivered else "",
        )
        if outcome is not None:
            try:
                await self._publish(exchange, outcome)
            except Exception as error:
                logger.warning(
                    "outcome %s not confirmed (%r): redelivery will resend it", outcome.id, error
                )
                await asyncio.sleep(REPUBLISH_PAUSE_SECONDS)
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
        if self.failpoint is not None and not handled.redelivered:
            self.failpoint.reach("after_publish")
        try:
            await message.ack()
        except (
            aio_pika.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
        ) as error:
            # The channel went away (a broker restart): the broker redelivers the message
            # once the connection is back, and the redelivery republishes the same outcome.
            logger.warning("ack of %s lost (%r): it will be redelivered", event.id, error)

    async def _publish(self, exchange: AbstractExchange, event: ev.CloudEvent) -> None:
        """Publish and wait for the broker's confirm (the channel is in confirm mode)."""
        message = aio_pika.Message(
            event.body(),
            content_type=ev.STRUCTURED,
            message_id=event.id,
            type=event.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(
            message, routing_key=event.type, timeout=self.settings.confirm_timeout
        )
