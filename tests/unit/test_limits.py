"""The checks of client values that need no I/O: payload size, depth and numbers,
timestamps and enums; each message names the field and the rule."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from orchestrator.core.errors import ConfigurationError, InvalidArgument, PayloadTooLarge
from orchestrator.core.limits import Limits, check_enum, check_payload, check_timestamp
from saga.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.unit


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def nested(levels: int, leaf: object = 1) -> dict:
    value: object = leaf
    for _ in range(levels):
        value = {"a": value}
    assert isinstance(value, dict)
    return value


def test_a_payload_at_the_limits_passes():
    limits = Limits(max_payload_bytes=1000, max_payload_depth=3)
    check_payload(struct({"a": {"b": [1, 2]}, "c": "x" * 500}), limits)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"text": "x" * 2000}, "the limit (max payload bytes) is 1000"),
        (nested(4), "payload.a.a.a is nested 4 levels deep; the limit (max payload depth) is 3"),
        ({"list": [[[["deep"]]]]}, "max payload depth"),
    ],
)
def test_a_payload_past_a_limit_names_the_limit(payload, words):
    with pytest.raises(PayloadTooLarge) as raised:
        check_payload(struct(payload), Limits(max_payload_bytes=1000, max_payload_depth=3))
    assert words in raised.value.message


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_numbers_that_are_not_finite_are_refused_with_their_path(number):
    with pytest.raises(InvalidArgument) as raised:
        check_payload(struct({"items": [{"quantity": number}]}), Limits())
    assert "payload.items[0].quantity" in raised.value.message
    assert "finite" in raised.value.message


def test_a_payload_nested_past_the_limit_is_refused_at_the_first_level_too_deep():
    payload = struct_pb2.Struct()
    inner = payload
    for _ in range(30):
        inner = inner.fields["a"].struct_value
    with pytest.raises(PayloadTooLarge):
        check_payload(payload, Limits(max_payload_depth=5))


@pytest.mark.parametrize(
    ("seconds", "nanos", "words"),
    [
        (-(10**12), 0, "create_time_after.seconds is -1000000000000"),
        (253_402_300_800, 0, "create_time_after.seconds"),
        (0, -1, "create_time_after.nanos is -1"),
        (0, 10**9, "create_time_after.nanos"),
    ],
)
def test_timestamps_outside_the_protobuf_range_are_refused(seconds, nanos, words):
    with pytest.raises(InvalidArgument) as raised:
        check_timestamp("create_time_after", timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert words in raised.value.message


def test_timestamps_at_the_ends_of_the_range_are_accepted():
    assert check_timestamp("t", timestamp_pb2.Timestamp(seconds=-62_135_596_800)).year == 1
    assert check_timestamp("t", timestamp_pb2.Timestamp(seconds=253_402_300_799)).year == 9999


def test_unknown_enum_numbers_are_refused_listing_the_known_ones():
    assert check_enum("status", pb.SagaStatus, pb.SAGA_STATUS_FAILED) == "SAGA_STATUS_FAILED"
    with pytest.raises(InvalidArgument) as raised:
        check_enum("status", pb.SagaStatus, 99)
    assert "status is 99, not one of SAGA_STATUS_UNSPECIFIED=0" in raised.value.message


def test_limits_must_be_positive_and_grpc_sizes_follow_the_payload_limit():
    with pytest.raises(ConfigurationError):
        Limits(max_watch_streams=0)
    assert Limits().grpc_message_bytes == 4 * 1024 * 1024
    assert Limits(max_payload_bytes=8 * 1024 * 1024).grpc_message_bytes > 8 * 1024 * 1024
