"""An `EventIngestor` for the ways-in tests: records every batch it is handed, answers a
verdict per event, and can be told to fail (a store outage) for its next calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from orchestrator.core.errors import StoreUnavailable
from orchestrator.core.incoming import IncomingEvent, IngestVerdict


class RecordingIngestor:
    """Answers RECORDED for a first (source, id), DUPLICATE for a repeat (as the store's
    dedup does); `fail_next(n)` makes the next n calls raise StoreUnavailable."""

    def __init__(self, changed: asyncio.Condition | None = None) -> None:
        self.batches: list[list[IncomingEvent]] = []
        self.failed_calls = 0
        self._failures_left = 0
        self._seen: set[tuple[str, str]] = set()
        # Replicas' ingestors may share one, so a test can wait on what they did together.
        self._changed = changed or asyncio.Condition()

    def fail_next(self, calls: int) -> None:
        self._failures_left = calls

    @property
    def events(self) -> list[IncomingEvent]:
        return [event for batch in self.batches for event in batch]

    @property
    def recorded_ids(self) -> set[str]:
        return {event.id for event in self.events}

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        async with self._changed:
            if self._failures_left > 0:
                self._failures_left -= 1
                self.failed_calls += 1
                self._changed.notify_all()
                raise StoreUnavailable("the store is away (a test's outage)")
            self.batches.append(list(events))
            verdicts = []
            for event in events:
                duplicate = event.key in self._seen
                self._seen.add(event.key)
                verdicts.append(IngestVerdict.DUPLICATE if duplicate else IngestVerdict.RECORDED)
            self._changed.notify_all()
            return verdicts

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Until `predicate(self)` holds (checked after every call), bounded."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))
