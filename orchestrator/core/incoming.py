"""Events that come in: CloudEvents from the services of a choreographed saga.

A tracked saga type (one whose steps are observed, not commanded) is moved by the
events its services publish. Every way in (a RabbitMQ queue, a NATS JetStream consumer,
the IngestEvents RPC, the CloudEvents HTTP binding) parses what it receives into an
`IncomingEvent` and hands a batch to the one `EventIngestor`; it acknowledges a message
to its broker only after `ingest` has returned, that is after what the events did was
committed. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

JsonValue = Any
"""A value of parsed JSON: dict, list, str, int, float, bool or None."""


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One CloudEvent (spec 1.0) as the tracker reads it.

    `source` and `id` identify it (a redelivery has the same pair); `data` is its
    payload parsed as JSON (None when it has none or it is not JSON); `extensions`
    holds every other context attribute as a string (correlation may name one);
    `received_via` says which way it came in ("rabbitmq", "nats", "grpc", "http").
    """

    source: str
    id: str
    type: str
    time: datetime | None = None
    subject: str = ""
    data: JsonValue = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    received_via: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """What deduplicates an event: its (source, id)."""
        return (self.source, self.id)

    @property
    def actor(self) -> str:
        """The actor named on the log rows this event writes."""
        return f"event:{self.source}"


class IngestVerdict(enum.StrEnum):
    """What one ingested event did, once committed."""

    RECORDED = "RECORDED"
    """It started an instance or moved one (a transition is in the saga's log)."""
    DUPLICATE = "DUPLICATE"
    """Its (source, id) was ingested before: nothing new was written."""
    HELD = "HELD"
    """Kept for later: its instance has not started yet, or it came before its turn."""
    ANOMALY = "ANOMALY"
    """Recorded as an anomaly (after the end, conflicting, unexpected, never correlated)."""
    IGNORED = "IGNORED"
    """No tracked saga type declares its type: not recorded."""


class EventIngestor(Protocol):
    """The one place incoming events are applied to tracked sagas."""

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        """Apply a batch; return each event's verdict, in order, once all of it is
        committed (the caller acknowledges to its broker only then). Raises when the
        store cannot be reached: nothing is acknowledged, the broker redelivers."""
        ...


class NoTrackedTypes:
    """The ingestor of a server with no tracked saga type: every event is IGNORED, so
    the ways in answer alike whatever the server registers."""

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        return [IngestVerdict.IGNORED] * len(events)


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """An event the orchestrator itself publishes to a choreographed service: a
    rescue's compensation (`type` is the step's `compensation_event`). `id` is fixed
    per saga and step, so a resend after a crash is a duplicate the service ignores."""

    id: str
    type: str
    source: str
    subject: str
    data: Mapping[str, JsonValue]
    time: datetime


class CommandEventPublisher(Protocol):
    """Publishes the orchestrator's own events, confirmed by the broker."""

    async def publish(self, event: CommandEvent) -> None:
        """Return once the broker confirmed it; raise when it did not (retried)."""
        ...


__all__ = [
    "CommandEvent",
    "CommandEventPublisher",
    "EventIngestor",
    "IncomingEvent",
    "IngestVerdict",
    "JsonValue",
    "NoTrackedTypes",
]
