"""order_fulfillment: reserve stock, charge, schedule shipping, confirm to the customer.

The confirmation cannot be unsent, so it has no compensation and comes last.
"""

from __future__ import annotations

from google.protobuf.message import Message

from orchestrator.core.definition import Call, SagaDefinition, Step, StepContext
from orchestrator.examples.checks import (
    expect_message,
    expect_result,
    require_money,
    require_positive,
)
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput
from saga.examples.v1.outputs_pb2 import OrderFulfillmentOutput
from saga.participants.inventory.v1 import inventory_pb2 as inventory
from saga.participants.notification.v1 import notification_pb2 as notification
from saga.participants.payment.v1 import payment_pb2 as payment
from saga.participants.shipping.v1 import shipping_pb2 as shipping

INVENTORY = "saga.participants.inventory.v1.InventoryService"
PAYMENT = "saga.participants.payment.v1.PaymentService"
SHIPPING = "saga.participants.shipping.v1.ShippingService"
NOTIFICATION = "saga.participants.notification.v1.NotificationService"


def _input(ctx: StepContext) -> OrderFulfillmentInput:
    return expect_message(OrderFulfillmentInput, ctx.input, "the saga's input")


def reserve(ctx: StepContext) -> inventory.ReserveInventoryRequest:
    order = _input(ctx)
    return inventory.ReserveInventoryRequest(order_id=order.order_id, items=order.items)


def release(ctx: StepContext) -> inventory.ReleaseInventoryRequest:
    reserved = ctx.result
    return inventory.ReleaseInventoryRequest(
        reservation_id=(
            reserved.reservation_id
            if isinstance(reserved, inventory.ReserveInventoryResponse)
            else ""
        )
    )


def charge(ctx: StepContext) -> payment.ChargePaymentRequest:
    order = _input(ctx)
    return payment.ChargePaymentRequest(customer_id=order.customer_id, amount=order.amount)


def refund(ctx: StepContext) -> payment.RefundPaymentRequest:
    charged = ctx.result
    return payment.RefundPaymentRequest(
        payment_id=charged.payment_id if isinstance(charged, payment.ChargePaymentResponse) else ""
    )


def schedule(ctx: StepContext) -> shipping.ScheduleShipmentRequest:
    order = _input(ctx)
    return shipping.ScheduleShipmentRequest(order_id=order.order_id, address=order.shipping_address)


def cancel_shipment(ctx: StepContext) -> shipping.CancelShipmentRequest:
    scheduled = ctx.result
    return shipping.CancelShipmentRequest(
        shipment_id=(
            scheduled.shipment_id
            if isinstance(scheduled, shipping.ScheduleShipmentResponse)
            else ""
        )
    )


def confirm(ctx: StepContext) -> notification.SendOrderConfirmationRequest:
    order = _input(ctx)
    shipment = expect_result(ctx, "schedule_shipping", shipping.ScheduleShipmentResponse)
    return notification.SendOrderConfirmationRequest(
        customer_id=order.customer_id,
        order_id=order.order_id,
        shipment_id=shipment.shipment_id,
    )


def fulfilled(ctx: StepContext) -> OrderFulfillmentOutput:
    reserved = expect_result(ctx, "reserve_inventory", inventory.ReserveInventoryResponse)
    charged = expect_result(ctx, "charge_payment", payment.ChargePaymentResponse)
    shipment = expect_result(ctx, "schedule_shipping", shipping.ScheduleShipmentResponse)
    confirmation = expect_result(
        ctx, "send_confirmation", notification.SendOrderConfirmationResponse
    )
    return OrderFulfillmentOutput(
        reservation_id=reserved.reservation_id,
        payment_id=charged.payment_id,
        shipment_id=shipment.shipment_id,
        notification_id=confirmation.notification_id,
    )


def check_order(message: Message) -> None:
    order = expect_message(OrderFulfillmentInput, message, "the saga's input")
    for position, item in enumerate(order.items):
        require_positive(**{f"items[{position}].quantity": item.quantity})
    require_money("amount", order.amount)


ORDER_FULFILLMENT = SagaDefinition(
    name="order_fulfillment",
    version=1,
    input_type=OrderFulfillmentInput,
    description="Reserve stock, charge, schedule shipping, then confirm to the customer.",
    check_input=check_order,
    output_type=OrderFulfillmentOutput,
    output=fulfilled,
    steps=(
        Step(
            "reserve_inventory",
            participant="inventory",
            action=Call(INVENTORY, "ReserveInventory", reserve),
            compensation=Call(INVENTORY, "ReleaseInventory", release),
        ),
        Step(
            "charge_payment",
            participant="payment",
            action=Call(PAYMENT, "ChargePayment", charge),
            compensation=Call(PAYMENT, "RefundPayment", refund),
        ),
        Step(
            "schedule_shipping",
            participant="shipping",
            action=Call(SHIPPING, "ScheduleShipment", schedule),
            compensation=Call(SHIPPING, "CancelShipment", cancel_shipment),
        ),
        Step(
            "send_confirmation",
            participant="notification",
            action=Call(NOTIFICATION, "SendOrderConfirmation", confirm),
        ),
    ),
)
