"""The benchmark saga as an orchestrator definition (see bench/workload.py for its data).

The request builders are the shared ones from `bench.workload`; the orchestrator
fills each request's CommandContext itself, with the same keys the other systems use.
"""

from __future__ import annotations

from google.protobuf.message import Message

from bench.workload import (
    FLIGHT_SERVICE,
    HOTEL_SERVICE,
    PAYMENT_SERVICE,
    SAGA_TYPE,
    STEP_TIMEOUT_SECONDS,
    book_flight_request,
    book_hotel_request,
    cancel_flight_request,
    cancel_hotel_request,
    charge_request,
    refund_request,
)
from orchestrator.core.definition import Call, SagaDefinition, Step, StepContext
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.flight.v1 import flight_pb2
from saga.participants.hotel.v1 import hotel_pb2
from saga.participants.payment.v1 import payment_pb2


def _trip(ctx: StepContext) -> TravelBookingInput:
    assert isinstance(ctx.input, TravelBookingInput)
    return ctx.input


def _book_flight(ctx: StepContext) -> Message:
    return book_flight_request(_trip(ctx))


def _cancel_flight(ctx: StepContext) -> Message:
    booked = ctx.result
    return cancel_flight_request(
        booked.booking_id if isinstance(booked, flight_pb2.BookFlightResponse) else ""
    )


def _book_hotel(ctx: StepContext) -> Message:
    return book_hotel_request(_trip(ctx))


def _cancel_hotel(ctx: StepContext) -> Message:
    booked = ctx.result
    return cancel_hotel_request(
        booked.reservation_id if isinstance(booked, hotel_pb2.BookHotelResponse) else ""
    )


def _charge(ctx: StepContext) -> Message:
    return charge_request(_trip(ctx))


def _refund(ctx: StepContext) -> Message:
    charged = ctx.result
    return refund_request(
        charged.payment_id if isinstance(charged, payment_pb2.ChargePaymentResponse) else ""
    )


BENCH_TRIP = SagaDefinition(
    name=SAGA_TYPE,
    version=1,
    input_type=TravelBookingInput,
    description="Benchmark: book a flight and a hotel, then charge the card.",
    steps=(
        Step(
            "book_flight",
            participant="flight",
            action=Call(FLIGHT_SERVICE, "BookFlight", _book_flight),
            compensation=Call(FLIGHT_SERVICE, "CancelFlight", _cancel_flight),
            timeout=STEP_TIMEOUT_SECONDS,
        ),
        Step(
            "book_hotel",
            participant="hotel",
            action=Call(HOTEL_SERVICE, "BookHotel", _book_hotel),
            compensation=Call(HOTEL_SERVICE, "CancelHotel", _cancel_hotel),
            timeout=STEP_TIMEOUT_SECONDS,
        ),
        Step(
            "charge_payment",
            participant="payment",
            action=Call(PAYMENT_SERVICE, "ChargePayment", _charge),
            compensation=Call(PAYMENT_SERVICE, "RefundPayment", _refund),
            timeout=STEP_TIMEOUT_SECONDS,
        ),
    ),
)

DEFINITIONS = (BENCH_TRIP,)
