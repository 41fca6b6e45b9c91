"""CloudEvents 1.0 as they come in, read into `IncomingEvent`s: one reader for every way in.

Two encodings, on every transport:

- structured mode: the body is one JSON event (`application/cloudevents+json`), or, over
  HTTP, a JSON array of them (`application/cloudevents-batch+json`);
- binary mode: the context attributes are headers (`ce-<name>` on HTTP and NATS, `ce_<name>`
  as Kafka bridges write them, `cloudEvents:<name>` / `cloudEvents_<name>` as the AMQP
  binding writes them; HTTP values percent-encoded), the body is the data, and it is
  parsed as JSON when the content type says JSON (`application/json`, `text/json` or any
  `+json` suffix). Otherwise `data` is None: the tracker reads only JSON data.

Every event must say `specversion` "1.0" and carry a non-empty `id`, `source` and `type`;
`time`, when given, is RFC 3339 with an offset. Every other attribute (`datacontenttype`,
`dataschema`, extensions) lands in `IncomingEvent.extensions` as a string. A problem is a
`MalformedEvent` naming the attribute and, in a batch, the event's index; a structured
format other than JSON is an `UnsupportedFormat` (HTTP answers 415).

One reader rather than the CloudEvents SDK's: the SDK has no batch format and no NATS
binding, and one parser gives the same checks and messages on all four ways in. The
tests check this reader against what the SDK writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from orchestrator.core.incoming import CommandEvent, IncomingEvent, JsonValue
from orchestrator.core.payload import unstorable_text

SPEC_VERSION = "1.0"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY_PREFIXES = ("ce-", "ce_", "cloudevents:", "cloudevents_")
"""Header prefixes of binary mode, compared in lower case."""
MAX_ID_LENGTH = 1024
"""`id`, `source` and `type` key the store's dedup table: bounded."""
MAX_ATTRIBUTE_LENGTH = 8192
MAX_DATA_DEPTH = 64
_REQUIRED = ("id", "source", "type")
_NAME = re.compile(r"[a-z0-9]{1,64}")
_OWN = frozenset({"specversion", "id", "source", "type", "time", "subject", "data"})


class MalformedEvent(ValueError):
    """Not a CloudEvent we can read; the message says what is wrong (never the data)."""

    def __init__(self, message: str, *, attribute: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute

    def at(self, index: int) -> MalformedEvent:
        """The same problem, said of the `index`th event of a batch."""
        return MalformedEvent(f"event {index}: {self.message}", attribute=self.attribute)


class UnsupportedFormat(MalformedEvent):
    """A structured event in a format other than JSON, or a content type no mode takes."""


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a data content type says JSON (absent counts as JSON, as in the JSON format)."""
    kind = media_type(content_type)
    return kind in ("", "application/json", "text/json") or kind.endswith("+json")


def _text(name: str, value: object, limit: int = MAX_ATTRIBUTE_LENGTH) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, bytes):
        text = base64.b64encode(value).decode()
    else:
        raise MalformedEvent(
            f"attribute {name!r} must be a string, number or boolean, not {type(value).__name__}",
            attribute=name,
        )
    if len(text) > limit:
        raise MalformedEvent(f"attribute {name!r} is over {limit} characters", attribute=name)
    problem = unstorable_text(text)
    if problem is not None:
        raise MalformedEvent(f"attribute {name!r}: {problem}", attribute=name)
    return text


def _time(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int) and not isinstance(value, bool):
        # An AMQP timestamp, as the AMQP binding writes `time`: milliseconds since 1970.
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise MalformedEvent("attribute 'time' is out of range", attribute="time") from None
    else:
        text = _text("time", value)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise MalformedEvent(
                "attribute 'time' is not an RFC 3339 timestamp", attribute="time"
            ) from None
    if moment.utcoffset() is None:
        raise MalformedEvent("attribute 'time' needs a UTC offset (or Z)", attribute="time")
    return moment.astimezone(UTC)


def _check_data(value: JsonValue, depth: int = 0) -> None:
    """Data the stores can hold: no unstorable strings, bounded nesting."""
    if depth > MAX_DATA_DEPTH:
        raise MalformedEvent(f"data is nested over {MAX_DATA_DEPTH} deep", attribute="data")
    if isinstance(value, str):
        problem = unstorable_text(value)
        if problem is not None:
            raise MalformedEvent(f"data: {problem}", attribute="data")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_data(key, depth + 1)
            _check_data(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_data(item, depth + 1)


def _json(body: bytes | str, what: str) -> JsonValue:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedEvent(f"{what} is not JSON: {error}", attribute="data") from None


def build_event(
    attributes: Mapping[str, object], data: JsonValue, *, via: str, has_data: bool = True
) -> IncomingEvent:
    """An `IncomingEvent` from its context attributes (names in lower case) and data."""
    version = attributes.get("specversion")
    if version is None:
        raise MalformedEvent("attribute 'specversion' is missing", attribute="specversion")
    if version != SPEC_VERSION:
        raise MalformedEvent(
            f"attribute 'specversion' is {str(version)[:20]!r}; only '1.0' is read",
            attribute="specversion",
        )
    required: dict[str, str] = {}
    for name in _REQUIRED:
        value = attributes.get(name)
        if value is None or value == "":
            raise MalformedEvent(f"attribute {name!r} is missing or empty", attribute=name)
        if not isinstance(value, str):
            raise MalformedEvent(f"attribute {name!r} must be a string", attribute=name)
        required[name] = _text(name, value, MAX_ID_LENGTH)
    extensions: dict[str, str] = {}
    for name, value in attributes.items():
        if name in _OWN or value is None:
            continue
        if not _NAME.fullmatch(name):
            raise MalformedEvent(
                f"attribute name {name[:64]!r}: CloudEvents attribute names are lower-case "
                "letters and digits",
                attribute=name[:64],
            )
        extensions[name] = _text(name, value)
    time = attributes.get("time")
    subject = attributes.get("subject")
    if has_data:
        _check_data(data)
    return IncomingEvent(
        source=required["source"],
        id=required["id"],
        type=required["type"],
        time=None if time is None else _time(time),
        subject="" if subject is None else _text("subject", subject),
        data=data if has_data else None,
        extensions=extensions,
        received_via=via,
    )


def event_from_json(document: object, *, via: str) -> IncomingEvent:
    """One event of the JSON format (a parsed object): attributes at the top level, the
    data in `data` (any JSON value) or `data_base64` (decoded; parsed when JSON)."""
    if not isinstance(document, dict):
        raise MalformedEvent(f"an event must be a JSON object, not {_json_kind(document)}")
    attributes = {key: value for key, value in document.items() if key != "data_base64"}
    if "data" in document and "data_base64" in document:
        raise MalformedEvent("an event has 'data' or 'data_base64', not both", attribute="data")
    if "data_base64" not in document:
        return build_event(attributes, document.get("data"), via=via)
    encoded = document["data_base64"]
    try:
        raw = base64.b64decode(encoded if isinstance(encoded, str) else b"!", validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvent(
            "attribute 'data_base64' is not base64", attribute="data_base64"
        ) from None
    if not is_json(str(document.get("datacontenttype", "") or "application/octet-stream")):
        return build_event(attributes, None, via=via, has_data=False)
    return build_event(attributes, _json(raw, "data_base64"), via=via)


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", type(None): "null"}.get(type(value), "a value")


def parse_structured(body: bytes, *, via: str) -> IncomingEvent:
    """A structured-mode body: one event in the JSON format."""
    return event_from_json(_json(body, "the body"), via=via)


def parse_batch(body: bytes, *, via: str, limit: int) -> list[IncomingEvent]:
    """A batched-mode body: a JSON array of events (at most `limit`); an error names the
    first bad event's index."""
    documents = _json(body, "the body")
    if not isinstance(documents, list):
        raise MalformedEvent(f"a batch must be a JSON array, not {_json_kind(documents)}")
    if len(documents) > limit:
        raise MalformedEvent(f"a batch holds at most {limit} events, this one {len(documents)}")
    events = []
    for index, document in enumerate(documents):
        try:
            events.append(event_from_json(document, via=via))
        except MalformedEvent as error:
            raise error.at(index) from None
    return events


def binary_attributes(
    headers: Iterable[tuple[str, object]], *, percent_encoded: bool = False
) -> dict[str, object]:
    """The context attributes among `headers` (any binary-mode prefix), names lower-cased;
    HTTP header values are percent-decoded (the HTTP binding encodes them)."""
    found: dict[str, object] = {}
    for name, value in headers:
        lower = name.lower()
        prefix = next((p for p in BINARY_PREFIXES if lower.startswith(p)), None)
        if prefix is None:
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise MalformedEvent(f"header {name[:80]!r} is not UTF-8") from None
        if percent_encoded and isinstance(value, str):
            value = unquote(value)
        found[lower[len(prefix) :]] = value
    return found


def parse_binary(
    attributes: Mapping[str, object], content_type: str | None, body: bytes, *, via: str
) -> IncomingEvent:
    """A binary-mode message: `attributes` from its headers, `body` its data. The content
    type is the event's `datacontenttype`; JSON data is parsed, other data is left out."""
    attributes = dict(attributes)
    if content_type:
        attributes["datacontenttype"] = content_type
    if not body:
        return build_event(attributes, None, via=via)
    if not is_json(content_type):
        return build_event(attributes, None, via=via, has_data=False)
    return build_event(attributes, _json(body, "the data"), via=via)


def parse_message(
    headers: Iterable[tuple[str, object]],
    content_type: str | None,
    body: bytes,
    *,
    via: str,
    percent_encoded: bool = False,
    batch_limit: int = 0,
) -> list[IncomingEvent]:
    """The events of one message, whatever its mode: structured (by its content type),
    batched (`batch_limit` > 0 allows it: HTTP only), or binary (by a specversion header).
    """
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return [parse_structured(body, via=via)]
    if kind == BATCH:
        if batch_limit <= 0:
            raise UnsupportedFormat(f"{BATCH} is read over HTTP only")
        return parse_batch(body, via=via, limit=batch_limit)
    if kind.startswith("application/cloudevents"):
        raise UnsupportedFormat(
            f"structured format {kind[:80]!r} is not read; send {STRUCTURED} or binary mode"
        )
    attributes = binary_attributes(headers, percent_encoded=percent_encoded)
    if not attributes:
        raise UnsupportedFormat(
            f"not a CloudEvent: content type {kind or 'none'!r} is not {STRUCTURED} and no "
            "ce-* header says binary mode"
        )
    if "specversion" not in attributes:
        raise MalformedEvent(
            "binary mode: the ce-specversion header is missing", attribute="specversion"
        )
    return [parse_binary(attributes, content_type, body, via=via)]


def structured_json(event: CommandEvent) -> bytes:
    """One of the orchestrator's own events in the JSON format (what its publishers send)."""
    document: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": dict(event.data),
    }
    return json.dumps(document, separators=(",", ":")).encode()


__all__ = [
    "BATCH",
    "BINARY_PREFIXES",
    "SPEC_VERSION",
    "STRUCTURED",
    "MalformedEvent",
    "UnsupportedFormat",
    "binary_attributes",
    "build_event",
    "event_from_json",
    "is_json",
    "media_type",
    "parse_batch",
    "parse_binary",
    "parse_message",
    "parse_structured",
    "structured_json",
]
