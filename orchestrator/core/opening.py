"""Opening a saga: the machine's constructor in all but name.

`open_saga` builds a new saga in memory with its first stage started and the commit
that stores it (SAGA_STARTED, then each STEP_STARTED), so the insert that creates the
saga also commits its first steps. Pure: the engine stores the commit and sends the
actions; tests and tools open sagas the same way without an engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import InvalidArgument, InvalidPayload, TrackedTypeNotStartable
from orchestrator.core.ids import new_saga_id
from orchestrator.core.machine import Action, SagaRun
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, qualified, qualified_or_none
from orchestrator.core.records import (
    LockAttempt,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.core.tracking import TRACKED_KEY_PREFIX


def request_fingerprint(saga_type: str, correlation_id: str, payload: Mapping[str, Any]) -> str:
    """A digest of what StartSaga was asked, to tell a true repeat from a reused key."""
    canonical = json.dumps(
        [saga_type, correlation_id, payload], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def open_saga(
    definition: SagaDefinition,
    correlation_id: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    now: datetime,
    locks: LockAttempt | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    completion_webhook_url: str | None = None,
) -> tuple[SagaRun, tuple[Action, ...], SagaCommit]:
    """A new saga in memory with its first stage started: the run, the actions to send,
    and the opening commit (SAGA_STARTED, then each STEP_STARTED) for the saga's insert.

    The first stage starts in the saga's own insert: one transaction fewer, and still
    every STEP_STARTED is committed before its command is sent. A saga that takes its
    lock keys from the start is told `locks`, what the store found in the insert's
    transaction: it starts holding them, or queued (its first action is then to wait).
    The saga belongs to `namespace`: its idempotency key and lock keys are stored
    qualified by it, so they collide only with another saga of the same namespace.
    """
    saga = SagaRecord(
        saga_id=new_saga_id(),
        saga_type=definition.name,
        definition_version=definition.version,
        correlation_id=correlation_id,
        payload=payload,
        status=SagaStatus.RUNNING,
        create_time=now,
        update_time=now,
        idempotency_key=qualified_or_none(namespace, idempotency_key),
        request_fingerprint=request_fingerprint(definition.name, correlation_id, payload),
        deadline_time=(
            None if definition.deadline is None else now + timedelta(seconds=definition.deadline)
        ),
        lock_keys=saga_lock_keys(definition, payload, namespace),
        namespace=namespace,
        completion_webhook_url=completion_webhook_url,
    )
    steps = [
        StepRecord(saga_id=saga.saga_id, index=index, name=step.name)
        for index, step in enumerate(definition.all_steps)
    ]
    started = TransitionRecord(
        saga_id=saga.saga_id,
        seq=1,
        event=TransitionEvent.SAGA_STARTED,
        time=now,
        saga_status=SagaStatus.RUNNING,
    )
    run = SagaRun(definition, saga, steps, last_seq=1)
    if locks is not None:
        run.locks_answered(locks, now)
    first_actions = run.next_actions(now)
    opening = run.take_commit()
    return (
        run,
        first_actions,
        dataclasses.replace(opening, transitions=(started, *opening.transitions)),
    )


@dataclass(frozen=True, slots=True)
class SagaStart:
    """One saga a StartSagas batch asks for, its request checked and its input parsed."""

    definition: SagaDefinition
    correlation_id: str
    payload: dict[str, Any]
    idempotency_key: str | None
    saga_input: Message | None = None
    """The input message `payload` was made from (spares the driver decoding it again)."""
    namespace: str = DEFAULT_NAMESPACE
    completion_webhook_url: str | None = None

    def __post_init__(self) -> None:
        tracking = self.definition.tracking
        if tracking is not None:
            raise TrackedTypeNotStartable(
                f"saga type {self.definition.name!r} is tracked: its instances start when "
                f"one of its start events ({', '.join(tracking.started_by)}) is ingested, "
                "not by StartSaga"
            )
        if self.idempotency_key is not None and self.idempotency_key.startswith(TRACKED_KEY_PREFIX):
            raise InvalidArgument(
                f"idempotency_key: keys starting with {TRACKED_KEY_PREFIX!r} are reserved for "
                "tracked sagas' instances; choose another key"
            )


def saga_lock_keys(
    definition: SagaDefinition, payload: dict[str, Any], namespace: str = DEFAULT_NAMESPACE
) -> tuple[str, ...]:
    """The saga's lock keys, from its input, qualified by its namespace (sagas of two
    namespaces never share a key); a key builder that fails on this input, or gives
    something other than non-empty strings, makes the input invalid."""
    if definition.locks is None:
        return ()
    try:
        keys = definition.lock_keys(json_format.ParseDict(payload, definition.input_type()))
    except Exception as error:
        raise InvalidPayload(f"the saga's lock keys cannot be computed: {error!r}") from error
    if not all(isinstance(key, str) and key for key in keys):
        raise InvalidPayload(f"lock keys must be non-empty strings, got {list(keys)!r}")
    return tuple(qualified(namespace, key) for key in keys)
