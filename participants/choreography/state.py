"""One choreographed service's SQLite state, and handling one event in one transaction.

Three tables: `inventory` (units of each item held against a capacity), `bookings`
(one row per booking id: what it holds, its status, and the events it led to) and
`handled_events` (every incoming event's (source, id) with the outcome event it led to).
The effect of an event, its `handled_events` row and its outcome are committed together,
so a redelivered event (a crash before its ack, a broker's redelivery) finds its row and
gets the same outcome event back, same id: nothing is booked twice, and whoever reads the
outcomes deduplicates it. A second booking request for the same booking id (a different
event) gets the booking's own outcome again, for the same reason.

A cancellation of a booking never seen leaves a cancelled row holding nothing (a
tombstone): a booking request arriving after it books nothing and publishes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from participants.choreography import events as ev
from participants.choreography.services import (
    Service,
    booking_id_of,
    booking_request,
    trip_of,
)

logger = logging.getLogger(__name__)

BOOKED, REFUSED, CANCELLED = "booked", "refused", "cancelled"

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory (
    item TEXT PRIMARY KEY,
    capacity INTEGER NOT NULL,
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= capacity)
);
CREATE TABLE IF NOT EXISTS bookings (
    booking_id TEXT PRIMARY KEY,
    item TEXT NOT NULL,
    units INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    outcome TEXT,
    cancel_outcome TEXT,
    update_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS handled_events (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    booking_id TEXT NOT NULL,
    outcome TEXT,
    handle_time TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
"""


@dataclass(frozen=True, slots=True)
class Handled:
    """What handling an event came to: the outcome to publish (None: nothing), and
    whether this was a redelivery of an event handled before."""

    outcome: ev.CloudEvent | None
    redelivered: bool


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dump(event: ev.CloudEvent | None) -> str | None:
    return None if event is None else json.dumps(event.to_json(), sort_keys=True)


def _load(text: str | None) -> ev.CloudEvent | None:
    return None if text is None else ev.CloudEvent.from_json(json.loads(text))


class ServiceState:
    """The service's SQLite file (WAL, synchronous=FULL), one connection, one writer."""

    def __init__(
        self, path: Path, service: Service, capacity: int, refuse: frozenset[str] = frozenset()
    ) -> None:
        self.service = service
        self.refuse = refuse
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO inventory (item, capacity) VALUES (?, ?)",
                [(item, capacity) for item in service.catalogue],
            )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def handle(self, event: ev.CloudEvent) -> Handled:
        """Apply one event and record it, in one transaction; a redelivery gets the
        outcome it got the first time."""
        with self.transaction():
            row = self.db.execute(
                "SELECT outcome FROM handled_events WHERE source = ? AND event_id = ?",
                event.key,
            ).fetchone()
            if row is not None:
                return Handled(_load(row["outcome"]), redelivered=True)
            booking_id = booking_id_of(event.data)
            if not booking_id:
                logger.warning("event %s from %s names no booking id", event.id, event.source)
                outcome = None
            elif event.type == self.service.book_on:
                outcome = self._book(booking_id, event.data)
            else:
                outcome = self._cancel(booking_id, event)
            self.db.execute(
                "INSERT INTO handled_events (source, event_id, event_type, booking_id, outcome,"
                " handle_time) VALUES (?, ?, ?, ?, ?, ?)",
                (event.source, event.id, event.type, booking_id, _dump(outcome), _now()),
            )
            return Handled(outcome, redelivered=False)

    def _booking(self, booking_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM bookings WHERE booking_id = ?", (booking_id,)
        ).fetchone()
        return row

    def _book(self, booking_id: str, data: Mapping[str, Any]) -> ev.CloudEvent | None:
        existing = self._booking(booking_id)
        if existing is not None:
            if existing["status"] == CANCELLED:
                logger.info("booking %s was cancelled before it was asked for", booking_id)
                return None
            return _load(existing["outcome"])  # asked twice: the same answer
        service = self.service
        request = booking_request(service, data, self.refuse)
        reason = request.refusal
        if not reason:
            taken = self.db.execute(
                "UPDATE inventory SET held = held + ? WHERE item = ? AND held + ? <= capacity",
                (request.units, request.item, request.units),
            ).rowcount
            if taken == 0:
                reason = f"no {service.units_field} left on {request.item}"
        trip = trip_of(data) | {"booking_id": booking_id}
        if reason:
            outcome = ev.new_event(
                service.source, service.failed, trip | {"reason": reason}, booking_id
            )
        else:
            outcome = ev.new_event(service.source, service.booked, trip, booking_id)
        self.db.execute(
            "INSERT INTO bookings (booking_id, item, units, status, reason, outcome, update_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                booking_id,
                request.item,
                0 if reason else request.units,
                REFUSED if reason else BOOKED,
                reason,
                _dump(outcome),
                _now(),
            ),
        )
        return outcome

    def _cancel(self, booking_id: str, cause: ev.CloudEvent) -> ev.CloudEvent:
        existing = self._booking(booking_id)
        if existing is not None and existing["status"] == CANCELLED:
            cancelled = _load(existing["cancel_outcome"])
            assert cancelled is not None
            return cancelled  # cancelled before: the same answer
        held = 0 if existing is None else int(existing["units"])
        outcome = ev.new_event(
            self.service.source,
            self.service.cancelled,
            {"booking_id": booking_id, "released": held, "because": cause.short_type},
            booking_id,
        )
        if existing is None:
            self.db.execute(
                "INSERT INTO bookings (booking_id, item, units, status, reason, cancel_outcome,"
                " update_time) VALUES (?, '', 0, ?, ?, ?, ?)",
                (booking_id, CANCELLED, "cancelled before booked", _dump(outcome), _now()),
            )
            return outcome
        if held:
            self.db.execute(
                "UPDATE inventory SET held = held - ? WHERE item = ?", (held, existing["item"])
            )
        self.db.execute(
            "UPDATE bookings SET status = ?, units = 0, cancel_outcome = ?, update_time = ?"
            " WHERE booking_id = ?",
            (CANCELLED, _dump(outcome), _now(), booking_id),
        )
        return outcome


def read_bookings(path: Path) -> dict[str, dict[str, Any]]:
    """Every booking in a service's file, by booking id (for checks and the demo)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT booking_id, item, units, status, reason FROM bookings")
        return {row["booking_id"]: dict(row) for row in rows}


def read_inventory(path: Path) -> dict[str, int]:
    """Units held per item."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {item: held for item, held in db.execute("SELECT item, held FROM inventory")}


def count_handled(path: Path) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT count(*) FROM handled_events").fetchone()
        return int(count)
