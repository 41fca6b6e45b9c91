"""expensive_trip: a travel booking over the approval limit, which a manager approves.

The flight, hotel and car are booked as in travel_booking; then `approve_booking` asks a
manager (a notification) and waits for their decision, a human task decided through
SagaTasks (`saga complete` / `saga reject`, or the console's Tasks page). Approved, the
traveller is charged; rejected, or not decided within a day, the bookings are undone.
The approval changes nothing itself, so it is read-only: a rollback passes over it.

Which bookings need approval is the caller's choice of saga type (the demo sends those
over APPROVAL_LIMIT_MINOR here); a definition's steps are fixed.
"""

from __future__ import annotations

import dataclasses

from orchestrator.core.definition import AsyncCompletion, Call, Step, StepContext
from orchestrator.examples.checks import expect_message
from orchestrator.examples.travel_booking import TRAVEL_BOOKING
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.examples.v1.outputs_pb2 import BookingApproval
from saga.participants.notification.v1 import notification_pb2 as notification

NOTIFICATION = "saga.participants.notification.v1.NotificationService"
APPROVAL_LIMIT_MINOR = 100_000
APPROVAL_WAIT_SECONDS = 24 * 3600.0


def ask_manager(ctx: StepContext) -> notification.RequestApprovalRequest:
    trip = expect_message(TravelBookingInput, ctx.input, "the saga's input")
    amount = f"{trip.amount.amount_minor / 100:.2f} {trip.amount.currency_code}"
    return notification.RequestApprovalRequest(
        customer_id=trip.customer_id,
        subject=f"approve a trip for {trip.traveller_name} on {trip.flight_number}: {amount}",
    )


APPROVE_BOOKING = Step(
    "approve_booking",
    participant="notification",
    action=Call(NOTIFICATION, "RequestApproval", ask_manager),
    read_only=True,
    completion=AsyncCompletion(result_type=BookingApproval, timeout=APPROVAL_WAIT_SECONDS),
)

_BOOK_TRAVEL, _CHARGE = TRAVEL_BOOKING.steps

EXPENSIVE_TRIP = dataclasses.replace(
    TRAVEL_BOOKING,
    name="expensive_trip",
    description=(
        "Book a flight, a hotel and a car, wait for a manager's approval, then charge "
        "the traveller; a rejection undoes the bookings."
    ),
    steps=(_BOOK_TRAVEL, APPROVE_BOOKING, _CHARGE),
)

DEFINITIONS = (EXPENSIVE_TRIP,)
