"""Generated CloudEvent messages, as IngestEvents receives them: each is either read into
an IncomingEvent whose attributes are what was sent, or refused InvalidArgument naming
`events[i].<field>`, never another exception; and generated JSON documents the same
through the structured-mode reader."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.api.ingest import event_from_proto
from orchestrator.core.errors import InvalidArgument
from orchestrator.events.ingest.cloudevents import MalformedEvent, parse_message
from saga.v1 import ingest_pb2 as pb

pytestmark = pytest.mark.unit

FIELD = re.compile(
    r'^events\[3\]\.(id|source|spec_version|type|text_data|binary_data|data|attributes\[".*"\]): '
)

texts = st.one_of(st.text(max_size=30), st.sampled_from(["", "1.0", "a\x00b", "x" * 1100]))
names = st.one_of(st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True), st.text(max_size=12))


@st.composite
def attribute_values(draw: Any) -> pb.CloudEvent.CloudEventAttributeValue:
    value = pb.CloudEvent.CloudEventAttributeValue()
    kind = draw(st.sampled_from(["none", "bool", "int", "str", "bytes", "uri", "time"]))
    if kind == "bool":
        value.ce_boolean = draw(st.booleans())
    elif kind == "int":
        value.ce_integer = draw(st.integers(-(2**31), 2**31 - 1))
    elif kind == "str":
        value.ce_string = draw(texts)
    elif kind == "bytes":
        value.ce_bytes = draw(st.binary(max_size=20))
    elif kind == "uri":
        value.ce_uri = draw(texts)
    elif kind == "time":
        value.ce_timestamp.seconds = draw(st.integers(-62135596800, 253402300799))
    return value


@st.composite
def cloud_events(draw: Any) -> pb.CloudEvent:
    event = pb.CloudEvent(
        id=draw(texts),
        source=draw(texts),
        spec_version=draw(st.sampled_from(["1.0", "1.0", "0.3", ""])),
        type=draw(texts),
    )
    for name, value in draw(st.dictionaries(names, attribute_values(), max_size=4)).items():
        event.attributes[name].CopyFrom(value)
    data = draw(st.sampled_from(["none", "text", "bytes", "json"]))
    if data == "text":
        event.text_data = draw(st.text(max_size=40))
    elif data == "bytes":
        event.binary_data = draw(st.binary(max_size=40))
    elif data == "json":
        event.text_data = json.dumps(
            draw(
                st.recursive(
                    st.none() | st.integers() | st.text(max_size=5),
                    lambda c: (
                        st.lists(c, max_size=3)
                        | st.dictionaries(st.text(max_size=5), c, max_size=3)
                    ),
                    max_leaves=8,
                )
            )
        )
    return event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cloud_events())
def test_a_generated_event_is_read_faithfully_or_refused_naming_its_field(event):
    try:
        read = event_from_proto(event, 3)
    except InvalidArgument as refused:
        assert FIELD.match(refused.message), refused.message
        return
    assert (read.id, read.source, read.type) == (event.id, event.source, event.type)
    assert event.spec_version == "1.0"
    assert set(read.extensions) <= set(event.attributes) - {"time", "subject"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "subject",
                "data",
                "data_base64",
                "ext",
                "Bad",
            ]
        ),
        json_values,
        max_size=8,
    )
)
def test_a_generated_json_document_is_read_or_refused_as_malformed(document):
    try:
        [event] = parse_message(
            [], "application/cloudevents+json", json.dumps(document).encode(), via="test"
        )
    except MalformedEvent as refused:
        assert refused.message
        return
    assert document["specversion"] == "1.0"
    assert (event.id, event.source, event.type) == (
        document["id"],
        document["source"],
        document["type"],
    )
