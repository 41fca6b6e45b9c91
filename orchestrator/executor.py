"""Owns the sagas this replica drives: starting them, operators' changes, leases,
watchers, and one task per saga.

Each task loads its saga from the store and hands it to a `SagaDriver`
(orchestrator/driver.py), which performs what the machine decides; after any
error the task reloads the saga and drives it again, unless another replica
took it over. The write-ahead rule is the driver's: see there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context

from orchestrator.clock import utc_now
from orchestrator.commands import ParticipantClient
from orchestrator.definition import SagaDefinition
from orchestrator.driver import SagaDriver
from orchestrator.errors import IdempotencyKeyReused, SagaNotFound, StaleSagaVersion
from orchestrator.ids import new_saga_id
from orchestrator.machine import Action, SagaRun
from orchestrator.records import (
    CreateSagaResult,
    Lease,
    SagaCommit,
    SagaRecord,
    SagaStatus,
    StepRecord,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.registry import Registry
from orchestrator.store.base import Store
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.logs import log_context

logger = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before driving a saga again from the store after a store or engine error."""


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
) -> tuple[SagaRun, tuple[Action, ...], SagaCommit]:
    """A new saga in memory with its first stage started: the run, the actions to send,
    and the opening commit (SAGA_STARTED, then each STEP_STARTED) for the saga's insert.

    The first stage starts in the saga's own insert: one transaction fewer, and still
    every STEP_STARTED is committed before its command is sent.
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
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint(definition.name, correlation_id, payload),
        deadline_time=(
            None if definition.deadline is None else now + timedelta(seconds=definition.deadline)
        ),
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
    first_actions = run.next_actions(now)
    opening = run.take_commit()
    return (
        run,
        first_actions,
        dataclasses.replace(opening, transitions=(started, *opening.transitions)),
    )


DEFAULT_LEASE_SECONDS = 10.0
DEFAULT_MAX_ACTIVE_SAGAS = 1000
"""Sagas a replica resumes at once; new sagas started on it are not held back."""
BACKLOG_POLL_SECONDS = 0.2
OPERATOR_COMMIT_ATTEMPTS = 5
CLAIM_BATCH = 200


def unique_replica_id() -> str:
    """An owner id no other process shares: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Executor:
    """Owns one asyncio task per saga this replica drives, and the leases on them.

    Several replicas may share one store: a saga is driven only by the replica
    holding its lease. Leases are renewed every third of their duration; sagas
    whose lease expired (their replica died) are claimed by whoever looks next,
    and claiming fences the old owner off (see `Store.claim_sagas`).
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        participants: ParticipantClient,
        *,
        lease: Lease | None = None,
        max_active_sagas: int = DEFAULT_MAX_ACTIVE_SAGAS,
        rng: random.Random | None = None,
        telemetry: EngineTelemetry | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._participants = participants
        self.lease = lease or Lease(unique_replica_id(), DEFAULT_LEASE_SECONDS)
        self._max_active_sagas = max_active_sagas
        self._rng = rng or random.Random()
        self._telemetry = telemetry or EngineTelemetry()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lease_keeper: asyncio.Task[None] | None = None
        self._watchers: dict[str, tuple[asyncio.Event, int]] = {}
        """Per watched saga: the event its next local commit sets, and how many wait on it."""

    # --- starting and resuming -------------------------------------------------------

    async def start_saga(
        self,
        definition: SagaDefinition,
        correlation_id: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        trace_parent: otel_context.Context | None = None,
    ) -> CreateSagaResult:
        """Store a new saga and start driving it; a known idempotency key returns the
        saga it started. When this returns, the saga and its SAGA_STARTED row are committed.
        `trace_parent` (the caller's trace context) becomes the parent of the saga's span.
        """
        run, first_actions, opening = open_saga(
            definition, correlation_id, payload, idempotency_key, utc_now()
        )
        saga = run.saga
        result = await self._store.create_saga(
            opening.saga, run.steps, list(opening.transitions), lease=self.lease
        )
        if not result.created:
            existing = result.saga
            if existing.request_fingerprint != saga.request_fingerprint:
                raise IdempotencyKeyReused(
                    f"idempotency key {idempotency_key!r} already started saga "
                    f"{existing.saga_id} with a different saga_type, correlation_id or payload"
                )
            # The first start may have been committed without its caller (or its
            # driver) hearing of it: make sure someone drives the saga.
            if not existing.status.is_terminal and existing.saga_id not in self._tasks:
                await self._adopt(existing.saga_id)
            return result
        self._telemetry.saga_started(saga.saga_type)
        logger.info(
            "saga started",
            extra={
                "saga_id": saga.saga_id,
                "saga_type": saga.saga_type,
                "correlation_id": saga.correlation_id,
            },
        )
        self._spawn(saga.saga_id, run, first_actions, trace_parent)
        return result

    def resume_unfinished(self) -> None:
        """Start the background upkeep: claim the unfinished sagas no live replica holds
        (now, and whenever there is room again), and keep renewing leases. The server
        answers meanwhile, however many sagas wait to be resumed."""
        if self._lease_keeper is None:
            self._lease_keeper = asyncio.create_task(self._keep_leases(), name="lease-keeper")

    async def change_saga(
        self, saga_id: str, change: Callable[[SagaRun, datetime], None]
    ) -> SagaRecord:
        """Apply a request's change (an operator's abort, retry, resolve) through the
        machine and commit it; if the driving replica commits first, try again on the
        fresh state. The driver notices the new version at its next commit and reloads;
        a saga nobody drives (it needed intervention) is claimed and driven from here.
        """
        for _ in range(OPERATOR_COMMIT_ATTEMPTS):
            run = await self._load(saga_id)
            change(run, utc_now())
            commit = run.take_commit()
            try:
                await self._store.commit([commit])
            except StaleSagaVersion:
                continue
            self._notify(saga_id)
            logger.info("saga changed by request", extra={"saga_id": saga_id})
            if saga_id not in self._tasks and not commit.saga.status.is_terminal:
                await self._adopt(saga_id)
            return commit.saga
        raise StaleSagaVersion(
            f"saga {saga_id} kept changing; the request was not applied, try again"
        )

    async def wait_for_commit(self, saga_id: str, at_most_seconds: float) -> None:
        """Return when this replica commits for the saga, or after `at_most_seconds` (a
        saga driven by another replica is only seen by polling the store)."""
        event, waiting = self._watchers.get(saga_id, (asyncio.Event(), 0))
        self._watchers[saga_id] = (event, waiting + 1)
        try:
            await asyncio.wait_for(event.wait(), at_most_seconds)
        except TimeoutError:
            pass
        finally:
            # The last waiter forgets the event, so sagas driven elsewhere (never
            # committed here) leave nothing behind.
            current = self._watchers.get(saga_id)
            if current is not None and current[0] is event:
                if current[1] <= 1:
                    del self._watchers[saga_id]
                else:
                    self._watchers[saga_id] = (event, current[1] - 1)

    def _notify(self, saga_id: str) -> None:
        watched = self._watchers.pop(saga_id, None)
        if watched is not None:
            watched[0].set()

    async def _adopt(self, saga_id: str) -> None:
        """Drive one saga here if nobody else holds its lease."""
        claimed = await self._store.claim_saga(self.lease, saga_id)
        if claimed is not None and saga_id not in self._tasks:
            self._spawn(saga_id, None)

    async def claim_orphans(self) -> int:
        """Claim unfinished sagas whose lease is missing or expired, as many as there is
        room for (`max_active_sagas`), and drive them; returns how many.

        The bound keeps a replica that starts into a backlog (or takes over a dead
        replica's sagas) from sending every saga's command at once, and leaves the
        rest of the backlog for other replicas to share.
        """
        total = 0
        while (room := self._max_active_sagas - len(self._tasks)) > 0:
            batch = min(room, CLAIM_BATCH)
            claimed = await self._store.claim_sagas(self.lease, batch)
            for saga in claimed:
                if saga.saga_id not in self._tasks:
                    self._spawn(saga.saga_id, None)
            total += len(claimed)
            if len(claimed) < batch:
                break
        return total

    async def _keep_leases(self) -> None:
        """Forever: claim orphans, and every third of the lease renew the leases of the
        sagas driven here (stopping those lost to another replica). While a backlog
        waits (a claim came back full, or there is no room), look again soon."""
        renew_every = self.lease.seconds / 3
        loop = asyncio.get_running_loop()
        next_renewal = loop.time() + renew_every
        while True:
            pause = renew_every
            try:
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + renew_every
                    await self._renew_leases()
                claimed = await self.claim_orphans()
                if claimed:
                    logger.info("claimed %d saga(s) nobody was driving", claimed)
                if claimed or len(self._tasks) >= self._max_active_sagas:
                    pause = BACKLOG_POLL_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("lease upkeep failed, retrying in %.1fs: %s", pause, error)
            await asyncio.sleep(min(pause, max(0.0, next_renewal - loop.time())))

    async def _renew_leases(self) -> None:
        driven = list(self._tasks)
        held = await self._store.renew_leases(self.lease, driven)
        for saga_id in set(driven) - held:
            task = self._tasks.get(saga_id)
            if task is not None:
                logger.warning(
                    "lease lost to another replica; stop driving", extra={"saga_id": saga_id}
                )
                task.cancel()

    def _spawn(
        self,
        saga_id: str,
        run: SagaRun | None,
        first_actions: tuple[Action, ...] | None = None,
        trace_parent: otel_context.Context | None = None,
    ) -> None:
        # The task copies this context: every line it logs carries the saga id.
        with log_context(saga_id=saga_id):
            task = asyncio.create_task(
                self._drive_until_done(saga_id, run, first_actions, trace_parent),
                name=f"saga-{saga_id}",
            )
        self._tasks[saga_id] = task
        self._telemetry.drive_started()
        task.add_done_callback(lambda _: self._drive_ended(saga_id))

    def _drive_ended(self, saga_id: str) -> None:
        self._tasks.pop(saga_id, None)
        self._telemetry.drive_ended()

    async def wait_idle(self) -> None:
        """Wait until every saga this process drives has finished (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every drive and hand its lease back, so another replica resumes it at
        once; the store holds each saga's last committed state."""
        if self._lease_keeper is not None:
            self._lease_keeper.cancel()
            await asyncio.gather(self._lease_keeper, return_exceptions=True)
            self._lease_keeper = None
        driven = list(self._tasks)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._store.release_leases(self.lease.owner, driven)
        except Exception as error:
            logger.warning("could not release leases; they expire by themselves: %s", error)

    # --- driving -----------------------------------------------------------------------

    async def _drive_until_done(
        self,
        saga_id: str,
        run: SagaRun | None,
        first_actions: tuple[Action, ...] | None,
        trace_parent: otel_context.Context | None = None,
    ) -> None:
        """Drive a saga to a terminal state, reloading it from the store after any error.

        `first_actions` are commands the caller already committed as started (a new
        saga's first stage); they are sent before the machine is asked again.
        """
        failures = 0
        while True:
            try:
                if run is None:
                    run = await self._load(saga_id)
                driver = SagaDriver(
                    run,
                    store=self._store,
                    registry=self._registry,
                    participants=self._participants,
                    telemetry=self._telemetry,
                    rng=self._rng,
                    committed=self._notify,
                )
                with self._telemetry.driving(run, trace_parent):
                    await driver.drive(first_actions)
                return
            except asyncio.CancelledError:
                raise
            except StaleSagaVersion:
                # Changed under us: by an operator (we still hold the lease: reload and go
                # on) or by the replica that took it over (we do not: stop).
                try:
                    held = saga_id in await self._store.renew_leases(self.lease, [saga_id])
                except Exception:
                    held = True  # cannot tell now; the next commit will
                if not held:
                    logger.warning(
                        "saga moved on elsewhere; stop driving", extra={"saga_id": saga_id}
                    )
                    return
                logger.info("saga changed by a request; reloading", extra={"saga_id": saga_id})
            except Exception:
                delay = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.exception(
                    "driving the saga failed; reloading from the store in %.1fs",
                    delay,
                    extra={"saga_id": saga_id},
                )
                await asyncio.sleep(delay)
            finally:
                run = None  # after an error, drive again from what the store holds
                first_actions = None

    async def _load(self, saga_id: str) -> SagaRun:
        saga = await self._store.get_saga(saga_id)
        if saga is None:
            raise SagaNotFound(f"no saga with id {saga_id}")
        definition = self._registry.get(saga.saga_type, saga.definition_version)
        steps = await self._store.get_steps(saga_id)
        return SagaRun(definition, saga, steps, await self._store.last_seq(saga_id))
