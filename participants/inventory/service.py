"""InventoryService: stock per SKU, reserved for an order all or nothing, once per key."""

from __future__ import annotations

import collections

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, state_of
from participants.kit import (
    Invalid,
    Pool,
    Tx,
    action,
    compensation,
    query,
    require_positive,
    require_text,
)
from saga.participants.common.v1 import command_pb2
from saga.participants.inventory.v1 import inventory_pb2 as pb

SKUS = ("sku-1", "sku-2", "sku-3", "sku-4", "sku-5")

STOCK = Pool(
    "stock", ("sku",), "total", "available", item="SKU {sku}", unit="unit",
    unknown_reason="UNKNOWN_SKU", exhausted_reason="INSUFFICIENT_STOCK",
)  # fmt: skip
RESERVATIONS = RecordTable("reservations", "reservation_id", "inv")


def validate_reservation(request: pb.ReserveInventoryRequest) -> None:
    require_text(request.order_id, "order_id")
    if not request.items:
        raise Invalid("items must not be empty")
    for position, item in enumerate(request.items):
        require_text(item.sku, f"items[{position}].sku")
        require_positive(item.quantity, f"items[{position}].quantity")


def validate_release(request: pb.ReleaseInventoryRequest) -> None:
    RESERVATIONS.require_target(request.reservation_id, request.context)


class Inventory(ExampleParticipant):
    """Every SKU starts with `capacity` units."""

    service = "saga.participants.inventory.v1.InventoryService"
    name = "inventory"
    schema = (
        STOCK.create_statement(),
        RESERVATIONS.create_statement("order_id TEXT NOT NULL"),
        """
        CREATE TABLE IF NOT EXISTS reservation_items (
            reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
            position INTEGER NOT NULL,
            sku TEXT NOT NULL REFERENCES stock (sku),
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            PRIMARY KEY (reservation_id, position)
        )
        """,
    )

    def seed(self, tx: Tx) -> None:
        STOCK.seed(tx, [(sku,) for sku in SKUS], self.config.capacity)

    @action(validate=validate_reservation)
    def ReserveInventory(
        self, tx: Tx, request: pb.ReserveInventoryRequest
    ) -> pb.ReserveInventoryResponse:
        wanted: collections.Counter[str] = collections.Counter()
        for item in request.items:
            wanted[item.sku] += item.quantity
        for sku, quantity in wanted.items():  # a refusal rolls back the SKUs taken before
            STOCK.take(tx, (sku,), quantity)
        reservation_id = RESERVATIONS.insert(tx, request.context, order_id=request.order_id)
        for position, item in enumerate(request.items):
            tx.execute(
                "INSERT INTO reservation_items (reservation_id, position, sku, quantity)"
                " VALUES (%s, %s, %s, %s)",
                (reservation_id, position, item.sku, item.quantity),
            )
        return pb.ReserveInventoryResponse(reservation_id=reservation_id)

    @compensation(of="ReserveInventory", validate=validate_release)
    def ReleaseInventory(
        self,
        tx: Tx,
        request: pb.ReleaseInventoryRequest,
        reserved: pb.ReserveInventoryResponse | None,
    ) -> pb.ReleaseInventoryResponse:
        reservation = RESERVATIONS.to_undo(tx, request.context, request.reservation_id, reserved)
        if reservation is None:
            return pb.ReleaseInventoryResponse(released=False)
        reservation_id = reservation["reservation_id"]
        for item in _items(tx, reservation_id):
            STOCK.give_back(tx, (item.sku,), item.quantity)
        RESERVATIONS.cancel(tx, reservation_id)
        return pb.ReleaseInventoryResponse(reservation_id=reservation_id, released=True)

    @query
    def GetInventoryStock(
        self, tx: Tx, request: pb.GetInventoryStockRequest
    ) -> pb.GetInventoryStockResponse:
        return pb.GetInventoryStockResponse(
            stock=[
                pb.StockLevel(sku=row["sku"], available=row["available"], total=row["total"])
                for row in STOCK.levels(tx)
            ],
            reservations=[
                pb.StockReservation(
                    reservation_id=row["reservation_id"],
                    order_id=row["order_id"],
                    items=_items(tx, row["reservation_id"]),
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in RESERVATIONS.all(tx)
            ],
        )


def _items(tx: Tx, reservation_id: str) -> list[command_pb2.LineItem]:
    rows = tx.execute(
        "SELECT sku, quantity FROM reservation_items WHERE reservation_id = %s ORDER BY position",
        (reservation_id,),
    )
    return [command_pb2.LineItem(sku=row["sku"], quantity=row["quantity"]) for row in rows]
