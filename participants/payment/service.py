"""PaymentService: a ledger of charges, each charged and refunded once per key."""

from __future__ import annotations

import functools
import sqlite3

import grpc

from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.errors import BusinessRejection
from participants.common.records import RecordTable, state_of
from participants.common.spec import ServiceSpec
from participants.common.validation import (
    require_compensation_target,
    require_money,
    require_text,
)
from saga.participants.common.v1 import command_pb2
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc

PAYMENTS = RecordTable("payments", "payment_id", "pay")

SCHEMA = (
    PAYMENTS.create_statement(
        """
        customer_id TEXT NOT NULL,
        currency_code TEXT NOT NULL,
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0)
        """
    ),
)


def seed(db: sqlite3.Connection, config: ParticipantConfig) -> None:
    """Customers need no account: any customer may be charged up to the limit."""


def validate_charge(request: payment_pb2.ChargePaymentRequest) -> None:
    """Reject malformed charges before anything is stored."""
    require_text(request.customer_id, "customer_id")
    require_money(request.amount, "amount")


def charge(
    db: sqlite3.Connection,
    request: payment_pb2.ChargePaymentRequest,
    *,
    max_charge_minor: int,
) -> payment_pb2.ChargePaymentResponse:
    """Record the charge, or decline it when it exceeds the per-charge limit."""
    if request.amount.amount_minor > max_charge_minor:
        raise BusinessRejection(
            "CARD_DECLINED",
            f"charge of {request.amount.amount_minor} {request.amount.currency_code} (minor"
            f" units) declined: above the limit of {max_charge_minor}",
            {"max_charge_minor": str(max_charge_minor)},
        )
    payment_id = PAYMENTS.insert(
        db,
        request.context,
        customer_id=request.customer_id,
        currency_code=request.amount.currency_code,
        amount_minor=request.amount.amount_minor,
    )
    return payment_pb2.ChargePaymentResponse(payment_id=payment_id, amount=request.amount)


def validate_refund(request: payment_pb2.RefundPaymentRequest) -> None:
    """A refund must name the charge or the action that made it."""
    require_compensation_target(
        request.payment_id, "payment_id", request.context.compensated_idempotency_key
    )


def refund(
    db: sqlite3.Connection, request: payment_pb2.RefundPaymentRequest
) -> payment_pb2.RefundPaymentResponse:
    """Refund an active charge in full; nothing to refund is not an error."""
    payment = PAYMENTS.find_to_compensate(db, request.payment_id, request.context)
    if payment is None:
        return payment_pb2.RefundPaymentResponse(refunded=False)
    PAYMENTS.cancel(db, payment["payment_id"])
    return payment_pb2.RefundPaymentResponse(
        payment_id=payment["payment_id"], refunded=True, amount=_money(payment)
    )


def read_ledger(db: sqlite3.Connection) -> payment_pb2.GetPaymentLedgerResponse:
    """Every charge; a refunded one is CANCELLED."""
    return payment_pb2.GetPaymentLedgerResponse(
        payments=[
            payment_pb2.Payment(
                payment_id=row["payment_id"],
                customer_id=row["customer_id"],
                amount=_money(row),
                state=state_of(row),
                saga_id=row["saga_id"],
                idempotency_key=row["idempotency_key"],
            )
            for row in PAYMENTS.all(db)
        ]
    )


def _money(row: sqlite3.Row) -> command_pb2.Money:
    return command_pb2.Money(currency_code=row["currency_code"], amount_minor=row["amount_minor"])


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    """Thin gRPC adapter: every command goes through the shared CommandProcessor."""

    def __init__(self, commands: CommandProcessor, config: ParticipantConfig) -> None:
        self._commands = commands
        self._charge = functools.partial(charge, max_charge_minor=config.max_charge_minor)

    async def ChargePayment(
        self, request: payment_pb2.ChargePaymentRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.ChargePaymentResponse:
        return await self._commands.action(
            context,
            "ChargePayment",
            request,
            payment_pb2.ChargePaymentResponse,
            validate_charge,
            self._charge,
        )

    async def RefundPayment(
        self, request: payment_pb2.RefundPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.RefundPaymentResponse:
        return await self._commands.compensation(
            context,
            "RefundPayment",
            request,
            payment_pb2.RefundPaymentResponse,
            validate_refund,
            refund,
        )

    async def GetPaymentLedger(
        self, request: payment_pb2.GetPaymentLedgerRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.GetPaymentLedgerResponse:
        return self._commands.query(read_ledger)


SPEC = ServiceSpec(
    name="payment",
    descriptor=payment_pb2.DESCRIPTOR.services_by_name["PaymentService"],
    schema=SCHEMA,
    seed=seed,
    servicer=PaymentServicer,
    add_to_server=payment_pb2_grpc.add_PaymentServiceServicer_to_server,
)
