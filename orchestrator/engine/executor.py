"""Owns the sagas this replica drives: starting them (through `SagaStarts`,
orchestrator/engine/starts.py), operators' changes, watchers, and one task per saga.

Each task loads its saga from the store (sagas claimed from the backlog come
loaded, a batch at a time) and hands it to a `SagaDriver`
(orchestrator/engine/driver.py), which performs what the machine decides; after any
error the task reloads the saga and drives it again, unless another replica
took it over. The write-ahead rule is the driver's: see there.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from opentelemetry import context as otel_context

from orchestrator.core.clock import utc_now
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import (
    SagaError,
    SagaNotFound,
    StaleSagaVersion,
    StoreUnavailable,
)
from orchestrator.core.incoming import CommandEventPublisher
from orchestrator.core.limits import DEFAULT_MAX_SAGAS_IN_FLIGHT
from orchestrator.core.machine import Action, SagaRun
from orchestrator.core.namespaces import DEFAULT_NAMESPACE
from orchestrator.core.opening import SagaStart
from orchestrator.core.records import (
    CreateSagaResult,
    Lease,
    SagaRecord,
    StoredSaga,
)
from orchestrator.core.registry import Registry
from orchestrator.engine.admission import SagaSlots
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.commit_watchers import CommitWatchers
from orchestrator.engine.driver import SagaDriver
from orchestrator.engine.leases import DEFAULT_LEASE_SECONDS, LeaseKeeper, unique_replica_id
from orchestrator.engine.starts import SagaStarts
from orchestrator.engine.wakeups import KeyWakeups, listen_for_releases
from orchestrator.store.base import Store
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.logs import log_context

logger = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before driving a saga again from the store after a store or engine error."""
DEFAULT_MAX_ACTIVE_SAGAS = DEFAULT_MAX_SAGAS_IN_FLIGHT
"""Sagas a replica drives at once, resumed and new alike: past it, StartSaga is refused
(RESOURCE_EXHAUSTED) and orphans wait for room."""
OPERATOR_COMMIT_ATTEMPTS = 5


class Executor:
    """Owns one asyncio task per saga this replica drives.

    Several replicas may share one store: a saga is driven only by the replica
    holding its lease; the `LeaseKeeper` (orchestrator/engine/leases.py) renews them
    and claims the sagas no live replica holds.
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
        command_events: CommandEventPublisher | None = None,
    ) -> None:
        self._store = store
        self._command_events = command_events
        """Publishes tracked sagas' rescue compensation events (None: none configured)."""
        self._registry = registry
        self._participants = participants
        self.lease = lease or Lease(unique_replica_id(), DEFAULT_LEASE_SECONDS)
        self._max_active_sagas = max_active_sagas
        self._rng = rng or random.Random()
        self._telemetry = telemetry or EngineTelemetry()
        self._tasks: dict[str, asyncio.Task[SagaRun | None]] = {}
        self._slots = SagaSlots(max_active_sagas, self._tasks)
        """The budget of sagas in flight: drives, and places reserved by starts and claims."""
        self._lease_keeper: asyncio.Task[None] | None = None
        self._commit_follower: asyncio.Task[None] | None = None
        self.watchers = CommitWatchers(live=False)
        """WatchSaga's waiters, woken by commits here and (PostgreSQL) on other replicas."""
        self._wakeups = KeyWakeups()
        """Sagas waiting for lock keys, woken when a key they queue for is released."""
        self._release_listener: asyncio.Task[None] | None = None
        self._wakers: set[asyncio.Task[None]] = set()
        """Adoptions of sagas woken by a completion, kept until they ran."""
        self._leases = LeaseKeeper(
            store,
            self.lease,
            driven=self._tasks,
            slots=self._slots,
            run_of=self._run_of,
            drive=self._spawn,
            telemetry=self._telemetry,
        )
        self._starts = SagaStarts(
            store,
            self.lease,
            self._slots,
            self._wakeups,
            self._telemetry,
            driven=self._tasks,
            drive=self._spawn,
            adopt=self._leases.adopt,
        )

    # --- starting and resuming -------------------------------------------------------

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
        """Store a new saga and start driving it (`SagaStarts.start_saga`)."""
        return await self._starts.start_saga(
            definition,
            correlation_id,
            payload,
            idempotency_key,
            trace_parent,
            saga_input,
            namespace,
            completion_webhook_url,
        )

    async def start_sagas(
        self,
        starts: Sequence[SagaStart],
        trace_parent: otel_context.Context | None = None,
    ) -> list[CreateSagaResult | SagaError]:
        """Start a batch (StartSagas), each answered on its own (`SagaStarts.start_sagas`)."""
        return await self._starts.start_sagas(starts, trace_parent)

    def resume_unfinished(self) -> None:
        """Start the background upkeep: claim the unfinished sagas no live replica holds
        (now, and whenever there is room again), and keep renewing leases. The server
        answers meanwhile, however many sagas wait to be resumed."""
        if self._lease_keeper is None:
            self._lease_keeper = asyncio.create_task(self._leases.keep(), name="lease-keeper")
        if self._commit_follower is None:
            self._commit_follower = asyncio.create_task(
                self._store.follow_commits(self.watchers.notify, self.watchers.set_live),
                name="commit-follower",
            )
        if self._release_listener is None and self._registry.takes_locks:
            # Without lock definitions nothing here waits for a key: no listening backend.
            self._release_listener = asyncio.create_task(
                listen_for_releases(self._store.lock_releases, self._wakeups),
                name="lock-release-listener",
            )

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
            self.watchers.notify(saga_id)
            # Who queues behind keys released here, and the saga itself if it waits.
            self._wakeups.wake(commit.released_locks)
            self._wakeups.wake_saga(saga_id)
            logger.info("saga changed by request", extra={"saga_id": saga_id})
            if saga_id not in self._tasks and not commit.saga.status.is_terminal:
                await self._leases.adopt(saga_id)
            return commit.saga
        raise StaleSagaVersion(
            f"saga {saga_id} kept changing; the request was not applied, try again"
        )

    async def _park(self, saga_id: str, wake_time: datetime | None = None) -> None:
        """A parked saga needs no driver: its lease goes back, so the claim at its wake
        time (any replica; this one sets a timer for it) or a completion's `wake` (at
        once) takes it up again."""
        await self._store.release_leases(self.lease.owner, [saga_id])
        self.parked_until(wake_time)

    def parked_until(self, wake_time: datetime | None) -> None:
        """A saga was committed parked until `wake_time`: claim it here when that comes."""
        if wake_time is not None and self._lease_keeper is not None:
            self._leases.wake_at(wake_time)

    def wake(self, saga_id: str) -> None:
        """A request changed a saga that may be parked (a completion): drive it here, once
        its current drive (if any) has ended; the claim skips it while it is parked."""

        def adopt() -> None:
            waker = asyncio.create_task(self._leases.adopt(saga_id), name=f"wake-{saga_id}")
            self._wakers.add(waker)
            waker.add_done_callback(self._wakers.discard)

        task = self._tasks.get(saga_id)
        if task is None:
            adopt()
        else:
            task.add_done_callback(lambda _: adopt())

    def _spawn(
        self,
        saga_id: str,
        run: SagaRun | None,
        first_actions: tuple[Action, ...] | None = None,
        trace_parent: otel_context.Context | None = None,
        saga_input: Message | None = None,
    ) -> None:
        # The task copies this context: every line it logs carries the saga id.
        with log_context(saga_id=saga_id):
            task = asyncio.create_task(
                self._drive_until_done(saga_id, run, first_actions, trace_parent, saga_input),
                name=f"saga-{saga_id}",
            )
        self._tasks[saga_id] = task
        self._telemetry.drive_started()
        task.add_done_callback(lambda _: self._drive_ended(saga_id))

    def _drive_ended(self, saga_id: str) -> None:
        self._tasks.pop(saga_id, None)
        self._telemetry.drive_ended()

    async def drive_stopped(self, saga_id: str) -> SagaRun | None:
        """Until this replica stops driving the saga (it ended, or went to another
        replica); at once if it does not drive it. The run as its drive left it, every
        change committed, if the drive ended here; else None. Waiting never cancels the
        drive."""
        task = self._tasks.get(saga_id)
        if task is None:
            return None
        await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    async def wait_idle(self) -> None:
        """Wait until every saga this process drives has finished (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every drive and hand its lease back, so another replica resumes it at
        once; the store holds each saga's last committed state."""
        for upkeep in (self._lease_keeper, self._commit_follower, self._release_listener):
            if upkeep is not None:
                upkeep.cancel()
                await asyncio.gather(upkeep, return_exceptions=True)
        self._lease_keeper = self._commit_follower = self._release_listener = None
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
        saga_input: Message | None = None,
    ) -> SagaRun | None:
        """Drive a saga to a terminal state, reloading it from the store after any error;
        the run as it ended, or None if the saga moved on to another replica.

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
                    committed=self.watchers.notify,
                    wakeups=self._wakeups,
                    lock_recheck_seconds=self.lease.seconds,
                    saga_input=saga_input,
                    parked=self._park,
                    command_events=self._command_events,
                )
                with self._telemetry.driving(run, trace_parent):
                    await driver.drive(first_actions)
                return driver.run
            except asyncio.CancelledError:
                raise
            except StaleSagaVersion:
                # Changed under us: by an operator (we still hold the lease: reload and go
                # on) or by the replica that took it over (we do not: stop).
                if not await self._leases.still_held(saga_id):
                    logger.warning(
                        "saga moved on elsewhere; stop driving", extra={"saga_id": saga_id}
                    )
                    return None
                logger.info("saga changed by a request; reloading", extra={"saga_id": saga_id})
            except StoreUnavailable as error:
                # Expected during a database outage, for every saga in flight: one line
                # each, no traceback (the pool logs the outage itself once).
                delay = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "the store is unavailable (%s); reloading the saga in %.1fs",
                    type(error.__cause__).__name__ if error.__cause__ else "pool not reachable",
                    delay,
                    extra={"saga_id": saga_id},
                )
                await asyncio.sleep(delay)
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
                first_actions = saga_input = None

    async def _load(self, saga_id: str) -> SagaRun:
        stored = await self._store.load_sagas([saga_id])
        if not stored:
            raise SagaNotFound(f"no saga with id {saga_id}")
        return self._run_of(stored[0])

    def _run_of(self, stored: StoredSaga) -> SagaRun:
        saga = stored.saga
        definition = self._registry.get(saga.saga_type, saga.definition_version)
        return SagaRun(definition, saga, list(stored.steps), stored.last_seq)
