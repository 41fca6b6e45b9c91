"""NotificationService: order confirmations and approval requests, sent once per key and
never undone.

Sending cannot be taken back, so there is no compensation; a saga runs this
as its last step.
"""

from __future__ import annotations

import uuid

from participants.common.example import ExampleParticipant
from participants.kit import Tx, action, query, require_text
from participants.kit.commands import now
from saga.participants.notification.v1 import notification_pb2 as pb


def validate_confirmation(request: pb.SendOrderConfirmationRequest) -> None:
    require_text(request.customer_id, "customer_id")
    require_text(request.order_id, "order_id")


def validate_approval(request: pb.RequestApprovalRequest) -> None:
    require_text(request.customer_id, "customer_id")
    require_text(request.subject, "subject")


class Notification(ExampleParticipant):
    """A confirmation is recorded as sent (the example's stand-in for an e-mail)."""

    service = "saga.participants.notification.v1.NotificationService"
    name = "notification"
    schema = (
        """
        CREATE TABLE IF NOT EXISTS notifications (
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

    @action(validate=validate_confirmation)
    def SendOrderConfirmation(
        self, tx: Tx, request: pb.SendOrderConfirmationRequest
    ) -> pb.SendOrderConfirmationResponse:
        notification_id = f"ntf-{uuid.uuid4().hex[:16]}"
        tx.execute(
            "INSERT INTO notifications (notification_id, customer_id, order_id, shipment_id,"
            " saga_id, idempotency_key, create_time) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        return pb.SendOrderConfirmationResponse(notification_id=notification_id)

    @action(validate=validate_approval)
    def RequestApproval(
        self, tx: Tx, request: pb.RequestApprovalRequest
    ) -> pb.RequestApprovalResponse:
        """The manager is told (recorded as a notification); the step waits for their
        decision, which comes through SagaTasks, not through this reply."""
        notification_id = f"ntf-{uuid.uuid4().hex[:16]}"
        tx.execute(
            "INSERT INTO notifications (notification_id, customer_id, order_id, shipment_id,"
            " saga_id, idempotency_key, create_time) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                notification_id,
                request.customer_id,
                request.subject,
                "",
                request.context.saga_id,
                request.context.idempotency_key,
                now(),
            ),
        )
        return pb.RequestApprovalResponse(notification_id=notification_id)

    @query
    def ListNotifications(
        self, tx: Tx, request: pb.ListNotificationsRequest
    ) -> pb.ListNotificationsResponse:
        rows = tx.execute("SELECT * FROM notifications ORDER BY rowid")
        return pb.ListNotificationsResponse(
            notifications=[
                pb.Notification(
                    notification_id=row["notification_id"],
                    customer_id=row["customer_id"],
                    order_id=row["order_id"],
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in rows
            ]
        )
