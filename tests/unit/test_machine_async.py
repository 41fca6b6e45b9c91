"""Given/expect scenarios for asynchronous steps in the pure machine: accepted, waiting,
then completed, failed, timed out, completed late, kept alive or cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.core.machine import (
    AwaitCompletion,
    SagaRun,
    SendAction,
    SendCompensation,
)
from orchestrator.core.records import (
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
)
from orchestrator.core.tokens import make_token, token_address, token_digest
from orchestrator.core.waiting import (
    CompletionOutcome,
    action_accepted,
    answer_completion,
    answer_heartbeat,
    token_issued,
)
from saga.participants.flight.v1 import flight_pb2
from tests.support.async_sagas import ASYNC_TRIP, HEARTBEAT_TRIP, SUPERVISED_TRIP

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLIGHT = 1
TOKEN = make_token("s-1", FLIGHT, "secret-one")
DIGEST = token_digest(TOKEN)
RESULT = flight_pb2.BookFlightResponse(booking_id="F-1").SerializeToString()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_run(definition=ASYNC_TRIP) -> SagaRun:
    saga = SagaRecord(
        saga_id="s-1",
        saga_type=definition.name,
        definition_version=definition.version,
        correlation_id="trip-1",
        payload={},
        status=SagaStatus.RUNNING,
        create_time=T0,
        update_time=T0,
    )
    steps = [
        StepRecord(saga_id="s-1", index=i, name=step.name)
        for i, step in enumerate(definition.all_steps)
    ]
    return SagaRun(definition, saga, steps, last_seq=1)


def waiting_run(definition=ASYNC_TRIP) -> SagaRun:
    """Given: the hotel booked, the flight sent with TOKEN and accepted at t=3."""
    run = new_run(definition)
    assert run.next_actions(at(1)) == (SendAction(0),)
    run.action_succeeded(0, b"", at(2))
    assert run.next_actions(at(2)) == (SendAction(FLIGHT),)
    token_issued(run, FLIGHT, DIGEST, at(2))
    run.take_commit()
    action_accepted(run, FLIGHT, at(3))
    return run


def events(run: SagaRun) -> list[TransitionEvent]:
    return [t.event for t in run.take_commit().transitions]


def test_an_accepted_step_waits_and_parks_the_saga_until_its_deadline():
    run = waiting_run()
    assert run.step_status(FLIGHT) is StepStatus.WAITING
    assert run.steps[FLIGHT].wait_deadline == at(33)
    assert run.next_actions(at(4)) == (AwaitCompletion(at(33)),)
    commit = run.take_commit()
    assert [t.event for t in commit.transitions] == [TransitionEvent.STEP_WAITING]
    assert commit.saga.wake_time == at(33)
    assert commit.steps[0].completion_tokens == (DIGEST,)


def test_a_completion_completes_the_step_with_its_typed_result_and_the_saga_goes_on():
    run = waiting_run()
    run.take_commit()
    answer = answer_completion(run, FLIGHT, DIGEST, "c-1", at(5), result=RESULT)
    assert answer.outcome is CompletionOutcome.ACCEPTED
    assert run.steps[FLIGHT].result == RESULT
    assert run.next_actions(at(6)) == ()
    commit = run.take_commit()
    assert run.status is SagaStatus.COMPLETED
    assert commit.saga.wake_time is None
    assert [t.event for t in commit.transitions] == [
        TransitionEvent.STEP_COMPLETED,
        TransitionEvent.SAGA_COMPLETED,
    ]
    assert commit.transitions[0].actor == "participant"


def test_a_failure_fails_the_step_and_compensates_the_earlier_ones():
    run = waiting_run()
    answer = answer_completion(run, FLIGHT, DIGEST, "c-1", at(5), error="no seats")
    assert answer.outcome is CompletionOutcome.ACCEPTED
    assert run.step_status(FLIGHT) is StepStatus.FAILED
    assert run.status is SagaStatus.COMPENSATING
    assert run.next_actions(at(6)) == (SendCompensation(0),)


def test_a_completion_before_the_acceptance_is_stored_counts_and_the_acceptance_is_moot():
    run = new_run()
    run.next_actions(at(1))
    run.action_succeeded(0, b"", at(2))
    run.next_actions(at(2))
    token_issued(run, FLIGHT, DIGEST, at(2))
    answer = answer_completion(run, FLIGHT, DIGEST, "c-1", at(3), result=RESULT)
    assert answer.outcome is CompletionOutcome.ACCEPTED
    action_accepted(run, FLIGHT, at(4))  # the reply arrives after the completion
    assert run.step_status(FLIGHT) is StepStatus.COMPLETED
    assert run.next_actions(at(5)) == ()
    assert run.status is SagaStatus.COMPLETED


@pytest.mark.parametrize("kind", ["result", "error"])
def test_the_same_completion_id_again_gets_the_first_answer_and_changes_nothing(kind):
    run = waiting_run()
    given = {"result": RESULT} if kind == "result" else {"error": "no seats"}
    answer_completion(run, FLIGHT, DIGEST, "c-1", at(5), **given)
    run.take_commit()
    again = answer_completion(run, FLIGHT, DIGEST, "c-1", at(6), **given)
    assert again.outcome is CompletionOutcome.DUPLICATE
    assert again.recorded_kind == ("completed" if kind == "result" else "failed")
    assert not run.has_pending()


def test_a_different_completion_after_one_was_recorded_is_refused_naming_it():
    run = waiting_run()
    answer_completion(run, FLIGHT, DIGEST, "c-1", at(5), result=RESULT)
    run.take_commit()
    other = answer_completion(run, FLIGHT, DIGEST, "c-2", at(6), error="changed my mind")
    assert other.outcome is CompletionOutcome.CONFLICT
    assert other.recorded_id == "c-1"
    assert not run.has_pending()


@pytest.mark.parametrize(
    "token",
    [
        make_token("s-1", FLIGHT, "forged"),
        make_token("s-2", FLIGHT, "secret-one"),
        "garbage",
    ],
    ids=["forged", "another-saga", "not-a-token"],
)
def test_a_token_that_is_not_the_steps_is_denied_and_changes_nothing(token):
    run = waiting_run()
    run.take_commit()
    answer = answer_completion(run, FLIGHT, token_digest(token), "c-1", at(5), result=RESULT)
    assert answer.outcome is CompletionOutcome.DENIED
    assert not run.has_pending()
    heartbeat = answer_heartbeat(run, FLIGHT, token_digest(token), at(5))
    assert heartbeat.denied


def test_a_resend_after_a_restart_keeps_the_first_token_but_an_operator_retry_does_not():
    run = waiting_run(SUPERVISED_TRIP)
    run.take_commit()
    # The wait times out: the saga halts for an operator, who retries the step.
    assert run.next_actions(at(10)) == ()
    assert run.saga.needs_intervention
    run.take_commit()
    run.retry(at(11), "alice", "the airline is back")
    before_resend = answer_completion(run, FLIGHT, DIGEST, "c-0", at(11), result=RESULT)
    assert before_resend.outcome is CompletionOutcome.DENIED
    assert run.next_actions(at(12)) == (SendAction(FLIGHT),)
    second = token_digest(make_token("s-1", FLIGHT, "secret-two"))
    token_issued(run, FLIGHT, second, at(12))
    run.take_commit()
    assert run.steps[FLIGHT].completion_tokens == (second,)
    old = answer_completion(run, FLIGHT, DIGEST, "c-1", at(13), result=RESULT)
    assert old.outcome is CompletionOutcome.DENIED


def test_a_timeout_compensates_the_step_itself_with_the_earlier_ones():
    run = waiting_run()
    run.take_commit()
    assert run.next_actions(at(34)) == (SendCompensation(FLIGHT),)
    commit = run.take_commit()
    assert [t.event for t in commit.transitions] == [
        TransitionEvent.STEP_TIMED_OUT,
        TransitionEvent.SAGA_COMPENSATING,
        TransitionEvent.COMPENSATION_STARTED,
    ]
    assert "no completion within 30s" in commit.saga.failure_reason
    assert commit.saga.wake_time is None


def test_a_timeout_of_a_step_that_needs_intervention_halts_the_saga():
    run = waiting_run(SUPERVISED_TRIP)
    run.take_commit()
    assert run.next_actions(at(10)) == ()
    assert run.status is SagaStatus.FAILED
    assert run.saga.needs_intervention
    assert run.step_status(FLIGHT) is StepStatus.FAILED


def test_a_completion_after_the_deadline_is_late_logged_and_the_step_times_out():
    run = waiting_run()
    run.take_commit()
    late = answer_completion(run, FLIGHT, DIGEST, "c-1", at(40), result=RESULT)
    assert late.outcome is CompletionOutcome.LATE
    assert "no completion within 30s" in late.reason
    commit = run.take_commit()
    assert [t.event for t in commit.transitions] == [
        TransitionEvent.STEP_TIMED_OUT,
        TransitionEvent.SAGA_COMPENSATING,
        TransitionEvent.STEP_COMPLETED_LATE,
    ]
    assert commit.transitions[-1].reason.startswith("completion c-1 refused")
    assert run.steps[FLIGHT].result is None
    again = answer_completion(run, FLIGHT, DIGEST, "c-1", at(41), result=RESULT)
    assert again.outcome is CompletionOutcome.DUPLICATE
    assert again.recorded_kind == "late"


def test_a_completion_after_the_saga_was_compensated_is_late():
    run = waiting_run()
    run.next_actions(at(34))
    run.compensation_succeeded(FLIGHT, at(35))
    run.next_actions(at(36))
    run.compensation_succeeded(0, at(37))
    assert run.next_actions(at(38)) == ()
    assert run.status is SagaStatus.FAILED
    run.take_commit()
    late = answer_completion(run, FLIGHT, DIGEST, "c-1", at(39), result=RESULT)
    assert late.outcome is CompletionOutcome.LATE
    assert events(run) == [TransitionEvent.STEP_COMPLETED_LATE]


def test_heartbeats_move_the_deadline_without_a_log_row_but_never_past_the_total_wait():
    run = waiting_run(HEARTBEAT_TRIP)
    assert run.steps[FLIGHT].wait_deadline == at(5)
    run.take_commit()
    beat = answer_heartbeat(run, FLIGHT, DIGEST, at(4))
    assert not beat.cancel_requested and beat.deadline == at(6)
    commit = run.take_commit()
    assert commit.transitions == ()
    assert commit.saga.wake_time == at(6)
    for second in range(5, 33):
        answer_heartbeat(run, FLIGHT, DIGEST, at(second))
    assert run.steps[FLIGHT].wait_deadline == at(33)


def test_a_missed_heartbeat_times_the_step_out():
    run = waiting_run(HEARTBEAT_TRIP)
    run.take_commit()
    assert run.next_actions(at(6)) == (SendCompensation(FLIGHT),)
    assert "no heartbeat within 2s" in run.saga.failure_reason


def test_an_abort_while_waiting_compensates_the_step_and_heartbeats_ask_to_cancel():
    run = waiting_run()
    run.take_commit()
    run.abort(at(5), "alice", "customer called")
    assert answer_heartbeat(run, FLIGHT, DIGEST, at(6)).cancel_requested
    assert run.next_actions(at(6)) == (SendCompensation(FLIGHT),)
    assert run.take_commit().saga.wake_time is None


def test_the_saga_deadline_while_waiting_wakes_it_and_compensates():
    import dataclasses

    run = waiting_run(dataclasses.replace(ASYNC_TRIP, deadline=10.0))
    run.saga = dataclasses.replace(run.saga, deadline_time=at(10))
    assert run.next_actions(at(4)) == (AwaitCompletion(at(10)),)
    run.take_commit()
    assert answer_heartbeat(run, FLIGHT, DIGEST, at(11)).cancel_requested
    assert run.next_actions(at(11)) == (SendCompensation(FLIGHT),)


def test_a_token_names_its_saga_and_step():
    address = token_address(TOKEN)
    assert address is not None and (address.saga_id, address.step_index) == ("s-1", FLIGHT)
    assert token_address("ct1.!!.1.x") is None
    assert token_address("ct1.czE.one.x") is None


def test_a_read_only_step_still_waiting_when_the_saga_stops_has_nothing_to_undo():
    import dataclasses

    checked = dataclasses.replace(ASYNC_TRIP.all_steps[1], compensation=None, read_only=True)
    run = waiting_run(dataclasses.replace(ASYNC_TRIP, steps=(ASYNC_TRIP.all_steps[0], checked)))
    run.take_commit()
    run.abort(at(5), "alice", "customer called")
    assert run.next_actions(at(6)) == (SendCompensation(0),)
    assert run.step_status(FLIGHT) is StepStatus.NOTHING_TO_UNDO


def _read_only_trip():  # an approval: it changes nothing, so nothing is undone for it
    import dataclasses

    checked = dataclasses.replace(ASYNC_TRIP.all_steps[1], compensation=None, read_only=True)
    return dataclasses.replace(ASYNC_TRIP, steps=(ASYNC_TRIP.all_steps[0], checked))


@pytest.mark.parametrize("ending", ["rejected", "timed out"])
def test_a_read_only_waiting_step_that_fails_compensates_the_earlier_steps(ending):
    run = waiting_run(_read_only_trip())
    run.take_commit()
    if ending == "rejected":
        answer_completion(run, FLIGHT, DIGEST, "c-1", at(5), error="rejected by maria")
        now = at(6)
    else:
        now = at(34)
    assert run.next_actions(now) == (SendCompensation(0),)
    assert run.status is SagaStatus.COMPENSATING
    assert not run.saga.needs_intervention


def test_a_persons_rejection_is_logged_under_their_name_with_their_reason():
    run = waiting_run(_read_only_trip())
    run.take_commit()
    answer_completion(
        run,
        FLIGHT,
        None,
        "reject-by-approver:maria",
        at(5),
        error="rejected",
        actor="approver:maria",
        reason="over budget",
    )
    [failed] = [t for t in run.take_commit().transitions if t.event is TransitionEvent.STEP_FAILED]
    assert (failed.actor, failed.reason) == ("approver:maria", "over budget")
