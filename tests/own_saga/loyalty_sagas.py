"""loyalty_signup: award welcome points, then charge the membership fee.

If the fee is declined, the points are revoked. Served with
`saga serve --definitions loyalty_sagas`.
"""

from __future__ import annotations

from google.protobuf.message import Message
from orchestrator import Call, SagaDefinition, Step, StepContext
from saga.participants.payment.v1 import payment_pb2 as payment

from acme.loyalty.v1 import loyalty_pb2 as loyalty

LOYALTY = "acme.loyalty.v1.LoyaltyService"
PAYMENT = "saga.participants.payment.v1.PaymentService"


def signup(ctx: StepContext) -> loyalty.LoyaltySignupInput:
    assert isinstance(ctx.input, loyalty.LoyaltySignupInput)
    return ctx.input


def award_points(ctx: StepContext) -> loyalty.AwardPointsRequest:
    member = signup(ctx)
    return loyalty.AwardPointsRequest(customer_id=member.customer_id, points=member.welcome_points)


def revoke_points(ctx: StepContext) -> loyalty.RevokePointsRequest:
    # ctx.result is None when the award's reply never arrived; the participant then
    # finds the award by the compensated command's idempotency key.
    awarded = ctx.result
    return loyalty.RevokePointsRequest(
        award_id=awarded.award_id if isinstance(awarded, loyalty.AwardPointsResponse) else ""
    )


def charge_fee(ctx: StepContext) -> payment.ChargePaymentRequest:
    member = signup(ctx)
    return payment.ChargePaymentRequest(customer_id=member.customer_id, amount=member.fee)


def refund_fee(ctx: StepContext) -> payment.RefundPaymentRequest:
    charged = ctx.result
    return payment.RefundPaymentRequest(
        payment_id=charged.payment_id if isinstance(charged, payment.ChargePaymentResponse) else ""
    )


def check_signup(member: Message) -> None:
    """Refuse, at StartSaga, an input that is well-formed but makes no sense."""
    assert isinstance(member, loyalty.LoyaltySignupInput)
    if member.welcome_points <= 0:
        raise ValueError("welcome_points must be positive")


LOYALTY_SIGNUP = SagaDefinition(
    name="loyalty_signup",
    version=1,
    input_type=loyalty.LoyaltySignupInput,
    description="Award welcome points, then charge the membership fee.",
    check_input=check_signup,
    steps=(
        Step(
            "award_points",
            participant="loyalty",
            action=Call(LOYALTY, "AwardPoints", award_points),
            compensation=Call(LOYALTY, "RevokePoints", revoke_points),
        ),
        Step(
            "charge_fee",
            participant="payment",
            action=Call(PAYMENT, "ChargePayment", charge_fee),
            compensation=Call(PAYMENT, "RefundPayment", refund_fee),
        ),
    ),
)

DEFINITIONS = (LOYALTY_SIGNUP,)
