"""How records become SQL parameters and rows become records, for both SQL back ends,
and what a refused write stands for.

Parameters are dicts keyed by column name, so the SQL (`_statements.py`) names
what it binds and no column order is shared by convention. The back ends differ
only in how a time and a payload are stored, which they pass in as a `RowEncoding`.

A write the database refuses is classified here, once for both back ends: another
writer's work (`write_refused`: StaleSagaVersion), the write's own data
(`data_refused`: DataRefused), or the database or its connection (`fails_alone` is
False: every write batched with it fails too).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, overload

import psycopg

from orchestrator.core.errors import DataRefused, StaleSagaVersion, StoreUnavailable
from orchestrator.core.events import OutboxEvent, PendingEvent, SinkBacklog
from orchestrator.core.records import (
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.telemetry.logs import database_error


class Row(Protocol):
    """A result row readable by column name (sqlite3.Row, psycopg's dict_row)."""

    def __getitem__(self, key: str, /) -> Any: ...


def aware(moment: datetime) -> datetime:
    """`moment` itself, refusing a naive datetime: the store could only guess its zone."""
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: the store needs a time zone")
    return moment


@dataclass(frozen=True, slots=True)
class RowEncoding:
    """A back end's storage of times and payloads; everything else maps the same."""

    time_to_db: Callable[[datetime], object]
    time_from_db: Callable[[Any], datetime]
    payload_to_db: Callable[[dict[str, Any]], object]
    payload_from_db: Callable[[Any], dict[str, Any]]

    def saga_params(self, saga: SagaRecord) -> dict[str, object]:
        return {
            "saga_id": saga.saga_id,
            "saga_type": saga.saga_type,
            "definition_version": saga.definition_version,
            "correlation_id": saga.correlation_id,
            "idempotency_key": saga.idempotency_key,
            "request_fingerprint": saga.request_fingerprint,
            "payload": self.payload_to_db(saga.payload),
            "status": saga.status.value,
            "failure_reason": saga.failure_reason,
            "failed_step": saga.failed_step,
            "needs_intervention": saga.needs_intervention,
            "create_time": self.time_to_db(saga.create_time),
            "update_time": self.time_to_db(saga.update_time),
            "version": saga.version,
            "deadline_time": self._optional_time_to_db(saga.deadline_time),
            # JSON text on both back ends: a short list read only with its saga.
            "lock_keys": json.dumps(list(saga.lock_keys)) if saga.lock_keys else "[]",
            "locks_held": saga.locks_held,
            "lock_wait_since": self._optional_time_to_db(saga.lock_wait_since),
            "output": saga.output,
            "namespace": saga.namespace,
            "completion_webhook_url": saga.completion_webhook_url,
            "wake_time": self._optional_time_to_db(saga.wake_time),
        }

    def commit_params(self, commit: SagaCommit) -> dict[str, object]:
        """The saga's new row plus the version the commit expects to replace."""
        if commit.saga.version != commit.expected_version + 1:
            raise ValueError(
                f"saga {commit.saga.saga_id}: a commit must bump version"
                f" {commit.expected_version} to {commit.expected_version + 1},"
                f" not to {commit.saga.version}"
            )
        return {**self.saga_params(commit.saga), "expected_version": commit.expected_version}

    def step_params(self, step: StepRecord) -> dict[str, object]:
        return {
            "saga_id": step.saga_id,
            "step_index": step.index,
            "name": step.name,
            "status": step.status.value,
            "attempts": step.attempts,
            "compensation_attempts": step.compensation_attempts,
            "error": step.error,
            "result": step.result,
            "start_time": self._optional_time_to_db(step.start_time),
            "update_time": self._optional_time_to_db(step.update_time),
            "next_attempt_time": self._optional_time_to_db(step.next_attempt_time),
            "wait_deadline": self._optional_time_to_db(step.wait_deadline),
            "wait_until": self._optional_time_to_db(step.wait_until),
            "completion_tokens": " ".join(step.completion_tokens),
            "completion_id": step.completion_id,
        }

    def transition_params(self, transition: TransitionRecord) -> dict[str, object]:
        return {
            "saga_id": transition.saga_id,
            "seq": transition.seq,
            "event": transition.event.value,
            "time": self.time_to_db(transition.time),
            "saga_status": transition.saga_status.value,
            "step": transition.step,
            "step_status": None if transition.step_status is None else transition.step_status.value,
            "attempt": transition.attempt,
            "error": transition.error,
            "actor": transition.actor,
            "reason": transition.reason,
        }

    def saga_from_row(self, row: Row) -> SagaRecord:
        return SagaRecord(
            saga_id=row["saga_id"],
            saga_type=row["saga_type"],
            definition_version=row["definition_version"],
            correlation_id=row["correlation_id"],
            idempotency_key=row["idempotency_key"],
            request_fingerprint=row["request_fingerprint"],
            payload=self.payload_from_db(row["payload"]),
            status=SagaStatus(row["status"]),
            failure_reason=row["failure_reason"],
            failed_step=row["failed_step"],
            needs_intervention=bool(row["needs_intervention"]),
            create_time=self.time_from_db(row["create_time"]),
            update_time=self.time_from_db(row["update_time"]),
            version=row["version"],
            deadline_time=self._optional_time_from_db(row["deadline_time"]),
            lock_keys=tuple(json.loads(row["lock_keys"])),
            locks_held=bool(row["locks_held"]),
            lock_wait_since=self._optional_time_from_db(row["lock_wait_since"]),
            output=None if row["output"] is None else bytes(row["output"]),
            namespace=row["namespace"],
            completion_webhook_url=row["completion_webhook_url"],
            wake_time=self._optional_time_from_db(row["wake_time"]),
        )

    def step_from_row(self, row: Row) -> StepRecord:
        result = row["result"]
        return StepRecord(
            saga_id=row["saga_id"],
            index=row["step_index"],
            name=row["name"],
            status=StepStatus(row["status"]),
            attempts=row["attempts"],
            compensation_attempts=row["compensation_attempts"],
            error=row["error"],
            result=None if result is None else bytes(result),
            start_time=self._optional_time_from_db(row["start_time"]),
            update_time=self._optional_time_from_db(row["update_time"]),
            next_attempt_time=self._optional_time_from_db(row["next_attempt_time"]),
            wait_deadline=self._optional_time_from_db(row["wait_deadline"]),
            wait_until=self._optional_time_from_db(row["wait_until"]),
            completion_tokens=tuple(row["completion_tokens"].split()),
            completion_id=row["completion_id"],
        )

    def transition_from_row(self, row: Row) -> TransitionRecord:
        step_status = row["step_status"]
        return TransitionRecord(
            saga_id=row["saga_id"],
            seq=row["seq"],
            event=TransitionEvent(row["event"]),
            time=self.time_from_db(row["time"]),
            saga_status=SagaStatus(row["saga_status"]),
            step=row["step"],
            step_status=None if step_status is None else StepStatus(step_status),
            attempt=row["attempt"],
            error=row["error"],
            actor=row["actor"],
            reason=row["reason"],
        )

    @staticmethod
    def event_params(event: OutboxEvent) -> dict[str, object]:
        return {
            "sink": event.sink,
            "partition_no": event.partition,
            "saga_id": event.saga_id,
            "seq": event.seq,
            "event_type": event.event_type,
            "body": event.body,
        }

    def pending_event_from_row(self, row: Row) -> PendingEvent:
        return PendingEvent(
            id=int(row["id"]),
            sink=row["sink"],
            partition=int(row["partition_no"]),
            saga_id=row["saga_id"],
            seq=int(row["seq"]),
            event_type=row["event_type"],
            body=bytes(row["body"]),
            created_at=self.time_from_db(row["created_at"]),
        )

    def backlog_from_row(self, row: Row) -> SinkBacklog:
        return SinkBacklog(
            sink=row["sink"],
            pending=int(row["pending"]),
            oldest=self.time_from_db(row["oldest"]),
        )

    def _optional_time_to_db(self, moment: datetime | None) -> object:
        return None if moment is None else self.time_to_db(moment)

    def _optional_time_from_db(self, value: Any) -> datetime | None:
        return None if value is None else self.time_from_db(value)


@overload
def write_refused(
    commits: Sequence[Mapping[str, object]],
    stored_versions: Mapping[Any, object],
    *,
    duplicate: str | None = None,
    stale: Literal[True] = True,
) -> StaleSagaVersion: ...
@overload
def write_refused(
    commits: Sequence[Mapping[str, object]],
    stored_versions: Mapping[Any, object],
    *,
    duplicate: str | None = None,
    stale: bool,
) -> StaleSagaVersion | None: ...
def write_refused(
    commits: Sequence[Mapping[str, object]],
    stored_versions: Mapping[Any, object],
    *,
    duplicate: str | None = None,
    stale: bool = True,
) -> StaleSagaVersion | None:
    """The error a write the database refused stands for: the one place, for both back
    ends and every write path, where a refusal becomes `StaleSagaVersion`.

    `commits` are the write's commit parameters in the order they were applied (two
    commits of one saga chain their versions), `stored_versions` the versions the store
    holds now by saga id (absent: not stored). The first commit whose expected version is
    not the stored one is named; failing that, a transition seq already logged
    (`duplicate`, the database's detail) means two writers appended to one saga; failing
    that, a `stale` refusal (an update that matched no row) says so without a name, and
    any other refusal is not another writer's: None, for the caller to raise as it is.
    """
    stored = dict(stored_versions)
    for params in commits:
        saga_id, expected = params["saga_id"], params["expected_version"]
        found = stored.get(saga_id)
        if found is None:
            return StaleSagaVersion(
                f"saga {saga_id}: commit expected version {expected}, but the saga is not stored"
            )
        if found != expected:
            return StaleSagaVersion(
                f"saga {saga_id}: commit expected version {expected},"
                f" but the store holds version {found}"
            )
        stored[saga_id] = params["version"]
    if duplicate is not None:
        return StaleSagaVersion(
            f"transition seq already recorded, another writer appended: {duplicate}"
        )
    if stale:
        return StaleSagaVersion(
            f"a commit of {len(commits)} expected a version the store no longer held"
        )
    return None


def expected_at(saga_id: str, version: int) -> dict[str, object]:
    """The parameters `write_refused` reads of a commit expecting `version` of a saga."""
    return {"saga_id": saga_id, "expected_version": version, "version": version + 1}


_DATA_CLASSES = frozenset({"22", "23", "54"})
"""SQLSTATE classes of a refusal of the statement's own values: data exception (a
character the encoding cannot hold, text jsonb cannot parse), integrity constraint
violation, program limit exceeded (a key too long for its index)."""
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
"""SQLSTATE classes of the server or the connection, whatever the values: connection
exception, transaction rollback (serialization failure, deadlock), insufficient
resources, object not in prerequisite state (a lock not available), operator
intervention (shutdown, a statement timeout), system error."""
_SQLITE_DATA_CODES = frozenset(
    {
        sqlite3.SQLITE_CONSTRAINT,
        sqlite3.SQLITE_TOOBIG,
        sqlite3.SQLITE_MISMATCH,
        sqlite3.SQLITE_RANGE,
    }
)


def data_refused(error: BaseException) -> DataRefused | None:
    """The answer to a write whose own values the database (or its driver, before sending
    them) refused: a NUL or an unpaired surrogate it cannot store, a value too long for
    its index, a constraint a row breaks. None for any other error. The answer names the
    error's class and code (`database_error`), never its message: that may quote a value."""
    if isinstance(error, psycopg.Error):
        code = error.sqlstate
        refused = code[:2] in _DATA_CLASSES if code else isinstance(error, psycopg.DataError)
    elif isinstance(error, sqlite3.Error):
        code_number = getattr(error, "sqlite_errorcode", None)
        refused = isinstance(error, sqlite3.DataError | sqlite3.IntegrityError) or (
            code_number is not None and code_number & 0xFF in _SQLITE_DATA_CODES
        )
    else:
        refused = isinstance(error, UnicodeEncodeError | OverflowError)
    if not refused:
        return None
    summary = database_error(error) or f"{type(error).__name__}: {getattr(error, 'reason', '')}"
    return DataRefused(
        f"the database refused a value of this write ({summary.rstrip(': ')}); nothing of it"
        " was stored. Look for a NUL character (U+0000), an unpaired surrogate or an"
        " oversized key among its strings"
    )


def fails_alone(error: BaseException) -> bool:
    """Whether a failed write of several sagas may owe its failure to one of them, so they
    are written again apart (`group_commit.write_isolated`) and only that one fails: True
    for another writer's work (StaleSagaVersion), a refusal of data (`data_refused`) and any
    error not known to be the database's; False for the server or the connection (lost,
    shutting down, a serialization failure or deadlock, the store unavailable), which
    every saga of the write would have met alone, and for a cancellation."""
    if not isinstance(error, Exception) or isinstance(error, StoreUnavailable):
        return False
    if isinstance(error, psycopg.Error):
        code = error.sqlstate
        if code:
            return code[:2] not in _TRANSIENT_CLASSES
        if isinstance(error, psycopg.errors.PipelineAborted):
            return True  # a statement before it failed, for a reason of its own
        return not isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    if isinstance(error, sqlite3.OperationalError):
        return data_refused(error) is not None
    return not isinstance(error, OSError)


def member_error(error: Exception) -> Exception:
    """What one saga's write, written alone, answers for `error`: a refusal of its data as
    `DataRefused`, anything else as it is."""
    return data_refused(error) or error
