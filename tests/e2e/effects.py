"""Reading the participants' own state, to check what a saga really did."""

from __future__ import annotations

from collections import Counter

import grpc

from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc
from saga.participants.common.v1.command_pb2 import ReservationState
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from saga.participants.notification.v1 import notification_pb2, notification_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc
from saga.participants.shipping.v1 import shipping_pb2, shipping_pb2_grpc


async def effects_of(addresses: dict[str, str], saga_id: str) -> dict[str, Counter[str]]:
    """Per participant, how many of the saga's records are in each state (ACTIVE, CANCELLED).

    Only the participants named in `addresses` are read.
    """
    found: dict[str, Counter[str]] = {}

    async def read(name: str, stub_type, method: str, request, field: str) -> None:
        if name not in addresses:
            return
        async with grpc.aio.insecure_channel(addresses[name]) as channel:
            reply = await getattr(stub_type(channel), method)(request, timeout=5)
        items = [i for i in getattr(reply, field) if i.saga_id == saga_id]
        found[name] = Counter(
            ReservationState.Name(i.state).removeprefix("RESERVATION_STATE_")
            if hasattr(i, "state")
            else "SENT"
            for i in items
        )

    await read(
        "flight",
        flight_pb2_grpc.FlightServiceStub,
        "GetFlightInventory",
        flight_pb2.GetFlightInventoryRequest(),
        "bookings",
    )
    await read(
        "hotel",
        hotel_pb2_grpc.HotelServiceStub,
        "GetHotelInventory",
        hotel_pb2.GetHotelInventoryRequest(),
        "reservations",
    )
    await read(
        "car_rental",
        car_rental_pb2_grpc.CarRentalServiceStub,
        "GetCarInventory",
        car_rental_pb2.GetCarInventoryRequest(),
        "rentals",
    )
    await read(
        "payment",
        payment_pb2_grpc.PaymentServiceStub,
        "GetPaymentLedger",
        payment_pb2.GetPaymentLedgerRequest(),
        "payments",
    )
    await read(
        "inventory",
        inventory_pb2_grpc.InventoryServiceStub,
        "GetInventoryStock",
        inventory_pb2.GetInventoryStockRequest(),
        "reservations",
    )
    await read(
        "shipping",
        shipping_pb2_grpc.ShippingServiceStub,
        "GetShipments",
        shipping_pb2.GetShipmentsRequest(),
        "shipments",
    )
    await read(
        "notification",
        notification_pb2_grpc.NotificationServiceStub,
        "ListNotifications",
        notification_pb2.ListNotificationsRequest(),
        "notifications",
    )
    return found
