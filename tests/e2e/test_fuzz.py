"""Requests generated from the service's descriptors, sent to a running orchestrator on
SQLite and on PostgreSQL: no answer is INTERNAL or UNKNOWN, a refused request stores
nothing, and the server keeps serving.

Every field of every request message is drawn from its descriptor: enums including
numbers the API does not define, integers at their extremes, long and non-printable
strings, timestamps outside google.protobuf.Timestamp's range, Structs with NaN,
infinities and deep nesting, and page tokens forged from JSON. The default budget
is small enough for `make test`; SAGA_FUZZ_EXAMPLES=10000 runs longer.

Strings include U+0000 and, on the wire, surrogate code points: Python's protobuf
cannot encode a surrogate, so a stand-in character is generated and its bytes are
swapped for a surrogate's (the same length, so every length prefix still holds),
as another language's client could send them. A request holding either, in any
field, payload key or value or packed input, must be INVALID_ARGUMENT (for a
StartSagas request with U+0000, each such request's own result) and store nothing.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, json_format, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.tokens import make_token
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.participants.common.v1 import callbacks_pb2 as cb
from saga.v1 import events_admin_pb2, ingest_pb2, webhooks_pb2
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from saga.v1 import tasks_pb2 as tasks_pb
from tests.e2e.test_bad_input import row_counter
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SAGA_FUZZ_EXAMPLES", "600"))
SERVICE = pb.DESCRIPTOR.services_by_name["SagaOrchestrator"]
WEBHOOKS = webhooks_pb2.DESCRIPTOR.services_by_name["SagaWebhooks"]
EVENTS_SERVICE = events_admin_pb2.DESCRIPTOR.services_by_name["SagaEvents"]
"""The operators' event-sink service, fuzzed on the same server."""
OUR_FILES = {
    pb.DESCRIPTOR.name,
    events_admin_pb2.DESCRIPTOR.name,
    cb.DESCRIPTOR.name,
    tasks_pb.DESCRIPTOR.name,
    webhooks_pb2.DESCRIPTOR.name,
    ingest_pb2.DESCRIPTOR.name,
}
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
STORED_SAGA_IDS: list[str] = []
"""Sagas the test started before generating requests, for requests to name."""

SURROGATE_STAND_IN = "\ufdd0"
"""Generated where a surrogate should be; on the wire its bytes become U+D800's."""
SURROGATE_SWAP = (SURROGATE_STAND_IN.encode(), b"\xed\xa0\x80")
UNSTORABLE = ("\x00", SURROGATE_STAND_IN)

unstorable_texts = st.tuples(
    st.text(max_size=8), st.sampled_from(UNSTORABLE), st.text(max_size=8)
).map("".join)
texts = st.one_of(
    st.text(max_size=40),
    unstorable_texts,
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(["", " ", "travel_booking", "order_fulfillment", "\x00", "a\nb"]),
    st.uuids().map(str),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(float),
    st.text(max_size=20),
    unstorable_texts,
)
json_keys = st.text(max_size=8) | unstorable_texts
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=25,
)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


# Deeper than about 32 levels a Struct cannot even be built in Python (the request is
# re-decoded on copy); test_limits.py sends such bytes by hand.
payloads = st.one_of(
    st.dictionaries(json_keys, json_values, max_size=8),
    st.integers(min_value=1, max_value=30).map(deep),
    st.fixed_dictionaries(
        {
            "nights": st.floats(allow_nan=True, allow_infinity=True),
            "car_days": st.integers(min_value=-(2**64), max_value=2**64).map(float),
        }
    ),
)


def struct_of(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def token_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


page_tokens = st.one_of(
    texts,
    st.fixed_dictionaries(
        {
            "t": st.one_of(
                st.datetimes().map(lambda d: d.isoformat()),
                st.sampled_from(["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00"]),
                texts,
            ),
            "id": st.one_of(st.uuids().map(str), texts, st.integers()),
            "f": st.one_of(st.text(max_size=16), st.none()),
        }
    ).map(token_of),
    st.integers(min_value=-(10**31), max_value=10**31).map(
        lambda n: base64.urlsafe_b64encode(str(n).encode()).decode()
    ),
)
timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.one_of(st.integers(min_value=-(10**13), max_value=10**13), st.integers(*INT64)),
    nanos=st.integers(*INT32),
)


def value_of(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """A strategy for one field, from its descriptor: a short list of values for a
    repeated field (StartSagas' requests: each a generated or a nearly valid request)."""
    if not field.is_repeated:
        return single_value_of(field)
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        # A map (a CloudEvent's attributes): generated names, each a generated value.
        entry = field.message_type.fields_by_name["value"]
        keys = st.sampled_from(["time", "datacontenttype", "bookingid", "subject"]) | texts
        return st.dictionaries(keys, single_value_of(entry), max_size=3)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        item = messages(field.message_type) | one_wild_field(field.message_type)
        return st.lists(item, max_size=4)
    return st.lists(single_value_of(field), max_size=4)


def single_value_of(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """A strategy for one value of a field, from its descriptor."""
    if field.name == "page_token":
        return page_tokens
    if field.name == "token":
        # Shaped like a completion token, naming a stored saga (a synchronous one: none
        # of its steps has a token), or anything at all.
        return texts | st.builds(
            make_token,
            st.deferred(lambda: st.sampled_from(STORED_SAGA_IDS)) | st.uuids().map(str),
            st.integers(min_value=0, max_value=10**6),
            st.text(alphabet="abcdefXYZ-_0123", min_size=1, max_size=50),
        )
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name == "google.protobuf.Timestamp":
            return timestamps
        if full_name == "google.protobuf.Struct":
            return payloads.map(struct_of)
        return messages(field.message_type)
    if field.type == FieldDescriptor.TYPE_STRING:
        return texts
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.integers(*INT64)
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return st.integers(*INT32)
    raise NotImplementedError(f"no strategy for {field.full_name}")


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Any:
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        if value is None:
            continue
        field = getattr(message, name)
        if isinstance(value, dict):  # a map of messages
            for key, item in value.items():
                if item is not None:
                    field[key].CopyFrom(item)
        elif isinstance(value, list):
            field.extend(item for item in value if item is not None)
        elif hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def messages(descriptor: Descriptor) -> st.SearchStrategy[Any]:
    """A message with any subset of its fields set to generated values."""
    if descriptor.file.name not in OUR_FILES:  # a message of another file: leave it unset
        return st.just(None)
    fields = {field.name: st.none() | value_of(field) for field in descriptor.fields}
    return st.fixed_dictionaries(fields).map(lambda values: _build(descriptor, values))


def one_wild_field(descriptor: Descriptor) -> st.SearchStrategy[Any]:
    """A request valid but for one generated field (its saga id, if it has one, names a
    stored saga or is a well-formed UUID; a bulk action's names who and why), so each
    check is reached, not only the first
    one on the way, and values reach the store."""

    def with_field(field: FieldDescriptor) -> st.SearchStrategy[Any]:
        saga_ids = st.uuids().map(str) | st.deferred(lambda: st.sampled_from(STORED_SAGA_IDS))
        valid: dict[str, st.SearchStrategy[Any]] = {}
        if "saga_id" in descriptor.fields_by_name:
            valid["saga_id"] = saga_ids
        if "filter" in descriptor.fields_by_name:
            # A bulk action's: who and why given, so the filter's own checks are reached
            # (a filter with one wild field among them).
            bulk_filter = descriptor.fields_by_name["filter"].message_type
            valid |= {
                "reason": st.just("fuzz"),
                "requested_by": st.just("fuzz"),
                "dry_run": st.booleans(),
                "filter": one_wild_field(bulk_filter),
            }
            if "step" in descriptor.fields_by_name:
                valid["step"] = st.just("book_hotel")
        base = st.fixed_dictionaries(valid)
        return st.tuples(base, value_of(field)).map(
            lambda drawn: _build(descriptor, {**drawn[0], field.name: drawn[1]})
        )

    if not descriptor.fields:
        return st.just(_build(descriptor, {}))
    return st.sampled_from(list(descriptor.fields)).flatmap(with_field)


TRIP_TEXT_FIELDS = ["customer_id", "traveller_name", "flight_number", "hotel_id", "car_class"]


def poisoned_start(field: str, text: str, packed: bool) -> pb.StartSagaRequest:
    """A start that would succeed but for `text` in one of its input's strings, as a
    payload or packed: the unstorable text reaches as far as a check lets it."""
    trip = {**travel(), field: text}
    request = pb.StartSagaRequest(saga_type="travel_booking", correlation_id="fuzz-poisoned")
    if packed:
        request.input.Pack(json_format.ParseDict(trip, TravelBookingInput()))
    else:
        request.payload.CopyFrom(struct(trip))
    return request


poisoned_starts = st.builds(
    poisoned_start, st.sampled_from(TRIP_TEXT_FIELDS), unstorable_texts, st.booleans()
)
poisoned_calls = st.one_of(
    poisoned_starts.map(lambda start: (SERVICE.methods_by_name["StartSaga"], start)),
    poisoned_starts.map(
        lambda start: (
            SERVICE.methods_by_name["ExecuteSaga"],
            pb.ExecuteSagaRequest(start=start),
        )
    ),
    st.lists(poisoned_starts, min_size=1, max_size=3).map(
        lambda starts: (
            SERVICE.methods_by_name["StartSagas"],
            pb.StartSagasRequest(requests=starts),
        )
    ),
)
calls = (
    st.sampled_from([*SERVICE.methods, *EVENTS_SERVICE.methods]).flatmap(
        lambda method: st.tuples(
            st.just(method), messages(method.input_type) | one_wild_field(method.input_type)
        )
    )
    | poisoned_calls
)


def texts_in(message: Message) -> Iterator[str]:
    """Every string a request carries (map keys, Struct keys and values, a packed trip's
    fields), walked independently of the server's own check."""
    if isinstance(message, any_pb2.Any):
        trip = TravelBookingInput()
        if message.Unpack(trip):
            yield from texts_in(trip)
        return
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            items = [item for pair in value.items() for item in pair]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, str):
                yield item
            elif isinstance(item, Message):
                yield from texts_in(item)


def unstorable_in(message: Message) -> set[str]:
    """Which of U+0000 and the surrogate stand-in the message holds anywhere."""
    return {char for text in texts_in(message) for char in UNSTORABLE if char in text}


def on_the_wire(request: Message) -> bytes:
    """The request encoded, each surrogate stand-in now a surrogate (ill-formed UTF-8)."""
    return request.SerializeToString().replace(*SURROGATE_SWAP)


def call(channel: grpc.Channel, method: Any, request: Any) -> tuple[grpc.StatusCode, Any]:
    """The call's code and, for a unary call that succeeded, its response."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    output = message_factory.GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                path, request_serializer=on_the_wire, response_deserializer=output.FromString
            )(request, timeout=5)
            next(iter(stream), None)
            stream.cancel()
            return grpc.StatusCode.OK, None
        response = channel.unary_unary(
            path, request_serializer=on_the_wire, response_deserializer=output.FromString
        )(request, timeout=10)
    except grpc.RpcError as error:
        return error.code(), None
    return grpc.StatusCode.OK, response


def test_generated_requests_never_get_internal_store_nothing_when_refused(
    orchestrator, database_url
):
    with grpc.insecure_channel(orchestrator.address) as channel:
        started = pb_grpc.SagaOrchestratorStub(channel).StartSaga(
            pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="fuzz", payload=struct(travel())
            ),
            timeout=10,
        )
        STORED_SAGA_IDS[:] = [started.saga_id]

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(calls)
        def one_request(drawn: tuple[Any, Any]) -> None:
            method, request = drawn
            # Sagas only: a saga a valid request started may still add log rows meanwhile.
            before = count_rows("sagas")
            code, response = call(channel, method, request)
            assert code not in SERVER_FAULTS, (method.name, request)
            unstorable = unstorable_in(request)
            if method.name == "StartSagas" and code == grpc.StatusCode.OK:
                # Decoded, so a surrogate is at most in a packed input's bytes: each
                # request holding one or U+0000 has its own refusal.
                for item, result in zip(request.requests, response.results, strict=True):
                    if unstorable_in(item):
                        assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            elif unstorable:
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, request, code)
            if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                assert count_rows("sagas") == before

        with row_counter(database_url) as count_rows:
            one_request()
        health = [
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service.full_name), timeout=5
            )
            for service in (SERVICE, EVENTS_SERVICE)
        ]
    assert {h.status for h in health} == {health_pb2.HealthCheckResponse.SERVING}
    assert "Traceback" not in orchestrator.log_file.read_text()


webhook_calls = st.sampled_from(list(WEBHOOKS.methods)).flatmap(
    lambda method: st.tuples(
        st.just(method), messages(method.input_type) | one_wild_field(method.input_type)
    )
)


@pytest.fixture
def webhook_orchestrator(
    tmp_path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    flags = ["--webhooks", "--webhooks-allow-private"]
    process = orchestrator_process(
        tmp_path, database_url, participants.info["services"], extra_args=flags
    )
    try:
        yield process.start()
    finally:
        process.stop()


def test_generated_webhook_requests_never_get_internal_store_nothing_when_refused(
    webhook_orchestrator, database_url
):
    with grpc.insecure_channel(webhook_orchestrator.address) as channel:
        started = pb_grpc.SagaOrchestratorStub(channel).StartSaga(
            pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="fuzz", payload=struct(travel())
            ),
            timeout=10,
        )
        STORED_SAGA_IDS[:] = [started.saga_id]

        @settings(
            max_examples=EXAMPLES // 2,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(webhook_calls)
        def one_request(drawn: tuple[Any, Any]) -> None:
            method, request = drawn
            before = count_rows("webhook_endpoints")
            code, _ = call(channel, method, request)
            assert code not in SERVER_FAULTS, (method.name, request)
            if unstorable_in(request):
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, request, code)
            if code != grpc.StatusCode.OK:
                assert count_rows("webhook_endpoints") == before

        with row_counter(database_url) as count_rows:
            one_request()
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "Traceback" not in webhook_orchestrator.log_file.read_text()


CALLBACKS = cb.DESCRIPTOR.services_by_name["SagaCallbacks"]
TASKS = tasks_pb.DESCRIPTOR.services_by_name["SagaTasks"]
callback_calls = st.sampled_from([*CALLBACKS.methods, *TASKS.methods]).flatmap(
    lambda method: st.tuples(
        st.just(method), messages(method.input_type) | one_wild_field(method.input_type)
    )
)


def test_generated_callbacks_never_get_internal_and_complete_nothing(orchestrator, database_url):
    """SagaCallbacks and SagaTasks with generated tokens, ids, steps, reasons and results:
    refused (no generated token is a step's, no step of the stored saga waits), never
    INTERNAL or UNKNOWN."""
    with grpc.insecure_channel(orchestrator.address) as channel:
        started = pb_grpc.SagaOrchestratorStub(channel).StartSaga(
            pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="fuzz", payload=struct(travel())
            ),
            timeout=10,
        )
        STORED_SAGA_IDS[:] = [started.saga_id]

        @settings(
            max_examples=max(EXAMPLES // 3, 50),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(callback_calls)
        def one_request(drawn: tuple[Any, Any]) -> None:
            method, request = drawn
            code, _ = call(channel, method, request)
            assert code not in SERVER_FAULTS, (method.name, request)
            if method.name != "ListTasks":  # no generated token or step is a waiting one's
                assert code != grpc.StatusCode.OK, (method.name, request)

        one_request()
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=CALLBACKS.full_name), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "Traceback" not in orchestrator.log_file.read_text()


INGEST = ingest_pb2.DESCRIPTOR.services_by_name["SagaEventIngest"]
TRAVEL_EVENTS = [
    f"com.example.travel.{kind}"
    for kind in ("booking_started", "flight_booked", "hotel_booked", "car_rental_failed")
]
TRACKED_TABLES = ("sagas", "ingested_events", "held_events", "event_anomalies")
"""What an ingested event may write: a refused batch writes to none of them."""


def nearly_valid_event(wild: FieldDescriptor) -> st.SearchStrategy[Any]:
    """A travel choreography event (a real type, JSON data with a booking id), valid but
    for one generated field, so the checks past the first are reached and events apply."""
    base = st.fixed_dictionaries(
        {
            "id": st.uuids().map(str),
            "source": st.sampled_from(["/flight", "/hotel", "/shop"]),
            "spec_version": st.just("1.0"),
            "type": st.sampled_from(TRAVEL_EVENTS),
            "text_data": st.sampled_from(["B-1", "B-2", ""]).map(
                lambda booking: json.dumps({"booking_id": booking})
            ),
        }
    )
    event = ingest_pb2.CloudEvent.DESCRIPTOR
    return st.tuples(base, value_of(wild)).map(
        lambda drawn: _build(event, {**drawn[0], wild.name: drawn[1]})
    )


ingest_events = st.lists(
    st.sampled_from(list(ingest_pb2.CloudEvent.DESCRIPTOR.fields)).flatmap(nearly_valid_event),
    min_size=1,
    max_size=4,
).map(lambda events: ingest_pb2.IngestEventsRequest(events=events))
ingest_calls = st.sampled_from(list(INGEST.methods)).flatmap(
    lambda method: st.tuples(
        st.just(method),
        messages(method.input_type)
        | one_wild_field(method.input_type)
        | (ingest_events if method.name == "IngestEvents" else st.nothing()),
    )
)


@pytest.fixture
def tracking_orchestrator(
    tmp_path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    """An orchestrator that tracks the travel choreography, so it serves SagaEventIngest."""
    flags = ["--definitions", "orchestrator.examples.travel_choreography"]
    process = orchestrator_process(
        tmp_path, database_url, participants.info["services"], extra_args=flags
    )
    try:
        yield process.start()
    finally:
        process.stop()


def test_generated_event_ingest_requests_never_get_internal_write_nothing_when_refused(
    tracking_orchestrator, database_url
):
    """IngestEvents and ListEventAnomalies with generated and nearly valid CloudEvents:
    never INTERNAL or UNKNOWN; a refused batch writes nothing (no saga, no ingested,
    held or anomalous event); one holding U+0000 or a surrogate is INVALID_ARGUMENT."""
    with grpc.insecure_channel(tracking_orchestrator.address) as channel:

        @settings(
            max_examples=max(EXAMPLES // 2, 50),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(ingest_calls)
        def one_request(drawn: tuple[Any, Any]) -> None:
            method, request = drawn
            before = [count_rows(table) for table in TRACKED_TABLES]
            code, _ = call(channel, method, request)
            assert code not in SERVER_FAULTS, (method.name, request)
            if unstorable_in(request):
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, request, code)
            if code != grpc.StatusCode.OK:
                after = [count_rows(table) for table in TRACKED_TABLES]
                assert after == before, (method.name, request, code)

        with row_counter(database_url) as count_rows:
            one_request()
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=INGEST.full_name), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "Traceback" not in tracking_orchestrator.log_file.read_text()
