"""The three travel services' rules: what each books, on which event, and what undoes it.

The services share one shape (book units of an item for a booking, or refuse; cancel
what a booking holds), so each is a `Service` row of this table, and `decide` is the one
place a booking or a cancellation is decided. What is stored and how redeliveries are
answered is `state.py`'s concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from participants.choreography import events as ev


@dataclass(frozen=True, slots=True)
class Service:
    """One choreographed service.

    It books `units_field` units (default 1) of the item the booking's `item_field`
    names when `book_on` arrives, publishing `booked` or `failed`; it cancels what a
    booking holds when any of `cancel_on` arrives (another service's undo, or a rescuer's
    command), publishing `cancelled`.
    """

    name: str
    source: str
    item_field: str
    units_field: str
    catalogue: tuple[str, ...]
    book_on: str
    booked: str
    failed: str
    cancelled: str
    cancel_on: tuple[str, ...]

    @property
    def handles(self) -> tuple[str, ...]:
        """The event types its queue is bound to (routing key = event type)."""
        return (self.book_on, *self.cancel_on)


FLIGHT = Service(
    name="flight",
    source="/travel/flight",
    item_field="flight",
    units_field="seats",
    catalogue=("LH400", "BA900", "AF100"),
    book_on=ev.BOOKING_STARTED,
    booked=ev.FLIGHT_BOOKED,
    failed=ev.FLIGHT_BOOKING_FAILED,
    cancelled=ev.FLIGHT_CANCELLED,
    cancel_on=(ev.HOTEL_BOOKING_FAILED, ev.HOTEL_CANCELLED, ev.CANCEL_FLIGHT),
)
HOTEL = Service(
    name="hotel",
    source="/travel/hotel",
    item_field="hotel",
    units_field="rooms",
    catalogue=("berlin-central", "paris-opera", "rome-termini"),
    book_on=ev.FLIGHT_BOOKED,
    booked=ev.HOTEL_BOOKED,
    failed=ev.HOTEL_BOOKING_FAILED,
    cancelled=ev.HOTEL_CANCELLED,
    cancel_on=(ev.CAR_RENTAL_FAILED, ev.CANCEL_HOTEL),
)
CAR_RENTAL = Service(
    name="car_rental",
    source="/travel/car-rental",
    item_field="car_class",
    units_field="cars",
    catalogue=("compact", "suv"),
    book_on=ev.HOTEL_BOOKED,
    booked=ev.CAR_RENTED,
    failed=ev.CAR_RENTAL_FAILED,
    cancelled=ev.CAR_RENTAL_CANCELLED,
    cancel_on=(ev.CANCEL_CAR,),
)
SERVICES: dict[str, Service] = {s.name: s for s in (FLIGHT, HOTEL, CAR_RENTAL)}

BOOKING_FIELDS = ("booking_id", "flight", "seats", "hotel", "rooms", "car_class", "cars")
"""What a booking's events carry forward, so the next service has what it needs."""


def booking_id_of(data: Mapping[str, Any]) -> str:
    """The booking an event is about: data `booking_id`, or a rescue command's
    `correlation` (its data is {saga_id, step, correlation, result}) or its result's."""
    for candidate in (
        data.get("booking_id"),
        data.get("correlation"),
        (data.get("result") or {}).get("booking_id")
        if isinstance(data.get("result"), dict)
        else None,
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return ""


def trip_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """The booking's own fields out of an event's data."""
    return {name: data[name] for name in BOOKING_FIELDS if name in data}


@dataclass(frozen=True, slots=True)
class Booking:
    """What a booking request asks of a service, or why it is refused before any check
    of stock (`refusal` non-empty)."""

    item: str
    units: int
    refusal: str = ""


def booking_request(service: Service, data: Mapping[str, Any], refuse: frozenset[str]) -> Booking:
    """Read and check a booking request; stock is checked by the store."""
    item = data.get(service.item_field)
    units = data.get(service.units_field, 1)
    if not isinstance(item, str) or not item:
        return Booking("", 0, f"no {service.item_field} named")
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        return Booking(item, 0, f"{service.units_field} must be a positive whole number")
    if item not in service.catalogue:
        return Booking(item, units, f"no such {service.item_field}: {item}")
    if refuse & {str(v) for v in data.values() if isinstance(v, str)}:
        return Booking(item, units, "refused by the service's rules")
    return Booking(item, units)
