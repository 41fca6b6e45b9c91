"""Tracked travel sagas for tests that drive `TrackedEvents` with a real store: the flow
of the issue's example (flight, hotel, car rental booked by services reacting to each
other's events), with windows a test can wait out, and its events."""

from __future__ import annotations

from google.protobuf.message import Message

from orchestrator import Call, Correlation, OnStuck, StepContext, TrackedStep, tracked_saga
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import IncomingEvent
from saga.participants.hotel.v1 import hotel_pb2 as hotel

T = "com.example.travel."
START = T + "booking_started"


def build_cancel_hotel(ctx: StepContext) -> Message:
    """The hotel's cancel from the data of its hotel_booked event (the step's result)."""
    reservation = ""
    if ctx.result is not None:
        fields = dict(ctx.result.items())  # type: ignore[attr-defined]
        reservation = str(fields.get("reservation_id", ""))
    return hotel.CancelHotelRequest(reservation_id=reservation)


def tracked_travel(
    *,
    within: float = 30.0,
    car_within: float | None = None,
    on_stuck: OnStuck = OnStuck.NEEDS_INTERVENTION,
    name: str = "travel_choreography",
) -> SagaDefinition:
    """Flight (undone by its event, or rescued by a published cancel_flight), hotel
    (undone by its event, or rescued by a CancelHotel call), car rental (nothing to undo)."""
    return tracked_saga(
        name,
        version=1,
        started_by=(START,),
        correlation=Correlation(data_path="booking_id"),
        on_stuck=on_stuck,
        steps=(
            TrackedStep(
                "book_flight",
                participant="flight",
                completes_on=T + "flight_booked",
                fails_on=T + "flight_booking_failed",
                within=within,
                compensated_on=T + "flight_cancelled",
                compensation_event=T + "cancel_flight",
            ),
            TrackedStep(
                "book_hotel",
                participant="hotel",
                completes_on=T + "hotel_booked",
                fails_on=T + "hotel_booking_failed",
                within=within,
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
                within=within if car_within is None else car_within,
            ),
        ),
    )


def travel_event(kind: str, booking: str = "B1", *, id: str = "", **data: object) -> IncomingEvent:
    """An event of the flow: `kind` is the type's last part ("flight_booked")."""
    service = kind.split("_")[0]
    return IncomingEvent(
        source=f"/{service}",
        id=id or f"{kind}-{booking}",
        type=T + kind,
        data={"booking_id": booking, **data},
        received_via="test",
    )


def full_run(booking: str) -> list[IncomingEvent]:
    """The events of a booking that completes, in the order the services publish them."""
    return [
        travel_event("booking_started", booking, traveller="Ada"),
        travel_event("flight_booked", booking, pnr="PNR-1"),
        travel_event("hotel_booked", booking, reservation_id="R-1"),
        travel_event("car_rented", booking, car="C-1"),
    ]
