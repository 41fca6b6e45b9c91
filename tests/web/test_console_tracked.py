"""A tracked (choreographed) saga in the console, in a real browser, against a real
`saga serve` whose events come in over gRPC (IngestEvents): the list marks it tracked,
its page says what it expects next, from whom and by when, an EVENT_ANOMALY row reads
as the event and why, a flagged booking sits in the intervention list with working
Retry, Resolve and Abort buttons, and an event whose instance never started is listed
in the event anomalies panel."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from saga.v1 import ingest_pb2 as ingest_pb
from saga.v1 import ingest_pb2_grpc as ingest_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.tracked_sagas import T
from tests.web.conftest import wait_until
from tools.processes import ChildProcess, orchestrator_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tracker(
    tmp_path_factory: pytest.TempPathFactory, participants: ChildProcess
) -> Iterator[ChildProcess]:
    """`saga serve --http-listen` tracking tests.web.tracked_types, no broker (the
    example participants serve the hotel's CancelHotel, a rescue's call)."""
    workdir = tmp_path_factory.mktemp("tracked-console")
    process = orchestrator_process(
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        participants.info["services"],
        env={"PYTHONPATH": str(ROOT)},
        name="orchestrator-tracked-console",
        extra_args=[
            "--http-listen", "127.0.0.1:0",
            "--definitions", "tests.web.tracked_types",
            "--tracked-wait-for-start", "0.2",
        ],
    )  # fmt: skip
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def channel(tracker: ChildProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(tracker.address) as opened:
        yield opened


def ingest(channel: grpc.Channel, booking: str, *kinds: str, event_id: str = "") -> None:
    stub = ingest_grpc.SagaEventIngestStub(channel)
    events = [
        ingest_pb.CloudEvent(
            id=event_id or f"{kind}-{booking}",
            source=f"/{kind.split('_')[0]}",
            spec_version="1.0",
            type=T + kind,
            text_data=json.dumps({"booking_id": booking}),
        )
        for kind in kinds
    ]
    stub.IngestEvents(ingest_pb.IngestEventsRequest(events=events), timeout=10)


def instance(channel: grpc.Channel, booking: str) -> pb.Saga:
    stub = pb_grpc.SagaOrchestratorStub(channel)
    [saga] = stub.ListSagas(pb.ListSagasRequest(correlation_id=booking), timeout=5).sagas
    return saga


def booking() -> str:
    return f"B-{uuid.uuid4().hex[:8]}"


def flagged(channel: grpc.Channel) -> pb.Saga:
    """A booking whose flight and hotel came, then no car within its 1.5 s: flagged."""
    name = booking()
    ingest(channel, name, "booking_started", "flight_booked", "hotel_booked")
    stub = pb_grpc.SagaOrchestratorStub(channel)
    return wait_until(stub, instance(channel, name).saga_id, lambda saga: saga.needs_intervention)


def act(page: Any, saga: pb.Saga, button: str, reason: str) -> None:
    page.locator(f"tr[data-saga-id='{saga.saga_id}']").get_by_role("button", name=button).click()
    dialog = page.get_by_role("dialog")
    operator = dialog.get_by_label("Your name (recorded as the operator)")
    if operator.is_visible():
        operator.fill("Otto Operator")
    dialog.get_by_label("Reason (goes into the saga's log)").fill(reason)
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="hidden")


def test_a_tracked_saga_shows_what_it_expects_next_and_its_anomalies(
    tracker: ChildProcess, channel: grpc.Channel, open_page: Any
):
    name = booking()
    ingest(channel, name, "booking_started")
    ingest(channel, name, "booking_started", event_id=f"again-{name}")  # a second start
    saga = instance(channel, name)
    page = open_page(f"{tracker.info['console_url']}#/sagas?correlation_id={name}")
    row = page.locator(f"tr[data-saga-id='{saga.saga_id}']")
    row.locator(".badge.tracked").wait_for()

    page.goto(f"{tracker.info['console_url']}#/saga/{saga.saga_id}")
    expecting = page.locator("#saga-header li.expecting[data-step='book_flight']")
    expecting.wait_for()
    text = expecting.inner_text()
    assert f"expecting {T}flight_booked or {T}flight_booking_failed from flight by " in text
    assert "(in " in text
    assert "Tracked" in page.locator("#saga-header").inner_text()
    anomaly = page.locator("#log-rows tr.anomaly")
    anomaly.wait_for()
    assert "EVENT_ANOMALY (event not applied)" in anomaly.inner_text()
    assert f"event {T}booking_started (id again-{name})" in anomaly.inner_text()
    marks = page.locator("svg.timeline path.mark title").all_text_contents()
    assert any(mark.startswith(f"expecting {T}flight_booked") for mark in marks), marks
    assert any(mark.startswith("event anomaly: ") for mark in marks), marks
    assert not any("accepted: waiting for its completion" in mark for mark in marks)


def test_an_event_whose_instance_never_starts_is_in_the_anomalies_panel(
    tracker: ChildProcess, channel: grpc.Channel, open_page: Any
):
    name = booking()
    ingest(channel, name, "flight_booked")
    page = open_page(f"{tracker.info['console_url']}#/intervention")
    row = page.locator(f"#event-anomalies tr[data-event-id='flight_booked-{name}']")
    for _ in range(60):  # the held event becomes an anomaly on the next sweep: bounded
        page.locator("#event-anomalies").wait_for()
        if row.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    text = row.inner_text()
    assert f"{T}flight_booked" in text and name in text and "travel_choreography" in text


def test_a_flagged_tracked_saga_is_retried_resolved_and_aborted_from_the_intervention_list(
    tracker: ChildProcess, channel: grpc.Channel, open_page: Any
):
    stub = pb_grpc.SagaOrchestratorStub(channel)
    retried, resolved = flagged(channel), flagged(channel)
    page = open_page(f"{tracker.info['console_url']}#/intervention")
    for saga in (retried, resolved):
        row = page.locator(f"tr[data-saga-id='{saga.saga_id}']")
        row.wait_for()
        assert row.locator(".badge.tracked").count() == 1
        assert row.locator(".stuck-step").inner_text() == "rent_car"

    act(page, retried, "Retry", "the car rental is back")
    history = stub.GetSagaHistory(pb.GetSagaHistoryRequest(saga_id=retried.saga_id), timeout=5)
    assert pb.TRANSITION_EVENT_SAGA_RETRIED in [row.event for row in history.transitions]

    act(page, resolved, f"Resolve step rent_car of saga {resolved.saga_id}", "car booked by phone")
    done = wait_until(stub, resolved.saga_id, lambda saga: saga.status == pb.SAGA_STATUS_COMPLETED)
    assert not done.needs_intervention

    waiting = booking()
    ingest(channel, waiting, "booking_started")
    saga = instance(channel, waiting)
    page.goto(f"{tracker.info['console_url']}#/saga/{saga.saga_id}")
    page.locator("#saga-header li.expecting").wait_for()
    page.locator("#saga-header").get_by_role("button", name="Abort").click()
    dialog = page.get_by_role("dialog")
    operator = dialog.get_by_label("Your name (recorded as the operator)")
    if operator.is_visible():
        operator.fill("Otto Operator")
    dialog.get_by_label("Reason (goes into the saga's log)").fill("customer cancelled")
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="hidden")
    aborted = page.locator("#log-rows tr", has_text="SAGA_ABORTED")
    aborted.wait_for()
    assert "customer cancelled" in aborted.inner_text()
