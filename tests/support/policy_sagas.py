"""Saga types with tight failure policies, for the failure-policy tests.

Served with `saga serve --definitions tests.support.policy_sagas` against the example
participants; short backoffs and timeouts keep the tests quick.
"""

from __future__ import annotations

from orchestrator.core.definition import Call, RetryPolicy, SagaDefinition, Step
from orchestrator.examples.travel_booking import (
    FLIGHT,
    HOTEL,
    PAYMENT,
    book_flight,
    book_hotel,
    cancel_flight,
    cancel_hotel,
    charge,
)
from saga.examples.v1.inputs_pb2 import TravelBookingInput

QUICK = RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.2, jitter=0.0)
QUICK_UNDO = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.1, jitter=0.0)

HOTEL_STEP = Step(
    "book_hotel",
    participant="hotel",
    action=Call(HOTEL, "BookHotel", book_hotel),
    compensation=Call(HOTEL, "CancelHotel", cancel_hotel),
)
FLIGHT_STEP = Step(
    "book_flight",
    participant="flight",
    action=Call(FLIGHT, "BookFlight", book_flight),
    compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
    timeout=2.0,
)

RETRY_PROBE = SagaDefinition(
    name="retry_probe",
    version=1,
    input_type=TravelBookingInput,
    description="A hotel, then a flight; quick retries of both.",
    retry=QUICK,
    compensation_retry=QUICK_UNDO,
    steps=(HOTEL_STEP, FLIGHT_STEP),
)

IMPATIENT = SagaDefinition(
    name="impatient",
    version=1,
    input_type=TravelBookingInput,
    description="A hotel, then a flight that must answer within 0.3 s, twice at most.",
    retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, jitter=0.0),
    compensation_retry=QUICK_UNDO,
    steps=(
        HOTEL_STEP,
        Step(
            "book_flight",
            participant="flight",
            action=Call(FLIGHT, "BookFlight", book_flight),
            compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
            timeout=0.3,
        ),
    ),
)

PATIENT = SagaDefinition(
    name="patient",
    version=1,
    input_type=TravelBookingInput,
    description="A flight whose retry waits three seconds: long enough to restart meanwhile.",
    steps=(
        Step(
            "book_flight",
            participant="flight",
            action=Call(FLIGHT, "BookFlight", book_flight),
            compensation=Call(FLIGHT, "CancelFlight", cancel_flight),
            retry=RetryPolicy(max_attempts=3, initial_backoff=3.0, jitter=0.0),
        ),
    ),
)

DEADLINE_PROBE = SagaDefinition(
    name="deadline_probe",
    version=1,
    input_type=TravelBookingInput,
    description="A hotel then a flight, all within one second.",
    deadline=1.0,
    compensation_retry=QUICK_UNDO,
    steps=(HOTEL_STEP, FLIGHT_STEP),
)

PIVOT_PROBE = SagaDefinition(
    name="pivot_probe",
    version=1,
    input_type=TravelBookingInput,
    description="A hotel, then an irreversible charge (the pivot), then a flight retried forward.",
    compensation_retry=QUICK_UNDO,
    steps=(
        HOTEL_STEP,
        Step(
            "charge_payment", participant="payment", action=Call(PAYMENT, "ChargePayment", charge)
        ),
        Step(
            "book_flight",
            participant="flight",
            action=Call(FLIGHT, "BookFlight", book_flight),
            retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, jitter=0.0),
            retriable=True,
        ),
    ),
)

DEFINITIONS = (RETRY_PROBE, IMPATIENT, PATIENT, DEADLINE_PROBE, PIVOT_PROBE)
