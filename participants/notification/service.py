"""NotificationService: order confirmations, sent once per key and never undone.

Sending cannot be taken back, so there is no compensation; a saga runs this
as its last step.
"""

from __future__ import annotations

import sqlite3
import uuid

import grpc

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.records import now
from participants.common.spec import ServiceSpec
from participants.common.validation import require_text
from saga.participants.notification.v1 import notification_pb2, notification_pb2_grpc

SCHEMA = (
    """
    CREATE TABLE notifications (
        notification_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        shipment_id TEXT NOT NULL,
        saga_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        create_time TEXT NOT NULL
    )
    """,
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Nothing to seed: notifications need no catalogue."""


def validate_confirmation(request: notification_pb2.SendOrderConfirmationRequest) -> None:
    """Reject malformed confirmations before anything is stored."""
    require_text(request.customer_id, "customer_id")
    require_text(request.order_id, "order_id")


def send_confirmation(
    db: sqlite3.Connection, request: notification_pb2.SendOrderConfirmationRequest
) -> notification_pb2.SendOrderConfirmationResponse:
    """Record the confirmation as sent (the example's stand-in for an e-mail)."""
    notification_id = f"ntf-{uuid.uuid4().hex[:16]}"
    db.execute(
        "INSERT INTO notifications (notification_id, customer_id, order_id, shipment_id,"
        " saga_id, idempotency_key, create_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            notification_id,
            request.customer_id,
            request.order_id,
            request.shipment_id,
            request.context.saga_id,
            request.context.idempotency_key,
            now(),
        ),
    )
    return notification_pb2.SendOrderConfirmationResponse(notification_id=notification_id)


def read_notifications(db: sqlite3.Connection) -> notification_pb2.ListNotificationsResponse:
    """Every notification sent, oldest first."""
    rows = db.execute("SELECT * FROM notifications ORDER BY rowid")
    return notification_pb2.ListNotificationsResponse(
        notifications=[
            notification_pb2.Notification(
                notification_id=row["notification_id"],
                customer_id=row["customer_id"],
                order_id=row["order_id"],
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in rows
        ]
    )


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands

    async def SendOrderConfirmation(
        self,
        request: notification_pb2.SendOrderConfirmationRequest,
        context: grpc.aio.ServicerContext,
    ) -> notification_pb2.SendOrderConfirmationResponse:
        return await self._commands.action(
            context,
            "SendOrderConfirmation",
            request,
            notification_pb2.SendOrderConfirmationResponse,
            validate_confirmation,
            send_confirmation,
        )

    async def ListNotifications(
        self, request: notification_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> notification_pb2.ListNotificationsResponse:
        return self._commands.query(read_notifications)


SPEC = ServiceSpec(
    name="notification",
    descriptor=notification_pb2.DESCRIPTOR.services_by_name["NotificationService"],
    schema=SCHEMA,
    seed=seed,
    servicer=NotificationServicer,
    add_to_server=notification_pb2_grpc.add_NotificationServiceServicer_to_server,
)
