"""Starting sagas: StartSaga, ExecuteSaga's start and StartSagas batches.

A start reserves its place in flight before its first await (`SagaSlots`), stores the
saga (with its lock keys taken or queued in the same transaction when its type locks
from the start), then hands it to the executor to drive. A repeat of a known
idempotency key is answered with the saga it started, after checking the request is
the same, and that saga is adopted if nobody drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from opentelemetry import context as otel_context

from orchestrator.core.clock import utc_now
from orchestrator.core.definition import LockPolicy, SagaDefinition
from orchestrator.core.errors import (
    IdempotencyKeyReused,
    LockConflict,
    ResourceExhausted,
    SagaError,
)
from orchestrator.core.machine import Action, SagaRun
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, qualified_or_none, unqualified
from orchestrator.core.opening import SagaStart, open_saga, saga_lock_keys
from orchestrator.core.records import CreateSagaResult, Lease, LockAttempt, NewSaga, SagaCommit
from orchestrator.engine.admission import Reservation, SagaSlots
from orchestrator.engine.wakeups import KeyWakeups
from orchestrator.store.base import Store
from orchestrator.telemetry.engine import EngineTelemetry

logger = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 1.0
"""The retry delay suggested to a start refused for want of room in flight."""

Drive = Callable[
    [str, SagaRun, tuple[Action, ...], otel_context.Context | None, Message | None], None
]
"""Starts driving a saga just created: the executor's spawn."""


class SagaStarts:
    """Stores new sagas and hands them to the executor (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        lease: Lease,
        slots: SagaSlots,
        wakeups: KeyWakeups,
        telemetry: EngineTelemetry,
        *,
        driven: Mapping[str, Any],
        drive: Drive,
        adopt: Callable[[str], Awaitable[Any]],
    ) -> None:
        self._store = store
        self.lease = lease
        self._slots = slots
        self._wakeups = wakeups
        self._telemetry = telemetry
        self._driven = driven
        self._drive = drive
        self._adopt = adopt

    async def start_saga(
        self,
        definition: SagaDefinition,
        correlation_id: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        trace_parent: otel_context.Context | None = None,
        saga_input: Message | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        completion_webhook_url: str | None = None,
    ) -> CreateSagaResult:
        """Store a new saga in `namespace` and start driving it; a known idempotency key
        (of that namespace) returns the saga it started. When this returns, the saga and
        its SAGA_STARTED row are committed.
        `saga_input`, the input message `payload` was made from, spares its driver
        decoding the payload again.

        Raises ResourceExhausted, storing nothing, when this replica's sagas in flight
        (driven, or reserved by starts and claims under way) already fill
        `max_active_sagas`: the place is reserved before the first await, so a burst of
        starts never admits more than there is room for. A repeat of a known key needs
        a place only while the insert finds it out (it then gives it back, or lends it to
        the saga it adopts), so a repeat arriving while the replica is full is refused
        like any start.
        `trace_parent` (the caller's trace context) becomes the parent of the saga's span.
        """
        with self._slots.reserve() as place:
            if not place:
                raise self.busy()
            if definition.lock_stage == 0:
                result, run, first_actions = await self._create_locked(
                    definition,
                    correlation_id,
                    payload,
                    idempotency_key,
                    namespace,
                    completion_webhook_url,
                )
            else:
                run, first_actions, opening = open_saga(
                    definition,
                    correlation_id,
                    payload,
                    idempotency_key,
                    utc_now(),
                    None,
                    namespace,
                    completion_webhook_url,
                )
                result = await self._store.create_saga(
                    opening.saga, run.steps, list(opening.transitions), lease=self.lease
                )
            return await self._started(result, run, first_actions, place, trace_parent, saga_input)

    async def start_sagas(
        self,
        starts: Sequence[SagaStart],
        trace_parent: otel_context.Context | None = None,
    ) -> list[CreateSagaResult | SagaError]:
        """Start a batch (StartSagas): each saga as `start_saga` would, answered on its own,
        in the order of `starts`. The sagas whose types take no lock keys at their start
        are stored in one transaction (`Store.create_sagas`), before this returns; a type
        that does takes its keys or queue places in a transaction of its own, in batch
        order, as StartSaga does. Backpressure is per saga: each request takes its place
        in flight before anything is awaited; past `max_active_sagas`, the rest of the
        batch is answered ResourceExhausted and nothing of it is stored.
        """
        # Reserved here, all at once and before the first await: concurrent batches
        # (and StartSagas) share what is left, never more.
        places = [self._slots.reserve() for _ in starts]
        try:
            return await self._start_reserved(starts, places, trace_parent)
        finally:
            for place in places:
                place.release()

    async def _start_reserved(
        self,
        starts: Sequence[SagaStart],
        places: Sequence[Reservation],
        trace_parent: otel_context.Context | None,
    ) -> list[CreateSagaResult | SagaError]:
        """`start_sagas` once each request holds its place (or was refused one)."""
        outcomes: list[CreateSagaResult | SagaError | None] = [None] * len(starts)
        opened: list[tuple[int, SagaRun, tuple[Action, ...], SagaCommit]] = []
        locked: list[int] = []
        for index, start in enumerate(starts):
            if not places[index]:
                outcomes[index] = self.busy()
                continue
            if start.definition.lock_stage == 0:
                locked.append(index)
                continue
            try:
                run, first_actions, opening = open_saga(
                    start.definition,
                    start.correlation_id,
                    start.payload,
                    start.idempotency_key,
                    utc_now(),
                    None,
                    start.namespace,
                    start.completion_webhook_url,
                )
            except SagaError as error:
                outcomes[index] = error
                places[index].release()
                continue
            opened.append((index, run, first_actions, opening))
        created = await self._store.create_sagas(
            [
                NewSaga(opening.saga, tuple(run.steps), opening.transitions, self.lease)
                for _, run, _, opening in opened
            ]
        )
        for (index, run, first_actions, _), result in zip(opened, created, strict=True):
            if isinstance(result, SagaError):  # refused alone (DataRefused): no saga to drive
                outcomes[index] = result
                continue
            outcomes[index] = await self._answer(
                result, run, first_actions, places[index], trace_parent, starts[index].saga_input
            )
            places[index].release()
        for index in locked:
            start = starts[index]
            try:
                result, run, first_actions = await self._create_locked(
                    start.definition,
                    start.correlation_id,
                    start.payload,
                    start.idempotency_key,
                    start.namespace,
                    start.completion_webhook_url,
                )
            except SagaError as error:
                outcomes[index] = error
                places[index].release()
                continue
            outcomes[index] = await self._answer(
                result, run, first_actions, places[index], trace_parent, start.saga_input
            )
            places[index].release()
        return [outcome for outcome in outcomes if outcome is not None]

    async def _answer(
        self,
        result: CreateSagaResult,
        run: SagaRun,
        first_actions: tuple[Action, ...],
        place: Reservation,
        trace_parent: otel_context.Context | None,
        saga_input: Message | None,
    ) -> CreateSagaResult | SagaError:
        """`_started`, with a refusal as the batch item's answer instead of raised."""
        try:
            return await self._started(result, run, first_actions, place, trace_parent, saga_input)
        except SagaError as error:
            return error

    def busy(self) -> ResourceExhausted:
        """The refusal of a start this replica has no room for."""
        return ResourceExhausted(
            f"this replica has {self._slots.in_use} sagas in flight, its limit (max sagas "
            f"in flight) is {self._slots.capacity}; retry later or on another replica",
            reason="SAGAS_IN_FLIGHT_EXHAUSTED",
            retry_after=BUSY_RETRY_SECONDS,
        )

    async def _started(
        self,
        result: CreateSagaResult,
        run: SagaRun,
        first_actions: tuple[Action, ...],
        place: Reservation,
        trace_parent: otel_context.Context | None,
        saga_input: Message | None = None,
    ) -> CreateSagaResult:
        """After the insert: drive a saga just created (in the place `place` reserved
        for it); for a known idempotency key, check the request is the same, give the
        place back and make sure someone drives the saga it started."""
        saga = run.saga
        if not result.created:
            # A repeat needs no place of its own: given back before the adoption, which
            # takes one (no await between, so nobody else can take it meanwhile).
            place.release()
            existing = result.saga
            if existing.request_fingerprint != saga.request_fingerprint:
                key = unqualified(saga.idempotency_key or "", saga.namespace)
                raise IdempotencyKeyReused(
                    f"idempotency key {key!r} already started saga "
                    f"{existing.saga_id} with a different saga_type, correlation_id or payload"
                )
            # The first start may have been committed without its caller (or its
            # driver) hearing of it: make sure someone drives the saga.
            if not existing.status.is_terminal and existing.saga_id not in self._driven:
                await self._adopt(existing.saga_id)
            return result
        self._telemetry.saga_started(saga.saga_type)
        if saga.lock_wait_since is not None:
            self._telemetry.lock_queued(run)
        logger.info(
            "saga started",
            extra={
                "saga_id": saga.saga_id,
                "saga_type": saga.saga_type,
                "correlation_id": saga.correlation_id,
            },
        )
        self._drive(saga.saga_id, run, first_actions, trace_parent, saga_input)
        return result

    async def _create_locked(
        self,
        definition: SagaDefinition,
        correlation_id: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        namespace: str = DEFAULT_NAMESPACE,
        completion_webhook_url: str | None = None,
    ) -> tuple[CreateSagaResult, SagaRun, tuple[Action, ...]]:
        """Create a saga that takes its lock keys before its first step, in the insert's
        own transaction: holding them, or queued in StartSaga order, or (reject policy)
        refused with nothing stored."""
        keys = saga_lock_keys(definition, payload, namespace)
        opened: list[tuple[SagaRun, tuple[Action, ...]]] = []
        tickets: list[int] = []

        def open_with(attempt: LockAttempt) -> NewSaga:
            locks = definition.locks
            if attempt.blockers and locks is not None and locks.policy is LockPolicy.REJECT:
                first = attempt.blockers[0]
                how = "held" if first.holds else "queued for"
                key = unqualified(first.key, namespace)
                raise LockConflict(f"lock key {key!r} is {how} by saga {first.saga_id}")
            run, first_actions, opening = open_saga(
                definition,
                correlation_id,
                payload,
                idempotency_key,
                utc_now(),
                attempt,
                namespace,
                completion_webhook_url,
            )
            opened[:] = [(run, first_actions)]
            tickets[:] = [] if attempt.acquired else [attempt.ticket]
            return NewSaga(opening.saga, tuple(run.steps), opening.transitions, self.lease)

        mark = self._wakeups.mark()
        stored_key = qualified_or_none(namespace, idempotency_key)
        result = await self._store.create_locked_saga(stored_key, keys, open_with)
        if not opened:  # a repeat answered before anything was opened
            run, first_actions, _ = open_saga(
                definition, correlation_id, payload, idempotency_key, utc_now(), None, namespace
            )
            return result, run, first_actions
        if result.created and tickets and result.saga.lock_wait_since is not None:
            # Queued: its driver sleeps first unless a key is released meanwhile.
            self._wakeups.queued_at_opening(result.saga.saga_id, mark, tickets[0])
        return result, *opened[0]


__all__ = ["BUSY_RETRY_SECONDS", "SagaStarts"]
