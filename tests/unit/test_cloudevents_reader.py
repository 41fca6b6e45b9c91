"""The CloudEvents reader every way in shares: structured, batched and binary modes (with
each header prefix), what lands where in an IncomingEvent, every bad input refused with
a message naming what is wrong; and what the CloudEvents SDK writes, read back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import amqp, http, kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from orchestrator.core.incoming import CommandEvent
from orchestrator.events.ingest.cloudevents import (
    BATCH,
    STRUCTURED,
    MalformedEvent,
    UnsupportedFormat,
    is_json,
    parse_message,
    structured_json,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def document(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/flight",
        "type": "com.example.travel.flight_booked",
        "time": "2026-03-01T12:00:00Z",
        "subject": "booking b-1",
        "bookingid": "b-1",
        "data": {"booking_id": "b-1", "seats": 2},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def structured(doc: object, content_type: str = STRUCTURED, **options):
    return parse_message([], content_type, json.dumps(doc).encode(), via="test", **options)


def test_structured_mode_reads_every_attribute():
    [event] = structured(document())
    assert (event.source, event.id, event.type) == (
        "/flight",
        "e-1",
        "com.example.travel.flight_booked",
    )
    assert event.time == T0
    assert event.subject == "booking b-1"
    assert event.data == {"booking_id": "b-1", "seats": 2}
    assert event.extensions == {"bookingid": "b-1"}
    assert event.received_via == "test"


def test_structured_mode_with_a_charset_and_extension_types():
    [event] = structured(
        document(count=3, urgent=True, time="2026-03-01T13:00:00+01:00"),
        STRUCTURED + "; charset=utf-8",
    )
    assert event.extensions["count"] == "3" and event.extensions["urgent"] == "true"
    assert event.time == T0


def test_structured_data_base64_is_decoded_when_json_and_left_out_otherwise():
    encoded = base64.b64encode(b'{"booking_id": "b-9"}').decode()
    [json_data] = structured(
        document(data=None, data_base64=encoded, datacontenttype="application/json")
    )
    assert json_data.data == {"booking_id": "b-9"}
    [opaque] = structured(
        document(data=None, data_base64=encoded, datacontenttype="application/octet-stream")
    )
    assert opaque.data is None
    assert opaque.extensions["datacontenttype"] == "application/octet-stream"


def test_an_event_without_data_or_time_reads():
    [event] = structured(document(data=None, time=None, subject=None))
    assert event.data is None and event.time is None and event.subject == ""


def test_batched_mode_reads_every_event_in_order():
    events = structured([document(id="a"), document(id="b")], BATCH, batch_limit=10)
    assert [e.id for e in events] == ["a", "b"]


def test_binary_mode_http_headers_are_percent_decoded():
    headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "e-2"),
        ("ce-source", "/hotel"),
        ("ce-type", "com.example.travel.hotel_booked"),
        ("ce-subject", "room%2012%25"),
        ("ce-time", "2026-03-01T12:00:00Z"),
        ("Content-Type", "application/json"),
        ("X-Other", "ignored"),
    ]
    [event] = parse_message(
        headers, "application/json", b'{"room": 12}', via="http", percent_encoded=True
    )
    assert event.subject == "room 12%"
    assert event.data == {"room": 12}
    assert event.time == T0
    assert event.extensions == {"datacontenttype": "application/json"}


@pytest.mark.parametrize("prefix", ["ce-", "ce_", "cloudEvents:", "cloudEvents_", "CE-"])
def test_binary_mode_takes_every_prefix(prefix):
    headers = {
        f"{prefix}specversion": "1.0",
        f"{prefix}id": "e-3",
        f"{prefix}source": "/car",
        f"{prefix}type": "com.example.travel.car_rented",
        f"{prefix}bookingid": b"b-3",
    }
    [event] = parse_message(headers.items(), "application/json", b"[1, 2]", via="rabbitmq")
    assert event.id == "e-3" and event.extensions["bookingid"] == "b-3"
    assert event.data == [1, 2]


def test_binary_mode_data_that_is_not_json_is_left_out_and_an_empty_body_is_no_data():
    headers = [("ce-specversion", "1.0"), ("ce-id", "x"), ("ce-source", "s"), ("ce-type", "t")]
    [text] = parse_message(headers, "text/plain", b"hello", via="nats")
    assert text.data is None and text.extensions["datacontenttype"] == "text/plain"
    [empty] = parse_message(headers, None, b"", via="nats")
    assert empty.data is None


def test_json_content_types():
    assert all(
        is_json(t)
        for t in (None, "application/json", "text/json; charset=utf-8", "application/x+json")
    )
    assert not any(is_json(t) for t in ("text/plain", "application/xml", "application/protobuf"))


BAD_STRUCTURED = [
    (document(specversion=None), "attribute 'specversion' is missing"),
    (document(specversion="0.3"), "only '1.0' is read"),
    (document(id=None), "attribute 'id' is missing or empty"),
    (document(id=""), "attribute 'id' is missing or empty"),
    (document(source=None), "attribute 'source' is missing or empty"),
    (document(type=None), "attribute 'type' is missing or empty"),
    (document(id=7), "attribute 'id' must be a string"),
    (document(id="x" * 1025), "attribute 'id' is over 1024 characters"),
    (document(source="a\x00b"), "attribute 'source': contains U+0000"),
    (document(time="yesterday"), "attribute 'time' is not an RFC 3339 timestamp"),
    (document(time="2026-03-01T12:00:00"), "attribute 'time' needs a UTC offset"),
    (document(BookingId="x"), "lower-case letters and digits"),
    (document(bookingid={"a": 1}), "must be a string, number or boolean, not dict"),
    (document(data={"k": "v\x00"}), "data: contains U+0000"),
    (document(data_base64="%%%"), "both"),
    (document(data=None, data_base64="%%%"), "'data_base64' is not base64"),
    (
        document(
            data=None,
            data_base64=base64.b64encode(b"{x").decode(),
            datacontenttype="application/json",
        ),
        "data_base64 is not JSON",
    ),
    ([document()], "an event must be a JSON object, not an array"),
    ("text", "an event must be a JSON object, not a string"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_STRUCTURED)
def test_a_bad_structured_event_names_what_is_wrong(doc, message):
    with pytest.raises(MalformedEvent) as refused:
        structured(doc)
    assert message in str(refused.value)


def test_nesting_beyond_the_bound_is_refused():
    deep: object = "leaf"
    for _ in range(70):
        deep = [deep]
    with pytest.raises(MalformedEvent, match="nested over 64 deep"):
        structured(document(data=deep))


def test_a_body_that_is_not_json_is_refused():
    with pytest.raises(MalformedEvent, match="the body is not JSON"):
        parse_message([], STRUCTURED, b"{oops", via="test")


def test_a_bad_event_in_a_batch_is_named_by_its_index():
    with pytest.raises(MalformedEvent, match=r"^event 1: attribute 'id' is missing"):
        structured([document(), document(id=None)], BATCH, batch_limit=10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"not": "an array"}, "a batch must be a JSON array, not a value"),
        ([document()] * 3, "a batch holds at most 2 events, this one 3"),
    ],
)
def test_bad_batches(body, message):
    with pytest.raises(MalformedEvent, match=message):
        structured(body, BATCH, batch_limit=2)


def test_batches_are_read_only_where_allowed():
    with pytest.raises(UnsupportedFormat, match="over HTTP only"):
        structured([document()], BATCH)


@pytest.mark.parametrize(
    ("content_type", "headers", "error", "message"),
    [
        ("application/cloudevents+avro", [], UnsupportedFormat, "is not read"),
        ("text/plain", [], UnsupportedFormat, "not a CloudEvent"),
        (None, [], UnsupportedFormat, "content type 'none'"),
        ("application/json", [("ce-id", "x")], MalformedEvent, "ce-specversion header is missing"),
        (
            "application/json",
            [("ce-specversion", "1.0"), ("ce-id", "x"), ("ce-source", "s"), ("ce-type", "t")],
            MalformedEvent,
            "the data is not JSON",
        ),
        ("application/json", [("ce-specversion", b"\xff")], MalformedEvent, "is not UTF-8"),
    ],
)
def test_bad_messages(content_type, headers, error, message):
    with pytest.raises(error, match=message):
        parse_message(headers, content_type, b"{not json", via="test")


SDK_EVENT = CloudEvent(
    attributes={
        "type": "com.example.travel.flight_booked",
        "source": "/flight",
        "id": "sdk-1",
        "time": T0,
        "subject": "a b%c",
        "bookingid": "b-1",
        "datacontenttype": "application/json",
    },
    data={"booking_id": "b-1"},
)


@pytest.mark.parametrize(
    "encode",
    [
        lambda e: http.to_binary(e, JSONFormat()),
        lambda e: http.to_structured(e, JSONFormat()),
    ],
    ids=["http-binary", "http-structured"],
)
def test_what_the_sdk_writes_over_http_reads_back(encode):
    message = encode(SDK_EVENT)
    [event] = parse_message(
        message.headers.items(),
        next((v for k, v in message.headers.items() if k.lower() == "content-type"), None),
        message.body,
        via="http",
        percent_encoded=True,
    )
    assert (event.id, event.source, event.subject, event.time) == ("sdk-1", "/flight", "a b%c", T0)
    assert event.data == {"booking_id": "b-1"}
    assert event.extensions["bookingid"] == "b-1"


def test_what_the_sdk_writes_for_amqp_and_kafka_reads_back():
    amqp_message = amqp.to_binary(SDK_EVENT, JSONFormat())
    kafka_message = kafka.to_binary(SDK_EVENT, JSONFormat())
    for headers, body in (
        (amqp_message.application_properties, amqp_message.application_data),
        (kafka_message.headers, kafka_message.value),
    ):
        [event] = parse_message(headers.items(), "application/json", body, via="rabbitmq")
        assert (event.id, event.subject, event.time) == ("sdk-1", "a b%c", T0)
        assert event.data == {"booking_id": "b-1"}


def test_command_events_are_written_in_the_json_format_and_read_back():
    command = CommandEvent(
        id="saga-1:book_flight:compensate",
        type="com.example.travel.cancel_flight",
        source="saga-orchestrator",
        subject="saga-1",
        data={"saga_id": "saga-1", "step": "book_flight"},
        time=T0,
    )
    body = structured_json(command)
    assert json.loads(body)["time"] == "2026-03-01T12:00:00Z"
    [event] = parse_message([], STRUCTURED, body, via="test")
    assert (event.id, event.type, event.subject, event.time) == (
        command.id,
        command.type,
        "saga-1",
        T0,
    )
    assert event.data == {"saga_id": "saga-1", "step": "book_flight"}
