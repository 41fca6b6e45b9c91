"""Datetimes as `google.protobuf.Timestamp`, the one conversion the API and the CLI share."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a Timestamp (in UTC); a naive one is taken to be UTC already."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC) if moment.tzinfo is not None else moment)
    return stamp


def optional_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """None stays None: an unset proto field, not the epoch."""
    return None if moment is None else to_timestamp(moment)
