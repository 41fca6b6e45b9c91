"""A saga's result through the API: typed input in, typed output out, and the catalogue."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2

from orchestrator.api.catalogue import definition_to_proto
from orchestrator.core.payload import parse_input
from orchestrator.examples import travel_booking
from orchestrator.examples.order_fulfillment import ORDER_FULFILLMENT
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput, TravelBookingInput
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.participants.flight.v1 import flight_pb2
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, wait_terminal
from tests.support.payloads import struct, travel

pytestmark = pytest.mark.e2e


def packed_trip(**changes: object) -> any_pb2.Any:
    trip = parse_input(TravelBookingInput, {**travel(), **changes})
    packed = any_pb2.Any()
    packed.Pack(trip)
    return packed


async def watched_end(stub: pb_grpc.SagaOrchestratorStub, saga_id: str) -> pb.WatchSagaResponse:
    """The last message of a WatchSaga stream."""
    last = None
    async for response in stub.WatchSaga(pb.WatchSagaRequest(saga_id=saga_id), timeout=30):
        last = response
    assert last is not None
    return last


@pytest.mark.parametrize("given", ["struct", "any"])
async def test_completed_saga_returns_its_typed_output(stub, given):
    request = pb.StartSagaRequest(saga_type="travel_booking", correlation_id=f"out-{given}")
    if given == "struct":
        request.payload.CopyFrom(struct(travel()))
    else:
        request.input.CopyFrom(packed_trip())
    started = await stub.StartSaga(request, timeout=10)
    saga = await wait_terminal(stub, started.saga_id)
    assert saga.status == pb.SAGA_STATUS_COMPLETED, saga.failure_reason
    output = TravelBookingOutput()
    assert saga.output.Unpack(output)
    booked = {step.name: step for step in saga.steps}
    flight = flight_pb2.BookFlightResponse()
    assert booked["book_flight"].reply.Unpack(flight)
    assert output.booking_id == flight.booking_id != ""
    assert output.reservation_id and output.rental_id and output.payment_id
    last = await watched_end(stub, started.saga_id)
    assert last.transition.event == pb.TRANSITION_EVENT_SAGA_COMPLETED
    assert last.saga.output == saga.output


async def test_failed_saga_carries_its_failure_and_no_output(stub):
    started = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking",
            correlation_id="out-failed",
            input=packed_trip(car_class=FAIL_CAR_CLASS),
        ),
        timeout=10,
    )
    saga = await wait_terminal(stub, started.saga_id)
    assert saga.status == pb.SAGA_STATUS_FAILED
    assert saga.failed_step == "rent_car" and saga.failure_reason
    assert not saga.HasField("output")
    last = await watched_end(stub, started.saga_id)
    assert last.saga.status == pb.SAGA_STATUS_FAILED
    assert last.saga.failed_step == "rent_car"


async def test_input_packed_as_another_message_is_refused_naming_the_expected_one(stub):
    wrong = any_pb2.Any()
    wrong.Pack(OrderFulfillmentInput(order_id="o-1"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartSaga(
            pb.StartSagaRequest(saga_type="travel_booking", correlation_id="c-1", input=wrong),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "saga.examples.v1.TravelBookingInput" in (raised.value.details() or "")
    assert "saga.examples.v1.OrderFulfillmentInput" in (raised.value.details() or "")


async def test_packed_input_missing_a_required_field_names_it_in_snake_case(stub):
    trip = parse_input(TravelBookingInput, travel())
    trip.ClearField("car_location")
    packed = any_pb2.Any()
    packed.Pack(trip)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartSaga(
            pb.StartSagaRequest(saga_type="travel_booking", correlation_id="c-2", input=packed),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "car_location" in (raised.value.details() or "")


async def test_unknown_payload_field_lists_the_fields_by_their_proto_names(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartSaga(
            pb.StartSagaRequest(
                saga_type="travel_booking",
                correlation_id="c-3",
                payload=struct({**travel(), "colour": "red"}),
            ),
            timeout=10,
        )
    details = raised.value.details() or ""
    assert "car_location" in details and "carLocation" not in details


async def test_catalogue_lists_every_registered_definition(stub):
    response = await stub.ListSagaTypes(pb.ListSagaTypesRequest(), timeout=10)
    by_type = {entry.saga_type: entry for entry in response.definitions}
    assert by_type["travel_booking"] == definition_to_proto(travel_booking.TRAVEL_BOOKING)
    assert by_type["order_fulfillment"] == definition_to_proto(ORDER_FULFILLMENT)
    assert by_type["travel_booking"].output == "saga.examples.v1.TravelBookingOutput"
    one = await stub.ListSagaTypes(pb.ListSagaTypesRequest(saga_type="order_fulfillment"))
    assert [entry.saga_type for entry in one.definitions] == ["order_fulfillment"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListSagaTypes(pb.ListSagaTypesRequest(saga_type="no_such_saga"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "travel_booking" in (raised.value.details() or "")
