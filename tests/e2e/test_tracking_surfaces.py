"""A tracked saga on the orchestrator's surfaces, against a real `saga serve` with the
travel choreography registered and its events ingested over gRPC: GetSaga marks it
tracked and says what its waiting step expects and by when; `saga list` and `saga get`
show the same; an event whose instance never starts becomes an anomaly
that `saga events anomalies` lists with its filters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from saga.v1 import ingest_pb2 as ingest_pb
from saga.v1 import ingest_pb2_grpc as ingest_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.test_cli import saga_cli
from tools.processes import ChildProcess, orchestrator_process

pytestmark = pytest.mark.e2e

T = "com.example.travel."
WINDOW_SECONDS = 300


@pytest.fixture
def tracker(tmp_path: Path, database_url: str) -> Iterator[ChildProcess]:
    """`saga serve` tracking travel_choreography, no broker: events come over gRPC."""
    process = orchestrator_process(
        tmp_path,
        database_url,
        {},
        env={"TRAVEL_CHOREOGRAPHY_WITHIN": str(WINDOW_SECONDS)},
        extra_args=[
            "--definitions",
            "orchestrator.examples.travel_choreography",
            "--tracked-wait-for-start",
            "0.2",
        ],
    )
    try:
        yield process.start()
    finally:
        process.stop()


def cloud_event(kind: str, booking: str, source: str) -> ingest_pb.CloudEvent:
    return ingest_pb.CloudEvent(
        id=f"{kind}-{booking}",
        source=source,
        spec_version="1.0",
        type=T + kind,
        text_data=json.dumps({"booking_id": booking}),
    )


async def ingest(address: str, *events: ingest_pb.CloudEvent) -> list[int]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_grpc.SagaEventIngestStub(channel)
        reply = await stub.IngestEvents(ingest_pb.IngestEventsRequest(events=events), timeout=10)
    return list(reply.verdicts)


async def tracked_saga(address: str, booking: str) -> pb.Saga:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        listed = await stub.ListSagas(
            pb.ListSagasRequest(saga_type="travel_choreography", correlation_id=booking), timeout=10
        )
        [row] = listed.sagas
        assert row.tracked
        return await stub.GetSaga(pb.GetSagaRequest(saga_id=row.saga_id), timeout=10)


async def test_a_tracked_saga_says_what_it_expects_next_on_every_surface(tracker):
    address = tracker.address
    verdicts = await ingest(
        address,
        cloud_event("booking_started", "B1", "/shop"),
        cloud_event("flight_booked", "B1", "/flight"),
    )
    assert verdicts == [ingest_pb.INGEST_VERDICT_RECORDED] * 2
    saga = await tracked_saga(address, "B1")
    assert saga.tracked
    flight, hotel, car = saga.steps
    assert list(flight.expected_event_types) == []
    assert list(hotel.expected_event_types) == [T + "hotel_booked", T + "hotel_booking_failed"]
    assert hotel.participant == "hotel" and not hotel.expecting_undo
    assert hotel.HasField("wait_deadline")
    assert list(car.expected_event_types) == []

    env = {"SAGA_ADDRESS": address}
    shown = saga_cli("get", saga.saga_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Tracked:" in shown.stdout
    expecting = [line for line in shown.stdout.splitlines() if line.startswith("Expecting:")]
    assert len(expecting) == 1
    assert f"{T}hotel_booked or {T}hotel_booking_failed from hotel (book_hotel)" in (
        " ".join(expecting[0].split())
    )
    assert "(in " in expecting[0]
    listed = saga_cli("list", "--type", "travel_choreography", "--wide", env=env)
    assert "(tracked)" in listed.stdout, listed.stdout


async def test_an_event_whose_instance_never_starts_is_listed_as_an_anomaly(tracker):
    address = tracker.address
    verdicts = await ingest(address, cloud_event("hotel_booked", "never", "/hotel"))
    assert verdicts == [ingest_pb.INGEST_VERDICT_HELD]
    env = {"SAGA_ADDRESS": address}
    for _ in range(100):  # the sweep moves it once its wait (0.2 s) is over: bounded
        listed = saga_cli("events", "anomalies", "--correlation", "never", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        anomalies = json.loads(listed.stdout).get("anomalies", [])
        if anomalies:
            break
        await asyncio.sleep(0.2)
    [anomaly] = anomalies
    assert anomaly["event_type"] == T + "hotel_booked"
    assert anomaly["saga_type"] == "travel_choreography"
    assert anomaly["source"] == "/hotel"
    table = saga_cli("events", "anomalies", "--saga-type", "travel_choreography", env=env)
    assert "hotel_booked" in table.stdout and "WHY" in table.stdout
    none = saga_cli("events", "anomalies", "--source", "/nobody", env=env)
    assert none.returncode == 0 and "no event anomalies" in none.stderr + none.stdout
