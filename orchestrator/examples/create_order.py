"""create_order: FTGO's "Create Order" saga, the one that needs a read-only step.

Verifying the consumer only reads, so it is declared `read_only`: it needs no
compensation, is no pivot, and a rollback passes over it without a command
(NOTHING_TO_UNDO). Creating the ticket is undone by rejecting it. Authorizing the
card is the pivot: once it has completed the saga only goes forward, so approving
the ticket and the order are `retriable`; a declined card (the participant refuses
it) rejects the ticket and ends the saga FAILED.

Not served by default: `saga serve --definitions orchestrator.examples.create_order`
with the consumer, kitchen, accounting and order participants.
"""

from __future__ import annotations

from google.protobuf.message import Message

from orchestrator.core.definition import Call, SagaDefinition, Step, StepContext
from orchestrator.examples.checks import expect_message, expect_result, require_money
from saga.examples.v1.inputs_pb2 import CreateOrderInput
from saga.examples.v1.outputs_pb2 import CreateOrderOutput
from saga.participants.ftgo.v1 import ftgo_pb2 as ftgo

CONSUMER = "saga.participants.ftgo.v1.ConsumerService"
KITCHEN = "saga.participants.ftgo.v1.KitchenService"
ACCOUNTING = "saga.participants.ftgo.v1.AccountingService"
ORDER = "saga.participants.ftgo.v1.OrderService"


def _input(ctx: StepContext) -> CreateOrderInput:
    return expect_message(CreateOrderInput, ctx.input, "the saga's input")


def verify_consumer(ctx: StepContext) -> ftgo.VerifyConsumerRequest:
    return ftgo.VerifyConsumerRequest(consumer_id=_input(ctx).consumer_id)


def create_ticket(ctx: StepContext) -> ftgo.CreateTicketRequest:
    order = _input(ctx)
    return ftgo.CreateTicketRequest(
        order_id=order.order_id, restaurant_id=order.restaurant_id, items=order.items
    )


def reject_ticket(ctx: StepContext) -> ftgo.RejectTicketRequest:
    created = ctx.result
    return ftgo.RejectTicketRequest(
        ticket_id=created.ticket_id if isinstance(created, ftgo.CreateTicketResponse) else ""
    )


def authorize_card(ctx: StepContext) -> ftgo.AuthorizeCardRequest:
    order = _input(ctx)
    return ftgo.AuthorizeCardRequest(consumer_id=order.consumer_id, amount=order.amount)


def approve_ticket(ctx: StepContext) -> ftgo.ApproveTicketRequest:
    ticket = expect_result(ctx, "create_ticket", ftgo.CreateTicketResponse)
    return ftgo.ApproveTicketRequest(ticket_id=ticket.ticket_id)


def approve_order(ctx: StepContext) -> ftgo.ApproveOrderRequest:
    return ftgo.ApproveOrderRequest(order_id=_input(ctx).order_id)


def created(ctx: StepContext) -> CreateOrderOutput:
    ticket = expect_result(ctx, "create_ticket", ftgo.CreateTicketResponse)
    authorization = expect_result(ctx, "authorize_card", ftgo.AuthorizeCardResponse)
    return CreateOrderOutput(
        ticket_id=ticket.ticket_id, authorization_id=authorization.authorization_id
    )


def check_order(message: Message) -> None:
    require_money("amount", expect_message(CreateOrderInput, message, "the saga's input").amount)


CREATE_ORDER = SagaDefinition(
    name="create_order",
    version=1,
    input_type=CreateOrderInput,
    description="Verify the consumer, create a ticket, authorize the card, then approve both.",
    check_input=check_order,
    output_type=CreateOrderOutput,
    output=created,
    steps=(
        Step(
            "verify_consumer",
            participant="consumer",
            action=Call(CONSUMER, "VerifyConsumer", verify_consumer),
            read_only=True,
        ),
        Step(
            "create_ticket",
            participant="kitchen",
            action=Call(KITCHEN, "CreateTicket", create_ticket),
            compensation=Call(KITCHEN, "RejectTicket", reject_ticket),
        ),
        Step(
            "authorize_card",
            participant="accounting",
            action=Call(ACCOUNTING, "AuthorizeCard", authorize_card),
        ),
        Step(
            "approve_ticket",
            participant="kitchen",
            action=Call(KITCHEN, "ApproveTicket", approve_ticket),
            retriable=True,
        ),
        Step(
            "approve_order",
            participant="order",
            action=Call(ORDER, "ApproveOrder", approve_order),
            retriable=True,
        ),
    ),
)

DEFINITIONS = (CREATE_ORDER,)
