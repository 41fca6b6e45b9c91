"""`saga describe` and the catalogue show a tracked type: what starts it, how events are
correlated, per step the events that complete, fail and undo it, its window, what a
rescue sends, and what a stuck instance leads to."""

from __future__ import annotations

import pytest

from orchestrator.api import catalogue
from orchestrator.api.conversion import transition_to_proto
from orchestrator.cli.diagrams import describe_dot, describe_mermaid, describe_text
from orchestrator.cli.rendering.sagas import transition_line
from orchestrator.core.records import TransitionEvent
from saga.v1 import orchestrator_pb2 as pb
from tests.support.async_sagas import ASYNC_TRIP
from tests.unit.tracked_travel import RESCUED_TRAVEL, TRAVEL, T, Tracker, event

pytestmark = pytest.mark.unit


def test_the_catalogue_entry_carries_the_tracking_and_each_observed_step():
    message = catalogue.definition_to_proto(RESCUED_TRAVEL)
    assert list(message.tracking.started_by) == [f"{T}booking_started"]
    assert message.tracking.correlation == "data.booking_id"
    assert message.tracking.on_stuck == "compensate"
    flight, hotel, car = message.steps
    assert flight.action == ""
    assert list(flight.observed.completes_on) == [f"{T}flight_booked"]
    assert list(flight.observed.fails_on) == [f"{T}flight_booking_failed"]
    assert list(flight.observed.compensated_on) == [f"{T}flight_cancelled"]
    assert flight.observed.within_seconds == 30.0
    assert flight.observed.compensation_event == f"{T}cancel_flight"
    assert flight.escalation_seconds == 30.0
    assert hotel.compensation == "saga.participants.hotel.v1.HotelService.CancelHotel"
    assert car.observed.within_seconds == 60.0 and not car.HasField("compensation")


def test_the_json_document_has_tracking_and_observed_and_null_for_orchestrated_types():
    document = catalogue.definition_document(catalogue.definition_to_proto(TRAVEL))
    assert document["tracking"]["on_stuck"] == "needs_intervention"
    assert document["steps"][0]["observed"]["compensation_event"] == f"{T}cancel_flight"
    assert document["steps"][0]["completion"] is None
    plain = catalogue.definition_document(catalogue.definition_to_proto(ASYNC_TRIP))
    assert plain["tracking"] is None
    assert all(step["observed"] is None for step in plain["steps"])


def test_describe_text_reads_the_same_from_the_definition_and_from_a_servers_catalogue():
    local = describe_text(RESCUED_TRAVEL)
    remote = catalogue.describe_text(catalogue.definition_to_proto(RESCUED_TRAVEL))
    assert local == remote
    assert local.startswith("travel_choreography v1 (tracked): Flight, hotel and car")
    assert f"started by:  {T}booking_started\n" in local
    assert "correlation: data.booking_id\n" in local
    assert "on stuck:    compensate: the orchestrator rescues the saga" in local
    assert (
        "2. book_hotel (observed)\n"
        "   participant:  hotel\n"
        f"   completes on: {T}hotel_booked\n"
        f"   fails on:     {T}hotel_booking_failed\n"
        "   within:       30s of the previous step's event\n"
        f"   undone on:    {T}hotel_cancelled\n"
        "   compensation: in a rescue, call saga.participants.hotel.v1.HotelService.CancelHotel\n"
        "   on stuck:     no event within the window: rescue\n"
    ) in local
    assert f"compensation: in a rescue, publish {T}cancel_flight\n" in local
    assert "undone on:    none (not observed)\n   compensation: none\n" in local


def test_diagrams_draw_observed_steps_and_what_undoes_them():
    mermaid = describe_mermaid(TRAVEL)
    assert (
        's0["book_flight<br/>flight: on flight_booked<br/>fails on flight_booking_failed' in mermaid
    )
    assert 'c1["undo book_hotel<br/>on hotel_cancelled / rescue: HotelService.CancelHotel"]' in (
        mermaid
    )
    assert 'c0["undo book_flight<br/>on flight_cancelled / rescue: publish cancel_flight"]' in (
        mermaid
    )
    assert "undo rent_car" not in mermaid
    dot = describe_dot(TRAVEL)
    assert "within 60s" in dot and "s1 -> c1" in dot


def test_an_anomaly_row_reaches_the_api_and_the_cli_history_with_its_reason():

    tracker = Tracker()
    tracker.ingest(event("booking_started"))
    tracker.ingest(event("hotel_booked"))
    (row,) = [r for r in tracker.log["B1"] if r.event is TransitionEvent.EVENT_ANOMALY]
    message = transition_to_proto(row)
    assert message.event == pb.TRANSITION_EVENT_EVENT_ANOMALY
    line = transition_line(message)
    assert line.startswith("#3 ") and " EVENT_ANOMALY step=book_hotel " in line
    assert "actor=event:/hotel" in line
    assert "early: held until book_hotel is expected" in line
