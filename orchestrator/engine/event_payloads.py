"""An incoming event as the JSON the store keeps of it (a held event's or an anomaly's
`payload`), and back: every attribute, so a held event is applied later exactly as if
it had just arrived."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.core.incoming import IncomingEvent


def event_payload(event: IncomingEvent) -> dict[str, Any]:
    """The whole event as a JSON object."""
    return {
        "source": event.source,
        "id": event.id,
        "type": event.type,
        "time": None if event.time is None else event.time.isoformat(),
        "subject": event.subject,
        "data": event.data,
        "extensions": dict(event.extensions),
        "received_via": event.received_via,
    }


def event_from_payload(payload: dict[str, Any]) -> IncomingEvent:
    """The event `event_payload` wrote."""
    time = payload.get("time")
    return IncomingEvent(
        source=str(payload["source"]),
        id=str(payload["id"]),
        type=str(payload["type"]),
        time=None if time is None else datetime.fromisoformat(str(time)),
        subject=str(payload.get("subject", "")),
        data=payload.get("data"),
        extensions={str(k): str(v) for k, v in dict(payload.get("extensions", {})).items()},
        received_via=str(payload.get("received_via", "")),
    )
