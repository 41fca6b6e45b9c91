"""The four services of FTGO's "Create Order" saga (Richardson, *Microservices Patterns*).

ConsumerService only reads: verifying a consumer changes nothing, so the saga declares
that step read-only and a rollback sends it nothing. KitchenService's ticket is created
pending, rejected by the compensation, approved after the card is authorized.
AccountingService's authorization is the pivot: it declines charges above
`max_charge_minor`. OrderService approves the order last.
"""

from __future__ import annotations

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable
from participants.kit import (
    Invalid,
    Rejected,
    Tx,
    action,
    compensation,
    require_positive,
    require_text,
)
from saga.participants.ftgo.v1 import ftgo_pb2 as pb

BLOCKED_PREFIX = "blocked-"
"""Consumers whose id starts with this may not order (the example's stand-in for a rule)."""

TICKETS = RecordTable("tickets", "ticket_id", "tkt")
AUTHORIZATIONS = RecordTable("authorizations", "authorization_id", "auth")
ORDERS = RecordTable("approved_orders", "approval_id", "ord")


def validate_consumer(request: pb.VerifyConsumerRequest) -> None:
    require_text(request.consumer_id, "consumer_id")


def validate_ticket(request: pb.CreateTicketRequest) -> None:
    require_text(request.order_id, "order_id")
    require_text(request.restaurant_id, "restaurant_id")


def validate_rejection(request: pb.RejectTicketRequest) -> None:
    TICKETS.require_target(request.ticket_id, request.context)


def validate_approval(request: pb.ApproveTicketRequest) -> None:
    require_text(request.ticket_id, "ticket_id")


def validate_authorization(request: pb.AuthorizeCardRequest) -> None:
    require_text(request.consumer_id, "consumer_id")
    require_text(request.amount.currency_code, "amount.currency_code")
    require_positive(request.amount.amount_minor, "amount.amount_minor")


def validate_order(request: pb.ApproveOrderRequest) -> None:
    require_text(request.order_id, "order_id")


class Consumer(ExampleParticipant):
    """Reads only: any consumer may order unless their id marks them blocked."""

    service = "saga.participants.ftgo.v1.ConsumerService"
    name = "consumer"

    @action(validate=validate_consumer)
    def VerifyConsumer(
        self, tx: Tx, request: pb.VerifyConsumerRequest
    ) -> pb.VerifyConsumerResponse:
        if request.consumer_id.startswith(BLOCKED_PREFIX):
            raise Rejected(
                "CONSUMER_NOT_VERIFIED", f"consumer {request.consumer_id} may not place orders"
            )
        return pb.VerifyConsumerResponse(consumer_id=request.consumer_id)


class Kitchen(ExampleParticipant):
    """Tickets: created pending, then approved, or rejected by the saga's rollback."""

    service = "saga.participants.ftgo.v1.KitchenService"
    name = "kitchen"
    schema = (
        TICKETS.create_statement(
            """
            order_id TEXT NOT NULL,
            restaurant_id TEXT NOT NULL,
            approved INTEGER NOT NULL DEFAULT 0
            """
        ),
    )

    @action(validate=validate_ticket)
    def CreateTicket(self, tx: Tx, request: pb.CreateTicketRequest) -> pb.CreateTicketResponse:
        ticket_id = TICKETS.insert(
            tx, request.context, order_id=request.order_id, restaurant_id=request.restaurant_id
        )
        return pb.CreateTicketResponse(ticket_id=ticket_id)

    @compensation(of="CreateTicket", validate=validate_rejection)
    def RejectTicket(
        self, tx: Tx, request: pb.RejectTicketRequest, created: pb.CreateTicketResponse | None
    ) -> pb.RejectTicketResponse:
        """Cancel the ticket this saga created; nothing to reject is not an error."""
        ticket = TICKETS.to_undo(tx, request.context, request.ticket_id, created)
        if ticket is None:
            return pb.RejectTicketResponse(rejected=False)
        TICKETS.cancel(tx, ticket["ticket_id"])
        return pb.RejectTicketResponse(ticket_id=ticket["ticket_id"], rejected=True)

    @action(validate=validate_approval)
    def ApproveTicket(self, tx: Tx, request: pb.ApproveTicketRequest) -> pb.ApproveTicketResponse:
        updated = tx.execute(
            "UPDATE tickets SET approved = 1 WHERE ticket_id = %s AND saga_id = %s",
            (request.ticket_id, request.context.saga_id),
        )
        if updated.rowcount != 1:
            raise Invalid(f"ticket {request.ticket_id} is not one of this saga's")
        return pb.ApproveTicketResponse(ticket_id=request.ticket_id)


class Accounting(ExampleParticipant):
    """Card authorizations, declined above `max_charge_minor` (the saga's pivot)."""

    service = "saga.participants.ftgo.v1.AccountingService"
    name = "accounting"
    schema = (
        AUTHORIZATIONS.create_statement(
            """
            consumer_id TEXT NOT NULL,
            currency_code TEXT NOT NULL,
            amount_minor INTEGER NOT NULL CHECK (amount_minor > 0)
            """
        ),
    )

    @action(validate=validate_authorization)
    def AuthorizeCard(self, tx: Tx, request: pb.AuthorizeCardRequest) -> pb.AuthorizeCardResponse:
        limit = self.config.max_charge_minor
        if request.amount.amount_minor > limit:
            raise Rejected(
                "CARD_DECLINED",
                f"authorization of {request.amount.amount_minor} {request.amount.currency_code}"
                f" (minor units) declined: above the limit of {limit}",
                metadata={"max_charge_minor": str(limit)},
            )
        authorization_id = AUTHORIZATIONS.insert(
            tx,
            request.context,
            consumer_id=request.consumer_id,
            currency_code=request.amount.currency_code,
            amount_minor=request.amount.amount_minor,
        )
        return pb.AuthorizeCardResponse(authorization_id=authorization_id)


class Order(ExampleParticipant):
    """The order's own approval, recorded once per saga."""

    service = "saga.participants.ftgo.v1.OrderService"
    name = "order"
    schema = (ORDERS.create_statement("order_id TEXT NOT NULL"),)

    @action(validate=validate_order)
    def ApproveOrder(self, tx: Tx, request: pb.ApproveOrderRequest) -> pb.ApproveOrderResponse:
        ORDERS.insert(tx, request.context, order_id=request.order_id)
        return pb.ApproveOrderResponse(order_id=request.order_id)
