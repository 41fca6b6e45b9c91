"""The choreographed services' rules and CloudEvents reading, without a broker: a cancel
before the booking leaves a tombstone, refusals say why, a repeat gets the same event,
and a message is read in structured or binary mode or refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from participants.choreography import events as ev
from participants.choreography.services import CAR_RENTAL, FLIGHT, HOTEL
from participants.choreography.state import ServiceState, read_bookings, read_inventory

pytestmark = pytest.mark.unit


def event(event_type: str, data: dict[str, object], source: str = "/test") -> ev.CloudEvent:
    return ev.new_event(source, event_type, data, str(data.get("booking_id", "")))


def state(tmp_path: Path, service=FLIGHT, capacity: int = 2, refuse=frozenset()) -> ServiceState:
    return ServiceState(tmp_path / f"{service.name}.sqlite3", service, capacity, refuse)


def test_a_cancel_before_the_booking_leaves_a_tombstone_the_booking_cannot_pass(tmp_path):
    hotel = state(tmp_path, HOTEL)
    cancelled = hotel.handle(event(ev.CANCEL_HOTEL, {"correlation": "b1", "result": {}}))
    assert cancelled.outcome is not None and cancelled.outcome.type == ev.HOTEL_CANCELLED
    assert cancelled.outcome.data["released"] == 0
    late = hotel.handle(event(ev.FLIGHT_BOOKED, {"booking_id": "b1", "hotel": "paris-opera"}))
    assert late.outcome is None
    assert read_inventory(tmp_path / "hotel.sqlite3")["paris-opera"] == 0
    assert read_bookings(tmp_path / "hotel.sqlite3")["b1"]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("data", "refuse", "reason"),
    [
        ({"car_class": "limousine"}, frozenset(), "no such car_class: limousine"),
        ({"car_class": "suv", "cars": 3}, frozenset(), "no cars left on suv"),
        ({"car_class": "suv", "cars": 0}, frozenset(), "cars must be a positive whole number"),
        ({}, frozenset(), "no car_class named"),
        ({"car_class": "suv", "driver": "blocked"}, frozenset({"blocked"}), "refused by the"),
    ],
)
def test_a_refusal_publishes_the_failure_with_its_reason_and_holds_nothing(
    tmp_path, data, refuse, reason
):
    car = state(tmp_path, CAR_RENTAL, refuse=refuse)
    handled = car.handle(event(ev.HOTEL_BOOKED, {"booking_id": "b1", **data}))
    assert handled.outcome is not None and handled.outcome.type == ev.CAR_RENTAL_FAILED
    assert str(handled.outcome.data["reason"]).startswith(reason)
    assert set(read_inventory(tmp_path / "car_rental.sqlite3").values()) == {0}


def test_a_redelivery_and_a_repeat_request_get_the_first_answer(tmp_path):
    flight = state(tmp_path)
    started = event(ev.BOOKING_STARTED, {"booking_id": "b1", "flight": "LH400", "seats": 2})
    first = flight.handle(started)
    again = flight.handle(started)
    repeat = flight.handle(event(ev.BOOKING_STARTED, {"booking_id": "b1", "flight": "LH400"}))
    assert first.outcome is not None and first.outcome.type == ev.FLIGHT_BOOKED
    assert (again.redelivered, repeat.redelivered) == (True, False)
    assert again.outcome == first.outcome == repeat.outcome
    assert read_inventory(tmp_path / "flight.sqlite3")["LH400"] == 2


def test_cancelling_releases_the_units_once(tmp_path):
    flight = state(tmp_path)
    flight.handle(event(ev.BOOKING_STARTED, {"booking_id": "b1", "flight": "LH400"}))
    first = flight.handle(event(ev.HOTEL_CANCELLED, {"booking_id": "b1"}))
    second = flight.handle(event(ev.CANCEL_FLIGHT, {"correlation": "b1"}))
    assert first.outcome is not None and first.outcome.data["released"] == 1
    assert second.outcome == first.outcome
    assert read_inventory(tmp_path / "flight.sqlite3")["LH400"] == 0


def test_a_binary_mode_message_reads_like_a_structured_one():
    original = event(ev.FLIGHT_BOOKED, {"booking_id": "b1", "hotel": "rome-termini"})
    structured = ev.parse_message(original.body(), ev.STRUCTURED, {})
    headers = {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": original.id,
        "cloudEvents:source": original.source,
        "cloudEvents:type": original.type,
        "cloudEvents:subject": original.subject,
        "cloudEvents:time": original.time,
    }
    binary = ev.parse_message(json.dumps(dict(original.data)).encode(), "application/json", headers)
    assert structured == binary == original


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "why"),
    [
        (b"not json", ev.STRUCTURED, {}, "structured body is not JSON"),
        (b'{"specversion": "1.0", "source": "/s", "type": "t"}', ev.STRUCTURED, {}, "'id'"),
        (
            b'{"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}',
            ev.STRUCTURED,
            {},
            "0.3",
        ),
        (b"{}", "application/json", {}, "neither structured"),
    ],
)
def test_a_message_that_is_not_a_cloudevent_is_refused_with_why(body, content_type, headers, why):
    with pytest.raises(ev.MalformedEvent, match=why):
        ev.parse_message(body, content_type, headers)
