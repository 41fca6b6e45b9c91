"""Input conversion rules, the registry's versions, and the unfinished-version check."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.core.definition import Step
from orchestrator.core.errors import DefinitionError, InvalidPayload, UnknownSagaType
from orchestrator.core.payload import parse_input
from orchestrator.core.registry import Registry, check_unfinished_versions
from orchestrator.examples import DEFINITIONS, ORDER_FULFILLMENT, TRAVEL_BOOKING
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput, TravelBookingInput
from tests.support.payloads import order, travel

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


def test_a_definition_registered_twice_is_refused():
    with pytest.raises(DefinitionError, match="twice"):
        Registry([TRAVEL_BOOKING, TRAVEL_BOOKING])


def test_a_step_is_data_the_engine_walks():
    assert all(isinstance(step, Step) for step in TRAVEL_BOOKING.all_steps)
    assert TRAVEL_BOOKING.participants == {"flight", "hotel", "car_rental", "payment"}


def test_unfinished_sagas_on_registered_versions_let_the_orchestrator_start():
    registry = Registry([*DEFINITIONS, dataclasses.replace(TRAVEL_BOOKING, version=2)])
    check_unfinished_versions({("travel_booking", 1): 3, ("travel_booking", 2): 1}, registry)
    check_unfinished_versions({}, registry)


def test_unfinished_sagas_on_a_missing_version_stop_the_start_naming_each_version():
    registry = Registry([dataclasses.replace(TRAVEL_BOOKING, version=2)])
    unfinished = {
        ("travel_booking", 1): 3,
        ("travel_booking", 2): 5,
        ("order_fulfillment", 1): 1,
    }
    with pytest.raises(DefinitionError) as raised:
        check_unfinished_versions(unfinished, registry)
    message = str(raised.value)
    assert "order_fulfillment v1 (1 saga)" in message
    assert "travel_booking v1 (3 sagas)" in message
    assert "travel_booking v2" not in message
