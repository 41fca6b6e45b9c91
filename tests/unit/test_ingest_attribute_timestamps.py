"""A CloudEvent's timestamp attribute that no datetime can hold (found by the fuzz) is
INVALID_ARGUMENT naming the attribute, not an internal error."""

from __future__ import annotations

import pytest

from orchestrator.api.ingest import event_from_proto
from orchestrator.core.errors import InvalidArgument
from saga.v1 import ingest_pb2 as pb

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("seconds", "nanos"), [(0, -1), (0, 10**9), (2**62, 0), (-(2**62), 0)])
def test_an_unrepresentable_timestamp_attribute_is_invalid_argument(seconds: int, nanos: int):
    event = pb.CloudEvent(id="e-1", source="/flight", spec_version="1.0", type="t")
    event.attributes["time"].ce_timestamp.seconds = seconds
    event.attributes["time"].ce_timestamp.nanos = nanos
    with pytest.raises(InvalidArgument, match=r'events\[3\]\.attributes\["time"\]: a timestamp'):
        event_from_proto(event, 3)
