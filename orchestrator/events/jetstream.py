"""NATS JetStream: a stream, `Nats-Msg-Id` = event id, every PubAck awaited per batch
(see `brokers.py` for the contract every publisher keeps)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from orchestrator.events.brokers import (
    BrokerUnavailable,
    EventRefused,
    OutgoingEvent,
    PublishError,
    PublishNacked,
    PublishTimeout,
    confirmed_prefix,
    routing_key,
)

logger = logging.getLogger(__name__)


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
        return confirmed_prefix([_outcome(f) for f in futures])

    async def _await_acks(
        self,
        nc: NatsClient,
        batch: Sequence[OutgoingEvent],
        futures: Sequence[asyncio.Future[object]],
    ) -> None:
        await asyncio.wait(futures, timeout=self.settings.ack_timeout)
        results = [_outcome(f) for f in futures]
        confirmed = confirmed_prefix(results)
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


__all__ = ["NatsPublisher", "NatsSettings"]
