"""What `saga serve` is told about broker sinks, and the sinks and publishers it makes.

Each configured broker is one `EventSink` (named `rabbitmq` or `nats`), given both to the
store (which writes its outbox rows) and to the relay (which publishes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.events import DEFAULT_PARTITIONS, EventSet, EventSink
from orchestrator.events.brokers import Publisher, safe_url

RABBITMQ_SINK = "rabbitmq"
NATS_SINK = "nats"


@dataclass(frozen=True, slots=True)
class ConfiguredSink:
    """A sink as operators see it: what it selects, its kind, and where it publishes
    (`target`, without credentials)."""

    sink: EventSink
    kind: str
    target: str


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """The broker sinks of one orchestrator process (none when no URL is given)."""

    rabbitmq_url: str | None = None
    rabbitmq_exchange: str = "saga.events"
    nats_url: str | None = None
    nats_stream: str = "SAGA_EVENTS"
    nats_subject_prefix: str = "sagas"
    events: EventSet = EventSet.LIFECYCLE
    saga_types: frozenset[str] = field(default_factory=frozenset)
    partitions: int = DEFAULT_PARTITIONS

    def _sink(self, name: str) -> EventSink:
        return EventSink(
            name, events=self.events, saga_types=self.saga_types, partitions=self.partitions
        )

    def sinks(self) -> list[tuple[EventSink, Publisher]]:
        """Each configured broker's sink with a (not yet connected) publisher for it."""
        sinks: list[tuple[EventSink, Publisher]] = []
        if self.rabbitmq_url:
            from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings

            settings = RabbitMQSettings(url=self.rabbitmq_url, exchange=self.rabbitmq_exchange)
            sinks.append((self._sink(RABBITMQ_SINK), RabbitMQPublisher(settings)))
        if self.nats_url:
            from orchestrator.events.jetstream import NatsPublisher, NatsSettings

            nats = NatsSettings(
                servers=self.nats_url,
                stream=self.nats_stream,
                subject_prefix=self.nats_subject_prefix,
            )
            sinks.append((self._sink(NATS_SINK), NatsPublisher(nats)))
        return sinks

    def described(self) -> list[ConfiguredSink]:
        """Each configured broker's sink, kind and target, for operators."""
        described = []
        if self.rabbitmq_url:
            target = f"{safe_url(self.rabbitmq_url)} exchange {self.rabbitmq_exchange}"
            described.append(ConfiguredSink(self._sink(RABBITMQ_SINK), "rabbitmq", target))
        if self.nats_url:
            target = f"{safe_url(self.nats_url)} stream {self.nats_stream}"
            described.append(ConfiguredSink(self._sink(NATS_SINK), "nats", target))
        return described


__all__ = ["NATS_SINK", "RABBITMQ_SINK", "ConfiguredSink", "EventsConfig"]
