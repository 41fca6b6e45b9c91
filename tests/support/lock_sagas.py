"""Saga types that take semantic locks, for the lock tests.

Served with `saga serve --definitions tests.support.lock_sagas` against the example
participants. The keys come from the input's `customer_id`: "a+b" locks `cust:a`
and `cust:b` (written in whatever order the caller chose: the engine sorts them).
"""

from __future__ import annotations

import dataclasses

from orchestrator.core.definition import LockPolicy, Locks, SagaDefinition
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tests.support.policy_sagas import FLIGHT_STEP, HOTEL_STEP, QUICK, QUICK_UNDO

# Slow participants (seconds per action) stretch the windows the tests look into.
STEPS = (
    dataclasses.replace(FLIGHT_STEP, timeout=10.0),
    dataclasses.replace(HOTEL_STEP, timeout=10.0),
)


def customer_keys(trip: TravelBookingInput) -> list[str]:
    return [f"cust:{part}" for part in trip.customer_id.split("+") if part]


def _locked(name: str, locks: Locks, description: str) -> SagaDefinition:
    return SagaDefinition(
        name=name,
        version=1,
        input_type=TravelBookingInput,
        description=description,
        retry=QUICK,
        compensation_retry=QUICK_UNDO,
        steps=STEPS,
        locks=locks,
    )


LOCKED_TRIP = _locked(
    "locked_trip", Locks(customer_keys), "A flight then a hotel, one trip per customer at a time."
)
EXCLUSIVE_TRIP = _locked(
    "exclusive_trip",
    Locks(customer_keys, policy=LockPolicy.REJECT),
    "Refused at once while another trip of the customer runs.",
)
HASTY_TRIP = _locked(
    "hasty_trip",
    Locks(customer_keys, max_wait=1.0),
    "Waits at most a second for the customer's other trips.",
)

DEFINITIONS = [LOCKED_TRIP, EXCLUSIVE_TRIP, HASTY_TRIP]
