"""The part of the store interface tracked sagas' incoming events use (0013).

Kept beside `base.Store` (which inherits it) so each interface module stays short; the
SQL back ends implement it once, in `tracked_events.TrackedEventRows`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.core.ingested import (
    AnomalyFilter,
    AnomalyPosition,
    EventAnomaly,
    EventKey,
    HeldEvent,
    IngestedRows,
)
from orchestrator.core.records import StoredSaga


@dataclass(frozen=True, slots=True)
class EventLookup:
    """What a batch of incoming events needs to know, read at once: the verdicts of the
    keys already ingested, the instances by key, the events held for them."""

    verdicts: dict[EventKey, str]
    sagas: dict[str, StoredSaga]
    held: list[HeldEvent]


class TrackedEventStore(abc.ABC):
    """Incoming events: which were ingested, which are held, which became anomalies.

    The rows of events that moved a saga travel on its `SagaCommit` or `NewSaga`
    (`ingested`), in the transaction of the saga's write; these methods serve the rest.
    """

    @abc.abstractmethod
    async def ingested_verdicts(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        """The verdict recorded for each of `keys` already ingested (others absent), in
        one query whatever the number of keys."""

    @abc.abstractmethod
    async def sagas_by_keys(self, keys: Sequence[str]) -> dict[str, StoredSaga]:
        """The sagas holding these (stored, namespace-qualified) idempotency keys, each
        with its steps and newest log seq, by key: a tracked type's instances by their
        correlation values, a few statements whatever their number."""

    @abc.abstractmethod
    async def look_up_events(
        self,
        event_keys: Sequence[EventKey],
        instance_keys: Sequence[str],
        held_of: Mapping[str, Sequence[str]],
        namespace: str,
    ) -> EventLookup:
        """`ingested_verdicts(event_keys)`, `sagas_by_keys(instance_keys)` and the events
        held for the instances (`held_of`: correlation values by saga type, in
        `namespace`), read together: one round trip on PostgreSQL."""

    @abc.abstractmethod
    async def held_events(
        self, saga_type: str, namespace: str, correlations: Sequence[str]
    ) -> list[HeldEvent]:
        """The events held for the instances of `saga_type` in `namespace` with these
        correlation values, oldest first, in one query."""

    @abc.abstractmethod
    async def record_ingested(self, rows: IngestedRows) -> None:
        """Write rows that go with no saga's write (events held before their instance
        started), in one transaction of their own. A key already ingested refuses the
        whole write (`StaleSagaVersion`), leaving nothing of it written."""

    @abc.abstractmethod
    async def expire_held_events(self, now: datetime, limit: int) -> list[EventAnomaly]:
        """Move up to `limit` held events whose expire time is at or before `now` to the
        anomalies, in one transaction; return the anomalies written. Concurrent sweeps
        (replicas) never move one row twice."""

    @abc.abstractmethod
    async def list_event_anomalies(
        self, where: AnomalyFilter, limit: int, after: AnomalyPosition | None = None
    ) -> list[EventAnomaly]:
        """Up to `limit` anomalies matching `where`, newest first (time, then source and
        id, descending), strictly after `after`: keyset pages that neither repeat nor
        skip."""

    @abc.abstractmethod
    async def delete_loose_ingested(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` ingested keys of no saga recorded before `before` (those of
        a saga go with it when retention deletes it); return how many."""
