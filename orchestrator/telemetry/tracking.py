"""Metrics of tracked (choreographed) sagas: what became of their incoming events, by
saga type, and which types are tracked (so an alert can pick flagged choreographies out
of `saga_needing_intervention`).

`CountedIngestor` sits in front of the process's one EventIngestor, so every way in
(RabbitMQ, NATS, IngestEvents, the HTTP binding) is counted in one place; the ingestor
itself (engine/tracking.py) stays free of metrics. An event whose type several tracked
types declare counts once for each of them. Label values are bounded: the registered
saga types and the five verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import EventIngestor, IncomingEvent, IngestVerdict
from orchestrator.core.tracking import event_roles
from orchestrator.telemetry.metrics import SagaMetrics


def types_by_event(definitions: Iterable[SagaDefinition]) -> dict[str, tuple[str, ...]]:
    """Each event type the tracked `definitions` declare, with the saga types declaring it."""
    found: dict[str, set[str]] = {}
    for definition in definitions:
        if definition.tracking is None:
            continue
        for event_type in event_roles(definition):
            found.setdefault(event_type, set()).add(definition.name)
    return {event_type: tuple(sorted(names)) for event_type, names in found.items()}


class CountedIngestor:
    """An EventIngestor that counts each event's verdict by saga type, then answers as
    the ingestor it wraps did (a failed batch raises unchanged and counts nothing: the
    broker redelivers it, and the ways in count failed batches themselves)."""

    def __init__(
        self, inner: EventIngestor, definitions: Iterable[SagaDefinition], metrics: SagaMetrics
    ) -> None:
        definitions = tuple(definitions)
        self._inner = inner
        self._types = types_by_event(definitions)
        self._counter = metrics.tracked_events
        for saga_type in sorted({name for names in self._types.values() for name in names}):
            metrics.tracked_types.labels(saga_type).set(1)

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        verdicts = await self._inner.ingest(events)
        for event, verdict in zip(events, verdicts, strict=True):
            for saga_type in self._types.get(event.type, ()):
                self._counter.labels(saga_type, str(verdict)).inc()
        return verdicts
