"""Given/expect scenarios for the failure policy in the pure machine: what a failed
attempt leads to, and when a retry is due. No network, no database, no asyncio."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.definition import RetryPolicy
from orchestrator.core.machine import (
    AfterFailure,
    ErrorKind,
    SendAction,
    SendCompensation,
    Verdict,
)
from orchestrator.core.records import SagaStatus, StepStatus, TransitionEvent
from tests.support.policy_sagas import DEADLINE_PROBE, PIVOT_PROBE
from tests.unit.test_machine import T0, TRAVEL_BOOKING, new_run

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=3.0, jitter=0.2)
UNDO = RetryPolicy(max_attempts=2, initial_backoff=0.5, jitter=0.0)
TRAVEL = dataclasses.replace(TRAVEL_BOOKING, retry=POLICY, compensation_retry=UNDO)
"""Sequential travel booking: every step compensable, three attempts, 1 s then 2 s."""


def started_run(definition=TRAVEL, index=0, **saga_changes):
    """A RUNNING saga whose step `index` was just started (attempt 1), earlier ones done."""
    statuses = [StepStatus.COMPLETED] * index + [StepStatus.PENDING] * (
        len(definition.all_steps) - index
    )
    run = new_run(definition, step_statuses=statuses)
    if saga_changes:
        run.saga = dataclasses.replace(run.saga, **saga_changes)
    actions = run.next_actions(T0)
    assert SendAction(index) in actions
    run.take_commit()
    return run


def fail_until_settled(run, index, kind, draws=0.5):
    """Fail step `index` on every attempt; the verdicts in order, retries with their delay."""
    verdicts = []
    now = T0
    while True:
        after = run.action_failed(index, kind, "CODE: no", now, draws)
        if after.verdict is not Verdict.RETRY:
            verdicts.append(after.verdict)
            return verdicts
        verdicts.append((after.verdict, (after.retry_at - now).total_seconds()))
        now = after.retry_at


# --- actions -----------------------------------------------------------------------------


def test_a_transient_error_is_retried_with_growing_backoff_then_leaves_the_outcome_unknown():
    run = started_run(index=1)
    verdicts = fail_until_settled(run, 1, ErrorKind.TRANSIENT)
    assert verdicts == [(Verdict.RETRY, 1.0), (Verdict.RETRY, 2.0), Verdict.OUTCOME_UNKNOWN]
    assert run.status is SagaStatus.COMPENSATING
    assert run.steps[1].attempts == 3
    assert run.steps[1].error == "outcome unknown after 3 attempt(s): CODE: no"
    assert run.next_actions(T0) == (SendCompensation(1),)


@pytest.mark.parametrize(
    ("draw", "seconds"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)], ids=["low", "mid", "high"]
)
def test_a_retry_is_due_after_the_backoff_spread_by_the_jitter(draw, seconds):
    run = started_run()
    after = run.action_failed(0, ErrorKind.TRANSIENT, "UNAVAILABLE: down", T0, draw)
    assert after.verdict is Verdict.RETRY
    assert after.retry_at is not None
    assert (after.retry_at - T0).total_seconds() == pytest.approx(seconds, abs=1e-4)


def test_a_scheduled_retry_is_counted_and_its_time_kept_in_the_same_commit():
    run = started_run()
    after = run.action_failed(0, ErrorKind.TRANSIENT, "UNAVAILABLE: down", T0, 0.5)
    commit = run.take_commit()
    (step,) = commit.steps
    assert (step.attempts, step.next_attempt_time) == (2, after.retry_at)
    assert [t.event for t in commit.transitions] == [TransitionEvent.STEP_RETRY_SCHEDULED]


def test_the_backoff_stops_growing_at_its_maximum():
    policy = RetryPolicy(max_attempts=6, initial_backoff=1.0, max_backoff=3.0, jitter=0.0)
    run = started_run(dataclasses.replace(TRAVEL, retry=policy))
    delays = [v[1] for v in fail_until_settled(run, 0, ErrorKind.TRANSIENT) if isinstance(v, tuple)]
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_rejection_fails_the_step_at_once_and_compensates_the_earlier_steps():
    run = started_run(index=2)
    assert fail_until_settled(run, 2, ErrorKind.REJECTED) == [Verdict.REJECTED]
    assert run.steps[2].status is StepStatus.FAILED
    assert run.saga.failed_step == "rent_car"
    assert run.next_actions(T0) == (SendCompensation(1),)


def test_a_retriable_step_retries_even_a_rejection():
    steps = tuple(dataclasses.replace(s, retriable=True) for s in TRAVEL.all_steps)
    run = started_run(dataclasses.replace(TRAVEL, steps=steps))
    verdicts = fail_until_settled(run, 0, ErrorKind.REJECTED)
    assert [v if isinstance(v, Verdict) else v[0] for v in verdicts] == [
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.REJECTED,
    ]


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_the_pivot_out_of_attempts_halts_for_an_operator_instead_of_compensating(kind):
    """charge_payment has no compensation: whatever went wrong, it is never undone."""
    run = started_run(PIVOT_PROBE, index=1)
    verdicts = fail_until_settled(run, 1, kind)
    expected = Verdict.REJECTED if kind is ErrorKind.REJECTED else Verdict.STUCK
    assert verdicts[-1] is expected
    if expected is Verdict.STUCK:
        assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
        attempts = len(verdicts)  # only a transient error is retried
        assert attempts == (3 if kind is ErrorKind.TRANSIENT else 1)
        assert run.steps[1].error == f"after {attempts} attempt(s): CODE: no"
    else:
        # Nothing happened at the participant: the step before the pivot is undone.
        assert run.status is SagaStatus.COMPENSATING


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_a_step_after_the_pivot_out_of_attempts_halts_for_an_operator(kind):
    run = started_run(PIVOT_PROBE, index=2)
    verdicts = fail_until_settled(run, 2, kind)
    assert verdicts[-1] is Verdict.STUCK
    assert len(verdicts) == 3  # retriable: even a rejection is retried
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert run.saga.failed_step == "book_flight"


def test_past_the_deadline_a_spent_step_stays_started_and_the_saga_compensates_next():
    run = started_run(DEADLINE_PROBE, index=1, deadline_time=T0 + timedelta(seconds=1))
    for _ in range(2):  # the default policy's first two retries
        run.action_failed(1, ErrorKind.TRANSIENT, "UNAVAILABLE", T0, 0.5)
    later = T0 + timedelta(seconds=5)
    after = run.action_failed(1, ErrorKind.TRANSIENT, "UNAVAILABLE", later, 0.5)
    assert after == AfterFailure(Verdict.DEADLINE_PASSED)
    assert run.steps[1].status is StepStatus.STARTED
    assert run.next_actions(later) == (SendCompensation(1),)


def test_an_attempt_never_outlives_the_saga_deadline_before_the_pivot():
    run = started_run(DEADLINE_PROBE, deadline_time=T0 + timedelta(seconds=1))
    assert run.attempt_timeout(5.0, T0) == 1.0
    assert run.attempt_timeout(0.5, T0) == 0.5
    assert run.attempt_timeout(5.0, T0 + timedelta(seconds=2)) == 0.001
    due = T0 + timedelta(seconds=3)
    assert run.wake_time(due) == T0 + timedelta(seconds=1)


def test_past_the_pivot_the_deadline_no_longer_cuts_attempts_or_waits():
    run = started_run(PIVOT_PROBE, index=2, deadline_time=T0 + timedelta(seconds=1))
    assert run.attempt_timeout(5.0, T0) == 5.0
    due = T0 + timedelta(seconds=3)
    assert run.wake_time(due) == due


def test_an_unbuildable_request_rejects_the_action():
    run = started_run(index=1)
    assert run.request_unbuildable(SendAction(1), "KeyError('x')", T0).verdict is Verdict.REJECTED
    assert run.steps[1].error == "building the request failed: KeyError('x')"
    assert run.status is SagaStatus.COMPENSATING


# --- compensations -----------------------------------------------------------------------


def compensating_run():
    """book_hotel failed for good: book_flight's compensation has just started."""
    run = started_run(index=1)
    run.action_failed(1, ErrorKind.REJECTED, "FAILED_PRECONDITION: full", T0, 0.5)
    assert run.next_actions(T0) == (SendCompensation(0),)
    run.take_commit()
    return run


def test_a_compensation_retries_every_error_then_gives_up_for_an_operator():
    run = compensating_run()
    first = run.compensation_failed(0, "INTERNAL: boom", T0, 0.5)
    assert first == AfterFailure(Verdict.RETRY, T0 + timedelta(seconds=0.5))
    assert run.steps[0].compensation_attempts == 2
    assert run.compensation_failed(0, "INTERNAL: boom", T0, 0.5).verdict is Verdict.GAVE_UP
    assert run.steps[0].status is StepStatus.COMPENSATION_FAILED
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert "gave up after 2 attempts: INTERNAL: boom" in run.saga.failure_reason


def test_an_unbuildable_compensation_gives_up_at_once():
    run = compensating_run()
    after = run.request_unbuildable(SendCompensation(0), "TypeError()", T0)
    assert after.verdict is Verdict.GAVE_UP
    assert run.steps[0].status is StepStatus.COMPENSATION_FAILED
    assert run.saga.needs_intervention
