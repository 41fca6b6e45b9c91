"""Given/expect scenarios for a batch of new sagas that lock from their first step,
decided together (`decide_openings`): each as if it had committed alone, in order."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.core.definition import LockPolicy, Locks
from orchestrator.core.errors import LockConflict
from orchestrator.core.lock_openings import (
    LockedOpening,
    OpenedSaga,
    decide_openings,
    openings_may_wait,
)
from orchestrator.core.opening import open_saga
from orchestrator.core.records import CreateSagaResult, LockAttempt, LockBlocker, NewSaga
from tests.unit.test_machine import T0, TRAVEL_BOOKING

pytestmark = pytest.mark.unit


def opening(keys: list[str], idempotency_key: str | None = None, reject: bool = False):
    """An opening as the executor makes it: refused under the reject policy."""
    policy = LockPolicy.REJECT if reject else LockPolicy.WAIT
    definition = dataclasses.replace(
        TRAVEL_BOOKING, locks=Locks(keys=lambda _: keys, policy=policy)
    )

    def open_with(attempt: LockAttempt) -> NewSaga:
        if attempt.blockers and reject:
            raise LockConflict(f"lock key {attempt.blockers[0].key!r} is taken")
        run, _, first = open_saga(definition, "c", {}, idempotency_key, T0, attempt)
        return NewSaga(first.saga, tuple(run.steps), first.transitions, None)

    return LockedOpening(idempotency_key, tuple(sorted(keys)), open_with)


def test_free_disjoint_openings_all_take_their_keys_and_need_no_ticket():
    openings = [opening(["a"]), opening(["b", "c"])]
    assert not openings_may_wait(openings, {})
    outcomes = decide_openings(openings, {}, {}, [])
    assert all(isinstance(o, OpenedSaga) and o.attempt.acquired for o in outcomes)
    assert all(isinstance(o, OpenedSaga) and o.new.saga.locks_held for o in outcomes)


def test_a_later_opening_on_a_key_an_earlier_one_took_queues_behind_it_with_its_ticket():
    openings = [opening(["a"]), opening(["a", "b"]), opening(["b"])]
    assert openings_may_wait(openings, {})
    first, second, third = decide_openings(openings, {}, {}, [11, 12, 13])
    assert isinstance(first, OpenedSaga) and first.attempt.acquired
    assert isinstance(second, OpenedSaga) and second.waits
    assert second.attempt == LockAttempt(
        (LockBlocker("a", first.new.saga.saga_id, holds=True),), queued=False, ticket=12
    )
    # "b" is free in the store, but the second saga queues for it first.
    assert isinstance(third, OpenedSaga) and third.waits
    assert third.attempt.blockers == (LockBlocker("b", second.new.saga.saga_id, holds=False),)


def test_who_the_store_found_in_the_way_comes_before_the_batch():
    found = {"a": LockBlocker("a", "s-holder", holds=True)}
    assert openings_may_wait([opening(["a"])], found)
    (only,) = decide_openings([opening(["a"])], found, {}, [5])
    assert isinstance(only, OpenedSaga) and only.waits and only.attempt.ticket == 5
    assert only.attempt.blockers == (found["a"],)


def test_a_refused_opening_stores_nothing_and_holds_nothing_for_the_next():
    found = {"a": LockBlocker("a", "s-holder", holds=True)}
    refused, free = decide_openings(
        [opening(["a", "b"], reject=True), opening(["b"])], found, {}, [1, 2]
    )
    assert isinstance(refused, LockConflict)
    assert isinstance(free, OpenedSaga) and free.attempt.acquired


def test_a_repeated_idempotency_key_answers_the_saga_it_started():
    first, again = decide_openings(
        [opening(["a"], idempotency_key="k1"), opening(["a"], idempotency_key="k1")], {}, {}, [1, 2]
    )
    assert isinstance(first, OpenedSaga) and first.attempt.acquired
    assert again == CreateSagaResult(first.new.saga, created=False)
    (known,) = decide_openings(
        [opening(["a"], idempotency_key="k1")], {}, {"k1": first.new.saga}, []
    )
    assert known == CreateSagaResult(first.new.saga, created=False)
