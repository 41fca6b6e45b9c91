"""What GetSaga, ListSagas and WatchSaga say of a tracked saga: it is marked tracked,
and its waiting step names the events it expects next (completing or failing it, or
undoing it while the saga unwinds), its participant and, as wait_deadline, by when."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.api.conversion import saga_to_proto
from orchestrator.core.records import SagaStatus
from tests.unit.tracked_travel import T0, TRAVEL, T, Tracker, event

pytestmark = pytest.mark.unit


def test_a_waiting_tracked_step_names_its_completing_and_failing_events_and_deadline():
    tracker = Tracker()
    tracker.ingest(event("booking_started"))
    run = tracker.run()
    saga = saga_to_proto(run.saga, run.steps, definition=TRAVEL)
    assert saga.tracked
    flight, hotel, car = saga.steps
    assert list(flight.expected_event_types) == [T + "flight_booked", T + "flight_booking_failed"]
    assert not flight.expecting_undo
    assert flight.participant == "flight"
    assert flight.wait_deadline.ToDatetime(tzinfo=T0.tzinfo) == T0 + timedelta(seconds=30)
    assert list(hotel.expected_event_types) == [] and list(car.expected_event_types) == []


def test_an_unwinding_tracked_step_expects_its_undo_events():
    tracker = Tracker()
    tracker.ingest(event("booking_started"))
    tracker.ingest(event("flight_booked"))
    tracker.ingest(event("hotel_booking_failed"))
    run = tracker.run()
    assert run.saga.status is SagaStatus.COMPENSATING
    flight = saga_to_proto(run.saga, run.steps, definition=TRAVEL).steps[0]
    assert list(flight.expected_event_types) == [T + "flight_cancelled"]
    assert flight.expecting_undo


def test_a_list_row_is_marked_tracked_without_its_definition():
    tracker = Tracker()
    tracker.ingest(event("booking_started"))
    listed = saga_to_proto(tracker.run().saga, [], with_payload=False, with_output=False)
    assert listed.tracked and not listed.steps
