"""Wake-ups for sagas waiting for lock keys, within one process.

A waiting saga notes the keys' generation before it asks the store, and after a
refusal sleeps until one of its keys changes generation (a release committed here,
or announced by another replica through the store's release channel) or a bound
passes. Noting the generation first means a release that lands while the store is
being asked is not missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence


class KeyWakeups:
    """Generation counters per lock key, and one event that every wake-up sets."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._changed = asyncio.Event()
        self.waiting = 0
        """Sagas of this process asleep on a key right now (a gauge)."""

    def mark(self, keys: Sequence[str]) -> tuple[int, ...]:
        """The keys' generations now; pass them to `wait`."""
        for key in keys:
            self._generations.setdefault(key, 0)
        return tuple(self._generations[key] for key in keys)

    def known_keys(self) -> list[str]:
        return list(self._generations)

    def wake(self, keys: Iterable[str]) -> None:
        """The keys were released (or their queues changed): wake who waits for them."""
        woke = False
        for key in keys:
            self._generations[key] = self._generations.get(key, 0) + 1
            woke = True
        if woke:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def wait(self, keys: Sequence[str], mark: tuple[int, ...], at_most: float) -> None:
        """Return once a key moved on from `mark`, or after `at_most` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + at_most
        self.waiting += 1
        try:
            while self.mark(keys) == mark:
                remaining = until - loop.time()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return
        finally:
            self.waiting -= 1
