"""CarRentalService: a fleet per location and class, rented and returned once per key."""

from __future__ import annotations

import itertools

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, Reservations, state_of
from participants.kit import Pool, Tx, action, compensation, query, require_positive, require_text
from saga.participants.car_rental.v1 import car_rental_pb2 as pb

LOCATIONS = ("BER", "CDG", "FCO")
CAR_CLASSES = ("compact", "suv")

CARS = Pool(
    "fleet", ("location", "car_class"), "cars_total", "cars_available",
    item="the {car_class} class at {location}", unit="car",
    unknown_reason="UNKNOWN_CAR_CLASS", exhausted_reason="NO_CARS_AVAILABLE",
)  # fmt: skip
RENTALS = Reservations(CARS, RecordTable("rentals", "rental_id", "car"), units=None)


def validate_rental(request: pb.RentCarRequest) -> None:
    require_text(request.location, "location")
    require_text(request.car_class, "car_class")
    require_text(request.driver_name, "driver_name")
    require_positive(request.days, "days")


def validate_cancellation(request: pb.CancelCarRentalRequest) -> None:
    RENTALS.records.require_target(request.rental_id, request.context)


class CarRental(ExampleParticipant):
    """Every location starts with `capacity` cars of every class; a rental takes one."""

    service = "saga.participants.car_rental.v1.CarRentalService"
    name = "car_rental"
    schema = (
        CARS.create_statement(),
        RENTALS.records.create_statement(
            """
            location TEXT NOT NULL,
            car_class TEXT NOT NULL,
            driver_name TEXT NOT NULL,
            days INTEGER NOT NULL
            """,
            "FOREIGN KEY (location, car_class) REFERENCES fleet (location, car_class)",
        ),
    )

    def seed(self, tx: Tx) -> None:
        CARS.seed(tx, itertools.product(LOCATIONS, CAR_CLASSES), self.config.capacity)

    @action(validate=validate_rental)
    def RentCar(self, tx: Tx, request: pb.RentCarRequest) -> pb.RentCarResponse:
        rental_id = RENTALS.reserve(
            tx,
            request.context,
            (request.location, request.car_class),
            1,
            location=request.location,
            car_class=request.car_class,
            driver_name=request.driver_name,
            days=request.days,
        )
        return pb.RentCarResponse(
            rental_id=rental_id, location=request.location, car_class=request.car_class
        )

    @compensation(of="RentCar", validate=validate_cancellation)
    def CancelCarRental(
        self, tx: Tx, request: pb.CancelCarRentalRequest, rented: pb.RentCarResponse | None
    ) -> pb.CancelCarRentalResponse:
        rental = RENTALS.release(tx, request.context, request.rental_id, rented)
        if rental is None:
            return pb.CancelCarRentalResponse(cancelled=False)
        return pb.CancelCarRentalResponse(rental_id=rental["rental_id"], cancelled=True)

    @query
    def GetCarInventory(
        self, tx: Tx, request: pb.GetCarInventoryRequest
    ) -> pb.GetCarInventoryResponse:
        return pb.GetCarInventoryResponse(
            cars=[
                pb.CarAvailability(
                    location=row["location"],
                    car_class=row["car_class"],
                    cars_available=row["cars_available"],
                    cars_total=row["cars_total"],
                )
                for row in CARS.levels(tx)
            ],
            rentals=[
                pb.CarRental(
                    rental_id=row["rental_id"],
                    location=row["location"],
                    car_class=row["car_class"],
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in RENTALS.records.all(tx)
            ],
        )
