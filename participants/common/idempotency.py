"""The processed-commands table: each idempotency key's request and its answer.

A command's business change and its row here are written in the same
transaction, so after a crash either both exist or neither does. A repeat
finds the row and gets the stored answer, success or rejection, unchanged.
`compensated_actions` holds tombstones: action keys a compensation has
already undone, so an action arriving after its compensation is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import sqlite3

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

SCHEMA = (
    """
    CREATE TABLE processed_commands (
        idempotency_key TEXT PRIMARY KEY,
        method TEXT NOT NULL,
        request_fingerprint TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        response BLOB,
        error_message TEXT,
        error_status BLOB,
        create_time TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE compensated_actions (
        action_idempotency_key TEXT PRIMARY KEY,
        compensation_idempotency_key TEXT NOT NULL,
        create_time TEXT NOT NULL
    )
    """,
)
"""`response` holds the reply message when status_code is OK (0); otherwise
`error_message` and `error_status` (a serialized google.rpc.Status with its
ErrorInfo) hold the rejection."""

OK_CODE = grpc.StatusCode.OK.value[0]


@dataclasses.dataclass(frozen=True)
class ProcessedCommand:
    """One row of processed_commands."""

    idempotency_key: str
    method: str
    request_fingerprint: str
    status_code: int
    response: bytes | None
    error_message: str | None
    error_status: bytes | None

    def matches(self, method: str, request_fingerprint: str) -> bool:
        """True when a repeat carries the very same request to the same method."""
        return self.method == method and self.request_fingerprint == request_fingerprint

    def stored_outcome(self, response_type: type[Message]) -> Message | status_pb2.Status:
        """The answer given the first time: the reply, or the rejection's status."""
        if self.status_code == OK_CODE:
            return response_type.FromString(self.response or b"")
        return status_pb2.Status.FromString(self.error_status or b"")


def fingerprint(method: str, request: Message) -> str:
    """sha256 of the method and the whole request, serialized deterministically."""
    digest = hashlib.sha256(method.encode())
    digest.update(b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


def find(db: sqlite3.Connection, idempotency_key: str) -> ProcessedCommand | None:
    """The command already processed under this key, if any."""
    row = db.execute(
        "SELECT idempotency_key, method, request_fingerprint, status_code, response,"
        " error_message, error_status FROM processed_commands WHERE idempotency_key = ?",
        (idempotency_key,),
    ).fetchone()
    return ProcessedCommand(*row) if row is not None else None


def record(
    db: sqlite3.Connection,
    idempotency_key: str,
    method: str,
    request_fingerprint: str,
    outcome: Message | status_pb2.Status,
) -> None:
    """Store a command's answer; call inside the transaction that applied it."""
    values: tuple[int, bytes | None, str | None, bytes | None]
    if isinstance(outcome, status_pb2.Status):
        values = (outcome.code, None, outcome.message, outcome.SerializeToString())
    else:
        values = (OK_CODE, outcome.SerializeToString(deterministic=True), None, None)
    db.execute(
        "INSERT INTO processed_commands (idempotency_key, method, request_fingerprint,"
        " status_code, response, error_message, error_status, create_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (idempotency_key, method, request_fingerprint, *values, now()),
    )


def compensation_of(db: sqlite3.Connection, action_key: str) -> str | None:
    """The key of the compensation that already undid (or pre-empted) this action, if any."""
    row = db.execute(
        "SELECT compensation_idempotency_key FROM compensated_actions"
        " WHERE action_idempotency_key = ?",
        (action_key,),
    ).fetchone()
    return row[0] if row is not None else None


def mark_compensated(db: sqlite3.Connection, action_key: str, compensation_key: str) -> None:
    """Leave a tombstone for an action key; the first compensation's key is kept."""
    db.execute(
        "INSERT OR IGNORE INTO compensated_actions"
        " (action_idempotency_key, compensation_idempotency_key, create_time) VALUES (?, ?, ?)",
        (action_key, compensation_key, now()),
    )


def now() -> str:
    """The current UTC time as ISO 8601, the format of every time column."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
