"""What a replica accepts and how much it takes on: the configured limits, and the checks of
client values that need no I/O (payload size and depth, numbers, timestamps, enums).

Every check raises a `SagaError` whose message names the field and the rule, so a
caller can fix its request; none of them needs grpc or a database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from orchestrator.core.errors import ConfigurationError, InvalidArgument, PayloadTooLarge

KIB = 1024
MIB = 1024 * KIB

DEFAULT_MAX_PAYLOAD_BYTES = 256 * KIB
"""As AWS Step Functions caps a state's input: room for any business document, not for files."""
DEFAULT_MAX_PAYLOAD_DEPTH = 20
"""Nesting levels of objects and lists in a payload. Protobuf's decoder stops at 100
message levels and each payload object costs three (Struct, map entry, Value), so a
payload past about 32 levels cannot even be decoded (orchestrator.api.request_decoding)."""
DEFAULT_MAX_WATCH_STREAMS = 2000
DEFAULT_MAX_SAGAS_IN_FLIGHT = 1000
DEFAULT_MAX_BATCH_STARTS = 500
"""Requests in one StartSagas call: a batch this long of small sagas is one transaction of
a few thousand rows, and its request stays far below gRPC's 4 MiB message size."""
GRPC_MESSAGE_SLACK = 64 * KIB
"""Room for the rest of a StartSaga request or a GetSaga answer beside the payload."""
LIST_PAGE_BUDGET_BYTES = 1 * MIB
"""A ListSagas page stops growing before its encoding passes this, a quarter of the
4 MiB that gRPC clients accept by default."""
MAX_FULL_VIEW_PAGE = 50
"""The FULL view (payloads included) is allowed only for pages up to this size."""

# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


@dataclass(frozen=True)
class Limits:
    """What one replica accepts; `saga serve` fills it from flags and environment."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH
    max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS
    """Concurrent WatchSaga streams and waiting ExecuteSaga calls; one more is
    RESOURCE_EXHAUSTED."""
    max_sagas_in_flight: int = DEFAULT_MAX_SAGAS_IN_FLIGHT
    """Sagas driven at once, new and resumed alike; StartSaga past it is RESOURCE_EXHAUSTED."""
    max_batch_starts: int = DEFAULT_MAX_BATCH_STARTS
    """Requests in one StartSagas call; a longer batch is INVALID_ARGUMENT."""

    def __post_init__(self) -> None:
        for name in (
            "max_payload_bytes",
            "max_payload_depth",
            "max_watch_streams",
            "max_sagas_in_flight",
            "max_batch_starts",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")

    @property
    def grpc_message_bytes(self) -> int:
        """The gRPC max receive and send size that matches the payload limit: a request at
        the limit gets through to be answered, one far past it is refused by gRPC."""
        return max(4 * MIB, self.max_payload_bytes + GRPC_MESSAGE_SLACK)


def check_payload(payload: struct_pb2.Struct, limits: Limits) -> None:
    """The payload is within the size and depth limits and holds only finite numbers."""
    size = payload.ByteSize()
    if size > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"payload is {size} bytes encoded; the limit (max payload bytes) is "
            f"{limits.max_payload_bytes}"
        )
    # Iterative, so a payload deeper than Python's recursion limit is still just refused.
    pending: list[tuple[str, struct_pb2.Value | struct_pb2.Struct, int]] = [("payload", payload, 1)]
    while pending:
        path, item, depth = pending.pop()
        if depth > limits.max_payload_depth:
            raise PayloadTooLarge(
                f"{path} is nested {depth} levels deep; the limit (max payload depth) is "
                f"{limits.max_payload_depth}"
            )
        if isinstance(item, struct_pb2.Struct):
            pending.extend((f"{path}.{key}", value, depth) for key, value in item.fields.items())
            continue
        kind = item.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(item.number_value):
            raise InvalidArgument(f"{path} is {item.number_value}; numbers must be finite")
        elif kind == "struct_value":
            pending.append((path, item.struct_value, depth + 1))
        elif kind == "list_value":
            pending.extend(
                (f"{path}[{index}]", value, depth + 1)
                for index, value in enumerate(item.list_value.values)
            )


def check_timestamp(name: str, stamp: timestamp_pb2.Timestamp) -> datetime:
    """The timestamp as an aware UTC datetime, if it is one google.protobuf.Timestamp allows."""
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS:
        raise InvalidArgument(
            f"{name}.seconds is {stamp.seconds}; a timestamp lies between "
            "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        )
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument(f"{name}.nanos is {stamp.nanos}; it must be 0 to 999999999")
    return stamp.ToDatetime(tzinfo=UTC)


def check_enum(name: str, enum: EnumTypeWrapper, value: int) -> str:
    """The name of an enum value the API defines; unknown numbers (proto3 keeps them) refused."""
    try:
        return enum.Name(value)
    except ValueError:
        known = ", ".join(f"{label}={number}" for label, number in enum.items())
        raise InvalidArgument(f"{name} is {value}, not one of {known}") from None
