"""The replica's budget of sagas in flight (`--max-sagas-in-flight`), held under bursts.

A place is counted from the moment a start (StartSaga, ExecuteSaga, each StartSagas item)
or a claim (orphans, an adopted saga) decides to take one, not from the moment its
drive begins: reserving is synchronous, so it happens before the request's first await
(the insert, the claim), and two requests arriving together can never both see the last
free place. A reservation becomes a drive, which holds the place until it ends, or is
given back: the insert failed, the idempotency key was already used, the claim found
fewer sagas than asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any


class SagaSlots:
    """Places for `capacity` sagas: the drives in `driven` (the executor's own map, read
    here, never changed) plus the places reserved by starts and claims still under way."""

    def __init__(self, capacity: int, driven: Mapping[str, Any]) -> None:
        self.capacity = capacity
        self._driven = driven
        self._reserved = 0

    @property
    def in_use(self) -> int:
        """Sagas driven here plus places reserved for sagas about to be."""
        return len(self._driven) + self._reserved

    def free(self, keep: int = 0) -> int:
        """Places nobody holds, less `keep` left for others."""
        return max(0, self.capacity - keep - self.in_use)

    def reserve(self, wanted: int = 1, *, keep: int = 0) -> Reservation:
        """Up to `wanted` places (fewer, or none, when the budget is short), leaving
        `keep` free for others; see `Reservation.count`."""
        count = min(wanted, self.free(keep))
        self._reserved += count
        return Reservation(self, count)

    def _give_back(self, count: int) -> None:
        self._reserved -= count


class Reservation:
    """Places reserved for sagas about to be driven. Once a saga's drive is started (it
    holds its own place from then on), or it turned out not to need one, `release` gives
    places back; leaving the `with` block gives back whatever is still held."""

    def __init__(self, slots: SagaSlots, count: int) -> None:
        self._slots = slots
        self.count = count
        """Places obtained (0 when the budget was spent)."""
        self._held = count

    def __bool__(self) -> bool:
        return self.count > 0

    def release(self, count: int | None = None) -> None:
        """Give back `count` places (all still held when None); more than is held is
        never given back, so releasing twice is harmless."""
        returned = self._held if count is None else min(count, self._held)
        self._held -= returned
        self._slots._give_back(returned)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
