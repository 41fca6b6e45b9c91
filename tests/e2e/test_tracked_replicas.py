"""Two `saga serve` replicas consuming one tracker queue (competing consumers on the local
RabbitMQ, one PostgreSQL schema): 200 bookings' events published in a random order, some
twice, are shared between them; an instance's events may land on both at once, and the
store's fencing serialises them. Every booking ends COMPLETED, once (one instance per
correlation), with the log one replica alone would record, up to EVENT_ANOMALY rows."""

from __future__ import annotations

import random

import pytest

from tests.e2e.test_telemetry import scrape
from tests.e2e.tracked_support import (
    COMPLETED_RUN,
    Choreography,
    Recorded,
    full_run,
    moves,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

BOOKINGS = 200


def ingested_by(metrics_address: str) -> float:
    """How many events a replica's consumer applied, whatever the verdict."""
    return sum(
        count
        for (name, labels), count in scrape(metrics_address).items()
        if name == "saga_events_ingested_total" and ("via", "rabbitmq") in labels
    )


@pytest.mark.timeout(180)
async def test_two_replicas_share_a_queue_and_record_each_flow_once(tmp_path, postgres_url):
    choreography = Choreography()
    recorded = Recorded(postgres_url)
    rng = random.Random()
    events = [event for n in range(BOOKINGS) for event in full_run(f"trip-{n}")]
    deliveries = events + rng.sample(events, len(events) // 10)  # a tenth of them twice
    rng.shuffle(deliveries)
    replicas = [choreography.tracker(tmp_path, postgres_url, name) for name in ("one", "two")]
    try:
        await choreography.declare()
        for replica in replicas:
            replica.start()
        await choreography.publish(deliveries)

        async def all_completed():
            sagas = await recorded.sagas()
            done = len(sagas) >= BOOKINGS and all(s.status == "COMPLETED" for s in sagas)
            return sagas if done else None

        sagas = await wait_for(all_completed, f"{BOOKINGS} bookings completed", timeout=120)
        correlations = [s.correlation for s in sagas]
        assert sorted(correlations) == sorted(f"trip-{n}" for n in range(BOOKINGS))
        logs = await recorded.logs()
        for saga in sagas:
            assert moves(logs[saga.saga_id]) == COMPLETED_RUN, saga.correlation
            anomalies = [row.reason for row in logs[saga.saga_id] if row.event == "EVENT_ANOMALY"]
            # Only events that came before their turn; a duplicate writes nothing.
            assert all(": early: held until" in reason for reason in anomalies), anomalies
            assert len(anomalies) <= 3
        assert set(await recorded.ingested()) == {(e.source, e.id) for e in events}
        for replica in replicas:  # both took their share
            assert ingested_by(replica.info["metrics_address"]) > 0, replica.name
    finally:
        for replica in replicas:
            replica.stop()
        await choreography.delete()
