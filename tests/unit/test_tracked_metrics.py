"""The tracked sagas' metrics: each incoming event's verdict counted by the saga types
that declare its type, the tracked types marked, a failed batch counted nowhere."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from orchestrator.core.incoming import IncomingEvent, IngestVerdict
from orchestrator.telemetry.metrics import SagaMetrics
from orchestrator.telemetry.tracking import CountedIngestor
from tests.support.tracked_sagas import tracked_travel, travel_event

pytestmark = pytest.mark.unit


class Answering:
    """An ingestor that answers the verdicts it was given, or raises."""

    def __init__(self, verdicts: list[IngestVerdict] | None) -> None:
        self.verdicts = verdicts

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        if self.verdicts is None:
            raise ConnectionError("store gone")
        return self.verdicts


def sample(metrics: SagaMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_each_verdict_is_counted_for_every_type_declaring_the_event():
    metrics = SagaMetrics(process_collectors=False)
    types = [tracked_travel(name="trip_a"), tracked_travel(name="trip_b")]
    verdicts = [IngestVerdict.RECORDED, IngestVerdict.ANOMALY, IngestVerdict.HELD]
    counted = CountedIngestor(Answering(verdicts), types, metrics)
    events = [travel_event("booking_started"), travel_event("booking_started", id="x"),
              travel_event("flight_booked", "B2")]  # fmt: skip
    assert await counted.ingest(events) == verdicts
    for saga_type in ("trip_a", "trip_b"):
        assert sample(metrics, "saga_tracked_type", saga_type=saga_type) == 1
        for verdict in ("RECORDED", "ANOMALY", "HELD"):
            total = sample(
                metrics, "saga_tracked_events_total", saga_type=saga_type, verdict=verdict
            )
            assert total == 1


async def test_a_failed_batch_raises_and_counts_nothing():
    metrics = SagaMetrics(process_collectors=False)
    counted = CountedIngestor(Answering(None), [tracked_travel()], metrics)
    with pytest.raises(ConnectionError):
        await counted.ingest([travel_event("booking_started")])
    assert (
        sample(
            metrics,
            "saga_tracked_events_total",
            saga_type="travel_choreography",
            verdict="RECORDED",
        )
        is None
    )
