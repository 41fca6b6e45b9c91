"""Tracked sagas' events from NATS JetStream, and the orchestrator's own events back to it.

The consumer is a durable pull consumer (default `saga-tracker`) on the stream (created
when missing, capturing the subjects), filtered to the subjects (default
`choreography.>`); replicas share it, so each message goes to one of them. A fetch takes
up to `batch` messages; they are ingested as one batch and each acked once `ingest`
returned; a message that is not a CloudEvent is terminated (never redelivered); when the
ingestor fails every message is nak'd with a delay and JetStream redelivers it (`batches`).
A message neither acked nor nak'd within `ack_wait` (a replica died holding it) is
redelivered too. nats-py reconnects on its own after a server restart; fetches fail
meanwhile and the loop tries again.

`NatsCommandPublisher` publishes a rescue's compensation event as a structured
CloudEvent on `<publish_prefix>.<type>` with `Nats-Msg-Id` = the event id (a resend within
the stream's duplicate window is stored once) and returns once JetStream acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.incoming import CommandEvent, EventIngestor
from orchestrator.events.brokers import BrokerUnavailable, PublishNacked
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

VIA = "nats"


@dataclass(frozen=True, slots=True)
class NatsIngestSettings:
    """Where the tracker consumes on JetStream, and how much it takes at once."""

    servers: str
    stream: str = "CHOREOGRAPHY"
    subjects: tuple[str, ...] = ("choreography.>",)
    durable: str = "saga-tracker"
    batch: int = 256
    fetch_wait: float = 1.0
    """How long one fetch waits for a first message (the loop's bound)."""
    ack_wait: float = 30.0
    retry_delay: float = 1.0
    """How long a nak'd message waits before JetStream redelivers it."""
    stop_grace: float = 5.0
    """How long `stop` lets a batch in hand be settled (acked or nak'd)."""
    connect_timeout: float = 5.0
    publish_prefix: str = "choreography"
    publish_timeout: float = 10.0

    def check(self) -> None:
        if not self.subjects or not all(self.subjects):
            raise ConfigurationError("--track-nats-subjects: give one or more subjects")
        if self.batch < 1:
            raise ConfigurationError("the NATS fetch batch must be at least 1")


async def _connect(settings: NatsIngestSettings) -> tuple[NatsClient, JetStreamContext]:
    async def log_error(error: Exception) -> None:
        logger.warning("NATS connection: %r", error)

    try:
        nc = await nats.connect(
            settings.servers.split(","),
            connect_timeout=max(1, int(settings.connect_timeout)),
            # Bounded for the first connect (nats-py retries a refused one that many
            # times), unbounded once connected: see below.
            max_reconnect_attempts=1,
            reconnect_time_wait=1,
            error_cb=log_error,
        )
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise BrokerUnavailable(
            f"cannot connect to NATS at {settings.servers}: {error!r}"
        ) from error
    # A server restart later must not end consuming: reconnect for as long as it takes
    # (nats-py reads this option at each reconnection).
    nc.options["max_reconnect_attempts"] = -1
    js = nc.jetstream(timeout=settings.publish_timeout)
    try:
        await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(StreamConfig(name=settings.stream, subjects=list(settings.subjects)))
    except BaseException:
        await nc.close()
        raise
    return nc, js


async def _term(msg: NatsMsg) -> None:
    await msg.term()


async def _ack(msg: NatsMsg) -> None:
    await msg.ack()


class NatsIngest:
    """Fetches from the tracker's durable consumer into the ingestor until `stop`."""

    def __init__(
        self,
        settings: NatsIngestSettings,
        ingestor: EventIngestor,
        metrics: IngestMetrics | None = None,
    ) -> None:
        settings.check()
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics or IngestMetrics()
        self._nc: NatsClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

        async def nak(msg: NatsMsg) -> None:
            await msg.nak(delay=settings.retry_delay)

        self._settle: Settlement[NatsMsg] = Settlement(ack=_ack, refuse=_term, retry=nak)

    async def start(self) -> None:
        """Connect, make sure of the stream and the consumer, and start fetching;
        `BrokerUnavailable` when NATS cannot be reached now."""
        s = self.settings
        self._nc, js = await _connect(s)
        try:
            config = ConsumerConfig(
                durable_name=s.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.ack_wait,
                max_ack_pending=max(1000, 4 * s.batch),
                **(
                    {"filter_subjects": list(s.subjects)}
                    if len(s.subjects) > 1
                    else {"filter_subject": s.subjects[0]}
                ),
            )
            subscription = await js.pull_subscribe(
                s.subjects[0], durable=s.durable, stream=s.stream, config=config
            )
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._work(subscription), name=f"ingest {s.stream}")
        logger.info(
            "tracking events from NATS %s: stream %s, consumer %s, subjects %s",
            s.servers,
            s.stream,
            s.durable,
            ", ".join(s.subjects),
        )

    async def _work(self, subscription: JetStreamContext.PullSubscription) -> None:
        s = self.settings
        while True:
            self._idle.set()
            try:
                messages = await subscription.fetch(s.batch, timeout=s.fetch_wait)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as error:
                logger.warning("NATS fetch failed (trying again): %r", error)
                await asyncio.sleep(s.retry_delay)
                continue
            self._idle.clear()
            await ingest_received(
                [self._received(msg) for msg in messages],
                self.ingestor,
                self._settle,
                via=VIA,
                metrics=self.metrics,
            )

    @staticmethod
    def _received(msg: NatsMsg) -> Received[NatsMsg]:
        headers = msg.headers or {}
        label = headers.get("Nats-Msg-Id") or f"{msg.subject} #{_sequence(msg)}"
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        try:
            events = parse_message(headers.items(), content_type, msg.data, via=VIA)
        except MalformedEvent as problem:
            return Received(msg, problem=problem, label=label)
        return Received(msg, events, label=label)

    async def stop(self) -> None:
        """Stop fetching and close; messages not yet acked are redelivered after ack_wait."""
        task, self._task = self._task, None
        await finish_worker(task, self._idle, self.settings.stop_grace)
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()


def _sequence(msg: NatsMsg) -> int | str:
    with contextlib.suppress(Exception):
        return msg.metadata.sequence.stream
    return "?"


class NatsCommandPublisher:
    """The `CommandEventPublisher` on JetStream: one acknowledged publish per event."""

    def __init__(self, settings: NatsIngestSettings) -> None:
        self.settings = settings
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None

    async def connect(self) -> None:
        self._nc, self._js = await _connect(self.settings)

    def subject(self, event: CommandEvent) -> str:
        return f"{self.settings.publish_prefix}.{event.type}"

    async def publish(self, event: CommandEvent) -> None:
        """Return once JetStream stored `event`; raise a `PublishError` otherwise."""
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise BrokerUnavailable("not connected to NATS")
        headers = {"Nats-Msg-Id": event.id, "Content-Type": STRUCTURED}
        try:
            await self._js.publish(
                self.subject(event),
                structured_json(event),
                timeout=self.settings.publish_timeout,
                headers=headers,
            )
        except nats.js.errors.NoStreamResponseError as error:
            raise PublishNacked(
                f"no JetStream stream captures {self.subject(event)} (event {event.id})"
            ) from error
        except (nats.errors.Error, OSError, TimeoutError) as error:
            raise BrokerUnavailable(
                f"NATS publish of event {event.id} failed: {error!r}"
            ) from error

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()


__all__ = ["NatsCommandPublisher", "NatsIngest", "NatsIngestSettings"]
