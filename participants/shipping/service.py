"""ShippingService: shipments scheduled and cancelled once per key."""

from __future__ import annotations

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, state_of
from participants.kit import Rejected, Tx, action, compensation, query, require_text
from saga.participants.shipping.v1 import shipping_pb2 as pb

UNSERVED_ADDRESS_MARKER = "nowhere"
"""An address containing this word (any case) is outside the delivery area."""

SHIPMENTS = RecordTable("shipments", "shipment_id", "shp")


def validate_shipment(request: pb.ScheduleShipmentRequest) -> None:
    require_text(request.order_id, "order_id")
    require_text(request.address, "address")


def validate_cancellation(request: pb.CancelShipmentRequest) -> None:
    SHIPMENTS.require_target(request.shipment_id, request.context)


class Shipping(ExampleParticipant):
    """No catalogue: every address but the unserved ones is delivered to."""

    service = "saga.participants.shipping.v1.ShippingService"
    name = "shipping"
    schema = (SHIPMENTS.create_statement("order_id TEXT NOT NULL, address TEXT NOT NULL"),)

    @action(validate=validate_shipment)
    def ScheduleShipment(
        self, tx: Tx, request: pb.ScheduleShipmentRequest
    ) -> pb.ScheduleShipmentResponse:
        if UNSERVED_ADDRESS_MARKER in request.address.casefold():
            # The address itself stays out of the message: it is personal data.
            raise Rejected(
                "ADDRESS_NOT_SERVED",
                f"the shipping address of order {request.order_id} is outside the delivery area",
                metadata={"order_id": request.order_id},
            )
        shipment_id = SHIPMENTS.insert(
            tx, request.context, order_id=request.order_id, address=request.address
        )
        return pb.ScheduleShipmentResponse(shipment_id=shipment_id)

    @compensation(of="ScheduleShipment", validate=validate_cancellation)
    def CancelShipment(
        self,
        tx: Tx,
        request: pb.CancelShipmentRequest,
        scheduled: pb.ScheduleShipmentResponse | None,
    ) -> pb.CancelShipmentResponse:
        shipment = SHIPMENTS.to_undo(tx, request.context, request.shipment_id, scheduled)
        if shipment is None:
            return pb.CancelShipmentResponse(cancelled=False)
        SHIPMENTS.cancel(tx, shipment["shipment_id"])
        return pb.CancelShipmentResponse(shipment_id=shipment["shipment_id"], cancelled=True)

    @query
    def GetShipments(self, tx: Tx, request: pb.GetShipmentsRequest) -> pb.GetShipmentsResponse:
        return pb.GetShipmentsResponse(
            shipments=[
                pb.Shipment(
                    shipment_id=row["shipment_id"],
                    order_id=row["order_id"],
                    address=row["address"],
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in SHIPMENTS.all(tx)
            ]
        )
