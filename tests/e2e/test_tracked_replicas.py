"""Two `saga serve` replicas consuming one tracker queue (competing consumers on the local
RabbitMQ, one PostgreSQL schema): 200 bookings' events (completed flows and flows refused
and unwound by the services) published in a random order, some twice, are shared between
them; an instance's events may land on both at once, and the store's fencing serialises
them. Every booking ends as its events say, once (one instance per correlation), with the
log one replica alone records for its flow delivered in order, up to EVENT_ANOMALY rows."""

from __future__ import annotations

import random

import pytest

from orchestrator.core.incoming import IncomingEvent
from tests.e2e.test_telemetry import scrape
from tests.e2e.tracked_support import (
    COMPLETED_RUN,
    Choreography,
    Recorded,
    TrackedSaga,
    moves,
    wait_for,
)
from tests.support.tracked_sagas import travel_event

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

BOOKINGS = 200
FLOWS: dict[str, tuple[str, ...]] = {
    "completed": ("booking_started", "flight_booked", "hotel_booked", "car_rented"),
    "refused by the car rental": (
        "booking_started",
        "flight_booked",
        "hotel_booked",
        "car_rental_failed",
        "hotel_cancelled",
        "flight_cancelled",
    ),
    "refused by the hotel": (
        "booking_started",
        "flight_booked",
        "hotel_booking_failed",
        "flight_cancelled",
    ),
    "refused by the flight": ("booking_started", "flight_booking_failed"),
}


def flow_of(n: int) -> str:
    """Booking n's flow: half complete, the others are refused at one step or another."""
    refused = sorted(flow for flow in FLOWS if flow != "completed")
    return "completed" if n % 2 else refused[(n // 2) % len(refused)]


def events_of(flow: str, booking: str) -> list[IncomingEvent]:
    return [travel_event(kind, booking) for kind in FLOWS[flow]]


def ingested_by(metrics_address: str) -> float:
    """How many events a replica's consumer applied, whatever the verdict."""
    return sum(
        count
        for (name, labels), count in scrape(metrics_address).items()
        if name == "saga_events_ingested_total" and ("via", "rabbitmq") in labels
    )


async def flows_in_order(
    choreography: Choreography, recorded: Recorded
) -> dict[str, tuple[TrackedSaga, list[tuple[str, str]]]]:
    """Per flow, a control booking's end and log, its events published one at a time,
    each once the one before is committed: what one replica alone records."""
    controls = {}
    for flow in FLOWS:
        booking = f"control-{flow.replace(' ', '-')}"
        for event in events_of(flow, booking):
            await choreography.publish([event])

            async def committed(key=(event.source, event.id)):
                return key in await recorded.ingested() or None

            await wait_for(committed, f"{event.id} committed")
        [saga] = [s for s in await recorded.sagas() if s.correlation == booking]
        controls[flow] = (saga, moves((await recorded.logs())[saga.saga_id]))
    assert controls["completed"][1] == COMPLETED_RUN
    return controls


@pytest.mark.timeout(180)
async def test_two_replicas_share_a_queue_and_record_each_flow_once(tmp_path, postgres_url):
    choreography = Choreography()
    recorded = Recorded(postgres_url)
    rng = random.Random()
    flows = {f"trip-{n}": flow_of(n) for n in range(BOOKINGS)}
    events = [event for booking, flow in flows.items() for event in events_of(flow, booking)]
    deliveries = events + rng.sample(events, len(events) // 10)  # a tenth of them twice
    rng.shuffle(deliveries)
    replicas = [choreography.tracker(tmp_path, postgres_url, name) for name in ("one", "two")]
    try:
        await choreography.declare()
        for replica in replicas:
            replica.start()
        controls = await flows_in_order(choreography, recorded)
        await choreography.publish(deliveries, in_order=False)  # shuffled already

        async def all_ended():
            sagas = [s for s in await recorded.sagas() if s.correlation in flows]
            done = len(sagas) >= BOOKINGS and all(
                s.status in ("COMPLETED", "FAILED") for s in sagas
            )
            return sagas if done else None

        sagas = await wait_for(all_ended, f"{BOOKINGS} bookings ended", timeout=120)
        assert sorted(s.correlation for s in sagas) == sorted(flows)  # one instance each
        logs = await recorded.logs()
        for saga in sagas:
            control, control_log = controls[flows[saga.correlation]]
            assert (saga.status, saga.needs_intervention) == (
                control.status,
                control.needs_intervention,
            ), saga.correlation
            assert moves(logs[saga.saga_id]) == control_log, saga.correlation
            anomalies = [row.reason for row in logs[saga.saga_id] if row.event == "EVENT_ANOMALY"]
            # Only events that came before their turn; a duplicate writes nothing.
            assert all(": early: held until" in reason for reason in anomalies), anomalies
        assert {(e.source, e.id) for e in events} <= set(await recorded.ingested())
        for replica in replicas:  # both took their share
            assert ingested_by(replica.info["metrics_address"]) > 0, replica.name
    finally:
        for replica in replicas:
            replica.stop()
        await choreography.delete()
