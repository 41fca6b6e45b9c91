"""The order events arrive in does not matter: for any permutation of a flow's events
(redeliveries included), applied one at a time with held events fed back as the
ingestor does, the recorded log is the one of the flow in order, up to EVENT_ANOMALY
rows, and the instance ends in the same state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.incoming import IncomingEvent
from orchestrator.core.machine import SagaRun
from orchestrator.core.records import SagaStatus, TransitionEvent
from tests.unit.tracked_travel import Tracker, event

pytestmark = pytest.mark.unit

FLOWS: dict[str, tuple[str, ...]] = {
    "completed": ("booking_started", "flight_booked", "hotel_booked", "car_rented"),
    "refused by the car rental, unwound": (
        "booking_started",
        "flight_booked",
        "hotel_booked",
        "car_rental_failed",
        "hotel_cancelled",
        "flight_cancelled",
    ),
    "refused by the hotel, unwound": (
        "booking_started",
        "flight_booked",
        "hotel_booking_failed",
        "flight_cancelled",
    ),
    "refused by the flight": ("booking_started", "flight_booking_failed"),
}
BOOKINGS = ("B1", "B2")


def flow_events(flow: str, booking: str) -> list[IncomingEvent]:
    return [event(kind, booking, **{"seat": kind}) for kind in FLOWS[flow]]


def log_of(tracker: Tracker, booking: str) -> list[tuple[object, ...]]:
    return [
        (r.event, r.step, r.step_status, r.saga_status, r.attempt, r.error, r.actor, r.reason)
        for r in tracker.log[booking]
        if r.event is not TransitionEvent.EVENT_ANOMALY
    ]


def state_of(run: SagaRun) -> tuple[object, ...]:
    saga = run.saga
    steps = tuple(
        (s.status, s.result, s.completion_id, s.error, s.attempts, s.compensation_attempts)
        for s in run.steps
    )
    return (saga.status, saga.failure_reason, saga.needs_intervention, saga.payload, steps)


def in_order(flows: dict[str, str]) -> Tracker:
    tracker = Tracker()
    for booking, flow in flows.items():
        for incoming in flow_events(flow, booking):
            tracker.ingest(incoming)
    return tracker


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[dict[str, str], list[IncomingEvent]]:
    """Two instances' flows, interleaved in any order, some events delivered twice."""
    flows = {booking: draw(st.sampled_from(sorted(FLOWS))) for booking in BOOKINGS}
    events = [e for booking, flow in flows.items() for e in flow_events(flow, booking)]
    repeats = draw(st.lists(st.sampled_from(events), max_size=4))
    return flows, draw(st.permutations(events + repeats))


@settings(max_examples=300, deadline=None)
@given(arrivals())
def test_any_order_of_a_flows_events_records_the_same_log_and_final_state(case):
    flows, events = case
    expected = in_order(flows)
    tracker = Tracker()
    for incoming in events:
        tracker.ingest(incoming)
    for booking in flows:
        run = tracker.run(booking)
        assert run.status.is_terminal, (booking, flows[booking], tracker.events(booking))
        assert tracker.held[booking] == []
        assert log_of(tracker, booking) == log_of(expected, booking)
        assert state_of(run) == state_of(expected.run(booking))


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_in_order_each_flow_ends_as_its_events_say_without_anomalies(flow):
    tracker = in_order({"B1": flow})
    run = tracker.run("B1")
    expected = SagaStatus.COMPLETED if flow == "completed" else SagaStatus.FAILED
    assert run.status is expected and not run.saga.needs_intervention
    assert TransitionEvent.EVENT_ANOMALY not in tracker.events("B1")


def test_reversed_the_flow_is_held_then_recorded_with_anomaly_rows_only_for_the_early_ones():
    flow = FLOWS["refused by the car rental, unwound"]
    tracker = Tracker()
    for incoming in reversed(flow_events("refused by the car rental, unwound", "B1")):
        tracker.ingest(incoming)
    assert tracker.run("B1").status is SagaStatus.FAILED
    # Every event came before the instance existed: held outside it, no anomaly rows.
    assert TransitionEvent.EVENT_ANOMALY not in tracker.events("B1")
    assert len(flow) == 6
