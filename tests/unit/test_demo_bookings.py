"""The demo's card-limit booking can be stopped by nothing but the card limit.

`make demo` promises one refusal by the card limit; the booking it relies on must ask
for no flight, hotel or car another booking competes for, must not be a driver the car
rental is told to refuse, and must be over the limit.
"""

from __future__ import annotations

from typing import Any

import pytest

from tools.demo import (
    BOOKINGS,
    CARD_LIMIT_TRIP,
    FAILING_DRIVERS,
    MAX_CHARGE_MINOR,
    travel_payload,
)

pytestmark = pytest.mark.unit


def test_the_card_limit_booking_competes_for_nothing_and_is_over_the_limit() -> None:
    mine = travel_payload(CARD_LIMIT_TRIP)
    others = [travel_payload(n) for n in range(BOOKINGS) if n != CARD_LIMIT_TRIP]

    def items(trip: dict[str, Any]) -> set[tuple[str, ...]]:
        return {
            ("flight", trip["flight_number"]),
            ("hotel", trip["hotel_id"]),
            ("car", trip["car_location"], trip["car_class"]),
        }

    assert not items(mine) & set().union(*(items(other) for other in others))
    assert mine["traveller_name"] not in FAILING_DRIVERS
    assert mine["amount"]["amount_minor"] > MAX_CHARGE_MINOR
