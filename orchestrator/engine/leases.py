"""Leases on the sagas a replica drives, and claims of the sagas nobody drives.

Several replicas may share one store: a saga is driven only by the replica holding
its lease. The `LeaseKeeper` renews this replica's leases every third of their
duration (stopping the drives whose lease another replica took) and claims orphans,
sagas whose lease is missing or expired (their replica died); claiming fences the
old owner off (see `Store.claim_sagas`). It decides nothing about a saga itself: a
claimed saga is handed to the executor, which drives it.

A replica frozen for good (SIGSTOP, a paused VM, a debugger) in the middle of a write
keeps that write's row locks, and claims skip locked rows: its leases expire, yet those
sagas could not be claimed until it woke or died. So at every renewal the keeper also
ends the database sessions of lost replicas (`Store.end_lost_sessions`): those whose
every lease expired more than LOST_GRACE_LEASES lease periods ago. A replica whose
leases all expired that long ago has been fenced off already (any claim fences it), so
ending its sessions takes nothing from a live one; a replica holding no lease is never
touched. Its sagas are claimed in the same round. See docs/limits.md for the bound.

A saga parked here (a tracked saga's step waiting for its event) is claimed at its wake
time, not at the next idle poll a third of a lease later: `wake_at` sets a timer the
keeper's loop sleeps on, so a missed window is acted on within WAKE_COALESCE_SECONDS.
Wake times are kept in buckets of that length, so a flood of parks costs a claim per
bucket at most, and a timer whose saga moved on meanwhile costs one empty claim.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from datetime import datetime

from orchestrator.core.clock import utc_now
from orchestrator.core.machine import SagaRun
from orchestrator.core.records import Lease, StoredSaga
from orchestrator.engine.admission import SagaSlots
from orchestrator.store.base import Store
from orchestrator.telemetry.engine import EngineTelemetry

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 10.0
BACKLOG_POLL_SECONDS = 0.2
"""How soon to look again while a backlog of orphans waits."""
CLAIM_BATCH = 200
"""Orphans claimed (and loaded) per round trip."""
NEW_SAGAS_SHARE = 10
"""While orphans are resumed, 1/NEW_SAGAS_SHARE of the budget is kept for new sagas."""
LOST_GRACE_LEASES = 1.0
"""A replica is lost once all its leases expired this many lease periods ago."""
WAKE_COALESCE_SECONDS = 0.05
"""Wake times closer than this share one claim (see the module)."""
WAKE_MARGIN_SECONDS = 0.01
"""A wake-up comes this much after the wake time, so the store finds the saga due."""


def unique_replica_id() -> str:
    """An owner id no other process shares: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    """Renews the leases of the sagas `driven` here and claims orphans into `drive`.

    `driven` is the executor's own map of drives (read, never changed here); `slots` the
    budget of sagas in flight it shares with the executor's starts; `run_of` builds a
    saga's run from what the store holds; `drive` starts driving a claimed saga (with its
    run, or None to let its task load it); `telemetry` counts takeovers and lost leases.
    """

    def __init__(
        self,
        store: Store,
        lease: Lease,
        *,
        driven: Mapping[str, asyncio.Task[SagaRun | None]],
        slots: SagaSlots,
        run_of: Callable[[StoredSaga], SagaRun],
        drive: Callable[[str, SagaRun | None], None],
        telemetry: EngineTelemetry | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._driven = driven
        self._slots = slots
        self._run_of = run_of
        self._drive = drive
        self._telemetry = telemetry or EngineTelemetry()
        self._wake_buckets: list[int] = []
        """A heap of the buckets (of WAKE_COALESCE_SECONDS, loop time) to claim at."""
        self._wake_set: set[int] = set()
        self._woken = asyncio.Event()

    async def adopt(self, saga_id: str) -> None:
        """Drive one saga here if nobody else holds its lease and there is room; without
        room it waits, as any orphan does, for `claim_orphans` to find room for it."""
        with self._slots.reserve() as place:
            if not place:
                return
            claimed = await self._store.claim_saga(self._lease, saga_id)
            if claimed is not None and saga_id not in self._driven:
                self._drive(saga_id, None)

    async def claim_orphans(self) -> int:
        """Claim unfinished sagas whose lease is missing or expired, as many as there is
        room for, and drive them; returns how many.

        Orphans fill the budget (`max_active_sagas`) only up to a tenth short of it, so
        new sagas still start while a backlog is resumed. The bound keeps a replica that
        starts into a backlog (or takes over a dead replica's sagas) from sending every
        saga's command at once, and leaves the rest of the backlog for other replicas.
        Each batch costs two round trips, a claim and a load, however many it holds.
        """
        total = 0
        reserved_for_new = self._slots.capacity // NEW_SAGAS_SHARE
        while True:
            # The places are taken before the claim is awaited, so starts arriving
            # meanwhile cannot fill them too.
            with self._slots.reserve(CLAIM_BATCH, keep=reserved_for_new) as places:
                if not places:
                    break
                claimed = await self._store.claim_sagas(self._lease, places.count)
                runs = await self._runs_of(
                    [s.saga_id for s in claimed if s.saga_id not in self._driven]
                )
                for saga in claimed:
                    if saga.saga_id not in self._driven:
                        self._drive(saga.saga_id, runs.get(saga.saga_id))
            total += len(claimed)
            self._telemetry.leases_claimed(len(claimed))
            if len(claimed) < places.count:
                break
        return total

    async def _runs_of(self, saga_ids: list[str]) -> dict[str, SagaRun]:
        """The claimed sagas in memory, loaded together; a saga that cannot be loaded or
        built here is left out, and its own task loads it again (with its backoff)."""
        try:
            stored = await self._store.load_sagas(saga_ids)
        except Exception as error:
            logger.warning("loading %d claimed saga(s) failed: %s", len(saga_ids), error)
            return {}
        runs: dict[str, SagaRun] = {}
        for loaded in stored:
            try:
                runs[loaded.saga.saga_id] = self._run_of(loaded)
            except Exception:
                continue  # its task reports why when it loads it alone
        return runs

    def wake_at(self, when: datetime) -> None:
        """A saga was parked until `when`: claim the due sagas then (see the module)."""
        loop = asyncio.get_running_loop()
        delay = (when - utc_now()).total_seconds() + WAKE_MARGIN_SECONDS
        bucket = math.ceil((loop.time() + max(0.0, delay)) / WAKE_COALESCE_SECONDS)
        if bucket in self._wake_set:
            return
        self._wake_set.add(bucket)
        heapq.heappush(self._wake_buckets, bucket)
        if self._wake_buckets[0] == bucket:
            self._woken.set()  # earlier than what the keeper sleeps until

    def _next_wake(self, now: float) -> float | None:
        """Seconds until the earliest wake-up (0 when due; those due are taken)."""
        due = False
        while self._wake_buckets and self._wake_buckets[0] * WAKE_COALESCE_SECONDS <= now:
            self._wake_set.discard(heapq.heappop(self._wake_buckets))
            due = True
        if due:
            return 0.0
        if not self._wake_buckets:
            return None
        return self._wake_buckets[0] * WAKE_COALESCE_SECONDS - now

    async def _sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or until a wake time comes (or an earlier one is set)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            now = loop.time()
            until_wake = self._next_wake(now)
            if until_wake == 0.0 or now >= end:
                return
            self._woken.clear()
            bound = end - now if until_wake is None else min(end - now, until_wake)
            try:
                await asyncio.wait_for(self._woken.wait(), bound)
            except TimeoutError:
                continue

    async def keep(self) -> None:
        """Forever: claim orphans, and every third of the lease renew the leases of the
        sagas driven here (stopping those lost to another replica) and end the sessions
        of lost replicas. While a backlog waits (a claim came back full, or there is no
        room), look again soon."""
        renew_every = self._lease.seconds / 3
        loop = asyncio.get_running_loop()
        next_renewal = loop.time() + renew_every
        while True:
            pause = renew_every
            try:
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + renew_every
                    await self._renew()
                    await self._end_lost_sessions()
                claimed = await self.claim_orphans()
                if claimed:
                    logger.info("claimed %d saga(s) nobody was driving", claimed)
                if claimed or not self._slots.free():
                    pause = BACKLOG_POLL_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("lease upkeep failed, retrying in %.1fs: %s", pause, error)
            await self._sleep(min(pause, max(0.0, next_renewal - loop.time())))

    async def _renew(self) -> None:
        driven = list(self._driven)
        held = await self._store.renew_leases(self._lease, driven)
        for saga_id in set(driven) - held:
            task = self._driven.get(saga_id)
            if task is not None:
                logger.warning(
                    "lease lost to another replica; stop driving", extra={"saga_id": saga_id}
                )
                self._telemetry.lease_lost()
                task.cancel()

    async def _end_lost_sessions(self) -> None:
        """End the sessions of lost replicas (see the module); a failure (a role that may
        not end them) is logged and leaves claims to go on as before."""
        grace = self._lease.seconds * LOST_GRACE_LEASES
        try:
            ended = await self._store.end_lost_sessions(self._lease.owner, grace)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("ending the sessions of lost replicas failed: %s", error)
            return
        for owner, sessions in ended.items():
            logger.warning(
                "replica %s holds only leases expired over %.1fs ago: ended its %d "
                "database session(s) so its sagas can be claimed",
                owner,
                grace,
                sessions,
            )

    async def still_held(self, saga_id: str) -> bool:
        """Whether this replica still holds the saga's lease (renewing it); True when
        the store cannot tell now (the next commit will)."""
        try:
            return saga_id in await self._store.renew_leases(self._lease, [saga_id])
        except Exception:
            return True
