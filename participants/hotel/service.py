"""HotelService: rooms in a fixed set of hotels, reserved and cancelled once per key."""

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
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc

HOTEL_IDS = ("berlin-central", "paris-opera", "rome-termini")

RESERVATIONS = RecordTable("reservations", "reservation_id", "htl")

SCHEMA = (
    """
    CREATE TABLE hotels (
        hotel_id TEXT PRIMARY KEY,
        rooms_total INTEGER NOT NULL,
        rooms_available INTEGER NOT NULL CHECK (rooms_available BETWEEN 0 AND rooms_total)
    )
    """,
    RESERVATIONS.create_statement(
        """
        hotel_id TEXT NOT NULL REFERENCES hotels (hotel_id),
        guest_name TEXT NOT NULL,
        rooms INTEGER NOT NULL,
        nights INTEGER NOT NULL
        """
    ),
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Every hotel starts with `capacity` free rooms."""
    db.executemany(
        "INSERT INTO hotels (hotel_id, rooms_total, rooms_available) VALUES (?, ?, ?)",
        [(hotel_id, config.capacity, config.capacity) for hotel_id in HOTEL_IDS],
    )


def validate_booking(request: hotel_pb2.BookHotelRequest) -> None:
    """Reject malformed reservations before anything is stored."""
    require_text(request.hotel_id, "hotel_id")
    require_text(request.guest_name, "guest_name")
    require_positive(request.rooms, "rooms")
    require_positive(request.nights, "nights")


def book_rooms(
    db: sqlite3.Connection, request: hotel_pb2.BookHotelRequest
) -> hotel_pb2.BookHotelResponse:
    """Take the rooms, or reject when the hotel is unknown or too full."""
    hotel = db.execute(
        "SELECT rooms_available FROM hotels WHERE hotel_id = ?", (request.hotel_id,)
    ).fetchone()
    if hotel is None:
        raise BusinessRejection(
            "UNKNOWN_HOTEL",
            f"hotel {request.hotel_id} does not exist",
            {"hotel_id": request.hotel_id},
        )
    if hotel["rooms_available"] < request.rooms:
        raise BusinessRejection(
            "NO_ROOMS_AVAILABLE",
            f"hotel {request.hotel_id} has {hotel['rooms_available']} room(s) left,"
            f" {request.rooms} requested",
            {"hotel_id": request.hotel_id},
        )
    db.execute(
        "UPDATE hotels SET rooms_available = rooms_available - ? WHERE hotel_id = ?",
        (request.rooms, request.hotel_id),
    )
    reservation_id = RESERVATIONS.insert(
        db,
        request.context,
        hotel_id=request.hotel_id,
        guest_name=request.guest_name,
        rooms=request.rooms,
        nights=request.nights,
    )
    return hotel_pb2.BookHotelResponse(
        reservation_id=reservation_id, hotel_id=request.hotel_id, rooms=request.rooms
    )


def validate_cancellation(request: hotel_pb2.CancelHotelRequest) -> None:
    """A cancellation must name the reservation or the action that made it."""
    require_compensation_target(
        request.reservation_id, "reservation_id", request.context.compensated_idempotency_key
    )


def cancel_reservation(
    db: sqlite3.Connection, request: hotel_pb2.CancelHotelRequest
) -> hotel_pb2.CancelHotelResponse:
    """Give an active reservation's rooms back; nothing to cancel is not an error."""
    reservation = RESERVATIONS.find_to_compensate(db, request.reservation_id, request.context)
    if reservation is None:
        return hotel_pb2.CancelHotelResponse(cancelled=False)
    db.execute(
        "UPDATE hotels SET rooms_available = rooms_available + ? WHERE hotel_id = ?",
        (reservation["rooms"], reservation["hotel_id"]),
    )
    RESERVATIONS.cancel(db, reservation["reservation_id"])
    return hotel_pb2.CancelHotelResponse(
        reservation_id=reservation["reservation_id"], cancelled=True
    )


def read_inventory(db: sqlite3.Connection) -> hotel_pb2.GetHotelInventoryResponse:
    """Rooms left per hotel and every reservation, active or cancelled."""
    hotels = db.execute("SELECT * FROM hotels ORDER BY rowid")
    return hotel_pb2.GetHotelInventoryResponse(
        hotels=[
            hotel_pb2.HotelAvailability(
                hotel_id=row["hotel_id"],
                rooms_available=row["rooms_available"],
                rooms_total=row["rooms_total"],
            )
            for row in hotels
        ],
        reservations=[
            hotel_pb2.HotelReservation(
                reservation_id=row["reservation_id"],
                hotel_id=row["hotel_id"],
                rooms=row["rooms"],
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in RESERVATIONS.all(db)
        ],
    )


class HotelServicer(hotel_pb2_grpc.HotelServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def BookHotel(
        self, request: hotel_pb2.BookHotelRequest, context: grpc.aio.ServicerContext
    ) -> hotel_pb2.BookHotelResponse:
        return await self._commands.action(
            context,
            "BookHotel",
            request,
            hotel_pb2.BookHotelResponse,
            validate_booking,
            book_rooms,
        )

    async def CancelHotel(
        self, request: hotel_pb2.CancelHotelRequest, context: grpc.aio.ServicerContext
    ) -> hotel_pb2.CancelHotelResponse:
        return await self._commands.compensation(
            context,
            "CancelHotel",
            request,
            hotel_pb2.CancelHotelResponse,
            validate_cancellation,
            cancel_reservation,
        )

    async def GetHotelInventory(
        self, request: hotel_pb2.GetHotelInventoryRequest, context: grpc.aio.ServicerContext
    ) -> hotel_pb2.GetHotelInventoryResponse:
        return self._commands.query(read_inventory)


SPEC = ServiceSpec(
    name="hotel",
    descriptor=hotel_pb2.DESCRIPTOR.services_by_name["HotelService"],
    schema=SCHEMA,
    seed=seed,
    servicer=HotelServicer,
    add_to_server=hotel_pb2_grpc.add_HotelServiceServicer_to_server,
)
