"""Tracked sagas across a replica's crash (`saga serve` processes on PostgreSQL, the local
RabbitMQ): a replica dies (a failpoint, `os._exit` as SIGKILL) with a batch of events in
hand, before its commit or after it but before the broker's ack; the broker redelivers to
the replica started next, which records each transition once (a redelivery is DUPLICATE,
no row is added) and brings every flow to its end."""

from __future__ import annotations

import random

import pytest

from orchestrator.failpoints import ENV_VAR, EXIT_CODE
from tests.e2e.test_telemetry import scrape, value
from tests.e2e.tracked_support import (
    COMPLETED_RUN,
    Choreography,
    Recorded,
    moves,
    wait_exit,
    wait_for,
)
from tests.support.tracked_sagas import full_run

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

BOOKINGS = 30


@pytest.mark.timeout(180)
@pytest.mark.parametrize("point", ["ingest_received", "ingest_committed"])
async def test_a_replica_killed_with_a_batch_in_hand_loses_and_doubles_nothing(
    point, tmp_path, postgres_url
):
    choreography = Choreography()
    recorded = Recorded(postgres_url)
    events = [event for n in range(BOOKINGS) for event in full_run(f"crash-{n}")]
    random.shuffle(events)  # many come before their turn, or before their start: held
    first = choreography.tracker(tmp_path, postgres_url, "first", env={ENV_VAR: point})
    second = choreography.tracker(tmp_path, postgres_url, "second")
    try:
        await choreography.declare()
        await choreography.publish(events)  # all waiting in the queue: one big batch
        first.start()
        assert await wait_exit(first) == EXIT_CODE
        assert f"failpoint {point} hit" in first.log_tail()
        committed = await recorded.ingested()
        if point == "ingest_received":
            assert committed == {}
        else:
            assert committed  # the batch is in the store, its messages not acknowledged

        second.start()
        sagas = await wait_for(
            lambda: _all_completed(recorded), f"{BOOKINGS} completed bookings", timeout=90
        )
        assert sorted(s.correlation for s in sagas) == sorted(f"crash-{n}" for n in range(BOOKINGS))
        logs = await recorded.logs()
        for saga in sagas:
            assert moves(logs[saga.saga_id]) == COMPLETED_RUN, saga.correlation
            anomalies = [row.reason for row in logs[saga.saga_id] if row.event == "EVENT_ANOMALY"]
            # Only events that came before their turn: a redelivery writes nothing.
            assert all(": early: held until" in reason for reason in anomalies), anomalies
        ingested = await recorded.ingested()
        assert set(ingested) == {(e.source, e.id) for e in events}
        duplicates = value(
            scrape(second.info["metrics_address"]),
            "saga_events_ingested_total",
            via="rabbitmq",
            verdict="DUPLICATE",
        )
        if point == "ingest_committed":
            # Every event the first replica committed came again and was answered so.
            assert duplicates == len(committed)
        else:
            assert not duplicates
    finally:
        first.stop()
        second.stop()
        await choreography.delete()


async def _all_completed(recorded: Recorded):
    sagas = await recorded.sagas()
    if len(sagas) == BOOKINGS and all(s.status == "COMPLETED" for s in sagas):
        return sagas
    return None
