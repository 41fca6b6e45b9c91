"""Who waits for a saga's next commit, and waking them: the in-process fan-out behind
WatchSaga.

A watcher subscribes before it reads the log, so a commit between its read and
its wait still wakes it. Commits reach `notify` from this replica's own driver
and, on PostgreSQL, from every replica through LISTEN/NOTIFY (one listener
connection per replica, `Store.follow_commits`). While that feed is live an
idle watcher costs nothing: it sleeps until a commit of its saga, re-reading
only every IDLE_RECHECK_SECONDS as a bound. While the feed is down (the
listener lost its connection) watchers fall back to polling every
POLL_SECONDS, and every change of the feed's state wakes them all, since
commits may have gone unheard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

IDLE_RECHECK_SECONDS = 60.0
"""The longest a watcher sleeps while the feed is live: a bound, not a poll."""
POLL_SECONDS = 0.25
"""How often a watcher re-reads the log while commits of other replicas go unheard."""


class CommitWatchers:
    """Per saga, the events its watchers wait on."""

    def __init__(self, *, live: bool = True) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._live = live

    @property
    def live(self) -> bool:
        """Whether every commit of a watched saga reaches `notify` (no polling needed)."""
        return self._live

    @property
    def watched(self) -> int:
        """How many subscriptions are open, over all sagas."""
        return sum(len(events) for events in self._events.values())

    def set_live(self, live: bool) -> None:
        """The feed came up or went down: wake everyone to re-read."""
        self._live = live
        self.notify_all()

    @contextlib.contextmanager
    def subscription(self, saga_id: str) -> Iterator[asyncio.Event]:
        """An event set by each commit of the saga; clear it before each read of the log."""
        event = asyncio.Event()
        self._events.setdefault(saga_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(saga_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[saga_id]

    async def wait(self, event: asyncio.Event) -> None:
        """Until the subscription's event is set, or the re-read bound passes."""
        bound = IDLE_RECHECK_SECONDS if self._live else POLL_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), bound)

    def notify(self, saga_id: str) -> None:
        for event in self._events.get(saga_id, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()
