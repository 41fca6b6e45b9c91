"""Opening a batch of new sagas that lock from their first step: the pure decision.

A store inserts such sagas in batches (the openings queued while one batch is written go
together in the next transaction). It looks once at the keys the batch needs, under
their guard, and `decide_openings` decides the whole batch in arrival order from that
look: a saga in the batch is in the way of a later one that shares a key, exactly as if
each had committed alone. Nothing here reads or writes; the store does both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.records import (
    CreateSagaResult,
    LockAttempt,
    LockBlocker,
    NewSaga,
    SagaRecord,
)

Open = Callable[[LockAttempt], NewSaga]
"""Given what the store found, the new saga to insert (or raise to store nothing)."""


@dataclass(frozen=True, slots=True)
class LockedOpening:
    """A new saga that takes `keys` from its first step, waiting to be inserted."""

    idempotency_key: str | None
    keys: tuple[str, ...]
    open_saga: Open


@dataclass(frozen=True, slots=True)
class OpenedSaga:
    """An opening decided: the saga to insert, and what it found (take, or queue)."""

    new: NewSaga
    keys: tuple[str, ...]
    attempt: LockAttempt

    @property
    def waits(self) -> bool:
        return not self.attempt.acquired and self.new.saga.lock_wait_since is not None


Opened = OpenedSaga | CreateSagaResult | Exception
"""What one opening came to: a saga to insert, the saga its idempotency key already
started (`created=False`), or why its opener stored nothing (the reject policy)."""


def openings_may_wait(
    openings: Sequence[LockedOpening], in_the_way: Mapping[str, LockBlocker]
) -> bool:
    """Whether an opening of the batch may find someone in its way (then every opening
    needs a ticket drawn before `decide_openings`): a key is held or queued for, or two
    openings share one."""
    seen: set[str] = set()
    for opening in openings:
        for key in opening.keys:
            if key in in_the_way or key in seen:
                return True
        seen.update(opening.keys)
    return False


def decide_openings(
    openings: Sequence[LockedOpening],
    in_the_way: Mapping[str, LockBlocker],
    known: Mapping[str, SagaRecord],
    tickets: Sequence[int],
) -> list[Opened]:
    """Open a batch of sagas in arrival order, each as if it had committed alone.

    `in_the_way` is who the store found holding, or first in line for, each key (under
    the keys' guard); `known`, the sagas their idempotency keys already started;
    `tickets`, one per opening in order (drawn under the guard), or none when
    `openings_may_wait` says no opening can be refused. A saga opened earlier in the
    batch holds, or queues for, its keys for the openings after it."""
    taken: dict[str, str] = {}
    queued: dict[str, str] = {}
    started = dict(known)
    outcomes: list[Opened] = []
    for number, opening in enumerate(openings):
        repeated = started.get(opening.idempotency_key or "")
        if opening.idempotency_key is not None and repeated is not None:
            outcomes.append(CreateSagaResult(repeated, created=False))
            continue
        blockers = []
        for key in opening.keys:
            found = in_the_way.get(key)
            if found is not None and found.holds:
                blockers.append(found)
            elif key in taken:
                blockers.append(LockBlocker(key, taken[key], holds=True))
            elif found is not None:
                blockers.append(found)
            elif key in queued:
                blockers.append(LockBlocker(key, queued[key], holds=False))
        ticket = tickets[number] if blockers else 0
        attempt = LockAttempt(tuple(blockers), queued=False, ticket=ticket)
        try:
            new = opening.open_saga(attempt)
        except Exception as refusal:
            outcomes.append(refusal)
            continue
        if attempt.acquired:
            taken.update(dict.fromkeys(opening.keys, new.saga.saga_id))
        elif new.saga.lock_wait_since is not None:
            for key in opening.keys:
                queued.setdefault(key, new.saga.saga_id)
        if opening.idempotency_key is not None:
            started[opening.idempotency_key] = new.saga
        outcomes.append(OpenedSaga(new, opening.keys, attempt))
    return outcomes
