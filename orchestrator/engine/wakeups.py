"""Wake-ups for sagas waiting for lock keys, within one process.

A waiting saga watches its keys (`KeyWakeups.watch`). Before each ask of the store it
arms the watch; after a refusal it sleeps on it with its ticket until woken or a bound
passes. A release of a key wakes every watch of that key that is asking (so a release
landing while the store is being asked is not missed) but, of those asleep, only the
one with the lowest ticket: every queue orders two sagas by the same ticket, so no
later sleeper can take the key while that one still queues for it. A handover then
costs one retry per replica, not one per waiter. Only keys watched right now are
remembered, so memory follows the waiters, not every key ever waited for. A saga that
stops waiting without its keys (its wait expired, an operator broke its locks, another
replica took it over) passes the wake-up on to whoever is next on its keys.

A saga its opening queued (StartSaga found its keys taken) need not ask the store
first: it would be refused. The executor notes the queue ticket with a mark of the
releases heard before the opening looked at the keys (`mark`, `queued_at_opening`);
if none of the saga's keys was released since, its watch starts asleep with that
ticket. To tell, the last `RECENT_RELEASES` releases are remembered (older than that,
the saga asks as before).

A release committed here is heard twice: at once from the commit (`wake`), then as its
NOTIFY comes back to this replica's listener (`heard_release`). The echo would wake
the next sleeper while the one woken first is still asking, only to be refused; so a
key released here is noted, and the first notification of it heard within
`ECHO_SECONDS` is taken as the echo and skipped. Releases of one key reach the
listener in commit order, so a later release elsewhere is heard after the echo; one
heard before it is older than the local wake-up, which covered it. Notes are kept
only once the listener is known to listen (it heard something since it connected),
and dropped when it is lost (`wake_all`), so an echo that never comes skips nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

logger = logging.getLogger(__name__)

RECENT_RELEASES = 4096
"""Releases remembered to tell whether a key was released since an opening looked."""
NOTED_OPENINGS = 4096
"""Queued openings whose tickets are kept until their drivers watch (a bound)."""
ECHO_SECONDS = 2.0
"""How long after a release here its notification is expected back as an echo."""
RELISTEN_PAUSE_SECONDS = 0.2
"""The pause before listening again after the listening connection was lost."""


class KeyWatch:
    """One waiting saga's watch of its keys (see `KeyWakeups.watch`)."""

    def __init__(self, saga_id: str, keys: Sequence[str]) -> None:
        self.saga_id = saga_id
        self.keys = tuple(keys)
        self.ticket: int | None = None
        """The saga's queue ticket while it sleeps; None while it asks the store."""
        self.opening_ticket: int | None = None
        """The ticket its opening queued it with, if no key was released since: the
        saga sleeps before its first ask."""
        self.acquired = False
        """Set when the saga took its keys; a watch that ends without them hands its
        wake-up on to the next in line (it may have been woken as first, then left)."""
        self._woken = asyncio.Event()

    def arm(self) -> None:
        """Call before asking the store: wake-ups from now on end the next `sleep`."""
        self.ticket = None
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()

    @property
    def woken(self) -> bool:
        """Woken since it was last armed."""
        return self._woken.is_set()

    async def sleep(self, ticket: int, at_most: float) -> None:
        """Return once woken (or already woken since `arm`), or after `at_most` seconds."""
        self.ticket = ticket
        try:
            await asyncio.wait_for(self._woken.wait(), max(at_most, 0.0))
        except TimeoutError:
            pass
        finally:
            self.ticket = None


class KeyWakeups:
    """The watches of this process's waiting sagas, by key and by saga."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[KeyWatch]] = {}
        self._by_saga: dict[str, KeyWatch] = {}
        self.waiting = 0
        """Sagas of this process asleep on a key right now (a gauge)."""
        self._released = 0
        """Keys released so far (each key of a release counts one)."""
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=RECENT_RELEASES)
        """The last releases, numbered (None: maybe every key, see `wake_all`)."""
        self._openings: dict[str, tuple[int, int]] = {}
        """Queued openings not yet watched: saga_id to (mark, ticket)."""
        self._listening = False
        """The release listener heard something since it (re)connected."""
        self._echoes: dict[str, float] = {}
        """Keys released here whose notification has not come back: when released."""

    def mark(self) -> int:
        """The releases heard so far; take it before an opening looks at its keys."""
        return self._released

    def queued_at_opening(self, saga_id: str, mark: int, ticket: int) -> None:
        """The saga's opening (begun after `mark`) queued it with `ticket`: unless one of
        its keys is released before it watches them, its first ask may wait."""
        self._openings[saga_id] = (mark, ticket)
        while len(self._openings) > NOTED_OPENINGS:
            del self._openings[next(iter(self._openings))]

    def _released_since(self, mark: int, keys: Sequence[str]) -> bool:
        """Whether a key of `keys` was (or may have been) released after `mark`."""
        if self._released == mark:
            return False
        if not self._recent or self._recent[0][0] > mark + 1:
            return True  # forgotten: assume so
        for number, key in reversed(self._recent):
            if number <= mark:
                return False
            if key is None or key in keys:
                return True
        return False

    @contextmanager
    def watch(self, saga_id: str, keys: Sequence[str]) -> Iterator[KeyWatch]:
        """Watch `keys` for one saga while the block runs; forgotten when it ends."""
        watch = KeyWatch(saga_id, keys)
        opening = self._openings.pop(saga_id, None)
        if opening is not None and not self._released_since(opening[0], watch.keys):
            watch.opening_ticket = opening[1]
        for key in watch.keys:
            self._by_key.setdefault(key, set()).add(watch)
        self._by_saga[saga_id] = watch
        try:
            yield watch
        finally:
            for key in watch.keys:
                watches = self._by_key.get(key)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._by_key[key]
            if self._by_saga.get(saga_id) is watch:
                del self._by_saga[saga_id]
            if not watch.acquired:
                self._wake_first(watch.keys)

    async def sleep(self, watch: KeyWatch, ticket: int, at_most: float) -> None:
        """`watch.sleep`, counted in `waiting`."""
        self.waiting += 1
        try:
            await watch.sleep(ticket, at_most)
        finally:
            self.waiting -= 1

    def wake(self, keys: Iterable[str]) -> None:
        """The keys were released by a commit of this process: wake who may take them,
        and expect the release's notification back (see the module)."""
        keys = tuple(keys)
        if self._listening:
            now = time.monotonic()
            if len(self._echoes) > NOTED_OPENINGS:
                self._echoes = {k: t for k, t in self._echoes.items() if now - t < ECHO_SECONDS}
            self._echoes.update(dict.fromkeys(keys, now))
        self._wake_first(keys)

    def heard_release(self, key: str) -> None:
        """The listener heard a release of `key` (by any process): wake who may take it,
        unless it is the echo of a release here, whose wake-up was given already."""
        self._listening = True
        released_here = self._echoes.pop(key, None)
        if released_here is not None and time.monotonic() - released_here < ECHO_SECONDS:
            return
        self._wake_first((key,))

    def _wake_first(self, keys: Iterable[str]) -> None:
        """The keys were released (or their queues changed): for each, wake the watches
        asking the store now and the sleeper first in line."""
        for key in keys:
            self._released += 1
            self._recent.append((self._released, key))
            first: tuple[int, str, KeyWatch] | None = None
            for watch in self._by_key.get(key, ()):
                if watch.ticket is None:
                    watch.wake()
                elif first is None or (watch.ticket, watch.saga_id) < first[:2]:
                    first = (watch.ticket, watch.saga_id, watch)
            if first is not None:
                first[2].wake()

    def wake_saga(self, saga_id: str) -> None:
        """The saga itself changed (an operator's call): its watch looks again."""
        self._openings.pop(saga_id, None)  # not watching yet: it asks first
        watch = self._by_saga.get(saga_id)
        if watch is not None:
            watch.wake()

    def wake_all(self) -> None:
        """Releases may have gone unheard (the listener was lost): everyone looks again.
        Echoes may never come: none is expected until the listener hears again."""
        self._listening = False
        self._echoes.clear()
        self._released += 1
        self._recent.append((self._released, None))
        for watch in self._by_saga.values():
            watch.wake()

    def watched_keys(self) -> int:
        """How many keys are watched now (what the wake-ups keep in memory)."""
        return len(self._by_key)


async def listen_for_releases(
    releases: Callable[[], AsyncIterator[str] | None], wakeups: KeyWakeups
) -> None:
    """Wake this replica's waiters when another replica releases a key (`releases` is
    the store's `lock_releases`); reconnect after a bounded pause if the listening
    connection is lost. Returns at once where nothing else can release."""
    while True:
        heard = releases()
        if heard is None:
            return
        try:
            async for key in heard:
                wakeups.heard_release(key)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("lock release listener lost, reconnecting: %s", error)
        # Whatever was released meanwhile: let every waiter look again.
        wakeups.wake_all()
        await asyncio.sleep(RELISTEN_PAUSE_SECONDS)
