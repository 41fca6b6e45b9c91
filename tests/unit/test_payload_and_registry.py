"""Input conversion rules and definition checks, without a server."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.definition import Call, Step
from orchestrator.errors import DefinitionError, InvalidPayload, UnknownSagaType
from orchestrator.examples import DEFINITIONS, ORDER_FULFILLMENT, TRAVEL_BOOKING
from orchestrator.payload import parse_input
from orchestrator.registry import Registry
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput, TravelBookingInput
from tests.e2e.payloads import order, travel

pytestmark = pytest.mark.unit


def test_valid_payload_converts_with_optional_fields_left_out():
    trip = parse_input(TravelBookingInput, travel(), TRAVEL_BOOKING.check_input)
    assert trip.flight_number == "LH400" and not trip.HasField("seats")


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({**travel(), "extra": 1}, "extra"),
        ({k: v for k, v in travel().items() if k != "hotel_id"}, "hotel_id"),
        ({**travel(), "amount": {"currency_code": "EUR"}}, "amount.amount_minor"),
        ({**travel(), "seats": -1}, "seats must be positive"),
        ({**travel(), "amount": {"currency_code": "EUR", "amount_minor": 0}}, "amount_minor"),
    ],
)
def test_payload_faults_name_the_field(payload, words):
    with pytest.raises(InvalidPayload, match=words):
        parse_input(TravelBookingInput, payload, TRAVEL_BOOKING.check_input)


def test_repeated_nested_required_fields_are_checked_per_item():
    payload = {**order(), "items": [{"sku": "sku-1", "quantity": 1}, {"sku": "sku-2"}]}
    with pytest.raises(InvalidPayload, match=r"items\[1\]\.quantity"):
        parse_input(OrderFulfillmentInput, payload, ORDER_FULFILLMENT.check_input)


def test_empty_repeated_required_field_is_missing():
    with pytest.raises(InvalidPayload, match="items"):
        parse_input(OrderFulfillmentInput, {**order(), "items": []})


def test_registry_serves_the_latest_version_and_keeps_older_ones():
    newer = dataclasses.replace(TRAVEL_BOOKING, version=2)
    registry = Registry([*DEFINITIONS, newer])
    assert registry.latest("travel_booking").version == 2
    assert registry.get("travel_booking", 1) is TRAVEL_BOOKING
    with pytest.raises(UnknownSagaType, match="registered: order_fulfillment, travel_booking"):
        registry.latest("nope")
    with pytest.raises(DefinitionError, match="v9"):
        registry.get("travel_booking", 9)


def replace_step(index: int, **changes) -> object:
    steps = list(TRAVEL_BOOKING.steps)
    steps[index] = dataclasses.replace(steps[index], **changes)
    return dataclasses.replace(TRAVEL_BOOKING, steps=tuple(steps))


FLIGHT = "saga.participants.flight.v1.FlightService"


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        (
            replace_step(0, action=Call("no.such.Service", "Book", lambda c: None)),
            "unknown service",
        ),
        (replace_step(0, action=Call(FLIGHT, "Fly", lambda c: None)), "has no method 'Fly'"),
        (
            replace_step(0, action=Call(FLIGHT, "GetFlightInventory", lambda c: None)),
            "needs a field",
        ),
        (replace_step(1, name="book_flight"), "repeated"),
        (replace_step(0, compensation=None), "only the last step may lack a compensation"),
        (replace_step(0, timeout=0), "timeout"),
        (dataclasses.replace(TRAVEL_BOOKING, steps=()), "at least one step"),
        (dataclasses.replace(TRAVEL_BOOKING, version=0), "version"),
    ],
)
def test_inconsistent_definitions_are_refused_at_load(definition, words):
    with pytest.raises(DefinitionError, match=words) as raised:
        Registry([definition])
    assert "travel_booking" in str(raised.value)


def test_a_definition_registered_twice_is_refused():
    with pytest.raises(DefinitionError, match="twice"):
        Registry([TRAVEL_BOOKING, TRAVEL_BOOKING])


def test_a_step_is_data_the_engine_walks():
    assert isinstance(TRAVEL_BOOKING.steps[0], Step)
    assert TRAVEL_BOOKING.participants == {"flight", "hotel", "car_rental", "payment"}
