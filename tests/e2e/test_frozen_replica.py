"""A replica frozen for good in the middle of a write holds no saga and no lock key for
long: its leases expire, another replica ends its database sessions, and every saga it
held finishes on the other replica while it stays frozen.

The freeze is deterministic: the frozen replica runs with a failpoint that stops the
process (SIGSTOP) when every statement of one kind of write has gone out in its
pipeline and nothing is committed (`SAGA_FAILPOINT=stop:plan_sent@<write>`). Its
session then waits for the rest of the pipeline, "active" and holding the write's row
locks (and a lock take's guard), which no timeout of PostgreSQL 15 ends. The frozen
process is never resumed; it is killed when the test ends.

The store's part is proven alone too: which sessions `end_lost_sessions` ends and
which it never touches (a live replica, one holding no lease, its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest

from orchestrator.core.records import Lease, SagaFilter, TransitionEvent
from orchestrator.store import Store, open_store
from orchestrator.store.postgres.connection import session_name
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.effects import effects_of
from tests.e2e.test_locks import (
    LOCK_ENV,
    assert_one_at_a_time,
    finish_all,
    intervals,
    start,
    stopped_driving,
)
from tests.integration.test_store import create_leased
from tests.support.payloads import struct, travel
from tests.support.starting import start_saga_at
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = [pytest.mark.e2e]

LEASE_SECONDS = float(os.environ.get("SAGA_FROZEN_TEST_LEASE_SECONDS", "1"))
"""Short leases keep the test short; docs/limits.md gives the bound measured with the
default lease (run with SAGA_FROZEN_TEST_LEASE_SECONDS=10 and -s to see it)."""
HOLD_LIMIT_SECONDS = 60.0
"""How long the other replica may take to finish what the frozen one held (a bound on
the wait, not a speed check: with 1 s leases it takes a few seconds)."""
TRAVEL_SERVICES = ["flight", "hotel", "car_rental", "payment"]


def armed(write: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a replica that freezes in its first write of kind `write`."""
    return {
        **(env or {}),
        "SAGA_LEASE_SECONDS": str(LEASE_SECONDS),
        "SAGA_FAILPOINT": f"stop:plan_sent@{write}",
    }


async def frozen(process: ChildProcess, timeout: float = 60.0) -> None:
    """Until `process` has stopped itself at its failpoint (its log says so and the
    kernel reports it stopped); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        said = "failpoint plan_sent@" in process.log_file.read_text(errors="replace")
        if said and _stopped(process.pid):
            return
        if process.process is not None and process.process.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.name} never froze:\n{process.log_tail()}")
        await asyncio.sleep(0.05)


def _stopped(pid: int) -> bool:
    # /proc/<pid>/stat: "pid (comm) state ..."; T is stopped by a signal.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def ended_sessions_of(process: ChildProcess) -> list[str]:
    """The replicas whose sessions `process` logged it ended."""
    lost = []
    for line in process.log_file.read_text(errors="replace").splitlines():
        try:
            message = str(json.loads(line).get("message", ""))
        except json.JSONDecodeError:
            continue
        if "database session(s) so its sagas can be claimed" in message:
            lost.append(message.split()[1])
    return lost


@pytest.fixture
async def observer(postgres_url: str) -> AsyncIterator[Store]:
    store = open_store(postgres_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def travel_participants(tmp_path: Path):
    services = [*TRAVEL_SERVICES, "inventory", "shipping", "notification"]
    process = participants_process(tmp_path, services, ["--latency-ms", "150"], name="participants")
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("then", ["killed", "thawed"])
async def test_sagas_held_by_a_replica_frozen_in_a_group_commit_finish_on_the_other(
    tmp_path, postgres_url, travel_participants, observer, then
):
    """Then the frozen replica is killed, or thawed: woken, it finds its sessions ended
    and its sagas taken over, and stops driving them without acting again."""
    addresses = travel_participants.info["services"]
    sleeper = orchestrator_process(
        tmp_path, postgres_url, addresses, env=armed("group_commit"), name="sleeper"
    )
    survivor = orchestrator_process(
        tmp_path,
        postgres_url,
        addresses,
        env={"SAGA_LEASE_SECONDS": str(LEASE_SECONDS)},
        name="survivor",
    )
    try:
        sleeper.start()
        survivor.start()
        requests = [
            pb.StartSagaRequest(
                saga_type="travel_booking",
                correlation_id=f"frozen-{n}",
                payload=struct(travel(f"customer-{n}")),
                idempotency_key=f"frozen-{n}",
            )
            for n in range(12)
        ]
        async with grpc.aio.insecure_channel(sleeper.address) as channel:
            # The sagas are stored before the sleeper's drivers write, so before it
            # freezes; its answer may not get out before that, and is not needed.
            call = pb_grpc.SagaOrchestratorStub(channel).StartSagas(
                pb.StartSagasRequest(requests=requests), timeout=HOLD_LIMIT_SECONDS
            )
            await frozen(sleeper)
            frozen_at = time.monotonic()
            call.cancel()
        saga_ids = [s.saga_id for s in await observer.list_sagas(SagaFilter(), limit=100)]
        assert len(saga_ids) == len(requests)
        sagas = await finish_all(survivor.address, saga_ids, timeout=HOLD_LIMIT_SECONDS)
        held_for = time.monotonic() - frozen_at
        assert all(s.status == pb.SAGA_STATUS_COMPLETED for s in sagas)
        print(f"a replica frozen in a group commit held its sagas {held_for:.1f}s")
        assert _stopped(sleeper.pid), "the frozen replica was never resumed"
        if then == "thawed":
            os.kill(sleeper.pid, signal.SIGCONT)
            await stopped_driving(sleeper, set(saga_ids), timeout=HOLD_LIMIT_SECONDS)
            assert sleeper.process is not None and sleeper.process.poll() is None
        for saga_id in saga_ids:
            effects = await effects_of(addresses, saga_id)
            for name in TRAVEL_SERVICES:
                assert effects[name] == Counter({"ACTIVE": 1}), (saga_id, name, effects)
            log = [t.event for t in await observer.get_transitions(saga_id)]
            assert log.count(TransitionEvent.SAGA_COMPLETED) == 1
        assert len(ended_sessions_of(survivor)) == 1, survivor.log_tail()
    finally:
        sleeper.kill()
        survivor.stop()


@pytest.fixture
def trip_participants(tmp_path: Path):
    process = participants_process(
        tmp_path,
        ["flight", "hotel"],
        ["--latency-ms", "400", "--capacity", "1000"],
        name="trip-participants",
    )
    try:
        yield process.start()
    finally:
        process.stop()


def lock_replica(
    tmp_path: Path, url: str, participants: ChildProcess, name: str, write: str | None = None
) -> ChildProcess:
    env = {**LOCK_ENV, "SAGA_LEASE_SECONDS": str(LEASE_SECONDS)}
    if write is not None:
        env = armed(write, env)
    return orchestrator_process(tmp_path, url, participants.info["services"], env=env, name=name)


async def wait_for_event(store: Store, saga_id: str, event: TransitionEvent) -> None:
    deadline = time.monotonic() + 30
    while not any(t.event is event for t in await store.get_transitions(saga_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"saga {saga_id} never logged {event}")
        await asyncio.sleep(0.05)


async def assert_each_took_and_released_once(store: Store, saga_ids: list[str]) -> None:
    for saga_id in saga_ids:
        log = [t.event for t in await store.get_transitions(saga_id)]
        assert log.count(TransitionEvent.LOCKS_ACQUIRED) == 1, (saga_id, log)
        assert log.count(TransitionEvent.LOCKS_RELEASED) == 1, (saga_id, log)
        assert await store.lock_holdings(saga_id) == []


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_replica_frozen_while_taking_a_key_blocks_no_taker_for_long(
    tmp_path, postgres_url, trip_participants, observer
):
    sleeper = lock_replica(tmp_path, postgres_url, trip_participants, "sleeper", "lock_take")
    survivor = lock_replica(tmp_path, postgres_url, trip_participants, "survivor")
    try:
        sleeper.start()
        survivor.start()
        holder = await start(sleeper.address, "locked_trip", "take", 1)
        waiter = await start(sleeper.address, "locked_trip", "take", 2)
        await wait_for_event(observer, waiter, TransitionEvent.LOCKS_WAITING)
        # The holder releases the key; the waiter, woken, takes it: the sleeper freezes
        # in that take, holding the key's guard and the waiter's row.
        await frozen(sleeper)
        frozen_at = time.monotonic()
        # Its opening waits for the key's guard, which the sleeper holds until it is ended.
        late = await start_saga_at(
            survivor.address,
            travel("take"),
            "take-3",
            saga_type="locked_trip",
            idempotency_key="locked_trip-take-3",
            timeout=HOLD_LIMIT_SECONDS,
        )
        sagas = await finish_all(survivor.address, [holder, waiter, late], HOLD_LIMIT_SECONDS)
        print(f"a replica frozen taking a key held it {time.monotonic() - frozen_at:.1f}s")
        assert [s.status for s in sagas] == [pb.SAGA_STATUS_COMPLETED] * 3
        spans = intervals(tmp_path)
        assert_one_at_a_time([spans[holder], spans[waiter], spans[late]])
        await assert_each_took_and_released_once(observer, [holder, waiter, late])
        assert len(ended_sessions_of(survivor)) == 1, survivor.log_tail()
        assert _stopped(sleeper.pid), "the frozen replica was never resumed"
    finally:
        sleeper.kill()
        survivor.stop()


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_replica_frozen_while_releasing_a_key_keeps_no_waiter_waiting_for_long(
    tmp_path, postgres_url, trip_participants, observer
):
    sleeper = lock_replica(tmp_path, postgres_url, trip_participants, "sleeper", "key_release")
    survivor = lock_replica(tmp_path, postgres_url, trip_participants, "survivor")
    try:
        sleeper.start()
        survivor.start()
        holder = await start(sleeper.address, "locked_trip", "release", 1)
        await wait_for_event(observer, holder, TransitionEvent.LOCKS_ACQUIRED)
        waiter = await start(survivor.address, "locked_trip", "release", 2)
        await wait_for_event(observer, waiter, TransitionEvent.LOCKS_WAITING)
        # The holder's last commit releases the key: the sleeper freezes in it.
        await frozen(sleeper)
        frozen_at = time.monotonic()
        sagas = await finish_all(survivor.address, [holder, waiter], HOLD_LIMIT_SECONDS)
        print(f"a replica frozen releasing a key held it {time.monotonic() - frozen_at:.1f}s")
        assert [s.status for s in sagas] == [pb.SAGA_STATUS_COMPLETED] * 2
        spans = intervals(tmp_path)
        assert_one_at_a_time([spans[holder], spans[waiter]])
        assert spans[holder] < spans[waiter]
        await assert_each_took_and_released_once(observer, [holder, waiter])
        assert len(ended_sessions_of(survivor)) == 1, survivor.log_tail()
        assert _stopped(sleeper.pid), "the frozen replica was never resumed"
    finally:
        sleeper.kill()
        survivor.stop()


# --- the store alone: whose sessions are ended ----------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_only_the_sessions_of_a_replica_whose_leases_all_expired_are_ended(
    tmp_path, backend, request
):
    url = (
        f"sqlite:///{tmp_path / 'sagas.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    claimer = Lease("claimer", seconds=30)
    store = open_store(url, replica_id=claimer.owner)
    await store.open()
    try:
        await create_leased(store, "lost-saga", Lease("lost", seconds=0))
        await create_leased(store, "live-saga", Lease("live", seconds=30))
        await create_leased(store, "mixed-expired", Lease("mixed", seconds=0))
        await create_leased(store, "mixed-live", Lease("mixed", seconds=30))
        if backend == "sqlite":
            # One process uses a SQLite store: there is nobody else's session to end.
            assert await store.end_lost_sessions(claimer.owner, grace_seconds=0) == {}
            return
        sessions = {
            owner: await psycopg.AsyncConnection.connect(
                url, autocommit=True, application_name=session_name(owner)
            )
            for owner in ("lost", "live", "mixed", "idle", "claimer")
        }
        try:
            # The lost replica froze holding its saga's row; the others hold rows too.
            for owner, saga_id in (("lost", "lost-saga"), ("live", "live-saga")):
                await sessions[owner].execute("BEGIN")
                await sessions[owner].execute(
                    "SELECT 1 FROM sagas WHERE saga_id = %s FOR UPDATE", (saga_id,)
                )
            before = await store.claim_sagas(claimer, limit=10)
            assert [s.saga_id for s in before] == ["mixed-expired"], "lost-saga is held"

            ended = await store.end_lost_sessions(claimer.owner, grace_seconds=0)

            assert ended == {"lost": 1}
            with pytest.raises(psycopg.OperationalError):
                await sessions["lost"].execute("SELECT 1")
            for owner in ("live", "mixed", "idle", "claimer"):
                await sessions[owner].execute("SELECT 1")  # still there
            claimed = await store.claim_sagas(claimer, limit=10)
            assert [s.saga_id for s in claimed] == ["lost-saga"]
            assert await store.end_lost_sessions(claimer.owner, grace_seconds=0) == {}
        finally:
            for connection in sessions.values():
                await connection.close()
    finally:
        await store.close()


def test_session_names_fit_the_server_and_tell_replicas_apart():
    short = session_name("host:123:abcdef")
    assert short == "saga-orchestrator/host:123:abcdef"
    long_a = session_name("h" * 80 + ":1:aaaaaa")
    long_b = session_name("h" * 80 + ":1:bbbbbb")
    assert len(long_a) == len(long_b) == 63 and long_a != long_b
    assert long_a.startswith("saga-orchestrator/hhh")
    assert session_name("hôte:1:aaaaaa").isascii()
