"""FlightService: seats on a fixed set of flights, booked and cancelled once per key."""

from __future__ import annotations

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, Reservations, state_of
from participants.kit import Pool, Tx, action, compensation, query, require_positive, require_text
from saga.participants.flight.v1 import flight_pb2 as pb

FLIGHT_NUMBERS = ("LH400", "BA900", "AF100")

SEATS = Pool(
    "flights", ("flight_number",), "seats_total", "seats_available",
    item="flight {flight_number}", unit="seat",
    unknown_reason="UNKNOWN_FLIGHT", exhausted_reason="NO_SEATS_AVAILABLE",
)  # fmt: skip
BOOKINGS = Reservations(SEATS, RecordTable("bookings", "booking_id", "bk"), units="seats")


def validate_booking(request: pb.BookFlightRequest) -> None:
    require_text(request.flight_number, "flight_number")
    require_text(request.passenger_name, "passenger_name")
    require_positive(request.seats, "seats")


def validate_cancellation(request: pb.CancelFlightRequest) -> None:
    BOOKINGS.records.require_target(request.booking_id, request.context)


class Flight(ExampleParticipant):
    """Every flight starts with `capacity` free seats."""

    service = "saga.participants.flight.v1.FlightService"
    name = "flight"
    schema = (
        SEATS.create_statement(),
        BOOKINGS.records.create_statement(
            """
            flight_number TEXT NOT NULL REFERENCES flights (flight_number),
            passenger_name TEXT NOT NULL,
            seats INTEGER NOT NULL
            """
        ),
    )

    def seed(self, tx: Tx) -> None:
        SEATS.seed(tx, [(number,) for number in FLIGHT_NUMBERS], self.config.capacity)

    @action(validate=validate_booking)
    def BookFlight(self, tx: Tx, request: pb.BookFlightRequest) -> pb.BookFlightResponse:
        booking_id = BOOKINGS.reserve(
            tx,
            request.context,
            (request.flight_number,),
            request.seats,
            flight_number=request.flight_number,
            passenger_name=request.passenger_name,
            seats=request.seats,
        )
        return pb.BookFlightResponse(
            booking_id=booking_id, flight_number=request.flight_number, seats=request.seats
        )

    @compensation(of="BookFlight", validate=validate_cancellation)
    def CancelFlight(
        self, tx: Tx, request: pb.CancelFlightRequest, booked: pb.BookFlightResponse | None
    ) -> pb.CancelFlightResponse:
        booking = BOOKINGS.release(tx, request.context, request.booking_id, booked)
        if booking is None:
            return pb.CancelFlightResponse(cancelled=False)
        return pb.CancelFlightResponse(booking_id=booking["booking_id"], cancelled=True)

    @query
    def GetFlightInventory(
        self, tx: Tx, request: pb.GetFlightInventoryRequest
    ) -> pb.GetFlightInventoryResponse:
        return pb.GetFlightInventoryResponse(
            flights=[
                pb.FlightAvailability(
                    flight_number=row["flight_number"],
                    seats_available=row["seats_available"],
                    seats_total=row["seats_total"],
                )
                for row in SEATS.levels(tx)
            ],
            bookings=[
                pb.FlightBooking(
                    booking_id=row["booking_id"],
                    flight_number=row["flight_number"],
                    seats=row["seats"],
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in BOOKINGS.records.all(tx)
            ],
        )
