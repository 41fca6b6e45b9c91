"""The benchmark saga, one definition of its data shared by all three systems.

Three steps on three participant services: book a flight, book a hotel, charge
the card. In the `compensation` variant the charge is over the participants'
limit, so the third step is rejected (FAILED_PRECONDITION) and the hotel and
the flight are cancelled, in that order. Every system sends the same typed
requests with the same idempotency keys (`{saga_id}:{step}`, and
`{saga_id}:{step}:compensate` for a compensation), so the participants do the
same work whichever system drives them.

Only protobuf and the generated stubs are imported: the DBOS driver runs this
in a virtualenv without the orchestrator.
"""

from __future__ import annotations

from typing import Any

from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.common.v1.command_pb2 import CommandContext, Money
from saga.participants.flight.v1 import flight_pb2
from saga.participants.hotel.v1 import hotel_pb2
from saga.participants.payment.v1 import payment_pb2

SAGA_TYPE = "bench_trip"
FLIGHT_SERVICE = "saga.participants.flight.v1.FlightService"
HOTEL_SERVICE = "saga.participants.hotel.v1.HotelService"
PAYMENT_SERVICE = "saga.participants.payment.v1.PaymentService"
STEPS = ("book_flight", "book_hotel", "charge_payment")
PARTICIPANTS = ("flight", "hotel", "payment")

VARIANTS = ("success", "compensation")
DECLINE_ABOVE_MINOR = 1_000_000
"""The participants decline a charge above this many minor units: the compensation variant."""

STEP_TIMEOUT_SECONDS = 5.0
"""The deadline of every command, as the orchestrator's default step timeout."""

TERMINAL_OK = "COMPLETED"
TERMINAL_FAILED = "FAILED"


def trip_payload(variant: str) -> dict[str, Any]:
    """The StartSaga payload (TravelBookingInput as JSON) of one variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    amount = 12_000 if variant == "success" else DECLINE_ABOVE_MINOR * 5
    return {
        "customer_id": "bench-customer",
        "traveller_name": "Ada Bench",
        "flight_number": "BX100",
        "hotel_id": "bench-hotel",
        "nights": 2,
        "car_location": "BER",
        "car_class": "compact",
        "car_days": 1,
        "amount": {"currency_code": "EUR", "amount_minor": amount},
    }


def trip_input(variant: str) -> TravelBookingInput:
    """The same payload as a typed message, for the systems that skip the JSON."""
    payload = trip_payload(variant)
    amount = payload.pop("amount")
    return TravelBookingInput(**payload, amount=Money(**amount))


def expected_status(variant: str) -> str:
    """The terminal status every saga of a variant must reach."""
    return TERMINAL_OK if variant == "success" else TERMINAL_FAILED


def command_context(saga_id: str, step: str, *, compensating: bool = False) -> CommandContext:
    """The context every command carries, keyed as the orchestrator keys it."""
    action_key = f"{saga_id}:{step}"
    return CommandContext(
        saga_id=saga_id,
        step=step,
        idempotency_key=f"{action_key}:compensate" if compensating else action_key,
        compensated_idempotency_key=action_key if compensating else "",
    )


def book_flight_request(trip: TravelBookingInput) -> flight_pb2.BookFlightRequest:
    return flight_pb2.BookFlightRequest(
        flight_number=trip.flight_number, passenger_name=trip.traveller_name, seats=1
    )


def cancel_flight_request(booking_id: str) -> flight_pb2.CancelFlightRequest:
    return flight_pb2.CancelFlightRequest(booking_id=booking_id)


def book_hotel_request(trip: TravelBookingInput) -> hotel_pb2.BookHotelRequest:
    return hotel_pb2.BookHotelRequest(
        hotel_id=trip.hotel_id, guest_name=trip.traveller_name, rooms=1, nights=trip.nights
    )


def cancel_hotel_request(reservation_id: str) -> hotel_pb2.CancelHotelRequest:
    return hotel_pb2.CancelHotelRequest(reservation_id=reservation_id)


def charge_request(trip: TravelBookingInput) -> payment_pb2.ChargePaymentRequest:
    return payment_pb2.ChargePaymentRequest(customer_id=trip.customer_id, amount=trip.amount)


def refund_request(payment_id: str) -> payment_pb2.RefundPaymentRequest:
    return payment_pb2.RefundPaymentRequest(payment_id=payment_id)
