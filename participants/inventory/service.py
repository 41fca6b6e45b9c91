"""InventoryService: stock per SKU, reserved for an order all or nothing, once per key."""

from __future__ import annotations

import collections
import sqlite3

import grpc

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.errors import BusinessRejection, InvalidCommand
from participants.common.records import RecordTable, state_of
from participants.common.spec import ServiceSpec
from participants.common.validation import (
    require_compensation_target,
    require_positive,
    require_text,
)
from saga.participants.common.v1 import command_pb2
from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc

SKUS = ("sku-1", "sku-2", "sku-3", "sku-4", "sku-5")

RESERVATIONS = RecordTable("reservations", "reservation_id", "inv")

SCHEMA = (
    """
    CREATE TABLE stock (
        sku TEXT PRIMARY KEY,
        total INTEGER NOT NULL,
        available INTEGER NOT NULL CHECK (available BETWEEN 0 AND total)
    )
    """,
    RESERVATIONS.create_statement("order_id TEXT NOT NULL"),
    """
    CREATE TABLE reservation_items (
        reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
        position INTEGER NOT NULL,
        sku TEXT NOT NULL REFERENCES stock (sku),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        PRIMARY KEY (reservation_id, position)
    )
    """,
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Every SKU starts with `capacity` units."""
    db.executemany(
        "INSERT INTO stock (sku, total, available) VALUES (?, ?, ?)",
        [(sku, config.capacity, config.capacity) for sku in SKUS],
    )


def validate_reservation(request: inventory_pb2.ReserveInventoryRequest) -> None:
    """Reject malformed reservations before anything is stored."""
    require_text(request.order_id, "order_id")
    if not request.items:
        raise InvalidCommand("items must not be empty")
    for position, item in enumerate(request.items):
        require_text(item.sku, f"items[{position}].sku")
        require_positive(item.quantity, f"items[{position}].quantity")


def reserve_stock(
    db: sqlite3.Connection, request: inventory_pb2.ReserveInventoryRequest
) -> inventory_pb2.ReserveInventoryResponse:
    """Reserve every line item, or reject the whole order and reserve nothing."""
    wanted: collections.Counter[str] = collections.Counter()
    for item in request.items:
        wanted[item.sku] += item.quantity
    for sku, quantity in wanted.items():
        row = db.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise BusinessRejection("UNKNOWN_SKU", f"SKU {sku} does not exist", {"sku": sku})
        if row["available"] < quantity:
            raise BusinessRejection(
                "INSUFFICIENT_STOCK",
                f"SKU {sku} has {row['available']} unit(s) left, {quantity} requested",
                {"sku": sku},
            )
    db.executemany(
        "UPDATE stock SET available = available - ? WHERE sku = ?",
        [(quantity, sku) for sku, quantity in wanted.items()],
    )
    reservation_id = RESERVATIONS.insert(db, request.context, order_id=request.order_id)
    db.executemany(
        "INSERT INTO reservation_items (reservation_id, position, sku, quantity)"
        " VALUES (?, ?, ?, ?)",
        [
            (reservation_id, position, item.sku, item.quantity)
            for position, item in enumerate(request.items)
        ],
    )
    return inventory_pb2.ReserveInventoryResponse(reservation_id=reservation_id)


def validate_release(request: inventory_pb2.ReleaseInventoryRequest) -> None:
    """A release must name the reservation or the action that made it."""
    require_compensation_target(
        request.reservation_id, "reservation_id", request.context.compensated_idempotency_key
    )


def release_stock(
    db: sqlite3.Connection, request: inventory_pb2.ReleaseInventoryRequest
) -> inventory_pb2.ReleaseInventoryResponse:
    """Put an active reservation's units back; nothing to release is not an error."""
    reservation = RESERVATIONS.find_to_compensate(db, request.reservation_id, request.context)
    if reservation is None:
        return inventory_pb2.ReleaseInventoryResponse(released=False)
    reservation_id = reservation["reservation_id"]
    db.executemany(
        "UPDATE stock SET available = available + ? WHERE sku = ?",
        [(item.quantity, item.sku) for item in _items(db, reservation_id)],
    )
    RESERVATIONS.cancel(db, reservation_id)
    return inventory_pb2.ReleaseInventoryResponse(reservation_id=reservation_id, released=True)


def read_stock(db: sqlite3.Connection) -> inventory_pb2.GetInventoryStockResponse:
    """Units left per SKU and every reservation, active or released."""
    stock = db.execute("SELECT * FROM stock ORDER BY rowid")
    return inventory_pb2.GetInventoryStockResponse(
        stock=[
            inventory_pb2.StockLevel(sku=row["sku"], available=row["available"], total=row["total"])
            for row in stock
        ],
        reservations=[
            inventory_pb2.StockReservation(
                reservation_id=row["reservation_id"],
                order_id=row["order_id"],
                items=_items(db, row["reservation_id"]),
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in RESERVATIONS.all(db)
        ],
    )


def _items(db: sqlite3.Connection, reservation_id: str) -> list[command_pb2.LineItem]:
    rows = db.execute(
        "SELECT sku, quantity FROM reservation_items WHERE reservation_id = ? ORDER BY position",
        (reservation_id,),
    )
    return [command_pb2.LineItem(sku=row["sku"], quantity=row["quantity"]) for row in rows]


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def ReserveInventory(
        self, request: inventory_pb2.ReserveInventoryRequest, context: grpc.aio.ServicerContext
    ) -> inventory_pb2.ReserveInventoryResponse:
        return await self._commands.action(
            context,
            "ReserveInventory",
            request,
            inventory_pb2.ReserveInventoryResponse,
            validate_reservation,
            reserve_stock,
        )

    async def ReleaseInventory(
        self, request: inventory_pb2.ReleaseInventoryRequest, context: grpc.aio.ServicerContext
    ) -> inventory_pb2.ReleaseInventoryResponse:
        return await self._commands.compensation(
            context,
            "ReleaseInventory",
            request,
            inventory_pb2.ReleaseInventoryResponse,
            validate_release,
            release_stock,
        )

    async def GetInventoryStock(
        self, request: inventory_pb2.GetInventoryStockRequest, context: grpc.aio.ServicerContext
    ) -> inventory_pb2.GetInventoryStockResponse:
        return self._commands.query(read_stock)


SPEC = ServiceSpec(
    name="inventory",
    descriptor=inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"],
    schema=SCHEMA,
    seed=seed,
    servicer=InventoryServicer,
    add_to_server=inventory_pb2_grpc.add_InventoryServiceServicer_to_server,
)
