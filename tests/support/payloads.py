"""Saga inputs used across end-to-end tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2


def travel(
    customer: str = "customer-1",
    *,
    flight: str = "LH400",
    car_class: str = "compact",
    amount_minor: int = 120_000,
) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "traveller_name": "Ada Lovelace",
        "flight_number": flight,
        "hotel_id": "berlin-central",
        "nights": 2,
        "car_location": "BER",
        "car_class": car_class,
        "car_days": 3,
        "amount": {"currency_code": "EUR", "amount_minor": amount_minor},
    }


def order(order_id: str = "order-1", *, address: str = "1 Main St, Springfield") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "customer-9",
        "items": [{"sku": "sku-1", "quantity": 2}, {"sku": "sku-2", "quantity": 1}],
        "shipping_address": address,
        "amount": {"currency_code": "EUR", "amount_minor": 4_999},
    }


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message
