"""ShippingService: shipments scheduled and cancelled once per key."""

from __future__ import annotations

import sqlite3

import grpc

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.errors import BusinessRejection
from participants.common.records import RecordTable, state_of
from participants.common.spec import ServiceSpec
from participants.common.validation import require_compensation_target, require_text
from saga.participants.shipping.v1 import shipping_pb2, shipping_pb2_grpc

UNSERVED_ADDRESS_MARKER = "nowhere"
"""An address containing this word (any case) is outside the delivery area."""

SHIPMENTS = RecordTable("shipments", "shipment_id", "shp")

SCHEMA = (
    SHIPMENTS.create_statement(
        """
        order_id TEXT NOT NULL,
        address TEXT NOT NULL
        """
    ),
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Shipping has no catalogue: every address but the unserved ones is delivered to."""


def validate_shipment(request: shipping_pb2.ScheduleShipmentRequest) -> None:
    """Reject malformed shipments before anything is stored."""
    require_text(request.order_id, "order_id")
    require_text(request.address, "address")


def schedule(
    db: sqlite3.Connection, request: shipping_pb2.ScheduleShipmentRequest
) -> shipping_pb2.ScheduleShipmentResponse:
    """Schedule the shipment, or reject an address outside the delivery area."""
    if UNSERVED_ADDRESS_MARKER in request.address.casefold():
        # The address itself stays out of the message: it is personal data.
        raise BusinessRejection(
            "ADDRESS_NOT_SERVED",
            f"the shipping address of order {request.order_id} is outside the delivery area",
            {"order_id": request.order_id},
        )
    shipment_id = SHIPMENTS.insert(
        db, request.context, order_id=request.order_id, address=request.address
    )
    return shipping_pb2.ScheduleShipmentResponse(shipment_id=shipment_id)


def validate_cancellation(request: shipping_pb2.CancelShipmentRequest) -> None:
    """A cancellation must name the shipment or the action that made it."""
    require_compensation_target(
        request.shipment_id, "shipment_id", request.context.compensated_idempotency_key
    )


def cancel(
    db: sqlite3.Connection, request: shipping_pb2.CancelShipmentRequest
) -> shipping_pb2.CancelShipmentResponse:
    """Cancel an active shipment; nothing to cancel is not an error."""
    shipment = SHIPMENTS.find_to_compensate(db, request.shipment_id, request.context)
    if shipment is None:
        return shipping_pb2.CancelShipmentResponse(cancelled=False)
    SHIPMENTS.cancel(db, shipment["shipment_id"])
    return shipping_pb2.CancelShipmentResponse(shipment_id=shipment["shipment_id"], cancelled=True)


def read_shipments(db: sqlite3.Connection) -> shipping_pb2.GetShipmentsResponse:
    """Every shipment, active or cancelled."""
    return shipping_pb2.GetShipmentsResponse(
        shipments=[
            shipping_pb2.Shipment(
                shipment_id=row["shipment_id"],
                order_id=row["order_id"],
                address=row["address"],
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in SHIPMENTS.all(db)
        ]
    )


class ShippingServicer(shipping_pb2_grpc.ShippingServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def ScheduleShipment(
        self, request: shipping_pb2.ScheduleShipmentRequest, context: grpc.aio.ServicerContext
    ) -> shipping_pb2.ScheduleShipmentResponse:
        return await self._commands.action(
            context,
            "ScheduleShipment",
            request,
            shipping_pb2.ScheduleShipmentResponse,
            validate_shipment,
            schedule,
        )

    async def CancelShipment(
        self, request: shipping_pb2.CancelShipmentRequest, context: grpc.aio.ServicerContext
    ) -> shipping_pb2.CancelShipmentResponse:
        return await self._commands.compensation(
            context,
            "CancelShipment",
            request,
            shipping_pb2.CancelShipmentResponse,
            validate_cancellation,
            cancel,
        )

    async def GetShipments(
        self, request: shipping_pb2.GetShipmentsRequest, context: grpc.aio.ServicerContext
    ) -> shipping_pb2.GetShipmentsResponse:
        return self._commands.query(read_shipments)


SPEC = ServiceSpec(
    name="shipping",
    descriptor=shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"],
    schema=SCHEMA,
    seed=seed,
    servicer=ShippingServicer,
    add_to_server=shipping_pb2_grpc.add_ShippingServiceServicer_to_server,
)
