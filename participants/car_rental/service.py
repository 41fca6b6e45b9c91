"""CarRentalService: a fleet per location and class, rented and returned once per key."""

from __future__ import annotations

import itertools
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
from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc

LOCATIONS = ("BER", "CDG", "FCO")
CAR_CLASSES = ("compact", "suv")

RENTALS = RecordTable("rentals", "rental_id", "car")

SCHEMA = (
    """
    CREATE TABLE fleet (
        location TEXT NOT NULL,
        car_class TEXT NOT NULL,
        cars_total INTEGER NOT NULL,
        cars_available INTEGER NOT NULL CHECK (cars_available BETWEEN 0 AND cars_total),
        PRIMARY KEY (location, car_class)
    )
    """,
    RENTALS.create_statement(
        """
        location TEXT NOT NULL,
        car_class TEXT NOT NULL,
        driver_name TEXT NOT NULL,
        days INTEGER NOT NULL
        """,
        "FOREIGN KEY (location, car_class) REFERENCES fleet (location, car_class)",
    ),
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Every location starts with `capacity` cars of every class."""
    db.executemany(
        "INSERT INTO fleet (location, car_class, cars_total, cars_available) VALUES (?, ?, ?, ?)",
        [
            (location, car_class, config.capacity, config.capacity)
            for location, car_class in itertools.product(LOCATIONS, CAR_CLASSES)
        ],
    )


def validate_rental(request: car_rental_pb2.RentCarRequest) -> None:
    """Reject malformed rentals before anything is stored."""
    require_text(request.location, "location")
    require_text(request.car_class, "car_class")
    require_text(request.driver_name, "driver_name")
    require_positive(request.days, "days")


def rent_car(
    db: sqlite3.Connection, request: car_rental_pb2.RentCarRequest
) -> car_rental_pb2.RentCarResponse:
    """Take one car, or reject when the class is not offered there or none is left."""
    where = {"location": request.location, "car_class": request.car_class}
    fleet = db.execute(
        "SELECT cars_available FROM fleet WHERE location = ? AND car_class = ?",
        (request.location, request.car_class),
    ).fetchone()
    if fleet is None:
        raise BusinessRejection(
            "UNKNOWN_CAR_CLASS",
            f"no {request.car_class} cars are offered at {request.location}",
            where,
        )
    if fleet["cars_available"] < 1:
        raise BusinessRejection(
            "NO_CARS_AVAILABLE",
            f"no {request.car_class} car is left at {request.location}",
            where,
        )
    db.execute(
        "UPDATE fleet SET cars_available = cars_available - 1 WHERE location = ? AND car_class = ?",
        (request.location, request.car_class),
    )
    rental_id = RENTALS.insert(
        db,
        request.context,
        location=request.location,
        car_class=request.car_class,
        driver_name=request.driver_name,
        days=request.days,
    )
    return car_rental_pb2.RentCarResponse(
        rental_id=rental_id, location=request.location, car_class=request.car_class
    )


def validate_cancellation(request: car_rental_pb2.CancelCarRentalRequest) -> None:
    """A cancellation must name the rental or the action that made it."""
    require_compensation_target(
        request.rental_id, "rental_id", request.context.compensated_idempotency_key
    )


def cancel_rental(
    db: sqlite3.Connection, request: car_rental_pb2.CancelCarRentalRequest
) -> car_rental_pb2.CancelCarRentalResponse:
    """Return an active rental's car to the fleet; nothing to cancel is not an error."""
    rental = RENTALS.find_to_compensate(db, request.rental_id, request.context)
    if rental is None:
        return car_rental_pb2.CancelCarRentalResponse(cancelled=False)
    db.execute(
        "UPDATE fleet SET cars_available = cars_available + 1 WHERE location = ? AND car_class = ?",
        (rental["location"], rental["car_class"]),
    )
    RENTALS.cancel(db, rental["rental_id"])
    return car_rental_pb2.CancelCarRentalResponse(rental_id=rental["rental_id"], cancelled=True)


def read_inventory(db: sqlite3.Connection) -> car_rental_pb2.GetCarInventoryResponse:
    """Cars left per location and class, and every rental, active or cancelled."""
    fleet = db.execute("SELECT * FROM fleet ORDER BY rowid")
    return car_rental_pb2.GetCarInventoryResponse(
        cars=[
            car_rental_pb2.CarAvailability(
                location=row["location"],
                car_class=row["car_class"],
                cars_available=row["cars_available"],
                cars_total=row["cars_total"],
            )
            for row in fleet
        ],
        rentals=[
            car_rental_pb2.CarRental(
                rental_id=row["rental_id"],
                location=row["location"],
                car_class=row["car_class"],
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in RENTALS.all(db)
        ],
    )


class CarRentalServicer(car_rental_pb2_grpc.CarRentalServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def RentCar(
        self, request: car_rental_pb2.RentCarRequest, context: grpc.aio.ServicerContext
    ) -> car_rental_pb2.RentCarResponse:
        return await self._commands.action(
            context,
            "RentCar",
            request,
            car_rental_pb2.RentCarResponse,
            validate_rental,
            rent_car,
        )

    async def CancelCarRental(
        self, request: car_rental_pb2.CancelCarRentalRequest, context: grpc.aio.ServicerContext
    ) -> car_rental_pb2.CancelCarRentalResponse:
        return await self._commands.compensation(
            context,
            "CancelCarRental",
            request,
            car_rental_pb2.CancelCarRentalResponse,
            validate_cancellation,
            cancel_rental,
        )

    async def GetCarInventory(
        self, request: car_rental_pb2.GetCarInventoryRequest, context: grpc.aio.ServicerContext
    ) -> car_rental_pb2.GetCarInventoryResponse:
        return self._commands.query(read_inventory)


SPEC = ServiceSpec(
    name="car_rental",
    descriptor=car_rental_pb2.DESCRIPTOR.services_by_name["CarRentalService"],
    schema=SCHEMA,
    seed=seed,
    servicer=CarRentalServicer,
    add_to_server=car_rental_pb2_grpc.add_CarRentalServiceServicer_to_server,
)
