"""Saga types with an asynchronous step, for the asynchronous-step tests.

Served with `saga serve --definitions tests.support.async_sagas`.

The flight booking is accepted by its participant and confirmed later through
SagaCallbacks; its result (a BookFlightResponse) feeds the flight's compensation
like a synchronous reply would.
"""

from __future__ import annotations

import dataclasses

from orchestrator.core.definition import (
    AsyncCompletion,
    Call,
    OnTimeout,
    SagaDefinition,
    Step,
)
from orchestrator.examples.travel_booking import (
    FLIGHT,
    HOTEL,
    book_flight,
    book_hotel,
    cancel_flight,
    cancel_hotel,
)
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.flight.v1 import flight_pb2
from tests.support.policy_sagas import QUICK_UNDO

HOTEL_STEP = Step(
    "book_hotel",
    participant="hotel",
    action=Call(HOTEL, "BookHotel", book_hotel),
    compensation=Call(HOTEL, "CancelHotel", cancel_hotel),
)
CONFIRM_FLIGHT = Step(
    "confirm_flight",
    participant="flight",
    action=Call(FLIGHT, "BookFlight", book_flight),
    compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
    completion=AsyncCompletion(result_type=flight_pb2.BookFlightResponse, timeout=30.0),
)

ASYNC_TRIP = SagaDefinition(
    name="async_trip",
    version=1,
    input_type=TravelBookingInput,
    description="A hotel, then a flight the airline confirms later.",
    compensation_retry=QUICK_UNDO,
    steps=(HOTEL_STEP, CONFIRM_FLIGHT),
)
HEARTBEAT_TRIP = dataclasses.replace(
    ASYNC_TRIP,
    name="heartbeat_trip",
    description="As async_trip, but the airline must heartbeat every 2 s.",
    steps=(
        HOTEL_STEP,
        dataclasses.replace(
            CONFIRM_FLIGHT,
            completion=AsyncCompletion(
                result_type=flight_pb2.BookFlightResponse, timeout=30.0, heartbeat_timeout=2.0
            ),
        ),
    ),
)
SUPERVISED_TRIP = dataclasses.replace(
    ASYNC_TRIP,
    name="supervised_trip",
    description="As async_trip, but a flight never confirmed waits for an operator.",
    steps=(
        HOTEL_STEP,
        dataclasses.replace(
            CONFIRM_FLIGHT,
            completion=AsyncCompletion(
                result_type=flight_pb2.BookFlightResponse,
                timeout=1.0,
                on_timeout=OnTimeout.NEEDS_INTERVENTION,
            ),
        ),
    ),
)

HASTY_TRIP = dataclasses.replace(
    ASYNC_TRIP,
    name="hasty_trip",
    description="As async_trip, but a flight not confirmed within 1 s is cancelled.",
    steps=(
        HOTEL_STEP,
        dataclasses.replace(
            CONFIRM_FLIGHT,
            completion=AsyncCompletion(result_type=flight_pb2.BookFlightResponse, timeout=1.0),
        ),
    ),
)
TIMED_TRIP = dataclasses.replace(
    ASYNC_TRIP,
    name="timed_trip",
    description="As hasty_trip, with 8 s: time enough to kill its replica while it waits.",
    steps=(
        HOTEL_STEP,
        dataclasses.replace(
            CONFIRM_FLIGHT,
            completion=AsyncCompletion(result_type=flight_pb2.BookFlightResponse, timeout=8.0),
        ),
    ),
)

DEFINITIONS = (ASYNC_TRIP, HEARTBEAT_TRIP, SUPERVISED_TRIP, HASTY_TRIP, TIMED_TRIP)
