"""How the CLI draws a tracked saga's wait: `saga get`'s Expecting line (by when, then
overdue) and `saga watch`'s line under its steps, from the step's STEP_WAITING row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from orchestrator.cli.rendering.sagas import expectation_text
from orchestrator.cli.rendering.watch import WatchState, watch_view
from saga.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = "com.example.travel."


def waiting_step(deadline: datetime, *, undo: bool = False) -> pb.Step:
    step = pb.Step(
        name="book_hotel",
        participant="hotel",
        expected_event_types=[T + "hotel_booked", T + "hotel_booking_failed"],
        expecting_undo=undo,
    )
    step.wait_deadline.FromDatetime(deadline)
    return step


@pytest.mark.parametrize(
    ("seconds", "when"), [(12, "(in 12.0s)"), (-3, "(overdue)"), (0, "(overdue)")]
)
def test_the_expecting_line_says_what_from_whom_and_by_when(seconds: int, when: str) -> None:
    text = expectation_text(waiting_step(NOW + timedelta(seconds=seconds)), NOW)
    assert text.startswith(
        f"{T}hotel_booked or {T}hotel_booking_failed from hotel (book_hotel) by "
    )
    assert text.endswith(when)


def test_an_unwinding_step_says_it_waits_for_its_undo() -> None:
    text = expectation_text(waiting_step(NOW + timedelta(seconds=5), undo=True), NOW)
    assert "(book_hotel, undoing it)" in text


def render(state: WatchState) -> str:
    console = Console(width=200, record=True)
    console.print(watch_view(state, now=NOW, width=200))
    return console.export_text()


def row(seq: int, event: int, status: int, reason: str = "") -> pb.Transition:
    return pb.Transition(
        seq=seq,
        event=event,
        step="book_hotel",
        saga_status=pb.SAGA_STATUS_RUNNING,
        step_status=status,
        reason=reason,
    )


def test_watch_shows_the_wait_until_another_row_moves_the_step() -> None:
    saga = pb.Saga(saga_id="s-1", saga_type="travel_choreography", tracked=True)
    saga.steps.append(pb.Step(name="book_hotel", participant="hotel"))
    state = WatchState.of(saga)
    expecting = f"expecting {T}hotel_booked or {T}hotel_booking_failed within 30s"
    state.apply(row(1, pb.TRANSITION_EVENT_STEP_WAITING, pb.STEP_STATUS_WAITING, expecting))
    assert f"book_hotel (hotel): {expecting}" in render(state)
    state.apply(row(2, pb.TRANSITION_EVENT_EVENT_ANOMALY, pb.STEP_STATUS_UNSPECIFIED, "early"))
    assert f"book_hotel (hotel): {expecting}" in render(state)
    state.apply(row(3, pb.TRANSITION_EVENT_STEP_COMPLETED, pb.STEP_STATUS_COMPLETED))
    assert "expecting" not in render(state).split("SEQ")[0]
