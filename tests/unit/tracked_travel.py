"""A tracked travel saga for the unit tests: flight, hotel and car rental booked by
services reacting to each other's events (the demo's real definition lives in
orchestrator/examples/travel_choreography.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message

from orchestrator import Call, Correlation, OnStuck, StepContext, TrackedStep, tracked_saga
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import IncomingEvent
from saga.participants.hotel.v1 import hotel_pb2 as hotel

T = "com.example.travel."
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def build_cancel_hotel(ctx: StepContext) -> Message:
    reservation = ""
    if ctx.result is not None:
        reservation = str(dict(ctx.result.items()).get("reservation_id", ""))  # type: ignore[attr-defined]
    return hotel.CancelHotelRequest(reservation_id=reservation)


def travel(on_stuck: OnStuck = OnStuck.NEEDS_INTERVENTION) -> SagaDefinition:
    return tracked_saga(
        "travel_choreography",
        version=1,
        started_by=(T + "booking_started",),
        correlation=Correlation(data_path="booking_id"),
        on_stuck=on_stuck,
        description="Flight, hotel and car booked by services reacting to each other's events",
        steps=(
            TrackedStep(
                "book_flight",
                participant="flight",
                completes_on=(T + "flight_booked",),
                fails_on=(T + "flight_booking_failed",),
                within=30.0,
                compensated_on=(T + "flight_cancelled",),
                compensation_event=T + "cancel_flight",
            ),
            TrackedStep(
                "book_hotel",
                participant="hotel",
                completes_on=T + "hotel_booked",
                fails_on=T + "hotel_booking_failed",
                within=30.0,
                compensated_on=T + "hotel_cancelled",
                compensation=Call(
                    "saga.participants.hotel.v1.HotelService", "CancelHotel", build_cancel_hotel
                ),
            ),
            TrackedStep(
                "rent_car",
                participant="car_rental",
                completes_on=T + "car_rented",
                fails_on=T + "car_rental_failed",
                within=60.0,
            ),
        ),
    )


TRAVEL = travel()
RESCUED_TRAVEL = travel(OnStuck.COMPENSATE)


def event(
    kind: str, booking: str = "B1", *, id: str = "", source: str = "", **data: object
) -> IncomingEvent:
    """An event of the travel flow: `kind` is the type's last part ("flight_booked")."""
    service = source or kind.split("_")[0]
    return IncomingEvent(
        source=f"/{service}",
        id=id or f"{kind}-{booking}",
        type=T + kind,
        data={"booking_id": booking, **data},
    )
