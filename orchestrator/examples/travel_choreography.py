"""travel_choreography: the travel booking as a choreography the orchestrator only watches.

The flight, hotel and car rental services (participants/choreography/) react to each
other's events on RabbitMQ; nobody commands them. This tracked saga type follows one
booking (correlated by data `booking_id`) through their events: each step completes on
its service's success event, fails on its refusal, and is undone by its cancellation
event. A step whose event does not come within its window is flagged
(needs_intervention); an operator's abort then rescues the booking by publishing the
completed steps' cancel commands, which the services obey.

Not among `orchestrator.examples.DEFINITIONS`: serve it with
`saga serve --definitions orchestrator.examples.travel_choreography` and the tracking
flags, as `make demo-choreography` does (tools/choreography_demo.py). The window is
`TRAVEL_CHOREOGRAPHY_WITHIN` seconds (default 30); the demo makes it short, to show a
stuck booking flagged.
"""

from __future__ import annotations

import os

from orchestrator import Correlation, OnStuck, SagaDefinition, TrackedStep, tracked_saga

TRAVEL = "com.example.travel."
WITHIN_ENV = "TRAVEL_CHOREOGRAPHY_WITHIN"
DEFAULT_WITHIN_SECONDS = 30.0


def travel_choreography(within: float = DEFAULT_WITHIN_SECONDS) -> SagaDefinition:
    """The tracked type, each step's event due `within` seconds after the previous one."""
    return tracked_saga(
        "travel_choreography",
        version=1,
        started_by=(f"{TRAVEL}booking_started",),
        correlation=Correlation(data_path="booking_id"),
        on_stuck=OnStuck.NEEDS_INTERVENTION,
        description="Flight, hotel and car booked by services reacting to each other's events",
        steps=(
            TrackedStep(
                "book_flight",
                participant="flight",
                completes_on=(f"{TRAVEL}flight_booked",),
                fails_on=(f"{TRAVEL}flight_booking_failed",),
                within=within,
                compensated_on=(f"{TRAVEL}flight_cancelled",),
                compensation_event=f"{TRAVEL}cancel_flight",
            ),
            TrackedStep(
                "book_hotel",
                participant="hotel",
                completes_on=(f"{TRAVEL}hotel_booked",),
                fails_on=(f"{TRAVEL}hotel_booking_failed",),
                within=within,
                compensated_on=(f"{TRAVEL}hotel_cancelled",),
                compensation_event=f"{TRAVEL}cancel_hotel",
            ),
            TrackedStep(
                "rent_car",
                participant="car_rental",
                completes_on=(f"{TRAVEL}car_rented",),
                fails_on=(f"{TRAVEL}car_rental_failed",),
                within=within,
                compensated_on=(f"{TRAVEL}car_rental_cancelled",),
                compensation_event=f"{TRAVEL}cancel_car",
            ),
        ),
    )


TRAVEL_CHOREOGRAPHY = travel_choreography(
    float(os.environ.get(WITHIN_ENV, "") or DEFAULT_WITHIN_SECONDS)
)
DEFINITIONS: tuple[SagaDefinition, ...] = (TRAVEL_CHOREOGRAPHY,)

__all__ = ["DEFINITIONS", "TRAVEL_CHOREOGRAPHY", "travel_choreography"]
