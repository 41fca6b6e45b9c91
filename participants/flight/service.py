"""FlightService: seats on a fixed set of flights, booked and cancelled once per key."""

from __future__ import annotations

import sqlite3

import grpc

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.errors import BusinessRejection
from participants.common.records import RecordTable, state_of
from participants.common.spec import ServiceSpec
from participants.common.validation import (
    require_compensation_target,
    require_positive,
    require_text,
)
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc

FLIGHT_NUMBERS = ("LH400", "BA900", "AF100")

BOOKINGS = RecordTable("bookings", "booking_id", "bk")

SCHEMA = (
    """
    CREATE TABLE flights (
        flight_number TEXT PRIMARY KEY,
        seats_total INTEGER NOT NULL,
        seats_available INTEGER NOT NULL CHECK (seats_available BETWEEN 0 AND seats_total)
    )
    """,
    BOOKINGS.create_statement(
        """
        flight_number TEXT NOT NULL REFERENCES flights (flight_number),
        passenger_name TEXT NOT NULL,
        seats INTEGER NOT NULL
        """
    ),
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Every flight starts with `capacity` free seats."""
    db.executemany(
        "INSERT INTO flights (flight_number, seats_total, seats_available) VALUES (?, ?, ?)",
        [(number, config.capacity, config.capacity) for number in FLIGHT_NUMBERS],
    )


def validate_booking(request: flight_pb2.BookFlightRequest) -> None:
    """Reject malformed bookings before anything is stored."""
    require_text(request.flight_number, "flight_number")
    require_text(request.passenger_name, "passenger_name")
    require_positive(request.seats, "seats")


def book_seats(
    db: sqlite3.Connection, request: flight_pb2.BookFlightRequest
) -> flight_pb2.BookFlightResponse:
    """Take the seats, or reject when the flight is unknown or too full."""
    flight = db.execute(
        "SELECT seats_available FROM flights WHERE flight_number = ?", (request.flight_number,)
    ).fetchone()
    if flight is None:
        raise BusinessRejection(
            "UNKNOWN_FLIGHT",
            f"flight {request.flight_number} does not exist",
            {"flight_number": request.flight_number},
        )
    if flight["seats_available"] < request.seats:
        raise BusinessRejection(
            "NO_SEATS_AVAILABLE",
            f"flight {request.flight_number} has {flight['seats_available']} seat(s) left,"
            f" {request.seats} requested",
            {"flight_number": request.flight_number},
        )
    db.execute(
        "UPDATE flights SET seats_available = seats_available - ? WHERE flight_number = ?",
        (request.seats, request.flight_number),
    )
    booking_id = BOOKINGS.insert(
        db,
        request.context,
        flight_number=request.flight_number,
        passenger_name=request.passenger_name,
        seats=request.seats,
    )
    return flight_pb2.BookFlightResponse(
        booking_id=booking_id, flight_number=request.flight_number, seats=request.seats
    )


def validate_cancellation(request: flight_pb2.CancelFlightRequest) -> None:
    """A cancellation must name the booking or the action that made it."""
    require_compensation_target(
        request.booking_id, "booking_id", request.context.compensated_idempotency_key
    )


def cancel_booking(
    db: sqlite3.Connection, request: flight_pb2.CancelFlightRequest
) -> flight_pb2.CancelFlightResponse:
    """Give an active booking's seats back; nothing to cancel is not an error."""
    booking = BOOKINGS.find_to_compensate(db, request.booking_id, request.context)
    if booking is None:
        return flight_pb2.CancelFlightResponse(cancelled=False)
    db.execute(
        "UPDATE flights SET seats_available = seats_available + ? WHERE flight_number = ?",
        (booking["seats"], booking["flight_number"]),
    )
    BOOKINGS.cancel(db, booking["booking_id"])
    return flight_pb2.CancelFlightResponse(booking_id=booking["booking_id"], cancelled=True)


def read_inventory(db: sqlite3.Connection) -> flight_pb2.GetFlightInventoryResponse:
    """Seats left per flight and every booking, active or cancelled."""
    flights = db.execute("SELECT * FROM flights ORDER BY rowid")
    return flight_pb2.GetFlightInventoryResponse(
        flights=[
            flight_pb2.FlightAvailability(
                flight_number=row["flight_number"],
                seats_available=row["seats_available"],
                seats_total=row["seats_total"],
            )
            for row in flights
        ],
        bookings=[
            flight_pb2.FlightBooking(
                booking_id=row["booking_id"],
                flight_number=row["flight_number"],
                seats=row["seats"],
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in BOOKINGS.all(db)
        ],
    )


class FlightServicer(flight_pb2_grpc.FlightServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def BookFlight(
        self, request: flight_pb2.BookFlightRequest, context: grpc.aio.ServicerContext
    ) -> flight_pb2.BookFlightResponse:
        return await self._commands.action(
            context,
            "BookFlight",
            request,
            flight_pb2.BookFlightResponse,
            validate_booking,
            book_seats,
        )

    async def CancelFlight(
        self, request: flight_pb2.CancelFlightRequest, context: grpc.aio.ServicerContext
    ) -> flight_pb2.CancelFlightResponse:
        return await self._commands.compensation(
            context,
            "CancelFlight",
            request,
            flight_pb2.CancelFlightResponse,
            validate_cancellation,
            cancel_booking,
        )

    async def GetFlightInventory(
        self, request: flight_pb2.GetFlightInventoryRequest, context: grpc.aio.ServicerContext
    ) -> flight_pb2.GetFlightInventoryResponse:
        return self._commands.query(read_inventory)


SPEC = ServiceSpec(
    name="flight",
    descriptor=flight_pb2.DESCRIPTOR.services_by_name["FlightService"],
    schema=SCHEMA,
    seed=seed,
    servicer=FlightServicer,
    add_to_server=flight_pb2_grpc.add_FlightServiceServicer_to_server,
)
