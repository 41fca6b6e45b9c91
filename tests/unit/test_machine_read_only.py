"""Given/expect scenarios for read-only steps in the pure machine: a rollback passes over
them without a command and says there was nothing to undo; they are no pivot.

The saga is shaped like FTGO's "Create Order": verify the consumer (read-only), create a
ticket (compensable), authorize the card (the pivot), then two retriable approvals.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.definition import Call, RetryPolicy, SagaDefinition, Step
from orchestrator.core.machine import ErrorKind, SendAction, SendCompensation, Verdict
from orchestrator.core.records import SagaStatus, StepStatus, TransitionEvent
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tests.unit.test_machine import T0, drive, new_run

pytestmark = pytest.mark.unit


def _unused(ctx):  # the machine never builds requests
    raise AssertionError("not called")


def _call(method: str) -> Call:
    return Call("example.v1.Service", method, _unused)


CREATE_ORDER = SagaDefinition(
    name="create_order_shape",
    version=1,
    input_type=TravelBookingInput,
    retry=RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0),
    steps=(
        Step("verify_consumer", "consumer", _call("VerifyConsumer"), read_only=True),
        Step(
            "create_ticket",
            "kitchen",
            _call("CreateTicket"),
            compensation=_call("RejectTicket"),
        ),
        Step("authorize_card", "accounting", _call("AuthorizeCard")),
        Step("approve_ticket", "kitchen", _call("ApproveTicket"), retriable=True),
        Step("approve_order", "order", _call("ApproveOrder"), retriable=True),
    ),
)
VERIFY, TICKET, AUTHORIZE, APPROVE_TICKET = 0, 1, 2, 3


def test_a_read_only_step_is_not_the_pivot():
    assert CREATE_ORDER.pivot_stage == AUTHORIZE
    assert not CREATE_ORDER.all_steps[VERIFY].is_pivot
    assert CREATE_ORDER.all_steps[AUTHORIZE].is_pivot
    assert not CREATE_ORDER.is_forward_only(TICKET)


def test_a_declined_pivot_compensates_before_it_and_passes_over_the_read_only_step():
    run = new_run(CREATE_ORDER)
    sent, commits = drive(run, {("action", AUTHORIZE): "reject"})
    assert sent == [
        ("action", "verify_consumer"),
        ("action", "create_ticket"),
        ("action", "authorize_card"),
        ("compensate", "create_ticket"),
    ]
    assert run.status is SagaStatus.FAILED and not run.saga.needs_intervention
    assert [s.status for s in run.steps] == [
        StepStatus.NOTHING_TO_UNDO,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]
    log = [(t.event, t.step) for c in commits for t in c.transitions]
    assert (TransitionEvent.STEP_NOTHING_TO_UNDO, "verify_consumer") in log
    assert (TransitionEvent.COMPENSATION_STARTED, "verify_consumer") not in log
    assert (TransitionEvent.COMPENSATION_COMPLETED, "verify_consumer") not in log
    # Passed over in the commit that ends the saga, after the real compensation.
    assert [t.event for t in commits[-1].transitions] == [
        TransitionEvent.COMPENSATION_COMPLETED,
        TransitionEvent.STEP_NOTHING_TO_UNDO,
        TransitionEvent.SAGA_FAILED,
    ]
    passed = next(t for c in commits for t in c.transitions if t.step == "verify_consumer")
    assert passed.attempt == 1  # the action's row, STEP_STARTED
    nothing = commits[-1].transitions[1]
    assert (nothing.step_status, nothing.attempt) == (StepStatus.NOTHING_TO_UNDO, 0)


def test_a_read_only_step_whose_outcome_is_unknown_compensates_instead_of_halting():
    """A pivot with an unknown outcome halts; a read-only step changed nothing either way."""
    run = new_run(CREATE_ORDER)
    assert run.next_actions(T0) == (SendAction(VERIFY),)
    run.take_commit()
    now = T0
    while (
        after := run.action_failed(VERIFY, ErrorKind.TRANSIENT, "UNAVAILABLE", now, 0.5)
    ).verdict is Verdict.RETRY:
        now = after.retry_at
    assert after.verdict is Verdict.OUTCOME_UNKNOWN
    assert run.status is SagaStatus.COMPENSATING
    assert run.next_actions(now) == ()
    assert run.status is SagaStatus.FAILED and not run.saga.needs_intervention
    assert run.step_status(VERIFY) is StepStatus.NOTHING_TO_UNDO


def test_the_pivot_with_an_unknown_outcome_still_halts_for_an_operator():
    statuses = [StepStatus.COMPLETED, StepStatus.COMPLETED] + [StepStatus.PENDING] * 3
    run = new_run(CREATE_ORDER, step_statuses=statuses)
    assert run.next_actions(T0) == (SendAction(AUTHORIZE),)
    after = run.action_failed(AUTHORIZE, ErrorKind.OUTCOME_UNKNOWN, "INTERNAL", T0, 0.5)
    assert after.verdict is Verdict.STUCK
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention


def test_a_completed_pivot_goes_forward_even_when_a_later_step_is_rejected():
    statuses = [StepStatus.COMPLETED] * 3 + [StepStatus.PENDING] * 2
    run = new_run(CREATE_ORDER, step_statuses=statuses)
    assert run.next_actions(T0) == (SendAction(APPROVE_TICKET),)
    after = run.action_failed(APPROVE_TICKET, ErrorKind.REJECTED, "FAILED_PRECONDITION", T0, 0.5)
    assert after.verdict is Verdict.RETRY  # retriable: even a rejection is retried


def test_an_abort_while_the_read_only_step_runs_leaves_nothing_to_undo():
    run = new_run(CREATE_ORDER)
    run.next_actions(T0)
    run.abort(T0, "operator:ada", "customer called")
    assert run.next_actions(T0) == ()
    assert run.step_status(VERIFY) is StepStatus.NOTHING_TO_UNDO
    assert run.status is SagaStatus.FAILED


def test_past_the_deadline_a_started_read_only_step_is_passed_over():
    run = new_run(CREATE_ORDER)
    run.saga = dataclasses.replace(run.saga, deadline_time=T0)
    run.next_actions(T0 - timedelta(seconds=1))
    assert run.next_actions(T0 + timedelta(seconds=1)) == ()
    assert run.step_status(VERIFY) is StepStatus.NOTHING_TO_UNDO


@pytest.mark.parametrize(
    ("statuses", "expected", "verify_after"),
    [
        # Crashed while create_ticket's compensation was in flight: resent, then passed over.
        (
            ["COMPLETED", "COMPENSATING", "FAILED", "PENDING", "PENDING"],
            (SendCompensation(1),),
            None,
        ),
        # Crashed after create_ticket was compensated: the read-only step is passed over.
        (["COMPLETED", "COMPENSATED", "FAILED", "PENDING", "PENDING"], (), "NOTHING_TO_UNDO"),
        # Crashed after the commit that passed it over: nothing more to do, never twice.
        (["NOTHING_TO_UNDO", "COMPENSATED", "FAILED", "PENDING", "PENDING"], (), "NOTHING_TO_UNDO"),
    ],
)
def test_a_rollback_resumes_right_past_a_read_only_step(statuses, expected, verify_after):
    run = new_run(
        CREATE_ORDER,
        status=SagaStatus.COMPENSATING,
        step_statuses=[StepStatus(s) for s in statuses],
    )
    assert run.next_actions(T0) == expected
    if verify_after is not None:
        assert run.step_status(VERIFY) is StepStatus(verify_after)
        assert run.status is SagaStatus.FAILED
        events = [t.event for t in run.take_commit().transitions]
        passed = events.count(TransitionEvent.STEP_NOTHING_TO_UNDO)
        assert passed == (1 if statuses[0] == "COMPLETED" else 0)


def test_nothing_to_undo_is_final_and_reached_only_from_completed_started_or_waiting():
    from orchestrator.core.moves import STEP_MACHINE, STEP_MOVES

    sources = {source for (trigger, source) in STEP_MOVES if trigger == "nothing_to_undo"}
    # WAITING: a read-only asynchronous step (a check a person or a service answers later).
    assert sources == {"COMPLETED", "STARTED", "WAITING"}
    assert STEP_MACHINE.get_state(StepStatus.NOTHING_TO_UNDO).final
    assert not any(source == "NOTHING_TO_UNDO" for (_, source) in STEP_MOVES)
