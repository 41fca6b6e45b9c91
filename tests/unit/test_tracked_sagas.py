"""Given/expect scenarios for tracked sagas in the pure core: events start an instance,
complete and fail its steps, unwind it through its services' undo events; early events
are held and applied in their turn; missed windows flag or rescue it; operators retry,
resolve and abort; what does not fit is an EVENT_ANOMALY row, never an error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf import json_format, struct_pb2

from orchestrator.core import observing
from orchestrator.core.actions import SendCompensation
from orchestrator.core.incoming import IngestVerdict
from orchestrator.core.machine import AwaitCompletion, SagaRun
from orchestrator.core.moves import IllegalTransition
from orchestrator.core.records import SagaStatus, StepStatus, TransitionEvent
from tests.unit.tracked_travel import RESCUED_TRAVEL, T0, TRAVEL, T, Tracker, event

pytestmark = pytest.mark.unit

E = TransitionEvent
FLIGHT, HOTEL, CAR = 0, 1, 2


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def started(definition=TRAVEL) -> Tracker:
    tracker = Tracker(definition)
    assert tracker.ingest(event("booking_started", travellers=2)) is IngestVerdict.RECORDED
    return tracker


def statuses(run: SagaRun) -> list[StepStatus]:
    return [run.step_status(i) for i in range(len(run.steps))]


def rows(tracker: Tracker, kind: TransitionEvent, booking: str = "B1"):
    return [row for row in tracker.log[booking] if row.event is kind]


# --- forward ------------------------------------------------------------------------


def test_a_start_event_opens_an_instance_whose_first_step_waits_for_its_window():
    tracker = started()
    run = tracker.run()
    assert run.status is SagaStatus.RUNNING
    assert run.saga.correlation_id == "B1"
    assert run.saga.idempotency_key == "default/tracked:travel_choreography:B1"
    assert run.saga.payload == {"booking_id": "B1", "travellers": 2}
    assert statuses(run) == [StepStatus.WAITING, StepStatus.PENDING, StepStatus.PENDING]
    assert run.steps[FLIGHT].wait_deadline == at(30)
    assert run.saga.wake_time == at(30)  # parked until the window closes
    first, waiting = tracker.log["B1"]
    assert (first.event, first.seq, first.actor) == (E.SAGA_STARTED, 1, "event:/booking")
    assert first.reason == f"{T}booking_started booking_started-B1"
    assert (waiting.event, waiting.step) == (E.STEP_WAITING, "book_flight")
    assert E.STEP_STARTED not in tracker.events()


def test_start_instance_opens_with_one_insert_under_the_correlation_key():
    run = observing.start_instance(TRAVEL, event("booking_started"), T0, "s-1", "tenant-a")
    opening = observing.take_opening(run)
    assert opening.saga.idempotency_key == "tenant-a/tracked:travel_choreography:B1"
    assert [t.seq for t in opening.transitions] == [1, 2]
    assert [s.status for s in opening.steps] == [
        StepStatus.WAITING,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]
    assert opening.saga.version == 2


def test_a_start_event_without_a_correlation_value_is_refused():
    stray = event("booking_started").__class__(source="/b", id="1", type=f"{T}booking_started")
    with pytest.raises(ValueError, match="no correlation value"):
        observing.start_instance(TRAVEL, stray, T0, "s-1")


def test_completing_events_move_the_flow_to_completed_with_each_events_data_as_result():
    tracker = started()
    tracker.ingest(event("flight_booked", flight="LH1"), at(5))
    run = tracker.run()
    assert statuses(run)[:2] == [StepStatus.COMPLETED, StepStatus.WAITING]
    assert run.steps[HOTEL].wait_deadline == at(35)  # from the previous step's event
    tracker.ingest(event("hotel_booked", reservation_id="H-9"), at(10))
    tracker.ingest(event("car_rented"), at(20))
    run = tracker.run()
    assert run.status is SagaStatus.COMPLETED
    assert run.saga.wake_time is None
    result = struct_pb2.Struct.FromString(run.steps[HOTEL].result or b"")
    assert json_format.MessageToDict(result) == {"booking_id": "B1", "reservation_id": "H-9"}
    completed = rows(tracker, E.STEP_COMPLETED)
    assert [(r.step, r.actor) for r in completed] == [
        ("book_flight", "event:/flight"),
        ("book_hotel", "event:/hotel"),
        ("rent_car", "event:/car"),
    ]
    assert tracker.events()[-1] is E.SAGA_COMPLETED


def test_an_early_event_is_held_and_applied_in_the_commit_that_makes_its_step_wait():
    tracker = started()
    assert tracker.ingest(event("hotel_booked")) is IngestVerdict.HELD
    (anomaly,) = rows(tracker, E.EVENT_ANOMALY)
    assert anomaly.reason.endswith("early: held until book_hotel is expected")
    assert tracker.run().step_status(HOTEL) is StepStatus.PENDING
    tracker.ingest(event("flight_booked"), at(3))
    run = tracker.run()
    assert statuses(run) == [StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.WAITING]
    assert tracker.held["B1"] == []
    assert tracker.events()[-4:] == [
        E.STEP_COMPLETED,
        E.STEP_WAITING,
        E.STEP_COMPLETED,
        E.STEP_WAITING,
    ]


def test_events_before_the_start_event_are_held_and_applied_when_it_comes():
    tracker = Tracker()
    assert tracker.ingest(event("flight_booked")) is IngestVerdict.HELD
    assert tracker.ingest(event("hotel_booked")) is IngestVerdict.HELD
    assert "B1" not in tracker.runs
    tracker.ingest(event("booking_started"))
    run = tracker.run()
    assert statuses(run) == [StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.WAITING]
    assert E.EVENT_ANOMALY not in tracker.events()


def test_held_ready_names_the_event_types_the_instance_takes_now():
    tracker = started()
    ready = observing.held_ready(tracker.run())
    assert f"{T}flight_booked" in ready and f"{T}flight_booking_failed" in ready
    assert f"{T}hotel_booked" not in ready and f"{T}flight_cancelled" not in ready


def test_expectations_say_what_a_waiting_saga_expects_next_and_by_when():
    tracker = started()
    (expected,) = observing.expectations(tracker.run())
    assert expected.step == "book_flight"
    assert expected.event_types == (f"{T}flight_booked", f"{T}flight_booking_failed")
    assert (expected.deadline, expected.undo) == (at(30), False)


# --- refused, and unwinding through events --------------------------------------------


def refused_at_the_car(definition=TRAVEL) -> Tracker:
    tracker = started(definition)
    tracker.ingest(event("flight_booked"), at(1))
    tracker.ingest(event("hotel_booked"), at(2))
    tracker.ingest(event("car_rental_failed"), at(3))
    return tracker


def test_a_failing_event_fails_the_step_and_the_completed_steps_wait_for_their_undo_events():
    tracker = refused_at_the_car()
    run = tracker.run()
    assert run.status is SagaStatus.COMPENSATING
    assert run.saga.failure_reason == "step rent_car failed: refused by car_rental: " + (
        f"{T}car_rental_failed"
    )
    assert statuses(run) == [StepStatus.COMPLETED, StepStatus.COMPENSATING, StepStatus.FAILED]
    assert run.steps[HOTEL].wait_deadline == at(33)
    assert run.saga.wake_time == at(33)  # parked while it unwinds through events
    (failed,) = rows(tracker, E.STEP_FAILED)
    assert (failed.step, failed.actor) == ("rent_car", "event:/car")
    assert observing.expectations(run)[0].undo is True
    tracker.ingest(event("hotel_cancelled"), at(4))
    run = tracker.run()
    assert statuses(run)[:2] == [StepStatus.COMPENSATING, StepStatus.COMPENSATED]
    tracker.ingest(event("flight_cancelled"), at(5))
    run = tracker.run()
    assert run.status is SagaStatus.FAILED
    assert not run.saga.needs_intervention
    undone = rows(tracker, E.COMPENSATION_COMPLETED)
    assert [(r.step, r.actor) for r in undone] == [
        ("book_hotel", "event:/hotel"),
        ("book_flight", "event:/flight"),
    ]
    assert E.COMPENSATION_STARTED not in tracker.events()  # nothing was sent


def test_undo_events_that_come_early_are_held_until_their_step_is_undone():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    assert tracker.ingest(event("flight_cancelled"), at(2)) is IngestVerdict.HELD
    tracker.ingest(event("hotel_booked"), at(3))
    assert tracker.ingest(event("hotel_cancelled"), at(4)) is IngestVerdict.HELD
    tracker.ingest(event("car_rental_failed"), at(5))
    run = tracker.run()
    assert run.status is SagaStatus.FAILED
    assert statuses(run) == [StepStatus.COMPENSATED, StepStatus.COMPENSATED, StepStatus.FAILED]


def test_a_refusal_of_the_first_step_fails_the_saga_at_once():
    tracker = started()
    tracker.ingest(event("flight_booking_failed"), at(1))
    assert tracker.run().status is SagaStatus.FAILED


# --- anomalies and duplicates ---------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "late", "why"),
    [
        (
            ["flight_booked", "hotel_booked", "car_rented"],
            "hotel_cancelled",
            "after the saga ended",
        ),
        ([], "booking_started", "a second start event"),
        (
            ["flight_booked"],
            "flight_booking_failed",
            f"conflicts with the recorded {T}flight_booked",
        ),
        (
            ["flight_booked", "hotel_booked", "car_rental_failed"],
            "car_rented",
            f"conflicts with the recorded {T}car_rental_failed",
        ),
        (["flight_booked", "hotel_booked", "car_rental_failed"], "hotel_booked", "repeats"),
    ],
)
def test_an_event_that_does_not_fit_is_an_anomaly_row_in_the_sagas_log(setup, late, why):
    tracker = started()
    for kind in setup:
        tracker.ingest(event(kind))
    before = tracker.run()
    statuses_before = statuses(before)
    verdict = tracker.ingest(event(late, id=f"again-{late}", source="someone"))
    assert verdict is IngestVerdict.ANOMALY
    anomaly = tracker.log["B1"][-1]
    assert anomaly.event is E.EVENT_ANOMALY
    assert anomaly.actor == "event:/someone"
    assert anomaly.reason.startswith(f"{T}{late} again-{late}: ")
    assert why in anomaly.reason
    assert statuses(tracker.run()) == statuses_before


def test_an_undo_event_for_a_step_never_completed_is_unexpected_while_unwinding():
    tracker = refused_at_the_car()
    outcome = observing.apply_event(tracker.run(), event("car_rental_failed", id="x2"), at(4))
    assert outcome.verdict is IngestVerdict.ANOMALY
    assert "conflicts" in outcome.reason or "repeats" in outcome.reason


def test_the_very_event_a_step_recorded_is_a_duplicate_that_writes_nothing():
    tracker = started()
    tracker.ingest(event("flight_booked"))
    run = tracker.run()
    outcome = observing.apply_event(run, event("flight_booked"), at(1))
    assert outcome.verdict is IngestVerdict.DUPLICATE
    assert not run.has_pending()


def test_an_event_type_the_definition_does_not_declare_is_ignored():
    tracker = started()
    stranger = event("booking_started").__class__(source="/x", id="1", type="other.thing")
    outcome = observing.apply_event(tracker.run(), stranger, T0)
    assert outcome.verdict is IngestVerdict.IGNORED


def test_held_leftovers_of_an_ended_saga_become_anomalies_in_its_log():
    tracker = started()
    tracker.ingest(event("flight_booked"))
    run = tracker.run()
    run.abort(at(1), "ops", "wrong booking")
    tracker.commit("B1", run)
    # A rescue: the flight's compensation event is due; the driver sends it.
    assert tracker.run().status is SagaStatus.COMPENSATING
    applied = observing.feed_held(tracker.run(), [event("car_rented")], at(2))
    assert [o.verdict for _, o in applied] == [IngestVerdict.ANOMALY]


# --- missed windows ---------------------------------------------------------------------


def test_a_missed_window_flags_the_saga_for_an_operator_by_default():
    tracker = started()
    actions, _ = tracker.act(lambda run: run.next_actions(at(31)))
    run = tracker.run()
    assert actions == ()
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert run.step_status(FLIGHT) is StepStatus.FAILED
    assert run.saga.failed_step == "book_flight"
    assert "flagged for an operator" in run.saga.failure_reason
    assert tracker.events()[-2:] == [E.STEP_TIMED_OUT, E.SAGA_HALTED]
    assert rows(tracker, E.STEP_TIMED_OUT)[0].error == (
        f"no {T}flight_booked or {T}flight_booking_failed within 30s"
    )


def test_an_event_after_the_window_counts_and_the_flagged_saga_goes_on():
    tracker = started()
    tracker.act(lambda run: run.next_actions(at(31)))
    assert tracker.ingest(event("flight_booked"), at(40)) is IngestVerdict.RECORDED
    run = tracker.run()
    assert run.status is SagaStatus.RUNNING and not run.saga.needs_intervention
    assert statuses(run)[:2] == [StepStatus.COMPLETED, StepStatus.WAITING]
    assert rows(tracker, E.STEP_COMPLETED)[-1].reason.endswith("arrived after its window")


def test_a_refusal_after_the_window_unwinds_the_flagged_saga():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    tracker.act(lambda run: run.next_actions(at(40)))
    tracker.ingest(event("hotel_booking_failed"), at(50))
    run = tracker.run()
    assert run.status is SagaStatus.COMPENSATING and not run.saga.needs_intervention
    assert run.step_status(FLIGHT) is StepStatus.COMPENSATING


def test_an_event_that_comes_after_its_deadline_finds_the_step_timed_out_first():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(45))
    assert rows(tracker, E.STEP_TIMED_OUT)
    assert tracker.run().status is SagaStatus.RUNNING  # flagged, then resumed by the event


def test_a_missed_undo_window_flags_the_unwinding_saga():
    tracker = refused_at_the_car()
    tracker.act(lambda run: run.next_actions(at(40)))
    run = tracker.run()
    assert run.status is SagaStatus.FAILED and run.saga.needs_intervention
    assert run.step_status(HOTEL) is StepStatus.COMPENSATION_FAILED
    assert run.stuck_step() == HOTEL
    assert tracker.ingest(event("hotel_cancelled"), at(41)) is IngestVerdict.RECORDED
    run = tracker.run()
    assert run.status is SagaStatus.COMPENSATING
    assert statuses(run)[:2] == [StepStatus.COMPENSATING, StepStatus.COMPENSATED]


# --- operators ---------------------------------------------------------------------------


def test_retry_of_a_flagged_saga_waits_again_with_a_fresh_window():
    tracker = started()
    tracker.act(lambda run: run.next_actions(at(31)))
    tracker.act(lambda run: run.retry(at(100), "ops", "the flight service is back"))
    actions, _ = tracker.act(lambda run: run.next_actions(at(100)))
    run = tracker.run()
    assert actions == (AwaitCompletion(at(130)),)
    assert run.status is SagaStatus.RUNNING
    assert run.step_status(FLIGHT) is StepStatus.WAITING
    assert run.steps[FLIGHT].wait_deadline == at(130)
    assert run.saga.wake_time == at(130)


def test_resolve_of_a_flagged_step_marks_it_done_and_the_next_step_waits():
    tracker = started()
    tracker.act(lambda run: run.next_actions(at(31)))
    tracker.act(lambda run: run.resolve("book_flight", at(50), "ops", "booked by phone"))
    tracker.act(lambda run: run.next_actions(at(50)))
    run = tracker.run()
    assert statuses(run)[:2] == [StepStatus.COMPLETED, StepStatus.WAITING]
    assert run.steps[HOTEL].wait_deadline == at(80)


def test_retry_and_resolve_of_a_missed_undo_window():
    tracker = refused_at_the_car()
    tracker.act(lambda run: run.next_actions(at(40)))
    tracker.act(lambda run: run.retry(at(60), "ops", "hotel is back"))
    tracker.act(lambda run: run.next_actions(at(60)))
    run = tracker.run()
    assert run.step_status(HOTEL) is StepStatus.COMPENSATING
    assert run.steps[HOTEL].wait_deadline == at(90)
    tracker.act(lambda run: run.next_actions(at(95)))
    tracker.act(lambda run: run.resolve("book_hotel", at(96), "ops", "cancelled by phone"))
    tracker.act(lambda run: run.next_actions(at(96)))
    run = tracker.run()
    assert statuses(run)[:2] == [StepStatus.COMPENSATING, StepStatus.COMPENSATED]
    assert run.steps[FLIGHT].wait_deadline == at(126)


def test_abort_of_a_running_tracked_saga_is_a_rescue_from_where_it_stands():
    tracker = started()
    tracker.ingest(event("flight_booked", flight="LH1"), at(1))
    tracker.act(lambda run: run.abort(at(2), "ops", "customer called"))
    actions, commit = tracker.act(lambda run: run.next_actions(at(2)))
    # The hotel step was waiting: its outcome is unknown, so it is compensated too.
    assert actions == (SendCompensation(HOTEL),)
    assert [t.event for t in commit.transitions] == [E.COMPENSATION_STARTED]
    tracker.act(lambda run: run.compensation_succeeded(HOTEL, at(3)))
    actions, _ = tracker.act(lambda run: run.next_actions(at(3)))
    assert actions == (SendCompensation(FLIGHT, event=f"{T}cancel_flight"),)
    command = observing.compensation_command_event(tracker.run(), FLIGHT, at(3), "orch")
    assert command.id == "saga-B1:book_flight:compensate"
    assert command.type == f"{T}cancel_flight"
    assert command.data == {
        "saga_id": "saga-B1",
        "step": "book_flight",
        "correlation": "B1",
        "result": {"booking_id": "B1", "flight": "LH1"},
    }
    tracker.act(lambda run: observing.compensation_event_published(run, FLIGHT, at(4)))
    run = tracker.run()
    # It declares flight_cancelled: the rescue waits for the service to confirm.
    assert run.step_status(FLIGHT) is StepStatus.COMPENSATING
    assert run.steps[FLIGHT].wait_deadline == at(34)
    tracker.ingest(event("flight_cancelled"), at(5))
    assert tracker.run().status is SagaStatus.FAILED


# --- rescues (on_stuck COMPENSATE) -----------------------------------------------------


def test_a_missed_window_under_compensate_rescues_the_saga_through_the_write_ahead_path():
    tracker = started(RESCUED_TRAVEL)
    tracker.ingest(event("flight_booked"), at(1))
    tracker.ingest(event("hotel_booked"), at(2))
    actions, commit = tracker.act(lambda run: run.next_actions(at(70)))
    run = tracker.run()
    assert run.status is SagaStatus.COMPENSATING
    assert "rescued by the orchestrator" in run.saga.failure_reason
    # The car step has no way to be undone: passed over; the hotel gets its RPC.
    assert actions == (SendCompensation(HOTEL),)
    assert [t.event for t in commit.transitions] == [
        E.STEP_TIMED_OUT,
        E.SAGA_COMPENSATING,
        E.COMPENSATION_STARTED,
    ]
    assert run.saga.wake_time is None  # driven, not parked


def test_a_rescue_compensation_found_in_flight_after_a_restart_is_sent_again():
    tracker = started(RESCUED_TRAVEL)
    tracker.ingest(event("flight_booked"), at(1))
    first, _ = tracker.act(lambda run: run.next_actions(at(40)))  # sent, then a crash
    assert first == (SendCompensation(HOTEL),)
    actions, commit = tracker.act(lambda run: run.next_actions(at(50)))
    assert actions == (SendCompensation(HOTEL),)
    assert [t.event for t in commit.transitions] == [E.COMPENSATION_RETRY_SCHEDULED]


def test_an_undo_event_during_a_rescue_leaves_the_next_command_to_the_driver():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    tracker.ingest(event("hotel_booked"), at(2))
    tracker.act(lambda run: run.abort(at(3), "ops", "stop"))
    tracker.act(lambda run: run.next_actions(at(3)))  # CancelHotel sent
    tracker.ingest(event("hotel_cancelled"), at(4))  # the hotel unwound itself
    outcome = tracker.outcomes[-1]
    assert outcome.verdict is IngestVerdict.RECORDED and outcome.needs_driving
    run = tracker.run()
    assert run.step_status(HOTEL) is StepStatus.COMPENSATED
    assert run.step_status(FLIGHT) is StepStatus.COMPLETED  # not started: write-ahead
    actions, _ = tracker.act(lambda run: run.next_actions(at(5)))
    assert actions == (SendCompensation(FLIGHT, event=f"{T}cancel_flight"),)


def test_a_missed_undo_window_under_compensate_sends_the_steps_own_compensation():
    tracker = refused_at_the_car(RESCUED_TRAVEL)
    actions, commit = tracker.act(lambda run: run.next_actions(at(40)))
    assert actions == (SendCompensation(HOTEL),)
    assert [t.event for t in commit.transitions] == [
        E.STEP_TIMED_OUT,
        E.COMPENSATION_STARTED,
    ]
    assert "rescued by the orchestrator" in tracker.run().saga.failure_reason


def test_abort_of_a_flagged_saga_rescues_it_from_the_stuck_step():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    tracker.act(lambda run: run.next_actions(at(40)))  # the hotel's window passed: flagged
    _, commit = tracker.act(lambda run: run.abort(at(50), "ops", "hotel service is down"))
    assert [t.event for t in commit.transitions] == [E.SAGA_ABORTED]
    run = tracker.run()
    assert run.status is SagaStatus.COMPENSATING and not run.saga.needs_intervention
    actions, _ = tracker.act(lambda run: run.next_actions(at(50)))
    assert actions == (SendCompensation(HOTEL),)  # its outcome is unknown: undone too
    tracker.act(lambda run: run.compensation_succeeded(HOTEL, at(51)))
    actions, _ = tracker.act(lambda run: run.next_actions(at(51)))
    assert actions == (SendCompensation(FLIGHT, event=f"{T}cancel_flight"),)


def test_abort_of_a_saga_unwinding_through_events_sends_what_it_can_itself():
    tracker = refused_at_the_car()
    tracker.act(lambda run: run.abort(at(10), "ops", "hotel never answers"))
    actions, commit = tracker.act(lambda run: run.next_actions(at(10)))
    assert actions == (SendCompensation(HOTEL),)
    assert [t.event for t in commit.transitions] == [E.COMPENSATION_STARTED]
    assert "rescued by the orchestrator" in tracker.run().saga.failure_reason


def test_a_finished_tracked_saga_cannot_be_aborted():
    tracker = started()
    tracker.ingest(event("flight_booking_failed"))
    with pytest.raises(IllegalTransition, match="can be aborted while it runs"):
        tracker.run().abort(at(1), "ops", "late")


def test_abort_of_a_flagged_unwinding_saga_sends_the_stuck_steps_compensation():
    tracker = refused_at_the_car()
    tracker.act(lambda run: run.next_actions(at(40)))  # the hotel's undo window passed
    tracker.act(lambda run: run.abort(at(41), "ops", "cancel it ourselves"))
    actions, _ = tracker.act(lambda run: run.next_actions(at(41)))
    assert actions == (SendCompensation(HOTEL),)


def test_an_undo_event_before_a_rescue_reaches_its_waiting_step_is_held_until_then():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    tracker.act(lambda run: run.abort(at(2), "ops", "stop"))  # book_hotel still WAITING
    assert tracker.ingest(event("hotel_cancelled"), at(3)) is IngestVerdict.HELD
    actions, _ = tracker.act(lambda run: run.next_actions(at(4)))
    assert actions == (SendCompensation(HOTEL),)
    applied = observing.feed_held(tracker.run(), tracker.held["B1"], at(5))
    assert [o.verdict for _, o in applied] == [IngestVerdict.RECORDED]
    assert tracker.run().step_status(HOTEL) is StepStatus.COMPENSATED


def test_a_flagged_saga_names_a_repeat_of_a_recorded_event_as_such():
    tracker = started()
    tracker.ingest(event("flight_booked"), at(1))
    tracker.act(lambda run: run.next_actions(at(40)))
    tracker.ingest(event("flight_booked", id="resent"), at(41))
    assert tracker.log["B1"][-1].reason.endswith(
        "repeats the recorded " + f"{T}flight_booked (a different event id)"
    )


def test_startsaga_may_not_take_an_idempotency_key_reserved_for_tracked_instances():
    from orchestrator.core.errors import InvalidArgument
    from orchestrator.core.opening import SagaStart
    from orchestrator.examples.travel_booking import TRAVEL_BOOKING

    with pytest.raises(InvalidArgument, match="reserved for tracked sagas"):
        SagaStart(TRAVEL_BOOKING, "c-1", {}, "tracked:travel_choreography:B1")


def test_only_participants_some_step_calls_need_an_address():
    """Observed steps are never called; a rescue's Call compensation is."""
    from orchestrator.core.registry import Registry
    from orchestrator.examples.travel_booking import TRAVEL_BOOKING
    from tests.support.tracked_sagas import tracked_travel

    assert Registry([tracked_travel()]).called_participants == {"hotel"}
    assert Registry([TRAVEL_BOOKING]).called_participants == TRAVEL_BOOKING.participants
