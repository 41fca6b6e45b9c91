"""What `saga serve` is told about the ways tracked sagas' events come in, and the
process's broker consumers and compensation publisher built from it.

`add_ingest_flags(parser)` adds the `--track-*` flags (each also from a `SAGA_TRACK_*`
variable), `IngestConfig.from_args(args)` reads them, and `TrackedEventsIn` runs what
they configure:

    ways_in = TrackedEventsIn(config, metrics)
    publisher = await ways_in.connect_publisher()   # for the executor's rescues; or None
    await ways_in.start(ingestor, event_types)      # consumers, once the ingestor exists
    ...
    await ways_in.stop()

The gRPC service and the HTTP route need no flag: they serve whenever tracked saga types
are registered (see docs/choreography.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.incoming import CommandEventPublisher, EventIngestor
from orchestrator.events.brokers import PublishError

# The broker clients are imported when a broker is configured: every `saga` command
# builds the parser that reads these flags, and most never consume.
if TYPE_CHECKING:
    from orchestrator.events.ingest.batches import IngestMetrics
    from orchestrator.events.ingest.jetstream import NatsCommandPublisher, NatsIngestSettings
    from orchestrator.events.ingest.rabbitmq import (
        RabbitMQCommandPublisher,
        RabbitMQIngestSettings,
    )

logger = logging.getLogger(__name__)


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The broker ways in of one orchestrator process (none without a URL)."""

    rabbitmq_url: str | None = None
    rabbitmq_exchange: str = "saga.choreography"
    rabbitmq_queue: str = "saga.tracker"
    rabbitmq_prefetch: int = 256
    nats_url: str | None = None
    nats_stream: str = "CHOREOGRAPHY"
    nats_subjects: tuple[str, ...] = ("choreography.>",)
    nats_batch: int = 256

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IngestConfig:
        subjects = tuple(s.strip() for s in args.track_nats_subjects.split(",") if s.strip())
        return cls(
            rabbitmq_url=args.track_rabbitmq_url or None,
            rabbitmq_exchange=args.track_rabbitmq_exchange,
            rabbitmq_queue=args.track_rabbitmq_queue,
            rabbitmq_prefetch=args.track_rabbitmq_prefetch,
            nats_url=args.track_nats_url or None,
            nats_stream=args.track_nats_stream,
            nats_subjects=subjects,
            nats_batch=args.track_nats_batch,
        )

    def rabbitmq(self, event_types: Sequence[str] = ()) -> RabbitMQIngestSettings:
        from orchestrator.events.ingest.rabbitmq import RabbitMQIngestSettings

        assert self.rabbitmq_url is not None
        return RabbitMQIngestSettings(
            url=self.rabbitmq_url,
            exchange=self.rabbitmq_exchange,
            queue=self.rabbitmq_queue,
            event_types=tuple(sorted(set(event_types))),
            prefetch=self.rabbitmq_prefetch,
        )

    def nats(self) -> NatsIngestSettings:
        from orchestrator.events.ingest.jetstream import NatsIngestSettings

        assert self.nats_url is not None
        prefix = self.nats_subjects[0].removesuffix(".>") if self.nats_subjects else ""
        return NatsIngestSettings(
            servers=self.nats_url,
            stream=self.nats_stream,
            subjects=self.nats_subjects,
            batch=self.nats_batch,
            publish_prefix=prefix or "choreography",
        )


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"saga serve: {name} must be a whole number, got {text!r}") from None


def add_ingest_flags(parser: argparse.ArgumentParser) -> None:
    """`saga serve`'s flags for tracked sagas' events from brokers, each also from the env."""
    env = os.environ.get
    group = parser.add_argument_group(
        "tracked sagas' events", "consume choreographed services' CloudEvents from brokers"
    )
    group.add_argument(
        "--track-rabbitmq-url",
        default=env("SAGA_TRACK_RABBITMQ_URL"),
        metavar="URL",
        help="consume tracked sagas' events from RabbitMQ at this amqp:// URL "
        "(env SAGA_TRACK_RABBITMQ_URL; default off)",
    )
    group.add_argument(
        "--track-rabbitmq-exchange",
        default=env("SAGA_TRACK_RABBITMQ_EXCHANGE") or "saga.choreography",
        metavar="NAME",
        help="the topic exchange the services publish to; the queue is bound to it once per "
        "tracked event type (env SAGA_TRACK_RABBITMQ_EXCHANGE; default saga.choreography)",
    )
    group.add_argument(
        "--track-rabbitmq-queue",
        default=env("SAGA_TRACK_RABBITMQ_QUEUE") or "saga.tracker",
        metavar="NAME",
        help="the durable queue replicas share (env SAGA_TRACK_RABBITMQ_QUEUE; "
        "default saga.tracker)",
    )
    group.add_argument(
        "--track-rabbitmq-prefetch",
        type=int,
        default=_int_env("SAGA_TRACK_RABBITMQ_PREFETCH", 256),
        metavar="N",
        help="unacknowledged messages a replica holds, and its largest batch "
        "(env SAGA_TRACK_RABBITMQ_PREFETCH; default 256)",
    )
    group.add_argument(
        "--track-nats-url",
        default=env("SAGA_TRACK_NATS_URL"),
        metavar="URL",
        help="consume tracked sagas' events from NATS JetStream at this nats:// URL "
        "(env SAGA_TRACK_NATS_URL; default off)",
    )
    group.add_argument(
        "--track-nats-stream",
        default=env("SAGA_TRACK_NATS_STREAM") or "CHOREOGRAPHY",
        metavar="NAME",
        help="the JetStream stream, created with the subjects when missing "
        "(env SAGA_TRACK_NATS_STREAM; default CHOREOGRAPHY)",
    )
    group.add_argument(
        "--track-nats-subjects",
        default=env("SAGA_TRACK_NATS_SUBJECTS") or "choreography.>",
        metavar="SUBJECTS",
        help="comma-separated subjects the durable consumer saga-tracker reads "
        "(env SAGA_TRACK_NATS_SUBJECTS; default choreography.>)",
    )
    group.add_argument(
        "--track-nats-batch",
        type=int,
        default=_int_env("SAGA_TRACK_NATS_BATCH", 256),
        metavar="N",
        help="messages one fetch takes, the largest batch (env SAGA_TRACK_NATS_BATCH; default 256)",
    )


class TrackedEventsIn:
    """The broker consumers and the compensation publisher of one process."""

    def __init__(self, config: IngestConfig, metrics: IngestMetrics | None = None) -> None:
        from orchestrator.events.ingest.batches import IngestMetrics

        self.config = config
        self.metrics = metrics or IngestMetrics()
        self.publisher: RabbitMQCommandPublisher | NatsCommandPublisher | None = None
        self._consumers: list[_Stoppable] = []

    async def connect_publisher(self) -> CommandEventPublisher | None:
        """The publisher of rescues' compensation events: RabbitMQ's when configured,
        else NATS's, else None. ConfigurationError when its broker cannot be reached."""
        from orchestrator.events.ingest.jetstream import NatsCommandPublisher
        from orchestrator.events.ingest.rabbitmq import RabbitMQCommandPublisher

        c = self.config
        if c.rabbitmq_url:
            publisher: RabbitMQCommandPublisher | NatsCommandPublisher = RabbitMQCommandPublisher(
                c.rabbitmq()
            )
        elif c.nats_url:
            publisher = NatsCommandPublisher(c.nats())
        else:
            return None
        try:
            await publisher.connect()
        except PublishError as error:
            raise ConfigurationError(f"compensation events: {error}") from error
        self.publisher = publisher
        return publisher

    async def start(self, ingestor: EventIngestor, event_types: Sequence[str]) -> None:
        """Start every configured consumer; the RabbitMQ queue is bound to `event_types`
        (every type the tracked saga types declare). ConfigurationError when a broker
        cannot be reached (nothing is left running)."""
        from orchestrator.events.ingest.jetstream import NatsIngest
        from orchestrator.events.ingest.rabbitmq import RabbitMQIngest

        c = self.config
        try:
            if c.rabbitmq_url:
                if not event_types:
                    logger.warning("RabbitMQ tracking: no tracked event types to bind")
                rabbitmq = RabbitMQIngest(c.rabbitmq(event_types), ingestor, self.metrics)
                await rabbitmq.start()
                self._consumers.append(rabbitmq)
            if c.nats_url:
                nats = NatsIngest(c.nats(), ingestor, self.metrics)
                await nats.start()
                self._consumers.append(nats)
        except PublishError as error:
            await self.stop()
            raise ConfigurationError(f"tracked sagas' events: {error}") from error

    async def stop(self) -> None:
        """Stop consuming (unacknowledged messages are redelivered) and close."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.close()


__all__ = ["IngestConfig", "TrackedEventsIn", "add_ingest_flags"]
