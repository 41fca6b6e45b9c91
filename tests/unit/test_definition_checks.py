"""Load-time checks of saga definitions: one test per rule, each error names the step;
and loading definitions from the user's own modules.

The definitions here are built from the example participants' protos but with
their own builders, so they do not change when the example sagas do.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import any_pb2

from orchestrator.cli import definition_modules
from orchestrator.core.definition import Call, Parallel, SagaDefinition, Step, StepContext
from orchestrator.core.errors import ConfigurationError, DefinitionError
from orchestrator.core.loading import load_definitions
from orchestrator.core.records import SagaRecord, SagaStatus, StepRecord, StepStatus
from orchestrator.core.registry import Registry
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.participants.car_rental.v1 import car_rental_pb2 as car
from saga.participants.flight.v1 import flight_pb2 as flight
from saga.participants.hotel.v1 import hotel_pb2 as hotel
from saga.participants.payment.v1 import payment_pb2 as payment

pytestmark = pytest.mark.unit

FLIGHT = "saga.participants.flight.v1.FlightService"
HOTEL = "saga.participants.hotel.v1.HotelService"
CAR = "saga.participants.car_rental.v1.CarRentalService"
PAYMENT = "saga.participants.payment.v1.PaymentService"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def trip(ctx: StepContext) -> TravelBookingInput:
    assert isinstance(ctx.input, TravelBookingInput)
    return ctx.input


def book_flight(ctx: StepContext) -> flight.BookFlightRequest:
    return flight.BookFlightRequest(flight_number=trip(ctx).flight_number)


def cancel_flight(ctx: StepContext) -> flight.CancelFlightRequest:
    assert isinstance(ctx.result, flight.BookFlightResponse)
    return flight.CancelFlightRequest(booking_id=ctx.result.booking_id)


def book_hotel(ctx: StepContext) -> hotel.BookHotelRequest:
    return hotel.BookHotelRequest(hotel_id=trip(ctx).hotel_id)


def cancel_hotel(ctx: StepContext) -> hotel.CancelHotelRequest:
    return hotel.CancelHotelRequest()


def rent_car(ctx: StepContext) -> car.RentCarRequest:
    return car.RentCarRequest(location=trip(ctx).car_location)


def cancel_car(ctx: StepContext) -> car.CancelCarRentalRequest:
    return car.CancelCarRentalRequest()


def charge(ctx: StepContext) -> payment.ChargePaymentRequest:
    return payment.ChargePaymentRequest(customer_id=trip(ctx).customer_id)


def refund(ctx: StepContext) -> payment.RefundPaymentRequest:
    return payment.RefundPaymentRequest()


def flight_step(name: str = "book_flight", **changes: Any) -> Step:
    base = Step(
        name,
        participant="flight",
        action=Call(FLIGHT, "BookFlight", book_flight),
        compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
    )
    return dataclasses.replace(base, **changes)


def hotel_step(name: str = "book_hotel", **changes: Any) -> Step:
    base = Step(
        name,
        participant="hotel",
        action=Call(HOTEL, "BookHotel", book_hotel),
        compensation=Call(HOTEL, "CancelHotel", cancel_hotel),
    )
    return dataclasses.replace(base, **changes)


def car_step(name: str = "rent_car", **changes: Any) -> Step:
    base = Step(
        name,
        participant="car_rental",
        action=Call(CAR, "RentCar", rent_car),
        compensation=Call(CAR, "CancelCarRental", cancel_car),
    )
    return dataclasses.replace(base, **changes)


def charge_step(name: str = "charge_payment", **changes: Any) -> Step:
    base = Step(
        name,
        participant="payment",
        action=Call(PAYMENT, "ChargePayment", charge),
        compensation=Call(PAYMENT, "RefundPayment", refund),
    )
    return dataclasses.replace(base, **changes)


def saga(*stages: Step | Parallel, **changes: Any) -> SagaDefinition:
    definition = SagaDefinition(
        name="trip", version=1, input_type=TravelBookingInput, steps=tuple(stages)
    )
    return dataclasses.replace(definition, **changes) if changes else definition


def refused(definition: SagaDefinition, words: str) -> str:
    """Load the definition, expect a DefinitionError containing `words`; its message."""
    with pytest.raises(DefinitionError) as raised:
        Registry([definition])
    message = str(raised.value)
    assert words in message
    assert "saga type 'trip' v1" in message
    return message


def reads(step_name: str) -> Any:
    """An action builder for a flight booking that reads another step's result."""

    def build(ctx: StepContext) -> flight.BookFlightRequest:
        ctx.result_of(step_name)
        return flight.BookFlightRequest()

    return build


# --- a well-formed definition ------------------------------------------------------------


def test_a_parallel_definition_reading_only_earlier_results_loads():
    def charge_builder(ctx: StepContext) -> payment.ChargePaymentRequest:
        ctx.result_of("book_flight")
        ctx.result_of("book_hotel")
        return payment.ChargePaymentRequest()

    definition = saga(
        Parallel("bookings", (flight_step(), hotel_step(), car_step())),
        charge_step(action=Call(PAYMENT, "ChargePayment", charge_builder)),
    )
    registry = Registry([definition])
    assert registry.has("trip", 1)
    assert [s.name for s in registry.latest("trip").all_steps] == [
        "book_flight",
        "book_hotel",
        "rent_car",
        "charge_payment",
    ]


def test_an_irreversible_step_alone_in_the_last_stage_loads():
    Registry([saga(flight_step(), charge_step(compensation=None))])
    Registry([saga(flight_step(), Parallel("last", (charge_step(compensation=None),)))])


# --- calls that do not exist ---------------------------------------------------------------


def test_an_unknown_service_is_refused():
    message = refused(
        saga(flight_step(action=Call("no.such.v1.Service", "Book", book_flight))),
        "unknown service 'no.such.v1.Service'",
    )
    assert "step 'book_flight'" in message


def test_an_unknown_method_is_refused_with_the_methods_that_exist():
    message = refused(
        saga(flight_step(compensation=Call(FLIGHT, "Unbook", cancel_flight))),
        "has no method 'Unbook'",
    )
    assert "BookFlight, CancelFlight" in message


def test_a_request_without_a_command_context_is_refused():
    refused(
        saga(flight_step(action=Call(FLIGHT, "GetFlightInventory", book_flight))),
        "needs a field `saga.participants.common.v1.CommandContext context`",
    )


# --- names ---------------------------------------------------------------------------------


def test_a_step_name_repeated_in_two_stages_is_refused():
    refused(saga(flight_step(), hotel_step("book_flight")), "step name 'book_flight'")


def test_a_step_name_repeated_inside_a_parallel_group_is_refused():
    refused(
        saga(Parallel("bookings", (flight_step(), hotel_step("book_flight")))),
        "step name 'book_flight' is empty or repeated",
    )


def test_a_group_member_repeating_a_lone_step_name_is_refused():
    refused(
        saga(flight_step(), Parallel("bookings", (hotel_step(), car_step("book_flight")))),
        "step name 'book_flight'",
    )


def test_a_group_named_like_a_step_is_refused():
    refused(
        saga(flight_step(), Parallel("book_flight", (hotel_step(), car_step()))),
        "parallel group name 'book_flight'",
    )


def test_an_empty_step_name_is_refused():
    refused(saga(flight_step("")), "step name '' is empty")


# --- shape ---------------------------------------------------------------------------------


def test_an_empty_parallel_group_is_refused():
    refused(saga(flight_step(), Parallel("nothing", ())), "parallel group 'nothing' has no steps")


def test_a_parallel_group_inside_a_group_is_refused():
    inner = Parallel("inner", (hotel_step(),))
    refused(
        saga(Parallel("outer", (flight_step(), inner))),  # type: ignore[arg-type]
        "groups do not nest",
    )


def test_a_saga_without_steps_is_refused():
    refused(saga(), "at least one step")


def test_a_version_below_one_is_refused():
    with pytest.raises(DefinitionError, match="version must be 1 or more"):
        Registry([saga(flight_step(), version=0)])


def test_a_non_positive_timeout_is_refused():
    message = refused(saga(flight_step(timeout=0)), "timeout must be positive")
    assert "step 'book_flight'" in message


def test_a_step_without_a_participant_is_refused():
    refused(saga(flight_step(participant="")), "no participant named")


# --- compensation where one is needed: the pivot -------------------------------------------


def test_a_non_retriable_step_after_an_irreversible_one_is_refused():
    message = refused(
        saga(flight_step(compensation=None), hotel_step(retriable=True), charge_step()),
        "it runs after step 'book_flight', which has no compensation, so it must be retriable=True",
    )
    assert "step 'charge_payment'" in message


def test_a_non_retriable_member_of_a_group_after_the_pivot_is_refused():
    message = refused(
        saga(
            flight_step(compensation=None),
            Parallel("after", (hotel_step(retriable=True), charge_step())),
        ),
        "must be retriable=True",
    )
    assert "step 'charge_payment'" in message


def test_an_irreversible_member_beside_a_non_retriable_sibling_is_refused():
    message = refused(
        saga(flight_step(), Parallel("last", (hotel_step(), charge_step(compensation=None)))),
        "its siblings in parallel group 'last' must be retriable=True, but 'book_hotel' is not",
    )
    assert "step 'charge_payment'" in message


def test_an_irreversible_member_of_an_earlier_group_needs_retriable_siblings_and_followers():
    refused(
        saga(Parallel("bookings", (flight_step(), hotel_step(compensation=None))), charge_step()),
        "but 'book_flight' is not",
    )
    Registry(
        [
            saga(
                Parallel("bookings", (flight_step(retriable=True), hotel_step(compensation=None))),
                charge_step(retriable=True, compensation=None),
            )
        ]
    )


def test_a_pivot_followed_only_by_retriable_steps_loads():
    definition = saga(
        flight_step(),
        hotel_step(compensation=None),
        Parallel("after", (car_step(retriable=True), charge_step(retriable=True))),
    )
    assert Registry([definition]).has("trip", 1)


# --- read-only steps: no compensation, and no pivot -----------------------------------------


def test_steps_after_a_read_only_step_need_not_be_retriable():
    definition = saga(
        flight_step(compensation=None, read_only=True),
        hotel_step(),
        Parallel("then", (car_step(), charge_step(compensation=None, read_only=True))),
        charge_step("charge_again"),
    )
    registry = Registry([definition])
    assert registry.has("trip", 1)
    assert definition.pivot_stage is None


def test_the_pivot_check_names_read_only_as_the_way_out_for_a_step_that_changes_nothing():
    message = refused(
        saga(flight_step(compensation=None), hotel_step()),
        "if 'book_flight' changes nothing, declare it read_only=True instead",
    )
    assert "step 'book_hotel'" in message


def test_a_read_only_step_with_a_compensation_is_refused():
    message = refused(
        saga(flight_step(read_only=True), hotel_step()),
        "it is read_only, so it has nothing to undo; drop its compensation "
        "(saga.participants.flight.v1.FlightService.CancelFlight)",
    )
    assert "step 'book_flight'" in message


def test_a_real_pivot_after_a_read_only_step_keeps_every_pivot_check():
    refused(
        saga(
            flight_step(compensation=None, read_only=True),
            hotel_step(compensation=None),
            car_step(),
        ),
        "it runs after step 'book_hotel', which has no compensation",
    )
    refused(
        saga(
            hotel_step(compensation=None),
            flight_step(compensation=None, read_only=True),
        ),
        "it runs after step 'book_hotel', which has no compensation",
    )
    refused(
        saga(
            Parallel(
                "g", (hotel_step(compensation=None), flight_step(compensation=None, read_only=True))
            )
        ),
        "its siblings in parallel group 'g' must be retriable=True, but 'book_flight' is not",
    )


# --- builders, dry-run on default messages -----------------------------------------------------


def test_a_request_builder_returning_the_wrong_message_is_refused():
    message = refused(
        saga(flight_step(action=Call(FLIGHT, "BookFlight", book_hotel))),
        "the request builder returned BookHotelRequest, but "
        "saga.participants.flight.v1.FlightService.BookFlight takes "
        "saga.participants.flight.v1.BookFlightRequest",
    )
    assert "step 'book_flight'" in message


def test_a_compensation_builder_returning_the_wrong_message_is_refused():
    refused(
        saga(flight_step(compensation=Call(FLIGHT, "CancelFlight", book_flight))),
        "the compensation builder returned BookFlightRequest",
    )


def test_a_builder_returning_nothing_is_refused():
    refused(
        saga(flight_step(action=Call(FLIGHT, "BookFlight", lambda ctx: None))),  # type: ignore[arg-type, return-value]
        "the request builder returned None",
    )


def test_a_builder_reading_a_later_step_is_refused():
    message = refused(
        saga(
            flight_step(action=Call(FLIGHT, "BookFlight", reads("charge_payment"))), charge_step()
        ),
        "reads the result of step 'charge_payment', which does not run before it",
    )
    assert "step 'book_flight'" in message


def test_a_builder_reading_a_sibling_in_its_parallel_group_is_refused():
    refused(
        saga(
            Parallel(
                "bookings",
                (flight_step(action=Call(FLIGHT, "BookFlight", reads("book_hotel"))), hotel_step()),
            ),
            charge_step(),
        ),
        "reads the result of step 'book_hotel', which does not run before it",
    )


def test_an_action_builder_reading_its_own_result_is_refused():
    refused(
        saga(flight_step(action=Call(FLIGHT, "BookFlight", reads("book_flight")))),
        "reads the result of step 'book_flight', which does not run before it",
    )


def test_a_builder_reading_a_step_that_does_not_exist_is_refused():
    refused(
        saga(flight_step(action=Call(FLIGHT, "BookFlight", reads("book_train")))),
        "reads the result of step 'book_train', which does not exist",
    )


def test_a_builder_indexing_results_directly_is_checked_too():
    def build(ctx: StepContext) -> flight.BookFlightRequest:
        return flight.BookFlightRequest(flight_number=str(ctx.results["charge_payment"]))

    refused(
        saga(flight_step(action=Call(FLIGHT, "BookFlight", build)), charge_step()),
        "reads the result of step 'charge_payment'",
    )


def test_a_compensation_builder_reading_a_later_step_is_refused():
    def cancel(ctx: StepContext) -> flight.CancelFlightRequest:
        ctx.result_of("charge_payment")
        return flight.CancelFlightRequest()

    message = refused(
        saga(flight_step(compensation=Call(FLIGHT, "CancelFlight", cancel)), charge_step()),
        "the compensation builder reads the result of step 'charge_payment'",
    )
    assert "step 'book_flight'" in message


def test_a_compensation_builder_reading_its_own_result_from_results_is_told_to_use_result():
    def cancel(ctx: StepContext) -> flight.CancelFlightRequest:
        ctx.result_of("book_flight")
        return flight.CancelFlightRequest()

    refused(
        saga(flight_step(compensation=Call(FLIGHT, "CancelFlight", cancel))),
        "use ctx.result",
    )


def test_a_compensation_builder_gets_its_own_actions_default_reply():
    seen: list[object] = []

    def cancel(ctx: StepContext) -> flight.CancelFlightRequest:
        seen.append(ctx.result)
        return flight.CancelFlightRequest()

    Registry([saga(flight_step(compensation=Call(FLIGHT, "CancelFlight", cancel)))])
    assert seen == [flight.BookFlightResponse()]


@pytest.mark.parametrize(
    "error", [AssertionError("no"), ValueError("empty flight"), KeyError("own lookup")]
)
def test_a_builder_refusing_default_values_does_not_stop_the_load(error):
    def build(ctx: StepContext) -> flight.BookFlightRequest:
        raise error

    Registry([saga(flight_step(action=Call(FLIGHT, "BookFlight", build)))])


def test_a_builder_asking_whether_a_later_result_exists_is_allowed():
    def build(ctx: StepContext) -> flight.BookFlightRequest:
        assert "charge_payment" not in ctx.results
        assert ctx.results.get("charge_payment") is None
        return flight.BookFlightRequest()

    Registry([saga(flight_step(action=Call(FLIGHT, "BookFlight", build)), charge_step())])


# --- loading the user's definitions modules ----------------------------------------------------

HEADER = """
from orchestrator.core.definition import SagaDefinition
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tests.unit.test_definition_checks import flight_step, hotel_step

ONE = SagaDefinition(name="one", version=1, input_type=TravelBookingInput, steps=(flight_step(),))
TWO = SagaDefinition(name="two", version=1, input_type=TravelBookingInput, steps=(hotel_step(),))
"""


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write a module under a name no other test uses, importable from tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    counter = iter(range(1000))

    def write(source: str) -> str:
        name = f"user_sagas_{tmp_path.name}_{next(counter)}".replace("-", "_")
        (tmp_path / f"{name}.py").write_text(source)
        return name

    return write


def test_a_modules_definitions_attribute_is_what_it_offers(write_module):
    name = write_module(HEADER + "DEFINITIONS = (TWO,)\n")
    assert [d.name for d in load_definitions([name])] == ["two"]


def test_without_a_definitions_attribute_every_module_level_definition_is_offered(write_module):
    name = write_module(HEADER + "ALIAS = ONE\n")
    assert [d.name for d in load_definitions([name])] == ["one", "two"]


def test_the_same_definition_from_two_modules_is_loaded_once(write_module):
    first = write_module(HEADER)
    second = write_module(f"from {first} import ONE\nDEFINITIONS = [ONE]\n")
    assert [d.name for d in load_definitions([first, second])] == ["one", "two"]


def test_a_module_without_definitions_is_refused(write_module):
    name = write_module("X = 1\n")
    with pytest.raises(ConfigurationError, match=f"{name}' holds no saga definitions"):
        load_definitions([name])


def test_a_definitions_attribute_holding_something_else_is_refused(write_module):
    name = write_module(HEADER + "DEFINITIONS = (ONE, 'two')\n")
    with pytest.raises(ConfigurationError, match="holds a str, not a SagaDefinition"):
        load_definitions([name])


def test_a_module_that_does_not_exist_is_named():
    with pytest.raises(ConfigurationError, match="no module named 'no_such_user_sagas'"):
        load_definitions(["no_such_user_sagas.sagas"])


def test_a_module_whose_own_import_fails_names_what_it_lacks(write_module):
    name = write_module("import no_such_dependency_of_sagas\n")
    with pytest.raises(ConfigurationError) as raised:
        load_definitions([name])
    assert f"cannot import definitions module {name!r}" in str(raised.value)
    assert "No module named 'no_such_dependency_of_sagas'" in str(raised.value)


def test_a_module_raising_on_import_says_what_and_where(write_module):
    name = write_module("x = 1\nraise RuntimeError('bad config')\n")
    with pytest.raises(ConfigurationError) as raised:
        load_definitions([name])
    assert "RuntimeError: bad config" in str(raised.value)
    assert f"{name}.py, line 2" in str(raised.value)


def test_a_module_with_a_syntax_error_says_where(write_module):
    name = write_module("def broken(:\n")
    with pytest.raises(ConfigurationError, match=rf"SyntaxError: .*{name}\.py, line 1"):
        load_definitions([name])


def test_definitions_flags_win_over_the_environment_and_the_default(monkeypatch):
    monkeypatch.delenv("SAGA_DEFINITIONS", raising=False)
    assert definition_modules([]) == ["orchestrator.examples"]
    monkeypatch.setenv("SAGA_DEFINITIONS", "a.sagas, b.sagas")
    assert definition_modules([]) == ["a.sagas", "b.sagas"]
    assert definition_modules(["c.sagas", "d.sagas,e.sagas"]) == ["c.sagas", "d.sagas", "e.sagas"]


# --- the output a completed saga returns ---------------------------------------------------


def flight_summary(ctx: StepContext) -> TravelBookingOutput:
    booked = ctx.result_of("book_flight")
    assert isinstance(booked, flight.BookFlightResponse)
    return TravelBookingOutput(booking_id=booked.booking_id)


def test_an_output_builder_reading_the_replies_loads_and_builds_from_stored_replies():
    definition = saga(flight_step(), output_type=TravelBookingOutput, output=flight_summary)
    registry = Registry([definition])
    record = SagaRecord(
        saga_id="s-1",
        saga_type="trip",
        definition_version=1,
        correlation_id="c-1",
        payload={},
        status=SagaStatus.COMPLETED,
        create_time=NOW,
        update_time=NOW,
    )
    reply = flight.BookFlightResponse(booking_id="FL-1").SerializeToString()
    steps = [StepRecord("s-1", 0, "book_flight", StepStatus.COMPLETED, result=reply)]
    packed = any_pb2.Any.FromString(registry.build_output(definition, record, steps) or b"")
    output = TravelBookingOutput()
    assert packed.Unpack(output) and output.booking_id == "FL-1"


def test_an_output_type_without_a_builder_is_refused():
    refused(saga(flight_step(), output_type=TravelBookingOutput), "go together")


def test_an_output_builder_returning_another_message_is_refused():
    refused(
        saga(flight_step(), output_type=TravelBookingOutput, output=book_flight),
        "the output builder returned BookFlightRequest, but output_type is "
        "saga.examples.v1.TravelBookingOutput",
    )


def test_an_output_builder_reading_a_step_that_does_not_exist_is_refused():
    refused(
        saga(flight_step(), output_type=TravelBookingOutput, output=reads("book_hotel")),
        "the output builder reads the result of step 'book_hotel', which does not exist",
    )
