"""Tables of things an action creates and a compensation cancels.

Bookings, rentals, reservations, charges and shipments share one shape: an id, a state,
the saga and idempotency key that made them. `RecordTable` holds the SQL for that shape
once, so each service only writes its own columns and business rules.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, cast

from participants.kit import Invalid, NotOwner, Tx, now
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

    def find_to_compensate(
        self, tx: Tx, record_id: str, context: command_pb2.CommandContext
    ) -> Any:
        """The ACTIVE record named by id, else the one made by the action the compensation
        in `context` undoes (None: nothing to undo); NotOwner when it is another saga's."""
        if record_id:
            where, value = self.id_column, record_id
        else:
            where, value = "idempotency_key", context.compensated_idempotency_key
        row = tx.execute(f"SELECT * FROM {self.name} WHERE {where} = %s", (value,)).fetchone()
        if row is None:
            return None
        if row["saga_id"] != context.saga_id:
            raise NotOwner(
                f"{self.id_column} {row[self.id_column]} belongs to another saga; "
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


def state_of(row: Any) -> command_pb2.ReservationState:
    """A stored state as the proto enum."""
    return cast(command_pb2.ReservationState, command_pb2.ReservationState.Value(row["state"]))
