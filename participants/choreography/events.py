"""The travel choreography's event types, and CloudEvents 1.0 on AMQP.

Events are published in structured mode: the whole event as one JSON object, content
type `application/cloudevents+json`, routing key = event type. What comes in may also be
in binary mode (attributes in `cloudEvents:*`, `cloudEvents_*`, `ce-*` or `ce_*` headers,
`data` the JSON body), as other publishers may choose it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PREFIX = "com.example.travel."
STRUCTURED = "application/cloudevents+json"
SPEC_VERSION = "1.0"
BINARY_HEADER_PREFIXES = ("cloudEvents:", "cloudEvents_", "ce-", "ce_")
REQUIRED = ("id", "source", "type")


def travel(name: str) -> str:
    """The full event type of a short name: `flight_booked` -> com.example.travel.flight_booked."""
    return PREFIX + name


BOOKING_STARTED = travel("booking_started")
FLIGHT_BOOKED = travel("flight_booked")
FLIGHT_BOOKING_FAILED = travel("flight_booking_failed")
FLIGHT_CANCELLED = travel("flight_cancelled")
HOTEL_BOOKED = travel("hotel_booked")
HOTEL_BOOKING_FAILED = travel("hotel_booking_failed")
HOTEL_CANCELLED = travel("hotel_cancelled")
CAR_RENTED = travel("car_rented")
CAR_RENTAL_FAILED = travel("car_rental_failed")
CAR_RENTAL_CANCELLED = travel("car_rental_cancelled")
CANCEL_FLIGHT = travel("cancel_flight")
CANCEL_HOTEL = travel("cancel_hotel")
CANCEL_CAR = travel("cancel_car")


class MalformedEvent(ValueError):
    """A message that is not a CloudEvent this service can read; the message says why."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent: (source, id) identifies it, `data` is its JSON object payload."""

    id: str
    source: str
    type: str
    data: Mapping[str, Any]
    time: str = ""
    subject: str = ""
    extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    @property
    def short_type(self) -> str:
        return self.type.removeprefix(PREFIX)

    def to_json(self) -> dict[str, Any]:
        """The event in the structured JSON format."""
        event: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "datacontenttype": "application/json",
        }
        if self.time:
            event["time"] = self.time
        if self.subject:
            event["subject"] = self.subject
        event.update(self.extensions)
        event["data"] = dict(self.data)
        return event

    def body(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, event: Mapping[str, Any]) -> CloudEvent:
        """An event from its structured JSON object (also what `to_json` wrote)."""
        for name in REQUIRED:
            value = event.get(name)
            if not isinstance(value, str) or not value:
                raise MalformedEvent(f"attribute {name!r} is missing or not a non-empty string")
        if event.get("specversion") != SPEC_VERSION:
            raise MalformedEvent(f"specversion is {event.get('specversion')!r}, not '1.0'")
        data = event.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise MalformedEvent("data is not a JSON object")
        known = {*REQUIRED, "specversion", "time", "subject", "data", "datacontenttype"}
        return cls(
            id=event["id"],
            source=event["source"],
            type=event["type"],
            data=data,
            time=str(event.get("time") or ""),
            subject=str(event.get("subject") or ""),
            extensions={k: str(v) for k, v in event.items() if k not in known},
        )


def new_event(
    source: str, event_type: str, data: Mapping[str, Any], subject: str = ""
) -> CloudEvent:
    """A fresh event: a new id, the time now."""
    return CloudEvent(
        id=str(uuid.uuid4()),
        source=source,
        type=event_type,
        data=dict(data),
        time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        subject=subject,
    )


def parse_message(
    body: bytes, content_type: str | None, headers: Mapping[str, Any] | None
) -> CloudEvent:
    """The CloudEvent an AMQP message carries, structured or binary; MalformedEvent if none."""
    if (content_type or "").split(";")[0].strip() == STRUCTURED:
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedEvent(f"structured body is not JSON: {error}") from None
        if not isinstance(event, dict):
            raise MalformedEvent("structured body is not a JSON object")
        return CloudEvent.from_json(event)
    attributes: dict[str, Any] = {}
    for name, value in (headers or {}).items():
        for prefix in BINARY_HEADER_PREFIXES:
            if name.startswith(prefix):
                text = value.decode() if isinstance(value, bytes) else value
                attributes[name.removeprefix(prefix)] = str(text)
                break
    if not attributes:
        raise MalformedEvent(
            f"neither structured ({STRUCTURED}) nor binary mode (no cloudEvents/ce headers); "
            f"content type {content_type!r}"
        )
    try:
        attributes["data"] = json.loads(body) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedEvent(f"binary-mode data is not JSON: {error}") from None
    return CloudEvent.from_json(attributes)
