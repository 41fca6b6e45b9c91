"""Every participant service this package can host, by CLI name.

The names must equal `config.ALL_SERVICES`, in order (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping

from participants.car_rental.service import SPEC as CAR_RENTAL
from participants.common.spec import ServiceSpec
from participants.flight.service import SPEC as FLIGHT
from participants.hotel.service import SPEC as HOTEL
from participants.inventory.service import SPEC as INVENTORY
from participants.notification.service import SPEC as NOTIFICATION
from participants.payment.service import SPEC as PAYMENT
from participants.shipping.service import SPEC as SHIPPING

SERVICES: Mapping[str, ServiceSpec] = {
    spec.name: spec
    for spec in (FLIGHT, HOTEL, CAR_RENTAL, PAYMENT, INVENTORY, SHIPPING, NOTIFICATION)
}
