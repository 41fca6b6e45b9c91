"""HotelService: rooms in a fixed set of hotels, reserved and cancelled once per key."""

from __future__ import annotations

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, Reservations, state_of
from participants.kit import Pool, Tx, action, compensation, query, require_positive, require_text
from saga.participants.hotel.v1 import hotel_pb2 as pb

HOTEL_IDS = ("berlin-central", "paris-opera", "rome-termini")

ROOMS = Pool(
    "hotels", ("hotel_id",), "rooms_total", "rooms_available",
    item="hotel {hotel_id}", unit="room",
    unknown_reason="UNKNOWN_HOTEL", exhausted_reason="NO_ROOMS_AVAILABLE",
)  # fmt: skip
RESERVATIONS = Reservations(
    ROOMS, RecordTable("reservations", "reservation_id", "htl"), units="rooms"
)


def validate_booking(request: pb.BookHotelRequest) -> None:
    require_text(request.hotel_id, "hotel_id")
    require_text(request.guest_name, "guest_name")
    require_positive(request.rooms, "rooms")
    require_positive(request.nights, "nights")


def validate_cancellation(request: pb.CancelHotelRequest) -> None:
    RESERVATIONS.records.require_target(request.reservation_id, request.context)


class Hotel(ExampleParticipant):
    """Every hotel starts with `capacity` free rooms."""

    service = "saga.participants.hotel.v1.HotelService"
    name = "hotel"
    schema = (
        ROOMS.create_statement(),
        RESERVATIONS.records.create_statement(
            """
            hotel_id TEXT NOT NULL REFERENCES hotels (hotel_id),
            guest_name TEXT NOT NULL,
            rooms INTEGER NOT NULL,
            nights INTEGER NOT NULL
            """
        ),
    )

    def seed(self, tx: Tx) -> None:
        ROOMS.seed(tx, [(hotel_id,) for hotel_id in HOTEL_IDS], self.config.capacity)

    @action(validate=validate_booking)
    def BookHotel(self, tx: Tx, request: pb.BookHotelRequest) -> pb.BookHotelResponse:
        reservation_id = RESERVATIONS.reserve(
            tx,
            request.context,
            (request.hotel_id,),
            request.rooms,
            hotel_id=request.hotel_id,
            guest_name=request.guest_name,
            rooms=request.rooms,
            nights=request.nights,
        )
        return pb.BookHotelResponse(
            reservation_id=reservation_id, hotel_id=request.hotel_id, rooms=request.rooms
        )

    @compensation(of="BookHotel", validate=validate_cancellation)
    def CancelHotel(
        self, tx: Tx, request: pb.CancelHotelRequest, booked: pb.BookHotelResponse | None
    ) -> pb.CancelHotelResponse:
        reservation = RESERVATIONS.release(tx, request.context, request.reservation_id, booked)
        if reservation is None:
            return pb.CancelHotelResponse(cancelled=False)
        return pb.CancelHotelResponse(reservation_id=reservation["reservation_id"], cancelled=True)

    @query
    def GetHotelInventory(
        self, tx: Tx, request: pb.GetHotelInventoryRequest
    ) -> pb.GetHotelInventoryResponse:
        return pb.GetHotelInventoryResponse(
            hotels=[
                pb.HotelAvailability(
                    hotel_id=row["hotel_id"],
                    rooms_available=row["rooms_available"],
                    rooms_total=row["rooms_total"],
                )
                for row in ROOMS.levels(tx)
            ],
            reservations=[
                pb.HotelReservation(
                    reservation_id=row["reservation_id"],
                    hotel_id=row["hotel_id"],
                    rooms=row["rooms"],
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in RESERVATIONS.records.all(tx)
            ],
        )
