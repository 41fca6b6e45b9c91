"""Given/expect scenarios for semantic locks in the pure machine: when a saga asks for
its keys, what a refusal or a grant records, and which commit releases them (every
terminal path), or keeps them (a saga that needs an operator)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.definition import LockPolicy, Locks
from orchestrator.core.machine import AcquireLocks, IllegalTransition, SendAction
from orchestrator.core.records import (
    LockAttempt,
    LockBlocker,
    SagaStatus,
    StepStatus,
    TransitionEvent,
)
from orchestrator.core.registry import Registry
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.metrics import SagaMetrics
from tests.unit.test_machine import T0, TRAVEL_BOOKING, clock, drive, new_run

pytestmark = pytest.mark.unit

KEYS = ("customer:7", "sku:42")
FREE = LockAttempt(blockers=(), queued=False)
HELD = LockAttempt(blockers=(LockBlocker("sku:42", "s-other", holds=True),), queued=False)


def locked(from_step="", policy=LockPolicy.WAIT, max_wait=None):
    definition = dataclasses.replace(
        TRAVEL_BOOKING,
        locks=Locks(
            keys=lambda _: ["sku:42", "customer:7", "sku:42"],
            from_step=from_step,
            policy=policy,
            max_wait=max_wait,
        ),
    )
    run = new_run(definition)
    run.saga = dataclasses.replace(
        run.saga, lock_keys=definition.lock_keys(definition.input_type())
    )
    return run


def events(commits):
    return [t.event for c in commits for t in c.transitions]


def take(run, attempt, now):
    """What the driver does with the store's answer: one commit, or none."""
    run.locks_answered(attempt, now)
    return run.take_commit() if run.has_pending() else None


def test_keys_are_unique_and_sorted_so_every_saga_takes_them_in_one_order():
    assert locked().saga.lock_keys == KEYS


def test_a_locked_saga_asks_for_its_keys_before_its_first_step_and_records_nothing():
    run = locked()
    assert run.next_actions(T0) == (AcquireLocks(KEYS, None),)
    assert not run.has_pending()
    assert all(s.status is StepStatus.PENDING for s in run.steps)


def test_granted_keys_are_committed_then_steps_start_and_completion_releases_them():
    run = locked()
    times = clock()
    run.next_actions(next(times))
    grant = take(run, FREE, next(times))
    assert grant is not None and grant.saga.locks_held
    assert events([grant]) == [TransitionEvent.LOCKS_ACQUIRED]
    assert grant.released_locks == ()
    _, commits = drive(run, {}, times)
    assert run.status is SagaStatus.COMPLETED
    assert commits[-1].released_locks == KEYS
    assert events(commits[-1:])[-2:] == [
        TransitionEvent.SAGA_COMPLETED,
        TransitionEvent.LOCKS_RELEASED,
    ]
    assert not commits[-1].saga.locks_held
    assert all(c.released_locks == () for c in commits[:-1])


def test_a_refusal_queues_the_saga_once_and_later_refusals_record_nothing():
    run = locked()
    times = clock()
    run.next_actions(next(times))
    queued = take(run, HELD, next(times))
    assert queued is not None
    assert events([queued]) == [TransitionEvent.LOCKS_WAITING]
    assert "sku:42 held by s-other" in queued.transitions[0].reason
    assert queued.saga.lock_wait_since is not None and not queued.saga.locks_held
    again = dataclasses.replace(HELD, queued=True)
    assert take(run, again, next(times)) is None
    assert run.next_actions(next(times)) == (AcquireLocks(KEYS, None),)


def test_locks_from_a_named_step_are_taken_just_before_its_stage():
    run = locked(from_step="charge_payment")
    times = clock()
    actions = run.next_actions(next(times))
    assert actions == (SendAction(0),)
    for index in range(3):
        run.action_succeeded(index, b"reply", next(times))
        actions = run.next_actions(next(times))
    assert actions == (AcquireLocks(KEYS, None),)
    assert run.step_status(3) is StepStatus.PENDING


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({("action", 2): "reject"}, SagaStatus.FAILED),
        ({("action", 3): "unknown"}, SagaStatus.FAILED),
        ({}, SagaStatus.COMPLETED),
    ],
    ids=["rejected", "outcome-unknown", "completed"],
)
def test_every_terminal_path_releases_the_keys_in_its_terminal_commit(outcomes, status):
    run = locked()
    times = clock()
    run.next_actions(next(times))
    take(run, FREE, next(times))
    _, commits = drive(run, outcomes, times)
    assert run.status is status
    releasing = [c for c in commits if c.released_locks]
    assert releasing == [commits[-1]]
    assert commits[-1].saga.status is status
    with pytest.raises(IllegalTransition, match="holds and waits for no lock"):
        run.lock_broken(next(times), "ops", "nothing left to break")


def test_a_saga_that_needs_intervention_keeps_its_keys_until_an_operator_resolves_it():
    run = locked()
    times = clock()
    run.next_actions(next(times))
    take(run, FREE, next(times))
    _, commits = drive(run, {("action", 3): "reject", ("compensate", 2): "give_up"}, times)
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert all(c.released_locks == () for c in commits)
    assert run.saga.locks_held
    run.resolve("rent_car", next(times), "ops", "cancelled the car by phone")
    _, commits = drive(run, {}, times)
    assert run.status is SagaStatus.FAILED and not run.saga.needs_intervention
    assert commits[-1].released_locks == KEYS


def test_a_waiter_aborted_by_an_operator_leaves_its_queues():
    run = locked()
    times = clock()
    run.next_actions(next(times))
    take(run, HELD, next(times))
    run.abort(next(times), "ops", "customer cancelled")
    sent, commits = drive(run, {}, times)
    assert sent == [] and run.status is SagaStatus.FAILED
    assert commits[-1].released_locks == KEYS


def test_past_its_maximum_wait_a_waiter_fails_without_running_a_step():
    run = locked(max_wait=30)
    run.next_actions(T0)
    take(run, HELD, T0)
    assert run.next_actions(T0 + timedelta(seconds=29)) == (
        AcquireLocks(KEYS, T0 + timedelta(seconds=30)),
    )
    assert run.next_actions(T0 + timedelta(seconds=30)) == ()
    commit = run.take_commit()
    assert run.status is SagaStatus.FAILED
    assert all(s.status is StepStatus.PENDING for s in run.steps)
    assert TransitionEvent.LOCK_WAIT_EXPIRED in events([commit])
    assert commit.released_locks == KEYS and not commit.saga.locks_held


def test_under_the_reject_policy_a_refusal_at_the_store_fails_the_saga():
    run = locked(policy=LockPolicy.REJECT)
    run.next_actions(T0)
    commit = take(run, HELD, T0)
    assert commit is not None and events([commit]) == [TransitionEvent.LOCKS_REFUSED]
    assert run.next_actions(T0) == ()
    assert run.status is SagaStatus.FAILED
    assert run.take_commit().released_locks == ()


def test_an_operator_breaking_a_lock_releases_it_with_the_reason_logged():
    run = locked()
    run.next_actions(T0)
    take(run, FREE, T0)
    run.lock_broken(T0, "ops", "holder is wedged")
    commit = run.take_commit()
    assert commit.released_locks == KEYS
    broken = commit.transitions[-1]
    assert (broken.event, broken.actor, broken.reason) == (
        TransitionEvent.LOCK_BROKEN,
        "ops",
        "holder is wedged",
    )
    assert run.saga.lock_keys == () and not run.needs_locks()
    assert run.next_actions(T0) == (SendAction(0),)
    with pytest.raises(IllegalTransition):
        run.lock_broken(T0, "ops", "again")


def test_a_saga_without_locks_never_asks_and_never_releases():
    run = new_run()
    sent, commits = drive(run, {})
    assert len(sent) == 4 and all(c.released_locks == () for c in commits)


def test_a_key_builder_that_gives_no_strings_is_refused_at_load():
    bad = dataclasses.replace(TRAVEL_BOOKING, locks=Locks(keys=lambda _: [42]))
    with pytest.raises(Exception, match="non-empty strings"):
        Registry([bad])


def test_locks_from_an_unknown_step_are_refused_at_load():
    bad = dataclasses.replace(TRAVEL_BOOKING, locks=Locks(keys=lambda _: ["k"], from_step="nope"))
    with pytest.raises(Exception, match="not a step"):
        Registry([bad])


def test_lock_metrics_count_waits_time_them_from_the_stored_queue_time_and_gauge_waiters():
    metrics = SagaMetrics(process_collectors=False)
    telemetry = EngineTelemetry(metrics)
    run = locked()
    run.next_actions(T0)
    take(run, HELD, T0)
    telemetry.lock_queued(run)
    telemetry.lock_waiting(+1)
    take(run, FREE, T0 + timedelta(seconds=2.5))
    telemetry.locks_acquired(run)
    telemetry.lock_waiting(-1)
    labels = {"saga_type": run.saga.saga_type}
    sample = metrics.registry.get_sample_value
    assert sample("saga_lock_waits_total", labels) == 1
    assert sample("saga_lock_wait_seconds_count", labels) == 1
    assert sample("saga_lock_wait_seconds_sum", labels) == 2.5
    assert sample("saga_lock_waiters", {}) == 0
