"""FlightService: seats on a fixed set of flights, booked and cancelled once per key."""

from __future__ import annotations

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, state_of
from participants.kit import Pool, Tx, action, compensation, query, require_positive, require_text
from saga.participants.flight.v1 import flight_pb2 as pb

FLIGHT_NUMBERS = ("LH400", "BA900", "AF100")

SEATS = Pool(
    "flights", ("flight_number",), "seats_total", "seats_available",
    item="flight {flight_number}", unit="seat",
    unknown_reason="UNKNOWN_FLIGHT", exhausted_reason="NO_SEATS_AVAILABLE",
)  # fmt: skip
BOOKINGS = RecordTable("bookings", "booking_id", "bk")


def validate_booking(request: pb.BookFlightRequest) -> None:
    require_text(request.flight_number, "flight_number")
    require_text(request.passenger_name, "passenger_name")
    require_positive(request.seats, "seats")


def validate_cancellation(request: pb.CancelFlightRequest) -> None:
    BOOKINGS.require_target(request.booking_id, request.context)


class Flight(ExampleParticipant):
    """Every flight starts with `capacity` free seats."""

    service = "saga.participants.flight.v1.FlightService"
    name = "flight"
    schema = (
        SEATS.create_statement(),
        BOOKINGS.create_statement(
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
        SEATS.take(tx, (request.flight_number,), request.seats)
        booking_id = BOOKINGS.insert(
            tx,
            request.context,
            flight_number=request.flight_number,
            passenger_name=request.passenger_name,
            seats=request.seats,
        )
        return pb.BookFlightResponse(
            booking_id=booking_id, flight_number=request.flight_number, seats=request.seats
        )

    @compensation(validate=validate_cancellation)
    def CancelFlight(
        self, tx: Tx, request: pb.CancelFlightRequest, _: object
    ) -> pb.CancelFlightResponse:
        booking = BOOKINGS.find_to_compensate(tx, request.booking_id, request.context)
        if booking is None:
            return pb.CancelFlightResponse(cancelled=False)
        SEATS.give_back(tx, (booking["flight_number"],), booking["seats"])
        BOOKINGS.cancel(tx, booking["booking_id"])
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
                for row in BOOKINGS.all(tx)
            ],
        )
