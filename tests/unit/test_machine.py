"""Given/expect scenarios for the pure saga machine: no network, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from transitions import MachineError

from orchestrator.core.machine import (
    SAGA_MACHINE,
    SAGA_MOVES,
    STEP_MACHINE,
    STEP_MOVES,
    IllegalTransition,
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
from orchestrator.examples import ORDER_FULFILLMENT
from orchestrator.examples import TRAVEL_BOOKING as PARALLEL_TRAVEL
from tests.support.policy_sagas import DEADLINE_PROBE, PIVOT_PROBE

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRAVEL_BOOKING = dataclasses.replace(PARALLEL_TRAVEL, steps=PARALLEL_TRAVEL.all_steps)
"""The travel saga with its bookings one after another, for the sequential scenarios."""


def clock():
    """Strictly increasing times, so ordering by time is checkable."""
    tick = 0
    while True:
        tick += 1
        yield T0 + timedelta(seconds=tick)


def new_run(definition=TRAVEL_BOOKING, status=SagaStatus.RUNNING, step_statuses=None, last_seq=1):
    saga = SagaRecord(
        saga_id="s-1",
        saga_type=definition.name,
        definition_version=definition.version,
        correlation_id="order-1",
        payload={},
        status=status,
        create_time=T0,
        update_time=T0,
    )
    statuses = step_statuses or [StepStatus.PENDING] * len(definition.all_steps)
    # A command found STARTED or COMPENSATING was sent once (an operator's retry alone
    # leaves its attempts at 0).
    steps = [
        StepRecord(
            saga_id="s-1",
            index=i,
            name=step.name,
            status=statuses[i],
            attempts=int(statuses[i] is StepStatus.STARTED),
            compensation_attempts=int(statuses[i] is StepStatus.COMPENSATING),
        )
        for i, step in enumerate(definition.all_steps)
    ]
    return SagaRun(definition, saga, steps, last_seq=last_seq)


def drive(run, outcomes, times=None, waves=None):
    """Play participant answers: outcomes maps (kind, step index) to 'ok', 'reject' or
    'unknown' (default 'ok'); the answers of one wave arrive in the order the wave was
    sent. Returns the commands sent, in order, and the commits handed out."""
    times = times or clock()
    sent = []
    commits = []
    while True:
        actions = run.next_actions(next(times))
        if run.has_pending():
            commits.append(run.take_commit())
        if not actions:
            return sent, commits
        if waves is not None:
            waves.append([run.steps[a.index].name for a in actions])
        for action in actions:
            if isinstance(action, SendAction):
                sent.append(("action", run.steps[action.index].name))
                outcome = outcomes.get(("action", action.index), "ok")
                if outcome == "ok":
                    run.action_succeeded(action.index, b"reply", next(times))
                elif outcome == "reject":
                    run.action_rejected(action.index, "FAILED_PRECONDITION: no", next(times))
                else:
                    run.action_outcome_unknown(action.index, "DEADLINE_EXCEEDED", next(times))
            else:
                assert isinstance(action, SendCompensation)
                sent.append(("compensate", run.steps[action.index].name))
                if outcomes.get(("compensate", action.index)) == "give_up":
                    run.compensation_gave_up(action.index, "UNAVAILABLE", next(times))
                else:
                    run.compensation_succeeded(action.index, next(times))


def test_all_steps_succeed_completes_the_saga_in_order():
    run = new_run()
    sent, commits = drive(run, {})
    assert sent == [("action", s.name) for s in TRAVEL_BOOKING.all_steps]
    assert run.status is SagaStatus.COMPLETED
    assert all(s.status is StepStatus.COMPLETED and s.result == b"reply" for s in run.steps)
    events = [t.event for c in commits for t in c.transitions]
    assert events[-1] is TransitionEvent.SAGA_COMPLETED
    assert events.count(TransitionEvent.STEP_STARTED) == 4
    assert events.count(TransitionEvent.STEP_COMPLETED) == 4


def test_every_commit_precedes_the_command_it_announces():
    """Each STEP_STARTED is in a commit handed out before the command is sent, and one
    commit carries 'step i completed' together with 'step i+1 started'."""
    run = new_run()
    _, commits = drive(run, {})
    assert [[t.event for t in c.transitions] for c in commits] == [
        [TransitionEvent.STEP_STARTED],
        [TransitionEvent.STEP_COMPLETED, TransitionEvent.STEP_STARTED],
        [TransitionEvent.STEP_COMPLETED, TransitionEvent.STEP_STARTED],
        [TransitionEvent.STEP_COMPLETED, TransitionEvent.STEP_STARTED],
        [TransitionEvent.STEP_COMPLETED, TransitionEvent.SAGA_COMPLETED],
    ]


def test_commits_chain_versions_and_number_transitions_without_gaps():
    run = new_run()
    _, commits = drive(run, {})
    versions = [(c.expected_version, c.saga.version) for c in commits]
    assert versions == [(v, v + 1) for v in range(1, len(commits) + 1)]
    seqs = [t.seq for c in commits for t in c.transitions]
    assert seqs == list(range(2, 2 + len(seqs)))


def test_failure_at_third_step_compensates_completed_steps_in_reverse_order():
    run = new_run()
    sent, _ = drive(run, {("action", 2): "reject"})
    assert sent == [
        ("action", "book_flight"),
        ("action", "book_hotel"),
        ("action", "rent_car"),
        ("compensate", "book_hotel"),
        ("compensate", "book_flight"),
    ]
    assert run.status is SagaStatus.FAILED
    assert run.saga.failed_step == "rent_car"
    assert "rent_car" in run.saga.failure_reason
    assert not run.saga.needs_intervention
    assert [s.status for s in run.steps] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
        StepStatus.PENDING,
    ]


def test_unknown_outcome_compensates_the_failed_step_too():
    run = new_run()
    sent, _ = drive(run, {("action", 2): "unknown"})
    assert sent[3:] == [
        ("compensate", "rent_car"),
        ("compensate", "book_hotel"),
        ("compensate", "book_flight"),
    ]
    assert run.steps[2].status is StepStatus.COMPENSATED
    assert run.status is SagaStatus.FAILED


def test_failure_of_first_step_fails_without_compensations():
    run = new_run()
    sent, _ = drive(run, {("action", 0): "reject"})
    assert sent == [("action", "book_flight")]
    assert run.status is SagaStatus.FAILED


def test_step_without_compensation_is_skipped_when_compensating():
    statuses = [StepStatus.COMPLETED] * 3 + [StepStatus.PENDING]
    run = new_run(ORDER_FULFILLMENT, step_statuses=statuses)
    sent, _ = drive(run, {("action", 3): "unknown"})
    assert sent[0] == ("action", "send_confirmation")
    assert [name for kind, name in sent if kind == "compensate"] == [
        "schedule_shipping",
        "charge_payment",
        "reserve_inventory",
    ]


def test_compensation_that_gives_up_fails_the_saga_and_asks_for_an_operator():
    run = new_run()
    sent, _ = drive(run, {("action", 2): "reject", ("compensate", 1): "give_up"})
    assert sent[-1] == ("compensate", "book_hotel")
    assert run.status is SagaStatus.FAILED
    assert run.saga.needs_intervention
    assert run.steps[1].status is StepStatus.COMPENSATION_FAILED
    assert run.steps[0].status is StepStatus.COMPLETED


@pytest.mark.parametrize(
    ("saga_status", "step_statuses", "expected"),
    [
        (SagaStatus.RUNNING, ["COMPLETED", "STARTED", "PENDING", "PENDING"], (SendAction(1),)),
        (SagaStatus.RUNNING, ["COMPLETED", "COMPLETED", "PENDING", "PENDING"], (SendAction(2),)),
        (
            SagaStatus.COMPENSATING,
            ["COMPLETED", "COMPENSATING", "FAILED", "PENDING"],
            (SendCompensation(1),),
        ),
        (
            SagaStatus.COMPENSATING,
            ["COMPLETED", "COMPENSATED", "FAILED", "PENDING"],
            (SendCompensation(0),),
        ),
        (
            SagaStatus.COMPENSATING,
            ["COMPLETED", "STARTED", "PENDING", "PENDING"],
            (SendCompensation(1),),
        ),
        (SagaStatus.COMPLETED, ["COMPLETED"] * 4, ()),
    ],
)
def test_resumes_from_any_persisted_state(saga_status, step_statuses, expected):
    run = new_run(status=saga_status, step_statuses=[StepStatus(s) for s in step_statuses])
    assert run.next_actions(T0) == expected


def test_a_resent_command_is_counted_and_logged_before_it_goes_out():
    statuses = [StepStatus.COMPLETED, StepStatus.STARTED, StepStatus.PENDING, StepStatus.PENDING]
    run = new_run(step_statuses=statuses, last_seq=5)
    assert run.next_actions(T0) == (SendAction(1),)
    commit = run.take_commit()
    assert commit.steps[0].attempts == 2
    assert [(t.seq, t.event) for t in commit.transitions] == [
        (6, TransitionEvent.STEP_RETRY_SCHEDULED)
    ]


@pytest.mark.parametrize(
    ("step_status", "method"),
    [
        (StepStatus.PENDING, "action_succeeded"),
        (StepStatus.COMPLETED, "compensation_succeeded"),
        (StepStatus.COMPENSATED, "action_rejected"),
    ],
)
def test_illegal_step_transition_raises(step_status, method):
    run = new_run(step_statuses=[step_status] * 4)
    args = {"action_succeeded": (b"",), "compensation_succeeded": (), "action_rejected": ("x",)}
    with pytest.raises(IllegalTransition):
        getattr(run, method)(0, *args[method], T0)


def test_terminal_saga_cannot_start_compensating():
    run = new_run(status=SagaStatus.COMPLETED, step_statuses=[StepStatus.STARTED] * 4)
    with pytest.raises(IllegalTransition):
        run.action_rejected(0, "late", T0)


def test_stored_steps_that_do_not_match_the_definition_are_refused():
    saga = new_run().saga
    with pytest.raises(IllegalTransition):
        SagaRun(TRAVEL_BOOKING, saga, [StepRecord("s-1", 0, "other")], last_seq=1)


@pytest.mark.parametrize(
    ("machine", "moves", "states"),
    [(SAGA_MACHINE, SAGA_MOVES, SagaStatus), (STEP_MACHINE, STEP_MOVES, StepStatus)],
)
def test_the_transition_table_agrees_with_the_machine_everywhere(machine, moves, states):
    """Every trigger from every state: the table allows exactly what the machine allows."""

    class Probe:
        pass

    for trigger in machine.events:
        for state in states:
            probe = Probe()
            machine.add_model(probe, initial=state)
            try:
                machine.events[trigger].trigger(probe)
                expected = probe.state.name
            except MachineError:
                expected = None
            finally:
                machine.remove_model(probe)
            assert moves.get((trigger, state.name)) == expected, (trigger, state)


# --- Parallel groups ---------------------------------------------------------------------


def test_parallel_group_members_start_together_in_one_commit():
    run = new_run(PARALLEL_TRAVEL)
    waves = []
    _, commits = drive(run, {}, waves=waves)
    assert waves == [["book_flight", "book_hotel", "rent_car"], ["charge_payment"]]
    assert [t.event for t in commits[0].transitions] == [TransitionEvent.STEP_STARTED] * 3
    assert run.status is SagaStatus.COMPLETED


def test_failed_member_compensates_completed_siblings_then_earlier_steps():
    run = new_run(PARALLEL_TRAVEL)
    sent, _ = drive(run, {("action", 1): "reject"})
    assert sent == [
        ("action", "book_flight"),
        ("action", "book_hotel"),
        ("action", "rent_car"),
        ("compensate", "rent_car"),
        ("compensate", "book_flight"),
    ]
    assert run.saga.failed_step == "book_hotel"
    assert run.steps[1].status is StepStatus.FAILED
    assert run.status is SagaStatus.FAILED


def test_member_answering_after_a_sibling_failed_is_compensated():
    """The slow member's reply comes after the failure: it completed, so it is undone."""
    run = new_run(PARALLEL_TRAVEL)
    actions = run.next_actions(T0)
    assert len(actions) == 3
    run.take_commit()
    run.action_rejected(0, "FAILED_PRECONDITION: no seats", T0)
    assert run.status is SagaStatus.COMPENSATING
    run.action_succeeded(1, b"late", T0)
    run.action_rejected(2, "FAILED_PRECONDITION: no cars", T0)
    assert run.saga.failed_step == "book_flight"
    sent, _ = drive(run, {})
    assert sent == [("compensate", "book_hotel")]
    assert run.status is SagaStatus.FAILED


def test_restart_inside_a_group_resends_started_members_and_starts_pending_ones():
    statuses = [StepStatus.COMPLETED, StepStatus.STARTED, StepStatus.PENDING, StepStatus.PENDING]
    run = new_run(PARALLEL_TRAVEL, step_statuses=statuses)
    assert run.next_actions(T0) == (SendAction(1), SendAction(2))
    events = [(t.event, t.step) for t in run.take_commit().transitions]
    assert events == [
        (TransitionEvent.STEP_RETRY_SCHEDULED, "book_hotel"),
        (TransitionEvent.STEP_STARTED, "rent_car"),
    ]


def test_restart_while_compensating_a_group_undoes_members_of_unknown_outcome():
    statuses = [StepStatus.COMPLETED, StepStatus.STARTED, StepStatus.FAILED, StepStatus.PENDING]
    run = new_run(PARALLEL_TRAVEL, status=SagaStatus.COMPENSATING, step_statuses=statuses)
    sent, _ = drive(run, {})
    assert sent == [("compensate", "book_hotel"), ("compensate", "book_flight")]


# --- failure policy and operators -----------------------------------------------------


def test_abort_compensates_a_running_saga_and_records_who_and_why():
    run = new_run(
        step_statuses=[StepStatus.COMPLETED, StepStatus.STARTED] + [StepStatus.PENDING] * 2
    )
    run.abort(T0, "operator:ann", "customer cancelled")
    commit = run.take_commit()
    assert run.status is SagaStatus.COMPENSATING
    (aborted,) = commit.transitions
    assert (aborted.event, aborted.actor, aborted.reason) == (
        TransitionEvent.SAGA_ABORTED,
        "operator:ann",
        "customer cancelled",
    )
    assert "customer cancelled" in run.saga.failure_reason
    sent, _ = drive(run, {})
    assert sent == [("compensate", "book_hotel"), ("compensate", "book_flight")]


@pytest.mark.parametrize(
    "status", [SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.COMPENSATING]
)
def test_only_a_running_saga_can_be_aborted(status):
    run = new_run(status=status, step_statuses=[StepStatus.COMPLETED] * 4)
    with pytest.raises(IllegalTransition):
        run.abort(T0, "operator:ann", "too late")


def test_a_saga_past_its_pivot_cannot_be_aborted_or_time_out():
    statuses = [StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.STARTED]
    run = new_run(PIVOT_PROBE, step_statuses=statuses)
    with pytest.raises(IllegalTransition, match="pivot"):
        run.abort(T0, "operator:ann", "please")
    run.saga = dataclasses.replace(run.saga, deadline_time=T0 - timedelta(seconds=1))
    assert not run.deadline_passed(T0)


def test_deadline_passed_turns_the_saga_to_compensation():
    statuses = [StepStatus.COMPLETED, StepStatus.STARTED]
    run = new_run(DEADLINE_PROBE, step_statuses=statuses)
    run.saga = dataclasses.replace(run.saga, deadline_time=T0)
    actions = run.next_actions(T0 + timedelta(seconds=1))
    assert actions == (SendCompensation(1),)
    events = [t.event for t in run.take_commit().transitions]
    assert events[0] is TransitionEvent.SAGA_DEADLINE_PASSED


def test_a_scheduled_retry_is_resent_at_its_time_without_counting_it_again():
    due = T0 + timedelta(seconds=3)
    run = new_run(step_statuses=[StepStatus.STARTED] + [StepStatus.PENDING] * 3)
    run.steps[0] = dataclasses.replace(run.steps[0], attempts=2, next_attempt_time=due)
    assert run.next_actions(T0) == (SendAction(0, not_before=due),)
    assert not run.has_pending() and run.steps[0].attempts == 2


def test_a_step_past_the_pivot_that_keeps_failing_halts_for_an_operator_then_resumes():
    statuses = [StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.STARTED]
    run = new_run(PIVOT_PROBE, step_statuses=statuses)
    run.action_stuck(2, "FAILED_PRECONDITION: no", T0)
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert run.saga.failed_step == "book_flight"
    run.retry(T0, "operator:bo", "participant fixed")
    assert run.status is SagaStatus.RUNNING and not run.saga.needs_intervention
    assert run.next_actions(T0) == (SendAction(2),)
    assert run.steps[2].attempts == 1


def test_a_stuck_compensation_is_retried_or_resolved_by_an_operator():
    run = new_run()
    drive(run, {("action", 2): "reject", ("compensate", 1): "give_up"})
    assert run.stuck_step() == 1
    run.retry(T0, "operator:cy", "try again")
    assert run.status is SagaStatus.COMPENSATING
    assert (
        run.steps[1].status is StepStatus.COMPENSATING and run.steps[1].compensation_attempts == 0
    )
    drive(run, {("compensate", 1): "give_up"})
    with pytest.raises(IllegalTransition, match="not at"):
        run.resolve("book_flight", T0, "operator:cy", "wrong step")
    run.resolve("book_hotel", T0, "operator:cy", "refunded by hand")
    assert run.steps[1].status is StepStatus.COMPENSATED
    sent, _ = drive(run, {})
    assert sent == [("compensate", "book_flight")]
    assert run.status is SagaStatus.FAILED and not run.saga.needs_intervention
    assert "resolved by operator:cy" in run.saga.failure_reason


def test_retry_and_resolve_need_a_saga_that_needs_intervention():
    run = new_run(status=SagaStatus.COMPLETED, step_statuses=[StepStatus.COMPLETED] * 4)
    with pytest.raises(IllegalTransition, match="does not need intervention"):
        run.retry(T0, "operator:di", "why")
    with pytest.raises(IllegalTransition):
        run.resolve("book_hotel", T0, "operator:di", "why")


@pytest.mark.parametrize("stuck", ["forward", "compensation"])
def test_an_operators_retry_clears_the_old_error_and_logs_a_fresh_start(stuck):
    if stuck == "forward":
        statuses = [StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.STARTED]
        run = new_run(PIVOT_PROBE, step_statuses=statuses)
        run.action_stuck(2, "FAILED_PRECONDITION: no", T0)
        index, started = 2, TransitionEvent.STEP_STARTED
    else:
        run = new_run()
        drive(run, {("action", 2): "reject", ("compensate", 1): "give_up"})
        index, started = 1, TransitionEvent.COMPENSATION_STARTED
    run.take_commit()
    run.retry(T0, "operator:bo", "fixed")
    # What `saga retry` prints and `saga get` shows until the attempt's answer.
    assert (run.steps[index].error, run.steps[index].next_attempt_time) == ("", None)
    run.take_commit()
    run.next_actions(T0)
    sent = run.take_commit().transitions
    assert [(t.event, t.error, t.reason, t.attempt) for t in sent] == [
        (started, "", "sent again on an operator's retry", 1)
    ]
    assert run.steps[index].error == ""


def test_a_command_found_started_after_a_crash_is_resent_as_a_retry():
    run = new_run(step_statuses=[StepStatus.STARTED] * 3 + [StepStatus.PENDING])
    run.next_actions(T0)
    resent = run.take_commit().transitions
    assert {(t.event, t.error) for t in resent} == {
        (TransitionEvent.STEP_RETRY_SCHEDULED, "resent after a restart")
    }
