"""Tables of things an action creates and a compensation cancels.

Bookings, rentals, reservations, charges and shipments share one shape: an id, a state,
the saga and idempotency key that made them. `RecordTable` holds the SQL for that shape
once, so each service only writes its own columns and business rules; `Reservations`
adds the units of a `Pool` a record holds (seats, rooms, cars).

A compensation undoes what its own action's reply names (`done`, given by the kit to an
`@compensation(of=...)` handler), or the record its request names by id.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, cast

from google.protobuf.message import Message

from participants.kit import Invalid, NotOwner, Pool, Tx
from participants.kit.commands import now
from saga.participants.common.v1 import command_pb2

ACTIVE = command_pb2.ReservationState.Name(command_pb2.RESERVATION_STATE_ACTIVE)
CANCELLED = command_pb2.ReservationState.Name(command_pb2.RESERVATION_STATE_CANCELLED)


@dataclasses.dataclass(frozen=True)
class RecordTable:
    """One table of compensable records.

    Table and column names come from code, never from requests, so they are
    formatted into SQL; every value is a bound parameter.
    """

    name: str
    id_column: str
    id_prefix: str

    def create_statement(self, columns: str, constraints: str = "") -> str:
        """CREATE TABLE with the service's `columns`, the common ones, then `constraints`."""
        return f"""
            CREATE TABLE IF NOT EXISTS {self.name} (
                {self.id_column} TEXT PRIMARY KEY,
                {columns},
                state TEXT NOT NULL,
                saga_id TEXT NOT NULL,
                idempotency_key TEXT NOT NULL UNIQUE,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL
                {f", {constraints}" if constraints else ""}
            )
        """

    def insert(self, tx: Tx, context: command_pb2.CommandContext, **columns: Any) -> str:
        """Insert an ACTIVE record made by the command in `context`; return its new id."""
        record_id = f"{self.id_prefix}-{uuid.uuid4().hex[:16]}"
        timestamp = now()
        values = {
            self.id_column: record_id,
            **columns,
            "state": ACTIVE,
            "saga_id": context.saga_id,
            "idempotency_key": context.idempotency_key,
            "create_time": timestamp,
            "update_time": timestamp,
        }
        tx.execute(
            f"INSERT INTO {self.name} ({', '.join(values)})"
            f" VALUES ({', '.join('%s' for _ in values)})",
            tuple(values.values()),
        )
        return record_id

    def to_undo(
        self, tx: Tx, context: command_pb2.CommandContext, named: str, done: Message | None
    ) -> Any:
        """The ACTIVE record to undo: the one the request `named` by id, else the one this
        saga's own action made (its reply `done` carries the id; None: it made none).
        None when there is nothing to undo; NotOwner when the record is another saga's."""
        record_id = named or (getattr(done, self.id_column) if done is not None else "")
        if not record_id:
            return None
        row = tx.execute(
            f"SELECT * FROM {self.name} WHERE {self.id_column} = %s", (record_id,)
        ).fetchone()
        if row is None:
            return None
        if row["saga_id"] != context.saga_id:
            raise NotOwner(
                f"{self.id_column} {record_id} belongs to another saga; "
                f"saga {context.saga_id} may undo only what its own actions did"
            )
        return row if row["state"] == ACTIVE else None

    def cancel(self, tx: Tx, record_id: str) -> None:
        """Mark a record CANCELLED."""
        tx.execute(
            f"UPDATE {self.name} SET state = %s, update_time = %s WHERE {self.id_column} = %s",
            (CANCELLED, now(), record_id),
        )

    def all(self, tx: Tx) -> list[Any]:
        """Every record, oldest first."""
        return list(tx.execute(f"SELECT * FROM {self.name} ORDER BY rowid").fetchall())

    def require_target(self, record_id: str, context: command_pb2.CommandContext) -> None:
        """A compensation must say what it undoes: a record id, or the action's key."""
        if not record_id and not context.compensated_idempotency_key:
            raise Invalid(f"{self.id_column} or context.compensated_idempotency_key is required")


@dataclasses.dataclass(frozen=True)
class Reservations:
    """Records that hold units of a pool: an action takes the units and records who holds
    them; its compensation gives them back and cancels the record. `units` is the
    record's column counting them (None: one unit each)."""

    pool: Pool
    records: RecordTable
    units: str | None

    def reserve(
        self,
        tx: Tx,
        context: command_pb2.CommandContext,
        item: tuple[str, ...],
        units: int,
        **columns: Any,
    ) -> str:
        """Take `units` of `item` (or refuse, Rejected) and record them; the new id."""
        self.pool.take(tx, item, units)
        return self.records.insert(tx, context, **columns)

    def release(
        self, tx: Tx, context: command_pb2.CommandContext, named: str, done: Message | None
    ) -> Any:
        """Undo a reservation (see `RecordTable.to_undo`); the cancelled record, or None."""
        row = self.records.to_undo(tx, context, named, done)
        if row is None:
            return None
        item = tuple(row[key] for key in self.pool.keys)
        self.pool.give_back(tx, item, row[self.units] if self.units else 1)
        self.records.cancel(tx, row[self.records.id_column])
        return row


def state_of(row: Any) -> command_pb2.ReservationState:
    """A stored state as the proto enum."""
    return cast(command_pb2.ReservationState, command_pb2.ReservationState.Value(row["state"]))
