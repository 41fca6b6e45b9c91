"""What one pass of `TrackedEvents.ingest` keeps per instance and writes: the batch's
events routed to an instance, the plan of its saga's write, and the rows of events that
touch no saga (held until their instance starts, or never correlated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import IncomingEvent, IngestVerdict
from orchestrator.core.ingested import (
    EventAnomaly,
    EventKey,
    HeldEvent,
    IngestedEvent,
    IngestedRows,
    InstanceGuard,
)
from orchestrator.core.records import NewSaga, SagaCommit
from orchestrator.core.tracking import EventRole
from orchestrator.engine.event_payloads import event_payload


@dataclass(slots=True)
class Routed:
    """One event for one instance: where it is in the batch, and its role there."""

    position: int
    event: IncomingEvent
    role: EventRole


@dataclass(slots=True)
class Instance:
    """The events of one batch for one (tracked type, correlation value)."""

    definition: SagaDefinition
    correlation: str
    namespace: str
    key: str
    events: list[Routed] = field(default_factory=list)

    def guard(self, known_held: tuple[EventKey, ...] = ()) -> InstanceGuard:
        """What serialises this instance's start with events held for it meanwhile."""
        return InstanceGuard(
            self.definition.name, self.namespace, self.correlation, self.key, known_held
        )


@dataclass(slots=True)
class Plan:
    """What settling one instance writes, and the verdicts it gives once written."""

    instance: Instance
    new_saga: NewSaga | None = None
    commit: SagaCommit | None = None
    verdicts: dict[int, IngestVerdict] = field(default_factory=dict)
    needs_driving: bool = False


@dataclass(slots=True)
class Loose:
    """Rows of no saga (held before their instance started, never correlated)."""

    ingested: list[IngestedEvent] = field(default_factory=list)
    held: list[HeldEvent] = field(default_factory=list)
    anomalies: list[EventAnomaly] = field(default_factory=list)
    guards: list[InstanceGuard] = field(default_factory=list)
    verdicts: dict[int, IngestVerdict] = field(default_factory=dict)

    def rows(self) -> IngestedRows:
        return IngestedRows(
            tuple(self.ingested),
            tuple(self.held),
            (),
            tuple(self.anomalies),
            tuple(self.guards),
        )

    def anomaly(
        self,
        position: int,
        event: IncomingEvent,
        saga_type: str,
        correlation: str,
        reason: str,
        now: datetime,
    ) -> None:
        """The event is an anomaly of no saga's log: an anomaly row, and its key."""
        verdict = IngestVerdict.ANOMALY
        self.ingested.append(IngestedEvent(event.source, event.id, verdict.value, now))
        self.anomalies.append(
            EventAnomaly(
                event.source,
                event.id,
                event.type,
                correlation,
                saga_type,
                reason,
                event_payload(event),
                now,
            )
        )
        self.verdicts[position] = verdict

    def hold_until_start(self, instance: Instance, now: datetime, expire: datetime) -> None:
        """No instance yet and no start event for it: every event waits for the start
        (refused at commit if the instance started meanwhile: `InstanceGuard`)."""
        self.guards.append(instance.guard())
        for routed in instance.events:
            verdict = IngestVerdict.HELD
            self.ingested.append(
                IngestedEvent(routed.event.source, routed.event.id, verdict.value, now)
            )
            self.held.append(held_row(routed.event, instance, now, expire))
            self.verdicts[routed.position] = verdict


def held_row(
    event: IncomingEvent, instance: Instance, now: datetime, expire: datetime
) -> HeldEvent:
    """The held row of an event of `instance`, to be applied in its turn or to expire."""
    return HeldEvent(
        source=event.source,
        event_id=event.id,
        saga_type=instance.definition.name,
        namespace=instance.namespace,
        correlation=instance.correlation,
        event_type=event.type,
        payload=event_payload(event),
        received_time=now,
        expire_time=expire,
    )
