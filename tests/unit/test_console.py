"""What `saga` shows: tables, plain lines and JSON rendered from API messages, no server.

Rendered without colour at a fixed width, so each test reads what an operator
would read in a pipe or on a terminal of that size.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import any_pb2, timestamp_pb2

from orchestrator.cli import parse_duration, parse_point_in_time
from orchestrator.cli import rendering as view
from orchestrator.cli.rendering import formats
from orchestrator.examples import TRAVEL_BOOKING
from saga.participants.flight.v1 import flight_pb2
from saga.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SAGA_ID = "6f1c2a9e-0b7d-4c55-9a43-2f1e8d7c6b5a"
LONG_ERROR = (
    "FAILED_PRECONDITION: injected failure: the request names 'fail-this-car', and this "
    "message goes on long enough to need more than one line on any sensible terminal"
)


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def saga(status: int = pb.SAGA_STATUS_FAILED, **fields) -> pb.Saga:
    message = pb.Saga(
        saga_id=SAGA_ID,
        saga_type="travel_booking",
        definition_version=1,
        correlation_id="trip-1",
        status=status,
        create_time=stamp(T0),
        update_time=stamp(T0 + timedelta(seconds=2)),
        steps=[
            pb.Step(
                name="book_flight",
                group="book_travel",
                status=pb.STEP_STATUS_COMPENSATED,
                attempts=1,
                compensation_attempts=2,
            ),
            pb.Step(
                name="rent_car",
                group="book_travel",
                status=pb.STEP_STATUS_FAILED,
                attempts=3,
                error=LONG_ERROR,
                next_attempt_time=stamp(T0 + timedelta(seconds=5)),
            ),
            pb.Step(name="charge_payment", status=pb.STEP_STATUS_PENDING),
        ],
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def transition(seq: int, event: int, seconds: float, step: str = "", **fields) -> pb.Transition:
    return pb.Transition(
        seq=seq,
        event=event,
        time=stamp(T0 + timedelta(seconds=seconds)),
        step=step,
        actor=fields.pop("actor", "engine"),
        **fields,
    )


def lines_of(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


# --- names, times, durations, JSON ------------------------------------------------------------


def test_status_and_event_names_drop_their_prefix_and_survive_unknown_values():
    assert view.saga_status_name(pb.SAGA_STATUS_COMPENSATING) == "COMPENSATING"
    assert view.step_status_name(pb.STEP_STATUS_COMPENSATION_FAILED) == "COMPENSATION_FAILED"
    assert view.event_name(pb.TRANSITION_EVENT_STEP_RESOLVED) == "STEP_RESOLVED"
    assert view.saga_status_name(99) == "99"  # a newer server's value


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0004, "0ms"),
        (0.85, "850ms"),
        (12.34, "12.3s"),
        (245, "4m05s"),
        (7380, "2h03m"),
        (273600, "3d04h"),
        (-3, "0ms"),  # clocks disagree a little: never a negative duration
    ],
)
def test_durations_are_short_and_comparable(seconds, text):
    assert view.format_duration(seconds) == text


def test_times_are_utc_and_marked_so():
    assert view.format_time(T0 + timedelta(microseconds=7000), millis=True) == (
        "2025-03-01 12:00:00.007Z"
    )
    assert view.format_time(None) == "-"
    assert view.format_age(T0, T0 + timedelta(seconds=75)) == "1m15s ago"
    assert view.format_due(T0 + timedelta(seconds=2), T0) == "in 2.0s"
    assert view.format_due(T0, T0 + timedelta(seconds=1)) == "in flight"


def test_json_uses_proto_field_names_and_a_single_line_when_asked():
    one_line = view.to_json(saga(), indent=None)
    assert "\n" not in one_line
    parsed = json.loads(one_line)
    assert parsed["saga_id"] == SAGA_ID
    assert parsed["steps"][0]["compensation_attempts"] == 2
    assert parsed["status"] == "SAGA_STATUS_FAILED"
    assert json.loads(view.to_json(saga())) == parsed


# --- tables -----------------------------------------------------------------------------------


def test_saga_list_in_a_pipe_keeps_every_column_and_one_line_per_saga():
    listed = [
        saga(failed_step="rent_car", needs_intervention=True),
        saga(pb.SAGA_STATUS_COMPLETED, correlation_id="trip-2"),
    ]
    text = view.render_plain(
        view.sagas_table(listed, now=T0 + timedelta(seconds=62), short_ids=False)
    )
    header, failed, completed = lines_of(text)
    assert header.split() == [
        "SAGA", "ID", "TYPE", "CORRELATION", "STATUS", "FAILED", "STEP", "CREATED", "UPDATED",
    ]  # fmt: skip
    assert failed.split() == [
        SAGA_ID, "travel_booking", "trip-1", "FAILED", "(needs", "intervention)", "rent_car",
        "2025-03-01", "12:00:00Z", "1m00s", "ago",
    ]  # fmt: skip
    assert completed.split()[3:5] == ["COMPLETED", "-"]


def test_saga_ids_are_shortened_when_asked():
    text = view.render_plain(view.sagas_table([saga()], now=T0, short_ids=True))
    assert lines_of(text)[1].split()[0] == SAGA_ID[-8:]


@pytest.mark.parametrize("width", [30, 50, 80, 120])
def test_a_narrow_terminal_drops_optional_columns_and_never_overflows(width):
    tables = [
        view.sagas_table([saga(failed_step="rent_car")], now=T0, short_ids=True, width=width),
        view.steps_table(saga().steps, now=T0, width=width),
        view.history_table(
            [transition(1, pb.TRANSITION_EVENT_STEP_FAILED, 0.5, "rent_car", error=LONG_ERROR)],
            width=width,
        ),
    ]
    for table in tables:
        text = view.render_plain(table, width=width)
        assert all(len(line) <= width for line in lines_of(text)), text
    steps = view.render_plain(tables[1], width=width)
    for essential in ("STEP", "STATUS", "rent_car", "FAILED"):
        assert essential in steps
    if width >= 50:  # an error folds over lines; it is never cut off
        assert "fail-this-car" in steps.replace("\n", "").replace(" ", "")


def test_steps_table_shows_attempts_next_attempt_and_error():
    text = view.render_plain(view.steps_table(saga().steps, now=T0), width=400)
    header, flight, car, charge = lines_of(text)
    assert header.split() == [
        "STEP", "GROUP", "STATUS", "ATTEMPTS", "COMP.", "ATTEMPTS", "NEXT", "ATTEMPT", "ERROR",
        "REPLY",
    ]  # fmt: skip
    assert flight.split() == ["book_flight", "book_travel", "COMPENSATED", "1", "2", "-", "-", "-"]
    assert car.split()[:7] == ["rent_car", "book_travel", "FAILED", "3", "0", "in", "5.0s"]
    assert car.rstrip(" -").endswith(LONG_ERROR)
    assert charge.split() == ["charge_payment", "-", "PENDING", "0", "0", "-", "-", "-"]


def test_a_steps_reply_is_summarised_in_one_short_line():
    packed = any_pb2.Any()
    packed.Pack(flight_pb2.BookFlightResponse(booking_id="bk-1", flight_number="LH400", seats=2))
    assert view.reply_summary(packed) == 'booking_id="bk-1" flight_number="LH400" seats=2'
    packed.Pack(flight_pb2.BookFlightResponse(booking_id="x" * 100))
    assert len(view.reply_summary(packed)) == view.REPLY_SUMMARY_LENGTH
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Secret", value=b"")
    assert view.reply_summary(unknown) == "acme.v1.Secret"


def test_saga_view_has_a_header_of_the_fields_that_are_set():
    text = view.render_plain(
        view.saga_view(
            saga(failed_step="rent_car", failure_reason="step rent_car failed"),
            now=T0 + timedelta(seconds=10),
        )
    )
    lines = lines_of(text)
    assert lines[0].split() == ["Saga:", SAGA_ID]
    assert lines[1].split() == ["Type:", "travel_booking", "v1"]
    assert any(line.split() == ["Status:", "FAILED"] for line in lines)
    assert any(line.split() == ["Failed", "step:", "rent_car"] for line in lines)
    assert ["Created:", "2025-03-01", "12:00:00Z", "(10.0s", "ago)"] in [
        line.split() for line in lines
    ]
    assert "Deadline" not in text and "Idempotency" not in text
    assert "book_flight" in text


def test_history_table_has_one_row_per_transition_with_actor_and_reason():
    text = view.render_plain(
        view.history_table(
            [
                transition(1, pb.TRANSITION_EVENT_SAGA_STARTED, 0, saga_status=1),
                transition(
                    2,
                    pb.TRANSITION_EVENT_SAGA_ABORTED,
                    1.5,
                    saga_status=pb.SAGA_STATUS_COMPENSATING,
                    actor="operator:carol",
                    reason="customer called",
                ),
            ]
        )
    )
    header, first, second = lines_of(text)
    assert header.split()[:3] == ["SEQ", "TIME", "EVENT"]
    assert first.split()[:4] == ["1", "2025-03-01", "12:00:00.000Z", "SAGA_STARTED"]
    assert second.split()[:4] == ["2", "2025-03-01", "12:00:01.500Z", "SAGA_ABORTED"]
    assert "operator:carol  customer called" in second


def test_text_from_the_server_is_printed_literally_never_as_markup():
    step = pb.Step(name="x", status=pb.STEP_STATUS_FAILED, error="bad [bold]value[/bold] [red]")
    assert "bad [bold]value[/bold] [red]" in view.render_plain(view.steps_table([step], now=T0))


def test_every_step_status_has_a_colour_and_a_name():
    for value in pb.StepStatus.values():
        if value != pb.STEP_STATUS_UNSPECIFIED:
            assert value in formats.STEP_STATUS_STYLES, pb.StepStatus.Name(value)
    assert view.step_status_name(pb.STEP_STATUS_NOTHING_TO_UNDO) == "NOTHING_TO_UNDO"
    assert view.event_name(pb.TRANSITION_EVENT_STEP_NOTHING_TO_UNDO) == "STEP_NOTHING_TO_UNDO"


def test_statuses_carry_their_colours_and_intervention_is_flagged():
    assert view.saga_status_text(saga(pb.SAGA_STATUS_COMPLETED)).style == "green"
    assert view.saga_status_text(saga(pb.SAGA_STATUS_RUNNING)).style == "blue"
    assert view.saga_status_text(saga(pb.SAGA_STATUS_COMPENSATING)).style == "yellow"
    flagged = view.saga_status_text(saga(needs_intervention=True))
    assert (flagged.style, flagged.plain) == ("red", "FAILED (needs intervention)")
    assert flagged.spans[0].style == view.INTERVENTION_STYLE
    assert "\x1b[" not in view.render_plain(view.sagas_table([saga()], now=T0, short_ids=True))


# --- plain watch lines ------------------------------------------------------------------------


def test_a_transition_is_one_plain_line_with_its_free_text_last_and_quoted():
    line = view.transition_line(
        transition(
            7,
            pb.TRANSITION_EVENT_STEP_FAILED,
            0.25,
            "rent_car",
            saga_status=pb.SAGA_STATUS_RUNNING,
            step_status=pb.STEP_STATUS_FAILED,
            attempt=2,
            error="UNAVAILABLE:\n  gone",
        )
    )
    assert line == (
        "#7 2025-03-01T12:00:00.250Z STEP_FAILED step=rent_car saga=RUNNING "
        'step_status=FAILED attempt=2 actor=engine error="UNAVAILABLE: gone"'
    )
    saga_line = view.transition_line(
        transition(
            9,
            pb.TRANSITION_EVENT_SAGA_ABORTED,
            1,
            saga_status=pb.SAGA_STATUS_COMPENSATING,
            actor="operator:carol",
            reason="customer called",
        )
    )
    assert saga_line == (
        "#9 2025-03-01T12:00:01.000Z SAGA_ABORTED saga=COMPENSATING actor=operator:carol "
        'reason="customer called"'
    )


# --- watching ---------------------------------------------------------------------------------


def compensated_log() -> list[pb.Transition]:
    e = pb
    return [
        transition(1, e.TRANSITION_EVENT_SAGA_STARTED, 0, saga_status=1),
        transition(2, e.TRANSITION_EVENT_STEP_STARTED, 0.1, "book_flight", saga_status=1,
                   step_status=e.STEP_STATUS_STARTED, attempt=1),
        transition(3, e.TRANSITION_EVENT_STEP_COMPLETED, 0.4, "book_flight", saga_status=1,
                   step_status=e.STEP_STATUS_COMPLETED, attempt=1),
        transition(4, e.TRANSITION_EVENT_STEP_STARTED, 0.4, "rent_car", saga_status=1,
                   step_status=e.STEP_STATUS_STARTED, attempt=1),
        transition(5, e.TRANSITION_EVENT_STEP_RETRY_SCHEDULED, 0.6, "rent_car", saga_status=1,
                   step_status=e.STEP_STATUS_STARTED, attempt=2, error="UNAVAILABLE"),
        transition(6, e.TRANSITION_EVENT_STEP_FAILED, 1.0, "rent_car", saga_status=1,
                   step_status=e.STEP_STATUS_FAILED, attempt=2, error="DECLINED"),
        transition(7, e.TRANSITION_EVENT_SAGA_COMPENSATING, 1.0, saga_status=2),
        transition(8, e.TRANSITION_EVENT_COMPENSATION_STARTED, 1.0, "book_flight", saga_status=2,
                   step_status=e.STEP_STATUS_COMPENSATING, attempt=1),
        transition(9, e.TRANSITION_EVENT_COMPENSATION_COMPLETED, 1.3, "book_flight",
                   saga_status=2, step_status=e.STEP_STATUS_COMPENSATED, attempt=1),
        transition(10, e.TRANSITION_EVENT_SAGA_FAILED, 1.3, saga_status=4, error="DECLINED"),
    ]  # fmt: skip


def test_watch_state_rebuilds_each_step_from_the_log():
    state = view.WatchState.of(saga(), show_after_seq=6)
    log = compensated_log()
    for row in log[:5]:
        state.apply(row)
    assert state.status == pb.SAGA_STATUS_RUNNING and not state.terminal
    car = state.steps["rent_car"]
    assert (car.status, car.attempts, car.finished) == (pb.STEP_STATUS_STARTED, 2, None)

    for row in log[5:] + log[:3]:  # a repeated (older) seq after a reconnect changes nothing
        state.apply(row)

    assert state.terminal and state.last_seq == 10
    assert state.finished == T0 + timedelta(seconds=1.3)
    flight = state.steps["book_flight"]
    assert flight.status == pb.STEP_STATUS_COMPENSATED
    assert (flight.attempts, flight.compensation_attempts) == (1, 1)
    assert flight.finished - flight.started == timedelta(seconds=0.3)
    assert flight.compensation_finished - flight.compensation_started == timedelta(seconds=0.3)
    assert (car.status, car.error) == (pb.STEP_STATUS_FAILED, "DECLINED")
    assert state.steps["charge_payment"].status == pb.STEP_STATUS_PENDING
    assert [row.seq for row in state.events] == [7, 8, 9, 10]  # only after --from-seq 6


def test_watch_view_shows_timings_and_running_steps_while_they_run():
    state = view.WatchState.of(saga())
    for row in compensated_log()[:4]:
        state.apply(row)
    text = view.render_plain(view.watch_view(state, now=T0 + timedelta(seconds=1.4)), width=120)
    lines = lines_of(text)
    assert lines[0] == f"saga {SAGA_ID}  travel_booking  trip-1  RUNNING  elapsed 1.4s"
    flight = next(line for line in lines if line.startswith("book_flight"))
    assert flight.split() == ["book_flight", "book_travel", "COMPLETED", "1", "+100ms", "300ms",
                              "-", "-"]  # fmt: skip
    car = next(line for line in lines if line.startswith("rent_car"))
    assert car.split()[2:6] == ["STARTED", "1", "+400ms", "1.0s…"]
    assert "STEP_STARTED" in lines[-1]


@pytest.mark.parametrize("width", [30, 60])
def test_watch_view_fits_a_narrow_terminal(width):
    state = view.WatchState.of(saga())
    for row in compensated_log():
        state.apply(row)
    text = view.render_plain(view.watch_view(state, now=T0, width=width), width=width)
    assert all(len(line) <= width for line in lines_of(text))
    if width >= 60:  # wide enough for the essential columns unfolded
        assert "COMPENSATED" in text and "SAGA_FAILED" in text


# --- definitions and the command line's own parsing -------------------------------------------


def test_describe_json_lists_steps_rpcs_policies_and_the_pivot():
    document = view.definition_document(TRAVEL_BOOKING)
    json.dumps(document)  # plain data
    assert document["saga_type"] == "travel_booking"
    names = [step["name"] for step in document["steps"]]
    assert names == [step.name for step in TRAVEL_BOOKING.all_steps]
    flight = document["steps"][0]
    assert flight["action"].endswith("FlightService.BookFlight")
    assert flight["retry"]["max_attempts"] >= 1
    pivots = [step for step in document["steps"] if step["compensation"] is None]
    if pivots:
        assert document["pivot_stage"] == pivots[0]["stage"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), ("1w", 604800)],
)
def test_durations_on_the_command_line(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1x", "h", "1h 30m", "-5m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_since_and_until_take_iso_times_in_utc_or_a_duration_ago():
    now = T0
    assert parse_point_in_time("1h", now) == T0 - timedelta(hours=1)
    assert parse_point_in_time("2025-03-01T10:00:00", now) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_point_in_time("2025-03-01T11:00:00+01:00", now) == datetime(
        2025, 3, 1, 10, tzinfo=UTC
    )
    assert parse_point_in_time("2025-03-01T10:00:00Z", now) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_point_in_time("yesterday", now)
