"""PaymentService: a ledger of charges, each charged and refunded once per key."""

from __future__ import annotations

from typing import Any

from participants.common.example import ExampleParticipant
from participants.common.records import RecordTable, state_of
from participants.kit import (
    Rejected,
    Tx,
    action,
    compensation,
    query,
    require_positive,
    require_text,
)
from saga.participants.common.v1 import command_pb2
from saga.participants.payment.v1 import payment_pb2 as pb

PAYMENTS = RecordTable("payments", "payment_id", "pay")


def validate_charge(request: pb.ChargePaymentRequest) -> None:
    require_text(request.customer_id, "customer_id")
    require_text(request.amount.currency_code, "amount.currency_code")
    require_positive(request.amount.amount_minor, "amount.amount_minor")


def validate_refund(request: pb.RefundPaymentRequest) -> None:
    PAYMENTS.require_target(request.payment_id, request.context)


class Payment(ExampleParticipant):
    """Customers need no account: any customer may be charged up to `max_charge_minor`."""

    service = "saga.participants.payment.v1.PaymentService"
    name = "payment"
    schema = (
        PAYMENTS.create_statement(
            """
            customer_id TEXT NOT NULL,
            currency_code TEXT NOT NULL,
            amount_minor INTEGER NOT NULL CHECK (amount_minor > 0)
            """
        ),
    )

    @action(validate=validate_charge)
    def ChargePayment(self, tx: Tx, request: pb.ChargePaymentRequest) -> pb.ChargePaymentResponse:
        limit = self.config.max_charge_minor
        if request.amount.amount_minor > limit:
            raise Rejected(
                "CARD_DECLINED",
                f"charge of {request.amount.amount_minor} {request.amount.currency_code} (minor"
                f" units) declined: above the limit of {limit}",
                metadata={"max_charge_minor": str(limit)},
            )
        payment_id = PAYMENTS.insert(
            tx,
            request.context,
            customer_id=request.customer_id,
            currency_code=request.amount.currency_code,
            amount_minor=request.amount.amount_minor,
        )
        return pb.ChargePaymentResponse(payment_id=payment_id, amount=request.amount)

    @compensation(of="ChargePayment", validate=validate_refund)
    def RefundPayment(
        self, tx: Tx, request: pb.RefundPaymentRequest, charged: pb.ChargePaymentResponse | None
    ) -> pb.RefundPaymentResponse:
        """Refund an active charge in full; nothing to refund is not an error."""
        payment = PAYMENTS.to_undo(tx, request.context, request.payment_id, charged)
        if payment is None:
            return pb.RefundPaymentResponse(refunded=False)
        PAYMENTS.cancel(tx, payment["payment_id"])
        return pb.RefundPaymentResponse(
            payment_id=payment["payment_id"], refunded=True, amount=_money(payment)
        )

    @query
    def GetPaymentLedger(
        self, tx: Tx, request: pb.GetPaymentLedgerRequest
    ) -> pb.GetPaymentLedgerResponse:
        return pb.GetPaymentLedgerResponse(
            payments=[
                pb.Payment(
                    payment_id=row["payment_id"],
                    customer_id=row["customer_id"],
                    amount=_money(row),
                    state=state_of(row),
                    saga_id=row["saga_id"],
                    idempotency_key=row["idempotency_key"],
                )
                for row in PAYMENTS.all(tx)
            ]
        )


def _money(row: Any) -> command_pb2.Money:
    return command_pb2.Money(currency_code=row["currency_code"], amount_minor=row["amount_minor"])
