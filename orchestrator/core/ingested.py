"""What the store keeps of incoming events (migration 0013): plain records, no I/O.

An event a tracked saga type declares is applied once: its key (source, id) is written
to `ingested_events` in the transaction of what it did (a saga's commit, a held row, an
anomaly), so a redelivery after a crash between consuming and committing finds it and
is a DUPLICATE. An event that came before its turn, or before its instance started, is
kept in `held_events` until its step is expected (deleted in the commit that applies
it) or until its wait runs out (moved to `event_anomalies`, where operators list it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

EventKey = tuple[str, str]
"""What deduplicates an event: its (source, id)."""


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One row of `ingested_events`: an event applied, and what it did.

    `saga_id` is the instance it was correlated to, None while it has none (held before
    its instance started, or an anomaly of no saga); `verdict` is an `IngestVerdict`'s
    value."""

    source: str
    event_id: str
    verdict: str
    time: datetime
    saga_id: str | None = None

    @property
    def key(self) -> EventKey:
        return (self.source, self.event_id)


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """One row of `held_events`: an event kept until its step is expected.

    `payload` is the whole IncomingEvent as JSON (the tracker rebuilds it to apply it);
    `expire_time` is when, still held, it becomes an anomaly."""

    source: str
    event_id: str
    saga_type: str
    namespace: str
    correlation: str
    event_type: str
    payload: dict[str, Any]
    received_time: datetime
    expire_time: datetime

    @property
    def key(self) -> EventKey:
        return (self.source, self.event_id)


@dataclass(frozen=True, slots=True)
class EventAnomaly:
    """One row of `event_anomalies`: an event no saga's log could record (its instance
    never started within the wait), with the reason."""

    source: str
    event_id: str
    event_type: str
    correlation: str
    saga_type: str
    reason: str
    payload: dict[str, Any]
    time: datetime

    @property
    def key(self) -> EventKey:
        return (self.source, self.event_id)


@dataclass(frozen=True, slots=True)
class InstanceGuard:
    """Serialises a tracked instance's start with the events held for it before it
    started, which another replica may be writing at the same moment.

    Both writes take a lock on the instance's key (`key`, its stored idempotency key) in
    their transaction. The start (on a `NewSaga`) is refused (StaleSagaVersion) when
    events are held for the instance that it did not read (`known_held`): it is settled
    again with them. Events held before the start (rows of no saga) are refused when the
    instance exists by then: they are applied to it instead."""

    saga_type: str
    namespace: str
    correlation: str
    key: str
    known_held: tuple[EventKey, ...] = ()


@dataclass(frozen=True, slots=True)
class IngestedRows:
    """The tracker's rows that go with one write, in its transaction.

    On a `SagaCommit` or `NewSaga`: the events the commit applied (`ingested`), those it
    holds for later (`held`, each also in `ingested`), and the held events it applied
    (`applied`: their held rows are deleted and their ingested rows name the saga). A new
    saga whose insert is skipped (its instance was started by another writer) writes none
    of its rows."""

    ingested: tuple[IngestedEvent, ...] = ()
    held: tuple[HeldEvent, ...] = ()
    applied: tuple[tuple[EventKey, str], ...] = ()
    """(key, saga_id) of each held event applied."""
    anomalies: tuple[EventAnomaly, ...] = ()
    guards: tuple[InstanceGuard, ...] = ()
    """The instances whose start and held events this write serialises with."""

    def __bool__(self) -> bool:
        return bool(self.ingested or self.held or self.applied or self.anomalies)


NO_ROWS = IngestedRows()


@dataclass(frozen=True, slots=True)
class AnomalyFilter:
    """Which event anomalies a listing shows (every field optional, all must hold)."""

    saga_type: str | None = None
    correlation: str | None = None
    source: str | None = None
    event_type: str | None = None
    after_time: datetime | None = None
    before_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class AnomalyPosition:
    """Where a page of anomalies ended (newest first: time, then source and id)."""

    time: datetime
    source: str
    event_id: str
