"""Every participant service this package can host, by CLI name.

The names must equal `config.ALL_SERVICES`, in order (a test checks it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from google.protobuf.descriptor import ServiceDescriptor

from participants.car_rental.service import CarRental
from participants.common.example import ExampleParticipant
from participants.flight.service import Flight
from participants.ftgo.service import Accounting, Consumer, Kitchen, Order
from participants.hotel.service import Hotel
from participants.inventory.service import Inventory
from participants.notification.service import Notification
from participants.payment.service import Payment
from participants.shipping.service import Shipping


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """One example service: its class, and the contract it serves."""

    participant: type[ExampleParticipant]

    @property
    def name(self) -> str:
        """The CLI name and the state file's stem."""
        return self.participant.name

    @property
    def descriptor(self) -> ServiceDescriptor:
        return self.participant.service_descriptor()

    @property
    def full_name(self) -> str:
        """The gRPC service name, e.g. saga.participants.flight.v1.FlightService."""
        return self.descriptor.full_name


SERVICES: Mapping[str, ServiceSpec] = {
    spec.name: spec
    for spec in map(
        ServiceSpec,
        (
            Flight,
            Hotel,
            CarRental,
            Payment,
            Inventory,
            Shipping,
            Notification,
            Consumer,
            Kitchen,
            Accounting,
            Order,
        ),
    )
}
