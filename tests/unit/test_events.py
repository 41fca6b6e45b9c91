"""A transition as a CloudEvent: the attributes CloudEvents 1.0 requires, deterministic ids,
data that parses back into saga.v1.SagaEventData, no payload unless a sink asks for it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import json_format

from orchestrator.core.events import (
    CONTENT_TYPE,
    EVENT_TYPES,
    LIFECYCLE_EVENTS,
    EventSet,
    EventSink,
    data_json,
    event_data,
    outbox_events,
    partition_of,
    render_event,
    rfc3339,
)
from orchestrator.core.records import (
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from saga.v1 import events_pb2, orchestrator_pb2

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
SECRET = "4111-1111-1111-1111"


def saga(**fields: object) -> SagaRecord:
    values: dict[str, object] = {
        "saga_id": "saga-1",
        "saga_type": "trip",
        "definition_version": 3,
        "correlation_id": "order-7",
        "payload": {"card": SECRET, "token": "tok_live_secret"},
        "status": SagaStatus.COMPLETED,
        "create_time": T0,
        "update_time": T0,
        "namespace": "acme",
        "output": b"\x0a\x03out",
    }
    values.update(fields)
    return SagaRecord(**values)  # type: ignore[arg-type]


def transition(event: TransitionEvent, seq: int = 7, **fields: object) -> TransitionRecord:
    values: dict[str, object] = {"saga_status": SagaStatus.COMPLETED}
    values.update(fields)
    return TransitionRecord("saga-1", seq, event, T0, **values)  # type: ignore[arg-type]


def rendered(body: bytes) -> dict[str, object]:
    event: dict[str, object] = json.loads(body)
    return event


def test_every_transition_has_a_versioned_reverse_dns_type():
    assert set(EVENT_TYPES) == set(TransitionEvent)
    for name in EVENT_TYPES.values():
        assert re.fullmatch(r"org\.saga-orchestrator\.[a-z]+\.[a-z_]+\.v1", name), name
    assert EVENT_TYPES[TransitionEvent.SAGA_COMPLETED] == "org.saga-orchestrator.saga.completed.v1"
    assert EVENT_TYPES[TransitionEvent.STEP_COMPLETED] == "org.saga-orchestrator.step.succeeded.v1"


def test_a_completed_saga_renders_a_valid_structured_cloudevent():
    body = render_event(
        saga(),
        transition(TransitionEvent.SAGA_COMPLETED),
        EventSink("bus"),
        traceparent="00-ab-cd-01",
    )
    event = rendered(body)

    assert event["specversion"] == "1.0"
    assert event["id"] == "saga-1:7"
    assert event["source"] == "/saga-orchestrator"
    assert event["type"] == "org.saga-orchestrator.saga.completed.v1"
    assert event["subject"] == "saga-1"
    assert event["time"] == "2024-05-01T12:00:00.123456Z"
    assert event["datacontenttype"] == "application/json"
    assert event["sequence"] == "00000000000000000007"
    assert event["sagatype"] == "trip"
    assert event["correlationid"] == "order-7"
    assert event["namespace"] == "acme"
    assert event["traceparent"] == "00-ab-cd-01"
    # Context attribute names: lowercase letters and digits only (CloudEvents 1.0).
    for name in event:
        assert re.fullmatch(r"[a-z0-9]+", name), name
    data = json_format.ParseDict(event["data"], events_pb2.SagaEventData())
    assert data == events_pb2.SagaEventData(
        saga_id="saga-1",
        namespace="acme",
        saga_type="trip",
        saga_version=3,
        correlation_id="order-7",
        status=orchestrator_pb2.SAGA_STATUS_COMPLETED,
    )
    assert CONTENT_TYPE == "application/cloudevents+json"


def test_rendering_is_deterministic_and_never_carries_the_input_payload():
    args = (saga(), transition(TransitionEvent.SAGA_COMPLETED), EventSink("bus"))
    body = render_event(*args)
    assert body == render_event(*args)
    assert SECRET.encode() not in body
    assert b"tok_live_secret" not in body
    assert b"payload" not in body


def test_a_sequence_string_orders_as_its_number():
    sequences = [
        rendered(
            render_event(saga(), transition(TransitionEvent.STEP_STARTED, seq), EventSink("bus"))
        )["sequence"]
        for seq in (2, 9, 10, 123)
    ]
    assert sequences == sorted(sequences)  # type: ignore[type-var]


def test_a_step_event_names_its_step_attempt_error_and_status():
    failed = transition(
        TransitionEvent.STEP_FAILED,
        saga_status=SagaStatus.COMPENSATING,
        step="charge_card",
        step_status=StepStatus.FAILED,
        attempt=3,
        error="card declined",
    )
    event = rendered(render_event(saga(needs_intervention=True), failed, EventSink("bus")))
    data = json_format.ParseDict(event["data"], events_pb2.SagaEventData())
    assert event["type"] == "org.saga-orchestrator.step.failed.v1"
    assert (data.step, data.attempt, data.error) == ("charge_card", 3, "card declined")
    assert data.status == orchestrator_pb2.SAGA_STATUS_COMPENSATING
    assert data.needs_intervention


def test_the_output_goes_in_only_for_a_sink_that_asks_and_only_under_its_cap():
    done = transition(TransitionEvent.SAGA_COMPLETED)
    output = saga().output
    assert output is not None

    def data(sink: EventSink) -> events_pb2.SagaEventData:
        (row,) = outbox_events([sink], saga(), [done])
        return json_format.ParseDict(rendered(row.body)["data"], events_pb2.SagaEventData())

    assert not data(EventSink("plain")).output_included
    assert data(EventSink("plain")).output == b""
    full = data(EventSink("full", include_payload=True))
    assert full.output_included and full.output == output
    capped = data(EventSink("capped", include_payload=True, max_output_bytes=len(output) - 1))
    assert not capped.output_included and capped.output == b""


def test_a_succeeded_step_s_reply_is_its_output():
    succeeded = transition(TransitionEvent.STEP_COMPLETED, step="book_hotel", attempt=1)
    steps = [
        StepRecord("saga-1", 0, "reserve_flight", StepStatus.COMPLETED, result=b"flight"),
        StepRecord("saga-1", 1, "book_hotel", StepStatus.COMPLETED, result=b"hotel"),
    ]
    sink = EventSink("full", events=EventSet.ALL, include_payload=True)
    (row,) = outbox_events([sink], saga(), [succeeded], steps)
    data = json_format.ParseDict(rendered(row.body)["data"], events_pb2.SagaEventData())
    assert data.output == b"hotel" and data.output_included


@pytest.mark.parametrize("events", list(EventSet))
def test_a_sink_selects_its_event_set_and_saga_types(events: EventSet):
    sink = EventSink("bus", events=events, saga_types=frozenset({"trip"}))
    log = [transition(event, seq) for seq, event in enumerate(TransitionEvent, start=1)]

    rows = outbox_events([sink], saga(), log)

    selected = {row.event_type for row in rows}
    if events is EventSet.ALL:
        assert selected == set(EVENT_TYPES.values())
    else:
        assert selected == {EVENT_TYPES[event] for event in LIFECYCLE_EVENTS}
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)
    assert outbox_events([sink], saga(saga_type="parcel"), log) == []
    assert outbox_events([], saga(), log) == []


def test_one_row_per_sink_and_selected_transition():
    sinks = [EventSink("a"), EventSink("b", events=EventSet.ALL, partitions=3)]
    log = [transition(TransitionEvent.STEP_STARTED, 2), transition(TransitionEvent.SAGA_FAILED, 3)]
    rows = outbox_events(sinks, saga(), log)
    assert [(row.sink, row.seq) for row in rows] == [("b", 2), ("a", 3), ("b", 3)]
    assert {row.partition for row in rows if row.sink == "b"} == {partition_of("saga-1", 3)}
    assert all(row.event_id == f"saga-1:{row.seq}" for row in rows)


def test_the_partition_is_a_stable_hash_of_the_saga_id():
    # CRC-32 values are fixed: the same partition in every process and every version.
    assert (partition_of("saga-1", 16), partition_of("order-42", 16)) == (9, 14)
    assert {partition_of(f"saga-{n}", 16) for n in range(200)} == set(range(16))
    assert partition_of("saga-1", 1) == 0


@pytest.mark.parametrize(
    ("record", "logged", "sink", "output"),
    [
        (saga(), transition(TransitionEvent.SAGA_COMPLETED), EventSink("bus"), b"out"),
        (
            saga(correlation_id="", namespace="default", needs_intervention=True),
            transition(
                TransitionEvent.COMPENSATION_FAILED,
                saga_status=SagaStatus.FAILED,
                step="book_hotel",
                attempt=4,
                error="timeout \u00e9\x00",
            ),
            EventSink("full", include_payload=True),
            bytes(range(256)),
        ),
        (
            saga(),
            transition(TransitionEvent.SAGA_STARTED),
            EventSink("full", include_payload=True),
            b"",
        ),
        (
            saga(),
            transition(TransitionEvent.SAGA_STARTED),
            EventSink("full", include_payload=True),
            None,
        ),
        (
            saga(),
            transition(TransitionEvent.STEP_COMPLETED),
            EventSink("cap", include_payload=True, max_output_bytes=2),
            b"abc",
        ),
    ],
)
def test_the_data_is_the_protobuf_json_mapping_of_saga_event_data(
    record: SagaRecord, logged: TransitionRecord, sink: EventSink, output: bytes | None
):
    expected = json_format.MessageToDict(event_data(record, logged, sink, output))
    assert data_json(record, logged, sink, output) == expected


def test_time_is_rfc3339_in_utc():
    east = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(east) == "2024-05-01T12:00:00.000000Z"


@pytest.mark.parametrize(
    "fields", [{"name": ""}, {"partitions": 0}, {"partitions": 5000}, {"source": ""}]
)
def test_a_sink_that_cannot_work_is_refused(fields: dict[str, object]):
    values: dict[str, object] = {"name": "bus", **fields}
    with pytest.raises(ValueError):
        EventSink(**values)  # type: ignore[arg-type]
