"""last_unit_order, for the demo's lock scenario: an order takes a semantic lock on each
SKU it buys, so two orders for the same stock run one after the other instead of
interleaving. It charges first and reserves second, so the order that finds the stock
gone has a charge to refund: it compensates cleanly, after the first order finished."""

from __future__ import annotations

from google.protobuf.message import Message

from orchestrator.core.definition import Call, Locks, SagaDefinition, Step
from orchestrator.examples.checks import expect_message
from orchestrator.examples.order_fulfillment import (
    INVENTORY,
    PAYMENT,
    charge,
    check_order,
    refund,
    release,
    reserve,
)
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput


def sku_keys(message: Message) -> list[str]:
    order = expect_message(OrderFulfillmentInput, message, "the saga's input")
    return [f"sku:{item.sku}" for item in order.items]


LAST_UNIT_ORDER = SagaDefinition(
    name="last_unit_order",
    version=1,
    input_type=OrderFulfillmentInput,
    description="Charge, then reserve stock; one order per SKU at a time (semantic locks).",
    check_input=check_order,
    locks=Locks(sku_keys),
    steps=(
        Step(
            "charge_payment",
            participant="payment",
            action=Call(PAYMENT, "ChargePayment", charge),
            compensation=Call(PAYMENT, "RefundPayment", refund),
        ),
        Step(
            "reserve_inventory",
            participant="inventory",
            action=Call(INVENTORY, "ReserveInventory", reserve),
            compensation=Call(INVENTORY, "ReleaseInventory", release),
        ),
    ),
)

DEFINITIONS = (LAST_UNIT_ORDER,)
