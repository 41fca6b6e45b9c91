"""Publishers that hand a batch of events to a broker and return only once it holds them.

The relay reads a batch from the outbox, calls `await publisher.publish(batch)` and
deletes the rows only when that returns: every item of the batch is then *confirmed*
(RabbitMQ publisher confirms, a NATS JetStream PubAck). When `publish` raises, the
error says how many leading items are known confirmed (`confirmed`); the relay deletes
those and goes back to the first unconfirmed one. Republishing means duplicates with
the same event id, never reordering: items are written to the connection in batch
order, and the errors never claim an item confirmed unless every item before it is.

Two kinds of failure, told apart by class:

- `PublishFailed` (nack, timeout, lost or refused connection): transient; retry the
  unconfirmed items later, unchanged.
- `EventRefused`: the broker refuses *this* event whatever the retry (too large,
  a routing key it cannot take); `event_id` names it, so the relay can count its
  attempts and dead-letter it.

Routing. Both brokers address an event by `<saga type>.<event name>`, where the event
name is the CloudEvents type without its reverse-DNS prefix and version
(`…saga.completed.v1` -> `saga.completed`, `…step.failed.v1` -> `step.failed`; see
`event_name`). The saga type is one token: characters other than ASCII letters, digits,
`-` and `_` (dots above all, but also `*`, `#`, `>` and spaces, which are wildcards or
separators in AMQP topics and NATS subjects) are percent-encoded, so `shop.checkout`
becomes `shop%2Echeckout` and a binding `shop%2Echeckout.#` sees exactly that saga
type (`escape_token`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import aio_pika
import aiormq
import nats
import nats.errors
import nats.js.errors
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

logger = logging.getLogger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"
"""The content type of a structured-mode CloudEvents JSON body."""

AMQP_MAX_ROUTING_KEY = 255
"""AMQP 0-9-1 routing keys are a short string: at most 255 bytes."""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One event on its way to a broker: its id, where it goes, and its encoded body.

    `body` is the structured CloudEvents JSON as it will be delivered, byte for byte;
    `event_type` its CloudEvents `type`, `subject` its `subject` (the saga id) and `time`
    its `time` (the transition's), used for the AMQP timestamp (now when None).
    """

    event_id: str
    saga_type: str
    event_type: str
    subject: str
    body: bytes
    time: datetime | None = None
    content_type: str = CLOUDEVENTS_JSON


class PublishError(Exception):
    """Base of the publishers' errors.

    `confirmed` is how many leading items of the batch are known confirmed by the broker
    (items 0 .. confirmed-1); the others may or may not have reached it and must be
    published again, starting with item `confirmed`.
    """

    def __init__(self, message: str, *, confirmed: int = 0) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class PublishFailed(PublishError):
    """A transient failure: the unconfirmed items may succeed if published again later."""


class PublishNacked(PublishFailed):
    """The broker answered an item with a negative acknowledgement (RabbitMQ basic.nack)."""


class PublishTimeout(PublishFailed):
    """Not every confirm arrived within the publisher's confirm timeout."""


class BrokerUnavailable(PublishFailed):
    """No connection to the broker (refused, lost, closed) or the broker's stream is missing."""


class EventRefused(PublishError):
    """The broker refuses this event itself and will again: dead-letter it, don't loop.

    `event_id` names the refused item; `confirmed` still counts the leading items known
    confirmed (at most the refused item's index).
    """

    def __init__(self, message: str, *, event_id: str, confirmed: int = 0) -> None:
        super().__init__(message, confirmed=confirmed)
        self.event_id = event_id


@runtime_checkable
class Publisher(Protocol):
    """What the relay needs from a broker sink."""

    async def connect(self) -> None:
        """Connect and declare what the sink needs (exchanges, queues, stream);
        raises `BrokerUnavailable` when the broker cannot be reached."""

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        """Return when every item of `batch` is confirmed; raise a `PublishError` otherwise."""

    async def close(self) -> None:
        """Close the connection; idempotent."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_VERSION = re.compile(r"v[0-9]+")


def escape_token(value: str) -> str:
    """`value` as one routing-key word or subject token: every character outside
    `[A-Za-z0-9_-]` percent-encoded as its UTF-8 bytes (`.` -> `%2E`, `%` -> `%25`)."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def event_name(event_type: str) -> str:
    """The routing name of a CloudEvents type: its last two words before the version.

    `dev.saga-orchestrator.saga.completed.v1` -> `saga.completed`; a type of one or two
    words is kept whole (without a trailing `vN`).
    """
    words = event_type.split(".")
    if len(words) > 1 and _VERSION.fullmatch(words[-1]):
        words = words[:-1]
    return ".".join(escape_token(word) for word in words[-2:])


def routing_key(event: OutgoingEvent) -> str:
    """`<escaped saga type>.<event name>`, the RabbitMQ routing key and NATS subject tail."""
    return f"{escape_token(event.saga_type)}.{event_name(event.event_type)}"


def _confirmed_prefix(results: Sequence[BaseException | object | None]) -> int:
    """How many leading results are successes (neither an exception nor missing)."""
    count = 0
    for result in results:
        if result is None or isinstance(result, BaseException):
            break
        count += 1
    return count


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
                f"cannot connect to RabbitMQ at {_safe_url(s.url)}: {exc!r}"
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
        _, pending = await asyncio.wait(tasks, timeout=self.settings.confirm_timeout)
        for task in pending:
            task.cancel()
        results: list[object | BaseException | None] = []
        for task in tasks:
            if task in pending or task.cancelled():
                results.append(None)
            else:
                results.append(task.exception() or task.result())
        confirmed = _confirmed_prefix(results)
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


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """Where and how to publish to NATS JetStream.

    Subjects are `<subject_prefix>.<escaped saga type>.<event name>`; the stream
    `stream` captures `<subject_prefix>.>` and drops a repeated `Nats-Msg-Id` within
    `duplicate_window` seconds. `max_pending` bounds the publishes awaiting a PubAck.
    """

    servers: str = "nats://127.0.0.1:4222"
    stream: str = "SAGA_EVENTS"
    subject_prefix: str = "sagas"
    duplicate_window: float = 120.0
    ack_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_pending: int = 1000

    def subject(self, event: OutgoingEvent) -> str:
        return f"{self.subject_prefix}.{routing_key(event)}"


class NatsPublisher:
    """Publishes to a JetStream stream, each message's `Nats-Msg-Id` the event id.

    The batch is written to the connection in order, in one coroutine, and the PubAcks
    awaited together (at most `max_pending` outstanding); the stream
    drops a republished event with the same id inside its duplicate window, so a replay
    after a timeout stores it once.

    nats-py's own reconnection is off on purpose: it replays, after reconnecting, what
    was buffered but not yet written when the socket died, while what *was* written to
    the dead socket is lost. That leaves a gap (item 3 stored, item 2 lost) and the
    relay's replay would store item 2 after item 3. Here a lost connection loses a
    suffix of what was sent, never a middle: the batch fails (`PublishTimeout` or
    `BrokerUnavailable`) and the next `publish` opens a new connection first, raising
    `BrokerUnavailable` if it cannot within `connect_timeout`.

    A body over the server's `max_payload` is refused before it is sent, and one the
    stream refuses as too large is refused by JetStream: both raise `EventRefused`.
    """

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._open = False
        self._reply_prefix = ""
        self._replies: dict[str, asyncio.Future[object]] = {}
        self._sent = 0

    async def connect(self) -> None:
        self._open = True
        await self._connect()

    async def _connect(self) -> JetStreamContext:
        s = self.settings
        try:
            nc = await nats.connect(
                s.servers.split(","),
                connect_timeout=max(1, int(s.connect_timeout)),
                allow_reconnect=False,
                # Without a bound nats-py retries a refused first connect for minutes.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                error_cb=_log_nats_error,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise BrokerUnavailable(f"cannot connect to NATS at {s.servers}: {exc!r}") from exc
        try:
            js = nc.jetstream(timeout=s.ack_timeout)
            await self._ensure_stream(js)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            await nc.close()
            raise BrokerUnavailable(f"cannot set up stream {s.stream}: {exc!r}") from exc
        # PubAcks come to our own wildcard inbox rather than through nats-py's
        # publish_async, whose reply handler raises on a JetStream error instead of
        # failing the waiting future (the refusal would look like a timeout).
        prefix = nc.new_inbox()
        self._replies = {}
        await nc.subscribe(f"{prefix}.*", cb=self._on_reply)
        self._nc, self._js, self._reply_prefix = nc, js, prefix
        return js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        s = self.settings
        config = StreamConfig(
            name=s.stream,
            subjects=[f"{s.subject_prefix}.>"],
            duplicate_window=s.duplicate_window,
        )
        try:
            await js.stream_info(s.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        if not batch:
            return
        if not self._open:
            raise BrokerUnavailable("the NATS publisher is not connected (or was closed)")
        nc = self._nc
        if nc is None or not nc.is_connected:
            if nc is not None:
                await nc.close()
            await self._connect()
            assert self._nc is not None
            nc = self._nc
        window = max(1, self.settings.max_pending)
        for start in range(0, len(batch), window):
            try:
                await self._publish_window(nc, batch, start, min(start + window, len(batch)))
            except PublishError as exc:
                exc.confirmed += start
                raise

    async def _publish_window(
        self, nc: NatsClient, batch: Sequence[OutgoingEvent], start: int, end: int
    ) -> None:
        """Items start..end-1 written in order, then their PubAcks awaited together;
        errors count `confirmed` from `start`."""
        max_payload = nc.max_payload
        futures: list[asyncio.Future[object]] = []
        try:
            for index in range(start, end):
                event = batch[index]
                if len(event.body) > max_payload:
                    raise EventRefused(
                        f"NATS refuses event {event.event_id}: {len(event.body)} bytes, over "
                        f"the server's max_payload {max_payload}",
                        event_id=event.event_id,
                        confirmed=await self._settle(futures),
                    )
                try:
                    futures.append(await self._send(nc, event))
                except (nats.errors.Error, OSError) as exc:
                    raise BrokerUnavailable(
                        f"NATS publish failed at item {index} of {len(batch)}: {exc!r}",
                        confirmed=await self._settle(futures),
                    ) from exc
            await self._await_acks(nc, batch[start:end], futures)
        finally:
            for future in futures:
                future.cancel()

    async def _send(self, nc: NatsClient, event: OutgoingEvent) -> asyncio.Future[object]:
        self._sent += 1
        reply = f"{self._reply_prefix}.{self._sent}"
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[reply] = future
        future.add_done_callback(lambda _: self._replies.pop(reply, None))
        headers = {"Nats-Msg-Id": event.event_id, "Content-Type": event.content_type}
        await nc.publish(self.settings.subject(event), event.body, reply=reply, headers=headers)
        return future

    async def _on_reply(self, msg: NatsMsg) -> None:
        """A PubAck, a JetStream error, or the server's "no responders" status."""
        future = self._replies.get(msg.subject)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(_JetStreamError(503, 0, "no responders: no stream for subject"))
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            future.set_exception(_JetStreamError(0, 0, "an unreadable PubAck"))
            return
        error = answer.get("error") if isinstance(answer, dict) else None
        if error:
            future.set_exception(
                _JetStreamError(
                    int(error.get("code", 0)),
                    int(error.get("err_code", 0)),
                    str(error.get("description", "")),
                )
            )
        else:
            future.set_result(answer)

    async def _settle(self, futures: Sequence[asyncio.Future[object]]) -> int:
        """Waits (bounded) for the acks of what was already sent; the confirmed prefix."""
        if futures:
            await asyncio.wait(futures, timeout=self.settings.ack_timeout)
        return _confirmed_prefix([_outcome(f) for f in futures])

    async def _await_acks(
        self,
        nc: NatsClient,
        batch: Sequence[OutgoingEvent],
        futures: Sequence[asyncio.Future[object]],
    ) -> None:
        await asyncio.wait(futures, timeout=self.settings.ack_timeout)
        results = [_outcome(f) for f in futures]
        confirmed = _confirmed_prefix(results)
        if confirmed == len(batch):
            return
        error = results[confirmed]
        event = batch[confirmed]
        if isinstance(error, _JetStreamError) and error.is_size_refusal:
            raise EventRefused(
                f"JetStream refused event {event.event_id}: {error}",
                event_id=event.event_id,
                confirmed=confirmed,
            )
        if isinstance(error, _JetStreamError) and error.code == 503:
            raise BrokerUnavailable(
                f"JetStream did not take event {event.event_id}: {error}", confirmed=confirmed
            )
        if isinstance(error, BaseException):
            raise PublishNacked(
                f"JetStream refused event {event.event_id} for now: {error}",
                confirmed=confirmed,
            )
        if not nc.is_connected:
            raise BrokerUnavailable(
                f"the NATS connection was lost with {confirmed} of {len(batch)} items acknowledged",
                confirmed=confirmed,
            )
        raise PublishTimeout(
            f"JetStream acknowledged {confirmed} of {len(batch)} items within "
            f"{self.settings.ack_timeout} s",
            confirmed=confirmed,
        )

    async def close(self) -> None:
        self._open = False
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()


async def _log_nats_error(error: Exception) -> None:
    logger.warning("NATS connection: %r", error)


def _outcome(future: asyncio.Future[object]) -> object | BaseException | None:
    if not future.done() or future.cancelled():
        return None
    return future.exception() or future.result()


class _JetStreamError(Exception):
    """JetStream's error answer to a publish: HTTP-like `code`, JetStream `err_code`."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code, self.err_code, self.description = code, err_code, description

    @property
    def is_size_refusal(self) -> bool:
        """ "message size exceeds maximum allowed" (JSStreamMessageExceedsMaximumErr)."""
        return self.err_code == 10054 or "size exceeds" in self.description


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)


__all__ = [
    "CLOUDEVENTS_JSON",
    "BrokerUnavailable",
    "EventRefused",
    "NatsPublisher",
    "NatsSettings",
    "OutgoingEvent",
    "PublishError",
    "PublishFailed",
    "PublishNacked",
    "PublishTimeout",
    "Publisher",
    "RabbitMQPublisher",
    "RabbitMQSettings",
    "escape_token",
    "event_name",
    "routing_key",
]
